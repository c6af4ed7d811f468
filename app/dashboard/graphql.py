"""The cross-city dashboard: regulators see every city; a city's app and operators see their own.

Every figure is read from the daily rollups (migrations 0011, 0012), which `verify-ledger` proves equal
to the ledger; nothing here scans the raw records. Points are in each city's own unit; a total across
cities adds those amounts as they are (cities' units differ: compare cities by their rows).

Small groups (possibly one person) cannot be singled out; the minimum is `CARBON_DASHBOARD_MIN_GROUP_SIZE`:
- breakdown groups with fewer transactions are folded into one `suppressed` line per breakdown;
- account counts (opened, guest, bank-linked, active; per city and per bucket) from 1 to the minimum − 1
  are null. A total is null too where it would give such counts away: when the suppressed cities'
  counts add up to less than the minimum (the total minus the shown cities would reveal them). Guest
  and bank-linked counts are shown or suppressed together (each is the opened count minus the other).
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


@strawberry.type(description="A dashboard's headline figures. Points are in the city's own unit.")
class DashboardFigures:
    accounts_opened: Long | None = strawberry.field(description="Accounts opened in the period." + _SUPPRESSED)
    guest_accounts: Long | None = strawberry.field(
        description="Guest accounts at the period's end (opened, not bank-linked)." + _SUPPRESSED)
    bank_linked_accounts: Long | None = strawberry.field(
        description="Bank-linked accounts at the period's end." + _SUPPRESSED)
    active_accounts: Long | None = strawberry.field(
        description="Accounts that earned or spent points in the period, each counted once." + _SUPPRESSED)
    reduction_grams: Decimal = strawberry.field(description="Carbon reduction credited in the period, net of reversals.")
    points_issued: Decimal = strawberry.field(description="Points issued in the period: credits net of reversals, "
                                                          "and market-lot sale proceeds.")
    points_redeemed: Decimal = strawberry.field(description="Points spent (rewards, donations, financial services), "
                                                            "net of cancellations.")
    points_expired: Decimal
    points_outstanding: Decimal = strawberry.field(description="At the period's end, since the beginning: issued − "
                                                               "redeemed − expired (the citizens' balances).")


@strawberry.type(description="The flows of one bucket of the requested granularity (local dates).")
class DashboardBucket:
    start: date
    active_accounts: Long | None = strawberry.field(
        description="Accounts that earned or spent points in the bucket (within the period)." + _SUPPRESSED)
    reduction_grams: Decimal
    points_issued: Decimal
    points_redeemed: Decimal
    points_expired: Decimal


@strawberry.type
class BehaviorFigure:
    behavior: str
    category: str | None
    transactions: Long
    reduction_grams: Decimal
    points: Decimal


@strawberry.type
class NamedFigure:
    name: str = strawberry.field(description="A category, an issuer's slug, a project's code or a kind; "
                                             "`suppressed` for the groups below the minimum size together.")
    transactions: Long
    reduction_grams: Decimal
    points: Decimal


@strawberry.type(description="One city's dashboard.")
class CityDashboard:
    tenant: Tenant
    accounts_opened: Long | None = strawberry.field(description="Accounts opened in the period." + _SUPPRESSED)
    guest_accounts: Long | None = strawberry.field(description="At the period's end." + _SUPPRESSED)
    bank_linked_accounts: Long | None = strawberry.field(description="At the period's end." + _SUPPRESSED)
    active_accounts: Long | None = strawberry.field(
        description="Accounts that earned or spent points in the period, each counted once." + _SUPPRESSED)
    reduction_grams: Decimal
    points_issued: Decimal
    points_redeemed: Decimal
    points_expired: Decimal
    points_outstanding: Decimal
    series: list[DashboardBucket]
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
    minimum_group_size: int = strawberry.field(description="Breakdown groups with fewer transactions, and account "
                                                           "counts below it, are suppressed.")
    cities: list[CityDashboard]
    totals: DashboardFigures


DASHBOARD_READERS = allow(Role.REGULATOR, Role.CITY_APP, Role.TENANT_ADMIN)


_COUNTS = ("accounts_opened", "guest_accounts", "bank_linked_accounts", "active_accounts")


def _counts(head: dict[str, int]) -> dict[str, int]:
    return {"accounts_opened": head["opened"], "guest_accounts": head["opened_total"] - head["bank_linked"],
            "bank_linked_accounts": head["bank_linked"], "active_accounts": head["active"]}


def _count(value: int, minimum: int) -> Long | None:
    """An account count, or None where it is a small group (0 says nothing about anyone)."""
    return None if 0 < value < minimum else Long(value)


def _total(values: list[int], minimum: int) -> Long | None:
    """The cities' total, unless it would give away the suppressed cities' counts."""
    hidden = sum(value for value in values if 0 < value < minimum)
    return None if 0 < hidden < minimum else _count(sum(values), minimum)


def _paired(shown: dict[str, Long | None]) -> dict[str, Long | None]:
    """Guest and bank-linked accounts add up to every account opened: when one is suppressed, so is the
    other (the opened count, over a period covering every opening, minus one would give it away)."""
    if shown["guest_accounts"] is None or shown["bank_linked_accounts"] is None:
        shown["guest_accounts"] = shown["bank_linked_accounts"] = None
    return shown


def _suppressed(groups: dict[str, list[int]], minimum: int) -> list[NamedFigure]:
    shown, hidden = [], [0, 0, 0]
    for name in sorted(groups):
        n, mg, pts = groups[name]
        if n >= minimum:
            shown.append((name, n, mg, pts))
        else:
            hidden = [hidden[0] + n, hidden[1] + mg, hidden[2] + pts]
    if hidden[0]:
        shown.append(("suppressed", *hidden))
    return shown  # type: ignore[return-value]


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
        rows = await repository.breakdown(session, ids, start, end)
        minimum = get_settings().dashboard_min_group_size
        categories = await _categories(info, views)
        cities = [_city(view, head[view.id], buckets.get(view.id, []),
                        [row for row in rows if row["tenant_id"] == view.id], categories[view.id], minimum)
              for view in views]
        amounts = ("reduction_grams", "points_issued", "points_redeemed", "points_expired", "points_outstanding")
        totals = DashboardFigures(**_paired({field: _total([_counts(head[view.id])[field] for view in views], minimum)
                                             for field in _COUNTS}),
                                  **{field: sum((getattr(city, field) for city in cities), Decimal(0))
                                     for field in amounts})
        return CrossCityDashboard(start=start, end=end, granularity=granularity, minimum_group_size=minimum,
                                  cities=cities, totals=totals)


async def _views(info: Info[Context, None]) -> list[TenantView]:
    from app.tenants.repository import current_tenants

    return await current_tenants(info.context.session, info.context.now)


async def _categories(info: Info[Context, None], views: list[TenantView]) -> dict[uuid.UUID, dict[str, str]]:
    rules = await info.context.loaders.rules_by_version.load_many([view.version_id for view in views])
    return {view.id: {rule.code: rule.category for rule in found} for view, found in zip(views, rules, strict=True)}


def figures(view: TenantView, head: dict[str, int]) -> DashboardFigures:
    """A city's headline figures from `repository.headline`'s row for it, small groups suppressed."""
    minimum = get_settings().dashboard_min_group_size
    return DashboardFigures(
        **_paired({field: _count(value, minimum) for field, value in _counts(head).items()}),
        reduction_grams=_grams(head["reduction_mg"]),
        points_issued=_points(head["issued"], view), points_redeemed=_points(head["redeemed"], view),
        points_expired=_points(head["expired"], view), points_outstanding=_points(head["outstanding"], view))


def _city(view: TenantView, head: dict[str, int], buckets: list[dict], rows: list[dict], categories: dict[str, str],
          minimum: int) -> CityDashboard:
    behaviors: dict[str, list[int]] = {}
    by_category: dict[str, list[int]] = {}
    by_issuer: dict[str, list[int]] = {}
    donations: dict[str, list[int]] = {}
    by_kind: dict[str, list[int]] = {}

    def add(groups: dict[str, list[int]], name: str, row: dict) -> None:
        totals = groups.setdefault(name, [0, 0, 0])
        totals[0] += int(row["transactions"])
        totals[1] += int(row["reduction_mg"])
        totals[2] += int(row["points"])

    for row in rows:
        if row["kind"] == "LOT_PROCEEDS":
            continue  # points issued from a lot's sale: in pointsIssued, of no behaviour or provider
        if row["kind"] in repository.ISSUED:
            add(behaviors, row["behavior_code"], row)
            add(by_category, categories.get(row["behavior_code"], "OTHER"), row)
            add(by_issuer, row["provider_slug"] or "unknown", row)
        elif row["kind"] in repository.REDEEMED:
            add(by_kind, row["kind"], row)
            if row["kind"] == "DONATION" or (row["kind"] == "REDEMPTION_CANCELLED" and row["reward_code"] in donations):
                add(donations, row["reward_code"], row)
    named = lambda groups, sign=1: [  # noqa: E731
        NamedFigure(name=name, transactions=Long(n), reduction_grams=_grams(mg), points=_points(sign * pts, view))
        for name, n, mg, pts in _suppressed(groups, minimum)]
    return CityDashboard(
        tenant=Tenant(_view=view), _tenant_id=view.id,
        **_paired({field: _count(value, minimum) for field, value in _counts(head).items()}),
        reduction_grams=_grams(head["reduction_mg"]), points_issued=_points(head["issued"], view),
        points_redeemed=_points(head["redeemed"], view), points_expired=_points(head["expired"], view),
        points_outstanding=_points(head["outstanding"], view),
        series=[DashboardBucket(start=bucket["bucket"], active_accounts=_count(int(bucket["active"]), minimum),
                                reduction_grams=_grams(int(bucket["reduction_mg"])),
                                points_issued=_points(int(bucket["issued"]), view),
                                points_redeemed=_points(int(bucket["redeemed"]), view),
                                points_expired=_points(int(bucket["expired"]), view)) for bucket in buckets],
        by_behavior=[BehaviorFigure(behavior=name, category=categories.get(name) if name != "suppressed" else None,
                                    transactions=Long(n), reduction_grams=_grams(mg), points=_points(pts, view))
                     for name, n, mg, pts in _suppressed(behaviors, minimum)],
        by_category=named(by_category), by_issuer=named(by_issuer), donations=named(donations, -1),
        redemptions_by_kind=named(by_kind, -1),
    )
