"""carbon_redeem_batch(): several redemptions of one tenant in one transaction (group commit)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Under load the trusted fast path sends the redemptions that queue up behind the ones in flight as one
call (`app.rewards.batching`): one round trip and one commit for all of them. Each item runs through
`carbon_redeem_in_tenant()`, so rules and answers are exactly those of a single redemption.

Lock order (ADR 0004, no deadlock between batches or with single writers): first the POINTS ledger
rows of every account in the batch, in id order; then the items in reward order, each of which may lock
its item's row and a donation project's row (reward, then project: the order of a single redemption).
Two redemptions of one account in a batch are serial inside it, as two concurrent requests would be.
An item that raises (a key raced by another account: unique violation) rolls the whole call back; the
caller then runs the items one by one, each with its own retry.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0005"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FUNCTION = r"""
CREATE OR REPLACE FUNCTION carbon_redeem_batch(
    p_tenant uuid, p_accounts uuid[], p_rewards uuid[], p_quantities int[], p_keys text[], p_hashes text[],
    p_clients text[], p_nows timestamptz[], p_vouchers text[], p_redemptions uuid[], p_transactions uuid[]
) RETURNS jsonb[]
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_results jsonb[] := array_fill(NULL::jsonb, ARRAY[cardinality(p_rewards)]);
    v_item bigint;
BEGIN
    IF coalesce(current_setting('app.tenant_id', true), '') NOT IN ('', p_tenant::text) THEN
        RAISE EXCEPTION 'carbon_redeem_batch: the transaction is scoped to another tenant';
    END IF;
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    PERFORM 1 FROM ledger_accounts WHERE tenant_id = p_tenant AND account_id = ANY(p_accounts) AND asset = 'POINTS'
     ORDER BY id FOR UPDATE;
    FOR v_item IN SELECT i FROM unnest(p_rewards) WITH ORDINALITY AS u(reward, i) ORDER BY reward, i LOOP
        v_results[v_item] := carbon_redeem_in_tenant(
            p_tenant, p_accounts[v_item], p_rewards[v_item], p_quantities[v_item], p_keys[v_item], p_hashes[v_item],
            p_clients[v_item], p_nows[v_item], p_vouchers[v_item], p_redemptions[v_item], p_transactions[v_item]);
    END LOOP;
    RETURN v_results;
END
$fn$
"""


def upgrade() -> None:
    op.execute(FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS carbon_redeem_batch(uuid, uuid[], uuid[], int[], text[], text[], text[], "
               "timestamptz[], text[], uuid[], uuid[])")
