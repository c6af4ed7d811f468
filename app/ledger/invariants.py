"""Ledger invariants, verified on demand (`carbon-inclusive verify-ledger`, and by the test suite).

1. Every transaction balances: its postings sum to zero per asset.
2. Every tracked (citizen) balance equals the sum of its postings; untracked (system) balances are 0.
3. No citizen balance is negative (also a CHECK constraint).
4. What a transaction shows in the activity (reduction_mg, points) equals its postings on the citizen.
5. Behaviour records agree with their credit transaction.
6. Conversion loses nothing: per account, Σ credited contribution = Σ converted mg + carry, and the
   carry is non-negative.
7. Earning lots: points balance = Σ the days' earned points − points consumed; matured earnings equal
   the days before the cut-off; daily totals equal their (unreversed) records; a record is reversed in
   the ledger exactly when it is marked reversed.
9. The daily rollups (the dashboard's figures) equal the ledger, per local day, kind, behaviour,
   provider and catalogue item, and the account rollups equal the accounts' events; the day flows and
   all-time totals (migration 0014) equal the rollups they summarise.
8. Stock taken equals the stock units of fulfilled redemptions; every redemption has its one spending
   transaction and, if cancelled, its one cancellation; project (donation) balances are never negative.

Each check is one aggregate statement over the ledger (run as the read-only regulator role to see every
tenant, or in a tenant scope to check one), returning at most `limit` offending rows, so a damaged
ledger says where it is damaged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import Database, TenantScope


@dataclass(frozen=True)
class Violation:
    check: str
    detail: str


CHECKS: dict[str, str] = {
    "transaction_balances": """
        SELECT transaction_id::text, asset, sum(amount)::text FROM ledger_postings
        GROUP BY transaction_id, asset HAVING sum(amount) <> 0 LIMIT :limit""",
    "balance_equals_postings": """
        SELECT la.id::text, la.asset, la.balance::text || ' <> ' || coalesce(p.total, 0)::text
        FROM ledger_accounts la
        LEFT JOIN (SELECT ledger_account_id, sum(amount) AS total FROM ledger_postings GROUP BY ledger_account_id) p
          ON p.ledger_account_id = la.id
        WHERE la.tracks_balance AND la.balance <> coalesce(p.total, 0) LIMIT :limit""",
    "untracked_balance_zero": """
        SELECT id::text, asset, balance::text FROM ledger_accounts
        WHERE (NOT tracks_balance AND balance <> 0) OR (unconverted_mg <> 0 AND (account_id IS NULL OR asset <> 'POINTS'))
        LIMIT :limit""",
    "citizen_balance_non_negative": """
        SELECT id::text, asset, balance::text FROM ledger_accounts WHERE account_id IS NOT NULL AND balance < 0
        LIMIT :limit""",
    "activity_matches_postings": """
        SELECT t.id::text, t.kind,
               t.reduction_mg::text || '/' || t.points::text || ' <> ' ||
               coalesce(c.mg, 0)::text || '/' || coalesce(c.pts, 0)::text
        FROM ledger_transactions t
        LEFT JOIN (
            SELECT p.transaction_id,
                   sum(p.amount) FILTER (WHERE p.asset = 'CONTRIBUTION_MG') AS mg,
                   sum(p.amount) FILTER (WHERE p.asset = 'POINTS') AS pts
            FROM ledger_postings p JOIN ledger_accounts la ON la.id = p.ledger_account_id
            WHERE la.account_id IS NOT NULL GROUP BY p.transaction_id
        ) c ON c.transaction_id = t.id
        WHERE t.account_id IS NOT NULL
          AND (t.reduction_mg <> coalesce(c.mg, 0) OR t.points <> coalesce(c.pts, 0))
        LIMIT :limit""",
    "records_match_transactions": """
        SELECT r.id::text, r.external_id,
               r.reduction_mg::text || '/' || r.points::text || ' <> ' ||
               coalesce(t.reduction_mg, -1)::text || '/' || coalesce(t.points, -1)::text
        FROM behavior_records r
        LEFT JOIN ledger_transactions t ON t.behavior_record_id = r.id AND t.kind = 'BEHAVIOR_CREDIT'
        WHERE t.id IS NULL OR t.reduction_mg <> r.reduction_mg OR t.points <> r.points LIMIT :limit""",
    "conversion_loses_nothing": """
        SELECT la.account_id::text, 'carry ' || la.unconverted_mg::text,
               coalesce(t.credited, 0)::text || ' <> ' || coalesce(t.converted, 0)::text || ' + carry'
        FROM ledger_accounts la
        LEFT JOIN (SELECT account_id, sum(reduction_mg) FILTER (WHERE kind = 'BEHAVIOR_CREDIT') AS credited,
                          sum(converted_mg) AS converted
                   FROM ledger_transactions GROUP BY account_id) t ON t.account_id = la.account_id
        WHERE la.account_id IS NOT NULL AND la.asset = 'POINTS'
          AND (coalesce(t.credited, 0) <> coalesce(t.converted, 0) + la.unconverted_mg OR la.unconverted_mg < 0)
        LIMIT :limit""",
    "points_equal_lots_minus_consumption": """
        SELECT la.account_id::text, la.balance::text,
               coalesce(d.points, 0)::text || ' earned - ' || la.points_consumed::text || ' consumed'
        FROM ledger_accounts la
        LEFT JOIN (SELECT account_id, sum(credited_points) AS points FROM daily_behavior_totals GROUP BY account_id) d
          ON d.account_id = la.account_id
        WHERE la.account_id IS NOT NULL AND la.asset = 'POINTS'
          AND la.balance <> coalesce(d.points, 0) - la.points_consumed
        LIMIT :limit""",
    "matured_earnings": """
        SELECT la.account_id::text, la.earned_matured::text, coalesce(sum(d.credited_points), 0)::text
        FROM ledger_accounts la
        LEFT JOIN daily_behavior_totals d ON d.account_id = la.account_id AND d.local_date < la.matured_through
        WHERE la.account_id IS NOT NULL AND la.asset = 'POINTS' AND la.matured_through IS NOT NULL
        GROUP BY la.account_id, la.earned_matured
        HAVING la.earned_matured <> coalesce(sum(d.credited_points), 0)
        LIMIT :limit""",
    "daily_totals_match_records": """
        SELECT t.account_id::text, t.behavior_code || ' ' || t.local_date::text,
               t.credited_mg::text || '/' || t.credited_points::text || ' <> ' ||
               coalesce(r.mg, 0)::text || '/' || coalesce(r.points, 0)::text
        FROM daily_behavior_totals t
        LEFT JOIN (SELECT account_id, behavior_code, local_date, sum(reduction_mg) AS mg, sum(points) AS points
                   FROM behavior_records WHERE reversed_at IS NULL GROUP BY account_id, behavior_code, local_date) r
          ON r.account_id = t.account_id AND r.behavior_code = t.behavior_code AND r.local_date = t.local_date
        WHERE t.credited_mg <> coalesce(r.mg, 0) OR t.credited_points <> coalesce(r.points, 0)
        LIMIT :limit""",
    "reversals_match_records": """
        SELECT r.id::text, r.external_id, CASE WHEN r.reversed_at IS NULL THEN 'reversal without mark'
                                               ELSE 'mark without reversal' END
        FROM behavior_records r
        LEFT JOIN ledger_transactions t ON t.behavior_record_id = r.id AND t.kind = 'BEHAVIOR_REVERSAL'
        WHERE (r.reversed_at IS NULL) <> (t.id IS NULL)
        LIMIT :limit""",
    "stock_matches_redemptions": """
        SELECT w.id::text, w.code, w.stock_taken::text || ' <> ' || coalesce(sum(r.stock_units), 0)::text
        FROM rewards w
        LEFT JOIN redemptions r ON r.reward_id = w.id AND r.status = 'FULFILLED'
        GROUP BY w.id, w.code, w.stock_taken
        HAVING w.stock_taken <> coalesce(sum(r.stock_units), 0)
        LIMIT :limit""",
    "redemptions_match_transactions": """
        SELECT r.id::text, r.status, count(t.id)::text || ' transactions'
        FROM redemptions r
        LEFT JOIN ledger_transactions t ON t.redemption_id = r.id
        WHERE r.points > 0
        GROUP BY r.id, r.status
        HAVING count(t.id) FILTER (WHERE t.kind IN ('REDEMPTION', 'DONATION')) <> 1
            OR count(t.id) FILTER (WHERE t.kind = 'REDEMPTION_CANCELLED') <> (CASE WHEN r.status = 'CANCELLED' THEN 1 ELSE 0 END)
        LIMIT :limit""",
    "project_balances_non_negative": """
        SELECT id::text, code, balance::text FROM ledger_accounts
        WHERE account_id IS NULL AND tracks_balance AND balance < 0 LIMIT :limit""",
    "rollups_match_ledger": """
        WITH tz AS (
            SELECT DISTINCT ON (tenant_id) tenant_id, timezone FROM tenant_config_versions
            ORDER BY tenant_id, effective_from DESC, version DESC
        ), ledger AS (
            SELECT t.tenant_id, (t.occurred_at AT TIME ZONE tz.timezone)::date AS day, t.kind,
                   coalesce(t.behavior_code, '') AS behavior, coalesce(b.provider_issuer_id::text, '') AS provider,
                   coalesce(rw.code, '') AS item, count(*) AS n, sum(t.reduction_mg) AS mg, sum(t.points) AS points
            FROM ledger_transactions t JOIN tz ON tz.tenant_id = t.tenant_id
            LEFT JOIN behavior_records b ON b.tenant_id = t.tenant_id AND b.id = t.behavior_record_id
            LEFT JOIN redemptions rd ON rd.tenant_id = t.tenant_id AND rd.id = t.redemption_id
            LEFT JOIN rewards rw ON rw.tenant_id = rd.tenant_id AND rw.id = rd.reward_id
            GROUP BY 1, 2, 3, 4, 5, 6
        ), rollup AS (
            SELECT tenant_id, local_date AS day, kind, behavior_code AS behavior, provider, reward_code AS item,
                   sum(transactions) AS n, sum(reduction_mg) AS mg, sum(points) AS points
            FROM ledger_daily_rollups GROUP BY 1, 2, 3, 4, 5, 6
        )
        SELECT coalesce(l.day, r.day)::text || ' ' || coalesce(l.kind, r.kind) || ' ' || coalesce(l.behavior, r.behavior)
                   || ' ' || coalesce(l.item, r.item),
               coalesce(l.provider, r.provider),
               'ledger ' || coalesce(l.n, 0) || '/' || coalesce(l.mg, 0) || '/' || coalesce(l.points, 0)
                   || ' <> rollup ' || coalesce(r.n, 0) || '/' || coalesce(r.mg, 0) || '/' || coalesce(r.points, 0)
        FROM ledger l FULL JOIN rollup r USING (tenant_id, day, kind, behavior, provider, item)
        WHERE (l.n, l.mg, l.points) IS DISTINCT FROM (r.n, r.mg, r.points) LIMIT :limit""",
    "account_rollups_match_events": """
        WITH tz AS (
            SELECT DISTINCT ON (tenant_id) tenant_id, timezone FROM tenant_config_versions
            ORDER BY tenant_id, effective_from DESC, version DESC
        ), events AS (
            SELECT e.tenant_id, (e.at AT TIME ZONE tz.timezone)::date AS day, e.kind AS event, count(*) AS n
            FROM account_events e JOIN tz ON tz.tenant_id = e.tenant_id GROUP BY 1, 2, 3
        ), rollup AS (
            SELECT tenant_id, local_date AS day, event, sum(events) AS n FROM account_daily_rollups GROUP BY 1, 2, 3
        )
        SELECT coalesce(e.day, r.day)::text, coalesce(e.event, r.event),
               'events ' || coalesce(e.n, 0) || ' <> rollup ' || coalesce(r.n, 0)
        FROM events e FULL JOIN rollup r USING (tenant_id, day, event)
        WHERE e.n IS DISTINCT FROM r.n LIMIT :limit""",
    "flows_match_rollups": """
        WITH rollup AS (
            SELECT tenant_id, local_date, sum(transactions) AS n,
                   sum(reduction_mg) FILTER (WHERE kind IN ('BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL')) AS mg,
                   sum(points) FILTER (WHERE kind IN ('BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL')) AS issued,
                   -sum(points) FILTER (WHERE kind IN ('REDEMPTION', 'DONATION', 'REDEMPTION_CANCELLED')) AS redeemed,
                   -sum(points) FILTER (WHERE kind = 'EXPIRY') AS expired
            FROM ledger_daily_rollups GROUP BY 1, 2
        ), flows AS (
            SELECT tenant_id, local_date, sum(transactions) AS n, sum(reduction_mg) AS mg, sum(issued) AS issued,
                   sum(redeemed) AS redeemed, sum(expired) AS expired FROM ledger_day_flows GROUP BY 1, 2
        ), days AS (
            SELECT coalesce(f.tenant_id, r.tenant_id) AS tenant_id, coalesce(f.local_date, r.local_date)::text AS day,
                   'flows ' || concat_ws('/', f.n, f.mg, f.issued, f.redeemed, f.expired) || ' <> rollups '
                   || concat_ws('/', r.n, coalesce(r.mg, 0), coalesce(r.issued, 0), coalesce(r.redeemed, 0),
                                coalesce(r.expired, 0)) AS detail
            FROM flows f FULL JOIN rollup r USING (tenant_id, local_date)
            WHERE (f.n, f.mg, f.issued, f.redeemed, f.expired) IS DISTINCT FROM
                  (r.n, coalesce(r.mg, 0), coalesce(r.issued, 0), coalesce(r.redeemed, 0), coalesce(r.expired, 0))
        ), totals AS (
            SELECT coalesce(t.tenant_id, f.tenant_id) AS tenant_id, 'all time' AS day,
                   'totals ' || concat_ws('/', t.n, t.mg, t.issued, t.redeemed, t.expired) || ' <> days '
                   || concat_ws('/', f.n, f.mg, f.issued, f.redeemed, f.expired) AS detail
            FROM (SELECT tenant_id, sum(transactions) AS n, sum(reduction_mg) AS mg, sum(issued) AS issued,
                         sum(redeemed) AS redeemed, sum(expired) AS expired FROM ledger_flow_totals GROUP BY 1) t
            FULL JOIN (SELECT tenant_id, sum(n) AS n, sum(mg) AS mg, sum(issued) AS issued, sum(redeemed) AS redeemed,
                              sum(expired) AS expired FROM flows GROUP BY 1) f USING (tenant_id)
            WHERE (t.n, t.mg, t.issued, t.redeemed, t.expired)
                  IS DISTINCT FROM (f.n, f.mg, f.issued, f.redeemed, f.expired)
        )
        SELECT tenant_id::text, day, detail FROM days UNION ALL SELECT tenant_id::text, day, detail FROM totals
        LIMIT :limit""",
    "account_totals_match_rollups": """
        SELECT coalesce(t.tenant_id, r.tenant_id)::text, coalesce(t.event, r.event),
               'totals ' || coalesce(t.n, 0) || ' <> days ' || coalesce(r.n, 0)
        FROM (SELECT tenant_id, event, sum(events) AS n FROM account_event_totals GROUP BY 1, 2) t
        FULL JOIN (SELECT tenant_id, event, sum(events) AS n FROM account_daily_rollups GROUP BY 1, 2) r
          USING (tenant_id, event)
        WHERE t.n IS DISTINCT FROM r.n LIMIT :limit""",
}


async def verify_ledger(session: AsyncSession, *, limit: int = 20) -> list[Violation]:
    """Run every check in the session's current tenant scope; an empty list means the ledger is sound."""
    violations: list[Violation] = []
    for name, sql in CHECKS.items():
        for row in (await session.execute(text(sql), {"limit": limit})).all():
            violations.append(Violation(check=name, detail=" ".join(str(value) for value in row)))
    return violations


async def verify_all_tenants(database: Database, *, limit: int = 20) -> dict[str, list[Violation]]:
    """Check every tenant in its own scope (the ledger is personal data: no cross-tenant read role sees
    it). Returns slug -> violations, for every tenant."""
    async with database.transaction(TenantScope.regulator()) as session:
        tenants = (await session.execute(text("SELECT id, slug FROM tenants ORDER BY slug"))).all()
    report: dict[str, list[Violation]] = {}
    for tenant_id, slug in tenants:
        async with database.transaction(TenantScope.for_tenant(tenant_id)) as session:
            report[slug] = await verify_ledger(session, limit=limit)
    return report
