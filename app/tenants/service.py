"""Loading city configuration into the database: publish versions, keep catalogue and issuers current.

Rules of publication (ADR 0002, 0007):

* The first load of a city publishes version 1, effective from the file's `effective_from`.
* A later load whose versioned content (all but issuers, catalogue and clients:
  `app.tenants.config.NOT_VERSIONED`) differs from the last version the file published publishes version n+1,
  effective from `max(file effective_from, now, latest effective_from)`: a change can take effect now
  or be scheduled, never backdated, so a record already priced keeps its price.
* An unchanged file publishes nothing. Old versions are kept forever: a record priced by version 3
  can always show it.
* Issuers and catalogue items are current-state entities: updated in place, and retired (not
  deleted) when they leave the file.

All cities load in the caller's one transaction: a failure anywhere leaves nothing half-loaded.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import NO_TENANT, TenantScope, apply_scope
from app.errors import UserError
from app.tenants import repository
from app.ledger.service import ensure_donation_account, ensure_system_accounts
from app.tenants.config import CityConfig, ConfigError
from app.tenants.models import BehaviorRule, TenantConfigVersion, tenant_id_for


API_SOURCE = "api:"  # the `source` of versions published through the API: "api:<client>"
MAX_SCHEDULE_AHEAD = timedelta(days=366)


@dataclass(frozen=True)
class CityLoadResult:
    slug: str
    version: int
    published: bool
    effective_from: datetime
    behaviors: int
    rewards: int
    retired_rewards: int


def _version_row(city: CityConfig, tenant_id: uuid.UUID, number: int, effective_from: datetime,
                 source: str) -> TenantConfigVersion:
    unit = city.point_unit
    return TenantConfigVersion(
        tenant_id=tenant_id, version=number, effective_from=effective_from, content_hash=city.content_hash(),
        name_en=city.name.en, name_zh=city.name.zh, timezone=city.timezone,
        claim_window_days=city.claim_window_days, point_expiry_months=city.point_expiry_months, unit_name_en=unit.name.en, unit_name_zh=unit.name.zh,
        unit_singular_en=unit.singular.en, unit_singular_zh=unit.singular.zh, unit_decimals=unit.decimals,
        grams_per_point=unit.grams_per_point, source=source, document=city.model_dump(mode="json"),
    )


def _rule_rows(city: CityConfig, tenant_id: uuid.UUID, version_id: uuid.UUID) -> list[BehaviorRule]:
    return [
        BehaviorRule(
            tenant_id=tenant_id, config_version_id=version_id, position=position, code=rule.code,
            name_en=rule.name.en, name_zh=rule.name.zh, category=rule.category.value, method=rule.method.value,
            unit=rule.unit, factor_mg=rule.factor_mg, baseline_mg_per_km=rule.milligrams("baseline_g_per_km"),
            mode_mg_per_km=rule.milligrams("mode_g_per_km"), cap_mg_per_day=rule.milligrams("cap_g_per_day"),
            cap_mg_per_month=rule.milligrams("cap_g_per_month"),
            cap_mg_per_event=rule.milligrams("cap_g_per_event"), source=rule.source,
            same_behavior=rule.same_behavior.model_dump(mode="json", exclude_none=True),
        )
        for position, rule in enumerate(city.behaviors)
    ]


async def load_city(session: AsyncSession, city: CityConfig, *, now: datetime, source: str) -> CityLoadResult:
    """Publish `city` (if changed) and refresh its issuers and catalogue. Does not commit."""
    tenant_id = tenant_id_for(city.slug)
    await apply_scope(session, TenantScope.for_tenant(tenant_id))
    await repository.lock_tenant_configuration(session, tenant_id)
    await repository.ensure_tenant(session, tenant_id, city.slug)

    latest = await repository.latest_version(session, tenant_id)
    if latest is not None and latest.unit_decimals != city.point_unit.decimals:
        # Balances are integers of the smallest unit: changing the decimals would silently rescale them.
        raise ConfigError(f"{source}: key `point_unit.decimals` cannot change once published "
                          f"(was {latest.unit_decimals}, now {city.point_unit.decimals})")
    # Compared with the last version the *file* published: a version an administrator published
    # through the API stands until the file itself changes (ADR 0007).
    latest_file = await repository.latest_version(session, tenant_id, exclude_source_prefix=API_SOURCE)
    published = latest is None or latest_file is None or latest_file.content_hash != city.content_hash()
    if latest is None:
        number, effective_from = 1, city.effective_from
    elif published:
        number, effective_from = latest.version + 1, max(city.effective_from, now, latest.effective_from)
    else:
        number, effective_from = latest.version, latest.effective_from
    if published:
        version = _version_row(city, tenant_id, number, effective_from, source)
        await repository.insert_version(session, version, _rule_rows(city, tenant_id, version.id))
        behaviors = len(city.behaviors)
    else:
        assert latest is not None
        behaviors = len(latest.document["behaviors"])  # the latest version's rules (it may be the API's)

    issuer_ids = await repository.upsert_issuers(session, tenant_id, [
        {"slug": issuer.slug, "kind": issuer.kind.value, "name_en": issuer.name.en, "name_zh": issuer.name.zh,
         "description": issuer.description, "position": position}
        for position, issuer in enumerate(city.issuers)
    ])
    retired = await repository.upsert_rewards(session, tenant_id, [
        {
            "code": item.code, "kind": item.kind.value, "position": position, "name_en": item.name.en,
            "name_zh": item.name.zh, "description_en": item.description.en if item.description else None,
            "description_zh": item.description.zh if item.description else None,
            "cost_points": city.points_minor(item.cost), "stock_total": item.stock,
            "per_account_limit": item.per_account_limit, "limit_period": item.limit_period.value,
            "valid_from": item.valid_from, "valid_to": item.valid_to,
            "sponsor_issuer_id": issuer_ids[item.sponsor],
            "cancellation_window_hours": item.cancellation_window_hours,
            "bank_linked_only": item.eligibility.bank_linked_only,
            "min_contribution_mg": item.eligibility.min_contribution_g * 1000,
        }
        for position, item in enumerate(city.rewards)
    ])
    await ensure_system_accounts(session, tenant_id)
    for item in city.rewards:
        if item.kind.value == "DONATION":
            await ensure_donation_account(session, tenant_id, item.code)
    await apply_scope(session, NO_TENANT)
    return CityLoadResult(slug=city.slug, version=number, published=published, effective_from=effective_from,
                          behaviors=behaviors, rewards=len(city.rewards), retired_rewards=retired)


async def load_cities(session: AsyncSession, cities: list[CityConfig], *, now: datetime,
                      source: str = "config") -> list[CityLoadResult]:
    """Load every city in the caller's transaction (all or nothing). Does not commit."""
    return [await load_city(session, city, now=now, source=f"{source}/tenants/{city.slug}.toml") for city in cities]


class PublicationRefused(UserError):
    """An administrator's configuration version that cannot be published (nothing is written). `field`
    is the path inside the mutation's `input`; `also` holds further problems of the same document."""

    code: str
    field: list[str]

    def __init__(self, code: str, field: list[str], message: str,
                 also: list[PublicationRefused] | None = None) -> None:
        super().__init__(code, field, message)
        self.errors = [self, *(also or [])]


# "behaviors[3].code" in a message of a check over the whole document (e.g. a duplicate code).
_FILE_PLACE = re.compile(r"behaviors\[(?P<index>\d+)\](?:\.(?P<key>[a-z_]+))?")


def _input_path(location: tuple[Any, ...]) -> list[str]:
    """A place in a city document (pydantic's `loc`) as a path in `publishConfiguration`'s input:
    ("behaviors", 0, "factor_g") -> ["rules", "0", "factorGrams"], ("point_unit", "name", "en") ->
    ["pointUnitName", "en"]."""
    def camel(key: str) -> str:
        head, *rest = key.replace("_g_", "_grams_").removesuffix("_g").split("_") + (
            ["grams"] if key.endswith("_g") else [])
        return head + "".join(part.title() for part in rest)

    parts = [str(part) for part in location]
    if parts[:1] == ["behaviors"]:
        return ["rules", *(part if part.isdigit() else camel(part) for part in parts[1:])]
    if parts[:1] == ["point_unit"] and len(parts) > 1 and parts[1] in ("name", "singular"):
        return ["pointUnit" + parts[1].title(), *parts[2:]]
    return [camel(part) if not part.isdigit() else part for part in parts]



async def publish_from_api(session: AsyncSession, tenant_id: uuid.UUID, by: str, *, now: datetime,
                           effective_from: datetime, unit_name: dict[str, str] | None = None,
                           unit_singular: dict[str, str] | None = None,
                           behaviors: list[dict[str, Any]] | None = None) -> TenantConfigVersion:
    """Publish a new configuration version made from the latest one with a new point-unit name and/or a
    new complete rule set, effective from `effective_from`.

    Never retroactive: `effective_from` must not be in the past, nor before any version already
    published (versions follow each other without gaps: each is in force until the next). The document
    is validated exactly as a city file is. Audited. Does not commit."""
    from pydantic import ValidationError

    from app.tenants.catalogue import record_audit

    await repository.lock_tenant_configuration(session, tenant_id)
    latest = await repository.latest_version(session, tenant_id)
    if latest is None:
        raise PublicationRefused("NOT_CONFIGURED", [], "the city has no configuration yet: load its file first")
    if effective_from.utcoffset() is None:
        raise PublicationRefused("INVALID_CONFIGURATION", ["effectiveFrom"],
                                 "give a time with its UTC offset, e.g. 2026-12-01T00:00:00+08:00")
    if effective_from < now:
        raise PublicationRefused("RETROACTIVE", ["effectiveFrom"], "a version cannot take effect in the past")
    if effective_from > now + MAX_SCHEDULE_AHEAD:
        # A version scheduled far ahead could only be corrected after it (versions are never withdrawn).
        raise PublicationRefused("TOO_FAR_AHEAD", ["effectiveFrom"],
                                 f"a version can be scheduled at most {MAX_SCHEDULE_AHEAD.days} days ahead")
    if effective_from <= latest.effective_from:
        raise PublicationRefused("NOT_AFTER_LATEST", ["effectiveFrom"],
                                 f"version {latest.version} takes effect at {latest.effective_from.isoformat()}; "
                                 "a new version must take effect after it")
    if unit_name is not None and unit_singular is None:
        # The singular ("carbon coin") would stay the old name's beside the new plural.
        raise PublicationRefused("INVALID_CONFIGURATION", ["pointUnitSingular"],
                                 "a renamed unit needs its singular too (give pointUnitSingular with pointUnitName)")
    document = dict(latest.document) | {"effective_from": effective_from.isoformat()}
    unit = dict(document["point_unit"])
    if unit_name is not None:
        unit["name"] = unit_name
    if unit_singular is not None:
        unit["singular"] = unit_singular
    document["point_unit"] = unit
    if behaviors is not None:
        document["behaviors"] = behaviors
    try:
        city = CityConfig.model_validate(document)
    except ValidationError as error:
        refused = []
        for problem in error.errors(include_url=False, include_input=False):
            message = problem["msg"].removeprefix("Value error, ")
            location = tuple(problem["loc"])
            named = _FILE_PLACE.search(message)  # a check of the whole document names the place itself
            if named and len(location) <= 1:
                location = ("behaviors", int(named["index"]), *([named["key"]] if named["key"] else []))
            path = _input_path(location)
            message = _FILE_PLACE.sub(lambda m: ".".join(_input_path(
                ("behaviors", int(m["index"]), *([m["key"]] if m["key"] else [])))), message)
            refused.append(PublicationRefused("INVALID_CONFIGURATION", path,
                                              f"{'.'.join(path)}: {message}" if path else message))
        raise PublicationRefused(refused[0].code, refused[0].field, refused[0].message, also=refused[1:]) from None
    if city.content_hash() == latest.content_hash:
        raise PublicationRefused("NOTHING_CHANGED", [], "this is the configuration already published")
    version = _version_row(city, tenant_id, latest.version + 1, effective_from, f"{API_SOURCE}{by}")
    await repository.insert_version(session, version, _rule_rows(city, tenant_id, version.id))
    published_document = city.model_dump(mode="json")
    before = {"version": latest.version, "effective_from": latest.effective_from.isoformat(),
              "point_unit": latest.document["point_unit"], "behaviors": latest.document["behaviors"]}
    after = {"version": version.version, "effective_from": effective_from.isoformat(),
             "point_unit": published_document["point_unit"], "behaviors": published_document["behaviors"]}
    await record_audit(session, tenant_id, by, "PUBLISH_CONFIGURATION", "TenantConfigVersion", version.id,
                       before, after)
    return version
