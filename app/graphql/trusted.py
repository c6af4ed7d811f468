"""Trusted documents: operations registered with the server and sent by hash.

A client sends `{"documentId": "sha256:<hex>", "variables": {...}}` (GraphQL-over-HTTP persisted
documents) or Apollo's `{"extensions": {"persistedQuery": {"sha256Hash": "<hex>"}}, ...}` instead of
the query text. Two kinds:

* built in: `app/graphql/documents/*.graphql`, shipped with the server, trusted in every city. One may
  have a *fast path*: a handler that answers exactly what the full GraphQL execution of that document
  would answer, in one SQL statement. A request the fast path is not sure about (another role, unusual
  variables) goes through full GraphQL execution of the same text, so every error looks the same.
* registered: `carbon-inclusive documents register FILE.graphql...` validates each file against the
  schema and stores it for each city (table `trusted_documents`); a city's clients may then send it
  by hash. Lookups are cached per process (a hash never changes meaning).

A client configured with `trusted_documents_only = true` (a city mini-program in production) may send
nothing else: free-form query text and unknown hashes are refused before anything is parsed.
"""

from __future__ import annotations

import hashlib
import re
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
from app.graphql.ids import to_global_id, try_global_id
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


class DocumentRefused(ValueError):
    """A document that cannot be registered: it does not parse or validate against the schema."""


def compile_document(text: str, default_name: str) -> TrustedDocument:
    """Parse and validate `text` against the served schema (with the server's own rules); its name is
    its operations' names, or `default_name` for an anonymous one."""
    from graphql import GraphQLError, OperationDefinitionNode, parse, specified_rules, validate

    from app.graphql.cost import operation_cost
    from app.graphql.schema import EXTRA_RULES, schema

    try:
        document = parse(text)
    except GraphQLError as error:
        raise DocumentRefused(f"does not parse: {error.message}") from None
    errors = validate(schema._schema, document, [*specified_rules, *EXTRA_RULES])
    if errors:
        raise DocumentRefused("does not validate: " + "; ".join(error.message for error in errors))
    names = [d.name.value for d in document.definitions if isinstance(d, OperationDefinitionNode) and d.name]
    return TrustedDocument(name=", ".join(names) or default_name, text=text, sha256=document_hash(text),
                           cost=operation_cost(schema._schema, document, None, {}))


# ------------------------------------------------------------------------------ redeemReward fast path

REDEEM_STATEMENT = REDEEM_ONE  # (the benchmark calls it directly)


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
    return _payload({"id": to_global_id("Redemption", uuid.UUID(verdict["redemption_id"])), "status": verdict["status"],
                     "voucherCode": verdict["voucher_code"]}, balance, [])


# ------------------------------------------------------------------------------------------ registry


def _load() -> dict[str, TrustedDocument]:
    fast_paths: dict[str, FastPath] = {"RedeemReward": redeem_fast_path}
    documents = {}
    for path in sorted(DOCUMENTS_DIR.glob("*.graphql")):
        compiled = compile_document(path.read_bytes().decode("utf-8"), path.stem)
        document = TrustedDocument(name=path.stem, text=compiled.text, sha256=compiled.sha256,
                                   fast_path=fast_paths.get(path.stem), cost=compiled.cost)
        documents[document.sha256] = document
    return documents


DOCUMENTS = _load()
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REGISTERED: dict[tuple[uuid.UUID, str], TrustedDocument] = {}
_REGISTERED_CACHE_SIZE = 10_000


async def find_document(database: Database, tenant_id: uuid.UUID | None, sha256: str) -> TrustedDocument | None:
    """The built-in document with this hash, else the one registered for the tenant, else None."""
    document = DOCUMENTS.get(sha256)
    if document is not None or tenant_id is None or not _HEX64.fullmatch(sha256):
        return document
    document = _REGISTERED.get((tenant_id, sha256))
    if document is None:
        text = await database.fetchval("SELECT carbon_trusted_document($1, $2)", tenant_id, sha256)
        if text is None:
            return None
        document = compile_document(text, "registered")
        if len(_REGISTERED) >= _REGISTERED_CACHE_SIZE:
            _REGISTERED.clear()
        _REGISTERED[(tenant_id, sha256)] = document
    return document


async def register_documents(session: Any, tenant_ids: list[uuid.UUID], documents: list[TrustedDocument],
                             by: str) -> dict[tuple[uuid.UUID, str], bool]:
    """Store each document for each tenant; (tenant, hash) -> True if new, False if it was there."""
    from sqlalchemy import text

    from app.db.session import TenantScope, apply_scope

    created: dict[tuple[uuid.UUID, str], bool] = {}
    for tenant_id in tenant_ids:
        await apply_scope(session, TenantScope.for_tenant(tenant_id))
        for document in documents:
            result = await session.execute(text(
                "INSERT INTO trusted_documents (tenant_id, sha256, name, text, registered_by) "
                "VALUES (:t, :h, :n, :x, :b) ON CONFLICT (tenant_id, sha256) DO NOTHING"),
                {"t": tenant_id, "h": document.sha256, "n": document.name, "x": document.text, "b": by})
            key = (tenant_id, document.sha256)
            created[key] = created.get(key, False) or result.rowcount == 1  # the same text twice: new once
    return created


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


__all__ = ["DOCUMENTS", "TrustedDocument", "compile_document", "find_document", "register_documents",
           "run_fast_path"]
