"""Property-based fuzzing of the whole schema (hypothesis-graphql, the generator schemathesis uses for
GraphQL): every root query and mutation field, as every role, with generated arguments.

For every request: no 5xx, a valid GraphQL response (`data` and/or a list of `errors`, each with a
message), and no unexpected resolver error (`INTERNAL`): business failures are `userErrors`, bad input
is a typed error. Short here (CARBON_FUZZ_EXAMPLES, default 25 per role and kind); `make fuzz` runs
it long. Each example runs in the test's transaction, rolled back afterwards."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries
from hypothesis_graphql.nodes import String

from app.settings import PROJECT_ROOT

SDL = (PROJECT_ROOT / "schema.graphql").read_text(encoding="utf-8")
EXAMPLES = int(os.environ.get("CARBON_FUZZ_EXAMPLES", "25"))
CLIENTS = ["wuhan-app", "wuhan-tong", "wuhan-admin", "regulator"]
SCALARS = {
    "DateTime": st.datetimes(timezones=st.just(__import__("datetime").UTC)).map(lambda d: String(d.isoformat())),
    "Decimal": st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**9, max_value=10**9)
                 .map(lambda d: String(str(d))),
    "Date": st.dates().map(lambda d: String(d.isoformat())),
    "Long": st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda n: String(str(n))),
}
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _check(response) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body, dict) and ("data" in body or "errors" in body), body
    for error in body.get("errors") or []:
        assert isinstance(error.get("message"), str), error
        assert (error.get("extensions") or {}).get("code") != "INTERNAL", (body, response.request.content)
    if response.status_code != 200:
        assert "data" not in body and body["errors"], body  # a request error


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("kind", ["query", "mutation", "invalid query", "invalid mutation"])
async def test_generated_operations_never_fail_unexpectedly(api, client, kind) -> None:
    """Valid documents with generated arguments, and (NEGATIVE mode) documents whose arguments break
    the schema's types: those must be typed request errors."""
    mode = Mode.NEGATIVE if kind.startswith("invalid") else Mode.POSITIVE
    strategy = (mutations if kind.endswith("mutation") else queries)(SDL, custom_scalars=SCALARS, mode=mode)
    documents: list[str] = []

    @FUZZ
    @given(strategy)
    def collect(document: str) -> None:
        documents.append(document)

    collect()
    assert documents, "hypothesis generated nothing"
    for document in documents:
        response = await api.http.post("/graphql", json={"query": document}, headers=api.headers(client) | {
            "accept": "application/graphql-response+json"})
        _check(response)


@pytest.mark.parametrize("body", [
    b"", b"{", b"[]", b"null", b'{"query": 1}', b'{"query": "{"}', "{\"query\": \"{ tenants { slug } }\\u0000\"}".encode(),
    b'{"query": "' + b"{ tenants { slug } }" * 2000 + b'"}', b'{"query": "' + b"{a:" * 300 + b'"}',
    bytes(range(256)), ("{\"query\": \"" + "".join(string.printable) + "\"}").encode(),
])
async def test_malformed_bodies_never_fail_unexpectedly(api, body) -> None:
    response = await api.http.post("/graphql", content=body, headers=api.headers("wuhan-app"))
    _check(response)


def test_the_fuzz_target_exists() -> None:
    assert "fuzz:" in Path(PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
