"""`make bench-ingest`: behaviour ingestion throughput against raw asyncpg.

(a) raw asyncpg `executemany` of the rows one ingested record produces (behaviour record, ledger
    transaction, four postings, citizen balance updates, daily-total upserts), one transaction per
    1,000 records, as the application role under row-level security;
(b) `recordBehaviors` over HTTP against a running `carbon-inclusive serve` (1,000 records a request),
    a realistic mix (walking with its 200 g daily cap, bus, subway, shared bike by distance).

Both with the same number of concurrent clients over the same kind of accounts. Each client uploads
for its own slice of accounts, as a partner's parallel uploaders partitioned by account would: batches
that share accounts are still correct, but serialise on those accounts' locks (ADR 0004). Prints
records/s for each and the ratio b/a it is judged by (target >= 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from app.cli import _registry  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.tenants.config import load_city_files  # noqa: E402
from app.tenants.models import tenant_id_for  # noqa: E402
from bench.common import (  # noqa: E402
    LightHttpClient,
    app_connection,
    bench_database,
    make_accounts,
    running_server,
)

RECORD = """mutation($input: RecordBehaviorsInput!) { recordBehaviors(input: $input) {
  results { externalId status code reductionGrams points } userErrors { code message } } }"""
MIX = [("walking", 0.4), ("bus", 0.25), ("subway", 0.25), ("shared_bike", 0.10)]
FACTORS_MG = {"walking": 20, "bus": 80_000, "subway": 80_000, "shared_bike": 93_300}


def global_id(account_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"Account:{account_id}".encode()).decode().rstrip("=")


def make_batches(rng: random.Random, accounts: list, count: int, clients: int, tag: str) -> list[list[dict]]:
    """`count` batches; batch i belongs to client i % clients and uses that client's slice of accounts."""
    slices = [accounts[i::clients] for i in range(clients)]
    return [make_batch(rng, slices[i % clients], 1000, f"{tag}-{i}") for i in range(count)]


def make_batch(rng: random.Random, accounts: list, size: int, tag: str) -> list[dict]:
    now = datetime.now(UTC)
    records = []
    for i in range(size):
        code = rng.choices([m[0] for m in MIX], weights=[m[1] for m in MIX])[0]
        quantity = (rng.randint(2000, 16000) if code == "walking" else
                    f"{rng.randint(500, 12000) / 1000:.3f}" if code == "shared_bike" else 1)
        records.append({
            "accountId": rng.choice(accounts), "behavior": code, "quantity": str(quantity),
            "occurredAt": (now - timedelta(minutes=rng.randint(5, 3 * 24 * 60))).isoformat(),
            "externalId": f"{tag}-{i}",
        })
    return records


async def run_raw(target, batches: list[list[dict]], clients: int) -> float:
    """(a): the same rows through raw asyncpg executemany; returns records/s."""
    tenant_id = tenant_id_for("wuhan")
    setup = await app_connection(target, "wuhan")
    provider_id = await setup.fetchval("SELECT id FROM issuers WHERE tenant_id = $1 AND slug = 'wuhan-tong'", tenant_id)
    rules = {row["code"]: row["id"] for row in await setup.fetch(
        "SELECT code, id FROM behavior_rules WHERE tenant_id = $1 AND config_version_id = "
        "(SELECT id FROM tenant_config_versions WHERE tenant_id = $1 ORDER BY version DESC LIMIT 1)", tenant_id)}
    system = {row["asset"]: row["id"] for row in await setup.fetch(
        "SELECT asset, id FROM ledger_accounts WHERE tenant_id = $1 AND account_id IS NULL", tenant_id)}
    citizen = {(row["account_id"], row["asset"]): row["id"] for row in await setup.fetch(
        "SELECT account_id, asset, id FROM ledger_accounts WHERE tenant_id = $1 AND account_id IS NOT NULL", tenant_id)}
    await setup.close()
    async def worker(mine: list[list[dict]]) -> None:
        connection = await app_connection(target, "wuhan")
        try:
            for batch in mine:
                records, transactions, postings, balances, totals = [], [], [], {}, {}
                for item in batch:
                    account = item["account"]
                    mg = int(Decimal(item["quantity"]) * FACTORS_MG[item["behavior"]])
                    points, occurred = mg // 10_000, item["occurred"]
                    record_id, transaction_id = uuid.uuid4(), uuid.uuid4()
                    records.append((record_id, tenant_id, account, provider_id, item["externalId"], item["behavior"],
                                    rules[item["behavior"]], 1, Decimal(item["quantity"]), occurred, occurred.date(),
                                    occurred, "CREDITED", mg, mg, points))
                    transactions.append((transaction_id, tenant_id, account, "BEHAVIOR_CREDIT", "CREDITED", occurred,
                                         record_id, item["behavior"], mg, points, points * 10_000))
                    postings += [(tenant_id, transaction_id, system["CONTRIBUTION_MG"], "CONTRIBUTION_MG", -mg),
                                 (tenant_id, transaction_id, citizen[(account, "CONTRIBUTION_MG")], "CONTRIBUTION_MG", mg)]
                    if points:
                        postings += [(tenant_id, transaction_id, system["POINTS"], "POINTS", -points),
                                     (tenant_id, transaction_id, citizen[(account, "POINTS")], "POINTS", points)]
                    for asset, amount in (("CONTRIBUTION_MG", mg), ("POINTS", points)):
                        key = citizen[(account, asset)]
                        balances[key] = balances.get(key, 0) + amount
                    day = (account, item["behavior"], occurred.date())
                    totals[day] = totals.get(day, 0) + mg
                async with connection.transaction():
                    await connection.executemany(
                        "INSERT INTO behavior_records (id, tenant_id, account_id, provider_issuer_id, external_id, "
                        "behavior_code, rule_id, config_version, quantity, occurred_at, local_date, received_at, status, "
                        "requested_mg, reduction_mg, points) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
                        records)
                    await connection.executemany(
                        "INSERT INTO ledger_transactions (id, tenant_id, account_id, kind, status, occurred_at, "
                        "behavior_record_id, behavior_code, reduction_mg, points, converted_mg) "
                        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)", transactions)
                    await connection.executemany(
                        "INSERT INTO ledger_postings (tenant_id, transaction_id, ledger_account_id, asset, amount) "
                        "VALUES ($1,$2,$3,$4,$5)", postings)
                    await connection.executemany("UPDATE ledger_accounts SET balance = balance + $2 WHERE id = $1",
                                                 sorted(balances.items()))
                    await connection.executemany(
                        "INSERT INTO daily_behavior_totals AS t (tenant_id, account_id, behavior_code, local_date, "
                        "credited_mg, credited_points) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (tenant_id, account_id, "
                        "behavior_code, local_date) DO UPDATE SET credited_mg = t.credited_mg + excluded.credited_mg, "
                        "credited_points = t.credited_points + excluded.credited_points",
                        [(tenant_id, *key, mg, mg // 10_000) for key, mg in sorted(totals.items())])
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(batches[i::clients]) for i in range(clients)))
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


async def run_http(base_url: str, token: str, batches: list[list[dict]], clients: int) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    host, port = base_url.removeprefix("http://").split(":")
    bodies = [json.dumps({"query": RECORD, "variables": {"input": {"records": batch}}}).encode() for batch in batches]

    async def worker(mine: list[bytes]) -> None:
        async with LightHttpClient(host, int(port)) as http:
            for body in mine:
                status, raw = await http.post_json("/graphql", body, headers)
                parsed = json.loads(raw)
                if status != 200 or "errors" in parsed or parsed["data"]["recordBehaviors"]["userErrors"]:
                    raise RuntimeError(f"ingestion failed: {status} {raw[:500]!r}")
                statuses = {r["status"] for r in parsed["data"]["recordBehaviors"]["results"]}
                if not statuses <= {"CREDITED", "CAPPED"}:
                    raise RuntimeError(f"unexpected outcomes {statuses}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(bodies[i::clients]) for i in range(clients)))
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, default=24, help="1,000-record batches per measurement")
    parser.add_argument("--accounts", type=int, default=4000)
    args = parser.parse_args()
    rng = random.Random(7)
    settings = Settings()
    token = _registry(settings, load_city_files(settings.config_dir)).issue("wuhan-tong", 3600)
    with bench_database("carbon_bench_ingest") as target:
        print(f"preparing {2 * args.accounts} accounts with consents ...", flush=True)
        raw_accounts = asyncio.run(make_accounts(target, args.accounts, "wuhan-tong", ["TRAVEL"]))
        http_accounts = asyncio.run(make_accounts(target, args.accounts, "wuhan-tong", ["TRAVEL"]))
        def raw_batches(count: int, tag: str) -> list[list[dict]]:
            batches = make_batches(rng, raw_accounts, count, args.clients, tag)
            for item in (item for batch in batches for item in batch):
                item["account"] = item["accountId"]
                item["occurred"] = datetime.fromisoformat(item["occurredAt"])
            return batches

        asyncio.run(run_raw(target, raw_batches(args.clients, "raw-warm"), args.clients))
        raw_rate = asyncio.run(run_raw(target, raw_batches(args.batches, "raw"), args.clients))
        http_ids = [global_id(a) for a in http_accounts]
        with running_server(target) as base_url:
            asyncio.run(run_http(base_url, token, make_batches(rng, http_ids, args.clients, args.clients, "warm"),
                                 args.clients))
            http_rate = asyncio.run(run_http(base_url, token, make_batches(rng, http_ids, args.batches, args.clients,
                                                                           "http"), args.clients))
    ratio = http_rate / raw_rate
    print(f"(a) raw asyncpg executemany : {raw_rate:9.0f} records/s")
    print(f"(b) recordBehaviors (HTTP)  : {http_rate:9.0f} records/s")
    print(f"b/a = {ratio:.2f}  (target >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
