"""One city's accounts' histories, simulated in time order with the platform's rules (see
`bench/dashboard_seed.py` for what is written and how).

Per account: an opening (front-loaded: a launch, then steady sign-ups), a bank link for a share, and a
heavy-tailed number of behaviour records (a few daily walkers, many occasional users) spread over its
days, each priced by its rule: caps per record, local day and month, then floor-with-carry conversion.
After a day with records the citizen may redeem an affordable item it is eligible for; expiry runs
each day at 00:05 where the city's points expire, oldest lots first.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from app.rewards.service import period_start, voucher_code
from bench.dashboard_seed import (
    EXPIRY_RUN_SECOND,
    FIRST_SECOND,
    LAST_SECOND,
    MICROS,
    PG_EPOCH,
    Calendar,
    City,
    Ids,
    Item,
    Rows,
    Rule,
    Shared,
    numeric_bytes,
    pg_time,
)

REDEEM_TRY = 0.06  # chance an account looks at the catalogue after a day with records
CANCEL_SHARE = 0.04  # of cancellable redemptions
BANK_LINKED_SHARE = 0.35  # of accounts, half at opening, half later
# Relative frequency of behaviours, by code (others: by category); quantities per record, by unit.
FREQUENCY = {"walking": 30, "bus": 14, "subway": 14, "shared_bike": 7, "cycling": 7, "online_living_payment": 3,
             "mobile_payment": 8, "second_hand_trade": 1, "clothes_recycling": 1, "ferry": 2}
CATEGORY_FREQUENCY = {"TRAVEL": 4, "CONSUMPTION": 4, "LIFE": 2}
DISTANCE_M = {"subway": (3000, 30000), "bus": (2000, 15000)}  # metres; other distances 0.8-8 km
KIND_PREFERENCE = {"REWARD": 5, "DONATION": 3, "FINANCIAL_SERVICE": 2}

DISTANCE, COUNT, EVENT = 0, 1, 2
NO_CAP = 1 << 62


def _pricing(rule: Rule, provider: str) -> tuple:
    """What pricing a record of `rule` needs, flat: (code, rule id, provider, cap per event, cap per day,
    cap per month or None, method, low, width, factor mg); quantities drawn as low + [0, width)."""
    if rule.method == "PER_DISTANCE":
        low, high = DISTANCE_M.get(rule.code, (800, 8000))
        method, width = DISTANCE, high - low
    elif rule.method == "PER_UNIT":
        low, width = (1500, 16500) if rule.unit == "step" else (1, 8)
        method = COUNT
    else:
        method, low, width = EVENT, 1, 1
    return (rule.code, rule.id, provider, NO_CAP if rule.cap_event is None else rule.cap_event,
            NO_CAP if rule.cap_day is None else rule.cap_day, rule.cap_month, method, low, width, rule.factor_mg)


def account_plan(rng: random.Random, accounts: int, records: int, days: int) -> list[tuple[int, int]]:
    """(opening day index, records) per account: openings front-loaded (a launch, then steady sign-ups),
    activity heavy-tailed (a few daily walkers, many occasional users), `records` in total."""
    opening = [min(days - 1, int(days * rng.random() ** 1.6)) for _ in range(accounts)]
    weights = [min(rng.paretovariate(1.2), 60.0) * (days - day) for day in opening]
    scale = records / sum(weights) if weights else 0
    counts = [int(w * scale) for w in weights]
    for i in rng.sample(range(accounts), records - sum(counts)) if records > sum(counts) else ():
        counts[i] += 1
    return list(zip(opening, counts, strict=True))


class CityHistory:
    """Simulates one city's accounts of one worker and yields their rows in chunks."""

    def __init__(self, city: City, calendar: Calendar, worker: int, workers: int, seed: int, end: datetime) -> None:
        self.city, self.cal, self.end = city, calendar, int(end.timestamp())
        self.redeem_try, self.cancel_share = REDEEM_TRY, CANCEL_SHARE
        self.rng = random.Random(f"{seed}-{city.slug}-{worker}")
        self.worker = worker
        self.ids = {name: Ids(worker, self.rng) for name in ("account", "ledger", "record", "transaction", "other",
                                                                "external")}
        self.shared = Shared()
        self.stock_left = {item.id: item.stock_total // workers + (worker < item.stock_total % workers)
                           for item in city.items if item.stock_total is not None}
        weights = [FREQUENCY.get(rule.code, CATEGORY_FREQUENCY[rule.category]) for rule in city.rules]
        self.cumulative = [sum(weights[: i + 1]) for i in range(len(weights))]
        self.consents = defaultdict(list)
        for rule in city.rules:
            if rule.category not in self.consents[city.providers[rule.category]]:
                self.consents[city.providers[rule.category]].append(rule.category)
        self.month_of = [(d.year, d.month) for d in calendar.days]
        self.pricing = [_pricing(rule, city.providers[rule.category]) for rule in city.rules]
        self.quantities: dict[int, bytes] = {}

    def chunks(self, accounts: int, records: int, chunk_records: int) -> Iterator[Rows]:
        rows = Rows()
        for opening_day, count in account_plan(self.rng, accounts, records, len(self.cal.days)):
            rows.records += self.account(rows.tables, opening_day, count)
            if rows.records >= chunk_records:
                yield rows
                rows = Rows()
        if rows.records or rows.tables["accounts"]:
            yield rows

    # ------------------------------------------------------------------------------------------ account

    def account(self, out: dict[str, list[tuple]], opening_day: int, count: int) -> int:
        """Write one account's whole history into `out`; returns its number of behaviour records."""
        city, cal, rand = self.city, self.cal, self.rng.random
        tenant, last = city.tenant_id, len(cal.days) - 1
        account_id, mg_ledger, points_ledger = self.ids["account"](), self.ids["ledger"](), self.ids["ledger"]()
        hi_of_opening = cal.last_hi - 3600 if opening_day == last else 20 * 3600
        opened = cal.midnights[opening_day] + FIRST_SECOND + int(rand() * (hi_of_opening - FIRST_SECOND))
        linked = None
        if rand() < BANK_LINKED_SHARE:
            linked = opened if rand() < 0.5 else opened + int(rand() * (self.end - 60 - opened))
        # The records: (day, second of the day, rule index), in time order.
        span, cumulative = last - opening_day + 1, self.cumulative
        events = []
        for _ in range(count):
            day = opening_day + int(rand() * span)
            lo = opened - cal.midnights[day] + 60 if day == opening_day else FIRST_SECOND
            hi = cal.last_hi if day == last else LAST_SECOND
            events.append((day, lo + int(rand() * (hi - lo)), bisect.bisect(cumulative, rand() * cumulative[-1])))
        events.sort()
        state = _Account(account_id, mg_ledger, points_ledger, linked)
        records_out, transactions = out["behavior_records"], out["ledger_transactions"]
        postings = out["ledger_postings"]
        issuance_mg, issuance_points = city.system[("issuance", "CONTRIBUTION_MG")], city.system[("issuance", "POINTS")]
        pricing, rate, version, days, midnights, end = self.pricing, city.mg_per_point, city.config_version, \
            cal.days, cal.midnights, self.end
        record_id, transaction_id, external = self.ids["record"], self.ids["transaction"], self.ids["external"]
        quantities, expiring = self.quantities, city.expiry_months is not None
        totals: dict[str, list[int]] = {}  # the day's credited mg and points per behaviour
        month_mg: dict[str, int] = {}
        current_day, current_month, moment = -1, None, 0
        for day, second, rule_index in events:
            if day != current_day:
                if current_day >= 0:
                    self._close_day(out, state, current_day, totals, moment)
                    totals = {}
                if self.month_of[day] != current_month:
                    current_month, month_mg = self.month_of[day], {}
                if expiring and state.lots:
                    self._expire_until(out, state, day)
                current_day = day
            code, rule_id, provider, cap_event, cap_day, cap_month, method, low, width, factor = pricing[rule_index]
            if method == DISTANCE:
                thousandths = low + int(rand() * width)  # metres
                requested = thousandths * factor // 1000
            else:
                units = low + int(rand() * width) if method == COUNT else (1 if rand() < 0.85 else 2)
                thousandths, requested = units * 1000, units * factor
            quantity = quantities.get(thousandths)
            if quantity is None:
                quantity = quantities[thousandths] = numeric_bytes(thousandths)
            day_total = totals.get(code)
            if day_total is None:
                day_total = totals[code] = [0, 0]
            credit = min(requested, cap_event, cap_day - day_total[0])
            if cap_month is not None:
                credit = min(credit, cap_month - month_mg.get(code, 0))
                month_mg[code] = month_mg.get(code, 0) + max(credit, 0)
            if credit < 0:
                credit = 0
            points, state.carry = divmod(state.carry + credit, rate)
            day_total[0] += credit
            day_total[1] += points
            state.contribution += credit
            state.balance += points
            moment = midnights[day] + second
            occurred = (moment - PG_EPOCH) * MICROS
            received = (min(moment + 30 + int(rand() * 3600), end) - PG_EPOCH) * MICROS
            rid, tid = record_id(), transaction_id()
            status = "CREDITED" if credit == requested else "CAPPED"
            records_out.append((rid, tenant, account_id, provider, external.external(), code, rule_id, version,
                                quantity,
                                occurred, days[day], received, status, requested, credit, points))
            transactions.append((tid, tenant, account_id, "BEHAVIOR_CREDIT", status, occurred, rid, code, credit,
                                 points, points * rate, None))
            if credit:
                postings.append((tenant, tid, issuance_mg, "CONTRIBUTION_MG", -credit))
                postings.append((tenant, tid, mg_ledger, "CONTRIBUTION_MG", credit))
            if points:
                postings.append((tenant, tid, issuance_points, "POINTS", -points))
                postings.append((tenant, tid, points_ledger, "POINTS", points))
        if current_day >= 0:
            self._close_day(out, state, current_day, totals, moment)
        if expiring:
            self._expire_until(out, state, last)
        self._open(out, state, opened)
        return count

    def _close_day(self, out: dict[str, list[tuple]], state: _Account, day: int, totals: dict[str, list[int]],
                   last_time: int) -> None:
        """The day's totals, its lot, and perhaps a redemption after its last record."""
        points_of_day = 0
        for code, (mg, points) in totals.items():
            if mg or points:
                out["daily_behavior_totals"].append((self.city.tenant_id, state.id, code, self.cal.days[day], mg,
                                                     points))
                points_of_day += points
        if points_of_day:
            state.lots.append((day, points_of_day))
        if self.rng.random() < self.redeem_try:
            self._redeem(out, state, day, last_time + 300 + int(self.rng.random() * 1200))

    def _redeem(self, out: dict[str, list[tuple]], state: _Account, day: int, moment: int) -> None:
        if moment > self.end:
            return
        city, rng = self.city, self.rng
        now = pg_time(moment)
        choices = [item for item in city.items if self._eligible(state, item, day, moment)]
        if not choices:
            return
        item = rng.choices(choices, weights=[KIND_PREFERENCE[i.kind] for i in choices])[0]
        redemption_id, tenant = self.ids["other"](), city.tenant_id
        cancellable = moment + 3600 * item.cancellation_hours if item.cancellation_hours else None
        units = 1 if item.stock_total is not None or item.kind == "DONATION" else 0
        if item.stock_total is not None:
            self.stock_left[item.id] -= 1
        cancelled_at = None
        if cancellable is not None and rng.random() < self.cancel_share and moment + 1500 <= self.end:
            cancelled_at = moment + 300 + int(rng.random() * 1200)
        request = hashlib.sha256(f"{state.id}|{item.id}|1".encode()).hexdigest()
        out["redemptions"].append((
            redemption_id, tenant, state.id, item.id, item.kind, 1, item.cost,
            "CANCELLED" if cancelled_at else "FULFILLED",
            voucher_code() if item.kind == "REWARD" else None,
            f"seed-{redemption_id}", request, city.app_client, now, pg_time(cancellable), pg_time(cancelled_at),
            "changed my mind" if cancelled_at else None, units, item.counterparty if item.cost else None))
        if item.kind == "FINANCIAL_SERVICE":
            out["entitlements"].append((self.ids["other"](), tenant, state.id, item.id, item.sponsor_id,
                                        redemption_id, "CANCELLED" if cancelled_at else "ACTIVE", now,
                                        pg_time(item.valid_to)))
        state.taken[item.id].append((self.cal.days[day], cancelled_at is None))
        if item.cost:
            self._move(out, state, "DONATION" if item.kind == "DONATION" else "REDEMPTION", "FULFILLED", moment,
                       -item.cost, item.counterparty, redemption_id)
        if not cancelled_at:
            if units:
                self.shared.stock_taken[item.id] += units
            if item.kind == "DONATION" and item.cost:
                self.shared.project_points[item.counterparty] += item.cost
            return
        if item.stock_total is not None:
            self.stock_left[item.id] += 1
        if item.cost:
            self._move(out, state, "REDEMPTION_CANCELLED", "CANCELLED", cancelled_at, item.cost, item.counterparty,
                       redemption_id)

    def _eligible(self, state: _Account, item: Item, day: int, now: int) -> bool:
        if state.balance < item.cost or state.contribution < item.min_contribution_mg:
            return False
        if (item.valid_from and now < item.valid_from) or (item.valid_to and now >= item.valid_to):
            return False
        if item.bank_linked_only and (state.linked is None or state.linked > now):
            return False
        if item.stock_total is not None and self.stock_left[item.id] <= 0:
            return False
        if item.per_account_limit is not None:
            since = period_start(item.limit_period, self.cal.days[day])
            held = sum(1 for taken, kept in state.taken[item.id] if kept and (since is None or taken >= since))
            if held + 1 > item.per_account_limit:
                return False
        return True

    def _move(self, out: dict[str, list[tuple]], state: _Account, kind: str, status: str, when: int,
              points: int, counterparty: str, redemption_id: str | None) -> None:
        """A points transaction of the citizen against `counterparty` (`points` > 0: to the citizen)."""
        tid, tenant = self.ids["transaction"](), self.city.tenant_id
        out["ledger_transactions"].append((tid, tenant, state.id, kind, status, pg_time(when), None, None, 0, points, 0,
                                           redemption_id))
        out["ledger_postings"].append((tenant, tid, state.points_ledger, "POINTS", points))
        out["ledger_postings"].append((tenant, tid, counterparty, "POINTS", -points))
        state.balance += points
        state.consumed -= points

    def _expire_until(self, out: dict[str, list[tuple]], state: _Account, day: int) -> None:
        """The daily expiry runs up to `day`'s (00:05 local): the oldest lots' unspent points expire."""
        cal = self.cal
        while state.next_lot < len(state.lots):
            run = cal.expiry_run_for_lot[state.lots[state.next_lot][0]]
            if run is None or run > day:
                return
            boundary = cal.expiry_cutoff_of_run[run]
            while state.next_lot < len(state.lots) and state.lots[state.next_lot][0] < boundary:
                state.matured += state.lots[state.next_lot][1]
                state.next_lot += 1
            due = min(state.balance, max(0, state.matured - state.consumed))
            if due:
                when = cal.midnights[run] + EXPIRY_RUN_SECOND
                self._move(out, state, "EXPIRY", "EXPIRED", when, -due, self.city.system[("expired", "POINTS")], None)

    def _open(self, out: dict[str, list[tuple]], state: _Account, opened_at: int) -> None:
        """The account's own rows, with its final balances."""
        city, rng, tenant = self.city, self.rng, self.city.tenant_id
        opened, linked = pg_time(opened_at), pg_time(state.linked)
        out["accounts"].append((state.id, tenant, rng.randbytes(32), "BANK_LINKED" if linked else "GUEST", "ACTIVE",
                                rng.randbytes(32) if linked else None,
                                f"•••• {rng.randrange(10000):04d}" if linked else None, city.app_client, opened,
                                opened, linked, linked or opened))
        out["account_events"].append((self.ids["other"](), tenant, state.id, "OPENED", city.app_client, opened))
        if linked:
            out["account_events"].append((self.ids["other"](), tenant, state.id, "BANK_LINKED", city.app_client,
                                          linked))
        for provider, categories in self.consents.items():
            out["consents"].append((self.ids["other"](), tenant, state.id, provider, categories, city.app_client,
                                    opened))
        matured_through = earned_matured = None
        if self.cal.final_cutoff is not None and opened_at < self.cal.midnights[-1] + EXPIRY_RUN_SECOND:
            matured_through = self.cal.final_cutoff
            earned_matured = state.matured
        out["ledger_accounts"].append((state.mg_ledger, tenant, state.id, "citizen", "CONTRIBUTION_MG",
                                       state.contribution, True, 0, 0, 0, None))
        out["ledger_accounts"].append((state.points_ledger, tenant, state.id, "citizen", "POINTS", state.balance,
                                       True, state.carry, state.consumed, earned_matured or 0, matured_through))


@dataclass
class _Account:
    id: str
    mg_ledger: str
    points_ledger: str
    linked: int | None  # epoch second of the bank link
    contribution: int = 0
    balance: int = 0
    carry: int = 0
    consumed: int = 0
    matured: int = 0  # points of the lots past the last expiry cutoff
    next_lot: int = 0
    lots: list[tuple[int, int]] = field(default_factory=list)  # (day index, points earned)
    taken: dict[str, list[tuple[date, bool]]] = field(default_factory=lambda: defaultdict(list))
