"""Market lots in the API: operators issue and manage their city's lots; regulators read every city's;
the platform's public key verifies retirement certificates offline (ADR 0011).

A lot's figures about its contributors — how many records, which behaviours, the exact grams pooled,
withheld, reversed and owed, the points their sale paid — are null for a regulator when fewer accounts
than the minimum group size contributed (the small-group rule, `app.dashboard.suppression`, ADR 0015).
What the market sees is shown whatever the size: the serials (whole kilograms, after a buffer of at
least 5%), their retirement and cancellation, status, venue, buyer and price. The city's operators see
their lots whole, as they see their citizens' records."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import strawberry
from sqlalchemy import text
from strawberry.scalars import JSON
from strawberry.types import Info

from app.auth.permissions import ANY_CLIENT, TENANT_ADMIN, allow
from app.behaviors.rules.calendar import local_date
from app.dashboard.suppression import Figure
from app.graphql.context import Context
from app.graphql.ids import to_global_id, try_global_id
from app.graphql.pagination import TIME_KEY, CursorScope, PageInfo, encode_cursor, page_request
from app.graphql.pagination import page_info as page_info_of
from app.graphql.scalars import Long
from app.market import service
from app.market.service import MarketError, serial_label
from app.settings import get_settings
from app.tenants.config import Role
from app.tenants.graphql import grams

LOT_READERS = allow(Role.TENANT_ADMIN, Role.REGULATOR)


@strawberry.enum
class MarketLotStatus(enum.Enum):
    ISSUED = "ISSUED"
    LISTED = "LISTED"
    SOLD = "SOLD"
    RETIRED = "RETIRED"


MarketErrorCode = strawberry.enum(service.MarketErrorCode, name="MarketErrorCode")


@strawberry.type
class MarketUserError:
    code: MarketErrorCode
    field: list[str]
    message: str


@strawberry.type(description="Pooled reduction of one behaviour under one rule version.")
class LotComponent:
    behavior: str
    config_version: int
    records: Long
    grams: Decimal


@strawberry.type(description="A retirement: its certificate is `document`, signed (`signature`, Ed25519 over the "
                             "canonical JSON: sorted keys, no spaces, UTF-8; base64url) with the platform key "
                             "`keyId` (`signingKey`).")
class RetirementCertificate:
    id: strawberry.ID
    kilograms: Long
    serial_from: str
    serial_to: str
    beneficiary: str
    reason: str
    retired_at: datetime
    document: JSON
    signature: str
    key_id: str


_WITHHELD = " Null for regulators when fewer accounts than the minimum group size contributed."


def _withheld(info: Info[Context, None], row: dict) -> bool:
    """Whether the lot's figures about its contributors are withheld from this reader: a regulator, and
    fewer contributors than the minimum group size."""
    return info.context.principal.is_regulator and Figure.count(row["contributors"]).hidden(
        get_settings().dashboard_min_group_size)


@strawberry.type(description="A market lot as citizens and every dashboard see it: what was pooled and what "
                             "became of its serials (one per kilogram CO2e).")
class MarketLotSummary:
    _row: strawberry.Private[dict]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("MarketLot", self._row["id"]))

    @strawberry.field(description="The city's slug.")
    def city(self) -> str:
        return self._row["slug"]

    @strawberry.field(description="The city's lot number (1, 2, ...).")
    def number(self) -> int:
        return self._row["number"]

    @strawberry.field
    def period_from(self) -> date:
        return self._row["period_from"]

    @strawberry.field
    def period_to(self) -> date:
        return self._row["period_to"]

    @strawberry.field(description="The year the reductions happened.")
    def vintage(self) -> int:
        return self._row["vintage"]

    @strawberry.field
    def status(self) -> MarketLotStatus:
        return MarketLotStatus(self._row["status"])

    @strawberry.field(description="Serials issued: whole kilograms.")
    def serial_kilograms(self) -> Long:
        return Long(self._row["serial_kg"])

    @strawberry.field
    def serial_from(self) -> str:
        return serial_label(self._row["slug"], self._row["vintage"], self._row["serial_start"])

    @strawberry.field
    def serial_to(self) -> str:
        return serial_label(self._row["slug"], self._row["vintage"],
                            self._row["serial_start"] + self._row["serial_kg"] - 1)

    @strawberry.field
    def retired_kilograms(self) -> Long:
        return Long(self._row["retired_kg"])

    @strawberry.field(description="Serials cancelled (from the top of the range) for reversals beyond the buffer.")
    def cancelled_kilograms(self) -> Long:
        return Long(self._row["cancelled_kg"])

    @strawberry.field(description="Every milligram pooled (serials + buffer)." + _WITHHELD)
    def pooled_grams(self, info: Info[Context, None]) -> Decimal | None:
        return None if _withheld(info, self._row) else grams(self._row["pooled_mg"])


@strawberry.type(description="Verified reductions of one city and period pooled into serial-numbered credits: one "
                             "serial per kilogram CO2e. Operators see it whole; regulators too, but for the figures "
                             "about its contributors when they are fewer than the minimum group size.")
class MarketLot(MarketLotSummary):
    @strawberry.field(description="Accounts whose records the lot pools. Null for regulators below the minimum "
                                  "group size.")
    def contributors(self, info: Info[Context, None]) -> Long | None:
        return None if _withheld(info, self._row) else Long(self._row["contributors"])

    @strawberry.field(description="Behaviour records pooled." + _WITHHELD)
    def records(self, info: Info[Context, None]) -> Long | None:
        return None if _withheld(info, self._row) else Long(self._row["records"])

    @strawberry.field(description="Withheld from the serials: answers for records reversed after pooling." + _WITHHELD)
    def buffer_grams(self, info: Info[Context, None]) -> Decimal | None:
        return None if _withheld(info, self._row) else grams(self._row["buffer_mg"])

    @strawberry.field(description="Pooled records reversed since (no longer verified)." + _WITHHELD)
    def reversed_grams(self, info: Info[Context, None]) -> Decimal | None:
        return None if _withheld(info, self._row) else grams(self._row["reversed_mg"])

    @strawberry.field(description="Reversed beyond the buffer and beyond the serials still cancellable." + _WITHHELD)
    def shortfall_grams(self, info: Info[Context, None]) -> Decimal | None:
        return None if _withheld(info, self._row) else grams(self._row["shortfall_mg"])

    @strawberry.field(description="Serials that can still be retired.")
    def available_kilograms(self) -> Long:
        return Long(service.available_kg(self._row))

    @strawberry.field(description="Per behaviour and rule version." + _WITHHELD)
    def composition(self, info: Info[Context, None]) -> list[LotComponent] | None:
        if _withheld(info, self._row):
            return None
        return [LotComponent(behavior=part["behavior"], config_version=part["configVersion"],
                             records=Long(int(part["records"])), grams=grams(int(part["mg"])))
                for part in self._row["composition"]]

    @strawberry.field
    def issued_at(self) -> datetime:
        return self._row["issued_at"]

    @strawberry.field
    def listed_at(self) -> datetime | None:
        return self._row["listed_at"]

    @strawberry.field(description="Where it is listed, e.g. an exchange.")
    def venue(self) -> str | None:
        return self._row["venue"]

    @strawberry.field
    def sold_at(self) -> datetime | None:
        return self._row["sold_at"]

    @strawberry.field
    def buyer(self) -> str | None:
        return self._row["buyer"]

    @strawberry.field(description="The sale price, yuan.")
    def price_yuan(self) -> Decimal | None:
        return None if self._row["price_fen"] is None else Decimal(self._row["price_fen"]).scaleb(-2)

    @strawberry.field(description="Points paid to the lot's contributors from its sale (the city's `[market]` "
                                  "share), in the smallest unit of the city's points." + _WITHHELD)
    def proceeds_points(self, info: Info[Context, None]) -> Long | None:
        return None if _withheld(info, self._row) else Long(self._row["proceeds_points"])

    @strawberry.field(description="Oldest first. The city's operators only: certificates name their beneficiaries. "
                                  "Null, with a FORBIDDEN error at this path, for other readers (a regulator): the "
                                  "rest of the answer stands.",
                      permission_classes=[TENANT_ADMIN])
    async def retirements(self, info: Info[Context, None]) -> list[RetirementCertificate] | None:
        rows = await info.context.loaders.retirements_by_lot.load(self._row["id"])
        return [_certificate(row["id"], row["document"], row["signature"]) for row in rows]


def _certificate(certificate_id: uuid.UUID, document: dict[str, Any], signature: str) -> RetirementCertificate:
    return RetirementCertificate(
        id=strawberry.ID(to_global_id("RetirementCertificate", certificate_id)), kilograms=Long(document["kilograms"]),
        serial_from=document["serialFrom"], serial_to=document["serialTo"], beneficiary=document["beneficiary"],
        reason=document["reason"], retired_at=datetime.fromisoformat(document["retiredAt"]), document=document,
        signature=signature, key_id=document["keyId"])


@strawberry.type
class MarketLotEdge:
    cursor: str
    node: MarketLot


@strawberry.type
class MarketLotConnection:
    edges: list[MarketLotEdge]
    page_info: PageInfo


@strawberry.type(description="The platform's public key: verifies ledger checkpoints and retirement certificates.")
class SigningKey:
    key_id: str
    pem: str = strawberry.field(description="Ed25519, SubjectPublicKeyInfo PEM.")


@strawberry.type
class MarketQuery:
    @strawberry.field(description="Market lots, newest first: an operator its city's, a regulator every city's.",
                      permission_classes=[LOT_READERS])
    async def market_lots(self, info: Info[Context, None], first: int | None = None,
                          after: str | None = None) -> MarketLotConnection:
        scope = CursorScope("marketLots", info.context.principal.tenant_id)  # None: a regulator's, every city
        page = page_request(first, after, None, None, scope=scope, key=TIME_KEY)
        condition = "AND (l.issued_at, l.id) < (:after_at, :after_id)" if page.after is not None else ""
        params: dict[str, Any] = {"limit": page.size + 1}
        if page.after is not None:
            params["after_at"], params["after_id"] = page.after
        rows = (await info.context.session.execute(text(
            f"SELECT {service.LOT_COLUMNS} FROM {service.LOTS} WHERE true {condition} "
            "ORDER BY l.issued_at DESC, l.id DESC LIMIT :limit"), params)).mappings().all()
        edges = [MarketLotEdge(cursor=encode_cursor(row["issued_at"], row["id"], scope=scope), node=MarketLot(_row=dict(row)))
                 for row in rows[: page.size]]
        return MarketLotConnection(edges=edges, page_info=page_info_of(len(rows), page, [e.cursor for e in edges]))

    @strawberry.field(description="The platform's public signing key.", permission_classes=[ANY_CLIENT])
    def signing_key(self, info: Info[Context, None]) -> SigningKey:
        signer = info.context.signer
        assert signer is not None, "the view is built with the platform's signer"
        return SigningKey(key_id=signer.key_id, pem=signer.public_pem())


@strawberry.input
class IssueMarketLotInput:
    tenant: str = strawberry.field(description="The operator's own city's slug.")
    period_from: date = strawberry.field(description="First local date pooled.")
    period_to: date = strawberry.field(description="Last local date pooled: a finished day, same year.")
    idempotency_key: str | None = strawberry.field(
        default=None, description="Recommended: the same key replayed returns the lot it issued (a retry is safe).")


@strawberry.input
class ListMarketLotInput:
    lot_id: strawberry.ID
    venue: str


@strawberry.input
class SellMarketLotInput:
    lot_id: strawberry.ID
    buyer: str
    price_yuan: Decimal


@strawberry.input
class RetireCreditsInput:
    lot_id: strawberry.ID
    kilograms: Long
    beneficiary: str
    reason: str
    idempotency_key: str | None = strawberry.field(
        default=None, description="Recommended: the same key replayed returns the first certificate (a retry is safe).")


@strawberry.type
class MarketLotPayload:
    lot: MarketLot | None = None
    user_errors: list[MarketUserError] = strawberry.field(default_factory=list)


@strawberry.type
class RetireCreditsPayload:
    certificate: RetirementCertificate | None = None
    lot: MarketLot | None = None
    user_errors: list[MarketUserError] = strawberry.field(default_factory=list)


def _refused(error: MarketError) -> list[MarketUserError]:
    return [MarketUserError(code=error.code, field=["input", error.field], message=error.message)]


@strawberry.type
class MarketMutations:
    @strawberry.mutation(description="Pool the city's verified reductions of a period not yet in any lot into a new "
                                     "lot with serial numbers (one per kilogram; a buffer withheld).",
                         permission_classes=[TENANT_ADMIN])
    async def issue_market_lot(self, info: Info[Context, None], input: IssueMarketLotInput) -> MarketLotPayload:
        context = info.context
        tenant = await context.loaders.tenant_by_id.load(context.principal.tenant_id)
        try:
            if tenant is None or input.tenant != tenant.slug:
                raise MarketError(service.MarketErrorCode.LOT_NOT_FOUND, "tenant", "operators issue lots of their own "
                                                                                  "city only")
            async with context.session.begin_nested():
                row = await service.issue_lot(context.session, tenant.id, input.period_from, input.period_to,
                                              context.principal.client.slug, context.now, _today(context, tenant),
                                              input.idempotency_key)
        except MarketError as error:
            return MarketLotPayload(user_errors=_refused(error))
        return MarketLotPayload(lot=MarketLot(_row=row))

    @strawberry.mutation(description="ISSUED → LISTED.", permission_classes=[TENANT_ADMIN])
    async def list_market_lot(self, info: Info[Context, None], input: ListMarketLotInput) -> MarketLotPayload:
        context = info.context
        try:
            row = await service.list_lot(context.session, context.principal.tenant_id, _lot_id(input.lot_id),
                                         input.venue, context.now)
        except MarketError as error:
            return MarketLotPayload(user_errors=_refused(error))
        return MarketLotPayload(lot=MarketLot(_row=row))

    @strawberry.mutation(description="LISTED → SOLD, to a buyer at a price.", permission_classes=[TENANT_ADMIN])
    async def sell_market_lot(self, info: Info[Context, None], input: SellMarketLotInput) -> MarketLotPayload:
        context = info.context
        try:
            row = await service.sell_lot(context.session, context.principal.tenant_id, _lot_id(input.lot_id),
                                         input.buyer, input.price_yuan, context.now)
        except MarketError as error:
            return MarketLotPayload(user_errors=_refused(error))
        return MarketLotPayload(lot=MarketLot(_row=row))

    @strawberry.mutation(description="Retire kilograms of a sold lot for a beneficiary: returns the signed "
                                     "certificate; the lot is RETIRED when every serial is retired or cancelled.",
                         permission_classes=[TENANT_ADMIN])
    async def retire_credits(self, info: Info[Context, None], input: RetireCreditsInput) -> RetireCreditsPayload:
        context = info.context
        assert context.signer is not None, "the view is built with the platform's signer"
        try:
            done = await service.retire(context.session, context.principal.tenant_id, _lot_id(input.lot_id),
                                        int(input.kilograms), input.beneficiary, input.reason,
                                        context.principal.client.slug, context.now, context.signer,
                                        input.idempotency_key)
        except MarketError as error:
            return RetireCreditsPayload(user_errors=_refused(error))
        row = await service.lot(context.session, context.principal.tenant_id, _lot_id(input.lot_id))
        return RetireCreditsPayload(certificate=_certificate(done.id, done.document, done.signature),
                                    lot=MarketLot(_row=row))


def _lot_id(global_id: strawberry.ID) -> uuid.UUID | None:
    return try_global_id(global_id, "MarketLot")


def _today(context: Context, tenant: Any) -> date:
    return local_date(context.now, tenant.timezone)
