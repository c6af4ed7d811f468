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
table in the schema that is not protected this way.
"""

from __future__ import annotations

APP_ROLE = "carbon_app"
REGULATOR_ROLE = "carbon_regulator"
TENANT_SETTING = "app.tenant_id"

# NULLIF: after a transaction that set it ends, the setting reads '' rather than NULL.
CURRENT_TENANT_SQL = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def create_roles_sql() -> list[str]:
    return [
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{REGULATOR_ROLE}') THEN
                CREATE ROLE {REGULATOR_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
            END IF;
        END
        $$
        """,
        f"GRANT {REGULATOR_ROLE} TO {APP_ROLE}",
        "DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO "
        f"{APP_ROLE}', current_database()); END $$",
        f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {REGULATOR_ROLE}",
    ]


def protect_tenant_table(table: str, *, tenant_column: str = "tenant_id",
                         app_privileges: str = "SELECT, INSERT, UPDATE") -> list[str]:
    """SQL that enables and forces RLS on `table` with the tenant and regulator policies and grants.

    `app_privileges` is deliberately narrow by default: no DELETE, so history is kept; append-only
    tables pass "SELECT, INSERT".
    """
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} FOR ALL TO {APP_ROLE} "
        f"USING ({tenant_column} = {CURRENT_TENANT_SQL}) WITH CHECK ({tenant_column} = {CURRENT_TENANT_SQL})",
        # carbon_app is a member of carbon_regulator (to switch to it), so without the current_user test
        # this SELECT policy would also widen what carbon_app itself sees.
        f"CREATE POLICY regulator_read ON {table} FOR SELECT TO {REGULATOR_ROLE} "
        f"USING (current_user = '{REGULATOR_ROLE}')",
        f"GRANT {app_privileges} ON {table} TO {APP_ROLE}",
        f"GRANT SELECT ON {table} TO {REGULATOR_ROLE}",
    ]
