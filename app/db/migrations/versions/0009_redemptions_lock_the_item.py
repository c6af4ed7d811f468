"""redemptions lock the item's row before reading it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

Administrators now change items while redemptions run (migration 0008). A redemption read the item
without a lock, so one waiting on an administrator's change could finish with the item as it was
(charging an old cost, redeeming a retired item), and a batch could take stock from an item that had
just become finite without holding its row. Now:

* a single redemption takes KEY SHARE on the item's row before its read statement (after the
  account's row, in the ADR 0004 order). Redemptions don't block each other (the foreign key check
  takes the same lock anyway); an administrator's FOR UPDATE waits for them and they for it;
* a batch takes FOR UPDATE on the items whose stock moves and KEY SHARE on the others, and if an item
  it did not lock exclusively turns out to have moving stock (it changed in between), the batch fails
  with a serialization failure and the server runs its items one by one.

The function bodies are those of migrations 0004 and 0007 with these statements added.
"""
from importlib import import_module
from typing import Sequence, Union

from alembic import op

revision: str = "0009"
down_revision: Union[str, None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_SINGLE = import_module("app.db.migrations.versions.0004_leaner_redeem").FUNCTION
_BATCH = import_module("app.db.migrations.versions.0007_set_based_redeem_batch")

SINGLE_LOCK_AFTER = """    SELECT id, balance INTO v_points_id, v_balance FROM ledger_accounts
     WHERE tenant_id = p_tenant AND account_id = p_account AND asset = 'POINTS' FOR UPDATE;
"""
SINGLE_LOCK = """
    -- 1b. The item's row, before it is read: an administrator's change is seen wholly or not at all.
    PERFORM 1 FROM rewards WHERE tenant_id = p_tenant AND id = p_reward FOR KEY SHARE;
"""

BATCH_LOCKS_OLD = """    PERFORM 1 FROM rewards WHERE tenant_id = p_tenant AND id = ANY(p_rewards)
       AND (stock_total IS NOT NULL OR kind = 'DONATION') ORDER BY id FOR UPDATE;
"""
BATCH_LOCKS_NEW = """    SELECT coalesce(array_agg(x.id), '{}') INTO v_exclusive FROM (
        SELECT id FROM rewards WHERE tenant_id = p_tenant AND id = ANY(p_rewards)
           AND (stock_total IS NOT NULL OR kind = 'DONATION') ORDER BY id FOR UPDATE) x;
    PERFORM 1 FROM rewards WHERE tenant_id = p_tenant AND id = ANY(p_rewards) AND NOT (id = ANY(v_exclusive))
     ORDER BY id FOR KEY SHARE;
"""
BATCH_CHECK_BEFORE = """    FOR v_row IN
        SELECT idempotency_key, id, request_hash, account_id, status, voucher_code FROM redemptions"""
BATCH_CHECK = """    IF EXISTS (SELECT 1 FROM jsonb_each(v_rew) AS item(id, value)
                WHERE (item.value ->> 'stock_total' IS NOT NULL OR item.value ->> 'kind' = 'DONATION')
                  AND NOT (item.id::uuid = ANY(v_exclusive))) THEN
        RAISE EXCEPTION 'carbon_redeem_batch: an item changed under the batch; run its items one by one'
              USING ERRCODE = 'serialization_failure';
    END IF;
"""


def _single() -> str:
    assert SINGLE_LOCK_AFTER in _SINGLE
    return _SINGLE.replace(SINGLE_LOCK_AFTER, SINGLE_LOCK_AFTER + SINGLE_LOCK)


def _batch() -> str:
    function = _BATCH.FUNCTION
    assert BATCH_LOCKS_OLD in function and BATCH_CHECK_BEFORE in function
    function = function.replace(BATCH_LOCKS_OLD, BATCH_LOCKS_NEW)
    function = function.replace(BATCH_CHECK_BEFORE, BATCH_CHECK + BATCH_CHECK_BEFORE)
    return function.replace("    v_row record;\n", "    v_row record;\n    v_exclusive uuid[];\n", 1)


def upgrade() -> None:
    op.execute(_single())
    op.execute(_batch())
    op.execute(_BATCH.CUSTOM_PLANS)


def downgrade() -> None:
    op.execute(_SINGLE)
    op.execute(_BATCH.FUNCTION)
    op.execute(_BATCH.CUSTOM_PLANS)
