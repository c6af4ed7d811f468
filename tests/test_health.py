"""Operational endpoints: liveness, readiness (database + migrations at head), Prometheus metrics."""

from __future__ import annotations


async def test_healthz(api) -> None:
    response = await api.http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_checks_database_and_migration_head(api) -> None:
    from app.db.migrate import head_revision

    response = await api.http.get("/readyz")
    assert response.status_code == 200
    # No LISTEN connection in a test bound to one connection (`live` is "listening" in a server).
    assert response.json() == {"status": "ready", "database": "reachable", "migrations": {"applied": head_revision()},
                               "live": "off"}


async def test_metrics_count_operations_by_name(api) -> None:
    await api.query("query CatalogueForMetrics { tenants { slug } }", as_="wuhan-app")
    await api.errors("query BrokenForMetrics { tenant(slug: \"wuhan\") { rewards(first: 1000) { edges { cursor } } } }",
                     as_="wuhan-app")
    text = (await api.http.get("/metrics")).text
    assert 'carbon_graphql_operations_total{operation="CatalogueForMetrics",type="query"}' in text
    assert 'carbon_graphql_operation_seconds_count{operation="CatalogueForMetrics",type="query"}' in text
    assert 'carbon_graphql_operation_errors_total{code="BAD_USER_INPUT",operation="BrokenForMetrics",type="query"}' in text
    assert 'carbon_http_requests_total{method="POST",path="/graphql",status="200"}' in text


async def test_client_mistakes_are_counted_by_their_code_not_as_internal(api) -> None:
    await api.errors("query ValidationForMetrics { nosuchfield }", as_="wuhan-app")
    await api.errors("query ParseForMetrics { tenants {", as_="wuhan-app")
    text = (await api.http.get("/metrics")).text
    assert ('carbon_graphql_operation_errors_total{code="GRAPHQL_VALIDATION_FAILED",operation="ValidationForMetrics",'
            'type="query"} 1.0') in text
    assert 'code="INTERNAL",operation="ValidationForMetrics"' not in text
    # A document that does not parse has no operation to name: counted as anonymous, of an invalid type.
    assert 'carbon_graphql_operation_errors_total{code="GRAPHQL_PARSE_FAILED",operation="anonymous",type="invalid"}' \
        in text


async def test_every_response_carries_a_request_id(api) -> None:
    response = await api.http.get("/healthz", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert len((await api.http.get("/healthz")).headers["x-request-id"]) == 32


async def test_unexpected_errors_are_masked(api, monkeypatch) -> None:
    from app.tenants import graphql as tenants_graphql

    async def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(tenants_graphql, "current_tenants", broken)
    body = (await api.post("query BrokenForMasking { tenants { slug } }", as_="wuhan-app")).json()
    assert body["errors"][0]["message"] == "Unexpected error."
    assert "secret" not in str(body)
    text = (await api.http.get("/metrics")).text  # counted once (not the original and its masked copy)
    assert 'carbon_graphql_operation_errors_total{code="INTERNAL",operation="BrokenForMasking",type="query"} 1.0' in text
