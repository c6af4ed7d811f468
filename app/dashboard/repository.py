"""Every SQL statement of the dashboard: sums over the daily rollups and totals (migrations 0011, 0012,
0013, 0014), never over the raw ledger, and never over the days before the period. Each function is one
statement, whatever the number of cities or days.

Active accounts in [start, end] (0013): Σ accounts active per day, minus the links between an account's
consecutive active days that both lie in the period, so each account counts once.

Transactions are read beside the amounts: they bound the accounts behind a figure where the read models
count no distinct accounts (`app.dashboard.suppression`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

CREDITED = ("BEHAVIOR_CREDIT", "BEHAVIOR_REVERSAL")  # the reduction: credits net of reversals
PROCEEDS = "LOT_PROCEEDS"  # a market lot's sale proceeds, paid to its contributors
ISSUED = (*CREDITED, PROCEEDS)  # credits net of reversals, and sale proceeds
REDEEMED = ("REDEMPTION", "DONATION", "REDEMPTION_CANCELLED")
EXPIRED = ("EXPIRY",)

# Over `ledger_day_flows` (0014), which classifies the kinds as ISSUED, REDEEMED and EXPIRED do.
_FLOWS = """
    sum(reduction_mg) AS reduction_mg, sum(issued) AS issued, sum(redeemed) AS redeemed, sum(expired) AS expired"""


async def headline(session: AsyncSession, tenant_ids: Sequence[uuid.UUID], start: date,
                   end: date) -> dict[uuid.UUID, dict[str, int]]:
    """Per city: the period's flows (and its `transactions`, of every kind), the points outstanding at the
    end of `end` (and the transactions behind them, `transactions_to_end`), and account counts.

    Reads the period's days and the days after it, never the days before: what stood at the end of `end`
    is the all-time total less what came after (migration 0014)."""
    rows = await session.execute(text(f"""
        WITH flows AS (
            SELECT tenant_id, sum(transactions) AS transactions, {_FLOWS} FROM ledger_day_flows
             WHERE tenant_id = ANY(:t) AND local_date BETWEEN :start AND :end GROUP BY tenant_id
        ), outstanding AS (
            SELECT tenant_id, sum(points) AS outstanding, sum(n) AS transactions FROM (
                SELECT tenant_id, issued - redeemed - expired AS points, transactions AS n FROM ledger_flow_totals
                 WHERE tenant_id = ANY(:t)
                UNION ALL
                SELECT tenant_id, -(issued - redeemed - expired), -transactions FROM ledger_day_flows
                 WHERE tenant_id = ANY(:t) AND local_date > :end) x
             GROUP BY tenant_id
        ), active AS (
            SELECT tenant_id, sum(n) AS active FROM (
                SELECT tenant_id, accounts AS n FROM active_account_rollups
                 WHERE tenant_id = ANY(:t) AND local_date BETWEEN :start AND :end
                UNION ALL
                SELECT tenant_id, -accounts FROM active_account_links
                 WHERE tenant_id = ANY(:t) AND first_day BETWEEN :start AND :end AND local_date <= :end) x
             GROUP BY tenant_id
        ), accounts AS (
            SELECT tenant_id,
                   sum(events) FILTER (WHERE event = 'OPENED' AND period) AS opened,
                   sum(events) FILTER (WHERE event = 'OPENED' AND NOT period) AS opened_total,
                   sum(events) FILTER (WHERE event = 'BANK_LINKED' AND NOT period) AS bank_linked
              FROM (SELECT tenant_id, event, events, false AS period FROM account_event_totals WHERE tenant_id = ANY(:t)
                    UNION ALL
                    SELECT tenant_id, event, CASE WHEN local_date > :end THEN -events ELSE events END,
                           local_date <= :end FROM account_daily_rollups
                     WHERE tenant_id = ANY(:t) AND local_date >= :start) x
             GROUP BY tenant_id
        )
        SELECT t.id AS tenant_id, coalesce(f.reduction_mg, 0) AS reduction_mg, coalesce(f.issued, 0) AS issued,
               coalesce(f.redeemed, 0) AS redeemed, coalesce(f.expired, 0) AS expired,
               coalesce(f.transactions, 0) AS transactions, coalesce(o.outstanding, 0) AS outstanding,
               coalesce(o.transactions, 0) AS transactions_to_end, coalesce(a.opened, 0) AS opened,
               coalesce(a.opened_total, 0) AS opened_total, coalesce(a.bank_linked, 0) AS bank_linked,
               coalesce(ac.active, 0) AS active
          FROM unnest(CAST(:t AS uuid[])) AS t(id)
          LEFT JOIN flows f ON f.tenant_id = t.id LEFT JOIN outstanding o ON o.tenant_id = t.id
          LEFT JOIN accounts a ON a.tenant_id = t.id LEFT JOIN active ac ON ac.tenant_id = t.id
    """), {"t": list(tenant_ids), "start": start, "end": end})
    return {row["tenant_id"]: {key: int(value) for key, value in row.items() if key != "tenant_id"}
            for row in rows.mappings()}


async def series(session: AsyncSession, tenant_ids: Sequence[uuid.UUID], start: date, end: date,
                 unit: str) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Per city and bucket (`day`, `week` (ISO) or `month`, by local date, clipped to the period): the flows
    and the accounts active in the bucket."""
    rows = await session.execute(text(f"""
        WITH flows AS (
            SELECT tenant_id, date_trunc(:unit, local_date)::date AS bucket, {_FLOWS}
              FROM ledger_day_flows WHERE tenant_id = ANY(:t) AND local_date BETWEEN :start AND :end
             GROUP BY 1, 2
        ), active AS (
            SELECT tenant_id, bucket, sum(n) AS active FROM (
                SELECT tenant_id, date_trunc(:unit, local_date)::date AS bucket, accounts AS n
                  FROM active_account_rollups WHERE tenant_id = ANY(:t) AND local_date BETWEEN :start AND :end
                UNION ALL
                SELECT tenant_id, date_trunc(:unit, local_date)::date, -accounts FROM active_account_links
                 WHERE tenant_id = ANY(:t) AND first_day BETWEEN :start AND :end AND local_date <= :end
                   AND date_trunc(:unit, first_day) = date_trunc(:unit, local_date)) x
             GROUP BY 1, 2
        )
        SELECT tenant_id, bucket, coalesce(f.reduction_mg, 0) AS reduction_mg, coalesce(f.issued, 0) AS issued,
               coalesce(f.redeemed, 0) AS redeemed, coalesce(f.expired, 0) AS expired, coalesce(a.active, 0) AS active
          FROM flows f FULL JOIN active a USING (tenant_id, bucket)
         ORDER BY 1, 2
    """), {"t": list(tenant_ids), "start": start, "end": end, "unit": unit})
    found: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in rows.mappings():
        found.setdefault(row["tenant_id"], []).append(dict(row))
    return found


@dataclass(frozen=True)
class Breakdown:
    """`lines`: the period's rows per city, kind, behaviour, provider (`provider_slug`) and item; `kinds`:
    transactions per city, bucket and kind."""

    lines: list[dict[str, Any]]
    kinds: dict[uuid.UUID, dict[date, dict[str, int]]]

    def period_kinds(self, tenant_id: uuid.UUID) -> dict[str, int]:
        """Transactions per kind in the whole period."""
        found: dict[str, int] = {}
        for kinds in self.kinds.get(tenant_id, {}).values():
            for kind, n in kinds.items():
                found[kind] = found.get(kind, 0) + n
        return found


async def breakdown(session: AsyncSession, tenant_ids: Sequence[uuid.UUID], start: date, end: date,
                    unit: str = "day") -> Breakdown:
    """The period's rows per city, kind, behaviour, provider and item (summed over shards), and its
    transactions per city, bucket (`day`, `week` or `month`) and kind: one read of the rollups."""
    rows = await session.execute(text("""
        SELECT r.*, i.slug AS provider_slug FROM (
            SELECT tenant_id, kind, behavior_code, provider, reward_code, bucket, grouping(bucket) = 0 AS per_bucket,
                   sum(transactions) AS transactions, sum(reduction_mg) AS reduction_mg, sum(points) AS points
              FROM (SELECT *, date_trunc(:unit, local_date)::date AS bucket FROM ledger_daily_rollups
                     WHERE tenant_id = ANY(:t) AND local_date BETWEEN :start AND :end) d
             GROUP BY GROUPING SETS ((tenant_id, kind, behavior_code, provider, reward_code),
                                    (tenant_id, bucket, kind))) r
          LEFT JOIN issuers i ON r.provider <> '' AND i.tenant_id = r.tenant_id
                AND i.id = CAST(nullif(r.provider, '') AS uuid)
    """), {"t": list(tenant_ids), "start": start, "end": end, "unit": unit})
    lines: list[dict[str, Any]] = []
    kinds: dict[uuid.UUID, dict[date, dict[str, int]]] = {}
    for row in rows.mappings():
        if row["per_bucket"]:
            kinds.setdefault(row["tenant_id"], {}).setdefault(row["bucket"], {})[row["kind"]] = int(row["transactions"])
        else:
            lines.append(dict(row))
    return Breakdown(lines=lines, kinds=kinds)


async def kinds(session: AsyncSession, tenant_ids: Sequence[uuid.UUID], start: date,
                end: date) -> dict[uuid.UUID, dict[str, int]]:
    """Transactions per city and kind in the period (what `headline`'s figures are made of), from the
    same rollups as `breakdown`'s, without its lines."""
    rows = await session.execute(text("""
        SELECT tenant_id, kind, sum(transactions) AS transactions FROM ledger_daily_rollups
         WHERE tenant_id = ANY(:t) AND local_date BETWEEN :start AND :end GROUP BY 1, 2
    """), {"t": list(tenant_ids), "start": start, "end": end})
    found: dict[uuid.UUID, dict[str, int]] = {}
    for row in rows.mappings():
        found.setdefault(row["tenant_id"], {})[row["kind"]] = int(row["transactions"])
    return found


async def market_lots(session: AsyncSession, tenant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Every market lot of the cities (aggregates: no personal data), newest first."""
    from app.market.service import LOT_COLUMNS, LOTS

    rows = await session.execute(text(
        f"SELECT {LOT_COLUMNS} FROM {LOTS} WHERE l.tenant_id = ANY(:t) ORDER BY l.issued_at DESC, l.id DESC"),
        {"t": list(tenant_ids)})
    found: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in rows.mappings():
        found.setdefault(row["tenant_id"], []).append(dict(row))
    return found
