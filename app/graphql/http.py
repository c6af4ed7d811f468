"""GraphQL over HTTP (the GraphQL Foundation's specification), the parts a transport decides.

* **Media types.** Responses are `application/graphql-response+json` when the client accepts it and
  prefers it (or ties), else `application/json`; `*/*` and a missing `Accept` get `application/json`
  (older clients); an `Accept` naming neither gets HTTP 406. Always `; charset=utf-8`.
* **Requests.** POST with `Content-Type: application/json` (UTF-8: another charset is HTTP 415, as is
  any other media type or none); GET with URL parameters, for queries only (a mutation by GET is HTTP
  405 with `Allow: POST`, never executed). Parameters are type-checked: `query` a string, `operationName`
  a string or null, `variables` and `extensions` maps or null (on GET: URL-encoded JSON).
* **Status codes.** A request that is not well-formed (malformed JSON, a parameter of the wrong type,
  no query) is HTTP 400 under either media type. Under `application/graphql-response+json` a GraphQL
  *request error* — a document that does not parse or validate, variables that do not coerce, a limit —
  is HTTP 400 too, and the body has no `data` entry; once execution starts the status is 200 and `data`
  is present (possibly null). Under `application/json` every well-formed request is answered 200 (the
  legacy behaviour clients of that media type expect), without `data` for request errors.
  Authentication (401), rate limit (429) and body size (413) are decided before any of this.

The reference audit suite is the npm package `graphql-http` (`serverAudits`); tests/graphql/
test_http_conformance.py covers what it checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_SUPPORTED = (GRAPHQL_RESPONSE, JSON)


class HttpProblem(Exception):
    """A request refused at the transport level, with its status and a GraphQL-shaped error."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class RequestError(Exception):
    """A request refused before execution. `well_formed=False` (malformed JSON, invalid parameters, no
    query): not a GraphQL-over-HTTP request at all, HTTP 400 whatever the media type. `well_formed=True`
    (an unknown trusted document, a client restricted to them): a GraphQL request error, whose status
    depends on the media type like a validation error's."""

    def __init__(self, message: str, code: str = "BAD_REQUEST", *, well_formed: bool = False) -> None:
        super().__init__(message)
        self.message, self.code, self.well_formed = message, code, well_formed


@dataclass(frozen=True)
class GraphQLRequest:
    query: str | None
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None
    document_id: str | None  # a trusted document's id ("sha256:<hex>"), when sent instead of `query`


def negotiate(accept: str | None) -> str:
    """The response media type for an `Accept` header value (HttpProblem 406 if none is acceptable).

    Each supported type gets the quality of the most specific range naming it (its own name, then
    `application/*`, then `*/*`, as RFC 9110 says), so `application/json;q=0, */*` excludes JSON. Ties
    go to `application/graphql-response+json` only when the client names it; a bare wildcard or no
    header gets `application/json`, which every client understands."""
    if accept is None or not accept.strip():
        return JSON
    quality: dict[str, tuple[int, float]] = {}  # media range -> (specificity, q)
    for item in accept.split(","):
        media, parameters = _media_type(item)
        q = 1.0
        if "q" in parameters:
            try:
                q = float(parameters["q"])
            except ValueError:
                q = 0.0
            q = q if 0.0 <= q <= 1.0 else 0.0  # nan, inf and out-of-range values accept nothing
        if parameters.get("charset", "utf-8") not in _UTF8:
            q = 0.0
        specificity = 2 if media in _SUPPORTED else 1 if media == "application/*" else 0 if media == "*/*" else -1
        if specificity >= 0 and (media not in quality or quality[media][1] < q):
            quality[media] = (specificity, q)

    def q_of(media_type: str) -> tuple[float, bool]:
        for candidate in (media_type, "application/*", "*/*"):
            if candidate in quality:
                return quality[candidate][1], candidate == media_type
        return 0.0, False

    (q_graphql, named), (q_json, _) = q_of(GRAPHQL_RESPONSE), q_of(JSON)
    if q_graphql <= 0 and q_json <= 0:
        raise HttpProblem(406, f"not acceptable: send Accept: {GRAPHQL_RESPONSE} or {JSON}", "NOT_ACCEPTABLE")
    if q_graphql > q_json or (q_graphql == q_json and named):
        return GRAPHQL_RESPONSE
    return JSON


def check_content_type(content_type: str | None) -> None:
    """A POST body must be JSON in UTF-8 (HttpProblem 415 otherwise)."""
    if not content_type:
        raise HttpProblem(415, f"missing Content-Type: send {JSON}", "UNSUPPORTED_MEDIA_TYPE")
    media, parameters = _media_type(content_type)
    if media != JSON:
        raise HttpProblem(415, f"unsupported Content-Type {media!r}: send {JSON}", "UNSUPPORTED_MEDIA_TYPE")
    if parameters.get("charset", "utf-8") not in _UTF8:
        raise HttpProblem(415, "unsupported charset: requests must be UTF-8", "UNSUPPORTED_MEDIA_TYPE")


_UTF8 = ("utf-8", "utf8")


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """`type/subtype; name=value; ...` -> (lower-case type, lower-case parameters)."""
    media, *parameters = (part.strip() for part in value.split(";"))
    named = {}
    for parameter in parameters:
        name, _, argument = parameter.partition("=")
        named[name.strip().lower()] = argument.strip().strip('"').lower()
    return media.lower(), named


_PARAMETERS = ("query", "operationName", "variables", "extensions", "documentId")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKey(key)
        document[key] = value
    return document


def parse_post(body: bytes) -> GraphQLRequest:
    if not body.strip():
        raise RequestError("the request body is empty: send a JSON object with a `query`", "BAD_REQUEST")
    try:
        document = json.loads(body.decode("utf-8"))
        if any(body.count(b'"%s"' % key.encode()) > 1 for key in _PARAMETERS):
            json.loads(body, object_pairs_hook=_no_duplicates)  # a parameter given twice: refuse, don't guess
        if b"\\u" in body and b"\\ud" in body.lower():
            json.dumps(document, ensure_ascii=False).encode("utf-8")  # lone surrogates are not text
    except _DuplicateKey as duplicate:
        raise RequestError(f"the request body gives `{duplicate}` twice", "MALFORMED_JSON") from None
    except UnicodeEncodeError:
        raise RequestError("the request body has a string that is not valid Unicode (a lone surrogate)",
                           "MALFORMED_JSON") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestError("the request body is not valid JSON in UTF-8", "MALFORMED_JSON") from None
    if isinstance(document, list):
        raise RequestError("batched requests are not supported: send one operation per request")
    if not isinstance(document, dict):
        raise RequestError("the request body must be a JSON object")
    return _parameters(document)


def parse_object(document: dict[str, Any]) -> GraphQLRequest:
    """From an already decoded JSON object (a websocket `subscribe` message's payload)."""
    return _parameters(document)


def parse_get(params: Any) -> GraphQLRequest:
    """From URL parameters (a Starlette QueryParams or any mapping of str to str)."""
    document: dict[str, Any] = {}
    getlist = getattr(params, "getlist", None)
    for name in _PARAMETERS:  # a parameter given twice: refuse, don't guess (as for a POST body)
        if getlist is not None and len(getlist(name)) > 1:
            raise RequestError(f"the query string gives `{name}` twice", "BAD_REQUEST")
    for name in ("query", "operationName", "documentId"):
        if name in params:
            document[name] = params[name]
    for name in ("variables", "extensions"):
        if name in params:
            try:
                document[name] = json.loads(params[name])
                json.dumps(document[name], ensure_ascii=False).encode("utf-8")
            except (ValueError, RecursionError, UnicodeEncodeError):
                raise RequestError(f"`{name}` must be URL-encoded JSON") from None
    return _parameters(document)


def _parameters(document: dict[str, Any]) -> GraphQLRequest:
    query, document_id = document.get("query"), document.get("documentId")
    extensions = document.get("extensions")
    if query is not None and not isinstance(query, str):
        raise RequestError("`query` must be a string")
    if document_id is not None and not isinstance(document_id, str):
        raise RequestError("`documentId` must be a string")
    operation_name = document.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError("`operationName` must be a string or null")
    variables = document.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise RequestError("`variables` must be a map or null")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestError("`extensions` must be a map or null")
    persisted = (extensions or {}).get("persistedQuery")
    if document_id is None and isinstance(persisted, dict) and isinstance(persisted.get("sha256Hash"), str):
        document_id = f"sha256:{persisted['sha256Hash']}"
    if not query and document_id is None:
        raise RequestError("missing `query`: send the operation's text (or a trusted document's `documentId`)")
    if query and document_id is not None and document_id != f"sha256:{hashlib.sha256(query.encode()).hexdigest()}":
        # Both given: the text runs, so the id must be its hash (as Apollo's persisted queries check it).
        raise RequestError("`documentId` (or `persistedQuery.sha256Hash`) is not the SHA-256 of `query`: send "
                           "one of them, or the pair that match", "DOCUMENT_ID_MISMATCH", well_formed=True)
    return GraphQLRequest(query=query or None, operation_name=operation_name, variables=variables,
                          extensions=extensions, document_id=document_id if not query else None)


def request_error_status(media_type: str) -> int:
    """The status of a response to a request error under the negotiated media type."""
    return 400 if media_type == GRAPHQL_RESPONSE else 200


def content_type(media_type: str) -> str:
    return f"{media_type}; charset=utf-8"


def error_body(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}
