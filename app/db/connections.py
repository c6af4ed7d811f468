"""The connections of `Database.fetchval`: a few asyncpg connections kept open, lent one call at a time.

Why not asyncpg's `Pool`: a hot-path call (a redemption by trusted document, ADR 0005) is one statement
in its own implicit transaction that sets its tenant scope transaction-locally, so a connection holds
no state between calls and needs no reset, proxy, shielded release task or acquire timeout. Those cost
the pool 45-70 us of CPU per call on this project's 2-core machine (more than the 65-75 us of the
statement's own client side), on a path whose whole server cost is a few hundred microseconds.

Rules:

* At most `size` connections, opened when first needed. A caller waits for a free one, at most
  `wait_seconds` (then `TimeoutError`); with one free it takes it without any timer.
* The most recently used free connection is lent first, so under light load the others stay idle, and
  a connection idle for `idle_seconds` (300, as asyncpg's pool) is closed: a quiet process holds no
  PostgreSQL backends it does not use. One timer serves all of them (armed when a connection goes
  idle and none is armed; at expiry it closes the ones idle long enough and re-arms for the next).
* A connection goes back to the free list only if the call ended cleanly or with a PostgreSQL error
  (the implicit transaction is over, the connection is idle; asyncpg's `DataError` for an argument it
  could not encode is one of these: nothing was sent). Anything else — the caller cancelled
  mid-statement, a lost connection, a protocol error — terminates it: nothing half-used is lent again.
  A connection that PostgreSQL closed while idle is found closed and dropped when next taken.
* `close()` closes the idle ones and makes the busy ones close when their call ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg


class StatementConnections:
    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int,
                 wait_seconds: float = 30.0, idle_seconds: float = 300.0) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        if idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        self._connect = connect
        self.size = size
        self.wait_seconds = wait_seconds
        self.idle_seconds = idle_seconds
        self._slots = asyncio.Semaphore(size)
        self._free: list[tuple[asyncpg.Connection, float]] = []  # (connection, idle since), oldest first
        self._sweep: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def idle(self) -> int:
        """Connections open and free now."""
        return len(self._free)

    async def fetchval(self, sql: str, *args: object) -> Any:
        if self._closed:
            raise RuntimeError("the statement connections are closed")
        if self._slots.locked():  # all lent: wait, but not for ever
            async with asyncio.timeout(self.wait_seconds):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        connection: asyncpg.Connection | None = None
        try:
            if self._closed:  # closed while this call waited for a slot
                raise RuntimeError("the statement connections are closed")
            while self._free:
                candidate, _ = self._free.pop()
                if not candidate.is_closed():
                    connection = candidate
                    break
            if connection is None:
                connection = await self._connect()
            try:
                result = await connection.fetchval(sql, *args)
            except asyncpg.PostgresError:
                self._give_back(connection)
                raise
            except BaseException:
                connection.terminate()
                raise
            self._give_back(connection)
            return result
        finally:
            self._slots.release()

    def _give_back(self, connection: asyncpg.Connection) -> None:
        if self._closed or connection.is_closed() or connection.is_in_transaction():
            connection.terminate()  # a statement that left a transaction open is not lent again
            return
        loop = asyncio.get_running_loop()
        self._free.append((connection, loop.time()))
        if self._sweep is None:
            self._sweep = loop.call_at(loop.time() + self.idle_seconds, self._close_idle)

    def _close_idle(self) -> None:
        """Close the connections idle for `idle_seconds` (the front of the list); re-arm for the next."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        deadline, expired = loop.time() - self.idle_seconds, 0
        while expired < len(self._free) and self._free[expired][1] <= deadline:
            expired += 1
        stale, self._free = self._free[:expired], self._free[expired:]
        for connection, _ in stale:
            task = loop.create_task(self._close_one(connection))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if self._free:
            self._sweep = loop.call_at(self._free[0][1] + self.idle_seconds, self._close_idle)

    @staticmethod
    async def _close_one(connection: asyncpg.Connection) -> None:
        try:
            await connection.close(timeout=2)
        except Exception:  # noqa: BLE001 - closing anyway
            connection.terminate()

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        free, self._free = self._free, []
        await asyncio.gather(*(self._close_one(connection) for connection, _ in free), *self._closing)
