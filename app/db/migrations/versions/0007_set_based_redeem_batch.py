"""carbon_redeem_batch(): set-based — a fixed number of statements per batch, whatever its size

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Migration 0005 ran each item of a batch through `carbon_redeem_in_tenant()` (four statements an item).
This version does what ingestion does (ADR 0004): take every lock first, read everything the decisions
need in a few statements, decide item by item in memory in input order, then write everything in one
statement. The answers are exactly those of calling `carbon_redeem_in_tenant()` for the items one
after another in input order (tests/rewards/test_batch_equivalence.py compares them on generated
batches).

Locks, in the global order of ADR 0004: the POINTS ledger rows of every account in the batch (id order);
then the rows of the batch's items whose stock moves (finite stock, donations; id order); then the
tracked ledger rows of donation projects (id order), just before writing.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0007"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FUNCTION = r"""
CREATE OR REPLACE FUNCTION carbon_redeem_batch(
    p_tenant uuid, p_accounts uuid[], p_rewards uuid[], p_quantities int[], p_keys text[], p_hashes text[],
    p_clients text[], p_nows timestamptz[], p_vouchers text[], p_redemptions uuid[], p_transactions uuid[]
) RETURNS jsonb[]
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
DECLARE
    n int := cardinality(p_accounts);
    v_results jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
    v_timezone text;
    v_decimals int;
    v_acct jsonb := '{}';   -- account id -> {ledger, balance, status, kind, contribution}
    v_rew jsonb := '{}';    -- reward id -> the item, its counterparty and its running stock_taken
    v_keys jsonb := '{}';   -- idempotency key -> {id, hash, account, status, voucher}
    v_done jsonb := '[]';   -- this batch's redemptions: [{account, reward, quantity, at}]
    v_row record;
    v_a jsonb;
    v_r jsonb;
    v_e jsonb;
    i int;
    v_code text;
    v_cost bigint;
    v_taken bigint;
    v_since timestamptz;
    v_balance bigint;
    v_kind text;
    -- the successful items, as columns for the write
    s_item int[] := '{}';
    s_cost bigint[] := '{}';
    s_kind text[] := '{}';
    s_ledger uuid[] := '{}';
    s_counterparty uuid[] := '{}';
    s_tracked boolean[] := '{}';
    s_stock_units int[] := '{}';
    s_cancellable timestamptz[] := '{}';
    s_sponsor uuid[] := '{}';
    s_valid_to timestamptz[] := '{}';
    s_code text[] := '{}';
BEGIN
    IF coalesce(current_setting('app.tenant_id', true), '') NOT IN ('', p_tenant::text) THEN
        RAISE EXCEPTION 'carbon_redeem_batch: the transaction is scoped to another tenant';
    END IF;
    PERFORM set_config('app.tenant_id', p_tenant::text, true);

    -- 1. Locks: the accounts' POINTS rows, then the rows of items whose stock moves.
    PERFORM 1 FROM ledger_accounts WHERE tenant_id = p_tenant AND account_id = ANY(p_accounts) AND asset = 'POINTS'
     ORDER BY id FOR UPDATE;
    PERFORM 1 FROM rewards WHERE tenant_id = p_tenant AND id = ANY(p_rewards)
       AND (stock_total IS NOT NULL OR kind = 'DONATION') ORDER BY id FOR UPDATE;

    -- 2. Everything the decisions need, as of after the locks.
    SELECT timezone, unit_decimals INTO v_timezone, v_decimals FROM tenant_config_versions
     WHERE tenant_id = p_tenant AND effective_from <= p_nows[1] ORDER BY effective_from DESC, version DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN v_results;  -- no configuration in force: every answer is NULL, as for a single call
    END IF;
    FOR v_row IN
        SELECT la.account_id, la.id AS ledger, la.balance, ac.status, ac.kind, cb.balance AS contribution
          FROM ledger_accounts la
          JOIN accounts ac ON ac.tenant_id = p_tenant AND ac.id = la.account_id
          LEFT JOIN ledger_accounts cb ON cb.tenant_id = p_tenant AND cb.account_id = la.account_id
               AND cb.asset = 'CONTRIBUTION_MG'
         WHERE la.tenant_id = p_tenant AND la.account_id = ANY(p_accounts) AND la.asset = 'POINTS'
    LOOP
        v_acct := v_acct || jsonb_build_object(v_row.account_id::text, jsonb_build_object(
            'ledger', v_row.ledger, 'balance', v_row.balance, 'status', v_row.status, 'kind', v_row.kind,
            'contribution', v_row.contribution));
    END LOOP;
    FOR v_row IN
        SELECT r.id, to_jsonb(r) || jsonb_build_object('counterparty', la.id, 'counterparty_tracked', la.tracks_balance)
               AS item
          FROM rewards r
          LEFT JOIN ledger_accounts la ON la.tenant_id = r.tenant_id AND la.account_id IS NULL AND la.asset = 'POINTS'
               AND la.code = CASE WHEN r.kind = 'DONATION' THEN 'donation:' || r.code ELSE 'redemptions' END
         WHERE r.tenant_id = p_tenant AND r.id = ANY(p_rewards)
    LOOP
        v_rew := v_rew || jsonb_build_object(v_row.id::text, v_row.item);
    END LOOP;
    FOR v_row IN
        SELECT idempotency_key, id, request_hash, account_id, status, voucher_code FROM redemptions
         WHERE tenant_id = p_tenant AND idempotency_key = ANY(p_keys)
    LOOP
        v_keys := v_keys || jsonb_build_object(v_row.idempotency_key, jsonb_build_object(
            'id', v_row.id, 'hash', v_row.request_hash, 'account', v_row.account_id, 'status', v_row.status,
            'voucher', v_row.voucher_code));
    END LOOP;

    -- 3. Decide, item by item in input order, exactly as carbon_redeem_in_tenant() would one after another.
    FOR i IN 1..n LOOP
        v_a := v_acct -> p_accounts[i]::text;
        IF v_a IS NULL THEN
            v_results[i] := jsonb_build_object('error', 'ACCOUNT_NOT_FOUND', 'decimals', v_decimals);
            CONTINUE;
        END IF;
        v_e := v_keys -> p_keys[i];
        IF v_e IS NOT NULL THEN
            IF v_e ->> 'hash' <> p_hashes[i] THEN
                v_results[i] := jsonb_build_object('error', 'IDEMPOTENCY_CONFLICT', 'decimals', v_decimals);
            ELSE
                v_balance := CASE WHEN v_acct ? (v_e ->> 'account') THEN (v_acct -> (v_e ->> 'account') ->> 'balance')::bigint
                    ELSE (SELECT balance FROM ledger_accounts WHERE tenant_id = p_tenant
                            AND account_id = (v_e ->> 'account')::uuid AND asset = 'POINTS') END;
                v_results[i] := jsonb_build_object(
                    'redemption_id', v_e -> 'id', 'status', v_e -> 'status', 'voucher_code', v_e -> 'voucher',
                    'replayed', true, 'decimals', v_decimals, 'balance', v_balance);
            END IF;
            CONTINUE;
        END IF;
        v_r := v_rew -> p_rewards[i]::text;
        IF v_r IS NULL THEN
            v_results[i] := jsonb_build_object('error', 'REWARD_UNAVAILABLE', 'reason', 'NOT_FOUND',
                                               'decimals', v_decimals);
            CONTINUE;
        END IF;
        v_taken := 0;
        IF v_r ->> 'per_account_limit' IS NOT NULL THEN
            v_since := (CASE v_r ->> 'limit_period'
                WHEN 'DAY' THEN date_trunc('day', p_nows[i] AT TIME ZONE v_timezone)
                WHEN 'WEEK' THEN date_trunc('week', p_nows[i] AT TIME ZONE v_timezone)
                WHEN 'MONTH' THEN date_trunc('month', p_nows[i] AT TIME ZONE v_timezone)
                WHEN 'YEAR' THEN date_trunc('year', p_nows[i] AT TIME ZONE v_timezone)
            END) AT TIME ZONE v_timezone;
            SELECT coalesce(sum(quantity), 0) INTO v_taken FROM redemptions
             WHERE tenant_id = p_tenant AND account_id = p_accounts[i] AND reward_id = p_rewards[i]
               AND status = 'FULFILLED' AND (v_since IS NULL OR created_at >= v_since);
            SELECT v_taken + coalesce(sum((d ->> 'quantity')::bigint), 0) INTO v_taken
              FROM jsonb_array_elements(v_done) d
             WHERE d ->> 'account' = p_accounts[i]::text AND d ->> 'reward' = p_rewards[i]::text
               AND (v_since IS NULL OR (d ->> 'at')::timestamptz >= v_since);
        END IF;
        v_cost := (v_r ->> 'cost_points')::bigint * p_quantities[i];
        v_balance := (v_a ->> 'balance')::bigint;
        v_kind := v_r ->> 'kind';
        v_code := CASE
            WHEN v_a ->> 'status' = 'FROZEN' THEN 'ACCOUNT_FROZEN'
            WHEN v_a ->> 'status' = 'CLOSED' THEN 'ACCOUNT_CLOSED'
            WHEN NOT (v_r ->> 'active')::boolean
                 OR (v_r ->> 'valid_from' IS NOT NULL AND p_nows[i] < (v_r ->> 'valid_from')::timestamptz)
                 OR (v_r ->> 'valid_to' IS NOT NULL AND p_nows[i] >= (v_r ->> 'valid_to')::timestamptz)
                 THEN 'REWARD_UNAVAILABLE'
            WHEN ((v_r ->> 'bank_linked_only')::boolean AND v_a ->> 'kind' <> 'BANK_LINKED')
                 OR (v_a ->> 'contribution')::bigint < (v_r ->> 'min_contribution_mg')::bigint THEN 'NOT_ELIGIBLE'
            WHEN v_r ->> 'per_account_limit' IS NOT NULL
                 AND v_taken + p_quantities[i] > (v_r ->> 'per_account_limit')::bigint THEN 'LIMIT_REACHED'
            WHEN v_r ->> 'stock_total' IS NOT NULL
                 AND (v_r ->> 'stock_taken')::bigint + p_quantities[i] > (v_r ->> 'stock_total')::bigint THEN 'OUT_OF_STOCK'
            WHEN v_balance < v_cost THEN 'INSUFFICIENT_POINTS'
        END;
        IF v_code IS NOT NULL THEN
            v_results[i] := jsonb_build_object('error', v_code, 'decimals', v_decimals);
            CONTINUE;
        END IF;
        -- Fulfilled: move the running state on.
        v_acct := jsonb_set(v_acct, ARRAY[p_accounts[i]::text, 'balance'], to_jsonb(v_balance - v_cost));
        IF v_r ->> 'stock_total' IS NOT NULL OR v_kind = 'DONATION' THEN
            v_rew := jsonb_set(v_rew, ARRAY[p_rewards[i]::text, 'stock_taken'],
                               to_jsonb((v_r ->> 'stock_taken')::bigint + p_quantities[i]));
        END IF;
        v_keys := v_keys || jsonb_build_object(p_keys[i], jsonb_build_object(
            'id', p_redemptions[i], 'hash', p_hashes[i], 'account', p_accounts[i], 'status', 'FULFILLED',
            'voucher', CASE WHEN v_kind = 'REWARD' THEN p_vouchers[i] END));
        v_done := v_done || jsonb_build_array(jsonb_build_object(
            'account', p_accounts[i], 'reward', p_rewards[i], 'quantity', p_quantities[i], 'at', p_nows[i]));
        s_item := s_item || i;
        s_cost := s_cost || v_cost;
        s_kind := s_kind || v_kind;
        s_code := s_code || (v_r ->> 'code');
        s_ledger := s_ledger || (v_a ->> 'ledger')::uuid;
        s_counterparty := s_counterparty || (v_r ->> 'counterparty')::uuid;
        s_tracked := s_tracked || coalesce((v_r ->> 'counterparty_tracked')::boolean, false);
        s_stock_units := s_stock_units
            || CASE WHEN v_r ->> 'stock_total' IS NOT NULL OR v_kind = 'DONATION' THEN p_quantities[i] ELSE 0 END;
        s_cancellable := s_cancellable || CASE WHEN (v_r ->> 'cancellation_window_hours')::int > 0
            THEN p_nows[i] + make_interval(hours => (v_r ->> 'cancellation_window_hours')::int) END;
        s_sponsor := s_sponsor || (v_r ->> 'sponsor_issuer_id')::uuid;
        s_valid_to := s_valid_to || (v_r ->> 'valid_to')::timestamptz;
        v_results[i] := jsonb_build_object(
            'redemption_id', p_redemptions[i], 'status', 'FULFILLED',
            'voucher_code', CASE WHEN v_kind = 'REWARD' THEN p_vouchers[i] END,
            'replayed', false, 'balance', v_balance - v_cost, 'decimals', v_decimals);
    END LOOP;
    IF cardinality(s_item) = 0 THEN
        RETURN v_results;
    END IF;

    -- 4. A donation project's ledger account, made on its first donation (as a single call would).
    IF EXISTS (SELECT 1 FROM unnest(s_kind, s_cost, s_counterparty) AS s(kind, cost, counterparty)
                WHERE s.kind = 'DONATION' AND s.cost > 0 AND s.counterparty IS NULL) THEN
        INSERT INTO ledger_accounts (id, tenant_id, account_id, code, asset, balance, tracks_balance)
        SELECT gen_random_uuid(), p_tenant, NULL, 'donation:' || s.code, 'POINTS', 0, true
          FROM (SELECT DISTINCT code FROM unnest(s_kind, s_cost, s_counterparty, s_code) AS x(kind, cost, counterparty, code)
                 WHERE x.kind = 'DONATION' AND x.cost > 0 AND x.counterparty IS NULL ORDER BY code) s
        ON CONFLICT (tenant_id, code, asset) WHERE account_id IS NULL DO NOTHING;
        SELECT array_agg(coalesce(x.counterparty, la.id) ORDER BY x.ord),
               array_agg(CASE WHEN x.counterparty IS NULL AND la.id IS NOT NULL THEN la.tracks_balance ELSE x.tracked END
                         ORDER BY x.ord)
          INTO s_counterparty, s_tracked
          FROM unnest(s_kind, s_cost, s_counterparty, s_code, s_tracked) WITH ORDINALITY
               AS x(kind, cost, counterparty, code, tracked, ord)
          LEFT JOIN ledger_accounts la ON x.kind = 'DONATION' AND x.cost > 0 AND x.counterparty IS NULL
               AND la.tenant_id = p_tenant AND la.account_id IS NULL AND la.asset = 'POINTS'
               AND la.code = 'donation:' || x.code;
    END IF;
    PERFORM 1 FROM ledger_accounts WHERE id IN (
        SELECT counterparty FROM unnest(s_counterparty, s_tracked, s_cost) AS t(counterparty, tracked, cost)
         WHERE tracked AND cost > 0) ORDER BY id FOR UPDATE;

    -- 5. Everything written, in one statement (foreign keys are checked at its end).
    WITH s AS (
        SELECT x.item, x.cost, x.kind, x.ledger, x.counterparty, x.tracked, x.stock_units, x.cancellable, x.sponsor,
               x.valid_to
          FROM unnest(s_item, s_cost, s_kind, s_ledger, s_counterparty, s_tracked, s_stock_units, s_cancellable,
                      s_sponsor, s_valid_to)
               AS x(item, cost, kind, ledger, counterparty, tracked, stock_units, cancellable, sponsor, valid_to)
    ), redemption AS (
        INSERT INTO redemptions (id, tenant_id, account_id, reward_id, kind, quantity, points, status, voucher_code,
                                 idempotency_key, request_hash, by_client, created_at, cancellable_until,
                                 stock_units, counterparty_ledger_id)
        SELECT p_redemptions[s.item], p_tenant, p_accounts[s.item], p_rewards[s.item], s.kind, p_quantities[s.item],
               s.cost, 'FULFILLED', CASE WHEN s.kind = 'REWARD' THEN p_vouchers[s.item] END, p_keys[s.item],
               p_hashes[s.item], p_clients[s.item], p_nows[s.item], s.cancellable, s.stock_units,
               CASE WHEN s.cost > 0 THEN s.counterparty END
          FROM s
    ), entitlement AS (
        INSERT INTO entitlements (id, tenant_id, account_id, reward_id, sponsor_issuer_id, redemption_id, status,
                                  granted_at, valid_to)
        SELECT gen_random_uuid(), p_tenant, p_accounts[s.item], p_rewards[s.item], s.sponsor, p_redemptions[s.item],
               'ACTIVE', p_nows[s.item], s.valid_to
          FROM s WHERE s.kind = 'FINANCIAL_SERVICE'
    ), transaction AS (
        INSERT INTO ledger_transactions (id, tenant_id, account_id, kind, status, occurred_at, points, redemption_id)
        SELECT p_transactions[s.item], p_tenant, p_accounts[s.item],
               CASE WHEN s.kind = 'DONATION' THEN 'DONATION' ELSE 'REDEMPTION' END, 'FULFILLED', p_nows[s.item],
               -s.cost, p_redemptions[s.item]
          FROM s WHERE s.cost > 0
    ), postings AS (
        INSERT INTO ledger_postings (tenant_id, transaction_id, ledger_account_id, asset, amount)
        SELECT p_tenant, p_transactions[s.item], p.ledger_id, 'POINTS', p.amount
          FROM s CROSS JOIN LATERAL (VALUES (s.ledger, -s.cost), (s.counterparty, s.cost)) AS p(ledger_id, amount)
         WHERE s.cost > 0
    ), stock AS (
        UPDATE rewards rw SET stock_taken = rw.stock_taken + d.units,
               updated_at = CASE WHEN rw.stock_total IS NOT NULL THEN now() ELSE rw.updated_at END
          FROM (SELECT p_rewards[s.item] AS reward, sum(s.stock_units) AS units FROM s WHERE s.stock_units > 0
                 GROUP BY 1) d
         WHERE rw.id = d.reward
    ), credit AS (
        UPDATE ledger_accounts la SET balance = la.balance + d.total
          FROM (SELECT s.counterparty, sum(s.cost) AS total FROM s WHERE s.tracked AND s.cost > 0 GROUP BY 1) d
         WHERE la.id = d.counterparty
    )
    UPDATE ledger_accounts la SET balance = la.balance - d.total, points_consumed = la.points_consumed + d.total
      FROM (SELECT s.ledger, sum(s.cost) AS total FROM s WHERE s.cost > 0 GROUP BY 1) d
     WHERE la.id = d.ledger;

    RETURN v_results;
END
$fn$
"""


# Plans for the actual arrays and the tables' current size, every call: a generic plan cached while the
# tables were small reads a whole city's redemptions per key (measured), and planning a dozen statements
# once per batch costs little.
CUSTOM_PLANS = ("ALTER FUNCTION carbon_redeem_batch(uuid, uuid[], uuid[], int[], text[], text[], text[], "
                "timestamptz[], text[], uuid[], uuid[]) SET plan_cache_mode = force_custom_plan")



# Every credit, redemption and expiry updates its account's balance rows. With full pages the new row
# versions land on other pages and every index gets an entry per update (measured: 160 index entries
# read per balance lookup after a few minutes); with room on the page they stay heap-only (HOT).
LEDGER_FILLFACTOR = "ALTER TABLE ledger_accounts SET (fillfactor = 50)"


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute(CUSTOM_PLANS)
    op.execute(LEDGER_FILLFACTOR)


def downgrade() -> None:
    from importlib import import_module

    op.execute(import_module("app.db.migrations.versions.0005_redeem_batch").FUNCTION)
    op.execute("ALTER TABLE ledger_accounts RESET (fillfactor)")
