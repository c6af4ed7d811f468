"""GraphQL of rights: redeem (rewards, donations, financial services), cancel, eligibility, entitlements."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import strawberry
from sqlalchemy import text
from strawberry.types import Info

from app.accounts.hashing import normalize_bank_ref
from app.auth.permissions import CITY_APP, PARTNER
from app.graphql.context import Context
from app.graphql.errors import BadUserInput
from app.graphql.ids import object_id_of, to_global_id, try_global_id
from app.graphql.node import Node, register_node
from app.graphql.pagination import TIME_KEY, CursorScope, PageInfo, encode_cursor, page_request
from app.graphql.pagination import page_info as page_info_of
from app.rewards import repository as repo
from app.rewards import service
from app.rewards.errors import RewardError
from app.rewards.models import Redemption as RedemptionRow
from app.tenants.graphql import PointAmount, Reward, RewardErrorCodeEnum



@strawberry.enum
class RedemptionStatus(enum.Enum):
    FULFILLED = "FULFILLED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class EntitlementStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"


@strawberry.type(description="A business failure of a redemption mutation.")
class RewardUserError:
    code: RewardErrorCodeEnum
    field: list[str] | None
    message: str

    @classmethod
    def from_domain(cls, error: RewardError) -> RewardUserError:
        return cls(code=error.code, field=error.field, message=error.message)


@strawberry.type(description="A redemption of a catalogue item: a reward, a donation or a financial service.")
class Redemption(Node):
    _row: strawberry.Private[RedemptionRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Redemption", self._row.id))

    @strawberry.field
    def status(self) -> RedemptionStatus:
        return RedemptionStatus(self._row.status)

    @strawberry.field(description="For rewards: the code the citizen shows or enters; null for other kinds.")
    def voucher_code(self) -> str | None:
        return self._row.voucher_code

    @strawberry.field
    def quantity(self) -> int:
        return self._row.quantity

    @strawberry.field(description="Points spent (given back if cancelled).")
    async def points(self, info: Info[Context, None]) -> PointAmount:
        tenant = await info.context.loaders.tenant_by_id.load(self._row.tenant_id)
        return PointAmount(_minor=self._row.points, _view=tenant)

    @strawberry.field
    async def reward(self, info: Info[Context, None]) -> Reward:
        return Reward(_row=await info.context.loaders.reward_by_id.load(self._row.reward_id))

    @strawberry.field
    def created_at(self) -> datetime:
        return self._row.created_at

    @strawberry.field(description="Until when `cancelRedemption` is allowed; null if the item cannot be cancelled.")
    def cancellable_until(self) -> datetime | None:
        return self._row.cancellable_until

    @strawberry.field
    def cancelled_at(self) -> datetime | None:
        return self._row.cancelled_at


@strawberry.type(description="A financial-service right an account holds, e.g. a preferential loan-rate tier.")
class Entitlement(Node):
    _row: strawberry.Private[dict]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Entitlement", self._row["id"]))

    @strawberry.field(description="The holder's account id (opaque).")
    def account_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Account", self._row["account_id"]))

    @strawberry.field
    async def reward(self, info: Info[Context, None]) -> Reward:
        return Reward(_row=await info.context.loaders.reward_by_id.load(self._row["reward_id"]))

    @strawberry.field
    def status(self) -> EntitlementStatus:
        return EntitlementStatus(self._row["status"])

    @strawberry.field
    def granted_at(self) -> datetime:
        return self._row["granted_at"]

    @strawberry.field
    def valid_to(self) -> datetime | None:
        return self._row["valid_to"]


@strawberry.type
class RedemptionEdge:
    cursor: str
    node: Redemption


@strawberry.type
class RedemptionConnection:
    edges: list[RedemptionEdge]
    page_info: PageInfo


async def account_redemptions(info: Info[Context, None], account_id: uuid.UUID, tenant_id: uuid.UUID,
                              first: int | None, after: str | None) -> RedemptionConnection:
    scope = CursorScope("redemptions", account_id)
    page = page_request(first, after, None, None, scope=scope, key=TIME_KEY)
    found = await info.context.loaders.redemption_pages.load((account_id, tenant_id, page))
    edges = [RedemptionEdge(cursor=encode_cursor(row.created_at, row.id, scope=scope), node=Redemption(_row=row))
             for row in found[: page.size]]
    return RedemptionConnection(edges=edges, page_info=page_info_of(len(found), page, [e.cursor for e in edges]))


@strawberry.type
class EntitlementEdge:
    cursor: str
    node: Entitlement


@strawberry.type
class EntitlementConnection:
    edges: list[EntitlementEdge]
    page_info: PageInfo


@strawberry.type
class RewardQuery:
    @strawberry.field(description="Entitlements granted by the calling partner's own products, oldest first. "
                                  "Filter by account or by the holder's bank account reference.",
                      permission_classes=[PARTNER])
    async def entitlements(self, info: Info[Context, None], first: int | None = None, after: str | None = None,
                           account_id: strawberry.ID | None = None, bank_account_ref: str | None = None,
                           status: EntitlementStatus | None = None) -> EntitlementConnection:
        principal = info.context.principal
        scope = CursorScope("entitlements", (principal.tenant_id, principal.client.issuer_slug))
        page = page_request(first, after, None, None, scope=scope, key=TIME_KEY)
        session = info.context.session
        sponsor = await info.context.loaders.issuer_id_by_slug.load((principal.tenant_id, principal.client.issuer_slug))
        account_ids: list[uuid.UUID] | None = None
        if account_id is not None:
            account_ids = [object_id_of(account_id, "Account", "accountId")]
        if bank_account_ref is not None:
            normalized = normalize_bank_ref(bank_account_ref)
            if normalized is None:
                raise BadUserInput("`bankAccountRef` must be 6 to 34 letters and digits", argument="bankAccountRef")
            by_bank = await repo.accounts_by_bank_hash(
                session, principal.tenant_id, info.context.hasher.bank_account_hash(principal.tenant_id, normalized))
            account_ids = by_bank if account_ids is None else [a for a in account_ids if a in by_bank]
        rows = [] if sponsor is None else await repo.entitlement_page(
            session, principal.tenant_id, sponsor, account_ids=account_ids, status=status.value if status else None,
            after=page.after, limit=page.size + 1)
        edges = [EntitlementEdge(cursor=encode_cursor(row["granted_at"], row["id"], scope=scope), node=Entitlement(_row=row))
                 for row in rows[: page.size]]
        return EntitlementConnection(edges=edges, page_info=page_info_of(len(rows), page, [e.cursor for e in edges]))


@strawberry.input
class RedeemRewardInput:
    account_id: strawberry.ID
    reward_id: strawberry.ID
    quantity: int = 1
    idempotency_key: str = strawberry.field(description="Client-chosen key: a replay returns the first result.")


@strawberry.type
class RedeemRewardPayload:
    redemption: Redemption | None = None
    balance: PointAmount | None = strawberry.field(default=None, description="The account's balance afterwards.")
    user_errors: list[RewardUserError] = strawberry.field(default_factory=list)


@strawberry.input
class CancelRedemptionInput:
    redemption_id: strawberry.ID
    reason: str | None = None


async def _payload(info: Info[Context, None], result: service.Redeemed) -> RedeemRewardPayload:
    tenant = await info.context.loaders.tenant_by_id.load(result.redemption.tenant_id)
    return RedeemRewardPayload(redemption=Redemption(_row=result.redemption),
                               balance=PointAmount(_minor=result.balance_points, _view=tenant))


@strawberry.type
class RewardMutations:
    @strawberry.mutation(description="Redeem a catalogue item for an account: a reward, a public-welfare donation "
                                     "(points go to the project) or a financial service (an entitlement the "
                                     "sponsoring bank can see). Idempotent per idempotencyKey.",
                         permission_classes=[CITY_APP])
    async def redeem_reward(self, info: Info[Context, None], input: RedeemRewardInput) -> RedeemRewardPayload:
        principal = info.context.principal
        command = service.Redeem(
            tenant_id=principal.tenant_id, account_id=try_global_id(input.account_id, "Account"),
            reward_id=try_global_id(input.reward_id, "Reward"), quantity=input.quantity,
            idempotency_key=input.idempotency_key, by_client=principal.client.slug)
        try:  # the service writes nothing when it raises (its own savepoint)
            result = await service.redeem(info.context.session, command, info.context.now)
        except RewardError as error:
            return RedeemRewardPayload(user_errors=[RewardUserError.from_domain(error)])
        return await _payload(info, result)

    @strawberry.mutation(description="Cancel a redemption within the item's cancellation window: points and stock "
                                     "come back through reversing postings.", permission_classes=[CITY_APP])
    async def cancel_redemption(self, info: Info[Context, None], input: CancelRedemptionInput) -> RedeemRewardPayload:
        principal = info.context.principal
        try:  # the service writes nothing when it raises (its own savepoint)
            result = await service.cancel(info.context.session, principal.tenant_id,
                                          try_global_id(input.redemption_id, "Redemption"),
                                          principal.client.slug, info.context.now, input.reason)
        except RewardError as error:
            return RedeemRewardPayload(user_errors=[RewardUserError.from_domain(error)])
        return await _payload(info, result)


async def _redemption_node(info: Info[Context, None], redemption_id: uuid.UUID) -> Redemption | None:
    principal = info.context.principal
    if principal.role.value not in ("CITY_APP", "TENANT_ADMIN"):
        return None
    row = await info.context.loaders.redemption_by_id.load(redemption_id)
    return Redemption(_row=row) if row and row.tenant_id == principal.tenant_id else None


register_node("Redemption", _redemption_node)


async def _entitlement_node(info: Info[Context, None], entitlement_id: uuid.UUID) -> Entitlement | None:
    """An entitlement, for the bank whose product granted it only (as `entitlements` lists them)."""
    principal = info.context.principal
    if principal.role.value != "PARTNER" or principal.tenant_id is None:
        return None
    sponsor = await info.context.loaders.issuer_id_by_slug.load((principal.tenant_id, principal.client.issuer_slug))
    if sponsor is None:
        return None
    row = (await info.context.session.execute(text(
        "SELECT * FROM entitlements WHERE tenant_id = :t AND id = :id AND sponsor_issuer_id = :s"),
        {"t": principal.tenant_id, "id": entitlement_id, "s": sponsor})).mappings().first()
    return None if row is None else Entitlement(_row=dict(row))


register_node("Entitlement", _entitlement_node)


