"""`Database.fetchval`'s own connections (app.db.connections): lent one call at a time, never lent again
half-used, at most `size` of them."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.db.connections import StatementConnections
from app.db.server import asyncpg_dsn


def _connections(database_target, size: int, wait_seconds: float = 30.0,
                 idle_seconds: float = 300.0) -> StatementConnections:
    _, kwargs = asyncpg_dsn(database_target.app_url)
    return StatementConnections(lambda: asyncpg.connect(**kwargs), size, wait_seconds, idle_seconds)


async def _backends(database_target, pids: set[int]) -> set[int]:
    """Those of `pids` that are still PostgreSQL backends."""
    admin = await asyncpg.connect(**asyncpg_dsn(database_target.owner_url)[1])
    try:
        return set(await admin.fetchval("SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity "
                                        "WHERE pid = ANY($1::int[])", list(pids)))
    finally:
        await admin.close()


async def test_at_most_size_connections_and_they_are_kept(database_target) -> None:
    connections = _connections(database_target, 3)
    try:
        pids = await asyncio.gather(*(connections.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.02)")
                                      for _ in range(20)))
        assert len(set(pids)) <= 3 and connections.idle == len(set(pids))
        again = {await connections.fetchval("SELECT pg_backend_pid()") for _ in range(5)}
        assert again <= set(pids)  # reused, not opened again
    finally:
        await connections.close()


@pytest.mark.parametrize(("sql", "args", "error"), [
    ("SELECT 1 / 0", (), asyncpg.DivisionByZeroError),
    # asyncpg's DataError (an argument it cannot encode) is a PostgresError too: nothing was sent.
    ("SELECT $1::int", ("seven",), asyncpg.DataError),
], ids=["server-error", "argument-not-encoded"])
async def test_a_postgres_error_keeps_the_connection(database_target, sql, args, error) -> None:
    connections = _connections(database_target, 1)
    try:
        pid = await connections.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(error):
            await connections.fetchval(sql, *args)
        assert connections.idle == 1 and await connections.fetchval("SELECT pg_backend_pid()") == pid
    finally:
        await connections.close()


async def test_connections_idle_for_idle_seconds_are_closed(database_target) -> None:
    connections = _connections(database_target, 3, idle_seconds=1.0)
    try:
        pids = set(await asyncio.gather(*(connections.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.05)")
                                          for _ in range(3))))
        assert len(pids) == 3 and await _backends(database_target, pids) == pids
        busy = await connections.fetchval("SELECT pg_backend_pid()")  # the most recent is lent first
        for _ in range(15):  # one connection kept in use past the others' idle limit
            await asyncio.sleep(0.1)
            assert await connections.fetchval("SELECT pg_backend_pid()") == busy
        assert connections.idle == 1 and await _backends(database_target, pids) == {busy}
        for _ in range(200):  # then it too goes, with no call to trigger it
            if connections.idle == 0 and not await _backends(database_target, {busy}):
                break
            await asyncio.sleep(0.05)
        assert connections.idle == 0 and not await _backends(database_target, {busy})
        assert await connections.fetchval("SELECT 3") == 3  # and the next call opens one again
    finally:
        await connections.close()


async def test_a_call_cancelled_mid_statement_never_lends_its_connection_again(database_target) -> None:
    connections = _connections(database_target, 1)
    try:
        pid = await connections.fetchval("SELECT pg_backend_pid()")
        call = asyncio.create_task(connections.fetchval("SELECT pg_sleep(5)"))
        watcher = await asyncpg.connect(**asyncpg_dsn(database_target.owner_url)[1])
        try:  # until the statement runs on the server
            while await watcher.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid) != "active":
                await asyncio.sleep(0.01)
        finally:
            await watcher.close()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert connections.idle == 0
        assert await asyncio.wait_for(connections.fetchval("SELECT pg_backend_pid()"), 2) != pid
    finally:
        await connections.close()


async def test_waiting_for_a_connection_has_a_limit(database_target) -> None:
    connections = _connections(database_target, 1, wait_seconds=0.1)
    try:
        busy = asyncio.create_task(connections.fetchval("SELECT 7 FROM pg_sleep(0.5)"))
        while not connections._slots.locked():  # the busy call holds the only slot
            await asyncio.sleep(0)
        with pytest.raises(TimeoutError):
            await connections.fetchval("SELECT 1")
        assert await busy == 7
        assert connections.idle == 1 and await connections.fetchval("SELECT 2") == 2  # the slot came back
    finally:
        await connections.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced(database_target) -> None:
    connections = _connections(database_target, 1)
    _, owner = asyncpg_dsn(database_target.owner_url)
    admin = await asyncpg.connect(**owner)
    try:
        pid = await connections.fetchval("SELECT pg_backend_pid()")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100):  # until the client has seen the socket close
            if connections._free[0][0].is_closed():
                break
            await asyncio.sleep(0.02)
        assert await connections.fetchval("SELECT pg_backend_pid()") != pid
    finally:
        await admin.close()
        await connections.close()


async def test_close_closes_the_idle_ones_and_refuses_calls(database_target) -> None:
    connections = _connections(database_target, 2)
    await connections.fetchval("SELECT 1")
    await connections.close()
    assert connections.idle == 0
    with pytest.raises(RuntimeError, match="closed"):
        await connections.fetchval("SELECT 1")
