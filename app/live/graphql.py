"""Subscriptions (graphql-transport-ws): `accountActivity`, `behaviorOutcomes`, `dashboardTick`.

Thin, like every root field: permission, arguments, then the hub's stream for the caller. Set-up runs
one short transaction under the caller's scope (is the account visible? which issuer is the partner?);
nothing is held while waiting. The hub filters each notification by account, provider or city before
anything is read; each event then reads its data under the subscriber's scope in its own unit of work
(`app.graphql.extensions.EventExecutor`), so a subscriber sees exactly what its queries would.

Payloads are read when the event is delivered, after the commit that caused it: they show the rows as
they are then. Delivery is at most once (ADR 0012): after a reconnect, re-sync with queries.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from app.accounts import repository as accounts_repository
from app.accounts.graphql import Account, ActivityEntry
from app.auth.permissions import CITY_APP_OR_ADMIN, PARTNER
from app.behaviors import repository as behaviors_repository
from app.behaviors.graphql import BehaviorRejectionCode
from app.dashboard import repository as dashboard_repository
from app.dashboard.graphql import DASHBOARD_READERS, DashboardFigures, figures
from app.graphql.context import Context
from app.graphql.ids import to_global_id, try_global_id
from app.live.hub import Hub, Tick
from app.tenants.graphql import Tenant, grams


@strawberry.type(description="What one committed write (or several, when the subscriber was behind) added to "
                             "an account's activity, with the account as it is now.")
class AccountActivityEvent:
    _tenant_id: strawberry.Private[uuid.UUID]
    _account_id: strawberry.Private[uuid.UUID]
    _transaction_ids: strawberry.Private[list[uuid.UUID]]

    @strawberry.field(description="The new entries, oldest first (by occurredAt), as `account.activity` lists them.")
    async def entries(self, info: Info[Context, None]) -> list[ActivityEntry]:
        rows = await accounts_repository.activity_entries(info.context.session, self._account_id, self._transaction_ids)
        tenant = await info.context.loaders.tenant_by_id.load(self._tenant_id)
        return [ActivityEntry(_row=row, _decimals=tenant.unit_decimals) for row in rows]

    @strawberry.field(description="The account now: balance, contribution, today's progress, ...")
    async def account(self, info: Info[Context, None]) -> Account:
        return Account(_row=await info.context.loaders.account_by_id.load(self._account_id))


@strawberry.enum(description="CREDITED or CAPPED when accepted (as recordBehaviors answered), REJECTED (see "
                             "`code`), REVERSED when a tenant admin reversed the record later. DUPLICATE "
                             "submissions change nothing and are not reported.")
class BehaviorOutcomeStatus(enum.Enum):
    CREDITED = "CREDITED"
    CAPPED = "CAPPED"
    REJECTED = "REJECTED"
    REVERSED = "REVERSED"


@strawberry.type(description="The outcome of one record the partner submitted.")
class BehaviorOutcome:
    external_id: str
    status: BehaviorOutcomeStatus
    code: BehaviorRejectionCode | None = strawberry.field(description="Why it was rejected (REJECTED only).")
    record_id: strawberry.ID | None = strawberry.field(description="The accepted record; null for rejections.")
    account_id: strawberry.ID | None = strawberry.field(description="Null when the account was not found.")
    behavior: str | None = strawberry.field(description="The behaviour code submitted.")
    reduction_grams: Decimal = strawberry.field(description="Grams CO2e credited (for REVERSED: taken back).")
    points: Decimal = strawberry.field(description="Whole points credited (for REVERSED: the credit taken back; "
                                                   "the account's activity shows any shortfall).")
    occurred_at: datetime | None = strawberry.field(description="When the behaviour happened (null for rejections).")
    at: datetime = strawberry.field(description="When the outcome was decided: received, or reversed.")


@strawberry.type(description="Outcomes of the partner's records committed together (a batch sends one event per "
                             "chunk of at most 192 outcomes of a kind).")
class BehaviorOutcomesEvent:
    _tenant_id: strawberry.Private[uuid.UUID]
    _provider_id: strawberry.Private[uuid.UUID]
    _items: strawberry.Private[list[tuple[str, tuple[uuid.UUID, ...]]]]

    @strawberry.field(description="In commit order, and in the order of each statement.")
    async def outcomes(self, info: Info[Context, None]) -> list[BehaviorOutcome]:
        session = info.context.session
        record_ids = [one for kind, ids in self._items if kind in ("R", "V") for one in ids]
        rejection_ids = [one for kind, ids in self._items if kind == "J" for one in ids]
        provider = self._provider_id  # the hub filtered by provider already; the reads do it again
        records = await behaviors_repository.records_by_id(session, provider, record_ids) if record_ids else {}
        rejections = (await behaviors_repository.rejections_by_id(session, provider, rejection_ids)
                      if rejection_ids else {})
        decimals = (await info.context.loaders.tenant_by_id.load(self._tenant_id)).unit_decimals
        outcomes = []
        for kind, ids in self._items:
            for one in ids:
                if kind == "J" and (row := rejections.get(one)) is not None:
                    outcomes.append(_rejected(row))
                elif kind != "J" and (row := records.get(one)) is not None:
                    outcomes.append(_accepted(row, decimals, reversed_=kind == "V"))
        return outcomes


def _account_id(account_id: uuid.UUID | None) -> strawberry.ID | None:
    return None if account_id is None else strawberry.ID(to_global_id("Account", account_id))


def _accepted(row: dict, decimals: int, *, reversed_: bool) -> BehaviorOutcome:
    return BehaviorOutcome(
        external_id=row["external_id"], status=BehaviorOutcomeStatus.REVERSED if reversed_ else
        BehaviorOutcomeStatus(row["status"]), code=None,
        record_id=strawberry.ID(to_global_id("BehaviorRecord", row["id"])), account_id=_account_id(row["account_id"]),
        behavior=row["behavior_code"], reduction_grams=grams(row["reduction_mg"]),
        points=Decimal(row["points"]).scaleb(-decimals), occurred_at=row["occurred_at"],
        at=row["reversed_at"] if reversed_ else row["received_at"])


def _rejected(row: dict) -> BehaviorOutcome:
    return BehaviorOutcome(
        external_id=row["external_id"], status=BehaviorOutcomeStatus.REJECTED, code=BehaviorRejectionCode(row["code"]),
        record_id=None, account_id=_account_id(row["account_id"]), behavior=row["behavior_code"],
        reduction_grams=Decimal(0), points=Decimal(0), occurred_at=None, at=row["received_at"])


@strawberry.enum(description="What moved a city's figures: a ledger movement or an account lifecycle event.")
class DashboardChange(enum.Enum):
    BEHAVIOR_CREDIT = "BEHAVIOR_CREDIT"
    BEHAVIOR_REVERSAL = "BEHAVIOR_REVERSAL"
    REDEMPTION = "REDEMPTION"
    DONATION = "DONATION"
    REDEMPTION_CANCELLED = "REDEMPTION_CANCELLED"
    EXPIRY = "EXPIRY"
    ACCOUNT_OPENED = "ACCOUNT_OPENED"
    ACCOUNT_BANK_LINKED = "ACCOUNT_BANK_LINKED"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    ACCOUNT_UNFROZEN = "ACCOUNT_UNFROZEN"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"


_CHANGES = {change.value: change for change in DashboardChange}


@strawberry.type(description="A city's figures changed: at most one tick a second per city. Refetch what you show "
                             "(crossCityDashboard), or read the day's headline figures here.")
class DashboardTick:
    _tick: strawberry.Private[Tick]

    @strawberry.field
    async def tenant(self, info: Info[Context, None]) -> Tenant:
        return Tenant(_view=await info.context.loaders.tenant_by_id.load(self._tick.tenant_id))

    @strawberry.field(description="The last change this tick reports was committed by then.")
    def at(self) -> datetime:
        return self._tick.at

    @strawberry.field(description="What changed since the previous tick.")
    def changes(self) -> list[DashboardChange]:
        return sorted((_CHANGES[kind] for kind in self._tick.kinds if kind in _CHANGES), key=lambda c: c.value)

    @strawberry.field(description="The city's local date at `at`.")
    async def local_date(self, info: Info[Context, None]) -> date:
        view = await info.context.loaders.tenant_by_id.load(self._tick.tenant_id)
        return self._tick.at.astimezone(ZoneInfo(view.timezone)).date()

    @strawberry.field(description="The city's headline figures for its local date (as crossCityDashboard gives for "
                                  "that one day, small groups suppressed alike), read when the tick is delivered.")
    async def today(self, info: Info[Context, None]) -> DashboardFigures:
        view = await info.context.loaders.tenant_by_id.load(self._tick.tenant_id)
        day = self._tick.at.astimezone(ZoneInfo(view.timezone)).date()
        head = await dashboard_repository.headline(info.context.session, [view.id], day, day)
        kinds = await dashboard_repository.kinds(info.context.session, [view.id], day, day)
        return figures(view, head[view.id], kinds.get(view.id, {}))


def _error(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


def _hub(info: Info[Context, None]) -> Hub:
    if info.context.hub is None:
        raise _error("live updates are not available here", "UNAVAILABLE")
    return info.context.hub


def _disconnect(info: Info[Context, None]):  # type: ignore[no-untyped-def]
    return info.context.disconnect or (lambda code, reason: None)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="New activity of an account of the caller's city (credits, reversals, "
                                         "redemptions, donations, cancellations, expiry). Another city's account is "
                                         "ACCOUNT_NOT_FOUND, as a missing one.",
                             permission_classes=[CITY_APP_OR_ADMIN])
    async def account_activity(self, info: Info[Context, None],
                               account_id: strawberry.ID) -> AsyncGenerator[AccountActivityEvent, None]:
        hub, context = _hub(info), info.context
        tenant_id, wanted = context.principal.tenant_id, try_global_id(account_id, "Account")
        found = None
        if wanted is not None:
            async with context.database.transaction(context.principal.scope) as session:
                found = (await accounts_repository.accounts_by_id(session, [wanted])).get(wanted)
        if found is None or found.tenant_id != tenant_id:
            raise _error("no such account in this city", "ACCOUNT_NOT_FOUND")
        return _activity(hub.account_activity(found.tenant_id, found.id, _disconnect(info)), found.tenant_id, found.id)

    @strawberry.subscription(description="Outcomes of the behaviour records the calling partner submitted: accepted, "
                                         "rejected, and later reversed.", permission_classes=[PARTNER])
    async def behavior_outcomes(self, info: Info[Context, None]) -> AsyncGenerator[BehaviorOutcomesEvent, None]:
        hub, context = _hub(info), info.context
        tenant_id, slug = context.principal.tenant_id, context.principal.client.issuer_slug
        async with context.database.transaction(context.principal.scope) as session:
            provider_id = await behaviors_repository.issuer_id(session, tenant_id, slug) if slug else None
        if provider_id is None:
            raise _error(f"the calling client's issuer {slug!r} is not active", "PROVIDER_UNKNOWN")
        return _outcomes(hub.behavior_outcomes(tenant_id, provider_id, _disconnect(info)), tenant_id, provider_id)

    @strawberry.subscription(description="A tick when a city's dashboard figures change, at most one a second per "
                                         "city: regulators every city, a city's app and operators their own.",
                             permission_classes=[DASHBOARD_READERS])
    async def dashboard_tick(self, info: Info[Context, None]) -> AsyncGenerator[DashboardTick, None]:
        principal = info.context.principal
        cities = None if principal.is_regulator else frozenset({principal.tenant_id})
        return _ticks(_hub(info).dashboard_ticks(cities, _disconnect(info)))


async def _activity(items: AsyncIterator[list[uuid.UUID]], tenant_id: uuid.UUID,
                    account_id: uuid.UUID) -> AsyncIterator[AccountActivityEvent]:
    async with aclosing(items):  # type: ignore[type-var]
        async for transactions in items:
            yield AccountActivityEvent(_tenant_id=tenant_id, _account_id=account_id, _transaction_ids=transactions)


async def _outcomes(items: AsyncIterator[list[tuple[str, tuple[uuid.UUID, ...]]]], tenant_id: uuid.UUID,
                    provider_id: uuid.UUID) -> AsyncIterator[BehaviorOutcomesEvent]:
    async with aclosing(items):  # type: ignore[type-var]
        async for batch in items:
            yield BehaviorOutcomesEvent(_tenant_id=tenant_id, _provider_id=provider_id, _items=batch)


async def _ticks(items: AsyncIterator[list[Tick]]) -> AsyncIterator[DashboardTick]:
    async with aclosing(items):  # type: ignore[type-var]
        async for ticks in items:
            for tick in ticks:
                yield DashboardTick(_tick=tick)
