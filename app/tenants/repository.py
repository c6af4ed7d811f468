"""Every SQL statement of the tenants domain. Batch-shaped: each read takes a list of keys and answers
for all of them in one statement, so DataLoaders keep a request's statement count independent of the
length of the lists it returns. Row-level security applies to all of it (the session runs as
`carbon_app` with the request's tenant scope)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.tenants.models import BehaviorRule, Issuer, Reward, Tenant, TenantConfigVersion


@dataclass(frozen=True)
class TenantView:
    """A tenant with the configuration version in force at the request's instant."""

    id: uuid.UUID
    slug: str
    version_id: uuid.UUID
    version: int
    effective_from: datetime
    name_en: str
    name_zh: str
    timezone: str
    claim_window_days: int
    unit_name_en: str
    unit_name_zh: str
    unit_singular_en: str
    unit_singular_zh: str
    unit_decimals: int
    grams_per_point: int
    point_expiry_months: int | None = None


# The version in force at :at: the latest to take effect by then; of those taking effect at one moment,
# the highest version (the one rule, for one tenant and, laterally, for many).
_IN_FORCE = "effective_from <= :at ORDER BY effective_from DESC, version DESC LIMIT 1"

_CURRENT_TENANTS = f"""
SELECT t.id, t.slug, v.id AS version_id, v.version, v.effective_from, v.name_en, v.name_zh, v.timezone,
       v.claim_window_days, v.unit_name_en, v.unit_name_zh, v.unit_singular_en, v.unit_singular_zh,
       v.unit_decimals, v.grams_per_point, v.point_expiry_months
FROM tenants t
JOIN LATERAL (
    SELECT * FROM tenant_config_versions WHERE tenant_id = t.id AND {_IN_FORCE}
) v ON true
"""


async def configuration_in_force(session: AsyncSession, tenant_id: uuid.UUID, at: datetime) -> dict[str, Any] | None:
    """The tenant's configuration version in force at `at` (the latest to take effect by then; of those
    taking effect at one moment, the highest version), as a row; None before its first."""
    row = (await session.execute(text(
        f"SELECT * FROM tenant_config_versions WHERE tenant_id = :t AND {_IN_FORCE}"),
        {"t": tenant_id, "at": at})).mappings().first()
    return None if row is None else dict(row)


async def current_tenants(session: AsyncSession, at: datetime, *, slugs: Sequence[str] | None = None,
                          ids: Sequence[uuid.UUID] | None = None) -> list[TenantView]:
    """Visible tenants (RLS decides which) with their configuration in force at `at`, by slug."""
    where, params = [], {"at": at}
    if slugs is not None:
        where.append("t.slug = ANY(:slugs)")
        params["slugs"] = list(slugs)
    if ids is not None:
        where.append("t.id = ANY(:ids)")
        params["ids"] = list(ids)
    sql = _CURRENT_TENANTS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY t.slug"
    rows = (await session.execute(text(sql), params)).mappings()
    return [TenantView(**row) for row in rows]


async def issuers_for_tenants(session: AsyncSession, tenant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Issuer]]:
    rows = await session.execute(
        text("SELECT * FROM issuers WHERE tenant_id = ANY(:ids) AND active ORDER BY tenant_id, position"),
        {"ids": list(tenant_ids)},
    )
    grouped: dict[uuid.UUID, list[Issuer]] = defaultdict(list)
    for row in rows.mappings():
        grouped[row["tenant_id"]].append(Issuer(**row))
    return grouped


async def issuer_ids_by_slug(session: AsyncSession,
                             keys: Sequence[tuple[uuid.UUID, str]]) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    rows = await session.execute(text(
        "SELECT i.tenant_id, i.slug, i.id FROM issuers i JOIN unnest(CAST(:t AS uuid[]), CAST(:s AS text[])) "
        "AS k(tenant_id, slug) ON i.tenant_id = k.tenant_id AND i.slug = k.slug WHERE i.active"),
        {"t": [k[0] for k in keys], "s": [k[1] for k in keys]})
    return {(t, s): id_ for t, s, id_ in rows.all()}


async def issuers_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Issuer]:
    rows = await session.execute(text("SELECT * FROM issuers WHERE id = ANY(:ids)"), {"ids": list(ids)})
    return {row["id"]: Issuer(**row) for row in rows.mappings()}


async def rules_for_versions(session: AsyncSession,
                             version_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[BehaviorRule]]:
    rows = await session.execute(
        text("SELECT * FROM behavior_rules WHERE config_version_id = ANY(:ids) ORDER BY config_version_id, position"),
        {"ids": list(version_ids)},
    )
    grouped: dict[uuid.UUID, list[BehaviorRule]] = defaultdict(list)
    for row in rows.mappings():
        grouped[row["config_version_id"]].append(BehaviorRule(**row))
    return grouped


async def rules_of_records(session: AsyncSession, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, BehaviorRule]:
    """The rule (and so its version's wording) that priced each behaviour record."""
    rows = await session.execute(text(
        "SELECT r.id AS record_id, b.* FROM behavior_records r JOIN behavior_rules b ON b.id = r.rule_id "
        "WHERE r.id = ANY(:ids)"), {"ids": list(record_ids)})
    found = {}
    for row in rows.mappings():
        values = dict(row)
        found[values.pop("record_id")] = BehaviorRule(**values)
    return found


@dataclass(frozen=True)
class RewardPageQuery:
    """One page request; identical requests for several tenants share one statement."""

    kind: str | None
    after: tuple[int, uuid.UUID] | None
    before: tuple[int, uuid.UUID] | None
    limit: int
    backwards: bool


async def reward_pages(session: AsyncSession, tenant_ids: Sequence[uuid.UUID],
                       query: RewardPageQuery) -> dict[uuid.UUID, list[Reward]]:
    """Up to `limit + 1` active rewards per tenant in keyset order (position, id), one statement.

    The extra row tells the caller whether another page exists. For `backwards` pages the rows come
    back in descending order; the caller reverses them.
    """
    conditions = ["tenant_id = ANY(:ids)", "active"]
    params: dict[str, Any] = {"ids": list(tenant_ids), "limit": query.limit + 1}
    if query.kind is not None:
        conditions.append("kind = :kind")
        params["kind"] = query.kind
    if query.after is not None:
        conditions.append("(position, id) > (:after_position, :after_id)")
        params["after_position"], params["after_id"] = query.after
    if query.before is not None:
        conditions.append("(position, id) < (:before_position, :before_id)")
        params["before_position"], params["before_id"] = query.before
    direction = "DESC" if query.backwards else "ASC"
    sql = f"""
        SELECT * FROM (
            SELECT r.*, row_number() OVER (PARTITION BY tenant_id ORDER BY position {direction}, id {direction}) AS rn
            FROM rewards r WHERE {' AND '.join(conditions)}
        ) ranked
        WHERE rn <= :limit
        ORDER BY tenant_id, rn
    """
    rows = await session.execute(text(sql), params)
    grouped: dict[uuid.UUID, list[Reward]] = defaultdict(list)
    for row in rows.mappings():
        values = dict(row)
        values.pop("rn")
        grouped[values["tenant_id"]].append(Reward(**values))
    return grouped


async def rewards_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Reward]:
    rows = await session.execute(text("SELECT * FROM rewards WHERE id = ANY(:ids)"), {"ids": list(ids)})
    return {row["id"]: Reward(**row) for row in rows.mappings()}


# ------------------------------------------------------------------ writes (configuration loading)


async def lock_tenant_configuration(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Serialise configuration loads of one tenant (two servers starting at once publish once)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                          {"key": f"carbon-config:{tenant_id}"})


async def ensure_tenant(session: AsyncSession, tenant_id: uuid.UUID, slug: str) -> None:
    await session.execute(insert(Tenant).values(id=tenant_id, slug=slug).on_conflict_do_nothing(index_elements=["id"]))


async def latest_version(session: AsyncSession, tenant_id: uuid.UUID, *,
                         exclude_source_prefix: str | None = None) -> TenantConfigVersion | None:
    """The highest-numbered version (optionally ignoring versions whose source has a prefix)."""
    condition = "AND NOT starts_with(source, :prefix)" if exclude_source_prefix else ""
    row = (await session.execute(
        text(f"SELECT * FROM tenant_config_versions WHERE tenant_id = :t {condition} ORDER BY version DESC LIMIT 1"),
        {"t": tenant_id, "prefix": exclude_source_prefix or ""},
    )).mappings().first()
    return TenantConfigVersion(**row) if row else None


async def versions_of(session: AsyncSession, tenant_id: uuid.UUID) -> list[TenantConfigVersion]:
    rows = await session.execute(
        text("SELECT * FROM tenant_config_versions WHERE tenant_id = :t ORDER BY version"), {"t": tenant_id})
    return [TenantConfigVersion(**row) for row in rows.mappings()]


async def insert_version(session: AsyncSession, version: TenantConfigVersion, rules: list[BehaviorRule]) -> None:
    session.add(version)
    await session.flush()
    if rules:
        await session.execute(insert(BehaviorRule), [rule.model_dump() for rule in rules])


async def upsert_issuers(session: AsyncSession, tenant_id: uuid.UUID,
                         issuers: list[dict[str, Any]]) -> dict[str, uuid.UUID]:
    """Insert or update the file's issuers, deactivate the others; returns slug -> id."""
    statement = insert(Issuer).values([{"id": uuid.uuid4(), "tenant_id": tenant_id, **item} for item in issuers])
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "slug"],
        set_={key: statement.excluded[key] for key in ("kind", "name_en", "name_zh", "description", "position")}
        | {"active": True, "updated_at": text("now()")},
    ).returning(Issuer.slug, Issuer.id)
    ids = {slug: id_ for slug, id_ in (await session.execute(statement)).all()}
    await session.execute(
        text("UPDATE issuers SET active = false, updated_at = now() "
             "WHERE tenant_id = :t AND active AND NOT (slug = ANY(:slugs))"),
        {"t": tenant_id, "slugs": list(ids)},
    )
    return ids


_REWARD_FIELDS = ("kind", "position", "name_en", "name_zh", "description_en", "description_zh", "cost_points",
                  "per_account_limit", "limit_period", "valid_from", "valid_to", "sponsor_issuer_id",
                  "cancellation_window_hours", "bank_linked_only", "min_contribution_mg")


async def upsert_rewards(session: AsyncSession, tenant_id: uuid.UUID, rewards: list[dict[str, Any]]) -> int:
    """Apply the file's catalogue; returns how many items were retired.

    An item is (re)written only when the file's declaration of it differs from the one last applied
    (`file_hash`), so changes an administrator made through the API survive restarts until the file
    itself changes that item; the file then wins for it. Items the file no longer declares are retired,
    but only those the file manages: items created through the API are never touched here.

    Stock: the file sets `stock_total`; `stock_taken` (units handed out) is never touched here, so
    remaining stock after an edit is the new total minus what was already taken.
    """
    codes = [item["code"] for item in rewards]
    # The items' exclusive advisory locks first (as an administrator's change): a redemption running
    # now sees each item wholly before or wholly after this load.
    await session.execute(text(
        "SELECT pg_advisory_xact_lock(hashtextextended('carbon-item:' || id::text, 0)) FROM rewards "
        "WHERE tenant_id = :t ORDER BY id"), {"t": tenant_id})
    if rewards:
        rows = [{"id": uuid.uuid4(), "tenant_id": tenant_id, **item, "managed_by": "FILE",
                 "file_hash": declaration_hash({k: v for k, v in item.items() if k != "position"})}
                for item in rewards]
        statement = insert(Reward).values(rows)
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["tenant_id", "code"],
            set_={key: excluded[key] for key in (*_REWARD_FIELDS, "stock_total", "managed_by", "file_hash")}
            | {"active": True, "updated_at": text("now()")},
            where=Reward.__table__.c.file_hash.is_distinct_from(excluded.file_hash),
        )
        await session.execute(statement)
        # The order of the catalogue follows the file, whatever else is kept (not part of the hash, so
        # inserting an item in the file re-applies no other item).
        await session.execute(text("""
            UPDATE rewards r SET position = f.position FROM unnest(CAST(:codes AS text[]), CAST(:positions AS int[]))
                AS f(code, position)
             WHERE r.tenant_id = :t AND r.code = f.code AND r.managed_by = 'FILE' AND r.position <> f.position"""),
            {"t": tenant_id, "codes": codes, "positions": [item["position"] for item in rewards]})
    # Retired with its hash forgotten: the same declaration added back later is applied again.
    result = await session.execute(
        text("UPDATE rewards SET active = false, file_hash = NULL, updated_at = now() "
             "WHERE tenant_id = :t AND active AND managed_by = 'FILE' AND NOT (code = ANY(:codes))"),
        {"t": tenant_id, "codes": codes},
    )
    return result.rowcount or 0


def declaration_hash(item: dict[str, Any]) -> str:
    """A file item's declaration, as applied (sponsor as its issuer id, amounts in stored units)."""
    canonical = json.dumps({key: item[key] for key in sorted(item)}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
