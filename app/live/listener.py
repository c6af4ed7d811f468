"""The process's one LISTEN connection: a dedicated asyncpg connection (never from the pool), started and
stopped with the application, reconnecting with exponential backoff when it drops.

It only listens: notifications go to the hub as they arrive. A health probe every `probe_seconds`
finds a connection that died silently (no reset from the network); a drop or a failed probe tells the
hub (which disconnects the subscribers: their events may be lost) and starts reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import asyncpg
from prometheus_client import Gauge

from app.live.hub import Hub
from app.live.notices import CHANNEL
from app.logs import get_logger

log = get_logger("app.live")
LISTENING = Gauge("carbon_live_listening", "1 while this process's LISTEN connection is up")


class Listener:
    def __init__(self, connect_kwargs: dict[str, Any], hub: Hub, *, probe_seconds: float = 15.0,
                 backoff: tuple[float, float] = (0.25, 30.0)) -> None:
        self.connect_kwargs = connect_kwargs
        self.hub = hub
        self.probe_seconds = probe_seconds
        self.backoff = backoff
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait_seconds: float = 10.0) -> None:
        """Start listening; waits up to `wait_seconds` for the first LISTEN (it keeps trying after that)."""
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
            if self.listening.is_set():  # it was up: its subscribers may have missed events
                self.listening.clear()
                LISTENING.set(0)
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
            await connection.add_listener(CHANNEL, self._deliver)
            self.listening.set()
            LISTENING.set(1)
            self.hub.listening_resumed()
            log.info("live_listening", channel=CHANNEL)
            while not lost.done():
                done, _ = await asyncio.wait([lost], timeout=self.probe_seconds)
                if not done:
                    await connection.fetchval("SELECT 1", timeout=self.probe_seconds)
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    def _deliver(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.hub.dispatch(payload)
