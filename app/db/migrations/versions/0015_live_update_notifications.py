"""live updates: NOTIFY carbon_live from the writes the subscriptions report, in the writing transaction

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

Subscriptions (ADR 0012) are fed by PostgreSQL LISTEN/NOTIFY: every server process listens on channel
`carbon_live` and fans the notifications out to its own subscribers. The notifications are sent here,
by triggers, in the transaction that writes: PostgreSQL delivers them only if it commits (a rolled-back
write sends nothing), in commit order, to every listening process.

One notification per statement and chunk (never one per row): a 1,000-record ingestion batch sends
about 11 for its ledger entries and 5 for its records. Payloads are `|`-separated ids and codes, at most
about 7,500 bytes (the limit is 8,000):

    L|<tenant>|<kind,...>|<account>:<ledger transaction>,...   ledger entries (96 a chunk)
    R|<tenant>|<provider issuer>|<record>,...                  accepted behaviour records (192 a chunk)
    J|<tenant>|<provider issuer>|<rejection>,...               rejected behaviour records (192 a chunk)
    V|<tenant>|<provider issuer>|<record>                      a record reversed
    A|<tenant>|<event,...>|                                    account lifecycle events (dashboard only)

The listeners read the rows themselves, under each subscriber's own tenant scope.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0015"
down_revision: Union[str, None] = "0014"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

CHANNEL = "carbon_live"
LEDGER_CHUNK = 96
ID_CHUNK = 192

FUNCTIONS = {
    "carbon_live_ledger": f"""
        PERFORM pg_notify('{CHANNEL}', 'L|' || tenant_id || '|' || kinds || '|' || entries)
           FROM (SELECT tenant_id, string_agg(DISTINCT kind, ',') AS kinds,
                        string_agg(account_id::text || ':' || id::text, ',') AS entries
                   FROM (SELECT tenant_id, kind, account_id, id,
                                (row_number() OVER (PARTITION BY tenant_id) - 1) / {LEDGER_CHUNK} AS chunk
                           FROM new_rows WHERE account_id IS NOT NULL) numbered
                  GROUP BY tenant_id, chunk) chunks""",
    "carbon_live_records": f"""
        PERFORM pg_notify('{CHANNEL}', 'R|' || tenant_id || '|' || provider_issuer_id || '|' || ids)
           FROM (SELECT tenant_id, provider_issuer_id, string_agg(id::text, ',') AS ids
                   FROM (SELECT tenant_id, provider_issuer_id, id,
                                (row_number() OVER (PARTITION BY tenant_id, provider_issuer_id) - 1) / {ID_CHUNK}
                                    AS chunk
                           FROM new_rows) numbered
                  GROUP BY tenant_id, provider_issuer_id, chunk) chunks""",
    "carbon_live_rejections": f"""
        PERFORM pg_notify('{CHANNEL}', 'J|' || tenant_id || '|' || provider_issuer_id || '|' || ids)
           FROM (SELECT tenant_id, provider_issuer_id, string_agg(id::text, ',') AS ids
                   FROM (SELECT tenant_id, provider_issuer_id, id,
                                (row_number() OVER (PARTITION BY tenant_id, provider_issuer_id) - 1) / {ID_CHUNK}
                                    AS chunk
                           FROM new_rows) numbered
                  GROUP BY tenant_id, provider_issuer_id, chunk) chunks""",
    "carbon_live_account_events": f"""
        PERFORM pg_notify('{CHANNEL}', 'A|' || tenant_id || '|' || string_agg(DISTINCT kind, ',') || '|')
           FROM new_rows GROUP BY tenant_id""",
}

TRIGGERS = {
    "ledger_transactions": ("live_ledger", "carbon_live_ledger"),
    "behavior_records": ("live_records", "carbon_live_records"),
    "behavior_rejections": ("live_rejections", "carbon_live_rejections"),
    "account_events": ("live_account_events", "carbon_live_account_events"),
}

REVERSAL_FUNCTION = f"""
CREATE OR REPLACE FUNCTION carbon_live_reversal() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $fn$
BEGIN
    PERFORM pg_notify('{CHANNEL}', 'V|' || NEW.tenant_id || '|' || NEW.provider_issuer_id || '|' || NEW.id);
    RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    for name, body in FUNCTIONS.items():
        op.execute(f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql SECURITY INVOKER AS $fn$\n"
                   f"BEGIN\n{body};\n    RETURN NULL;\nEND\n$fn$")
    for table, (trigger, function) in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {trigger} AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    op.execute(REVERSAL_FUNCTION)
    # A row trigger: reversals are one record at a time, and a column list cannot go with transition tables.
    op.execute("CREATE TRIGGER live_reversal AFTER UPDATE OF reversed_at ON behavior_records FOR EACH ROW "
               "WHEN (OLD.reversed_at IS NULL AND NEW.reversed_at IS NOT NULL) EXECUTE FUNCTION carbon_live_reversal()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS live_reversal ON behavior_records")
    op.execute("DROP FUNCTION IF EXISTS carbon_live_reversal()")
    for table, (trigger, function) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {function}()")
