"""Trusted documents: operations registered with the server and sent by hash.

A client sends `{"documentId": "sha256:<hex>", "variables": {...}}` (GraphQL-over-HTTP persisted
documents) or Apollo's `{"extensions": {"persistedQuery": {"sha256Hash": "<hex>"}}, ...}` instead of
the query text. The server knows the text (`app/graphql/documents/*.graphql`), so nothing is parsed or
validated per request. A document may also have a *fast path*: a handler that answers exactly what the
full GraphQL execution of that document would answer, in one SQL statement. A request the fast path is
not sure about (another role, unusual variables) goes through full GraphQL execution of the same text,
so every error looks the same on both paths. (The registration command and restricting clients to
trusted documents come with the public-clients work.)
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.auth.principals import Principal
from app.db.session import Database
from app.graphql.cost import BUDGETS
from app.graphql.extensions import GRAPHQL_ERRORS, GRAPHQL_LATENCY, GRAPHQL_REQUESTS, strings_in
from app.graphql.ids import try_global_id
from app.logs import get_logger
from app.rewards import service as rewards
from app.rewards.batching import REDEEM_ONE, RedeemCall, batcher_for
from app.rewards.errors import RewardError
from app.tenants.config import Role

DOCUMENTS_DIR = Path(__file__).resolve().parent / "documents"
_ROOT_FIELDS = {"RedeemReward": "redeemReward"}
log = get_logger("app.trusted")
FastPath = Callable[[Database, Principal, dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class TrustedDocument:
    name: str
    text: str
    sha256: str
    fast_path: FastPath | None = None
    cost: int = 0  # static cost (app.graphql.cost); fixed for a trusted document


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def requested_hash(body: dict[str, Any]) -> str | None:
    """The document hash a request names, if it names one and sends no query text."""
    if body.get("query"):
        return None
    document_id = body.get("documentId")
    if isinstance(document_id, str) and document_id.startswith("sha256:"):
        return document_id.removeprefix("sha256:")
    persisted = (body.get("extensions") or {}).get("persistedQuery") if isinstance(body.get("extensions"), dict) else None
    if isinstance(persisted, dict) and isinstance(persisted.get("sha256Hash"), str):
        return persisted["sha256Hash"]
    return None


# ------------------------------------------------------------------------------ redeemReward fast path

REDEEM_STATEMENT = REDEEM_ONE  # (the benchmark calls it directly)


def _global_id(type_name: str, object_id: str) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{object_id}".encode()).decode().rstrip("=")


def _input(variables: dict[str, Any]) -> dict[str, Any] | None:
    """The input exactly as GraphQL would accept it, or None to let full execution judge it."""
    value = variables.get("input") if isinstance(variables, dict) and len(variables) == 1 else None
    if not isinstance(value, dict) or not set(value) <= {"accountId", "rewardId", "quantity", "idempotencyKey"}:
        return None
    quantity = value.get("quantity", 1)
    if (not isinstance(value.get("accountId"), str) or not isinstance(value.get("rewardId"), str)
            or not isinstance(value.get("idempotencyKey"), str) or isinstance(quantity, bool)
            or not isinstance(quantity, int) or not -(2**31) <= quantity < 2**31):
        return None
    return value | {"quantity": quantity}


def _payload(redemption: dict[str, Any] | None, balance: str | None, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": {"redeemReward": {"redemption": redemption,
                                      "balance": None if balance is None else {"amount": balance},
                                      "userErrors": errors}}}


def _error(error: RewardError) -> dict[str, Any]:
    return _payload(None, None, [{"code": error.code.value, "field": error.field, "message": error.message}])


async def redeem_fast_path(database: Database, principal: Principal, variables: dict[str, Any]) -> dict[str, Any] | None:
    if principal.role is not Role.CITY_APP:
        return None  # full execution answers the permission error
    value = _input(variables)
    if value is None:
        return None
    command = rewards.Redeem(
        tenant_id=principal.tenant_id, account_id=try_global_id(value["accountId"], "Account"),
        reward_id=try_global_id(value["rewardId"], "Reward"), quantity=value["quantity"],
        idempotency_key=value["idempotencyKey"], by_client=principal.client.slug)
    try:
        rewards.validate(command)
    except RewardError as error:
        return _error(error)
    now = datetime.now(UTC)
    params = rewards.redeem_params(command, now)
    verdict = await batcher_for(database).redeem(command.tenant_id, RedeemCall(
        account_id=command.account_id, reward_id=command.reward_id, quantity=command.quantity,
        key=command.idempotency_key, request_hash=params["hash"], client=command.by_client, now=now,
        voucher=params["voucher"], redemption_id=params["redemption"], transaction_id=params["transaction"]))
    if verdict is None:
        return None  # no configuration in force for the tenant: let full execution answer
    error = rewards.verdict_error(verdict)
    if error is not None:
        return _error(error)
    balance = str(Decimal(int(verdict["balance"])).scaleb(-int(verdict["decimals"])))
    return _payload({"id": _global_id("Redemption", str(verdict["redemption_id"])), "status": verdict["status"],
                     "voucherCode": verdict["voucher_code"]}, balance, [])


# ------------------------------------------------------------------------------------------ registry


def _load() -> dict[str, TrustedDocument]:
    from graphql import parse

    from app.graphql.cost import operation_cost
    from app.graphql.schema import schema

    fast_paths: dict[str, FastPath] = {"RedeemReward": redeem_fast_path}
    documents = {}
    for path in sorted(DOCUMENTS_DIR.glob("*.graphql")):
        text = path.read_text(encoding="utf-8")
        document = TrustedDocument(name=path.stem, text=text, sha256=document_hash(text),
                                   fast_path=fast_paths.get(path.stem),
                                   cost=operation_cost(schema._schema, parse(text), None, {}))
        documents[document.sha256] = document
    return documents


DOCUMENTS = _load()


async def run_fast_path(document: TrustedDocument, database: Database, principal: Principal,
                        variables: dict[str, Any]) -> dict[str, Any] | None:
    """The fast path's answer, counted in the same metrics as full execution; None: not handled."""
    if document.fast_path is None or document.cost > BUDGETS[principal.role]:
        return None  # full execution answers (COST_LIMIT_EXCEEDED)
    if any("\x00" in text for text in strings_in(variables)):
        return None  # full execution refuses it as BAD_USER_INPUT
    started = datetime.now(UTC)
    try:
        result = await document.fast_path(database, principal, variables)
    except Exception as error:  # as full execution: logged by type, answered without details
        log.error("fast_path_failed", document=document.name, error=type(error).__name__)
        GRAPHQL_ERRORS.labels(document.name, "mutation", "INTERNAL").inc()
        result = {"data": None, "errors": [{"message": "Unexpected error.", "path": [_ROOT_FIELDS[document.name]],
                                            "extensions": {"code": "INTERNAL"}}]}
    if result is not None:  # the same extensions as full execution reports
        result["extensions"] = {"cost": {"requestedQueryCost": document.cost, "budget": BUDGETS[principal.role]}}
        GRAPHQL_REQUESTS.labels(document.name, "mutation").inc()
        GRAPHQL_LATENCY.labels(document.name, "mutation").observe((datetime.now(UTC) - started).total_seconds())
    return result


__all__ = ["DOCUMENTS", "TrustedDocument", "requested_hash", "run_fast_path", "uuid"]
