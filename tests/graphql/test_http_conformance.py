"""GraphQL over HTTP: what the reference audit suite (npm `graphql-http`, `serverAudits`) checks.

Each test names the audits it covers by their ids in that suite's report (e.g. 22EB)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.live.wsclient import AsgiClient

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
QUERY = "{ tenants { slug } }"


async def _post(api, body, *, accept: str | None = GRAPHQL_RESPONSE, content_type: str | None = JSON,
                as_: str = "wuhan-app"):
    headers = {"authorization": api.headers(as_)["authorization"]}
    if accept is not None:
        headers["accept"] = accept
    if content_type is not None:
        headers["content-type"] = content_type
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await api.http.post("/graphql", content=content, headers=headers)


async def _get(api, params: dict, *, accept: str = GRAPHQL_RESPONSE, as_: str = "wuhan-app"):
    headers = {"authorization": api.headers(as_)["authorization"], "accept": accept}
    return await api.http.get("/graphql", params=params, headers=headers)


def _media(response) -> str:
    return response.headers["content-type"].split(";")[0]


@pytest.mark.parametrize(("accept", "expected"), [
    (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),  # 22EB
    (JSON, JSON),  # 4655
    ("*/*", JSON),  # 47DE
    (None, JSON),  # 80D8
    (f"{JSON};q=0.5, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
    (f"{GRAPHQL_RESPONSE};q=0.1, {JSON}", JSON),
])
async def test_content_negotiation(api, accept, expected) -> None:
    response = await _post(api, {"query": QUERY}, accept=accept)
    assert response.status_code == 200
    assert _media(response) == expected
    assert "charset=utf-8" in response.headers["content-type"]  # 82A3
    assert response.json()["data"]["tenants"] == [{"slug": "wuhan"}]


async def test_nothing_acceptable_is_406(api) -> None:
    response = await _post(api, {"query": QUERY}, accept="text/html")
    assert response.status_code == 406 and response.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


async def test_utf8_requests(api) -> None:
    """BF61, 78D5: UTF-8 with or without a charset; another charset is refused (415)."""
    body = {"query": '{ tenant(slug: "武汉") { slug } }'}
    assert (await _post(api, body, content_type=f"{JSON}; charset=utf-8")).json()["data"] == {"tenant": None}
    assert (await _post(api, body)).json()["data"] == {"tenant": None}
    assert (await _post(api, {"query": QUERY}, content_type=f"{JSON}; charset=iso-8859-1")).status_code == 415


async def test_post_needs_a_json_content_type_and_a_body(api) -> None:
    """9ABE: no Content-Type is 4xx; 7267: a body is required."""
    assert (await _post(api, {"query": QUERY}, content_type=None)).status_code == 415
    assert (await _post(api, {"query": QUERY}, content_type="text/plain")).status_code == 415
    empty = await _post(api, b"")
    assert empty.status_code == 400 and "data" not in empty.json()


@pytest.mark.parametrize("parameter", ["query", "operationName", "variables", "extensions"])
@pytest.mark.parametrize("value", [{"obj": "ect"}, 0, False, ["array"], "string"], ids=str)
async def test_parameter_types(api, parameter, value) -> None:
    """4F50-4F53, E3E0-E3E3, 69B0-69B3, 9040-9043 (400 and no data under graphql-response+json) and, as
    the current audit suite prefers (LKJ0-3, 6C00-3, 4760-3, 58B0-3), 400 under application/json too:
    such a request is not well-formed."""
    allowed = {"query": str, "operationName": str, "variables": dict, "extensions": dict}[parameter]
    if isinstance(value, allowed):
        return  # the allowed type: covered below
    body = {"query": QUERY} | {parameter: value}
    strict = await _post(api, body)
    assert strict.status_code == 400 and _media(strict) == GRAPHQL_RESPONSE  # 17C5
    assert "data" not in strict.json() and strict.json()["errors"]  # 34D6
    legacy = await _post(api, body, accept=JSON)
    assert legacy.status_code == 400 and legacy.json()["errors"] and "data" not in legacy.json()  # 3E3A


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_allowed_parameter_values(api, accept) -> None:
    """34A2/13EE, 8161/B8B3, 94B0-94B2/0220-0222 (null), 2EA1/28B9 and 428F/1B7A (maps)."""
    for extra in ({"operationName": None, "variables": None, "extensions": None},
                  {"operationName": "Slugs", "variables": {}, "extensions": {}}):
        query = "query Slugs { tenants { slug } }"
        response = await _post(api, {"query": query} | extra, accept=accept)
        assert response.status_code == 200 and response.json()["data"] == {"tenants": [{"slug": "wuhan"}]}


async def test_missing_query(api) -> None:
    """6610 (400), and 400 under application/json too (not a well-formed request)."""
    assert (await _post(api, {"variables": {}})).status_code == 400
    legacy = await _post(api, {"variables": {}}, accept=JSON)
    assert legacy.status_code == 400 and legacy.json()["errors"][0]["message"].startswith("missing `query`")


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "MALFORMED_JSON"),  # 60AA, 2163, BCF8
    (b'[{"query": "{ tenants { slug } }"}]', "BAD_REQUEST"),  # batches are not accepted
])
async def test_malformed_requests(api, body, code) -> None:
    for accept in (GRAPHQL_RESPONSE, JSON):
        response = await _post(api, body, accept=accept)
        assert response.status_code == 400 and response.json()["errors"][0]["extensions"]["code"] == code


@pytest.mark.parametrize(("query", "code"), [("{ tenants { slug }", "GRAPHQL_PARSE_FAILED"),
                                             ("{ tenants { nope } }", "GRAPHQL_VALIDATION_FAILED")],
                         ids=["parse", "validate"])
async def test_document_failures(api, query, code) -> None:
    """572B/FDE2 (200 under application/json); 865D, 556A, D586, 51FE, 74FF, 5E5B (400, no data)."""
    strict = await _post(api, {"query": query})
    assert strict.status_code == 400 and "data" not in strict.json() and strict.json()["errors"]
    assert strict.json()["errors"][0]["extensions"]["code"] == code  # typed, like every error
    legacy = await _post(api, {"query": query}, accept=JSON)
    assert legacy.status_code == 200 and "data" not in legacy.json() and legacy.json()["errors"]


async def test_variable_coercion_failure_is_400(api) -> None:
    """86EE."""
    response = await _post(api, {"query": "query($s: String!) { tenant(slug: $s) { slug } }",
                                 "variables": {"s": {"not": "a string"}}})
    assert response.status_code == 400 and "data" not in response.json()
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    missing = await _post(api, {"query": "query($s: String!) { tenant(slug: $s) { slug } }"})
    assert missing.status_code == 400 and "data" not in missing.json()


async def test_field_errors_are_200_with_data(api) -> None:
    """Execution started: 200 and `data`, even under graphql-response+json."""
    response = await _post(api, {"query": "{ entitlements(first: 1) { edges { cursor } } }"})
    assert response.status_code == 200
    body = response.json()
    assert "data" in body and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_get_serves_queries_with_json_variables(api) -> None:
    """5A70, D6D5/6A70."""
    response = await _get(api, {"query": "query($s: String!) { tenant(slug: $s) { slug } }",
                                "variables": json.dumps({"s": "wuhan"})})
    assert response.status_code == 200 and response.json()["data"] == {"tenant": {"slug": "wuhan"}}
    # Personal, and depends on the token and the language: no browser or proxy keeps it by URL.
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["vary"] == "Authorization, Accept-Language"
    bad = await _get(api, {"query": QUERY, "variables": "{oops"})
    assert bad.status_code == 400 and bad.headers["cache-control"] == "no-store"


async def test_a_get_parameter_given_twice_is_refused_not_guessed(api) -> None:
    """As a POST body giving a parameter twice: which one was meant is not guessed."""
    response = await api.http.get("/graphql?query=%7B%20tenants%20%7B%20slug%20%7D%20%7D&query=%7B%20__typename%20%7D",
                                  headers=api.headers("wuhan-app") | {"accept": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "`query` twice" in response.json()["errors"][0]["message"]


async def test_mutations_are_never_executed_by_get(api, database) -> None:
    """9C48: 405 with Allow: POST, and nothing happens."""
    from sqlalchemy import text

    from app.db.session import TenantScope
    from app.tenants.models import tenant_id_for

    async def accounts() -> int:
        async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
            return (await session.execute(text("SELECT count(*) FROM accounts"))).scalar()

    before = await accounts()
    holder = uuid.uuid4().hex
    mutation = ('mutation { openAccount(input: {tenant: "wuhan", holderRef: "%s", kind: GUEST, '
                'acceptedAgreement: true}) { account { id } } }' % holder)
    response = await _get(api, {"query": mutation})
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert await accounts() == before
    posted = await _post(api, {"query": mutation})
    assert posted.status_code == 200 and await accounts() == before + 1  # the same text by POST runs


async def test_other_methods_are_405(api) -> None:
    response = await api.http.put("/graphql", content=b"{}", headers=api.headers("wuhan-app"))
    assert response.status_code == 405 and "POST" in response.headers["allow"]
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


async def test_an_exception_escaping_the_graphql_app_is_a_json_500(api, monkeypatch) -> None:
    """/graphql bypasses Starlette's router and error layers (app.main._Application): its own guard
    answers 500 in the API's error shape, with a request id, and counts it; the server still sees the
    exception (it logs it)."""
    from httpx import ASGITransport, AsyncClient

    from app.graphql import view

    def broken(_body: bytes):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(view.http, "parse_post", broken)
    before = _served_500s()
    async with AsyncClient(transport=ASGITransport(app=api.app, raise_app_exceptions=False),
                           base_url="http://testserver") as http:
        response = await http.post("/graphql", json={"query": QUERY}, headers=api.headers("wuhan-app"))
    assert response.status_code == 500 and "secret" not in response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL"
    assert len(response.headers["x-request-id"]) == 32
    assert _served_500s() == before + 1
    with pytest.raises(RuntimeError, match="secret internal detail"):  # the server's own error log sees it
        await api.http.post("/graphql", json={"query": QUERY}, headers=api.headers("wuhan-app"))


def _served_500s() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("carbon_http_requests_total",
                                     {"method": "POST", "path": "/graphql", "status": "500"}) or 0.0


def test_the_graphql_short_cut_applies_every_middleware_of_the_app(api) -> None:
    """/graphql skips Starlette's stack for its own chain (app.main._Application): a middleware added to
    the app and not to that chain would silently not apply to the API. Add it to both."""
    from app.main import BodySizeLimit, RequestContextMiddleware

    assert [m.cls for m in api.app.user_middleware] == [RequestContextMiddleware, BodySizeLimit]
    chain, layers = api.app._graphql, []
    while hasattr(chain, "app"):
        layers.append(type(chain).__name__)
        chain = chain.app
    assert layers == ["RequestContextMiddleware", "ServerErrors", "BodySizeLimit"]


async def test_paths_beside_graphql_still_go_through_the_router(api) -> None:
    assert (await api.http.get("/graphql/", follow_redirects=False)).status_code == 307  # Starlette's slash redirect
    assert (await api.http.get("/nowhere")).status_code == 404


async def test_transport_errors_come_before_negotiation_for_strangers(api) -> None:
    """Without a token the answer is 401, whatever the Accept header says."""
    response = await api.http.post("/graphql", json={"query": QUERY}, headers={"accept": "text/html"})
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers


@pytest.mark.parametrize(("accept", "expected"), [
    (f"{JSON};q=0, */*", GRAPHQL_RESPONSE),  # a range naming JSON outranks the wildcard (RFC 9110)
    (f"{GRAPHQL_RESPONSE};q=nan, {JSON};q=0.5", JSON),  # nonsense qualities accept nothing
    (f"{GRAPHQL_RESPONSE};q=2, {JSON};q=0.5", JSON),
    ("application/*", JSON),
])
async def test_negotiation_follows_specificity_and_sane_qualities(api, accept, expected) -> None:
    response = await _post(api, {"query": QUERY}, accept=accept)
    assert response.status_code == 200 and _media(response) == expected


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"query": "{ tenants { slug } }", "query": "{ __typename }"}', "`query` twice"),
    (b'{"query": "{ tenants { slug } }", "variables": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "not valid JSON"),
    (b'{"query": "{ tenant(slug: \\"bad\\ud800\\") { slug } }"}', "lone surrogate"),
])
async def test_ambiguous_or_unprocessable_bodies_are_400(api, body, fragment) -> None:
    for accept in (GRAPHQL_RESPONSE, JSON):
        response = await _post(api, body, accept=accept)
        assert response.status_code == 400, response.text
        assert fragment in response.json()["errors"][0]["message"]


async def test_deep_json_in_get_variables_is_400(api) -> None:
    response = await _get(api, {"query": QUERY, "variables": "[" * 3000 + "]" * 3000})
    assert response.status_code == 400


async def test_subscriptions_by_post_are_a_request_error_not_405(api) -> None:
    response = await _post(api, {"query": "subscription { tenants { slug } }"})
    assert response.status_code == 400 and "data" not in response.json()


async def test_a_server_failure_before_execution_is_500(api, monkeypatch) -> None:
    """A failing database at the start of the unit of work is the server's fault, not the request's."""
    from app.graphql import extensions

    async def broken(*_args, **_kwargs):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(extensions, "apply_scope", broken)
    response = await _post(api, {"query": QUERY})
    assert response.status_code == 500
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL"


async def test_a_websocket_serves_nothing_before_authentication(api) -> None:
    """graphql-transport-ws only after a valid token (tests/live covers the transport in full)."""
    async with AsgiClient(api.app) as client:
        await client.send({"type": "connection_init", "payload": {}})
        closed = await client.closed()
    assert closed.code == 4403 and "missing bearer token" in closed.reason


async def test_a_client_that_goes_away_mid_body_is_no_server_error(api, caplog) -> None:
    """QA: an aborted upload raised ClientDisconnect out of the app: logged at ERROR and counted as 500."""
    import logging

    from app.main import HTTP_REQUESTS

    token = api.registry.issue("wuhan-app", 60)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": "/graphql",
             "raw_path": b"/graphql", "query_string": b"", "scheme": "http", "server": ("testserver", 80),
             "client": ("127.0.0.1", 5000), "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"authorization", f"Bearer {token}".encode()), (b"content-length", b"100")]}
    messages = iter([{"type": "http.request", "body": b'{"query": "{ ten', "more_body": True},
                     {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    errors_before = HTTP_REQUESTS.labels("/graphql", "POST", "500")._value.get()
    closed_before = HTTP_REQUESTS.labels("/graphql", "POST", "499")._value.get()
    with caplog.at_level(logging.INFO):
        await api.app(scope, receive, send)  # returns: nothing escapes to the server
    assert not [m for m in sent if m["type"] == "http.response.start" and m["status"] >= 500]
    assert HTTP_REQUESTS.labels("/graphql", "POST", "500")._value.get() == errors_before
    assert HTTP_REQUESTS.labels("/graphql", "POST", "499")._value.get() == closed_before + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
