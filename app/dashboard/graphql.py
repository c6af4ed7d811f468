"""The cross-city dashboard: regulators see every city; a city's app and operators see their own.

Every figure is read from the daily rollups (migrations 0011, 0012), which `verify-ledger` proves equal
to the ledger; nothing here scans the raw records. Points are in each city's own unit; a total across
cities adds those amounts as they are (cities' units differ: compare cities by their rows).

Small groups (possibly one person) cannot be singled out, in counts or in amounts: the rule is
`app.dashboard.suppression`'s, with `CARBON_DASHBOARD_MIN_GROUP_SIZE` as the minimum. The accounts behind
a figure: a count is its own group; a flow of a period, bucket or day (reduction, points issued, redeemed,
expired) has at most its transactions and at most the accounts active then; points outstanding at most
the accounts opened by the period's end and the transactions up to it; a breakdown line at most its
transactions and the city's active accounts. Guest and bank-linked counts are shown or suppressed
together (each is the opened count minus the other).

Within one answer nothing suppressed may be a shown whole less shown parts: the buckets of a series
(`_series`), the breakdowns of the same transactions, folded alike (`_breakdowns`), a lot's proceeds in
the points issued and, with nothing before the period, the flows in the points outstanding (`_headline`).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth.permissions import allow
from app.dashboard import repository
from app.dashboard.suppression import SUPPRESSED, Figure, Key, Line, complement, fold, total
from app.graphql.context import Context
from app.graphql.errors import BadUserInput
from app.graphql.scalars import Long
from app.market.graphql import MarketLotSummary
from app.settings import get_settings
from app.tenants.config import Role
from app.tenants.graphql import Tenant
from app.tenants.repository import TenantView

MAX_DAYS = 366


@strawberry.enum
class Granularity(enum.Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def _points(minor: int, view: TenantView | None) -> Decimal:
    return Decimal(minor).scaleb(-(view.unit_decimals if view else 0))


def _grams(mg: int) -> Decimal:
    return Decimal(mg).scaleb(-3)


_SUPPRESSED = " Null when below the minimum group size (suppressed)."
_AMOUNT = " Null when fewer accounts than the minimum group size stand behind it (suppressed)."
_PROCEEDS = (" Also null when the period's lot sale proceeds are paid to fewer accounts than that (the credits, "
             "which the behaviour lines give, would give them away).")
_BALANCED = (" Also null when nothing happened before the period and its points issued, redeemed or expired are "
             "suppressed (it would be their difference).")


@strawberry.type(description="A dashboard's headline figures. Points are in the city's own unit.")
class DashboardFigures:
    accounts_opened: Long | None = strawberry.field(description="Accounts opened in the period." + _SUPPRESSED)
    guest_accounts: Long | None = strawberry.field(
        description="Guest accounts at the period's end (opened, not bank-linked)." + _SUPPRESSED)
    bank_linked_accounts: Long | None = strawberry.field(
        description="Bank-linked accounts at the period's end." + _SUPPRESSED)
    active_accounts: Long | None = strawberry.field(
        description="Accounts that earned or spent points in the period, each counted once." + _SUPPRESSED)
    reduction_grams: Decimal | None = strawberry.field(
        description="Carbon reduction credited in the period, net of reversals." + _AMOUNT)
    points_issued: Decimal | None = strawberry.field(
        description="Points issued in the period: credits net of reversals, and market-lot sale proceeds." + _AMOUNT
                    + _PROCEEDS)
    points_redeemed: Decimal | None = strawberry.field(
        description="Points spent (rewards, donations, financial services), net of cancellations." + _AMOUNT)
    points_expired: Decimal | None = strawberry.field(description="Points expired in the period." + _AMOUNT)
    points_outstanding: Decimal | None = strawberry.field(
        description="At the period's end, since the beginning: issued − redeemed − expired (the citizens' "
                    "balances)." + _AMOUNT + _BALANCED)


@strawberry.type(description="The flows of one bucket of the requested granularity (local dates).")
class DashboardBucket:
    start: date
    active_accounts: Long | None = strawberry.field(
        description="Accounts that earned or spent points in the bucket (within the period)." + _SUPPRESSED)
    reduction_grams: Decimal | None = strawberry.field(description=_AMOUNT.strip())
    points_issued: Decimal | None = strawberry.field(description=_AMOUNT.strip())
    points_redeemed: Decimal | None = strawberry.field(description=_AMOUNT.strip())
    points_expired: Decimal | None = strawberry.field(description=_AMOUNT.strip())


_FOLDED = (" Null only on the `suppressed` line: when even all the groups together are below the minimum size, "
           "or (donations) when the period's redemptions less the shown lines would be other redemptions of "
           "too few accounts.")


@strawberry.type(description="A behaviour's credits in the period, net of reversals; `suppressed`: the behaviours "
                             "below the minimum group size together with those folded with them.")
class BehaviorFigure:
    behavior: str
    category: str | None
    transactions: Long | None = strawberry.field(description=_FOLDED.strip())
    reduction_grams: Decimal | None = strawberry.field(description=_FOLDED.strip())
    points: Decimal | None = strawberry.field(description=_FOLDED.strip())


@strawberry.type
class NamedFigure:
    name: str = strawberry.field(description="A category, an issuer's slug, a project's code or a kind; "
                                             "`suppressed` for the groups below the minimum size together with "
                                             "those folded with them. Breakdowns of the same transactions "
                                             "(behaviour, category, issuer; kind, project) are folded alike: no "
                                             "line of one less lines of another is a suppressed group.")
    transactions: Long | None = strawberry.field(description=_FOLDED.strip())
    reduction_grams: Decimal | None = strawberry.field(description=_FOLDED.strip())
    points: Decimal | None = strawberry.field(description=_FOLDED.strip())


@strawberry.type(description="One city's dashboard.")
class CityDashboard:
    tenant: Tenant
    accounts_opened: Long | None = strawberry.field(description="Accounts opened in the period." + _SUPPRESSED)
    guest_accounts: Long | None = strawberry.field(description="At the period's end." + _SUPPRESSED)
    bank_linked_accounts: Long | None = strawberry.field(description="At the period's end." + _SUPPRESSED)
    active_accounts: Long | None = strawberry.field(
        description="Accounts that earned or spent points in the period, each counted once." + _SUPPRESSED)
    reduction_grams: Decimal | None = strawberry.field(description=_AMOUNT.strip())
    points_issued: Decimal | None = strawberry.field(description=(_AMOUNT + _PROCEEDS).strip())
    points_redeemed: Decimal | None = strawberry.field(description=_AMOUNT.strip())
    points_expired: Decimal | None = strawberry.field(description=_AMOUNT.strip())
    points_outstanding: Decimal | None = strawberry.field(description=(_AMOUNT + _BALANCED).strip())
    series: list[DashboardBucket] = strawberry.field(
        description="A bucket's amount is also null where the period's amount minus the shown buckets would give "
                    "suppressed buckets away (one account active in several buckets is one account); the reduction "
                    "and the points issued are null in the same buckets.")
    by_behavior: list[BehaviorFigure] = strawberry.field(description="Credits net of reversals, per behaviour.")
    by_category: list[NamedFigure]
    by_issuer: list[NamedFigure] = strawberry.field(description="Credits net of reversals, per reporting provider.")
    donations: list[NamedFigure] = strawberry.field(description="Points donated per public-welfare project.")
    redemptions_by_kind: list[NamedFigure]
    _tenant_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="Every market lot of the city (not only the period's), newest first.")
    async def market_lots(self, info: Info[Context, None]) -> list[MarketLotSummary]:
        # Read only when selected, for every city of the request in one statement.
        return [MarketLotSummary(_row=lot) for lot in await info.context.loaders.market_lots_by_tenant.load(
            self._tenant_id)]


@strawberry.type
class CrossCityDashboard:
    start: date = strawberry.field(name="from")
    end: date = strawberry.field(name="to")
    granularity: Granularity
    minimum_group_size: int = strawberry.field(description="Counts and amounts that fewer accounts stand behind are "
                                                           "null (suppressed); so are breakdown groups (folded).")
    cities: list[CityDashboard]
    totals: DashboardFigures


DASHBOARD_READERS = allow(Role.REGULATOR, Role.CITY_APP, Role.TENANT_ADMIN)


_COUNTS = ("accounts_opened", "guest_accounts", "bank_linked_accounts", "active_accounts")
# A flow: its key in a headline or series row, and the ledger kinds whose transactions make it.
_FLOWS = {"reduction_grams": ("reduction_mg", repository.CREDITED), "points_issued": ("issued", repository.ISSUED),
          "points_redeemed": ("redeemed", repository.REDEEMED), "points_expired": ("expired", repository.EXPIRED)}
_AMOUNTS = (*_FLOWS, "points_outstanding")
_BALANCE = ("points_issued", "points_redeemed", "points_expired")  # outstanding = issued − redeemed − expired


def _counts(head: dict[str, int]) -> dict[str, int]:
    return {"accounts_opened": head["opened"], "guest_accounts": head["opened_total"] - head["bank_linked"],
            "bank_linked_accounts": head["bank_linked"], "active_accounts": head["active"]}


def _flows(view: TenantView, row: dict, kinds: dict[str, int]) -> dict[str, Figure]:
    """A headline's or a bucket's flows, in the units shown; each made by its kinds' transactions, by at
    most the accounts active then."""
    found = {}
    for field, (key, made_by) in _FLOWS.items():
        value = _grams(int(row[key])) if field == "reduction_grams" else _points(int(row[key]), view)
        found[field] = Figure.flow(value, sum(kinds.get(kind, 0) for kind in made_by), int(row["active"]))
    return found


def _headline(view: TenantView, head: dict[str, int], kinds: dict[str, int]) -> dict[str, Figure]:
    """A city's headline figures before suppression. Outstanding points are held by at most the accounts
    opened by the period's end, and at most as many as the transactions up to it.

    Two figures also give away a group inside them, so they stand for it too (`Figure.within`):
    - points issued, the proceeds of lots sold in the period (paid to their contributors): the points
      issued less the credits (the behaviour lines, or the reduction at the rates they show) are them;
    - points outstanding, when nothing happened before the period: they are then the issued less the
      redeemed less the expired, and so give away whichever of those is suppressed."""
    flows = _flows(view, head, kinds)
    if kinds.get(repository.PROCEEDS):
        flows["points_issued"] = flows["points_issued"].within(min(kinds[repository.PROCEEDS], head["active"]))
    outstanding = Figure(_points(head["outstanding"], view), min(head["opened_total"], head["transactions_to_end"]),
                         head["transactions_to_end"] != 0)
    if head["transactions_to_end"] == head["transactions"]:
        outstanding = outstanding.within(min((flows[field].group for field in _BALANCE if flows[field].present),
                                             default=outstanding.group))
    return {**{field: Figure.count(value) for field, value in _counts(head).items()}, **flows,
            "points_outstanding": outstanding}


def _shown(figures: dict[str, Figure], minimum: int) -> dict[str, Long | Decimal | None]:
    return _paired({field: _typed(field, figure.shown(minimum)) for field, figure in figures.items()})


def _typed(field: str, value: int | Decimal | None) -> Long | Decimal | None:
    return Long(value) if field in _COUNTS and value is not None else value


def _paired(shown: dict[str, Long | Decimal | None]) -> dict[str, Long | Decimal | None]:
    """Guest and bank-linked accounts add up to every account opened: when one is suppressed, so is the
    other (the opened count, over a period covering every opening, minus one would give it away)."""
    if shown["guest_accounts"] is None or shown["bank_linked_accounts"] is None:
        shown["guest_accounts"] = shown["bank_linked_accounts"] = None
    return shown


@strawberry.type
class DashboardQuery:
    @strawberry.field(description="Figures per city and in total for a period of local dates (at most 366 days), "
                                  "from the ledger's daily rollups. Regulators see every city; a city's app and "
                                  "operators their own.", permission_classes=[DASHBOARD_READERS])
    async def cross_city_dashboard(self, info: Info[Context, None],
                                   start: Annotated[date, strawberry.argument(name="from")],
                                   end: Annotated[date, strawberry.argument(name="to")],
                                   granularity: Granularity = Granularity.DAY) -> CrossCityDashboard:
        if end < start:
            raise BadUserInput("`to` is before `from`", argument="to")
        if end - start > timedelta(days=MAX_DAYS - 1):
            raise BadUserInput(f"a period is at most {MAX_DAYS} days", argument="to")
        principal = info.context.principal
        session = info.context.session
        views = [view for view in await _views(info) if principal.can_see_tenant(view.id)]
        ids = [view.id for view in views]
        head = await repository.headline(session, ids, start, end)
        buckets = await repository.series(session, ids, start, end, granularity.value)
        found = await repository.breakdown(session, ids, start, end, granularity.value)
        minimum = get_settings().dashboard_min_group_size
        categories = await _categories(info, views)
        built = [_city(view, head[view.id], buckets.get(view.id, []), found, categories[view.id], minimum)
                 for view in views]
        cities = [city for city, _ in built]
        totals = DashboardFigures(**_paired({
            field: _typed(field, total([figures[field] for _, figures in built], minimum))
            for field in (*_COUNTS, *_AMOUNTS)}))
        return CrossCityDashboard(start=start, end=end, granularity=granularity, minimum_group_size=minimum,
                                  cities=cities, totals=totals)


async def _views(info: Info[Context, None]) -> list[TenantView]:
    from app.tenants.repository import current_tenants

    return await current_tenants(info.context.session, info.context.now)


async def _categories(info: Info[Context, None], views: list[TenantView]) -> dict[uuid.UUID, dict[str, str]]:
    rules = await info.context.loaders.rules_by_version.load_many([view.version_id for view in views])
    return {view.id: {rule.code: rule.category for rule in found} for view, found in zip(views, rules, strict=True)}


def figures(view: TenantView, head: dict[str, int], kinds: dict[str, int]) -> DashboardFigures:
    """A city's headline figures from `repository.headline`'s row for it and the transactions per kind of
    the same days, small groups suppressed."""
    return DashboardFigures(**_shown(_headline(view, head, kinds), get_settings().dashboard_min_group_size))


def _city(view: TenantView, head: dict[str, int], buckets: list[dict], found: repository.Breakdown,
          categories: dict[str, str], minimum: int) -> tuple[CityDashboard, dict[str, Figure]]:
    """The city's dashboard, and its headline figures before suppression (for the totals)."""
    headline = _headline(view, head, found.period_kinds(view.id))
    city = CityDashboard(
        tenant=Tenant(_view=view), _tenant_id=view.id, **_shown(headline, minimum),
        series=_series(view, buckets, found.kinds.get(view.id, {}), headline, minimum),
        **_breakdowns(view, [row for row in found.lines if row["tenant_id"] == view.id], categories, head["active"],
                      minimum))
    return city, headline


def _breakdowns(view: TenantView, rows: list[dict], categories: dict[str, str], active: int,
                minimum: int) -> dict[str, list]:
    """The city's breakdowns of the period, folded alike (`suppression.fold`): the credits by behaviour,
    category and issuer, which are three ways of cutting the same transactions (a category less a shown
    behaviour would otherwise be a folded one); the redemptions by kind and by donation project."""
    credits: dict[Key, Line] = {}
    redemptions: dict[Key, Line] = {}
    projects = {row["reward_code"] for row in rows if row["kind"] == "DONATION"}
    for row in rows:
        if row["kind"] in repository.CREDITED:  # not a lot's sale proceeds: of no behaviour or provider
            behavior = row["behavior_code"]
            _add(credits, (behavior, categories.get(behavior, "OTHER"), row["provider_slug"] or "unknown"), row)
        elif row["kind"] in repository.REDEEMED:
            # A donation, or a cancelled one (in any order of the rows); other redemptions are no project's.
            _add(redemptions, (row["kind"], row["reward_code"] if row["reward_code"] in projects else None), row)
    by_behavior, by_category, by_issuer = fold(credits, 3, active, minimum)
    by_kind, donations = fold(redemptions, 2, active, minimum)

    def named(folded: list[tuple[str, Line | None]], sign: int = 1) -> list[NamedFigure]:
        return [NamedFigure(name=name, transactions=None, reduction_grams=None, points=None) if line is None else
                NamedFigure(name=name, transactions=Long(line.transactions), reduction_grams=_grams(line.reduction_mg),
                            points=_points(sign * line.points, view))
                for name, line in folded]

    return {"by_behavior": [BehaviorFigure(behavior=figure.name,
                                           category=categories.get(figure.name) if figure.name != SUPPRESSED else None,
                                           transactions=figure.transactions, reduction_grams=figure.reduction_grams,
                                           points=figure.points) for figure in named(by_behavior)],
            "by_category": named(by_category), "by_issuer": named(by_issuer),
            "donations": named(donations, -1), "redemptions_by_kind": named(by_kind, -1)}


def _add(cells: dict[Key, Line], key: Key, row: dict) -> None:
    was = cells.get(key, Line(0, 0, 0))
    cells[key] = Line(was.transactions + int(row["transactions"]), was.reduction_mg + int(row["reduction_mg"]),
                      was.points + int(row["points"]))


def _series(view: TenantView, buckets: list[dict], bucket_kinds: dict[date, dict[str, int]],
            headline: dict[str, Figure], minimum: int) -> list[DashboardBucket]:
    """The buckets, each flow suppressed on its own and, where the period's flow is shown, with as many of
    the other buckets as it takes to keep the suppressed ones from being its difference
    (`suppression.complement`).

    The points issued are the reduction at the behaviours' rates (the breakdown lines show both) plus a
    lot's sale proceeds, so the two flows hide the same buckets; when the period's points issued are
    hidden (perhaps for their proceeds alone), so are the buckets paying proceeds: the behaviour lines
    less the shown buckets are then no more than the hidden buckets' credits."""
    flows = [_flows(view, bucket, bucket_kinds.get(bucket["bucket"], {})) for bucket in buckets]
    hidden = {field: complement([found[field] for found in flows], headline[field], minimum) for field in _FLOWS}
    issued_hidden = headline["points_issued"].hidden(minimum)
    paying = [issued_hidden and bool(bucket_kinds.get(bucket["bucket"], {}).get(repository.PROCEEDS))
              for bucket in buckets]
    hidden["reduction_grams"] = hidden["points_issued"] = [
        any(outs) for outs in zip(hidden["reduction_grams"], hidden["points_issued"], paying, strict=True)]
    return [DashboardBucket(start=bucket["bucket"], active_accounts=_typed("active_accounts", Figure.count(
                int(bucket["active"])).shown(minimum)),
                            **{field: None if hidden[field][index] else found[field].value for field in _FLOWS})
            for index, (bucket, found) in enumerate(zip(buckets, flows, strict=True))]
