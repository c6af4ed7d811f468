"""The load of `make bench-dashboard`'s data set: parallel workers generate accounts' histories and COPY
them, then the indexes are built, the rollups rebuilt by the migrations' backfills and the tables
analysed; a comment on the database records what it holds."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from app.db.server import DatabaseTarget, asyncpg_dsn
from app.settings import Settings
from app.tenants.config import Role, load_city_files
from bench import dashboard_seed as seeding
from bench.common import BENCH_DATA_DIR, drop_indexes, rebuild_rollups, rollup_tables
from bench.dashboard_history import CityHistory

BULK = ["behavior_records", "daily_behavior_totals", "ledger_transactions", "ledger_postings"]  # loaded index-free
SHARES = {"wuhan": 4, "beijing": 3, "shanghai": 2, "guizhou": 1}  # of accounts and records; other cities 1
BYTES_PER_RECORD = 2300  # measured database size per behaviour record, with every row it brings (indexes included)


async def owner_connection(target: DatabaseTarget) -> asyncpg.Connection:
    _, kwargs = asyncpg_dsn(target.owner_url)
    return await asyncpg.connect(**kwargs)


@dataclass(frozen=True)
class Load:
    """What every loader process needs (sent to each at its start)."""
    owner_url: str
    cities: list[seeding.City]
    plan: dict[str, tuple[int, int]]  # city -> (accounts, records)
    start: datetime
    end: datetime
    workers: int
    chunk: int  # records per COPY transaction


def load_worker(load: Load, worker: int, counters: tuple, results: Any) -> None:
    """One loader process: its share of every city's accounts, generated and copied chunk by chunk;
    puts (worker, [Shared]) on `results` when done."""
    results.put((worker, asyncio.run(_load_share(load, worker, counters))))


async def _load_share(load: Load, worker: int, counters: tuple) -> list[seeding.Shared]:
    _, kwargs = asyncpg_dsn(load.owner_url)
    connection = await asyncpg.connect(**kwargs)
    shared = []
    try:
        # A bulk load of rows that are consistent by construction: no triggers, no foreign-key checks
        # (the rollups are rebuilt afterwards); superuser only.
        await connection.execute("SET session_replication_role = replica")
        await connection.execute("SET synchronous_commit = off")
        await seeding.use_bulk_codecs(connection)
        for city in load.cities:
            accounts, records = load.plan[city.slug]
            n = load.workers
            mine = (accounts // n + (worker < accounts % n), records // n + (worker < records % n))
            history = CityHistory(city, seeding.Calendar.build(city, load.start, load.end), worker, n, 7, load.end)
            for rows in history.chunks(*mine, load.chunk):
                async with connection.transaction():
                    await seeding.copy_rows(connection, rows)
                with counters[0].get_lock():
                    counters[0].value += rows.records
                with counters[1].get_lock():
                    counters[1].value += sum(len(table) for table in rows.tables.values())
            shared.append(history.shared)
    finally:
        await connection.close()
    return shared


class Progress:
    """A progress line on stderr: done/total, rate, ETA (redrawn in place on a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.started, self.printed = label, total, time.monotonic(), 0.0
        self.tty = sys.stderr.isatty()

    def show(self, done: int, rows: int, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        if not (self.tty or final or elapsed - self.printed >= 15):
            return
        self.printed = elapsed
        share = done / self.total if self.total else 1.0
        eta = (self.total - done) / (done / elapsed) if done else 0
        bar, start = "#" * int(30 * share), "\r" if self.tty else ""
        end = "\n" if final or not self.tty else ""
        sys.stderr.write(f"{start}{self.label} {done / 1e6:6.2f}M/{self.total / 1e6:.2f}M records [{bar:<30}] "
                         f"{100 * share:3.0f}%  {done / elapsed / 1e3:5.0f}k records/s "
                         f"{rows / elapsed / 1e3:5.0f}k rows/s  "
                         f"{'elapsed' if final else 'ETA'} {timedelta(seconds=int(elapsed if final else eta))}{end}")
        sys.stderr.flush()


def city_plan(slugs: list[str], accounts: int, records: int) -> dict[str, tuple[int, int]]:
    """(accounts, records) per city, by SHARES, adding up exactly."""
    weights = [SHARES.get(slug, 1) for slug in slugs]
    plan, given = {}, [0, 0]
    for i, slug in enumerate(slugs):
        last = i == len(slugs) - 1
        share = (accounts - given[0], records - given[1]) if last else (
            accounts * weights[i] // sum(weights), records * weights[i] // sum(weights))
        plan[slug] = share
        given = [given[0] + share[0], given[1] + share[1]]
    return plan


def seed(target: DatabaseTarget, database: str, settings: Settings, args: argparse.Namespace) -> dict:
    """Load the volume into `database`; returns the marker it writes (also as the database's comment)."""
    need = args.records * BYTES_PER_RECORD
    free = shutil.disk_usage(BENCH_DATA_DIR if target.embedded is not None else Path.cwd()).free
    print(f"seeding {args.records:,} behaviour records over {args.accounts:,} accounts and {args.days} days "
          f"(about {need / 1e9:.0f} GB; {free / 1e9:.0f} GB free) ...", file=sys.stderr)
    if target.embedded is not None and free < need * 1.3:
        raise SystemExit(f"not enough disk space for {args.records:,} records: about {need * 1.3 / 1e9:.0f} GB needed")
    started = time.perf_counter()
    end = datetime.now(UTC).replace(microsecond=0)
    cities, indexes = asyncio.run(_prepare(target, settings, end))
    load = Load(target.owner_url, cities, city_plan([city.slug for city in cities], args.accounts, args.records),
                end - timedelta(days=args.days), end, args.workers, args.chunk)
    shared = _run_workers(load, args.records)
    timings = {"load_s": time.perf_counter() - started}
    timings |= asyncio.run(_finish(target, load, indexes, shared))
    marker = {"records": args.records, "accounts": args.accounts, "days": args.days,
              "seed_version": seeding.SEED_VERSION, "seeded_at": end.isoformat(),
              "last_day": max(seeding.Calendar.build(city, load.start, end).days[-1] for city in cities).isoformat(),
              **{key: round(value) for key, value in timings.items()}, "total_s": round(time.perf_counter() - started)}
    asyncio.run(_comment(target, database, marker))
    return marker


async def _prepare(target: DatabaseTarget, settings: Settings,
                   end: datetime) -> tuple[list[seeding.City], list[str]]:
    """The cities as configured, and the bulk tables' indexes dropped (returns how to build them again)."""
    configs = load_city_files(settings.config_dir)
    partners = {c.slug: [(client.issuer, next(i.kind.value for i in c.issuers if i.slug == client.issuer))
                         for client in c.clients if client.role == Role.PARTNER] for c in configs}
    apps = {c.slug: next(client.slug for client in c.clients if client.role == Role.CITY_APP) for c in configs}
    connection = await owner_connection(target)
    try:
        if target.embedded is not None:  # the bench's own cluster: fewer checkpoints during the load
            await connection.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
            await connection.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
            await connection.execute("SELECT pg_reload_conf()")
        return await seeding.load_cities(connection, partners, apps, end), await drop_indexes(connection, BULK)
    finally:
        await connection.close()


def _run_workers(load: Load, records: int) -> list[seeding.Shared]:
    """The loader processes, with a progress bar until they are done."""
    context = multiprocessing.get_context("spawn")
    counters = (context.Value("q", 0), context.Value("q", 0))
    results = context.Queue()
    workers = [context.Process(target=load_worker, args=(load, w, counters, results), daemon=True)
               for w in range(load.workers)]
    for process in workers:
        process.start()
    progress, shared = Progress("loading", records), {}
    while len(shared) < len(workers):
        while not results.empty():
            worker, part = results.get()
            shared[worker] = part
        if any(process.exitcode not in (None, 0) for process in workers):
            raise SystemExit("a loader process failed (see above)")
        progress.show(counters[0].value, counters[1].value)
        time.sleep(0.5)
    for process in workers:
        process.join()
    progress.show(counters[0].value, counters[1].value, final=True)
    return [part for parts in shared.values() for part in parts]


async def _finish(target: DatabaseTarget, load: Load, indexes: list[str],
                  shared: list[seeding.Shared]) -> dict[str, float]:
    """Shared totals, indexes, rollups, statistics; returns each step's seconds."""
    connection = await owner_connection(target)
    try:
        await seeding.apply_shared(connection, shared)
        await connection.execute("SET session_replication_role = replica")
        await connection.execute("SET work_mem = '256MB'")
        await connection.execute("SET maintenance_work_mem = '3GB'")  # fewer external merges
        begun = time.perf_counter()
        for statement in indexes:
            await connection.execute(statement)
        timings = {"indexes_s": time.perf_counter() - begun}
        print(f"{len(indexes)} indexes built in {timings['indexes_s']:.0f} s", file=sys.stderr)
        begun = time.perf_counter()
        steps = await rebuild_rollups(connection)
        timings["rollups_s"] = time.perf_counter() - begun
        print("rollups rebuilt: " + ", ".join(f"{revision} {seconds:.0f} s" for revision, seconds in steps),
              file=sys.stderr)
        begun = time.perf_counter()
        for table in rollup_tables():  # small: vacuumed too, so their reads are index-only
            await connection.execute(f"VACUUM (ANALYZE) {table}")
        await connection.execute("ANALYZE")
        timings["analyze_s"] = time.perf_counter() - begun
        return timings
    finally:
        await connection.close()


async def _comment(target: DatabaseTarget, database: str, marker: dict) -> None:
    """Written last: a database without it holds no complete seed."""
    connection = await owner_connection(target)
    try:
        await connection.execute(f'COMMENT ON DATABASE "{database}" IS {quote(json.dumps(marker))}')
    finally:
        await connection.close()


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
