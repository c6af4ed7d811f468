"""GraphQL types and root fields of the tenants domain: cities, point units, issuers, behaviours, catalogue.

Thin by design: permission (tenant visibility) and mapping only; data comes through the request's
DataLoaders. Names follow the request's language; units and rules are the tenant's configuration in
force at the request's instant, read from the database on every request (no process cache), so a
newly published version shows on the next query without a restart.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.types import Info

from app.auth.permissions import ANY_CLIENT
from app.behaviors.rules.calendar import local_date, zone
from app.graphql.errors import BadUserInput, Forbidden
from app.graphql.ids import object_id_of
from app.rewards.errors import RewardErrorCode
from app.rewards.service import MAX_QUANTITY, check_eligibility, period_start
from app.graphql.context import Context
from app.graphql.ids import to_global_id
from app.graphql.node import Node, register_node
from app.graphql.pagination import CursorScope, PageInfo, encode_cursor, page_info, page_request
from app.graphql.scalars import Long
from app.tenants import config as cfg
from app.tenants import models
from app.tenants.repository import RewardPageQuery, TenantView, current_tenants

BehaviorCategory = strawberry.enum(cfg.BehaviorCategory, description="What kind of green behaviour.")
CalculationMethod = strawberry.enum(
    cfg.CalculationMethod,
    description="PER_UNIT: factor per unit (step). PER_EVENT: factor per event (ride, payment). "
                "PER_DISTANCE: (baseline - mode emission factor) per km.",
)
IssuerKind = strawberry.enum(cfg.IssuerKind)
SameBehaviorMatch = strawberry.enum(cfg.SameBehaviorMatch, description=cfg.SameBehaviorMatch.__doc__)
RewardKind = strawberry.enum(cfg.RewardKind, description="The article's three kinds of rights.")
LimitPeriod = strawberry.enum(cfg.LimitPeriod)


@strawberry.enum(description="Whether an item is in the catalogue.")
class RewardStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"


def grams(milligrams: int | None) -> Decimal | None:
    """Exact grams from integer milligrams (20 mg -> 0.02)."""
    return None if milligrams is None else Decimal(milligrams) / 1000


def _pick(info: Info[Context, None], en: str, zh: str) -> str:
    return zh if info.context.language == "zh" else en


@strawberry.type(description="A city's point currency, as configured now.")
class PointUnit:
    _view: strawberry.Private[TenantView]

    @strawberry.field(description="Plural display name, e.g. 'carbon coins' / '碳币'.")
    def name(self, info: Info[Context, None]) -> str:
        return _pick(info, self._view.unit_name_en, self._view.unit_name_zh)

    @strawberry.field(description="Singular display name.")
    def singular(self, info: Info[Context, None]) -> str:
        return _pick(info, self._view.unit_singular_en, self._view.unit_singular_zh)

    @strawberry.field(description="Decimal places of the currency; amounts are integers of 10^-decimals.")
    def decimals(self) -> int:
        return self._view.unit_decimals

    @strawberry.field(description="Grams CO2e of reduction that earn one whole point.")
    def grams_per_point(self) -> int:
        return self._view.grams_per_point


@strawberry.type(description="An amount of a city's points.")
class PointAmount:
    _minor: strawberry.Private[int]
    _view: strawberry.Private[TenantView]

    @strawberry.field(description="Whole points as an exact decimal string, e.g. \"500\".")
    def amount(self) -> Decimal:
        return Decimal(self._minor).scaleb(-self._view.unit_decimals)

    @strawberry.field(description="The amount in the currency's smallest unit.")
    def minor_units(self) -> Long:
        return self._minor

    @strawberry.field
    def unit(self) -> PointUnit:
        return PointUnit(_view=self._view)


@strawberry.type(description="An organisation inside a city: bank, city-card company, data provider, ...")
class Issuer(Node):
    _row: strawberry.Private[models.Issuer]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Issuer", self._row.id))

    @strawberry.field
    def slug(self) -> str:
        return self._row.slug

    @strawberry.field
    def name(self, info: Info[Context, None]) -> str:
        return _pick(info, self._row.name_en, self._row.name_zh)

    @strawberry.field
    def kind(self) -> IssuerKind:
        return cfg.IssuerKind(self._row.kind)

    @strawberry.field
    def description(self) -> str | None:
        return self._row.description


@strawberry.type(description="How the rule recognises one behaviour reported by two providers, so that it is "
                              "credited once.")
class SameBehavior:
    match: SameBehaviorMatch
    window_minutes: int | None = strawberry.field(description="TRIP: the most minutes between two reports of it.")


@strawberry.type(description="How one green behaviour is priced in the configuration version in force.")
class Behavior:
    _row: strawberry.Private[models.BehaviorRule]

    @strawberry.field(description="Stable code partners submit, e.g. `walking`.")
    def code(self) -> str:
        return self._row.code

    @strawberry.field
    def name(self, info: Info[Context, None]) -> str:
        return _pick(info, self._row.name_en, self._row.name_zh)

    @strawberry.field
    def category(self) -> BehaviorCategory:
        return cfg.BehaviorCategory(self._row.category)

    @strawberry.field
    def method(self) -> CalculationMethod:
        return cfg.CalculationMethod(self._row.method)

    @strawberry.field(description="What `quantity` counts: step, ride, km, payment, ...")
    def unit(self) -> str:
        return self._row.unit

    @strawberry.field(description="Grams CO2e per unit or event; per km for PER_DISTANCE (baseline - mode).")
    def factor_grams(self) -> Decimal:
        return grams(self._row.factor_mg)

    @strawberry.field
    def baseline_grams_per_km(self) -> Decimal | None:
        return grams(self._row.baseline_mg_per_km)

    @strawberry.field
    def mode_grams_per_km(self) -> Decimal | None:
        return grams(self._row.mode_mg_per_km)

    @strawberry.field(description="Most credited per account per local day; null is uncapped.")
    def cap_grams_per_day(self) -> Decimal | None:
        return grams(self._row.cap_mg_per_day)

    @strawberry.field(description="Most credited per account per local calendar month; null is uncapped.")
    def cap_grams_per_month(self) -> Decimal | None:
        return grams(self._row.cap_mg_per_month)

    @strawberry.field(description="Most credited for one record; null is uncapped.")
    def cap_grams_per_event(self) -> Decimal | None:
        return grams(self._row.cap_mg_per_event)

    @strawberry.field(description="Where the factor comes from (methodology, publication, or assumption).")
    def source(self) -> str:
        return self._row.source

    @strawberry.field(description="NONE for versions published before rules declared it.")
    def same_behavior(self) -> SameBehavior:
        value = self._row.same_behavior or {"match": "NONE"}
        return SameBehavior(match=cfg.SameBehaviorMatch(value["match"]), window_minutes=value.get("window_minutes"))


@strawberry.type(description="Carbon reduction contribution: milligrams CO2e, not spendable.")
class Contribution:
    milligrams: Long

    @strawberry.field(description="Exact grams CO2e.")
    def grams(self) -> Decimal:
        return grams(self.milligrams)


@strawberry.type
class RewardEligibility:
    bank_linked_only: bool
    _min_contribution_mg: strawberry.Private[int]

    @strawberry.field(description="The cumulative contribution an account needs, exactly.")
    def min_contribution(self) -> Contribution:
        return Contribution(milligrams=self._min_contribution_mg)

    @strawberry.field(deprecation_reason="Whole grams, rounded down (0.5 g shows as 0): use `minContribution`, "
                                         "which is exact.")
    def min_contribution_grams(self) -> Long:
        return self._min_contribution_mg // 1000


RewardErrorCodeEnum = strawberry.enum(RewardErrorCode, name="RewardErrorCode")


@strawberry.type(description="Whether an account can take an item now, and every reason why not.")
class EligibilityCheck:
    eligible: bool
    reasons: list[RewardErrorCodeEnum]


@strawberry.type(description="A public-welfare project's running totals.")
class DonationProgress:
    points: PointAmount = strawberry.field(description="Points donated so far (net of cancellations).")
    gifts: Long = strawberry.field(description="Donations made so far (net of cancellations).")


@strawberry.type(description="A catalogue item: a reward, a public-welfare donation or a financial service.")
class Reward(Node):
    _row: strawberry.Private[models.Reward]
    _tenant: strawberry.Private[TenantView | None] = None

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Reward", self._row.id))

    @strawberry.field
    def code(self) -> str:
        return self._row.code

    @strawberry.field
    def name(self, info: Info[Context, None]) -> str:
        return _pick(info, self._row.name_en, self._row.name_zh)

    @strawberry.field
    def description(self, info: Info[Context, None]) -> str | None:
        if self._row.description_en is None:
            return None
        return _pick(info, self._row.description_en, self._row.description_zh or self._row.description_en)

    @strawberry.field
    def kind(self) -> RewardKind:
        return cfg.RewardKind(self._row.kind)

    @strawberry.field(description="RETIRED: out of the catalogue (no longer listed, redeemed or edited); "
                                  "redemptions already made stay. Reached by `node(id:)` or a redemption.")
    def status(self) -> RewardStatus:
        return RewardStatus.ACTIVE if self._row.active else RewardStatus.RETIRED

    @strawberry.field(description="Price per unit, in the city's current point unit.")
    async def cost(self, info: Info[Context, None]) -> PointAmount:
        tenant = self._tenant or await info.context.loaders.tenant_by_id.load(self._row.tenant_id)
        return PointAmount(_minor=self._row.cost_points, _view=tenant)

    @strawberry.field(description="Units left; null for an unlimited item.")
    def remaining_stock(self) -> Long | None:
        return self._row.stock_remaining

    @strawberry.field(description="Units ever made available; null for an unlimited item.")
    def total_stock(self) -> Long | None:
        return self._row.stock_total

    @strawberry.field(description="Most units one account may take per `limitPeriod`; null is no limit.")
    def per_account_limit(self) -> int | None:
        return self._row.per_account_limit

    @strawberry.field
    def limit_period(self) -> LimitPeriod:
        return cfg.LimitPeriod(self._row.limit_period)

    @strawberry.field
    def valid_from(self) -> datetime | None:
        return self._row.valid_from

    @strawberry.field
    def valid_to(self) -> datetime | None:
        return self._row.valid_to

    @strawberry.field
    def cancellation_window_hours(self) -> int:
        return self._row.cancellation_window_hours

    @strawberry.field
    def eligibility(self) -> RewardEligibility:
        return RewardEligibility(bank_linked_only=self._row.bank_linked_only,
                                 _min_contribution_mg=self._row.min_contribution_mg)

    @strawberry.field(description="The issuer that sponsors and fulfils the item.")
    async def sponsor(self, info: Info[Context, None]) -> Issuer:
        return Issuer(_row=await info.context.loaders.issuer_by_id.load(self._row.sponsor_issuer_id))

    @strawberry.field(description="For DONATION items: the project's running totals; null for other kinds, and for "
                                  "regulators (they read each project's donations of a period on "
                                  "crossCityDashboard, small groups suppressed).")
    async def donations(self, info: Info[Context, None]) -> DonationProgress | None:
        """The city's own clients read the project's account in the ledger. A regulator gets null, by design:
        the running total is one account's balance in `ledger_accounts`, a table of citizens' balances the
        regulator role may not read, and served from the rollups instead it would be a second, all-time
        path to the figures `crossCityDashboard.cities.donations` already gives per period under the
        small-group rule: the all-time total less a period's would give away the donations outside the
        period, a group nobody checked (one early donor's gift). One path, one rule: the dashboard's."""
        if self._row.kind != "DONATION" or info.context.principal.is_regulator:
            return None
        tenant = self._tenant or await info.context.loaders.tenant_by_id.load(self._row.tenant_id)
        points = await info.context.loaders.donation_points.load((self._row.tenant_id, self._row.code))
        return DonationProgress(points=PointAmount(_minor=points, _view=tenant), gifts=self._row.stock_taken)

    @strawberry.field(description="Whether this account can redeem `quantity` units (1 to 100) now, and every "
                                  "reason why not (city apps and tenant admins; null for another city's account; a "
                                  "malformed id or a quantity out of range is BAD_USER_INPUT).")
    async def eligibility_for(self, info: Info[Context, None], account_id: strawberry.ID,
                              quantity: int = 1) -> EligibilityCheck | None:
        principal = info.context.principal
        if principal.role not in (cfg.Role.CITY_APP, cfg.Role.TENANT_ADMIN):
            raise Forbidden("only CITY_APP/TENANT_ADMIN clients may check an account's eligibility")
        if not 0 < quantity <= MAX_QUANTITY:  # as redeemReward refuses it (INVALID_QUANTITY)
            raise BadUserInput(f"`quantity` must be 1 to {MAX_QUANTITY}", argument="quantity")
        loaders = info.context.loaders
        account = await loaders.account_by_id.load(object_id_of(account_id, "Account", "accountId"))
        if account is None or account.tenant_id != principal.tenant_id or account.tenant_id != self._row.tenant_id:
            return None
        tenant = self._tenant or await loaders.tenant_by_id.load(self._row.tenant_id)
        start = period_start(self._row.limit_period, local_date(info.context.now, tenant.timezone))
        since = datetime(start.year, start.month, start.day, tzinfo=zone(tenant.timezone)) if start else None
        balances = await loaders.balances.load(account.id)
        taken = await loaders.taken_since.load((account.id, self._row.id, since))
        reasons = check_eligibility(self._row, kind=account.kind, status=account.status,
                                    contribution_mg=balances.get("CONTRIBUTION_MG", 0),
                                    balance=balances.get("POINTS", 0), already_taken=taken, quantity=quantity,
                                    now=info.context.now)
        return EligibilityCheck(eligible=not reasons, reasons=reasons)


@strawberry.type
class RewardEdge:
    cursor: str
    node: Reward


@strawberry.type
class RewardConnection:
    edges: list[RewardEdge]
    page_info: PageInfo

    @strawberry.field(description="The nodes of `edges`, for clients that need no cursors.")
    def nodes(self) -> list[Reward]:
        return [edge.node for edge in self.edges]


@strawberry.type(description="The configuration version in force: rules, point unit and profile.")
class ConfigVersion:
    version: int
    effective_from: datetime


@strawberry.type(description="A city running a carbon inclusive programme.")
class Tenant(Node):
    _view: strawberry.Private[TenantView]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Tenant", self._view.id))

    @strawberry.field
    def slug(self) -> str:
        return self._view.slug

    @strawberry.field
    def name(self, info: Info[Context, None]) -> str:
        return _pick(info, self._view.name_en, self._view.name_zh)

    @strawberry.field(description="IANA time zone; daily caps use this zone's local days.")
    def timezone(self) -> str:
        return self._view.timezone

    @strawberry.field(description="Behaviour records older than this many days are refused.")
    def claim_window_days(self) -> int:
        return self._view.claim_window_days

    @strawberry.field(description="Points earned on a local day expire at the start of the same day this many "
                                  "months later (oldest earnings first); null: points never expire.")
    def point_expiry_months(self) -> int | None:
        return self._view.point_expiry_months

    @strawberry.field
    def point_unit(self) -> PointUnit:
        return PointUnit(_view=self._view)

    @strawberry.field
    def config_version(self) -> ConfigVersion:
        return ConfigVersion(version=self._view.version, effective_from=self._view.effective_from)

    @strawberry.field(description="Active issuers, in configuration order.")
    async def issuers(self, info: Info[Context, None]) -> list[Issuer]:
        rows = await info.context.loaders.issuers_by_tenant.load(self._view.id)
        return [Issuer(_row=row) for row in rows]

    @strawberry.field(description="Behaviour rules of the configuration version in force.")
    async def behaviors(self, info: Info[Context, None]) -> list[Behavior]:
        rows = await info.context.loaders.rules_by_version.load(self._view.version_id)
        return [Behavior(_row=row) for row in rows]

    @strawberry.field(description="The catalogue (active items), in configuration order. At most 100 a page.")
    async def rewards(self, info: Info[Context, None], first: int | None = None, after: str | None = None,
                      last: int | None = None, before: str | None = None,
                      kind: RewardKind | None = None) -> RewardConnection:
        scope = CursorScope("rewards", self._view.id)
        page = page_request(first, after, last, before, scope=scope)
        query = RewardPageQuery(kind=kind.value if kind else None, after=page.after, before=page.before,
                                limit=page.size, backwards=page.backwards)
        found = await info.context.loaders.reward_pages.load((self._view.id, query))
        rows = found[: page.size]
        if page.backwards:
            rows.reverse()
        edges = [RewardEdge(cursor=encode_cursor(row.position, row.id, scope=scope), node=Reward(_row=row, _tenant=self._view))
                 for row in rows]
        return RewardConnection(edges=edges, page_info=page_info(len(found), page, [e.cursor for e in edges]))


@strawberry.type
class TenantQuery:
    @strawberry.field(description="Cities visible to the caller: its own, or all of them for a regulator.",
                      permission_classes=[ANY_CLIENT])
    async def tenants(self, info: Info[Context, None]) -> list[Tenant]:
        principal = info.context.principal
        views = await current_tenants(info.context.session, info.context.now)
        return [Tenant(_view=view) for view in views if principal.can_see_tenant(view.id)]

    @strawberry.field(description="A city by slug; null when it does not exist or is not visible to the caller.",
                      permission_classes=[ANY_CLIENT])
    async def tenant(self, info: Info[Context, None], slug: str) -> Tenant | None:
        principal = info.context.principal
        views = await current_tenants(info.context.session, info.context.now, slugs=[slug])
        return next((Tenant(_view=view) for view in views if principal.can_see_tenant(view.id)), None)


async def _tenant_node(info: Info[Context, None], tenant_id: uuid.UUID) -> Tenant | None:
    if not info.context.principal.can_see_tenant(tenant_id):
        return None
    view = await info.context.loaders.tenant_by_id.load(tenant_id)
    return Tenant(_view=view) if view else None


async def _reward_node(info: Info[Context, None], reward_id: uuid.UUID) -> Reward | None:
    row = await info.context.loaders.reward_by_id.load(reward_id)
    if row is None or not info.context.principal.can_see_tenant(row.tenant_id):
        return None
    tenant = await info.context.loaders.tenant_by_id.load(row.tenant_id)
    return Reward(_row=row, _tenant=tenant) if tenant else None  # no version in force yet: not visible


async def _issuer_node(info: Info[Context, None], issuer_id: uuid.UUID) -> Issuer | None:
    row = await info.context.loaders.issuer_by_id.load(issuer_id)
    if row is None or not info.context.principal.can_see_tenant(row.tenant_id):
        return None
    return Issuer(_row=row)


register_node("Tenant", _tenant_node)
register_node("Reward", _reward_node)
register_node("Issuer", _issuer_node)
