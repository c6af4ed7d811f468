"""`make bench-redeem`: redemptions per second against raw asyncpg ledger transactions.

(a) raw asyncpg: one statement per transaction — a guarded balance update (`balance >= cost`) plus the
    ledger transaction and its two postings — as the application role under row-level security (the
    ledger's own triggers fire for it as for every ledger write: rollups, hash chain, notifications);
(b) `redeemReward` mutations over HTTP against a running `carbon-inclusive serve` (idempotency key,
    eligibility, limits, stock, voucher, ledger postings, FIFO consumption, all in one transaction), sent
    as the city apps send them: the trusted document `RedeemReward` by its hash (`--full-graphql` sends
    the query text instead, through full GraphQL parsing, validation and execution).

Each is measured at every concurrency of `--clients` (1, 2, 4, 8, 16 and 32 closed-loop clients, each
on its own accounts), `--repeat` times with the phases alternating, and the medians are printed as a
table with b/a at each concurrency. The figure it is judged by is throughput against throughput: the
best rate (b) reaches at any of those concurrencies over the best (a) reaches (target >= 0.5). At one
fixed concurrency the ratio measures latency instead (a closed-loop client sends its next request when
the last is answered): a few clients leave the server waiting on them, and many make (a), one notifying
commit per statement, queue on PostgreSQL's notification lock while (b) shares commits (see the README).
For diagnosis it also prints (c): raw asyncpg calling the same `carbon_redeem_in_tenant()` the server
runs, i.e. the same database work without HTTP, and b/c.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from app.cli import _registry  # noqa: E402
from app.graphql.ids import to_global_id  # noqa: E402
from app.graphql.trusted import DOCUMENTS  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.tenants.config import load_city_files  # noqa: E402
from app.tenants.models import tenant_id_for  # noqa: E402
from bench.common import (  # noqa: E402
    QUIET_SERVER,
    LightHttpClient,
    app_connection,
    bench_database,
    make_accounts,
    points_ledgers,
    run,
    server_process,
)

DOCUMENT = next(document for document in DOCUMENTS.values() if document.name == "RedeemReward")
REDEEM = DOCUMENT.text

RAW = """
WITH debit AS (
    UPDATE ledger_accounts SET balance = balance - $2, points_consumed = points_consumed + $2
    WHERE id = $1 AND balance >= $2 RETURNING tenant_id, account_id
), txn AS (
    INSERT INTO ledger_transactions (id, tenant_id, account_id, kind, status, occurred_at, points)
    SELECT $3, tenant_id, account_id, 'REDEMPTION', 'FULFILLED', now(), -$2 FROM debit RETURNING id, tenant_id
)
INSERT INTO ledger_postings (tenant_id, transaction_id, ledger_account_id, asset, amount)
SELECT tenant_id, id, $1, 'POINTS', -$2 FROM txn UNION ALL SELECT tenant_id, id, $4, 'POINTS', $2 FROM txn
RETURNING 1
"""


async def fund(target, account_ids: list[uuid.UUID], points: int) -> None:
    """Give each account `points` through balanced issuance transactions (the ledger stays verifiable)."""
    tenant_id = tenant_id_for("wuhan")
    connection = await app_connection(target, "wuhan")
    try:
        async with connection.transaction():
            issuance = await connection.fetchval(
                "SELECT id FROM ledger_accounts WHERE tenant_id = $1 AND account_id IS NULL AND code = 'issuance' "
                "AND asset = 'POINTS'", tenant_id)
            rows = await connection.fetch(
                "SELECT id, account_id FROM ledger_accounts WHERE tenant_id = $1 AND asset = 'POINTS' "
                "AND account_id = ANY($2)", tenant_id, account_ids)
            transactions = [(uuid.uuid4(), row["id"], row["account_id"]) for row in rows]
            await connection.executemany(
                "INSERT INTO ledger_transactions (id, tenant_id, account_id, kind, status, occurred_at, points) "
                "VALUES ($1, $2, $3, 'BEHAVIOR_CREDIT', 'CREDITED', now(), $4)",
                [(t, tenant_id, account, points) for t, _, account in transactions])
            await connection.executemany(
                "INSERT INTO ledger_postings (tenant_id, transaction_id, ledger_account_id, asset, amount) "
                "VALUES ($1, $2, $3, 'POINTS', $4)",
                [(tenant_id, t, ledger, points) for t, ledger, _ in transactions]
                + [(tenant_id, t, issuance, -points) for t, _, _ in transactions])
            await connection.execute("UPDATE ledger_accounts SET balance = balance + $2 WHERE id = ANY($1)",
                                     [ledger for _, ledger, _ in transactions], points)
    finally:
        await connection.close()


async def make_item(target, cost: int) -> uuid.UUID:
    tenant_id = tenant_id_for("wuhan")
    connection = await app_connection(target, "wuhan")
    reward_id = uuid.uuid4()
    try:
        await connection.execute("""
            INSERT INTO rewards (id, tenant_id, code, kind, position, name_en, name_zh, cost_points, stock_total,
                per_account_limit, limit_period, sponsor_issuer_id, cancellation_window_hours, bank_linked_only,
                min_contribution_mg, active)
            SELECT $1, $2, 'bench-item', 'REWARD', 999, 'Bench item', '基准', $3, NULL, NULL, 'LIFETIME', i.id, 0,
                   false, 0, true FROM issuers i WHERE i.tenant_id = $2 AND i.slug = 'hankou-bank'
        """, reward_id, tenant_id, cost)
    finally:
        await connection.close()
    return reward_id


@dataclass(frozen=True)
class Load:
    """How a phase's clients work. `prepare` makes one operation's request from an item (ids, keys, request
    bytes), `send` sends it on a client and returns the answer, `check` raises for an answer that is not
    a success. `sweep` prepares every request before the clock starts and checks every answer after it
    stops, so the load generator does as little as it can while it is timed, the same in every phase."""

    prepare: Callable[[Any], Any]
    send: Callable[[Any, Any], Awaitable[Any]]
    check: Callable[[Any], None]


@dataclass
class Measured:
    """The rates of one phase at each concurrency, run by run, and the machine's CPU busy meanwhile."""

    rates: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    busy: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))

    def median(self, clients: int) -> float:
        return statistics.median(self.rates[clients])

    def latency_ms(self, clients: int) -> float:
        """Mean latency of a closed-loop client (Little's law: clients ÷ rate)."""
        return clients / self.median(clients) * 1000

    def peak(self) -> tuple[float, int]:
        """The best median rate and the concurrency it was reached at."""
        return max((self.median(clients), clients) for clients in self.rates)


def _busy() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine so far (Linux only), for a phase's utilisation."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields) - fields[3] - fields[4], sum(fields)  # all but idle and iowait


def _split(items: list, clients: int) -> list[list]:
    return [items[i::clients] for i in range(clients)]


async def sweep(clients: list[Any], load: Load, items: list[Any], levels: list[int], rounds: int,
                measured: Measured) -> None:
    """At each concurrency n the first n clients (connections, prepared statements, HTTP connections:
    opened beforehand) each do one operation, untimed, to be warm (a server closes idle keep-alive
    connections); then they share `items` out and each runs through its share `rounds` times. Only
    that is timed; its requests are made before and its answers checked after (`Load`)."""

    async def worker(client: Any, requests: list[Any], answers: list[Any]) -> None:
        for request in requests:
            answers.append(await load.send(client, request))

    for n in levels:
        warm = await asyncio.gather(*(load.send(client, load.prepare(item))
                                      for client, item in zip(clients[:n], items, strict=False)))
        for answer in warm:
            load.check(answer)
        shares = _split(items, n)
        requests = [[load.prepare(item) for _ in range(rounds) for item in share] for share in shares]
        answers: list[list[Any]] = [[] for _ in shares]
        before, started = _busy(), time.perf_counter()
        await asyncio.gather(*(worker(client, mine, out)
                               for client, mine, out in zip(clients, requests, answers, strict=False)))
        elapsed, after = time.perf_counter() - started, _busy()
        for out in answers:
            for answer in out:
                load.check(answer)
        measured.rates[n].append(rounds * len(items) / elapsed)
        if before is not None and after is not None and after[1] > before[1]:
            measured.busy[n].append((after[0] - before[0]) / (after[1] - before[1]))


async def measure_raw(target, ledgers: list[uuid.UUID], levels: list[int], rounds: int, cost: int,
                      measured: Measured) -> None:
    """(a): the raw statement, prepared, one transaction each."""
    connections = await asyncio.gather(*(app_connection(target, "wuhan") for _ in range(levels[-1])))
    try:
        sink = await connections[0].fetchval(
            "SELECT id FROM ledger_accounts WHERE tenant_id = $1 AND account_id IS NULL AND code = 'redemptions' "
            "AND asset = 'POINTS'", tenant_id_for("wuhan"))
        statements = await asyncio.gather(*(connection.prepare(RAW) for connection in connections))

        def check(rows: list[Any]) -> None:
            if len(rows) != 2:
                raise RuntimeError("a raw debit found too small a balance: the accounts were not funded enough")

        load = Load(prepare=lambda ledger_id: (ledger_id, cost, uuid.uuid4(), sink),
                    send=lambda statement, arguments: statement.fetch(*arguments), check=check)
        await sweep(statements, load, ledgers, levels, rounds, measured)
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))


async def measure_same(target, accounts: list[uuid.UUID], reward: uuid.UUID, levels: list[int], rounds: int,
                       measured: Measured) -> None:
    """(c): the redemption's own statement straight from asyncpg (no HTTP, no Python service)."""
    from datetime import UTC, datetime

    from app.graphql.trusted import REDEEM_STATEMENT

    tenant_id = tenant_id_for("wuhan")
    connections = await asyncio.gather(*(app_connection(target, "wuhan") for _ in range(levels[-1])))
    try:
        statements = await asyncio.gather(*(connection.prepare(REDEEM_STATEMENT) for connection in connections))

        def check(verdict: Any) -> None:
            if verdict is None or "error" in verdict:
                raise RuntimeError(f"redemption failed: {verdict}")

        load = Load(prepare=lambda account: (tenant_id, account, reward, 1, uuid.uuid4().hex, "bench", "bench",
                                             datetime.now(UTC), "BENCH", uuid.uuid4(), uuid.uuid4()),
                    send=lambda statement, arguments: statement.fetchval(*arguments), check=check)
        await sweep(statements, load, accounts, levels, rounds, measured)
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))


async def measure_http(base_url: str, token: str, accounts: list[str], reward: str, levels: list[int], rounds: int,
                       measured: Measured, trusted: bool = True) -> None:
    """(b): `redeemReward` over HTTP/1.1 keep-alive connections, one per client."""
    headers = {"Authorization": f"Bearer {token}"}
    host, port = base_url.removeprefix("http://").split(":")
    clients = [LightHttpClient(host, int(port)) for _ in range(levels[-1])]
    await asyncio.gather(*(client.__aenter__() for client in clients))

    def prepare(account: str) -> bytes:
        variables = {"input": {"accountId": account, "rewardId": reward, "idempotencyKey": uuid.uuid4().hex}}
        return LightHttpClient.request_bytes(host, int(port), "/graphql", json.dumps(
            {"documentId": f"sha256:{DOCUMENT.sha256}", "variables": variables} if trusted
            else {"query": DOCUMENT.text, "variables": variables}).encode(), headers)

    def check(answer: tuple[int, bytes]) -> None:
        status, raw = answer
        payload = (json.loads(raw).get("data") or {}).get("redeemReward") if status == 200 else None
        if payload is None or payload["userErrors"]:
            raise RuntimeError(f"redemption failed: HTTP {status} {raw[:300]!r}")

    load = Load(prepare=prepare, send=lambda http, request: http.exchange(request), check=check)
    try:
        await sweep(clients, load, accounts, levels, rounds, measured)
    finally:
        for client in clients:
            await client.__aexit__()


async def http_rate(base_url: str, token: str, accounts: list[str], reward: str, clients: int, rounds: int,
                    trusted: bool = True) -> float:
    """`redeemReward`s a second over HTTP at one concurrency, one run (for other benchmarks)."""
    measured = Measured()
    await measure_http(base_url, token, accounts, reward, [clients], rounds, measured, trusted)
    return measured.rates[clients][0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,2,4,8,16,32",
                        help="the concurrencies to measure each phase at (comma-separated)")
    parser.add_argument("--accounts", type=int, default=256, help="accounts per phase, shared out among the clients")
    parser.add_argument("--rounds", type=int, default=7, help="redemptions per account per measurement")
    parser.add_argument("--repeat", type=int, default=3,
                        help="times each measurement is made, the phases in turn; medians are reported")
    parser.add_argument("--full-graphql", action="store_true", help="send the query text, not the trusted document")
    args = parser.parse_args()
    try:
        levels = sorted({int(level) for level in args.clients.split(",")})
    except ValueError:
        parser.error("--clients: comma-separated whole numbers, e.g. 1,2,4")
    if not 1 <= levels[0] <= levels[-1] <= args.accounts or args.repeat < 1 or args.rounds < 1:
        parser.error("--clients between 1 and --accounts; --repeat and --rounds at least 1")
    settings = Settings()
    token = _registry(settings, load_city_files(settings.config_dir)).issue("wuhan-app", 3600)
    cost = 5
    spend = cost * ((args.rounds + 1) * len(levels) * args.repeat + 1)  # every measurement and warm-up
    raw, http, same = Measured(), Measured(), Measured()
    trusted = not args.full_graphql
    with bench_database("carbon_bench_redeem") as target:
        raw_accounts = run(make_accounts(target, args.accounts, "wuhan-tong", ["TRAVEL"]))
        http_accounts = run(make_accounts(target, args.accounts, "wuhan-tong", ["TRAVEL"]))
        same_accounts = run(make_accounts(target, args.accounts, "wuhan-tong", ["TRAVEL"]))
        run(fund(target, raw_accounts + http_accounts + same_accounts, spend))
        item = run(make_item(target, cost))

        ledgers = run(points_ledgers(target, raw_accounts))
        ids = [to_global_id("Account", a) for a in http_accounts]
        reward = to_global_id("Reward", item)

        def run_a() -> None:
            run(measure_raw(target, ledgers, levels, args.rounds, cost, raw))

        def run_c() -> None:
            run(measure_same(target, same_accounts, item, levels, args.rounds, same))

        def run_b() -> None:  # (a) and (c) run with no server process: nothing else is listening or working
            with server_process(target, QUIET_SERVER) as server:
                run(measure_http(server.base_url, token, ids, reward, levels, args.rounds, http, trusted))

        phases = [run_a, run_b, run_c]
        for turn in range(args.repeat):  # each phase first, second and third in turn
            for phase in phases[turn % 3:] + phases[:turn % 3]:
                phase()
    how = "full GraphQL" if args.full_graphql else "the trusted document"
    print(f"Medians of {args.repeat} runs of {args.accounts * args.rounds} operations each; (b) sends {how}.")
    print(f"{'clients':>7} | {'(a) raw tx/s':>12} | {'(b) redeemReward/s':>18} | {'(c) same SQL/s':>14} | "
          f"{'b/a':>5} | {'b/c':>5} | {'latency a / b':>15} | CPU busy a/b/c")
    for n in levels:
        cpu = "/".join(f"{statistics.median(phase.busy[n]):.0%}" if phase.busy[n] else "-"
                       for phase in (raw, http, same))
        a, b, c = raw.median(n), http.median(n), same.median(n)
        latency = f"{raw.latency_ms(n):.2f} / {http.latency_ms(n):.2f} ms"
        print(f"{n:>7} | {a:>12.0f} | {b:>18.0f} | {c:>14.0f} | {b / a:>5.2f} | {b / c:>5.2f} | {latency:>15} | {cpu}")
    below = [f"{n} ({http.median(n) / raw.median(n):.2f})" for n in levels if http.median(n) < 0.5 * raw.median(n)]
    met = [str(n) for n in levels if http.median(n) >= 0.5 * raw.median(n)]
    print(f"same concurrency: b/a >= 0.5 at {', '.join(met) or 'no'} clients"
          + (f"; below at {', '.join(below)} clients" if below else ""))
    (peak_a, at_a), (peak_b, at_b) = raw.peak(), http.peak()
    ratio = peak_b / peak_a
    print(f"(a) raw asyncpg guarded debit + postings, peak : {peak_a:8.0f} transactions/s at {at_a} clients "
          f"({raw.latency_ms(at_a):.2f} ms)")
    print(f"(b) redeemReward over HTTP, peak               : {peak_b:8.0f} redemptions/s at {at_b} clients "
          f"({http.latency_ms(at_b):.2f} ms)")
    print(f"b/a = {ratio:.2f}  (peak against peak; target >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
