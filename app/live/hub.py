"""The process's fan-out: notices from the listener to the subscriptions they concern.

Subscribers are indexed by what they filter on (an account; a tenant and provider; the tenants a
dashboard may see), so a notice reaches only its own subscribers, in O(1) per id, before anything is
read from the database. Each subscription has a bounded queue: a consumer that falls `queue_size`
events behind (its websocket does not take what is sent) is disconnected with close code 1013 rather
than buffered without limit; the client reconnects and re-syncs with queries. Dashboard ticks are
coalesced: at most one per city and `tick_seconds` (the first at once, the rest at the interval).

When the listener's connection drops, notifications sent meanwhile are lost to this process: every
subscriber is then disconnected (1013), at the drop and again when listening resumes (for those who
subscribed during the outage), so a connected client has never silently missed an event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

from app.live.notices import AccountEventsNotice, LedgerNotice, Notice, OutcomeNotice, parse
from app.logs import get_logger

log = get_logger("app.live")

TRY_AGAIN_LATER = 1013  # RFC 6455 registry: "the server is ... casting off some of its clients"
MAX_MERGED = 16  # queued items merged into one event when a subscriber is behind

SUBSCRIPTIONS = Gauge("carbon_live_subscriptions", "Live subscriptions in this process", ["field"])
NOTICES = Counter("carbon_live_notifications_total", "carbon_live notifications received", ["kind"])
DISCONNECTS = Counter("carbon_live_disconnects_total", "Subscribers disconnected by the hub", ["reason"])

Disconnect = Callable[[int, str], None]


@dataclass(frozen=True)
class Tick:
    """Figures of a city changed (`kinds`: ledger kinds and ACCOUNT_<event>) up to `at`."""

    tenant_id: uuid.UUID
    at: datetime
    kinds: frozenset[str]


class Subscriber:
    """One subscription: a bounded queue of the items the hub offers it."""

    def __init__(self, field: str, capacity: int, disconnect: Disconnect) -> None:
        self.field = field
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=capacity)
        self.disconnect = disconnect
        self.overflowed = False

    def offer(self, item: object) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            DISCONNECTS.labels("slow_consumer").inc()
            log.warning("live_slow_consumer", field=self.field, queued=self.queue.qsize())
            self.disconnect(TRY_AGAIN_LATER, f"slow consumer: {self.queue.qsize()} events were waiting; "
                                             "reconnect and re-sync with queries")

    async def take(self) -> list[object]:
        """The next item, with whatever else is already queued (at most MAX_MERGED)."""
        items = [await self.queue.get()]
        while len(items) < MAX_MERGED and not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items


class Hub:
    def __init__(self, *, queue_size: int = 256, tick_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue_size = queue_size
        self.tick_seconds = tick_seconds
        self.clock = clock
        self._accounts: dict[tuple[uuid.UUID, uuid.UUID], set[Subscriber]] = {}
        self._providers: dict[tuple[uuid.UUID, uuid.UUID], set[Subscriber]] = {}
        self._dashboards: dict[Subscriber, frozenset[uuid.UUID] | None] = {}
        self._pending_ticks: dict[uuid.UUID, set[str]] = {}
        self._last_tick: dict[uuid.UUID, float] = {}
        self._tick_timers: dict[uuid.UUID, asyncio.TimerHandle] = {}
        self._outage = False
        self._demand: Callable[[], Awaitable[bool]] | None = None
        self._released: Callable[[], None] | None = None
        self._holds = 0

    def attach(self, demand: Callable[[], Awaitable[bool]], released: Callable[[], None]) -> None:
        """The listener's hooks: `demand()` returns once notifications reach this process (False: they
        cannot now), `released()` tells it the last live client left. Without them (a test's single
        connection has no listener) neither a websocket nor a subscription waits for anything."""
        self._demand, self._released = demand, released

    def has_subscribers(self) -> bool:
        return bool(self._accounts or self._providers or self._dashboards)

    def in_use(self) -> bool:
        """Someone here wants notifications: a subscriber, or an acknowledged websocket (`hold`)."""
        return self._holds > 0 or self.has_subscribers()

    async def hold(self) -> bool:
        """A websocket is about to be acknowledged: notifications reach this process from now until
        `unhold` (False: they cannot now). So a client that subscribes once acknowledged misses nothing
        committed after it subscribed, even as the process's first subscriber."""
        self._holds += 1
        try:
            if self._demand is None or await self._demand():
                return True
        except BaseException:  # cancelled while waiting: not held
            self.unhold()
            raise
        self.unhold()
        return False

    def unhold(self) -> None:
        self._holds -= 1
        self._maybe_released()

    def _maybe_released(self) -> None:
        if self._released is not None and not self.in_use():
            self._released()

    # ------------------------------------------------------------------------------ subscriptions

    async def account_activity(self, tenant_id: uuid.UUID, account_id: uuid.UUID,
                               disconnect: Disconnect) -> AsyncIterator[list[uuid.UUID]]:
        """Ledger transaction ids of the account committed since the last item, in commit order."""
        subscriber = Subscriber("accountActivity", self.queue_size, disconnect)
        async with self._subscribed(subscriber, self._accounts, (tenant_id, account_id)):
            while True:
                batches = await subscriber.take()
                yield [transaction for batch in batches for transaction in batch]  # type: ignore[attr-defined]

    async def behavior_outcomes(self, tenant_id: uuid.UUID, provider_id: uuid.UUID,
                                disconnect: Disconnect) -> AsyncIterator[list[tuple[str, tuple[uuid.UUID, ...]]]]:
        """(kind `R`/`J`/`V`, record or rejection ids) of the provider's records, in commit order."""
        subscriber = Subscriber("behaviorOutcomes", self.queue_size, disconnect)
        async with self._subscribed(subscriber, self._providers, (tenant_id, provider_id)):
            while True:
                yield await subscriber.take()  # type: ignore[misc]

    async def dashboard_ticks(self, tenant_ids: frozenset[uuid.UUID] | None,
                              disconnect: Disconnect) -> AsyncIterator[list[Tick]]:
        """Ticks of the cities in `tenant_ids` (None: every city), at most one per city an item."""
        subscriber = Subscriber("dashboardTick", self.queue_size, disconnect)
        async with self._subscribed(subscriber, None, tenant_ids):
            while True:
                merged: dict[uuid.UUID, Tick] = {}
                for tick in await subscriber.take():
                    assert isinstance(tick, Tick)
                    seen = merged.get(tick.tenant_id)
                    merged[tick.tenant_id] = tick if seen is None else Tick(tick.tenant_id, tick.at,
                                                                            seen.kinds | tick.kinds)
                yield list(merged.values())

    @asynccontextmanager
    async def _subscribed(self, subscriber: Subscriber, index: dict[Any, set[Subscriber]] | None,
                          key: Any) -> AsyncIterator[None]:
        """`subscriber` registered (in `index[key]`, or as a dashboard of the cities `key`) for the duration.

        It counts as running (the `carbon_live_subscriptions` gauge) only once the listener confirms
        that notifications reach this process: a write committed after that is delivered (a websocket's
        `hold` has usually made sure of it already). If they cannot reach it now, the subscriber is
        disconnected (1013) at once, as in an outage, and never counts as running."""
        if index is None:
            self._dashboards[subscriber] = key
        else:
            index.setdefault(key, set()).add(subscriber)
        counted = False
        try:
            if self._demand is not None and not await self._demand():
                DISCONNECTS.labels("unavailable").inc()
                subscriber.disconnect(TRY_AGAIN_LATER, "live updates are not available right now: reconnect "
                                                       "and re-sync with queries")
            else:
                SUBSCRIPTIONS.labels(subscriber.field).inc()
                counted = True
            yield
        finally:
            if index is None:
                del self._dashboards[subscriber]
            else:
                bucket = index.get(key, set())
                bucket.discard(subscriber)
                if not bucket:
                    index.pop(key, None)
            if counted:
                SUBSCRIPTIONS.labels(subscriber.field).dec()
            self._maybe_released()

    def subscribers(self) -> Iterable[Subscriber]:
        for bucket in [*self._accounts.values(), *self._providers.values()]:
            yield from bucket
        yield from self._dashboards

    # ----------------------------------------------------------------------------------- delivery

    def dispatch(self, payload: str) -> None:
        """Deliver one notification's payload (the listener's callback; never raises). A process with any
        live client gets every city's notifications: those nobody here could want are not even parsed."""
        kind = payload[:1]
        NOTICES.labels(kind or "?").inc()
        wanted = (bool(self._accounts or self._dashboards) if kind == "L" else bool(self._providers)
                  if kind in ("R", "J", "V") else bool(self._dashboards) if kind == "A" else True)
        if wanted and (notice := parse(payload)) is not None:
            self.deliver(notice)

    def deliver(self, notice: Notice) -> None:
        if isinstance(notice, LedgerNotice):
            by_account: dict[uuid.UUID, list[uuid.UUID]] = {}
            for account_id, transaction_id in notice.entries:
                if (notice.tenant_id, account_id) in self._accounts:
                    by_account.setdefault(account_id, []).append(transaction_id)
            for account_id, transactions in by_account.items():
                for subscriber in list(self._accounts.get((notice.tenant_id, account_id), ())):
                    subscriber.offer(tuple(transactions))
            self._note_change(notice.tenant_id, notice.kinds)
        elif isinstance(notice, OutcomeNotice):
            for subscriber in list(self._providers.get((notice.tenant_id, notice.provider_id), ())):
                subscriber.offer((notice.kind, notice.ids))
        elif isinstance(notice, AccountEventsNotice):
            self._note_change(notice.tenant_id, {f"ACCOUNT_{kind}" for kind in notice.kinds})

    def _note_change(self, tenant_id: uuid.UUID, kinds: Iterable[str]) -> None:
        if not self._dashboards:
            return
        self._pending_ticks.setdefault(tenant_id, set()).update(kinds)
        if tenant_id in self._tick_timers:
            return  # coalesced into the tick already scheduled
        wait = max(0.0, self._last_tick.get(tenant_id, float("-inf")) + self.tick_seconds - self.clock())
        self._tick_timers[tenant_id] = asyncio.get_running_loop().call_later(wait, self._tick, tenant_id)

    def _tick(self, tenant_id: uuid.UUID) -> None:
        del self._tick_timers[tenant_id]
        tick = Tick(tenant_id, datetime.now(UTC), frozenset(self._pending_ticks.pop(tenant_id, ())))
        self._last_tick[tenant_id] = self.clock()
        for subscriber, tenants in list(self._dashboards.items()):
            if tenants is None or tenant_id in tenants:
                subscriber.offer(tick)

    # -------------------------------------------------------------------------------- the listener

    def listening_lost(self) -> None:
        """The listener's connection dropped: notifications from now on are lost to this process."""
        self._outage = True
        self._disconnect_all("live updates were interrupted")

    def listening_resumed(self) -> None:
        if self._outage:
            self._outage = False
            self._disconnect_all("live updates resumed after an interruption")

    def _disconnect_all(self, why: str) -> None:
        subscribers = list(self.subscribers())
        if subscribers:
            DISCONNECTS.labels("interrupted").inc(len(subscribers))
            log.warning("live_subscribers_disconnected", reason=why, subscribers=len(subscribers))
        for subscriber in subscribers:
            subscriber.disconnect(TRY_AGAIN_LATER, f"{why}: reconnect and re-sync with queries")

    def close(self) -> None:
        for timer in self._tick_timers.values():
            timer.cancel()
        self._tick_timers.clear()
