"""The websocket transport in process (inside the test's transaction): what is refused, and how.

The end-to-end behaviour (committed writes, NOTIFY, two server processes, real sockets) is
test_subscriptions.py; the hub alone is test_hub.py."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import structlog
from httpx import ASGITransport, AsyncClient

from app.graphql.ids import from_global_id
from app.main import create_app
from tests.conftest import make_test_settings
from tests.factories import consenting_account, local_time, record, register_document, submit
from tests.graphql.test_query_counts import count_queries
from tests.live.inprocess import city_notice, ledger_notice, started, subscription_body, subscriptions
from tests.live.wsclient import AsgiClient, Closed

TICK = "subscription { dashboardTick { tenant { slug } changes } }"
ACTIVITY = """subscription($a: ID!) { accountActivity(accountId: $a) {
    entries { kind status reductionGrams points behavior { code } recordId } account { balance { amount } } } }"""


async def test_a_subscription_over_http_is_a_typed_error(api) -> None:
    response = await api.post(TICK, as_="regulator")
    body = response.json()
    assert response.status_code == 200 and "data" not in body, body
    assert body["errors"][0]["extensions"]["code"] == "OPERATION_NOT_SUPPORTED"
    assert "graphql-transport-ws" in body["errors"][0]["message"]


async def test_queries_and_mutations_over_the_websocket_are_refused(api) -> None:
    async with AsgiClient(api.app) as client:
        assert (await client.init(api.registry.issue("wuhan-app", 600)))["type"] == "connection_ack"
        await client.subscribe("q", "{ tenants { slug } }")
        assert await client.error_codes("q") == ["OPERATION_NOT_SUPPORTED"]
        await client.subscribe("m", 'mutation { openAccount(input: {tenant: "wuhan", holderRef: "x", kind: GUEST, '
                                    'acceptedAgreement: true}) { created } }')
        assert await client.error_codes("m") == ["OPERATION_NOT_SUPPORTED"]
        await client.subscribe("v", "subscription { dashboardTick { nope } }")
        assert await client.error_codes("v") == ["GRAPHQL_VALIDATION_FAILED"]
        await client.subscribe("s", "subscription { dashboardTick { ")
        closed = await client.closed()
    assert closed.code == 4400 and "Syntax Error" in closed.reason


async def test_a_document_that_does_not_say_which_operation_runs_nothing(api, database) -> None:
    account = await consenting_account(api)
    freeze = 'mutation M { freezeAccount(input: {accountId: "%s"}) { account { status } } } ' % account
    async with AsgiClient(api.app) as client:
        assert (await client.init(api.registry.issue("wuhan-admin", 600)))["type"] == "connection_ack"
        await client.subscribe("two", freeze + "subscription S { dashboardTick { changes } }")
        assert await client.error_codes("two") == ["GRAPHQL_VALIDATION_FAILED"]
        await client.subscribe("unknown", freeze + "subscription S { dashboardTick { changes } }", operationName="Nope")
        assert await client.error_codes("unknown") == ["BAD_REQUEST"]
        await client.subscribe("nul", ACTIVITY, {"a": account + "\x00"})
        assert await client.error_codes("nul") == ["BAD_USER_INPUT"]
    status = (await api.query("query($id: ID!) { account(id: $id) { status } }", as_="wuhan-app",
                              variables={"id": account}))["account"]["status"]
    assert status == "ACTIVE"  # the mutation never ran


_SUBSCRIBE = ('{"type": "subscribe", "id": "1", "payload": {"query": %s, "variables": {"a": %%s}}}'
              % json.dumps(ACTIVITY))
MALFORMED = {  # what QA sent, and its neighbours: each once crashed the handler (no close frame, a 1006)
    "payload a list": '{"type": "subscribe", "id": "1", "payload": [1]}',
    "payload a string": '{"type": "subscribe", "id": "1", "payload": "x"}',
    "payload null": '{"type": "subscribe", "id": "1", "payload": null}',
    "id an object": '{"type": "subscribe", "id": {"a": 1}, "payload": {"query": "%s"}}' % TICK,
    "id a number": '{"type": "subscribe", "id": 1, "payload": {"query": "%s"}}' % TICK,
    "complete id a list": '{"type": "complete", "id": ["x"]}',
    "complete id empty": '{"type": "complete", "id": ""}',
    "a list": "[1]",
    "a string": '"subscribe"',
    "null": "null",
    "type unknown, long": '{"type": "%s"}' % ("x" * 300),  # quoted in the close reason
    "type a lone surrogate": '{"type": "\\ud800"}',
    "ping payload a string": '{"type": "ping", "payload": "x"}',
    "variables 100,000 deep": _SUBSCRIBE % ("[" * 100_000 + "]" * 100_000),
    "a number of 5,000 digits": _SUBSCRIBE % ("1" * 5_000),
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_message_closes_the_connection_4400(api, caplog, text: str) -> None:
    caplog.set_level(logging.ERROR)
    with structlog.testing.capture_logs() as logs:
        async with AsgiClient(api.app) as client:  # leaving it waits for the app: it must not have raised
            assert (await client.init(api.registry.issue("wuhan-app", 600)))["type"] == "connection_ack"
            await client.send_text(text)
            closed = await client.closed(timeout=5)
    assert closed.code == 4400, closed
    assert _fits_a_close_frame(closed.reason)
    assert not caplog.records and not [line for line in logs if line["log_level"] in ("error", "critical")]


async def test_a_malformed_message_before_the_acknowledgement_closes_4400_too(api) -> None:
    async with AsgiClient(api.app) as client:
        await client.send({"type": "complete", "id": ["x"]})
        closed = await client.closed(timeout=5)
    assert closed.code == 4400, closed


async def test_a_close_reason_quoting_the_client_fits_a_close_frame(api) -> None:
    again = {"type": "subscribe", "id": "\ud800" + "x" * 300, "payload": {"query": TICK}}
    async with AsgiClient(api.app) as client:
        assert (await client.init(api.registry.issue("regulator", 600)))["type"] == "connection_ack"
        await client.send(again)
        await client.send(again)
        closed = await client.closed(timeout=5)
    assert closed.code == 4409 and closed.reason.startswith("Subscriber for "), closed
    assert _fits_a_close_frame(closed.reason)


def _fits_a_close_frame(reason: str) -> bool:
    try:
        return len(reason.encode("utf-8")) <= 123
    except UnicodeEncodeError:  # a lone surrogate
        return False


REWARDS = """rewards(first: $n) { edges { cursor node { id code name description kind remainingStock totalStock
    perAccountLimit limitPeriod validFrom validTo cancellationWindowHours cost { amount unit { name } } } } }"""


async def test_a_subscription_over_its_roles_cost_budget_is_refused_before_it_runs(api) -> None:
    selection = "a: %s b: %s c: %s" % (REWARDS, REWARDS, REWARDS)
    document = "subscription($n: Int) { dashboardTick { tenant { %s } } }" % selection
    over_http = (await api.post('query($n: Int) { tenant(slug: "wuhan") { %s } }' % selection, as_="wuhan-app",
                                variables={"n": 100})).json()["errors"][0]
    assert over_http["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    hub = api.app.state.live_hub
    async with AsgiClient(api.app) as client:
        assert (await client.init(api.registry.issue("wuhan-app", 600)))["type"] == "connection_ack"
        before = subscriptions(hub)
        await client.subscribe("big", document, {"n": 100})
        message = await client.receive()
        assert message["type"] == "error" and message["id"] == "big", message
        cost = over_http["extensions"]["cost"] + 1  # and dashboardTick
        assert message["payload"] == [{"message": over_http["message"].replace(str(cost - 1), str(cost)),
                                       "extensions": over_http["extensions"] | {"cost": cost}}]
        assert subscriptions(hub) == before  # it never ran
        await client.subscribe("small", document, {"n": 10})  # the connection is still open
        assert await started(client, hub, before)
        hub.deliver(city_notice("wuhan"))
        tick = await client.data("small")
        assert len(tick["dashboardTick"]["tenant"]["a"]["edges"]) <= 10
    async with AsgiClient(api.app) as client:  # a regulator's budget is 50,000
        assert (await client.init(api.registry.issue("regulator", 600)))["type"] == "connection_ack"
        before = subscriptions(hub)
        await client.subscribe("big", document, {"n": 100})
        assert await started(client, hub, before)


async def test_an_event_is_read_under_the_subscribers_scope(api, database) -> None:
    account = await consenting_account(api)
    results = await submit(api, "wuhan-tong", [record(account, "bus", 1, local_time(1))])
    notice = await ledger_notice(database, "wuhan", _uuid(account))
    body = await subscription_body(api, ACTIVITY, as_="wuhan-app", variables={"a": account}, notices=[notice])
    assert body == {"data": {"accountActivity": {
        "entries": [{"kind": "BEHAVIOR_CREDIT", "status": "CREDITED", "reductionGrams": "80", "points": "8",
                     "behavior": {"code": "bus"}, "recordId": results[0]["recordId"]}],
        "account": {"balance": {"amount": "8"}}}}, "extensions": body.get("extensions")}


async def test_an_events_statements_do_not_grow_with_its_entries(api, database) -> None:
    document = """subscription($a: ID!) { accountActivity(accountId: $a) {
        entries { kind points behavior { code name } }
        account { balance { amount unit { name } } today { behavior { code } creditedGrams } } } }"""
    counted = []
    for rides in (1, 6):
        account = await consenting_account(api)
        await submit(api, "wuhan-tong", [record(account, "bus", 1, local_time(1, 7, minute)) for minute in range(rides)])
        notice = await ledger_notice(database, "wuhan", _uuid(account))
        with count_queries(database) as statements:
            body = await subscription_body(api, document, as_="wuhan-app", variables={"a": account}, notices=[notice])
        assert len(body["data"]["accountActivity"]["entries"]) == rides
        counted.append(statements)
    assert len(counted[0]) == len(counted[1]), counted


async def test_the_rate_limit_applies_at_subscribe(database, registry) -> None:
    settings = make_test_settings().model_copy(update={"rate_limit_per_second": 0.01, "rate_limit_burst": 2})
    app = create_app(settings, database=database, registry=registry)
    async with AsgiClient(app) as client:
        assert (await client.init(registry.issue("regulator", 600)))["type"] == "connection_ack"
        await client.subscribe("1", TICK)
        await client.subscribe("2", TICK)
        await client.subscribe("3", TICK)
        message = await client.receive()
    assert message["type"] == "error" and message["id"] == "3", message
    error = message["payload"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED" and error["extensions"]["retryAfter"] >= 1


async def test_a_clients_connections_are_capped(database, registry) -> None:
    settings = make_test_settings().model_copy(update={"websocket_max_connections_per_client": 2})
    app = create_app(settings, database=database, registry=registry)
    token = registry.issue("wuhan-app", 600)
    async with AsgiClient(app) as first, AsgiClient(app) as second, AsgiClient(app) as third:
        assert (await first.init(token))["type"] == "connection_ack"
        assert (await second.init(token))["type"] == "connection_ack"
        with pytest.raises(Closed) as refused:
            await third.init(token)
        assert refused.value.code == 1013 and "2 connections" in refused.value.reason, refused.value
        async with AsgiClient(app) as other:  # another client of the same city
            assert (await other.init(registry.issue("wuhan-admin", 600)))["type"] == "connection_ack"
    async with AsgiClient(app) as first, AsgiClient(app) as second:  # the first two have left
        assert (await first.init(token))["type"] == "connection_ack"
        assert (await second.init(token))["type"] == "connection_ack"


async def test_a_trusted_documents_only_client_subscribes_by_id(api, database) -> None:
    async with AsgiClient(api.app) as client:
        assert (await client.init(api.registry.issue("shanghai-app", 600)))["type"] == "connection_ack"
        await client.subscribe("text", TICK)
        assert await client.error_codes("text") == ["TRUSTED_DOCUMENT_REQUIRED"]
        await client.send({"type": "subscribe", "id": "unknown", "payload": {"documentId": "sha256:" + "0" * 64}})
        assert await client.error_codes("unknown") == ["PERSISTED_QUERY_NOT_FOUND"]
        text = f"subscription Ticks{uuid.uuid4().hex} {{ dashboardTick {{ tenant {{ slug }} }} }}"
        document = await register_document(database, "shanghai", text)
        hub = api.app.state.live_hub
        before = subscriptions(hub)
        await client.send({"type": "subscribe", "id": "known", "payload": {"documentId": f"sha256:{document.sha256}"}})
        assert await started(client, hub, before)
        hub.deliver(city_notice("shanghai"))
        assert await client.data("known") == {"dashboardTick": {"tenant": {"slug": "shanghai"}}}


async def test_a_connection_closes_when_its_token_expires(api) -> None:
    async with AsgiClient(api.app) as client:
        assert (await client.init(api.registry.issue("regulator", 2)))["type"] == "connection_ack"  # 1 to 2 s left
        await client.subscribe("1", TICK)
        closed = await client.closed(timeout=10)
    assert closed.code == 4403 and "expired" in closed.reason


async def test_a_cross_origin_page_is_refused_unless_allowed(api, database, registry) -> None:
    async with AsgiClient(api.app, headers={"origin": "https://evil.example"}) as client:
        refused = client.closed_by_server
    assert refused is not None and refused.code == 1008
    async with AsgiClient(api.app, headers={"origin": "http://testserver"}) as client:
        assert client.closed_by_server is None  # the same origin
    settings = make_test_settings().model_copy(update={"websocket_allowed_origins": ["https://dashboard.example"]})
    app = create_app(settings, database=database, registry=registry)
    async with AsgiClient(app, headers={"origin": "https://dashboard.example"}) as client:
        assert (await client.init(registry.issue("regulator", 600)))["type"] == "connection_ack"


async def test_graphiql_still_loads(api) -> None:
    async with AsyncClient(transport=ASGITransport(app=api.app), base_url="http://testserver") as http:
        response = await http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200 and "graphiql" in response.text.lower()


def _uuid(global_id: str) -> uuid.UUID:
    return from_global_id(global_id)[1]


async def test_a_websockets_log_lines_carry_its_request_id(api) -> None:
    import structlog

    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with AsgiClient(api.app, headers={"X-Request-ID": "ws-trace-1"}) as client:
            assert (await client.init(api.registry.issue("wuhan-app", 600)))["type"] == "connection_ack"
    closed = [line for line in logs if line["event"] == "websocket_closed"]
    assert closed and all(line.get("request_id") == "ws-trace-1" for line in closed), logs
