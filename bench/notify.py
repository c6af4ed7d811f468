"""`make bench-notify`: what the live-update triggers (migration 0015, ADR 0012) cost the writes.

Transactional NOTIFY serialises the commits of notifying transactions (PostgreSQL takes a
cluster-wide lock from the moment such a transaction queues its notifications until its commit is
flushed), so its price depends on how many transactions commit per second, not on how big they are.
This measures both shapes on the same database, alternating the triggers off and on (`ALTER TABLE ...
DISABLE/ENABLE TRIGGER`, as the owner) to share the machine's noise:

(1) one-statement ledger transactions (a guarded debit plus its transaction and two postings, as
    `make bench-redeem`'s (a)), `--clients` concurrent connections;
(2) ingestion-shaped transactions: 1,000 ledger transactions inserted by one statement, as
    `recordBehaviors` does per batch;
(3) `redeemReward` over HTTP against a running server (the trusted document, as `make bench-redeem`'s b);
(4) `recordBehaviors` over HTTP, 1,000 records a request (as `make bench-ingest`'s b).

Prints the rates per round and the median ratio on/off of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from app.db.server import asyncpg_dsn  # noqa: E402
from app.tenants.models import tenant_id_for  # noqa: E402
import random  # noqa: E402

from app.cli import _registry  # noqa: E402
from app.graphql.ids import to_global_id  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.tenants.config import load_city_files  # noqa: E402
from bench import ingest, redeem  # noqa: E402
from bench.common import app_connection, bench_database, make_accounts, points_ledgers, running_server  # noqa: E402
from bench.redeem import RAW, fund  # noqa: E402

TRIGGERS = ("ledger_transactions", "live_ledger"), ("behavior_records", "live_records")
BATCH = """
INSERT INTO ledger_transactions (id, tenant_id, account_id, kind, status, occurred_at, points)
SELECT gen_random_uuid(), $1, a, 'BEHAVIOR_CREDIT', 'CREDITED', now(), 0 FROM unnest($2::uuid[]) AS a
"""


async def set_triggers(target, enabled: bool) -> None:
    _, kwargs = asyncpg_dsn(target.owner_url)
    owner = await asyncpg.connect(**kwargs)
    try:
        for table, trigger in TRIGGERS:
            await owner.execute(f"ALTER TABLE {table} {'ENABLE' if enabled else 'DISABLE'} TRIGGER {trigger}")
    finally:
        await owner.close()


async def one_statement(target, ledgers: list[list[uuid.UUID]], seconds: float) -> float:
    tenant_id = tenant_id_for("wuhan")
    deadline = time.perf_counter() + seconds

    async def worker(mine: list[uuid.UUID]) -> int:
        connection = await app_connection(target, "wuhan")
        sink = await connection.fetchval(
            "SELECT id FROM ledger_accounts WHERE tenant_id = $1 AND account_id IS NULL AND code = 'redemptions' "
            "AND asset = 'POINTS'", tenant_id)
        statement = await connection.prepare(RAW)
        done = 0
        try:
            while time.perf_counter() < deadline:
                await statement.fetch(mine[done % len(mine)], 1, uuid.uuid4(), sink)
                done += 1
        finally:
            await connection.close()
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(mine) for mine in ledgers))
    return sum(counts) / (time.perf_counter() - started)


async def batches(target, accounts: list[list[uuid.UUID]], seconds: float) -> float:
    tenant_id = tenant_id_for("wuhan")
    deadline = time.perf_counter() + seconds

    async def worker(mine: list[uuid.UUID]) -> int:
        connection = await app_connection(target, "wuhan")
        rows = 0
        try:
            while time.perf_counter() < deadline:
                async with connection.transaction():
                    await connection.execute(BATCH, tenant_id, (mine * (1000 // len(mine) + 1))[:1000])
                rows += 1000
        finally:
            await connection.close()
        return rows

    started = time.perf_counter()
    counts = await asyncio.gather(*(worker(mine) for mine in accounts))
    return sum(counts) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    settings = Settings()
    registry = _registry(settings, load_city_files(settings.config_dir))
    rng = random.Random(7)
    shapes = {"1": "one-statement transactions/s", "2": "rows/s in 1,000-row statements",
              "3": "redeemReward/s over HTTP", "4": "recordBehaviors records/s over HTTP"}
    results: dict[tuple[str, bool], list[float]] = {}
    with bench_database("carbon_bench_notify") as target:
        accounts = asyncio.run(make_accounts(target, 50 * args.clients, "wuhan-tong", ["TRAVEL"]))
        redeemers = asyncio.run(make_accounts(target, 50 * args.clients, "wuhan-tong", ["TRAVEL"]))
        asyncio.run(fund(target, accounts + redeemers, 10**9))
        item = to_global_id("Reward", asyncio.run(redeem.make_item(target, 1)))
        ledgers = asyncio.run(points_ledgers(target, accounts))
        points = [ledgers[i::args.clients] for i in range(args.clients)]
        split = [accounts[i::args.clients] for i in range(args.clients)]
        redeeming = [to_global_id("Account", a) for a in redeemers]
        recording = [ingest.global_id(a) for a in accounts]
        app_token, partner_token = registry.issue("wuhan-app", 3600), registry.issue("wuhan-tong", 3600)
        with running_server(target) as base_url:
            asyncio.run(redeem.http_rate(base_url, app_token, redeeming, item, args.clients, 1))  # warm-up
            for round_ in range(args.rounds):
                for enabled in (False, True) if round_ % 2 == 0 else (True, False):
                    asyncio.run(set_triggers(target, enabled))
                    rates = {
                        "1": asyncio.run(one_statement(target, points, args.seconds)),
                        "2": asyncio.run(batches(target, split, args.seconds)),
                        "3": asyncio.run(redeem.http_rate(base_url, app_token, redeeming, item, args.clients, 4)),
                        "4": asyncio.run(ingest.run_http(base_url, partner_token, ingest.make_batches(
                            rng, recording, 2 * args.clients, args.clients, f"notify-{round_}-{enabled}"),
                            args.clients)),
                    }
                    for shape, rate in rates.items():
                        results.setdefault((shape, enabled), []).append(rate)
                    print(f"round {round_ + 1}, triggers {'on ' if enabled else 'off'}: "
                          + "   ".join(f"({shape}) {rate:7.0f}" for shape, rate in rates.items()), flush=True)
        asyncio.run(set_triggers(target, True))
    for shape, unit in shapes.items():
        off, on = statistics.median(results[(shape, False)]), statistics.median(results[(shape, True)])
        print(f"({shape}) {unit:38}: median off {off:7.0f}, on {on:7.0f}, on/off = {on / off:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
