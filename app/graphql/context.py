"""Per-request GraphQL context: the caller, the language, the unit of work and the DataLoaders.

The session is opened by the `UnitOfWork` extension around the operation, already scoped to the
caller's tenant (row-level security). DataLoaders are created per request, so nothing cached in one
request is ever seen by another.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from strawberry.dataloader import DataLoader

from app.auth.principals import Principal
from app.db.session import Database
from app.tenants import repository as tenants_repository
from app.accounts import repository as accounts_repository
from app.accounts.hashing import HolderHasher
from app.accounts.models import Account, Consent
from app.ledger.service import donation_account_code
from app.ledger.signing import Signer
from app.rewards import repository as rewards_repository
from app.tenants.models import BehaviorRule, Issuer, Reward

if TYPE_CHECKING:
    from app.live.hub import Hub

Language = Literal["en", "zh"]


def negotiate_language(accept_language: str | None) -> Language:
    """`zh...` as the most preferred language gives Chinese; anything else English (RFC 9110 q-values)."""
    best, best_q = "en", -1.0
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        if not tag:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:  # the first of equal preference wins
            best, best_q = tag.lower(), q
    return "zh" if best.startswith("zh") else "en"


@dataclass
class Loaders:
    context: Context

    def _session(self) -> AsyncSession:
        return self.context.session

    @cached_property
    def issuers_by_tenant(self) -> DataLoader[uuid.UUID, list[Issuer]]:
        async def load(keys: list[uuid.UUID]) -> list[list[Issuer]]:
            found = await tenants_repository.issuers_for_tenants(self._session(), keys)
            return [found.get(key, []) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def issuer_by_id(self) -> DataLoader[uuid.UUID, Issuer | None]:
        async def load(keys: list[uuid.UUID]) -> list[Issuer | None]:
            found = await tenants_repository.issuers_by_id(self._session(), keys)
            return [found.get(key) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def rules_by_version(self) -> DataLoader[uuid.UUID, list[BehaviorRule]]:
        async def load(keys: list[uuid.UUID]) -> list[list[BehaviorRule]]:
            found = await tenants_repository.rules_for_versions(self._session(), keys)
            return [found.get(key, []) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def tenant_by_id(self) -> DataLoader[uuid.UUID, tenants_repository.TenantView | None]:
        async def load(keys: list[uuid.UUID]) -> list[tenants_repository.TenantView | None]:
            found = {view.id: view for view in
                     await tenants_repository.current_tenants(self._session(), self.context.now, ids=keys)}
            return [found.get(key) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def market_lots_by_tenant(self) -> DataLoader[uuid.UUID, list[dict[str, Any]]]:
        async def load(keys: list[uuid.UUID]) -> list[list[dict[str, Any]]]:
            from app.dashboard.repository import market_lots

            found = await market_lots(self._session(), keys)
            return [found.get(key, []) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def reward_by_id(self) -> DataLoader[uuid.UUID, Reward | None]:
        async def load(keys: list[uuid.UUID]) -> list[Reward | None]:
            found = await tenants_repository.rewards_by_id(self._session(), keys)
            return [found.get(key) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def reward_pages(self) -> DataLoader[tuple[uuid.UUID, tenants_repository.RewardPageQuery], list[Reward]]:
        """Keyed by (tenant, page query): tenants asking the same page share one statement."""
        async def load(keys: list[tuple[uuid.UUID, tenants_repository.RewardPageQuery]]) -> list[list[Reward]]:
            by_query: dict[tenants_repository.RewardPageQuery, list[uuid.UUID]] = {}
            for tenant_id, query in keys:
                by_query.setdefault(query, []).append(tenant_id)
            results: dict[tuple[uuid.UUID, tenants_repository.RewardPageQuery], list[Reward]] = {}
            for query, tenant_ids in by_query.items():
                pages = await tenants_repository.reward_pages(self._session(), tenant_ids, query)
                for tenant_id in tenant_ids:
                    results[(tenant_id, query)] = pages.get(tenant_id, [])
            return [results[key] for key in keys]
        return DataLoader(load_fn=load)


    @cached_property
    def account_by_id(self) -> DataLoader[uuid.UUID, Account | None]:
        async def load(keys: list[uuid.UUID]) -> list[Account | None]:
            found = await accounts_repository.accounts_by_id(self._session(), keys)
            return [found.get(key) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def balances(self) -> DataLoader[uuid.UUID, dict[str, int]]:
        async def load(keys: list[uuid.UUID]) -> list[dict[str, int]]:
            found = await accounts_repository.balances(self._session(), keys)
            return [found.get(key, {}) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def balances_at(self) -> DataLoader[tuple[uuid.UUID, uuid.UUID, datetime], dict[str, int]]:
        """Balances as they stood at a moment (`balance(at:)`, `contribution(at:)`): one read for both."""
        async def load(keys: list[tuple[uuid.UUID, uuid.UUID, datetime]]) -> list[dict[str, int]]:
            from app.ledger.service import balances_at

            return await balances_at(self._session(), keys)
        return DataLoader(load_fn=load)

    @cached_property
    def consents(self) -> DataLoader[uuid.UUID, list[Consent]]:
        async def load(keys: list[uuid.UUID]) -> list[list[Consent]]:
            found = await accounts_repository.consents_of(self._session(), keys)
            return [found.get(key, []) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def daily_totals(self) -> DataLoader[tuple[uuid.UUID, date], dict[str, int]]:
        async def load(keys: list[tuple[uuid.UUID, date]]) -> list[dict[str, int]]:
            found = await accounts_repository.daily_totals_on(self._session(), keys)
            return [found.get(key, {}) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def month_totals(self) -> DataLoader[tuple[uuid.UUID, uuid.UUID, str, date], int]:
        """Credited mg of (tenant, account, behaviour, first day of a local month): the sums ingestion caps
        by (`behaviors.repository.monthly_totals`), one statement per tenant."""
        async def load(keys: list[tuple[uuid.UUID, uuid.UUID, str, date]]) -> list[int]:
            from app.behaviors.repository import monthly_totals

            found: dict[tuple[uuid.UUID, str, date], int] = {}
            for tenant_id in {key[0] for key in keys}:
                found |= await monthly_totals(self._session(), tenant_id,
                                              [key[1:] for key in keys if key[0] == tenant_id])
            return [found.get(key[1:], 0) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def rule_by_record(self) -> DataLoader[uuid.UUID, BehaviorRule | None]:
        async def load(keys: list[uuid.UUID]) -> list[BehaviorRule | None]:
            found = await tenants_repository.rules_of_records(self._session(), keys)
            return [found.get(key) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def market_lot_by_record(self) -> DataLoader[uuid.UUID, dict | None]:
        async def load(keys: list[uuid.UUID]) -> list[dict | None]:
            from app.market.service import LOT_COLUMNS, LOTS

            rows = await self._session().execute(text(
                f"SELECT m.record_id, {LOT_COLUMNS} FROM market_lot_records m JOIN ({LOTS}) ON l.id = m.lot_id "
                "WHERE m.record_id = ANY(:ids)"), {"ids": keys})
            found = {row["record_id"]: dict(row) for row in rows.mappings()}
            return [found.get(key) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def retirements_by_lot(self) -> DataLoader[uuid.UUID, list[dict]]:
        async def load(keys: list[uuid.UUID]) -> list[list[dict]]:
            rows = await self._session().execute(text(
                "SELECT * FROM market_retirements WHERE lot_id = ANY(:ids) ORDER BY retired_at, serial_from"),
                {"ids": keys})
            found: dict[uuid.UUID, list[dict]] = {}
            for row in rows.mappings():
                found.setdefault(row["lot_id"], []).append(dict(row))
            return [found.get(key, []) for key in keys]
        return DataLoader(load_fn=load)

    def _account_pages(self, fetch: Callable[[uuid.UUID, list[uuid.UUID], Any], Awaitable[dict[uuid.UUID, list]]]
                       ) -> DataLoader[tuple[uuid.UUID, uuid.UUID, Any], list]:
        """A loader keyed by (account, tenant, page request): accounts asking the same page of the same
        tenant share one statement (`fetch(tenant, accounts, page)`, which returns rows per account)."""
        async def load(keys: list[tuple[uuid.UUID, uuid.UUID, Any]]) -> list[list]:
            groups: dict[tuple[uuid.UUID, Any], list[uuid.UUID]] = {}
            for account_id, tenant_id, page in keys:
                groups.setdefault((tenant_id, page), []).append(account_id)
            results: dict[tuple[uuid.UUID, uuid.UUID, Any], list] = {}
            for (tenant_id, page), account_ids in groups.items():
                found = await fetch(tenant_id, account_ids, page)
                for account_id in account_ids:
                    results[(account_id, tenant_id, page)] = found.get(account_id, [])
            return [results[key] for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def activity_pages(self) -> DataLoader[tuple[uuid.UUID, uuid.UUID, Any], list[dict[str, Any]]]:
        async def fetch(tenant_id: uuid.UUID, account_ids: list[uuid.UUID], page: Any) -> dict[uuid.UUID, list]:
            found = await accounts_repository.activity_pages(
                self._session(), tenant_id, account_ids, after=page.after, before=page.before,
                limit=page.size + 1, backwards=page.backwards)
            return {account_id: sorted(rows, key=lambda row: (row["occurred_at"], row["id"]),
                                       reverse=not page.backwards) for account_id, rows in found.items()}
        return self._account_pages(fetch)


    @cached_property
    def issuer_id_by_slug(self) -> DataLoader[tuple[uuid.UUID, str], uuid.UUID | None]:
        async def load(keys: list[tuple[uuid.UUID, str]]) -> list[uuid.UUID | None]:
            found = await tenants_repository.issuer_ids_by_slug(self._session(), keys)
            return [found.get(key) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def redemption_by_id(self) -> DataLoader[uuid.UUID, Any]:
        async def load(keys: list[uuid.UUID]) -> list[Any]:
            found = await rewards_repository.redemptions_by_id(self._session(), keys)
            return [found.get(key) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def redemption_pages(self) -> DataLoader[tuple[uuid.UUID, uuid.UUID, Any], list[Any]]:
        async def fetch(tenant_id: uuid.UUID, account_ids: list[uuid.UUID], page: Any) -> dict[uuid.UUID, list]:
            return await rewards_repository.redemption_pages(self._session(), tenant_id, account_ids,
                                                             after=page.after, limit=page.size + 1)
        return self._account_pages(fetch)

    @cached_property
    def taken_since(self) -> DataLoader[tuple[uuid.UUID, uuid.UUID, datetime | None], int]:
        async def load(keys: list[tuple[uuid.UUID, uuid.UUID, datetime | None]]) -> list[int]:
            found = await rewards_repository.taken_since(self._session(), keys)
            return [found.get(key, 0) for key in keys]
        return DataLoader(load_fn=load)

    @cached_property
    def donation_points(self) -> DataLoader[tuple[uuid.UUID, str], int]:
        async def load(keys: list[tuple[uuid.UUID, str]]) -> list[int]:
            codes = [(tenant_id, donation_account_code(code)) for tenant_id, code in keys]
            found = await rewards_repository.donation_totals(self._session(), codes)
            return [found.get(code, 0) for code in codes]
        return DataLoader(load_fn=load)


@dataclass
class Context:
    request: Request | None
    response: Any
    principal: Principal
    database: Database
    hasher: HolderHasher | None = None
    signer: Signer | None = None  # the platform's key: signs retirement certificates
    language: Language = "en"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    _session: AsyncSession | None = None
    # Resolvers still running that the unit of work waits for before it ends (UnitOfWork.resolve).
    pending: set[asyncio.Future[object]] = field(default_factory=set)
    # Live updates (app.live): the process's hub, and on a websocket, how to close the connection.
    hub: Hub | None = None
    disconnect: Callable[[int, str], None] | None = None

    def for_event(self) -> Context:
        """A fresh context for one subscription event (its own time, DataLoaders and unit of work), as
        for one HTTP request of the same caller."""
        return Context(request=self.request, response=None, principal=self.principal, database=self.database,
                       hasher=self.hasher, language=self.language, hub=self.hub, disconnect=self.disconnect)

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("no unit of work: the UnitOfWork extension opens it around each operation")
        return self._session

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self)
