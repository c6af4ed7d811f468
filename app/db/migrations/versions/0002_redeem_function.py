"""carbon_redeem(): a redemption in one statement

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

The write path of `redeemReward` runs inside PostgreSQL, so one round trip does it all: the account
lock, idempotency, eligibility, stock, the redemption, its entitlement and its ledger transaction.
It runs as the caller (SECURITY INVOKER): row-level security applies to every statement in it.
The rules are those of `app.rewards.service` (ADR 0005); `check_eligibility` there answers the
read-only `eligibilityFor` with the same order of reasons.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0002"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FUNCTION = r"""
CREATE OR REPLACE FUNCTION carbon_redeem(
    p_tenant uuid, p_account uuid, p_reward uuid, p_quantity int, p_key text, p_hash text, p_client text,
    p_now timestamptz, p_timezone text, p_voucher text, p_redemption uuid, p_transaction uuid
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_points_id uuid;
    v_points_balance bigint;
    v_contribution bigint;
    v_existing record;
    v_reward record;
    v_status text;
    v_kind text;
    v_start timestamp;
    v_since timestamptz;
    v_taken bigint;
    v_cost bigint;
    v_code text;
    v_counterparty uuid;
    v_tracked boolean;
BEGIN
    -- The per-account lock (ADR 0004): the account's ledger rows, in id order, before anything is read.
    SELECT max(l.id::text) FILTER (WHERE l.asset = 'POINTS')::uuid,
           max(l.balance) FILTER (WHERE l.asset = 'POINTS'),
           max(l.balance) FILTER (WHERE l.asset = 'CONTRIBUTION_MG')
      INTO v_points_id, v_points_balance, v_contribution
      FROM (SELECT id, asset, balance FROM ledger_accounts WHERE tenant_id = p_tenant AND account_id = p_account
            ORDER BY id FOR UPDATE) l;
    IF v_points_id IS NULL THEN
        RETURN jsonb_build_object('error', 'ACCOUNT_NOT_FOUND');
    END IF;

    SELECT id, request_hash, account_id, status, voucher_code INTO v_existing FROM redemptions
     WHERE tenant_id = p_tenant AND idempotency_key = p_key;
    IF FOUND THEN
        IF v_existing.request_hash <> p_hash THEN
            RETURN jsonb_build_object('error', 'IDEMPOTENCY_CONFLICT');
        END IF;
        RETURN jsonb_build_object(
            'redemption_id', v_existing.id, 'status', v_existing.status, 'voucher_code', v_existing.voucher_code,
            'replayed', true,
            'balance', (SELECT balance FROM ledger_accounts WHERE tenant_id = p_tenant
                         AND account_id = v_existing.account_id AND asset = 'POINTS'));
    END IF;

    SELECT r.*, la.id AS counterparty, la.tracks_balance AS counterparty_tracked INTO v_reward
      FROM rewards r
      LEFT JOIN ledger_accounts la ON la.tenant_id = r.tenant_id AND la.account_id IS NULL AND la.asset = 'POINTS'
           AND la.code = CASE WHEN r.kind = 'DONATION' THEN 'donation:' || r.code ELSE 'redemptions' END
     WHERE r.tenant_id = p_tenant AND r.id = p_reward;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('error', 'REWARD_UNAVAILABLE', 'reason', 'NOT_FOUND');
    END IF;
    -- Units held in the item's limit period, in the tenant's local calendar (ISO weeks); only counted
    -- for items with a limit.
    v_start := CASE v_reward.limit_period
        WHEN 'DAY' THEN date_trunc('day', p_now AT TIME ZONE p_timezone)
        WHEN 'WEEK' THEN date_trunc('week', p_now AT TIME ZONE p_timezone)
        WHEN 'MONTH' THEN date_trunc('month', p_now AT TIME ZONE p_timezone)
        WHEN 'YEAR' THEN date_trunc('year', p_now AT TIME ZONE p_timezone)
    END;
    v_since := v_start AT TIME ZONE p_timezone;
    SELECT a.status, a.kind,
           CASE WHEN v_reward.per_account_limit IS NULL THEN 0 ELSE (
               SELECT coalesce(sum(r.quantity), 0) FROM redemptions r
                WHERE r.tenant_id = p_tenant AND r.account_id = p_account AND r.reward_id = p_reward
                  AND r.status = 'FULFILLED' AND (v_since IS NULL OR r.created_at >= v_since)) END
      INTO v_status, v_kind, v_taken
      FROM accounts a WHERE a.tenant_id = p_tenant AND a.id = p_account;

    v_cost := v_reward.cost_points * p_quantity;
    v_code := CASE
        WHEN v_status = 'FROZEN' THEN 'ACCOUNT_FROZEN'
        WHEN v_status = 'CLOSED' THEN 'ACCOUNT_CLOSED'
        WHEN NOT v_reward.active OR (v_reward.valid_from IS NOT NULL AND p_now < v_reward.valid_from)
             OR (v_reward.valid_to IS NOT NULL AND p_now >= v_reward.valid_to) THEN 'REWARD_UNAVAILABLE'
        WHEN (v_reward.bank_linked_only AND v_kind <> 'BANK_LINKED') OR v_contribution < v_reward.min_contribution_mg
             THEN 'NOT_ELIGIBLE'
        WHEN v_reward.per_account_limit IS NOT NULL AND v_taken + p_quantity > v_reward.per_account_limit
             THEN 'LIMIT_REACHED'
        WHEN v_reward.stock_total IS NOT NULL AND v_reward.stock_taken + p_quantity > v_reward.stock_total
             THEN 'OUT_OF_STOCK'
        WHEN v_points_balance < v_cost THEN 'INSUFFICIENT_POINTS'
    END;
    IF v_code IS NOT NULL THEN
        RETURN jsonb_build_object('error', v_code);
    END IF;

    -- Stock: one guarded update (the item row is locked after the account's rows, always).
    IF v_reward.stock_total IS NOT NULL THEN
        UPDATE rewards SET stock_taken = stock_taken + p_quantity, updated_at = now()
         WHERE id = p_reward AND stock_taken + p_quantity <= stock_total;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('error', 'OUT_OF_STOCK');
        END IF;
    ELSIF v_reward.kind = 'DONATION' THEN
        UPDATE rewards SET stock_taken = stock_taken + p_quantity WHERE id = p_reward;
    END IF;

    v_counterparty := v_reward.counterparty;
    v_tracked := coalesce(v_reward.counterparty_tracked, false);
    IF v_cost > 0 AND v_counterparty IS NULL AND v_reward.kind = 'DONATION' THEN
        INSERT INTO ledger_accounts (id, tenant_id, account_id, code, asset, balance, tracks_balance)
        VALUES (gen_random_uuid(), p_tenant, NULL, 'donation:' || v_reward.code, 'POINTS', 0, true)
        ON CONFLICT (tenant_id, code, asset) WHERE account_id IS NULL DO NOTHING;
        SELECT id, tracks_balance INTO v_counterparty, v_tracked FROM ledger_accounts
         WHERE tenant_id = p_tenant AND account_id IS NULL AND asset = 'POINTS' AND code = 'donation:' || v_reward.code;
    END IF;

    INSERT INTO redemptions (id, tenant_id, account_id, reward_id, kind, quantity, points, status, voucher_code,
                             idempotency_key, request_hash, by_client, created_at, cancellable_until, stock_units,
                             counterparty_ledger_id)
    VALUES (p_redemption, p_tenant, p_account, p_reward, v_reward.kind, p_quantity, v_cost, 'FULFILLED',
            CASE WHEN v_reward.kind = 'REWARD' THEN p_voucher END, p_key, p_hash, p_client, p_now,
            CASE WHEN v_reward.cancellation_window_hours > 0
                 THEN p_now + make_interval(hours => v_reward.cancellation_window_hours) END,
            CASE WHEN v_reward.stock_total IS NOT NULL OR v_reward.kind = 'DONATION' THEN p_quantity ELSE 0 END,
            CASE WHEN v_cost > 0 THEN v_counterparty END);
    IF v_reward.kind = 'FINANCIAL_SERVICE' THEN
        INSERT INTO entitlements (id, tenant_id, account_id, reward_id, sponsor_issuer_id, redemption_id, status,
                                  granted_at, valid_to)
        VALUES (gen_random_uuid(), p_tenant, p_account, p_reward, v_reward.sponsor_issuer_id, p_redemption, 'ACTIVE',
                p_now, v_reward.valid_to);
    END IF;
    IF v_cost > 0 THEN
        INSERT INTO ledger_transactions (id, tenant_id, account_id, kind, status, occurred_at, points, redemption_id)
        VALUES (p_transaction, p_tenant, p_account,
                CASE WHEN v_reward.kind = 'DONATION' THEN 'DONATION' ELSE 'REDEMPTION' END, 'FULFILLED', p_now,
                -v_cost, p_redemption);
        INSERT INTO ledger_postings (tenant_id, transaction_id, ledger_account_id, asset, amount)
        VALUES (p_tenant, p_transaction, v_points_id, 'POINTS', -v_cost),
               (p_tenant, p_transaction, v_counterparty, 'POINTS', v_cost);
        UPDATE ledger_accounts SET balance = balance - v_cost, points_consumed = points_consumed + v_cost
         WHERE id = v_points_id;
        IF v_tracked THEN
            UPDATE ledger_accounts SET balance = balance + v_cost WHERE id = v_counterparty;
        END IF;
    END IF;
    RETURN jsonb_build_object(
        'redemption_id', p_redemption, 'status', 'FULFILLED',
        'voucher_code', CASE WHEN v_reward.kind = 'REWARD' THEN p_voucher END,
        'replayed', false, 'balance', v_points_balance - v_cost);
END
$fn$
"""


# For trusted documents served in one round trip: scope, configuration in force and redemption in a
# single call. Each statement inside runs after the scope is set (a CTE in the caller's statement
# could not promise that: row-level security may read the setting before the CTE runs).
SCOPED = r"""
CREATE OR REPLACE FUNCTION carbon_redeem_in_tenant(
    p_tenant uuid, p_account uuid, p_reward uuid, p_quantity int, p_key text, p_hash text, p_client text,
    p_now timestamptz, p_voucher text, p_redemption uuid, p_transaction uuid
) RETURNS jsonb
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    v_timezone text;
    v_decimals int;
BEGIN
    -- Never re-scope a transaction that already has another tenant (a request's transaction).
    IF coalesce(current_setting('app.tenant_id', true), '') NOT IN ('', p_tenant::text) THEN
        RAISE EXCEPTION 'carbon_redeem_in_tenant: the transaction is scoped to another tenant';
    END IF;
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    SELECT timezone, unit_decimals INTO v_timezone, v_decimals FROM tenant_config_versions
     WHERE tenant_id = p_tenant AND effective_from <= p_now ORDER BY effective_from DESC, version DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN carbon_redeem(p_tenant, p_account, p_reward, p_quantity, p_key, p_hash, p_client, p_now, v_timezone,
                         p_voucher, p_redemption, p_transaction) || jsonb_build_object('decimals', v_decimals);
END
$fn$
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute(SCOPED)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS carbon_redeem_in_tenant(uuid, uuid, uuid, int, text, text, text, timestamptz, "
               "text, uuid, uuid)")
    op.execute("DROP FUNCTION IF EXISTS carbon_redeem(uuid, uuid, uuid, int, text, text, text, timestamptz, text, "
               "text, uuid, uuid)")
