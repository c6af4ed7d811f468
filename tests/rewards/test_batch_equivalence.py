"""A batch of redemptions (`carbon_redeem_batch`, migration 0007) answers and writes exactly what the same
redemptions one after another (`carbon_redeem_in_tenant`) would: generated batches over accounts with
little money, a frozen one, items with little stock, per-account limits, donations, bank-only financial
services, repeated and conflicting idempotency keys, unknown accounts and items."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.graphql.ids import from_global_id
from app.rewards.batching import REDEEM_MANY, REDEEM_ONE
from app.tenants.models import tenant_id_for
from tests.factories import consenting_account, earn, make_reward, open_account

WUHAN = tenant_id_for("wuhan")
STATE = """SELECT jsonb_build_object(
    'balances', (SELECT jsonb_object_agg(account_id::text, balance || '/' || points_consumed) FROM ledger_accounts
                  WHERE tenant_id = $1 AND account_id = ANY($2) AND asset = 'POINTS'),
    'stock', (SELECT jsonb_object_agg(id::text, stock_taken) FROM rewards WHERE tenant_id = $1 AND id = ANY($3)),
    'redemptions', (SELECT jsonb_agg(jsonb_build_array(id, account_id, reward_id, quantity, points, voucher_code,
                        idempotency_key, stock_units, counterparty_ledger_id, cancellable_until) ORDER BY id)
                     FROM redemptions WHERE tenant_id = $1 AND account_id = ANY($2)),
    'entitlements', (SELECT count(*) FROM entitlements WHERE tenant_id = $1 AND account_id = ANY($2)),
    'postings', (SELECT jsonb_agg(jsonb_build_array(p.transaction_id, p.ledger_account_id, p.amount)
                        ORDER BY p.transaction_id, p.amount)
                   FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.transaction_id
                  WHERE t.tenant_id = $1 AND t.account_id = ANY($2) AND t.kind IN ('REDEMPTION', 'DONATION')),
    'projects', (SELECT jsonb_object_agg(code, balance) FROM ledger_accounts
                  WHERE tenant_id = $1 AND account_id IS NULL AND code LIKE 'donation:%'))"""

ITEM = st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(1, 3), st.integers(0, 5), st.booleans())
BATCHES = st.lists(ITEM, min_size=1, max_size=12)


async def _world(api, database) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    rich = await consenting_account(api)
    await earn(api, rich, 40)
    poor = await consenting_account(api)
    await earn(api, poor, 8)
    banked = await open_account(api, kind="BANK_LINKED", bank="6228480012345678")
    frozen = await consenting_account(api)
    await earn(api, frozen, 16)
    await api.query('mutation($id: ID!) { freezeAccount(input: {accountId: $id}) { userErrors { code } } }',
                    as_="wuhan-admin", variables={"id": frozen})
    accounts = [from_global_id(a)[1] for a in (rich, poor, banked, frozen)] + [uuid.uuid4()]  # the last: unknown
    rewards = [
        await make_reward(database, cost=5),
        await make_reward(database, cost=3, stock=2),
        await make_reward(database, cost=2, limit=2, period="DAY"),
        await make_reward(database, cost=4, kind="DONATION"),
        await make_reward(database, cost=0, kind="FINANCIAL_SERVICE", bank=True),
        await make_reward(database, cost=1, window=24),
    ]
    return accounts, [from_global_id(r)[1] for r in rewards] + [uuid.uuid4()]  # the last: unknown


def _json(value):  # the test connection may already decode jsonb
    return json.loads(value) if isinstance(value, str) else value


def _calls(batch, accounts, rewards) -> list[tuple]:
    now = datetime.now(UTC)
    calls = []
    for account, reward, quantity, key, changed in batch:
        if key < 2:  # a shared key: the same request again (a replay), or with another quantity (a conflict)
            account, reward, quantity = key, key, 1
        calls.append((accounts[account], rewards[reward], quantity + (1 if changed and key < 2 else 0),
                      f"key-{key}-{uuid.uuid4().hex}" if key >= 2 else f"shared-{key}",
                      f"hash-{account}-{reward}-{quantity + (1 if changed and key < 2 else 0)}", "test", now,
                      f"V{len(calls)}", uuid.uuid4(), uuid.uuid4()))
    return calls


async def test_batches_answer_and_write_like_one_redemption_after_another(api, database) -> None:
    accounts, rewards = await _world(api, database)
    batches: list = []

    @settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(BATCHES)
    def collect(batch) -> None:
        batches.append(batch)

    collect()
    raw = (await database.bind.get_raw_connection()).driver_connection
    seen: set[str] = set()
    for batch in batches:
        calls = _calls(batch, accounts, rewards)
        outcomes = []
        for mode in ("one by one", "batch"):
            transaction = raw.transaction()
            await transaction.start()
            try:
                await raw.execute("SELECT set_config('role', 'none', true), set_config('app.tenant_id', '', true)")
                if mode == "batch":
                    columns = [list(column) for column in zip(*calls, strict=True)]
                    verdicts = [_json(v) for v in await raw.fetchval(REDEEM_MANY, WUHAN, *columns)]
                else:
                    verdicts = [_json(await raw.fetchval(REDEEM_ONE, WUHAN, *call)) for call in calls]
                state = _json(await raw.fetchval(STATE, WUHAN, accounts, rewards))
                outcomes.append((verdicts, state))
            finally:
                await transaction.rollback()
        assert outcomes[1] == outcomes[0], batch
        seen |= {v.get("error") or ("REPLAYED" if v["replayed"] else v["status"]) for v in outcomes[0][0]}
    assert sum(1 for b in batches if len(b) > 3) > 10
    # The generated batches reach every answer (otherwise the comparison proves little).
    assert seen >= {"FULFILLED", "REPLAYED", "IDEMPOTENCY_CONFLICT", "INSUFFICIENT_POINTS", "OUT_OF_STOCK",
                    "LIMIT_REACHED", "NOT_ELIGIBLE", "ACCOUNT_FROZEN", "ACCOUNT_NOT_FOUND", "REWARD_UNAVAILABLE"}, seen
