"""Ledger invariants, verified on demand (`carbon-inclusive verify-ledger`, and by the test suite).

1. Every transaction balances: its postings sum to zero per asset.
2. Every tracked (citizen) balance equals the sum of its postings; untracked (system) balances are 0.
3. No citizen balance is negative (also a CHECK constraint).
4. What a transaction shows in the activity (reduction_mg, points) equals its postings on the citizen,
   and every posting belongs to its transaction: same time, and a citizen posting on its account (so
   the hash chain over transactions also binds their postings).
5. Behaviour records agree with their credit transaction.
6. Conversion loses nothing: per account, Σ credited contribution = Σ converted mg + carry (a
   reversal's `converted_mg` is what it took out of the carry, which may owe grams: ADR 0005).
7. Earning lots: points balance = Σ the days' earned points − points consumed; matured earnings equal
   the days before the cut-off; daily totals equal their (unreversed) records; a record is reversed in
   the ledger exactly when it is marked reversed.
8. Stock taken equals the stock units of fulfilled redemptions; every redemption has its one spending
   transaction and, if cancelled, its one cancellation; project (donation) balances are never negative.
9. The daily rollups (the dashboard's figures) equal the ledger, per local day, kind, behaviour,
   provider and catalogue item, and the account rollups equal the accounts' events; the day flows and
   all-time totals (migration 0014) equal the rollups they summarise.
10. Accounts' active days are exactly the days of their earning and spending transactions, and the
   active-account rollups (accounts per day, links between consecutive active days) equal those days.
11. Tamper evidence: every transaction sits in its account's hash chain and matches its hash, chains
   have no gaps or broken links, and every checkpoint's Merkle root, link and signature hold.
12. Market lots reconcile: their records, contributors, reversals, retirements and consecutive serials
   match their books (so pooled + unpooled = every verified reduction, exactly); sale proceeds paid as
   points equal the lots' proceeds, their ledger transactions and their earning lots.

Each check is one aggregate statement over the ledger (run as the read-only regulator role to see every
tenant, or in a tenant scope to check one), returning at most `limit` offending rows, so a damaged
ledger says where it is damaged.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import Database, TenantScope
from app.ledger.chain import verify_checkpoints


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
    "postings_belong_to_their_transaction": """
        SELECT p.id::text, p.transaction_id::text,
               CASE WHEN p.posted_at <> t.posted_at THEN 'posted at another time than its transaction'
                    ELSE 'a citizen posting on another account than its transaction''s' END
        FROM ledger_postings p JOIN ledger_transactions t ON t.id = p.transaction_id
        JOIN ledger_accounts la ON la.id = p.ledger_account_id
        WHERE p.posted_at <> t.posted_at OR (la.account_id IS NOT NULL AND la.account_id IS DISTINCT FROM t.account_id)
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
          AND coalesce(t.credited, 0) <> coalesce(t.converted, 0) + la.unconverted_mg
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
    # Matured lots hold nothing unexpired: expiry, a late credit for a matured day and a refund into a
    # matured lot all expire what matured lots would still hold (ADR 0005).
    "matured_lots_expired": """
        SELECT la.account_id::text, la.points_consumed::text || ' consumed',
               la.earned_matured::text || ' matured'
        FROM ledger_accounts la
        WHERE la.account_id IS NOT NULL AND la.asset = 'POINTS' AND la.points_consumed < la.earned_matured
        LIMIT :limit""",
    "daily_totals_match_records": """
        SELECT t.account_id::text, t.behavior_code || ' ' || t.local_date::text,
               t.credited_mg::text || '/' || t.credited_points::text || ' <> ' ||
               coalesce(r.mg, 0)::text || '/' || coalesce(r.points, 0)::text
        FROM daily_behavior_totals t
        LEFT JOIN (SELECT account_id, behavior_code, local_date, sum(reduction_mg) AS mg, sum(points) AS points
                   FROM behavior_records WHERE reversed_at IS NULL GROUP BY account_id, behavior_code, local_date) r
          ON r.account_id = t.account_id AND r.behavior_code = t.behavior_code AND r.local_date = t.local_date
        WHERE t.behavior_code <> '~market-proceeds'
          AND (t.credited_mg <> coalesce(r.mg, 0) OR t.credited_points <> coalesce(r.points, 0))
        LIMIT :limit""",
    "proceeds_match_payouts": """
        WITH earned AS (
            SELECT account_id, sum(credited_points) AS points FROM daily_behavior_totals
             WHERE behavior_code = '~market-proceeds' GROUP BY 1
        ), posted AS (
            SELECT account_id, sum(points) AS points FROM ledger_transactions WHERE kind = 'LOT_PROCEEDS' GROUP BY 1
        ), paid AS (
            SELECT p.account_id, sum(p.points) AS points,
                   count(*) FILTER (WHERE t.kind IS DISTINCT FROM 'LOT_PROCEEDS' OR t.points <> p.points
                                    OR t.account_id <> p.account_id) AS wrong
              FROM market_lot_payouts p LEFT JOIN ledger_transactions t ON t.id = p.transaction_id GROUP BY 1
        )
        SELECT coalesce(e.account_id, o.account_id, p.account_id)::text,
               'lots ' || coalesce(e.points, 0) || ' / ledger ' || coalesce(o.points, 0) || ' / payouts '
                   || coalesce(p.points, 0), 'proceeds differ'
          FROM earned e FULL JOIN posted o USING (account_id) FULL JOIN paid p USING (account_id)
         WHERE coalesce(e.points, 0) <> coalesce(o.points, 0) OR coalesce(o.points, 0) <> coalesce(p.points, 0)
            OR coalesce(p.wrong, 0) > 0
        UNION ALL
        SELECT l.id::text, 'lot ' || l.number, 'its proceeds ' || l.proceeds_points || ' differ from its payouts'
          FROM market_lots l LEFT JOIN (SELECT lot_id, sum(points) AS points FROM market_lot_payouts GROUP BY 1) p
               ON p.lot_id = l.id
         WHERE l.proceeds_points <> coalesce(p.points, 0)
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
    "activity_days_match_ledger": """
        WITH tz AS (
            SELECT DISTINCT ON (tenant_id) tenant_id, timezone FROM tenant_config_versions
            ORDER BY tenant_id, effective_from DESC, version DESC
        ), ledger AS (
            SELECT DISTINCT t.tenant_id, t.account_id, (t.occurred_at AT TIME ZONE tz.timezone)::date AS local_date
            FROM ledger_transactions t JOIN tz ON tz.tenant_id = t.tenant_id
            WHERE t.account_id IS NOT NULL AND t.kind IN ('BEHAVIOR_CREDIT', 'REDEMPTION', 'DONATION')
        )
        SELECT coalesce(l.account_id, d.account_id)::text, coalesce(l.local_date, d.local_date)::text,
               CASE WHEN l.account_id IS NULL THEN 'active day without activity' ELSE 'activity without active day' END
        FROM ledger l FULL JOIN account_activity_days d USING (tenant_id, account_id, local_date)
        WHERE l.account_id IS NULL OR d.account_id IS NULL LIMIT :limit""",
    "active_rollups_match_days": """
        WITH days AS (
            SELECT tenant_id, local_date, NULL::date AS first_day, count(*) AS n FROM account_activity_days GROUP BY 1, 2
            UNION ALL
            SELECT tenant_id, local_date, previous, count(*) FROM (
                SELECT tenant_id, local_date,
                       lag(local_date) OVER (PARTITION BY tenant_id, account_id ORDER BY local_date) AS previous
                FROM account_activity_days) x
            WHERE local_date - previous <= 366 GROUP BY 1, 2, 3
        ), rollup AS (
            SELECT tenant_id, local_date, NULL::date AS first_day, sum(accounts) AS n FROM active_account_rollups
            GROUP BY 1, 2 HAVING sum(accounts) <> 0
            UNION ALL
            SELECT tenant_id, local_date, first_day, sum(accounts) FROM active_account_links
            GROUP BY 1, 2, 3 HAVING sum(accounts) <> 0
        )
        SELECT coalesce(d.local_date, r.local_date)::text,
               coalesce('link from ' || coalesce(d.first_day, r.first_day)::text, 'accounts'),
               'days ' || coalesce(d.n, 0) || ' <> rollup ' || coalesce(r.n, 0)
        FROM days d FULL JOIN rollup r
             ON r.tenant_id = d.tenant_id AND r.local_date = d.local_date
            AND r.first_day IS NOT DISTINCT FROM d.first_day
        WHERE d.n IS DISTINCT FROM r.n LIMIT :limit""",
    "chain_hashes_match": """
        SELECT c.transaction_id::text, 'seq ' || c.seq, 'the transaction no longer matches its chain hash (edited?)'
        FROM ledger_chain c JOIN ledger_transactions t ON t.id = c.transaction_id
        WHERE c.hash <> carbon_ledger_digest(c.prev_hash, t) LIMIT :limit""",
    "chain_links_intact": """
        SELECT chain_key::text, 'seq ' || seq, problem FROM (
            SELECT c.chain_key, c.seq,
                   CASE WHEN c.seq <> row_number() OVER w THEN 'a gap or a repeat in the chain (deleted or added?)'
                        WHEN c.prev_hash <> coalesce(lag(c.hash) OVER w, decode(repeat('00', 32), 'hex'))
                        THEN 'does not link to the previous entry' END AS problem
            FROM ledger_chain c WINDOW w AS (PARTITION BY c.tenant_id, c.chain_key ORDER BY c.seq)) x
        WHERE problem IS NOT NULL LIMIT :limit""",
    "every_transaction_chained": """
        SELECT coalesce(t.id, c.transaction_id)::text,
               CASE WHEN c.transaction_id IS NULL THEN 'a transaction outside every chain (added?)'
                    WHEN t.id IS NULL THEN 'a chain entry without its transaction (deleted?)'
                    ELSE 'in the wrong chain' END
        FROM ledger_transactions t FULL JOIN ledger_chain c ON c.transaction_id = t.id
        WHERE t.id IS NULL OR c.transaction_id IS NULL OR c.chain_key <> coalesce(t.account_id, t.tenant_id)
           OR (c.checkpoint_number IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM ledger_checkpoints k WHERE k.number = c.checkpoint_number))
        LIMIT :limit""",
    "market_lots_reconcile": """
        WITH pooled AS (
            SELECT m.lot_id, count(*) AS n, count(DISTINCT b.account_id) AS accounts, sum(m.reduction_mg) AS mg,
                   coalesce(sum(m.reduction_mg) FILTER (WHERE b.reversed_at IS NOT NULL), 0) AS reversed,
                   count(*) FILTER (WHERE m.reduction_mg <> b.reduction_mg) AS changed
            FROM market_lot_records m JOIN behavior_records b ON b.id = m.record_id GROUP BY 1
        ), retired AS (
            SELECT lot_id, sum(kilograms) AS kg FROM market_retirements GROUP BY 1
        )
        SELECT id::text, 'lot ' || number, problem FROM (
            SELECT l.id, l.number,
                   CASE WHEN coalesce(p.n, 0) <> l.records OR coalesce(p.mg, 0) <> l.pooled_mg
                        THEN 'its pooled records differ from its books'
                        WHEN coalesce(p.accounts, 0) <> l.contributors THEN 'its contributors differ from its books'
                        WHEN coalesce(p.changed, 0) > 0 THEN 'a pooled record''s reduction changed'
                        WHEN coalesce(p.reversed, 0) <> l.reversed_mg THEN 'its reversed records differ from its books'
                        WHEN coalesce(r.kg, 0) <> l.retired_kg THEN 'its retirements differ from its books'
                        WHEN l.serial_start <> coalesce(lag(l.serial_start + l.serial_kg)
                                                        OVER (PARTITION BY l.tenant_id ORDER BY l.number), 1)
                        THEN 'its serials do not follow the previous lot''s' END AS problem
            FROM market_lots l LEFT JOIN pooled p ON p.lot_id = l.id LEFT JOIN retired r ON r.lot_id = l.id) x
        WHERE problem IS NOT NULL LIMIT :limit""",
    "flows_match_rollups": """
        WITH rollup AS (
            SELECT tenant_id, local_date, sum(transactions) AS n,
                   sum(reduction_mg) FILTER (WHERE kind IN ('BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL')) AS mg,
                   sum(points) FILTER (WHERE kind IN ('BEHAVIOR_CREDIT', 'BEHAVIOR_REVERSAL', 'LOT_PROCEEDS'))
                       AS issued,
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


async def verify_ledger(session: AsyncSession, *, limit: int = 20, public_key: Ed25519PublicKey | None = None,
                        anchors: list[tuple[int, bytes]] = ()) -> list[Violation]:
    """Run every check in the session's current tenant scope; an empty list means the ledger is sound.
    Checkpoint signatures are checked when the platform's public key is given; `anchors` are checkpoint
    roots kept outside the database (number, root) that must still be there, unchanged."""
    violations: list[Violation] = []
    # Each check reads the city's whole ledger: an audit, not a request, so the connection's 30 s
    # statement timeout (app.db.session) does not apply to it, for this transaction only.
    await session.execute(text("SET LOCAL statement_timeout = 0"))
    for name, sql in CHECKS.items():
        for row in (await session.execute(text(sql), {"limit": limit})).all():
            violations.append(Violation(check=name, detail=" ".join(str(value) for value in row)))
    for where, problem in (await verify_checkpoints(session, public_key, anchors))[:limit]:
        violations.append(Violation(check="checkpoints_hold", detail=f"{where} {problem}"))
    return violations


class UnknownCity(ValueError):
    def __init__(self, slugs: list[str], known: list[str]) -> None:
        super().__init__(f"no city {', '.join(map(repr, slugs))} (the cities are {', '.join(known)})")
        self.slugs = slugs


async def verify_all_tenants(database: Database, *, limit: int = 20, public_key: Ed25519PublicKey | None = None,
                             anchors: dict[str, list[tuple[int, bytes]]] | None = None) -> dict[str, list[Violation]]:
    """Check every tenant in its own scope (the ledger is personal data: no cross-tenant read role sees
    it). Returns slug -> violations, for every tenant. An anchor for a city that does not exist is
    refused (`UnknownCity`) before anything is checked: a mistyped slug must not turn a check off."""
    async with database.transaction(TenantScope.regulator()) as session:
        tenants = (await session.execute(text("SELECT id, slug FROM tenants ORDER BY slug"))).all()
    unknown = sorted(set(anchors or {}) - {slug for _, slug in tenants})
    if unknown:
        raise UnknownCity(unknown, sorted(slug for _, slug in tenants))
    report: dict[str, list[Violation]] = {}
    for tenant_id, slug in tenants:
        async with database.transaction(TenantScope.for_tenant(tenant_id)) as session:
            report[slug] = await verify_ledger(session, limit=limit, public_key=public_key,
                                               anchors=(anchors or {}).get(slug, []))
    return report
