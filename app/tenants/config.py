"""City configuration files: `config/tenants/<slug>.toml`, validated before anything is written.

A city is data, not code: adding `config/tenants/<slug>.toml` adds a city. Every file is parsed and
validated by the pydantic models below; an error names the file, the key path and what is wrong, and
`load_city_files` raises before a single row is written, so a broken file can never leave a half-loaded
city behind (the server refuses to start instead).

Units in the files are human ones (grams, whole points); the loader converts them to the integer units
the database keeps (milligrams CO2e, the point currency's smallest unit) and refuses values that would
need rounding, so the file and the database always agree exactly.
"""

from __future__ import annotations

import enum
import hashlib
import json
import tomllib
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

SLUG_PATTERN = r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$"
CODE_PATTERN = r"^[a-z][a-z0-9_]*$"
MG_PER_G = 1000


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid. The message names file, key and fix."""


class BehaviorCategory(str, enum.Enum):
    TRAVEL = "TRAVEL"
    CONSUMPTION = "CONSUMPTION"
    LIFE = "LIFE"


class CalculationMethod(str, enum.Enum):
    PER_UNIT = "PER_UNIT"
    PER_EVENT = "PER_EVENT"
    PER_DISTANCE = "PER_DISTANCE"


class SameBehaviorMatch(str, enum.Enum):
    """How two providers' records are recognised as one real-world behaviour (always same account and
    behaviour code; records of one provider are told apart by `externalId` instead).

    TRIP: occurred within `window_minutes` of each other, and line, origin and destination station equal
    wherever both records give them. BILL: same `biller` and `billPeriod` (both records give them).
    DAY: same local day (a day's steps, counted by two apps). REFERENCE: same `reference` (a receipt,
    order or transaction number; both records give it). NONE: never the same (no recognition)."""

    TRIP = "TRIP"
    BILL = "BILL"
    DAY = "DAY"
    REFERENCE = "REFERENCE"
    NONE = "NONE"


class IssuerKind(str, enum.Enum):
    BANK = "BANK"
    CITY_CARD = "CITY_CARD"
    PLATFORM = "PLATFORM"
    DATA_PROVIDER = "DATA_PROVIDER"
    OPERATOR = "OPERATOR"
    PUBLIC_WELFARE = "PUBLIC_WELFARE"


class Role(str, enum.Enum):
    CITY_APP = "CITY_APP"
    PARTNER = "PARTNER"
    TENANT_ADMIN = "TENANT_ADMIN"
    REGULATOR = "REGULATOR"


class RewardKind(str, enum.Enum):
    REWARD = "REWARD"
    DONATION = "DONATION"
    FINANCIAL_SERVICE = "FINANCIAL_SERVICE"


class LimitPeriod(str, enum.Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"
    LIFETIME = "LIFETIME"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class LocalizedText(_Strict):
    """A display text in English and Chinese; `name` fields in the API pick one by Accept-Language."""

    en: Annotated[str, Field(min_length=1, max_length=200)]
    zh: Annotated[str, Field(min_length=1, max_length=200)]


def _whole_milligrams(value: Decimal, what: str) -> int:
    milligrams = value * MG_PER_G
    if milligrams != milligrams.to_integral_value():
        raise ValueError(f"{what} {value} g is not a whole number of milligrams; use at most 3 decimals")
    return int(milligrams)


Grams = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=3)]


class PointUnitConfig(_Strict):
    """The city's point currency. `grams_per_point`: grams CO2e that earn one whole point."""

    name: LocalizedText
    singular: LocalizedText
    decimals: Annotated[int, Field(ge=0, le=4)] = 0
    grams_per_point: Annotated[int, Field(gt=0, le=1_000_000)]
    note: str | None = None

    @model_validator(mode="after")
    def _whole_milligrams_per_minor_unit(self) -> PointUnitConfig:
        if (self.grams_per_point * MG_PER_G) % (10 ** self.decimals):
            raise ValueError("`grams_per_point` with these `decimals` gives a smallest point unit that is not a "
                             "whole number of milligrams; use fewer decimals")
        return self


class IssuerConfig(_Strict):
    slug: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    kind: IssuerKind
    name: LocalizedText
    description: str | None = None


class ClientConfig(_Strict):
    """An API client of this city. Partners act for one issuer of the city (`issuer`)."""

    slug: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    role: Role
    name: LocalizedText
    issuer: str | None = None
    # Production city mini-programs: only trusted documents by id, never free-form query text.
    trusted_documents_only: bool = False

    @model_validator(mode="after")
    def _partner_has_issuer(self) -> ClientConfig:
        if self.role is Role.REGULATOR:
            raise ValueError("a REGULATOR client reads across cities: declare it in config/platform.toml")
        if self.role is Role.PARTNER and not self.issuer:
            raise ValueError("a PARTNER client must name the issuer it acts for (key `issuer`)")
        if self.role is not Role.PARTNER and self.issuer:
            raise ValueError("only PARTNER clients act for an issuer; remove key `issuer`")
        return self


class SameBehaviorConfig(_Strict):
    """A rule's recognition of one behaviour reported by two providers (`SameBehaviorMatch`)."""

    match: SameBehaviorMatch
    window_minutes: Annotated[int, Field(ge=1, le=1440)] | None = None

    @model_validator(mode="after")
    def _window_for_trips(self) -> SameBehaviorConfig:
        if (self.match is SameBehaviorMatch.TRIP) != (self.window_minutes is not None):
            raise ValueError("`window_minutes` is required for TRIP and only for TRIP")
        return self


class BehaviorConfig(_Strict):
    """One behaviour rule. Factors are grams CO2e; the loader keeps milligrams.

    PER_UNIT: `factor_g` per unit (e.g. per step). PER_EVENT: `factor_g` per event (ride, payment).
    PER_DISTANCE: (`baseline_g_per_km` - `mode_g_per_km`) per km, the methodology's
    reduction = baseline emissions - project emissions.
    """

    code: Annotated[str, Field(pattern=CODE_PATTERN, max_length=63)]
    name: LocalizedText
    category: BehaviorCategory
    method: CalculationMethod
    unit: Annotated[str, Field(min_length=1, max_length=32)]
    factor_g: Grams | None = None
    baseline_g_per_km: Grams | None = None
    mode_g_per_km: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=3)] | None = None
    cap_g_per_day: Grams | None = None
    cap_g_per_month: Grams | None = None
    cap_g_per_event: Grams | None = None
    same_behavior: SameBehaviorConfig
    source: Annotated[str, Field(min_length=3)]

    @model_validator(mode="after")
    def _factors_match_method(self) -> BehaviorConfig:
        if self.method is CalculationMethod.PER_DISTANCE:
            if self.baseline_g_per_km is None or self.mode_g_per_km is None:
                raise ValueError("PER_DISTANCE needs `baseline_g_per_km` and `mode_g_per_km`")
            if self.factor_g is not None:
                raise ValueError("PER_DISTANCE takes `baseline_g_per_km` and `mode_g_per_km`, not `factor_g`")
            if self.mode_g_per_km >= self.baseline_g_per_km:
                raise ValueError("`mode_g_per_km` must be below `baseline_g_per_km` (no reduction otherwise)")
        else:
            if self.factor_g is None:
                raise ValueError(f"{self.method.value} needs `factor_g`")
            if self.baseline_g_per_km is not None or self.mode_g_per_km is not None:
                raise ValueError(f"{self.method.value} takes `factor_g`, not per-km factors")
        for key in ("factor_g", "baseline_g_per_km", "mode_g_per_km", "cap_g_per_day", "cap_g_per_month",
                    "cap_g_per_event"):
            value = getattr(self, key)
            if value is not None:
                _whole_milligrams(value, f"`{key}`")
        if self.cap_g_per_day and self.cap_g_per_month and self.cap_g_per_month < self.cap_g_per_day:
            raise ValueError("`cap_g_per_month` is below `cap_g_per_day`")
        return self

    def milligrams(self, key: str) -> int | None:
        value = getattr(self, key)
        return None if value is None else _whole_milligrams(value, key)

    @property
    def factor_mg(self) -> int:
        """Milligrams per unit or event, or per km for PER_DISTANCE (baseline minus mode)."""
        if self.method is CalculationMethod.PER_DISTANCE:
            return _whole_milligrams(self.baseline_g_per_km - self.mode_g_per_km, "per-km reduction")
        return _whole_milligrams(self.factor_g, "factor_g")


class EligibilityConfig(_Strict):
    bank_linked_only: bool = False
    min_contribution_g: Annotated[int, Field(ge=0)] = 0


class RewardConfig(_Strict):
    """A catalogue item. `cost` is in whole points (decimals allowed up to the unit's `decimals`);
    no `stock` means unlimited."""

    code: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    kind: RewardKind
    name: LocalizedText
    description: LocalizedText | None = None
    cost: Annotated[Decimal, Field(ge=0, max_digits=18)]
    stock: Annotated[int, Field(ge=0)] | None = None
    per_account_limit: Annotated[int, Field(gt=0)] | None = None
    limit_period: LimitPeriod = LimitPeriod.LIFETIME
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    sponsor: str
    cancellation_window_hours: Annotated[int, Field(ge=0, le=24 * 365)] = 0
    eligibility: EligibilityConfig = EligibilityConfig()

    @field_validator("valid_from", "valid_to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the time with an offset, e.g. 2026-01-01T00:00:00+08:00")
        return value

    @model_validator(mode="after")
    def _window(self) -> RewardConfig:
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("`valid_to` must be after `valid_from`")
        return self


class MarketConfig(_Strict):
    """What a city does with its market lots' sale proceeds: `proceeds_share_percent` of each sale's
    price goes back to the lot's contributors as points, pro rata to their pooled reduction, at
    `points_per_yuan` (0 or no section: nothing goes back)."""

    proceeds_share_percent: Annotated[int, Field(ge=0, le=100)] = 0
    points_per_yuan: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4)] | None = None

    @model_validator(mode="after")
    def _rate_when_shared(self) -> MarketConfig:
        if self.proceeds_share_percent and self.points_per_yuan is None:
            raise ValueError("`points_per_yuan` is required when proceeds are shared")
        return self


class CityConfig(_Strict):
    """One city (tenant): the whole of `config/tenants/<slug>.toml`."""

    slug: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    name: LocalizedText
    timezone: str
    effective_from: datetime
    claim_window_days: Annotated[int, Field(ge=1, le=366)]
    # Points earned on day d expire at the start of day d + N months (local); omitted: never expire.
    point_expiry_months: Annotated[int, Field(ge=1, le=120)] | None = None
    point_unit: PointUnitConfig
    issuers: Annotated[list[IssuerConfig], Field(min_length=1)]
    clients: Annotated[list[ClientConfig], Field(min_length=1)]
    behaviors: Annotated[list[BehaviorConfig], Field(min_length=1)]
    rewards: list[RewardConfig] = []
    market: MarketConfig | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Asia/Shanghai'") from None
        return value

    @field_validator("effective_from")
    @classmethod
    def _aware_effective(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the time with an offset, e.g. 2024-01-01T00:00:00+08:00")
        return value

    @model_validator(mode="after")
    def _claims_before_expiry(self) -> CityConfig:
        # A record may arrive up to claim_window_days late; were that as long as the expiry period, it could
        # land in a lot that has already expired, and a refund's range of the lots would shift (ADR 0005).
        if self.point_expiry_months is not None and self.claim_window_days >= 28 * self.point_expiry_months:
            raise ValueError(f"claim_window_days ({self.claim_window_days}) must be shorter than the expiry period "
                             f"(point_expiry_months = {self.point_expiry_months}, at least "
                             f"{28 * self.point_expiry_months} days)")
        return self

    @model_validator(mode="after")
    def _references(self) -> CityConfig:
        _unique(self.issuers, "slug", "issuers")
        _unique(self.clients, "slug", "clients")
        _unique(self.behaviors, "code", "behaviors")
        _unique(self.rewards, "code", "rewards")
        issuers = {issuer.slug for issuer in self.issuers}
        for index, client in enumerate(self.clients):
            if client.issuer is not None and client.issuer not in issuers:
                raise ValueError(f"clients[{index}].issuer {client.issuer!r} is not one of the issuers {sorted(issuers)}")
        for index, reward in enumerate(self.rewards):
            if reward.sponsor not in issuers:
                raise ValueError(f"rewards[{index}].sponsor {reward.sponsor!r} is not one of the issuers {sorted(issuers)}")
            scale = Decimal(10) ** self.point_unit.decimals
            if reward.cost * scale != (reward.cost * scale).to_integral_value():
                raise ValueError(
                    f"rewards[{index}].cost {reward.cost} has more decimals than the point unit allows "
                    f"({self.point_unit.decimals})"
                )
        roles = {client.role for client in self.clients}
        for needed in (Role.CITY_APP, Role.TENANT_ADMIN):
            if needed not in roles:
                raise ValueError(f"clients: a city needs a {needed.value} client (`{self.slug}-...`)")
        return self

    def points_minor(self, whole: Decimal) -> int:
        """Whole points as given in the file -> the currency's smallest unit (exact, checked above)."""
        return int(whole * (Decimal(10) ** self.point_unit.decimals))

    def content_hash(self) -> str:
        """Stable hash of what a configuration version holds: an unchanged file publishes no new version."""
        return versioned_hash(self.model_dump(mode="json"))


# Parts of a city's file that are not configuration versions: issuers, catalogue items and clients are
# current-state entities, refreshed in place on every load (ADR 0003, 0007), and `effective_from` is
# when a version starts, not what it says. A change to these alone publishes no version: a version
# made from the file would also carry the file's rules and unit back over those an administrator
# published through the API. Migration 0021 repeats this list (it cannot import the app): keep both.
NOT_VERSIONED = frozenset({"effective_from", "issuers", "clients", "rewards"})


def versioned_hash(document: dict[str, Any]) -> str:
    """SHA-256 of a city document (`CityConfig.model_dump(mode="json")`, or a version's stored
    `document`) without its `NOT_VERSIONED` parts: keys sorted, UTF-8."""
    versioned = {key: value for key, value in document.items() if key not in NOT_VERSIONED}
    return hashlib.sha256(json.dumps(versioned, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _unique(items: list[Any], key: str, where: str) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        value = getattr(item, key)
        if value in seen:
            raise ValueError(f"{where}[{index}].{key} {value!r} appears twice")
        seen.add(value)


class PlatformClientConfig(_Strict):
    slug: Annotated[str, Field(pattern=SLUG_PATTERN, max_length=63)]
    role: Role
    name: LocalizedText

    @field_validator("role")
    @classmethod
    def _regulator_only(cls, value: Role) -> Role:
        if value is not Role.REGULATOR:
            raise ValueError("only REGULATOR clients are platform-wide; declare city clients in the city's file")
        return value


class PlatformConfig(_Strict):
    """`config/platform.toml`: clients that are not bound to one city (regulators)."""

    clients: list[PlatformClientConfig] = []


def _format_validation_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid configuration ({error.error_count()} problem(s)); fix the file and load again:"]
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"]
        if problem["type"] == "missing":
            message = "required key is missing"
        elif problem["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the configuration reference in README.md)"
        lines.append(f"  - key `{location}`: {message}")
    return "\n".join(lines)


def parse_city_file(path: Path) -> CityConfig:
    """Read and validate one city file; raises ConfigError naming the file and key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the file ({error.strerror})") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    try:
        city = CityConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(path, error)) from error
    if city.slug != path.stem:
        raise ConfigError(f"{path}: key `slug` is {city.slug!r} but the file is named {path.name!r}; "
                          f"rename the file to {city.slug}.toml or change the slug")
    return city


def parse_platform_file(path: Path) -> PlatformConfig:
    if not path.exists():
        return PlatformConfig()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return PlatformConfig.model_validate(raw)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the file ({error.strerror})") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from error
    except ValidationError as error:
        raise ConfigError(_format_validation_error(path, error)) from error


def load_city_files(config_dir: Path) -> list[CityConfig]:
    """Validate every `tenants/*.toml` under `config_dir`; all or nothing.

    Also checks what only the whole set can show: client slugs are unique across cities and the
    platform file, so a token's client names exactly one tenant and role.
    """
    tenants_dir = config_dir / "tenants"
    if not tenants_dir.is_dir():
        raise ConfigError(f"{tenants_dir}: no such directory; CARBON_CONFIG_DIR must contain tenants/<slug>.toml")
    files = sorted(tenants_dir.glob("*.toml"))
    if not files:
        raise ConfigError(f"{tenants_dir}: no city files (*.toml) found")
    problems: list[str] = []
    cities: list[CityConfig] = []
    for path in files:
        try:
            cities.append(parse_city_file(path))
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("\n".join(problems))
    owners: dict[str, str] = {}
    for city in cities:
        for client in city.clients:
            if client.slug in owners:
                raise ConfigError(
                    f"{tenants_dir / (city.slug + '.toml')}: key `clients.slug` {client.slug!r} is already "
                    f"declared by {owners[client.slug]}; client slugs must be unique across cities"
                )
            owners[client.slug] = f"{city.slug}.toml"
    for client in parse_platform_file(config_dir / "platform.toml").clients:
        if client.slug in owners:
            raise ConfigError(f"{config_dir / 'platform.toml'}: client {client.slug!r} is also declared by "
                              f"{owners[client.slug]}")
    return cities


