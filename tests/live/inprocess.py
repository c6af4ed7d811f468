"""Subscriptions in process, inside a test's rolled-back transaction (the walks use this).

A rolled-back test commits nothing, so PostgreSQL never notifies: the test hands the app's hub the
notices a commit would have sent (`tests/live/test_subscriptions.py` covers the real path, committed
writes through two server processes)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import text

from app.db.session import TenantScope
from app.live.hub import Hub
from app.live.notices import AccountEventsNotice, LedgerNotice, Notice, OutcomeNotice
from app.tenants.models import tenant_id_for
from tests.live.wsclient import TIMEOUT, AsgiClient


async def subscription_body(api: Any, document: str, *, as_: str, variables: dict[str, Any] | None = None,
                            notices: list[Notice] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """Subscribe as client `as_`; once the subscription runs, deliver `notices` to the app's hub. The
    first message answered, shaped as an HTTP response body: `{"data": ...}` or `{"errors": [...]}`."""
    hub: Hub = api.app.state.live_hub
    async with AsgiClient(api.app) as client:
        ack = await client.init(api.registry.issue(as_, 600))
        assert ack["type"] == "connection_ack", ack
        before = subscriptions(hub)
        await client.subscribe("1", document, variables)
        if await started(client, hub, before):
            for notice in notices:
                hub.deliver(notice)
        message = await client.receive()
    if message["type"] == "error":
        return {"errors": message["payload"]}
    assert message["type"] == "next", message
    return message["payload"]


def subscriptions(hub: Hub) -> int:
    return sum(1 for _ in hub.subscribers())


async def started(client: AsgiClient, hub: Hub, before: int) -> bool:
    """Wait until the client's latest subscription runs in the hub (True) or it was answered (False)."""
    deadline = time.monotonic() + TIMEOUT
    while client.from_app.empty():
        if subscriptions(hub) > before:
            return True
        assert time.monotonic() < deadline, "the subscription neither started nor failed"
        await asyncio.sleep(0.01)
    return False


async def ledger_notice(database: Any, slug: str, account_id: uuid.UUID) -> LedgerNotice:
    """A notice naming the account's ledger transactions (as their commits would have sent)."""
    tenant_id = tenant_id_for(slug)
    async with database.transaction(TenantScope.for_tenant(tenant_id)) as session:
        rows = (await session.execute(text("SELECT id, kind FROM ledger_transactions WHERE account_id = :a"),
                                      {"a": account_id})).all()
    assert rows, "the account has no ledger transaction"
    return LedgerNotice(tenant_id, frozenset(row.kind for row in rows), tuple((account_id, row.id) for row in rows))


async def record_notice(database: Any, slug: str, provider: str, record_id: uuid.UUID) -> OutcomeNotice:
    tenant_id = tenant_id_for(slug)
    async with database.transaction(TenantScope.for_tenant(tenant_id)) as session:
        provider_id = (await session.execute(text("SELECT id FROM issuers WHERE tenant_id = :t AND slug = :s"),
                                             {"t": tenant_id, "s": provider})).scalar_one()
    return OutcomeNotice("R", tenant_id, provider_id, (record_id,))


def city_notice(slug: str) -> AccountEventsNotice:
    return AccountEventsNotice(tenant_id_for(slug), frozenset({"OPENED"}))
