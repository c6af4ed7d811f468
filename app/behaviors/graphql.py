"""GraphQL of behaviour ingestion: `recordBehaviors` for partner clients."""

from __future__ import annotations

import enum
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.auth.permissions import PARTNER, TENANT_ADMIN
from app.behaviors import ingestion, repository, reversal
from app.graphql.context import Context
from app.graphql.ids import to_global_id, try_global_id
from app.graphql.pagination import TIME_KEY, CursorScope, PageInfo, encode_cursor, page_request
from app.graphql.pagination import page_info as page_info_of
from app.tenants.graphql import grams


@strawberry.enum(description="CREDITED in full; CAPPED (partly or fully, reductionGrams is what was credited); "
                             "DUPLICATE (seen before from this provider: the first outcome, nothing changed); "
                             "REJECTED (see `code`).")
class BehaviorRecordStatus(enum.Enum):
    CREDITED = "CREDITED"
    CAPPED = "CAPPED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"


@strawberry.enum(description="Why a record was rejected. A rejected record changes nothing and does not use up "
                             "its externalId: fix the cause and send it again.")
class BehaviorRejectionCode(enum.Enum):
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    CONSENT_MISSING = "CONSENT_MISSING"
    UNKNOWN_BEHAVIOR = "UNKNOWN_BEHAVIOR"
    OUTSIDE_CLAIM_WINDOW = "OUTSIDE_CLAIM_WINDOW"
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"
    INVALID_EXTERNAL_ID = "INVALID_EXTERNAL_ID"
    DUPLICATE_ACROSS_PROVIDERS = strawberry.enum_value(
        "DUPLICATE_ACROSS_PROVIDERS", description="The same behaviour (as the rule recognises it) was already "
                                                  "credited from another provider; nothing is credited.")


@strawberry.enum
class RecordBehaviorsErrorCode(enum.Enum):
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    PROVIDER_UNKNOWN = "PROVIDER_UNKNOWN"


@strawberry.input(description="Optional evidence, kept with the record (no personal data, please).")
class BehaviorEvidenceInput:
    reference: str | None = None
    line: str | None = None
    origin_station: str | None = None
    destination_station: str | None = None
    biller: str | None = None
    bill_period: str | None = None


@strawberry.input
class BehaviorRecordInput:
    account_id: strawberry.ID
    behavior: str = strawberry.field(description="Behaviour code of the city's rules, e.g. `walking`.")
    quantity: Decimal = strawberry.field(description="Steps, rides, payments (whole numbers) or km (up to 3 decimals).")
    occurred_at: datetime = strawberry.field(description="ISO 8601 with a UTC offset.")
    external_id: str = strawberry.field(description="The provider's id for the record: the idempotency key.")
    evidence: BehaviorEvidenceInput | None = None


@strawberry.input
class RecordBehaviorsInput:
    records: list[BehaviorRecordInput] = strawberry.field(description=f"At most {ingestion.MAX_BATCH} records.")


@strawberry.type
class BehaviorRecordResult:
    """Plain values, computed once: a batch answers 1,000 of these, so no per-field resolvers."""

    external_id: str
    status: BehaviorRecordStatus
    code: BehaviorRejectionCode | None
    reason: str | None
    reduction_grams: Decimal = strawberry.field(description="Grams CO2e credited (for DUPLICATE: the first time).")
    points: Decimal = strawberry.field(description="Whole points credited.")
    record_id: strawberry.ID | None = strawberry.field(description="Id of the accepted record; null for rejections.")


@strawberry.type
class RecordBehaviorsError:
    code: RecordBehaviorsErrorCode
    field: list[str] | None
    message: str


@strawberry.type
class RecordBehaviorsPayload:
    results: list[BehaviorRecordResult] = strawberry.field(default_factory=list,
                                                           description="One per input record, in input order.")
    user_errors: list[RecordBehaviorsError] = strawberry.field(default_factory=list)


def _evidence(value: BehaviorEvidenceInput | None) -> dict[str, str] | None:
    if value is None:
        return None
    fields = {key: getattr(value, key) for key in ("reference", "line", "origin_station", "destination_station",
                                                   "biller", "bill_period")}
    return {key: item[:200] for key, item in fields.items() if item} or None


@strawberry.type
class BehaviorMutations:
    @strawberry.mutation(description="Submit behaviour records for consenting accounts (the caller is the provider).",
                         permission_classes=[PARTNER])
    async def record_behaviors(self, info: Info[Context, None], input: RecordBehaviorsInput) -> RecordBehaviorsPayload:
        principal = info.context.principal
        if len(input.records) > ingestion.MAX_BATCH:
            return RecordBehaviorsPayload(user_errors=[RecordBehaviorsError(
                code=RecordBehaviorsErrorCode.BATCH_TOO_LARGE, field=["input", "records"],
                message=f"at most {ingestion.MAX_BATCH} records per call; got {len(input.records)}")])
        commands = [
            ingestion.RecordCommand(
                account_id=try_global_id(record.account_id, "Account"), behavior=record.behavior,
                quantity=record.quantity, occurred_at=record.occurred_at, external_id=record.external_id,
                evidence=_evidence(record.evidence))
            for record in input.records
        ]
        try:
            outcomes = await ingestion.record_behaviors(info.context.session, principal.tenant_id,
                                                        principal.client.issuer_slug, commands, now=info.context.now)
        except ingestion.IngestionError as error:
            return RecordBehaviorsPayload(user_errors=[RecordBehaviorsError(
                code=RecordBehaviorsErrorCode(error.code), field=["input", "records"], message=str(error))])
        tenant = await info.context.loaders.tenant_by_id.load(principal.tenant_id)
        decimals = tenant.unit_decimals
        return RecordBehaviorsPayload(results=[
            BehaviorRecordResult(
                external_id=outcome.external_id, status=_STATUS[outcome.status],
                code=BehaviorRejectionCode(outcome.code) if outcome.code else None, reason=outcome.reason,
                reduction_grams=grams(outcome.reduction_mg), points=Decimal(outcome.points).scaleb(-decimals),
                record_id=(strawberry.ID(to_global_id("BehaviorRecord", outcome.record_id))
                           if outcome.record_id else None))
            for outcome in outcomes
        ])


_STATUS = {status.value: status for status in BehaviorRecordStatus}


ReversalErrorCodeEnum = strawberry.enum(reversal.ReversalErrorCode, name="ReversalErrorCode")


@strawberry.type
class ReversalUserError:
    code: ReversalErrorCodeEnum
    field: list[str] | None
    message: str


@strawberry.input
class ReverseBehaviorRecordInput:
    record_id: strawberry.ID = strawberry.field(description="`recordId` of an accepted record (results, activity).")
    reason: str


@strawberry.type
class ReverseBehaviorRecordPayload:
    reduction_grams: Decimal | None = strawberry.field(default=None, description="Contribution taken back.")
    points: Decimal | None = strawberry.field(default=None, description="Points taken back.")
    shortfall_points: Decimal | None = strawberry.field(
        default=None, description="Points already spent that could not be taken back (the balance stays >= 0).")
    expired_points: Decimal | None = strawberry.field(
        default=None, description="Points of the record that had already expired: given back by the city's expired "
                                  "account, not taken from the balance (without the record they would not have "
                                  "expired).")
    user_errors: list[ReversalUserError] = strawberry.field(default_factory=list)


@strawberry.type
class ReversalMutations:
    @strawberry.mutation(description="Reverse a credited record (e.g. found fraudulent) with reversing postings.",
                         permission_classes=[TENANT_ADMIN])
    async def reverse_behavior_record(self, info: Info[Context, None],
                                      input: ReverseBehaviorRecordInput) -> ReverseBehaviorRecordPayload:
        principal = info.context.principal
        try:
            async with info.context.session.begin_nested():
                result = await reversal.reverse_record(
                    info.context.session, principal.tenant_id, try_global_id(input.record_id, "BehaviorRecord"),
                    input.reason, principal.client.slug, info.context.now)
        except reversal.ReversalError as error:
            return ReverseBehaviorRecordPayload(user_errors=[ReversalUserError(
                code=error.code, field=error.field, message=error.message)])
        tenant = await info.context.loaders.tenant_by_id.load(principal.tenant_id)
        return ReverseBehaviorRecordPayload(
            reduction_grams=grams(result.reduction_mg),
            points=Decimal(result.points).scaleb(-tenant.unit_decimals),
            shortfall_points=Decimal(result.shortfall_points).scaleb(-tenant.unit_decimals),
            expired_points=Decimal(result.expired_points).scaleb(-tenant.unit_decimals))


@strawberry.type(description="What one provider reported about a behaviour.")
class BehaviorReport:
    provider: str = strawberry.field(description="The reporting issuer's slug.")
    external_id: str
    occurred_at: datetime
    received_at: datetime
    evidence: JSON | None = strawberry.field(description="The evidence as reported (reference, line, stations, "
                                                         "biller, bill period).")


@strawberry.type(description="A report rejected as DUPLICATE_ACROSS_PROVIDERS, linked to the record credited first "
                             "for the same behaviour.")
class CrossProviderDuplicate:
    account_id: strawberry.ID
    behavior: str
    rejected: BehaviorReport
    credited: BehaviorReport
    credited_record_id: strawberry.ID
    reduction_grams: Decimal = strawberry.field(description="What the credited record earned (the rejected: nothing).")


@strawberry.type
class CrossProviderDuplicateEdge:
    cursor: str
    node: CrossProviderDuplicate


@strawberry.type
class CrossProviderDuplicateConnection:
    edges: list[CrossProviderDuplicateEdge]
    page_info: PageInfo


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@strawberry.type
class BehaviorAdminQuery:
    @strawberry.field(description="Reports rejected because another provider's record of the same behaviour was "
                                  "credited first, each with that record; newest first.",
                      permission_classes=[TENANT_ADMIN])
    async def cross_provider_duplicates(self, info: Info[Context, None], first: int | None = None,
                                        after: str | None = None) -> CrossProviderDuplicateConnection:
        scope = CursorScope("crossProviderDuplicates", info.context.principal.tenant_id)
        page = page_request(first, after, None, None, scope=scope, key=TIME_KEY)
        rows = await repository.cross_provider_duplicates(info.context.session, info.context.principal.tenant_id,
                                                          page.size + 1, page.after)
        edges = [CrossProviderDuplicateEdge(cursor=encode_cursor(row["received_at"], row["id"], scope=scope), node=CrossProviderDuplicate(
            account_id=strawberry.ID(to_global_id("Account", row["account_id"])), behavior=row["behavior_code"],
            rejected=BehaviorReport(provider=row["provider"], external_id=row["external_id"],
                                    occurred_at=row["occurred_at"], received_at=row["received_at"],
                                    evidence=_json(row["evidence"])),
            credited=BehaviorReport(provider=row["record_provider"], external_id=row["record_external_id"],
                                    occurred_at=row["record_occurred_at"], received_at=row["record_received_at"],
                                    evidence=_json(row["record_evidence"])),
            credited_record_id=strawberry.ID(to_global_id("BehaviorRecord", row["record_id"])),
            reduction_grams=grams(row["reduction_mg"])))
            for row in rows[: page.size]]
        return CrossProviderDuplicateConnection(edges=edges,
                                                page_info=page_info_of(len(rows), page, [e.cursor for e in edges]))
