"""Group commit for redemptions: the ones that queue up under load go to the database together.

At most `in_flight` calls per tenant run at once (per server process; `CARBON_REDEEM_IN_FLIGHT`, 4),
and at most as many in all as the process has connections for them (`Database.fetchval`'s). A redemption
arriving while its tenant's calls are all busy waits in the tenant's queue; the next free slot takes
everything queued (up to `max_batch`) and sends it as one `carbon_redeem_batch()` call (migration
0005): one round trip, one transaction, one commit. A slot takes its batch only once it has a
connection, so when many cities share few connections their redemptions wait in the queues, where
they batch, not one by one for a connection. Below the limits a redemption goes alone, at once, so
light load sees no added latency. Each item is decided by `carbon_redeem_in_tenant()`, as a single
redemption would be, in an order that cannot deadlock (see the migration).

Why: a redemption's cost is mostly per transaction (round trip, statement start-up, WAL flush at
commit; and the commits of notifying transactions are serialised, ADR 0012) and per call on the
server (pool, protocol); a busy city pays those once per batch. TigerBeetle batches for the same
reason.

Failure: a batch is all or nothing. If it fails for any reason (an idempotency key raced by a request
for another account, a deadlock, one item the database refuses), its items run again one by one, each
with its own retry, so one bad item fails only its own request. Every request of a batch gets an
answer, even when the request that drove the batch is cancelled (then an error: outcome unknown, and
a retry with the same idempotency key replays a committed one).
"""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.session import Database

REDEEM_ONE = "SELECT carbon_redeem_in_tenant($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
REDEEM_MANY = ("SELECT carbon_redeem_batch($1, $2::uuid[], $3::uuid[], $4::int[], $5::text[], $6::text[], "
               "$7::text[], $8::timestamptz[], $9::text[], $10::uuid[], $11::uuid[])")
_RETRYABLE = {"23505", "40P01"}  # unique violation, deadlock detected


@dataclass(frozen=True)
class RedeemCall:
    """The arguments of one `carbon_redeem_in_tenant()` call after the tenant."""

    account_id: uuid.UUID
    reward_id: uuid.UUID
    quantity: int
    key: str
    request_hash: str
    client: str
    now: datetime
    voucher: str
    redemption_id: uuid.UUID
    transaction_id: uuid.UUID


@dataclass
class _Tenant:
    queue: deque[tuple[RedeemCall, asyncio.Future[Any]]] = field(default_factory=deque)
    busy: int = 0


class RedeemBatcher:
    def __init__(self, database: Database, *, in_flight: int = 4, max_batch: int = 64,
                 connections: int | None = None) -> None:
        self.database = database
        # A test's single connection runs one statement at a time.
        self.in_flight = 1 if isinstance(database.bind, AsyncConnection) else in_flight
        self.max_batch = max_batch
        self._connections = asyncio.Semaphore(connections or database.fetchval_connections)
        self._tenants: dict[uuid.UUID, _Tenant] = defaultdict(_Tenant)
        self._tasks: set[asyncio.Task[None]] = set()

    async def redeem(self, tenant_id: uuid.UUID, call: RedeemCall) -> dict[str, Any] | None:
        """The verdict of `carbon_redeem_in_tenant()` for this call (None: no configuration in force).

        With a slot and a connection free, the caller itself sends what is queued (its own call first in
        line): no task and no extra hop on the hot path. With a slot but no connection free, a drain
        task waits for one and the caller waits for its answer (which any drain of its city may give).
        With no slot free, it waits for a running drain to take it. A caller cancelled before its call
        was taken withdraws it; once taken, it runs and its answer is dropped."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        state = self._tenants[tenant_id]
        state.queue.append((call, future))
        try:
            if state.busy < self.in_flight and not self._connections.locked():
                state.busy += 1
                await self._drain(tenant_id, state)
            elif state.busy < self.in_flight:
                self._spawn(tenant_id, state)
            return await future
        except asyncio.CancelledError:
            future.cancel()  # still queued: no drain will send it (drains skip settled calls)
            raise

    def _spawn(self, tenant_id: uuid.UUID, state: _Tenant) -> None:
        state.busy += 1
        task = asyncio.get_running_loop().create_task(self._drain(tenant_id, state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, tenant_id: uuid.UUID, state: _Tenant) -> None:
        """Send what the tenant has queued by the time a connection is free (`busy` counted by the caller)."""
        batch: list[tuple[RedeemCall, asyncio.Future[Any]]] = []
        try:
            async with self._connections:
                while state.queue and len(batch) < self.max_batch:
                    item = state.queue.popleft()
                    if not item[1].done():  # a caller that went away before its call was sent
                        batch.append(item)
                if batch:
                    await self._run(tenant_id, batch)
        finally:
            # Whatever happened (even the caller cancelled mid-batch), every request of the batch gets an
            # answer: one not settled by now gets an error (its outcome is unknown: the client retries
            # with the same idempotency key, which replays it if it was committed).
            for _, future in batch:
                _settle(future, error=RuntimeError("the redemption batch was interrupted"))
            state.busy -= 1
            if state.queue and state.busy < self.in_flight:  # what queued meanwhile: a task of its own
                self._spawn(tenant_id, state)

    async def _run(self, tenant_id: uuid.UUID, batch: list[tuple[RedeemCall, asyncio.Future[Any]]]) -> None:
        if len(batch) > 1:
            try:
                raw = await self.database.fetchval(REDEEM_MANY, tenant_id, *_columns([call for call, _ in batch]))
            except Exception:  # noqa: BLE001 - one item's failure must not fail the others: alone, each
                pass
            else:
                for (_, future), verdict in zip(batch, raw, strict=True):
                    _settle(future, result=_decode(verdict))
                return
        for call, future in batch:  # alone, or again one by one after a failed batch
            if future.done():
                continue
            try:
                _settle(future, result=await self._one(tenant_id, call))
            except Exception as error:
                _settle(future, error=error)

    async def _one(self, tenant_id: uuid.UUID, call: RedeemCall) -> dict[str, Any] | None:
        for attempt in range(3):
            try:
                return _decode(await self.database.fetchval(REDEEM_ONE, tenant_id, *_fields(call)))
            except Exception as error:  # a key raced by another account: the retry replays the winner
                if attempt == 2 or getattr(error, "sqlstate", None) not in _RETRYABLE:
                    raise
        raise AssertionError("unreachable")


def _fields(call: RedeemCall) -> tuple[Any, ...]:
    return (call.account_id, call.reward_id, call.quantity, call.key, call.request_hash, call.client, call.now,
            call.voucher, call.redemption_id, call.transaction_id)


def _columns(calls: list[RedeemCall]) -> list[list[Any]]:
    return [list(column) for column in zip(*(_fields(call) for call in calls), strict=True)]


def _decode(raw: Any) -> dict[str, Any] | None:
    return json.loads(raw) if isinstance(raw, str) else raw


def _settle(future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the request went away meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_BATCHERS: weakref.WeakKeyDictionary[Database, RedeemBatcher] = weakref.WeakKeyDictionary()


def configure(database: Database, *, in_flight: int) -> RedeemBatcher:
    """The batcher of `database` from now on, with its limit (the server's settings, at start-up)."""
    batcher = _BATCHERS[database] = RedeemBatcher(database, in_flight=in_flight)
    return batcher


def batcher_for(database: Database) -> RedeemBatcher:
    batcher = _BATCHERS.get(database)
    if batcher is None:
        batcher = _BATCHERS[database] = RedeemBatcher(database)
    return batcher
