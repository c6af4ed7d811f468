"""Row-level security: the one place that knows how a tenant-owned table is protected.

Two database roles, created by the first migration:

* `carbon_app` logs in and runs every request. It owns nothing, so `FORCE ROW LEVEL SECURITY` and the
  policies below always apply to it. It sees and writes only rows whose `tenant_id` equals the
  transaction's `app.tenant_id` setting (set with `set_config(..., true)`, so it ends with the
  transaction and never leaks to the next user of a pooled connection). With no tenant set it sees
  nothing.
* `carbon_regulator` has SELECT only. A regulator's transaction switches to it with
  `set_config('role', 'carbon_regulator', true)`; its policy reads across tenants, and since it has no
  write grants a regulator request can change nothing, whatever a resolver does.

Every migration that creates a tenant-owned table calls `protect_tenant_table`; a test fails for any
table in the schema that is not protected this way. The regulator's cross-tenant read is opt-in per table
(public configuration and, later, aggregate read models); personal tables never get it.

Within one request the scope cannot be changed once set (`app.db.session.apply_scope` refuses on a
locked session), so no code path can turn a regulator request back into `carbon_app`.
"""

from __future__ import annotations

APP_ROLE = "carbon_app"
REGULATOR_ROLE = "carbon_regulator"
TENANT_SETTING = "app.tenant_id"

# NULLIF: after a transaction that set it ends, the setting reads '' rather than NULL.
CURRENT_TENANT_SQL = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def create_roles_sql() -> list[str]:
    # Roles are cluster-wide: databases migrating at the same time (test workers, several servers)
    # race on them, and advisory locks are per database. So nothing here writes a role's catalog row
    # unless it must, and a lost race is ignored where the winner did the same thing.
    return [
        f"""
        DO $$
        BEGIN
            BEGIN
                CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
            BEGIN
                CREATE ROLE {REGULATOR_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
            -- Whatever created the roles before us, they must never bypass row-level security.
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}' AND (rolsuper OR rolbypassrls)) THEN
                ALTER ROLE {APP_ROLE} NOSUPERUSER NOBYPASSRLS;
            END IF;
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{REGULATOR_ROLE}' AND (rolsuper OR rolbypassrls)) THEN
                ALTER ROLE {REGULATOR_ROLE} NOSUPERUSER NOBYPASSRLS;
            END IF;
            IF NOT pg_has_role('{APP_ROLE}', '{REGULATOR_ROLE}', 'MEMBER') THEN
                BEGIN
                    GRANT {REGULATOR_ROLE} TO {APP_ROLE};
                EXCEPTION WHEN unique_violation OR internal_error THEN NULL;  -- granted concurrently
                END;
            END IF;
        END
        $$
        """,
        "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO "
        f"{APP_ROLE}', current_database()); END $$",
        f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {REGULATOR_ROLE}",
    ]


def protect_tenant_table(table: str, *, tenant_column: str = "tenant_id",
                         app_privileges: str = "SELECT, INSERT, UPDATE", regulator_read: bool = False) -> list[str]:
    """SQL that enables and forces RLS on `table` with the tenant policy (and, where the data is not
    personal, the regulator's cross-tenant read policy) and grants.

    `app_privileges` is deliberately narrow by default: no DELETE, so history is kept; append-only
    tables pass "SELECT, INSERT". `regulator_read` is opt-in: regulators see aggregates and public
    configuration, never personal data, so tables about accounts never get it.
    """
    statements = [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} FOR ALL TO {APP_ROLE} "
        f"USING ({tenant_column} = {CURRENT_TENANT_SQL}) WITH CHECK ({tenant_column} = {CURRENT_TENANT_SQL})",
        # carbon_app is a member of carbon_regulator (to switch to it), so without the current_user test
        # this SELECT policy would also widen what carbon_app itself sees.
        f"CREATE POLICY regulator_read ON {table} FOR SELECT TO {REGULATOR_ROLE} "
        f"USING (current_user = '{REGULATOR_ROLE}')",
        f"GRANT {app_privileges} ON {table} TO {APP_ROLE}",
    ]
    if not regulator_read:
        # The policy above lets carbon_app (a member of carbon_regulator) never widen its view; without the
        # grant and the policy, the regulator role reads nothing of this table.
        return [statement for statement in statements if "regulator_read" not in statement]
    return [*statements, f"GRANT SELECT ON {table} TO {REGULATOR_ROLE}"]
