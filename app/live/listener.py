"""The process's one LISTEN connection: a dedicated asyncpg connection (never from the pool), started and
stopped with the application, reconnecting with exponential backoff when it drops.

It only listens: notifications go to the hub as they arrive. A health probe every `probe_seconds`
finds a connection that died silently (no reset from the network); a drop or a failed probe tells the
hub (which disconnects the subscribers: their events may be lost) and starts reconnecting.

It LISTENs only while the hub is in use — acknowledged websockets (`Hub.hold`) or subscriptions — and
for `linger_seconds` after the last live client left, so a client that reconnects does not make it
flap; the rest of the time the connection stays open, probed, but not listening. Why: PostgreSQL
signals every listening backend at every notifying commit (every ledger write), and that backend and
this process then read and drop the notification. An API process with no live client made each write
pay for that: measured at 2 concurrent clients, a listener costs the ledger's writes 10-20 % of their
rate (`make bench-redeem`, ADR 0014). A websocket is acknowledged, and a subscription counts as running, only once the LISTEN is in effect
(`Hub.attach`), so nothing committed after that is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import asyncpg
from prometheus_client import Gauge

from app.live.hub import Hub
from app.live.notices import CHANNEL
from app.logs import get_logger

log = get_logger("app.live")
LISTENING = Gauge("carbon_live_listening", "1 while this process's LISTEN connection is up")
CHANNEL_ON = Gauge("carbon_live_channel_listened", "1 while this process LISTENs (it has subscribers, or had lately)")


class Listener:
    def __init__(self, connect_kwargs: dict[str, Any], hub: Hub, *, probe_seconds: float = 15.0,
                 backoff: tuple[float, float] = (0.25, 30.0), linger_seconds: float = 60.0,
                 demand_wait_seconds: float = 10.0) -> None:
        self.connect_kwargs = connect_kwargs
        self.hub = hub
        self.probe_seconds = probe_seconds
        self.backoff = backoff
        self.linger_seconds = linger_seconds
        self.demand_wait_seconds = demand_wait_seconds
        self.listening = asyncio.Event()  # the connection is up
        self.on_channel = asyncio.Event()  # and LISTENs
        self._changed = asyncio.Event()
        self._linger_until = 0.0
        self._was_up = False
        self._task: asyncio.Task[None] | None = None
        hub.attach(self.demand, self.released)

    @property
    def state(self) -> str:
        """For /readyz: listening, standby (connected, no live client) or reconnecting."""
        return "listening" if self.on_channel.is_set() else "standby" if self.listening.is_set() else "reconnecting"

    async def demand(self) -> bool:
        """Return once this process LISTENs (the hub is in use: a subscriber or a websocket has just
        registered); False if the connection is down, or LISTEN is not in effect within
        `demand_wait_seconds`."""
        if self.on_channel.is_set():
            return True
        if not self.listening.is_set():
            return False  # an outage (or not connected yet): refused now rather than disconnected later
        self._changed.set()
        try:
            await asyncio.wait_for(self.on_channel.wait(), self.demand_wait_seconds)
        except TimeoutError:
            return False
        return True

    def released(self) -> None:
        """The hub's last live client left: stop listening after the linger, unless another comes. (One
        that was refused, or left before the LISTEN, leaves nothing to linger for.)"""
        if self.on_channel.is_set():
            self._linger_until = time.monotonic() + self.linger_seconds
            self._changed.set()

    async def start(self, wait_seconds: float = 10.0) -> None:
        """Start; waits up to `wait_seconds` for the connection (it keeps trying after that)."""
        self._task = asyncio.create_task(self._run(), name="carbon-live-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), wait_seconds)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.hub.close()

    async def _run(self) -> None:
        delay = self.backoff[0]
        while True:
            try:
                await self._listen()
                log.warning("live_listener_lost")
            except Exception as error:  # any failure: the listener keeps trying, it never dies
                log.warning("live_listener_failed", error=type(error).__name__)
            if self._was_up:  # it was up: its subscribers may have missed events
                self._was_up = False
                self.hub.listening_lost()
                delay = self.backoff[0]
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.backoff[1])

    async def _listen(self) -> None:
        connection = await asyncpg.connect(**self.connect_kwargs, timeout=10,
                                           server_settings={"application_name": "carbon-inclusive-live"})
        lost = asyncio.get_running_loop().create_future()
        connection.add_termination_listener(lambda _: lost.done() or lost.set_result(None))
        try:
            self.listening.set()
            self._was_up = True
            LISTENING.set(1)
            self.hub.listening_resumed()
            log.info("live_connected", channel=CHANNEL)
            next_probe = time.monotonic() + self.probe_seconds
            while not lost.done():
                self._changed.clear()  # before deciding: a demand from now on is seen by the next turn
                now = time.monotonic()
                if now >= next_probe:  # whatever keeps waking the loop, the probe still runs on time
                    await connection.fetchval("SELECT 1", timeout=self.probe_seconds)
                    next_probe = time.monotonic() + self.probe_seconds
                    continue
                wanted = self.hub.in_use() or now < self._linger_until
                if wanted and not self.on_channel.is_set():
                    await connection.add_listener(CHANNEL, self._deliver)
                    self.on_channel.set()
                    CHANNEL_ON.set(1)
                    continue
                if not wanted and self.on_channel.is_set():
                    # Cleared before the UNLISTEN round trip: a subscriber arriving meanwhile waits for
                    # the next turn, which LISTENs again, rather than being told it is listened for.
                    self.on_channel.clear()
                    CHANNEL_ON.set(0)
                    await connection.remove_listener(CHANNEL, self._deliver)
                    continue
                timeout = next_probe - now
                if self.on_channel.is_set() and not self.hub.in_use():
                    timeout = min(timeout, max(0.0, self._linger_until - now) + 0.01)
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait([lost, changed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
        finally:
            # Down (lost, failed or stopped) from here: demands are refused at once, /readyz says so.
            self.on_channel.clear()
            CHANNEL_ON.set(0)
            self.listening.clear()
            LISTENING.set(0)
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    def _deliver(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.hub.dispatch(payload)
