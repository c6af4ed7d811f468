"""Tenant administration over GraphQL (TENANT_ADMIN, own city only): the catalogue and the audit log."""

from __future__ import annotations

import enum
import json
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation, localcontext

import strawberry
from sqlalchemy import text
from strawberry.scalars import JSON
from strawberry.types import Info

from app.auth.permissions import TENANT_ADMIN
from app.graphql.context import Context
from app.graphql.ids import to_global_id, try_global_id
from app.graphql.pagination import TIME_KEY, CursorScope, PageInfo, encode_cursor, page_request
from app.graphql.pagination import page_info as page_info_of
from app.tenants import catalogue
from app.tenants.catalogue import CatalogueCode, CatalogueError, CatalogueRefused, ItemChanges
from app.tenants import service
from app.tenants.graphql import (BehaviorCategory, CalculationMethod, ConfigVersion, LimitPeriod, Reward, RewardKind,
                                 SameBehaviorMatch)

CatalogueErrorCode = strawberry.enum(CatalogueCode, name="CatalogueErrorCode")


@strawberry.type(description="A change to the catalogue that was refused; nothing was written.")
class CatalogueUserError:
    code: CatalogueErrorCode
    field: list[str] | None
    message: str


@strawberry.type
class RewardPayload:
    reward: Reward | None
    user_errors: list[CatalogueUserError]


@strawberry.input(description="Text in English and Chinese.")
class LocalizedTextInput:
    en: str
    zh: str


@strawberry.input(description="Fields of a catalogue item. On update, an omitted field keeps its value; "
                              "`perAccountLimit`, `validFrom` and `validTo` set to null are removed.")
class RewardFieldsInput:
    name: LocalizedTextInput | None = None
    description: LocalizedTextInput | None = None
    cost: str | None = strawberry.field(default=None, description="Points per unit, in the city's unit "
                                        "(e.g. \"5\" or \"2.5\" where the unit has decimals).")
    per_account_limit: int | None = strawberry.UNSET
    limit_period: LimitPeriod | None = None
    valid_from: datetime | None = strawberry.UNSET
    valid_to: datetime | None = strawberry.UNSET
    sponsor: str | None = strawberry.field(default=None, description="Slug of the sponsoring issuer of the city.")
    cancellation_window_hours: int | None = None
    bank_linked_only: bool | None = None
    min_contribution_grams: str | None = None


@strawberry.input
class CreateRewardInput:
    code: str
    kind: RewardKind
    total_stock: int | None = strawberry.field(default=None, description="Null: unlimited.")
    fields: RewardFieldsInput


@strawberry.input
class UpdateRewardInput:
    id: strawberry.ID
    fields: RewardFieldsInput


@strawberry.input
class SetRewardStockInput:
    id: strawberry.ID
    total_stock: int | None = strawberry.field(description=(
        "Null: unlimited. Never below the units handed out. Units handed out while a reward or financial "
        "service was unlimited are not counted (a stock of N on one means N more units); a donation project "
        "counts every gift (a stock of N means N gifts in all)."))


@strawberry.input
class RetireRewardInput:
    id: strawberry.ID


@strawberry.enum
class AuditAction(enum.Enum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    SET_STOCK = "SET_STOCK"
    RETIRE = "RETIRE"
    PUBLISH_CONFIGURATION = "PUBLISH_CONFIGURATION"


@strawberry.type(description="One change an administrator made: who, when, what, the values before and after.")
class AuditEvent:
    at: datetime
    by_client: str
    action: AuditAction
    target_type: str
    target_id: strawberry.ID
    changes: JSON = strawberry.field(description="Field -> {from, to} for every field the change altered.")


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo


def _error(refused: CatalogueError | CatalogueRefused) -> RewardPayload:
    """Every refused part of the change, each with its path in the mutation's arguments."""
    errors = refused.errors if isinstance(refused, CatalogueRefused) else [refused]
    return RewardPayload(reward=None, user_errors=[CatalogueUserError(
        code=error.code, field=["input", *error.field], message=error.message) for error in errors])


_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def _amount(value: str, decimals: int, field: str, scale: int = 1) -> int:
    """A plain decimal in ASCII digits ("5", "2.5"): Python's Decimal also takes "1e3", "1_000", "+5",
    " 5 " and other scripts' digits, which a catalogue amount must not be. `field` is the input field."""
    try:
        if len(value) > 40 or not _PLAIN_DECIMAL.fullmatch(value):
            raise InvalidOperation
        with localcontext() as context:
            context.traps[InvalidOperation] = True
            amount = Decimal(value)
            minor = amount.scaleb(decimals) * scale
            if not amount.is_finite() or minor != minor.to_integral_value() or abs(minor) > 10**15:
                raise InvalidOperation
    except (ArithmeticError, ValueError):  # InvalidOperation, Overflow (e.g. "1E+1000000000")
        precision = "a whole number" if decimals == 0 else f"with at most {decimals} decimals"
        raise CatalogueError(CatalogueCode.INVALID_COST, ["fields", field],
                             f"{field} must be a plain number in digits, 0 or more, below 10^15 in the smallest "
                             f"unit, {precision}") from None
    return int(minor)


async def _changes(info: Info[Context, None], fields: RewardFieldsInput) -> ItemChanges:
    """The input's changes; amounts that do not read are kept in `refused`, to be reported with
    everything else wrong in the change."""
    tenant = await info.context.loaders.tenant_by_id.load(info.context.principal.tenant_id)
    refused: list[CatalogueError] = []

    def amount(value: str | None, decimals: int, field: str) -> int | None:
        try:
            return None if value is None else _amount(value, decimals, field)
        except CatalogueError as error:
            refused.append(error)
            return None

    changes = ItemChanges(
        name_en=fields.name.en if fields.name else None, name_zh=fields.name.zh if fields.name else None,
        description_en=fields.description.en if fields.description else None,
        description_zh=fields.description.zh if fields.description else None,
        cost_points=amount(fields.cost, tenant.unit_decimals, "cost"),
        limit_period=fields.limit_period.value if fields.limit_period else None,
        sponsor=fields.sponsor, cancellation_window_hours=fields.cancellation_window_hours,
        bank_linked_only=fields.bank_linked_only,
        min_contribution_mg=amount(fields.min_contribution_grams, 3, "minContributionGrams"),
        refused=refused,
    )
    for name in ("per_account_limit", "valid_from", "valid_to"):
        value = getattr(fields, name)
        if value is None:
            setattr(changes, f"clear_{name}", True)
        elif value is not strawberry.UNSET:
            setattr(changes, name, value)
    return changes


@strawberry.type
class CatalogueMutations:
    @strawberry.mutation(description="Add an item to the city's catalogue (managed through the API from then "
                                     "on: the city's file never changes it). Audited.",
                         permission_classes=[TENANT_ADMIN])
    async def create_reward(self, info: Info[Context, None], input: CreateRewardInput) -> RewardPayload:
        principal = info.context.principal
        try:
            row = await catalogue.create_item(
                info.context.session, principal.tenant_id, principal.client.slug, code=input.code,
                kind=input.kind.value, stock_total=input.total_stock, changes=await _changes(info, input.fields))
        except (CatalogueError, CatalogueRefused) as refused:
            return _error(refused)
        return RewardPayload(reward=Reward(_row=row), user_errors=[])

    @strawberry.mutation(description="Edit an item of the city's catalogue; visible at once. Audited.",
                         permission_classes=[TENANT_ADMIN])
    async def update_reward(self, info: Info[Context, None], input: UpdateRewardInput) -> RewardPayload:
        principal = info.context.principal
        try:
            row = await catalogue.update_item(info.context.session, principal.tenant_id, principal.client.slug,
                                              try_global_id(input.id, "Reward"), await _changes(info, input.fields))
        except (CatalogueError, CatalogueRefused) as refused:
            return _error(refused)
        return RewardPayload(reward=Reward(_row=row), user_errors=[])

    @strawberry.mutation(description="Set an item's total stock (null: unlimited); never below the units "
                                     "already handed out. Audited.", permission_classes=[TENANT_ADMIN])
    async def set_reward_stock(self, info: Info[Context, None], input: SetRewardStockInput) -> RewardPayload:
        principal = info.context.principal
        try:
            row = await catalogue.set_stock(info.context.session, principal.tenant_id, principal.client.slug,
                                            try_global_id(input.id, "Reward"), input.total_stock)
        except (CatalogueError, CatalogueRefused) as refused:
            return _error(refused)
        return RewardPayload(reward=Reward(_row=row), user_errors=[])

    @strawberry.mutation(description="Retire an item: it leaves the catalogue; redemptions already made stay "
                                     "(and can still be cancelled within their window). Audited.",
                         permission_classes=[TENANT_ADMIN])
    async def retire_reward(self, info: Info[Context, None], input: RetireRewardInput) -> RewardPayload:
        principal = info.context.principal
        try:
            row = await catalogue.retire_item(info.context.session, principal.tenant_id, principal.client.slug,
                                              try_global_id(input.id, "Reward"))
        except (CatalogueError, CatalogueRefused) as refused:
            return _error(refused)
        return RewardPayload(reward=Reward(_row=row), user_errors=[])


@strawberry.input(description="One behaviour rule, as in a city file's [[behaviors]] (grams as decimal strings).")
class BehaviorRuleInput:
    code: str
    name: LocalizedTextInput
    category: BehaviorCategory
    method: CalculationMethod
    unit: str
    source: str = strawberry.field(description="Where the factor comes from (methodology, standard).")
    same_behavior: SameBehaviorInput = strawberry.field(description="How one behaviour reported by two providers is "
                                                                    "recognised, so that it is credited once.")
    factor_grams: str | None = None
    baseline_grams_per_km: str | None = None
    mode_grams_per_km: str | None = None
    cap_grams_per_day: str | None = None
    cap_grams_per_month: str | None = None
    cap_grams_per_event: str | None = None


@strawberry.input
class SameBehaviorInput:
    match: SameBehaviorMatch
    window_minutes: int | None = strawberry.field(default=None, description="Required for TRIP, only for TRIP.")


@strawberry.input
class PublishConfigurationInput:
    effective_from: datetime = strawberry.field(description="Not in the past, and after every version already "
                                                "published: configuration is never changed retroactively.")
    point_unit_name: LocalizedTextInput | None = strawberry.field(default=None, description="Rename the points.")
    point_unit_singular: LocalizedTextInput | None = None
    rules: list[BehaviorRuleInput] | None = strawberry.field(
        default=None, description="The complete rule set of the new version (omitted: the current rules).")


@strawberry.enum
class PublicationErrorCode(enum.Enum):
    NOT_CONFIGURED = "NOT_CONFIGURED"
    RETROACTIVE = "RETROACTIVE"
    NOT_AFTER_LATEST = "NOT_AFTER_LATEST"
    TOO_FAR_AHEAD = "TOO_FAR_AHEAD"
    INVALID_CONFIGURATION = "INVALID_CONFIGURATION"
    NOTHING_CHANGED = "NOTHING_CHANGED"


@strawberry.type
class PublicationUserError:
    code: PublicationErrorCode
    field: list[str] | None
    message: str


@strawberry.type
class PublishConfigurationPayload:
    version: ConfigVersion | None
    user_errors: list[PublicationUserError]


def _rule_document(rule: BehaviorRuleInput) -> dict:
    document = {"code": rule.code, "name": {"en": rule.name.en, "zh": rule.name.zh}, "category": rule.category.value,
                "method": rule.method.value, "unit": rule.unit, "source": rule.source,
                "same_behavior": {"match": rule.same_behavior.match.value}
                | ({"window_minutes": rule.same_behavior.window_minutes}
                   if rule.same_behavior.window_minutes is not None else {})}
    for name in ("factor_grams", "baseline_grams_per_km", "mode_grams_per_km", "cap_grams_per_day",
                 "cap_grams_per_month", "cap_grams_per_event"):
        value = getattr(rule, name)
        if value is not None:
            document[name.replace("_grams", "_g")] = value
    return document


@strawberry.type
class ConfigurationMutations:
    @strawberry.mutation(description="Publish a new configuration version of the city: a renamed point unit and/or "
                                     "a new rule set, effective from a time not in the past and after every "
                                     "version already published. Validated like a city file; audited.",
                         permission_classes=[TENANT_ADMIN])
    async def publish_configuration(self, info: Info[Context, None],
                                    input: PublishConfigurationInput) -> PublishConfigurationPayload:
        principal = info.context.principal
        try:
            version = await service.publish_from_api(
                info.context.session, principal.tenant_id, principal.client.slug, now=info.context.now,
                effective_from=input.effective_from,
                unit_name={"en": input.point_unit_name.en, "zh": input.point_unit_name.zh}
                if input.point_unit_name else None,
                unit_singular={"en": input.point_unit_singular.en, "zh": input.point_unit_singular.zh}
                if input.point_unit_singular else None,
                behaviors=[_rule_document(rule) for rule in input.rules] if input.rules is not None else None)
        except service.PublicationRefused as refused:
            return PublishConfigurationPayload(version=None, user_errors=[PublicationUserError(
                code=PublicationErrorCode(error.code), field=["input", *error.field], message=error.message)
                for error in refused.errors])
        return PublishConfigurationPayload(
            version=ConfigVersion(version=version.version, effective_from=version.effective_from), user_errors=[])


@strawberry.type
class AdminQuery:
    @strawberry.field(description="The city's administration audit log, newest first.",
                      permission_classes=[TENANT_ADMIN])
    async def audit_log(self, info: Info[Context, None], first: int | None = None,
                        after: str | None = None) -> AuditEventConnection:
        scope = CursorScope("auditLog", info.context.principal.tenant_id)
        page = page_request(first, after, None, None, scope=scope, key=TIME_KEY)
        condition = "AND (at, id) < (:after_at, :after_id)" if page.after is not None else ""
        params: dict = {"t": info.context.principal.tenant_id, "limit": page.size + 1}
        if page.after is not None:
            params["after_at"], params["after_id"] = page.after
        rows = (await info.context.session.execute(text(
            f"SELECT * FROM admin_audit_events WHERE tenant_id = :t {condition} ORDER BY at DESC, id DESC "
            "LIMIT :limit"), params)).mappings().all()
        edges = [AuditEventEdge(cursor=encode_cursor(row["at"], row["id"], scope=scope), node=AuditEvent(
            at=row["at"], by_client=row["by_client"], action=AuditAction(row["action"]),
            target_type=row["target_type"], target_id=strawberry.ID(to_global_id(row["target_type"], row["target_id"])),
            changes=row["changes"] if isinstance(row["changes"], dict) else json.loads(row["changes"])))
            for row in rows[: page.size]]
        return AuditEventConnection(edges=edges, page_info=page_info_of(len(rows), page, [e.cursor for e in edges]))

