"""Tamper-evident ledger: per-account hash chains over ledger transactions, sealed by signed per-city
Merkle checkpoints

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29

Every ledger transaction gets a `ledger_chain` entry in its account's chain (account-less transactions
in their city's chain): `hash = sha256(previous hash || the transaction's content)`, numbered `seq`
from 1 (the first previous hash is 32 zero bytes). A statement-level trigger appends the entries in the
writing transaction. Chains are per account, so the trigger reads only heads that the writer has
already locked (the per-account lock every ledger write takes first): concurrent ingestion for
different accounts never waits on it, and nothing is serialised per city. Account-less transactions
take a per-city advisory lock (rare: system postings).

An edit made in SQL changes a transaction's content (its hash no longer matches), or deletes or adds
entries (a broken link, a gap, a transaction without an entry); postings are bound to their
transaction by the existing invariants (balances, activity equals postings). Rewriting a chain
consistently from the edit onwards is caught by the checkpoints: `ledger_checkpoints` seals, per city,
the entries added since the previous checkpoint (`checkpoint_id`) under a Merkle root chained to the
previous root and signed with the platform's Ed25519 key (app/ledger/chain.py).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.rls import protect_tenant_table

revision: str = "0017"
down_revision: Union[str, None] = "0016"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# The content a chain entry commits to: every column of the transaction, unambiguous ('|' never occurs
# in uuids, codes or numbers; nulls are empty), times as microseconds since the epoch.
DIGEST_FUNCTION = r"""
CREATE OR REPLACE FUNCTION carbon_ledger_digest(prev bytea, t ledger_transactions) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT sha256(prev || convert_to(concat_ws('|',
        t.id::text, t.tenant_id::text, coalesce(t.account_id::text, ''), t.kind, t.status,
        (extract(epoch FROM t.occurred_at) * 1000000)::bigint::text,
        (extract(epoch FROM t.posted_at) * 1000000)::bigint::text,
        coalesce(t.behavior_record_id::text, ''), coalesce(t.behavior_code, ''), t.reduction_mg::text,
        t.points::text, t.converted_mg::text, coalesce(t.redemption_id::text, ''), t.shortfall_points::text),
        'UTF8'))
$fn$
"""

GENESIS = "'\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea"

# One pass over `source` (the statement's new rows, or the whole ledger for the backfill): per chain, in
# (posting time, occurrence, id) order, each entry hashes the previous one; inserted in batches.
_CHAIN = """
DECLARE
    r record;
    v_key uuid;
    v_tenant uuid;
    v_seq bigint;
    v_prev bytea;
    v_hash bytea;
    s_tx uuid[] := '{{}}';
    s_tenant uuid[] := '{{}}';
    s_key uuid[] := '{{}}';
    s_seq bigint[] := '{{}}';
    s_prev bytea[] := '{{}}';
    s_hash bytea[] := '{{}}';
BEGIN
    -- Account-less transactions share their city's chain: writers of it take turns.
    PERFORM pg_advisory_xact_lock(hashtextextended('carbon-chain:' || x.tenant_id::text, 0))
       FROM (SELECT DISTINCT tenant_id FROM {source} WHERE account_id IS NULL ORDER BY 1) x;
    FOR r IN
        WITH keys AS (
            SELECT DISTINCT tenant_id, coalesce(account_id, tenant_id) AS chain_key FROM {source}
        ), heads AS (
            SELECT k.tenant_id, k.chain_key, h.seq, h.hash
              FROM keys k LEFT JOIN LATERAL (
                   SELECT c.seq, c.hash FROM ledger_chain c
                    WHERE c.tenant_id = k.tenant_id AND c.chain_key = k.chain_key ORDER BY c.seq DESC LIMIT 1) h ON true
        )
        SELECT n::ledger_transactions AS tx, h.chain_key, h.seq AS head_seq, h.hash AS head_hash
          FROM {source} n
          JOIN heads h ON h.tenant_id = n.tenant_id AND h.chain_key = coalesce(n.account_id, n.tenant_id)
         ORDER BY h.tenant_id, h.chain_key, n.posted_at, n.occurred_at, n.id
    LOOP
        IF v_key IS DISTINCT FROM r.chain_key OR v_tenant IS DISTINCT FROM (r.tx).tenant_id THEN
            v_key := r.chain_key;
            v_tenant := (r.tx).tenant_id;
            v_seq := coalesce(r.head_seq, 0);
            v_prev := coalesce(r.head_hash, {genesis});
        END IF;
        v_seq := v_seq + 1;
        v_hash := carbon_ledger_digest(v_prev, r.tx);
        s_tx := s_tx || (r.tx).id;
        s_tenant := s_tenant || v_tenant;
        s_key := s_key || v_key;
        s_seq := s_seq || v_seq;
        s_prev := s_prev || v_prev;
        s_hash := s_hash || v_hash;
        v_prev := v_hash;
        IF cardinality(s_tx) >= 10000 THEN
            INSERT INTO ledger_chain (transaction_id, tenant_id, chain_key, seq, prev_hash, hash)
            SELECT * FROM unnest(s_tx, s_tenant, s_key, s_seq, s_prev, s_hash);
            s_tx := '{{}}'; s_tenant := '{{}}'; s_key := '{{}}'; s_seq := '{{}}'; s_prev := '{{}}'; s_hash := '{{}}';
        END IF;
    END LOOP;
    INSERT INTO ledger_chain (transaction_id, tenant_id, chain_key, seq, prev_hash, hash)
    SELECT * FROM unnest(s_tx, s_tenant, s_key, s_seq, s_prev, s_hash);
    {end}
END
"""

TRIGGER_FUNCTION = ("CREATE OR REPLACE FUNCTION carbon_chain_ledger() RETURNS trigger\n"
                    "LANGUAGE plpgsql SECURITY INVOKER AS $fn$"
                    + _CHAIN.format(source="new_rows", genesis=GENESIS, end="RETURN NULL;") + "$fn$")

# Existing transactions (the chain starts empty: every head is the genesis), linear in the ledger's size.
BACKFILL = "DO $do$" + _CHAIN.format(source="ledger_transactions", genesis=GENESIS, end="") + "$do$"


def upgrade() -> None:
    op.create_table(
        "ledger_chain",
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("chain_key", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", postgresql.BYTEA(), nullable=False),
        sa.Column("hash", postgresql.BYTEA(), nullable=False),
        sa.Column("checkpoint_number", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("transaction_id"),
        sa.UniqueConstraint("tenant_id", "chain_key", "seq", name="uq_ledger_chain_seq"),
    )
    op.create_index("ix_ledger_chain_unsealed", "ledger_chain", ["tenant_id"],
                    postgresql_where=sa.text("checkpoint_number IS NULL"))
    op.create_index("ix_ledger_chain_checkpoint", "ledger_chain", ["tenant_id", "checkpoint_number"])
    op.create_table(
        "ledger_checkpoints",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("merkle_root", postgresql.BYTEA(), nullable=False),
        sa.Column("previous_root", postgresql.BYTEA(), nullable=False),
        sa.Column("root", postgresql.BYTEA(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "number"),
    )
    for statement in protect_tenant_table("ledger_chain", app_privileges="SELECT, INSERT, UPDATE (checkpoint_number)"):
        op.execute(statement)
    for statement in protect_tenant_table("ledger_checkpoints", app_privileges="SELECT, INSERT"):
        op.execute(statement)
    op.execute(DIGEST_FUNCTION)
    op.execute(TRIGGER_FUNCTION)
    op.execute("CREATE TRIGGER ledger_hash_chain AFTER INSERT ON ledger_transactions REFERENCING NEW TABLE AS "
               "new_rows FOR EACH STATEMENT EXECUTE FUNCTION carbon_chain_ledger()")
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ledger_hash_chain ON ledger_transactions")
    op.execute("DROP FUNCTION IF EXISTS carbon_chain_ledger()")
    op.execute("DROP FUNCTION IF EXISTS carbon_ledger_digest(bytea, ledger_transactions)")
    op.drop_table("ledger_checkpoints")
    op.drop_table("ledger_chain")
