"""GraphQL of the accounts domain: the account read model for city apps, account and consent mutations.

Thin: permission, input → command, one service call, domain error → `userErrors`. Another tenant's
account is indistinguishable from a missing one (`null` / ACCOUNT_NOT_FOUND).
"""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING, Annotated
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import strawberry
from sqlalchemy import text
from strawberry.types import Info

from app.behaviors.rules.calendar import month_of
from app.accounts import service
from app.accounts.errors import AccountError, AccountErrorCode
from app.accounts.models import Account as AccountRow
from app.accounts.models import Consent as ConsentRow
from app.auth.permissions import CITY_APP, CITY_APP_OR_ADMIN
from app.graphql.context import Context
from app.graphql.errors import BadUserInput, Forbidden
from app.graphql.ids import object_id_of, to_global_id, try_global_id
from app.graphql.node import Node, register_node
from app.graphql.pagination import TIME_KEY, CursorScope, PageInfo, encode_cursor, page_info, page_request
from app.graphql.scalars import Long
from app.ledger.models import CONTRIBUTION, POINTS
from app.tenants.graphql import Behavior, BehaviorCategory, Contribution, Issuer, PointAmount, Tenant, grams
from app.tenants.config import BehaviorCategory as Category

if TYPE_CHECKING:
    from app.market.graphql import MarketLotSummary
    from app.rewards.graphql import RedemptionConnection


@strawberry.enum(description="GUEST: no bank link (open to everyone, tourists included). BANK_LINKED: linked to a bank account.")
class AccountKind(enum.Enum):
    GUEST = "GUEST"
    BANK_LINKED = "BANK_LINKED"


@strawberry.enum(description="FROZEN accounts keep earning but cannot spend; CLOSED accounts take no new credits.")
class AccountStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


@strawberry.enum(description="What moved: a behaviour credit or its reversal, a redemption or donation or its "
                             "cancellation, or expiry of old points.")
class ActivityKind(enum.Enum):
    BEHAVIOR_CREDIT = "BEHAVIOR_CREDIT"
    BEHAVIOR_REVERSAL = "BEHAVIOR_REVERSAL"
    REDEMPTION = "REDEMPTION"
    DONATION = "DONATION"
    REDEMPTION_CANCELLED = "REDEMPTION_CANCELLED"
    EXPIRY = "EXPIRY"
    LOT_PROCEEDS = strawberry.enum_value("LOT_PROCEEDS", description="A share of a market lot's sale, as points.")


@strawberry.enum(description="CREDITED in full or CAPPED (partly or fully) for credits; REVERSED, FULFILLED, "
                             "CANCELLED, EXPIRED for the other kinds.")
class ActivityStatus(enum.Enum):
    CREDITED = "CREDITED"
    CAPPED = "CAPPED"
    REVERSED = "REVERSED"
    FULFILLED = "FULFILLED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


AccountErrorCodeEnum = strawberry.enum(AccountErrorCode, name="AccountErrorCode")


@strawberry.type(description="A business failure of an account mutation.")
class AccountUserError:
    code: AccountErrorCodeEnum
    field: list[str] | None
    message: str

    @classmethod
    def from_domain(cls, error: AccountError) -> AccountUserError:
        return cls(code=error.code, field=error.field, message=error.message)


@strawberry.type(description="Today's progress on one behaviour (the tenant's local day).")
class TodayProgress:
    behavior: Behavior
    _credited_mg: strawberry.Private[int]
    _cap_mg: strawberry.Private[int | None]
    _month_credited_mg: strawberry.Private[int] = 0
    _month_cap_mg: strawberry.Private[int | None] = None

    @strawberry.field(description="Credited today (local day).")
    def credited_grams(self) -> Decimal:
        return grams(self._credited_mg)

    @strawberry.field(description="Daily cap; null when the behaviour has no daily cap.")
    def cap_grams(self) -> Decimal | None:
        return grams(self._cap_mg)

    @strawberry.field(description="Credited this local month, today included.")
    def month_credited_grams(self) -> Decimal:
        return grams(self._month_credited_mg)

    @strawberry.field(description="Monthly cap; null when the behaviour has no monthly cap.")
    def month_cap_grams(self) -> Decimal | None:
        return grams(self._month_cap_mg)

    @strawberry.field(description="What can still be credited today under every cap that applies (daily and "
                                  "monthly: the smaller); null only when the behaviour has neither.")
    def remaining_grams(self) -> Decimal | None:
        left = [cap - done for cap, done in ((self._cap_mg, self._credited_mg),
                                             (self._month_cap_mg, self._month_credited_mg)) if cap is not None]
        return grams(max(min(left), 0)) if left else None


@strawberry.type(description="One entry of an account's activity: a movement of its contribution or points.")
class ActivityEntry(Node):
    _row: strawberry.Private[dict]
    _decimals: strawberry.Private[int]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("ActivityEntry", self._row["id"]))

    @strawberry.field
    def kind(self) -> ActivityKind:
        return ActivityKind(self._row["kind"])

    @strawberry.field
    def status(self) -> ActivityStatus:
        return ActivityStatus(self._row["status"])

    @strawberry.field(description="When the behaviour (or movement) happened.")
    def occurred_at(self) -> datetime:
        return self._row["occurred_at"]

    @strawberry.field(description="When the ledger recorded it.")
    def posted_at(self) -> datetime:
        return self._row["posted_at"]

    @strawberry.field(description="The behaviour rule that priced the record (its version's wording).")
    async def behavior(self, info: Info[Context, None]) -> Behavior | None:
        record_id = self._row["behavior_record_id"]
        if record_id is None:
            return None
        rule = await info.context.loaders.rule_by_record.load(record_id)
        return Behavior(_row=rule) if rule else None

    @strawberry.field(description="Contribution change, grams CO2e.")
    def reduction_grams(self) -> Decimal:
        return grams(self._row["reduction_mg"])

    @strawberry.field(description="Points change, whole points (negative for spending, reversal, expiry).")
    def points(self) -> Decimal:
        return Decimal(self._row["points"]).scaleb(-self._decimals)

    @strawberry.field(description="For a reversal: points that could not be taken back (already spent).")
    def shortfall_points(self) -> Decimal:
        return Decimal(self._row["shortfall_points"]).scaleb(-self._decimals)

    @strawberry.field(description="The behaviour record credited or reversed; null for other kinds.")
    def record_id(self) -> strawberry.ID | None:
        record_id = self._row["behavior_record_id"]
        return None if record_id is None else strawberry.ID(to_global_id("BehaviorRecord", record_id))

    @strawberry.field(description="The redemption spent or cancelled; null for other kinds.")
    def redemption_id(self) -> strawberry.ID | None:
        redemption_id = self._row["redemption_id"]
        return None if redemption_id is None else strawberry.ID(to_global_id("Redemption", redemption_id))

    @strawberry.field(description="For a credit: the market lot its reduction was pooled into, if any.")
    async def market_lot(self, info: Info[Context, None]) -> Annotated[
            "MarketLotSummary", strawberry.lazy("app.market.graphql")] | None:
        record_id = self._row["behavior_record_id"]
        if record_id is None or self._row["kind"] != "BEHAVIOR_CREDIT":
            return None
        from app.market.graphql import MarketLotSummary

        row = await info.context.loaders.market_lot_by_record.load(record_id)
        return MarketLotSummary(_row=row) if row else None


@strawberry.type
class ActivityEdge:
    cursor: str
    node: ActivityEntry


@strawberry.type
class ActivityConnection:
    edges: list[ActivityEdge]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[ActivityEntry]:
        return [edge.node for edge in self.edges]


@strawberry.type(description="An account's authorisation of a data provider for behaviour categories.")
class Consent(Node):
    _row: strawberry.Private[ConsentRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Consent", self._row.id))

    @strawberry.field
    async def provider(self, info: Info[Context, None]) -> Issuer:
        return Issuer(_row=await info.context.loaders.issuer_by_id.load(self._row.provider_issuer_id))

    @strawberry.field
    def categories(self) -> list[BehaviorCategory]:
        return [Category(value) for value in self._row.categories]

    @strawberry.field
    def granted_at(self) -> datetime:
        return self._row.granted_at

    @strawberry.field
    def revoked_at(self) -> datetime | None:
        return self._row.revoked_at

    @strawberry.field(description="True until revoked.")
    def live(self) -> bool:
        return self._row.revoked_at is None


@strawberry.type(description="A personal carbon account in one city.")
class Account(Node):
    _row: strawberry.Private[AccountRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Account", self._row.id))

    @strawberry.field
    def kind(self) -> AccountKind:
        return AccountKind(self._row.kind)

    @strawberry.field
    def status(self) -> AccountStatus:
        return AccountStatus(self._row.status)

    @strawberry.field
    def opened_at(self) -> datetime:
        return self._row.opened_at

    @strawberry.field(description="The linked bank account, masked (e.g. '•••• 1234'); null for guests.")
    def bank_account_mask(self) -> str | None:
        return self._row.bank_account_mask

    @strawberry.field
    async def tenant(self, info: Info[Context, None]) -> Tenant:
        return Tenant(_view=await info.context.loaders.tenant_by_id.load(self._row.tenant_id))

    async def _balances(self, info: Info[Context, None], at: datetime | None) -> dict[str, int]:
        if at is None:
            return await info.context.loaders.balances.load(self._row.id)
        if at.utcoffset() is None:
            raise BadUserInput("`at` needs a UTC offset", argument="at")
        if at > info.context.now:
            raise BadUserInput("`at` is in the future: only history has values", argument="at")
        return await info.context.loaders.balances_at.load((self._row.tenant_id, self._row.id, at))

    @strawberry.field(description="Total carbon reduction contribution; with `at`, as it stood at that moment "
                                  "(everything posted up to it, from the ledger's history).")
    async def contribution(self, info: Info[Context, None], at: datetime | None = None) -> Contribution:
        return Contribution(milligrams=(await self._balances(info, at)).get(CONTRIBUTION, 0))

    @strawberry.field(description="Spendable points, in the city's current point unit; with `at`, as they stood at "
                                  "that moment (everything posted up to it, from the ledger's history).")
    async def balance(self, info: Info[Context, None], at: datetime | None = None) -> PointAmount:
        balances = await self._balances(info, at)
        tenant = await info.context.loaders.tenant_by_id.load(self._row.tenant_id)
        return PointAmount(_minor=balances.get(POINTS, 0), _view=tenant)

    @strawberry.field(description="Per behaviour of the rules in force: credited today (local day), cap, remaining.")
    async def today(self, info: Info[Context, None]) -> list[TodayProgress]:
        loaders = info.context.loaders
        tenant = await loaders.tenant_by_id.load(self._row.tenant_id)
        local_day = info.context.now.astimezone(ZoneInfo(tenant.timezone)).date()
        rules = await loaders.rules_by_version.load(tenant.version_id)
        credited = await loaders.daily_totals.load((self._row.id, local_day))
        month = month_of(local_day)
        monthly = await loaders.month_totals.load_many(
            [(self._row.tenant_id, self._row.id, rule.code, month) for rule in rules])
        return [TodayProgress(behavior=Behavior(_row=rule), _credited_mg=credited.get(rule.code, 0),
                              _cap_mg=rule.cap_mg_per_day, _month_credited_mg=month_credited,
                              _month_cap_mg=rule.cap_mg_per_month) for rule, month_credited in zip(rules, monthly,
                                                                                                     strict=True)]

    @strawberry.field(description="Newest first. At most 100 a page.")
    async def activity(self, info: Info[Context, None], first: int | None = None, after: str | None = None,
                       last: int | None = None, before: str | None = None) -> ActivityConnection:
        scope = CursorScope("activity", self._row.id)
        page = page_request(first, after, last, before, scope=scope, key=TIME_KEY)
        loaders = info.context.loaders
        found = await loaders.activity_pages.load((self._row.id, self._row.tenant_id, page))
        tenant = await loaders.tenant_by_id.load(self._row.tenant_id)
        rows = found[: page.size]
        if page.backwards:
            rows = list(reversed(rows))
        edges = [ActivityEdge(cursor=encode_cursor(row["occurred_at"], row["id"], scope=scope),
                              node=ActivityEntry(_row=row, _decimals=tenant.unit_decimals)) for row in rows]
        return ActivityConnection(edges=edges, page_info=page_info(len(found), page, [e.cursor for e in edges]))

    @strawberry.field(description="The account's redemptions (vouchers, donations, financial services), newest first.")
    async def redemptions(self, info: Info[Context, None], first: int | None = None,
                          after: str | None = None) -> Annotated[
                              "RedemptionConnection", strawberry.lazy("app.rewards.graphql")]:
        from app.rewards.graphql import account_redemptions

        return await account_redemptions(info, self._row.id, self._row.tenant_id, first, after)

    @strawberry.field(description="Every consent ever given, newest first (revoked ones included).")
    async def consents(self, info: Info[Context, None]) -> list[Consent]:
        return [Consent(_row=row) for row in await info.context.loaders.consents.load(self._row.id)]


def _account_id(value: strawberry.ID) -> uuid.UUID | None:
    return try_global_id(value, "Account")


async def _visible_account(info: Info[Context, None], account_id: uuid.UUID | None) -> Account | None:
    if account_id is None:
        return None
    row = await info.context.loaders.account_by_id.load(account_id)
    if row is None or row.tenant_id != info.context.principal.tenant_id:
        return None
    return Account(_row=row)


@strawberry.type
class AccountQuery:
    @strawberry.field(description="An account of the caller's city; null if absent or of another city (a "
                                  "malformed id is BAD_USER_INPUT).",
                      permission_classes=[CITY_APP_OR_ADMIN])
    async def account(self, info: Info[Context, None], id: strawberry.ID) -> Account | None:
        return await _visible_account(info, object_id_of(id, "Account", "id"))


async def _account_node(info: Info[Context, None], account_id: uuid.UUID) -> Account | None:
    if info.context.principal.role.value not in ("CITY_APP", "TENANT_ADMIN"):
        return None
    return await _visible_account(info, account_id)


register_node("Account", _account_node)


async def _city_row(info: Info[Context, None], sql: str, object_id: uuid.UUID) -> dict | None:
    """A row of the caller's city by `sql` (`:t` the tenant, `:id` the object), for its app and operators
    only: what an account's fields show them."""
    principal = info.context.principal
    if principal.role.value not in ("CITY_APP", "TENANT_ADMIN"):
        return None
    row = (await info.context.session.execute(text(sql), {"t": principal.tenant_id, "id": object_id})).mappings().first()
    return None if row is None else dict(row)


async def _activity_entry_node(info: Info[Context, None], transaction_id: uuid.UUID) -> ActivityEntry | None:
    """An entry of an account's activity (a ledger transaction of a citizen's account)."""
    row = await _city_row(info, "SELECT * FROM ledger_transactions WHERE tenant_id = :t AND id = :id "
                                "AND account_id IS NOT NULL", transaction_id)
    if row is None:
        return None
    tenant = await info.context.loaders.tenant_by_id.load(row["tenant_id"])
    return ActivityEntry(_row=row, _decimals=tenant.unit_decimals)


async def _consent_node(info: Info[Context, None], consent_id: uuid.UUID) -> Consent | None:
    row = await _city_row(info, "SELECT * FROM consents WHERE tenant_id = :t AND id = :id", consent_id)
    return None if row is None else Consent(_row=ConsentRow(**row))


register_node("ActivityEntry", _activity_entry_node)
register_node("Consent", _consent_node)


# ------------------------------------------------------------------------------------------ mutations


@strawberry.input
class OpenAccountInput:
    tenant: str = strawberry.field(description="The city's slug; must be the calling app's city.")
    holder_ref: str = strawberry.field(description="The app's identifier for the citizen; stored only as a keyed hash.")
    kind: AccountKind
    accepted_agreement: bool
    bank_account_ref: str | None = strawberry.field(default=None, description="Required for BANK_LINKED; stored hashed and masked.")


@strawberry.type
class OpenAccountPayload:
    account: Account | None = None
    created: bool = strawberry.field(default=False, description="False when the holder already had this account.")
    user_errors: list[AccountUserError] = strawberry.field(default_factory=list)


@strawberry.type
class AccountPayload:
    account: Account | None = None
    user_errors: list[AccountUserError] = strawberry.field(default_factory=list)


@strawberry.input
class LinkBankAccountInput:
    account_id: strawberry.ID
    bank_account_ref: str


@strawberry.input
class AccountStatusInput:
    account_id: strawberry.ID
    reason: str | None = None


@strawberry.input
class GrantConsentInput:
    account_id: strawberry.ID
    provider: str = strawberry.field(description="Slug of the data provider (issuer), e.g. `wuhan-tong`.")
    categories: list[BehaviorCategory]


@strawberry.input
class RevokeConsentInput:
    account_id: strawberry.ID
    provider: str


@strawberry.type
class ConsentPayload:
    consent: Consent | None = None
    account: Account | None = None
    user_errors: list[AccountUserError] = strawberry.field(default_factory=list)


def _actor(info: Info[Context, None]) -> tuple[uuid.UUID, str]:
    principal = info.context.principal
    assert principal.tenant_id is not None
    return principal.tenant_id, principal.client.slug


async def _reload(info: Info[Context, None], account_id: uuid.UUID) -> Account:
    return Account(_row=await info.context.loaders.account_by_id.load(account_id))


@strawberry.type
class AccountMutations:
    @strawberry.mutation(description="Open a personal carbon account (idempotent per holder and city).",
                         permission_classes=[CITY_APP])
    async def open_account(self, info: Info[Context, None], input: OpenAccountInput) -> OpenAccountPayload:
        tenant_id, client = _actor(info)
        if input.tenant != info.context.principal.client.tenant_slug:
            raise Forbidden("a city app opens accounts in its own city only")
        command = service.OpenAccount(tenant_id=tenant_id, holder_ref=input.holder_ref, kind=input.kind.value,
                                      accepted_agreement=input.accepted_agreement,
                                      bank_account_ref=input.bank_account_ref, by_client=client)
        try:
            async with info.context.session.begin_nested():
                opened = await service.open_account(info.context.session, info.context.hasher, command,
                                                    info.context.now)
        except AccountError as error:
            return OpenAccountPayload(user_errors=[AccountUserError.from_domain(error)])
        return OpenAccountPayload(account=Account(_row=opened.account), created=opened.created)

    @strawberry.mutation(description="Link a guest account to a bank account; history is kept.",
                         permission_classes=[CITY_APP])
    async def link_bank_account(self, info: Info[Context, None], input: LinkBankAccountInput) -> AccountPayload:
        tenant_id, client = _actor(info)
        try:
            async with info.context.session.begin_nested():
                row = await service.link_bank_account(info.context.session, info.context.hasher, tenant_id,
                                                      _account_id(input.account_id), input.bank_account_ref, client,
                                                      info.context.now)
        except AccountError as error:
            return AccountPayload(user_errors=[AccountUserError.from_domain(error)])
        return AccountPayload(account=Account(_row=row))

    @strawberry.mutation(description="Freeze an account: it keeps earning but cannot spend.",
                         permission_classes=[CITY_APP_OR_ADMIN])
    async def freeze_account(self, info: Info[Context, None], input: AccountStatusInput) -> AccountPayload:
        return await _set_status(info, input, service.FROZEN)

    @strawberry.mutation(description="Unfreeze a frozen account.", permission_classes=[CITY_APP_OR_ADMIN])
    async def unfreeze_account(self, info: Info[Context, None], input: AccountStatusInput) -> AccountPayload:
        return await _set_status(info, input, service.ACTIVE)

    @strawberry.mutation(description="Close an account: no new credits; its history is kept.",
                         permission_classes=[CITY_APP_OR_ADMIN])
    async def close_account(self, info: Info[Context, None], input: AccountStatusInput) -> AccountPayload:
        return await _set_status(info, input, service.CLOSED)

    @strawberry.mutation(description="Authorise a data provider to submit records of these categories.",
                         permission_classes=[CITY_APP])
    async def grant_consent(self, info: Info[Context, None], input: GrantConsentInput) -> ConsentPayload:
        tenant_id, client = _actor(info)
        account_id = _account_id(input.account_id)
        try:
            async with info.context.session.begin_nested():
                consent = await service.grant_consent(info.context.session, tenant_id, account_id, input.provider,
                                                      [c.value for c in input.categories], client, info.context.now)
        except AccountError as error:
            return ConsentPayload(user_errors=[AccountUserError.from_domain(error)])
        return ConsentPayload(consent=Consent(_row=consent), account=await _reload(info, consent.account_id))

    @strawberry.mutation(description="Withdraw a provider's consent; its history is kept.",
                         permission_classes=[CITY_APP])
    async def revoke_consent(self, info: Info[Context, None], input: RevokeConsentInput) -> ConsentPayload:
        tenant_id, client = _actor(info)
        try:
            async with info.context.session.begin_nested():
                consent = await service.revoke_consent(info.context.session, tenant_id,
                                                       _account_id(input.account_id), input.provider, client,
                                                       info.context.now)
        except AccountError as error:
            return ConsentPayload(user_errors=[AccountUserError.from_domain(error)])
        return ConsentPayload(consent=Consent(_row=consent), account=await _reload(info, consent.account_id))


async def _set_status(info: Info[Context, None], input: AccountStatusInput, status: str) -> AccountPayload:
    tenant_id, client = _actor(info)
    try:
        async with info.context.session.begin_nested():
            row = await service.set_status(info.context.session, tenant_id, _account_id(input.account_id), status,
                                           client, info.context.now, input.reason)
    except AccountError as error:
        return AccountPayload(user_errors=[AccountUserError.from_domain(error)])
    return AccountPayload(account=Account(_row=row))
