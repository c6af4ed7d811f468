"""Live updates end to end: two `carbon-inclusive serve` processes on this worker's database, real
websocket clients (the `websockets` package), writes over HTTP that commit, PostgreSQL NOTIFY between.

Waiting is always for a message (or for the servers' subscription gauge in /metrics), with a timeout;
"nothing arrives" is shown by what arrives first afterwards, never by a sleep."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from app.db.server import asyncpg_dsn
from app.db.session import Database
from app.graphql.ids import from_global_id, to_global_id
from app.ledger.invariants import verify_all_tenants
from app.tenants.models import tenant_id_for
from bench.common import ServerProcess, server_process
from tests.conftest import Api
from tests.factories import consenting_account, earn, local_time, recent, record, redeem, submit
from tests.live.wsclient import SocketClient

ENV = {"CARBON_WEBSOCKET_INIT_TIMEOUT_SECONDS": "3", "CARBON_WEBSOCKET_MAX_SUBSCRIPTIONS": "3",
       "CARBON_EXPIRY_INTERVAL_SECONDS": "0"}
ACTIVITY = """subscription($a: ID!) { accountActivity(accountId: $a) {
    entries { kind status reductionGrams points behavior { code } recordId redemptionId }
    account { id balance { amount } contribution { grams } } } }"""
OUTCOMES = """subscription { behaviorOutcomes { outcomes {
    externalId status code recordId accountId behavior reductionGrams points } } }"""
TICKS = """subscription { dashboardTick { tenant { slug } changes localDate
    today { accountsOpened reductionGrams pointsIssued pointsRedeemed pointsOutstanding } } }"""
FIELDS = ("accountActivity", "behaviorOutcomes", "dashboardTick")


def _wait_listening(server: ServerProcess, timeout: float = 30) -> None:
    """Until the server's listener is connected (it LISTENs once someone subscribes)."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{server.base_url}/readyz").json().get("live") not in ("listening", "standby"):
        assert time.monotonic() < deadline, "the server's listener did not (re)connect"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def servers(database_target) -> tuple[ServerProcess, ServerProcess]:
    with server_process(database_target, ENV) as a, server_process(database_target, ENV) as b:
        _wait_listening(a)
        _wait_listening(b)
        yield a, b


async def live_subscriptions(server: ServerProcess) -> dict[str, int]:
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{server.base_url}/metrics")).text
    found = dict.fromkeys(FIELDS, 0)
    for field, value in re.findall(r'^carbon_live_subscriptions\{field="(\w+)"\} ([0-9.]+)$', metrics, re.M):
        found[field] = int(float(value))
    return found


async def until_subscribed(server: ServerProcess, **counts: int) -> None:
    """Wait until the server runs exactly these numbers of subscriptions (the other fields: none)."""
    wanted = dict.fromkeys(FIELDS, 0) | counts
    deadline = time.monotonic() + 15
    while (found := await live_subscriptions(server)) != wanted:
        assert time.monotonic() < deadline, f"subscriptions: expected {wanted}, found {found}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def remote(servers, registry, app_engine) -> AsyncIterator[tuple[Api, Api]]:
    """The API of each server over HTTP (every request commits); no subscription left from before. The
    ledger invariants must hold afterwards."""
    for server in servers:
        await until_subscribed(server)
    async with (httpx.AsyncClient(base_url=servers[0].base_url, timeout=60) as a,
                httpx.AsyncClient(base_url=servers[1].base_url, timeout=60) as b):
        yield Api(http=a, registry=registry), Api(http=b, registry=registry)
    report = await verify_all_tenants(Database(app_engine))
    assert report and all(not violations for violations in report.values()), report


async def connected(client: SocketClient, registry, as_: str) -> SocketClient:  # type: ignore[no-untyped-def]
    assert (await client.init(registry.issue(as_, 600))) == {"type": "connection_ack"}
    return client


async def outcomes(client: SocketClient, count: int) -> list[dict]:
    """The next `count` outcomes (from one event or several)."""
    found: list[dict] = []
    while len(found) < count:
        found += (await client.data("outcomes"))["behaviorOutcomes"]["outcomes"]
    assert len(found) == count, found
    return found


# ---------------------------------------------------------------------------------------------- tests


async def test_a_city_app_receives_activity_written_through_either_server(servers, remote, registry) -> None:
    (a, b), (api_a, api_b) = servers, remote
    account = await consenting_account(api_b)
    async with SocketClient(a.ws_url) as on_a, SocketClient(b.ws_url) as on_b:
        for client in (await connected(on_a, registry, "wuhan-app"), await connected(on_b, registry, "wuhan-app")):
            await client.subscribe("activity", ACTIVITY, {"a": account})
        await until_subscribed(a, accountActivity=1)
        await until_subscribed(b, accountActivity=1)

        recorded = await submit(api_b, "wuhan-tong", [record(account, "bus", 1, local_time(1))])
        credit = {"accountActivity": {
            "entries": [{"kind": "BEHAVIOR_CREDIT", "status": "CREDITED", "reductionGrams": "80", "points": "8",
                         "behavior": {"code": "bus"}, "recordId": recorded[0]["recordId"], "redemptionId": None}],
            "account": {"id": account, "balance": {"amount": "8"}, "contribution": {"grams": "80"}}}}
        assert await on_a.data("activity") == credit
        assert await on_b.data("activity") == credit

        rides = await earn(api_b, account, 48)  # six rides, one batch: one event with six entries
        for client in (on_a, on_b):
            event = (await client.data("activity"))["accountActivity"]
            assert sorted(entry["recordId"] for entry in event["entries"]) == sorted(r["recordId"] for r in rides)
            assert {(entry["kind"], entry["points"]) for entry in event["entries"]} == {("BEHAVIOR_CREDIT", "8")}
            assert event["account"]["balance"] == {"amount": "56"}

        donation = await _reward(api_a, "east-lake-wetland")
        redeemed = await redeem(api_a, account, donation)
        assert redeemed["userErrors"] == [], redeemed
        listed = await api_a.query("""query($a: ID!) { account(id: $a) { activity(first: 1) { edges { node {
            kind status reductionGrams points behavior { code } recordId redemptionId } } } } }""", as_="wuhan-app",
                                   variables={"a": account})
        newest = listed["account"]["activity"]["edges"][0]["node"]
        assert newest == {"kind": "DONATION", "status": "FULFILLED", "reductionGrams": "0", "points": "-50",
                          "behavior": None, "recordId": None, "redemptionId": redeemed["redemption"]["id"]}
        for client in (on_a, on_b):
            event = (await client.data("activity"))["accountActivity"]
            assert event["entries"] == [newest]  # what the activity query lists, exactly
            assert event["account"]["balance"] == {"amount": "6"}


async def test_partners_receive_the_outcomes_of_their_own_records_only(servers, remote, registry) -> None:
    (a, b), (api_a, api_b) = servers, remote
    account = await consenting_account(api_a)  # wuhan-tong: TRAVEL; hankou-bank: LIFE, CONSUMPTION
    async with SocketClient(a.ws_url) as tong_a, SocketClient(b.ws_url) as tong_b, SocketClient(a.ws_url) as bank:
        for client, partner in ((tong_a, "wuhan-tong"), (tong_b, "wuhan-tong"), (bank, "hankou-bank")):
            await (await connected(client, registry, partner)).subscribe("outcomes", OUTCOMES)
        await until_subscribed(a, behaviorOutcomes=2)
        await until_subscribed(b, behaviorOutcomes=1)

        tag = uuid.uuid4().hex[:10]
        results = await submit(api_b, "wuhan-tong", [
            record(account, "bus", 1, local_time(1), f"{tag}-bus"),
            record(account, "online_living_payment", 1, local_time(1), f"{tag}-bill")])  # no LIFE consent
        assert [result["status"] for result in results] == ["CREDITED", "REJECTED"]
        expected = [
            {"externalId": f"{tag}-bus", "status": "CREDITED", "code": None, "recordId": results[0]["recordId"],
             "accountId": account, "behavior": "bus", "reductionGrams": "80", "points": "8"},
            {"externalId": f"{tag}-bill", "status": "REJECTED", "code": "CONSENT_MISSING", "recordId": None,
             "accountId": account, "behavior": "online_living_payment", "reductionGrams": "0", "points": "0"}]
        assert await outcomes(tong_a, 2) == expected
        assert await outcomes(tong_b, 2) == expected

        own = await submit(api_a, "hankou-bank", [record(account, "online_living_payment", 1, local_time(1),
                                                         f"{tag}-bank")])
        # The bank's first outcome is its own: wuhan-tong's never reached it.
        assert [(o["externalId"], o["status"], o["recordId"]) for o in await outcomes(bank, 1)] == [
            (f"{tag}-bank", "CREDITED", own[0]["recordId"])]

        reversal = await api_b.query("""mutation($id: ID!) { reverseBehaviorRecord(input: {recordId: $id,
            reason: "duplicate trip"}) { userErrors { code } } }""", as_="wuhan-admin",
                                     variables={"id": results[0]["recordId"]})
        assert reversal["reverseBehaviorRecord"]["userErrors"] == []
        for client in (tong_a, tong_b):
            assert await outcomes(client, 1) == [expected[0] | {"status": "REVERSED"}]


async def test_dashboard_ticks_reach_regulators_for_every_city_and_a_city_for_its_own(servers, remote,
                                                                                      registry) -> None:
    (a, b), (api_a, api_b) = servers, remote
    async with SocketClient(a.ws_url) as regulator, SocketClient(b.ws_url) as city:
        await (await connected(regulator, registry, "regulator")).subscribe("ticks", TICKS)
        await (await connected(city, registry, "wuhan-app")).subscribe("ticks", TICKS)
        await until_subscribed(a, dashboardTick=1)
        await until_subscribed(b, dashboardTick=1)

        await consenting_account(api_b, app="beijing-app", providers={"beijing-mobility": ["TRAVEL"]})
        account = await consenting_account(api_a)
        await submit(api_a, "wuhan-tong", [record(account, "bus", 1, recent())])

        beijing_seen, tick = False, None
        while not (beijing_seen and tick):  # the regulator: Beijing's ticks and Wuhan's, the credit among them
            received = (await regulator.data("ticks"))["dashboardTick"]
            beijing_seen |= received["tenant"]["slug"] == "beijing"
            if received["tenant"]["slug"] == "wuhan" and "BEHAVIOR_CREDIT" in received["changes"]:
                tick = received
        first = (await city.data("ticks"))["dashboardTick"]
        assert first["tenant"]["slug"] == "wuhan", first  # Beijing's ticks never reach Wuhan's app

        figures = await api_a.query("""query($d: Date!) { crossCityDashboard(from: $d, to: $d) { cities {
            tenant { slug } accountsOpened reductionGrams pointsIssued pointsRedeemed pointsOutstanding } } }""",
                                    as_="regulator", variables={"d": tick["localDate"]})
        wuhan = next(c for c in figures["crossCityDashboard"]["cities"] if c["tenant"]["slug"] == "wuhan")
        assert tick["today"] == {key: value for key, value in wuhan.items() if key != "tenant"}


async def test_connections_without_a_valid_token_are_closed_4403_with_nothing_sent(servers, registry) -> None:
    a = servers[0]
    expired = registry.issue("wuhan-app", 60, now=time.time() - 3600)
    for payload in ({}, {"authorization": "Bearer not-a-jwt"}, {"authorization": f"Bearer {expired}"},
                    {"authorization": registry.issue("wuhan-app", 600)}):  # no "Bearer "
        async with SocketClient(a.ws_url) as client:
            await client.send({"type": "connection_init", "payload": payload})
            closed = await client.closed()
        assert closed.code == 4403 and closed.reason.startswith("Forbidden"), (payload, closed)
    assert "expired" in (await _closed_with({"authorization": f"Bearer {expired}"}, a)).reason

    token = registry.issue("wuhan-app", 600)
    async with SocketClient(a.ws_url, headers={"Authorization": f"Bearer {token}"}) as client:
        assert await client.init(None) == {"type": "connection_ack"}  # the upgrade request's header
    async with SocketClient(a.ws_url) as client:  # no connection_init within the timeout (3 s here)
        assert (await client.closed(timeout=10)).code == 4408
    async with SocketClient(a.ws_url) as client:
        await client.subscribe("early", TICKS)
        assert (await client.closed()).code == 4401
    async with SocketClient(a.ws_url, subprotocols=("graphql-ws",)) as client:  # the legacy protocol
        assert (await client.closed()).code == 4406


async def test_malformed_messages_get_a_close_frame_and_log_no_error(servers, registry) -> None:
    """Through uvicorn, which writes the close frame: an exception in the handler, or a reason no close
    frame can carry (over 123 bytes, not UTF-8), dropped the connection (1006) and logged an error."""
    a = servers[0]
    logged = len(a.stderr())
    deep = "[" * 100_000 + "]" * 100_000
    twice = '{"type": "subscribe", "id": "%s", "payload": {"query": "subscription { dashboardTick { changes } }"}}' \
        % ("x" * 300)
    cases = [(['{"type": "subscribe", "id": "1", "payload": [1]}'], 4400),
             (['{"type": "complete", "id": ["x"]}'], 4400),
             (['{"type": "subscribe", "id": "1", "payload": {"query": "{ a }", "variables": {"a": %s}}}' % deep], 4400),
             (['{"type": "%s"}' % ("x" * 300)], 4400),  # strawberry quotes the type in the reason
             (['{"type": "\\ud800"}'], 4400),
             ([twice, twice], 4409)]  # ... and the id
    for messages, code in cases:
        async with SocketClient(a.ws_url) as client:
            await connected(client, registry, "regulator")
            for message in messages:
                await client.send_text(message)
            closed = await client.closed()
        assert closed.code == code, (messages[0][:80], closed)
    log = a.stderr()[logged:]
    assert "Exception in ASGI application" not in log and '"level": "error"' not in log, log


async def _closed_with(payload: dict, server: ServerProcess):  # type: ignore[no-untyped-def]
    async with SocketClient(server.ws_url) as client:
        await client.send({"type": "connection_init", "payload": payload})
        return await client.closed()


async def test_another_citys_account_is_refused_as_a_missing_one(servers, remote, registry) -> None:
    a, (api_a, _) = servers[0], remote
    account = await consenting_account(api_a)
    missing = to_global_id("Account", uuid.uuid4())
    async with SocketClient(a.ws_url) as beijing, SocketClient(a.ws_url) as partner, SocketClient(a.ws_url) as app:
        await connected(beijing, registry, "beijing-app")
        answers = []
        for id_, target in (("foreign", account), ("missing", missing), ("malformed", "nope")):
            await beijing.subscribe(id_, ACTIVITY, {"a": target})
            message = await beijing.receive()
            assert message["type"] == "error" and message["id"] == id_, message
            answers.append([(error["message"], error["extensions"]["code"]) for error in message["payload"]])
        assert answers[0] == answers[1] == answers[2] == [("no such account in this city", "ACCOUNT_NOT_FOUND")]

        await connected(partner, registry, "wuhan-tong")
        await partner.subscribe("activity", ACTIVITY, {"a": account})
        assert await partner.error_codes("activity") == ["FORBIDDEN"]
        await connected(app, registry, "wuhan-app")
        await app.subscribe("outcomes", OUTCOMES)
        assert await app.error_codes("outcomes") == ["FORBIDDEN"]


async def test_a_rolled_back_write_sends_nothing(servers, remote, registry, database_target) -> None:
    (a, _), (api_a, api_b) = servers, remote
    account = await consenting_account(api_a)
    async with SocketClient(a.ws_url) as client:
        await (await connected(client, registry, "wuhan-app")).subscribe("activity", ACTIVITY, {"a": account})
        await until_subscribed(a, accountActivity=1)

        _, kwargs = asyncpg_dsn(database_target.app_url)
        connection = await asyncpg.connect(**kwargs)
        try:
            transaction = connection.transaction()
            await transaction.start()
            await connection.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant_id_for("wuhan")))
            await connection.execute(
                "INSERT INTO ledger_transactions (id, tenant_id, account_id, kind, status, occurred_at) "
                "VALUES ($1, $2, $3, 'BEHAVIOR_CREDIT', 'CREDITED', now())",
                uuid.uuid4(), tenant_id_for("wuhan"), from_global_id(account)[1])
            await transaction.rollback()
        finally:
            await connection.close()

        recorded = await submit(api_b, "wuhan-tong", [record(account, "subway", 1, local_time(1))])
        event = (await client.data("activity"))["accountActivity"]
        assert [entry["recordId"] for entry in event["entries"]] == [recorded[0]["recordId"]]


async def test_complete_stops_delivery(servers, remote, registry) -> None:
    (a, _), (api_a, _) = servers, remote
    account = await consenting_account(api_a)
    async with SocketClient(a.ws_url) as client:
        await (await connected(client, registry, "wuhan-app")).subscribe("first", ACTIVITY, {"a": account})
        await until_subscribed(a, accountActivity=1)
        await client.complete("first")
        await until_subscribed(a)
        await submit(api_a, "wuhan-tong", [record(account, "bus", 1, local_time(1))])  # for "first": not sent

        await client.subscribe("second", ACTIVITY, {"a": account})
        await until_subscribed(a, accountActivity=1)
        recorded = await submit(api_a, "wuhan-tong", [record(account, "bus", 1, local_time(2))])
        event = (await client.data("second"))["accountActivity"]  # the first message is the second's
        assert [entry["recordId"] for entry in event["entries"]] == [recorded[0]["recordId"]]


async def test_subscriptions_per_connection_are_capped_and_only_subscriptions_are_served(servers, remote,
                                                                                        registry) -> None:
    a = servers[0]
    async with SocketClient(a.ws_url) as client:
        await connected(client, registry, "regulator")
        await client.subscribe("query", "{ tenants { slug } }")
        assert await client.error_codes("query") == ["OPERATION_NOT_SUPPORTED"]
        for id_ in ("1", "2", "3"):
            await client.subscribe(id_, TICKS)
        await until_subscribed(a, dashboardTick=3)
        await client.subscribe("4", TICKS)
        message = await client.receive()
        assert message["type"] == "error" and message["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        assert "at most 3" in message["payload"][0]["message"]
        await client.complete("2")
        await client.subscribe("4", TICKS)
        await until_subscribed(a, dashboardTick=3)


async def test_the_server_shuts_down_cleanly_with_subscribers_connected(database_target, registry) -> None:
    with server_process(database_target, ENV) as server:
        _wait_listening(server)
        async with SocketClient(server.ws_url) as regulator, SocketClient(server.ws_url) as app:
            await (await connected(regulator, registry, "regulator")).subscribe("ticks", TICKS)
            await (await connected(app, registry, "wuhan-app")).subscribe("ticks", TICKS)
            await until_subscribed(server, dashboardTick=2)
            server.process.send_signal(signal.SIGTERM)
            assert (await regulator.closed()).code == 1012  # "service restart": reconnect elsewhere
            assert (await app.closed()).code == 1012
        assert await asyncio.to_thread(server.process.wait, 30) == 0
        log = server.stderr()
    assert "Traceback" not in log and '"level": "error"' not in log, log
    assert log.rstrip().endswith("stopped")


async def test_a_dropped_listener_disconnects_subscribers_and_reconnects(servers, remote, registry,
                                                                         database_target) -> None:
    (a, _), (api_a, api_b) = servers, remote
    account = await consenting_account(api_a)
    async with SocketClient(a.ws_url) as client:
        await (await connected(client, registry, "wuhan-app")).subscribe("activity", ACTIVITY, {"a": account})
        await until_subscribed(a, accountActivity=1)
        _, kwargs = asyncpg_dsn(database_target.owner_url)
        owner = await asyncpg.connect(**kwargs)
        try:
            ended = await owner.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                         "WHERE application_name = 'carbon-inclusive-live' AND datname = current_database()")
        finally:
            await owner.close()
        assert ended == 2  # one listener per server
        closed = await client.closed()
    assert closed.code == 1013 and "re-sync" in closed.reason
    for server in servers:
        await asyncio.to_thread(_wait_listening, server)
    async with SocketClient(a.ws_url) as client:
        await (await connected(client, registry, "wuhan-app")).subscribe("activity", ACTIVITY, {"a": account})
        await until_subscribed(a, accountActivity=1)
        recorded = await submit(api_b, "wuhan-tong", [record(account, "bus", 1, local_time(1))])
        event = (await client.data("activity"))["accountActivity"]
        assert [entry["recordId"] for entry in event["entries"]] == [recorded[0]["recordId"]]


async def _reward(api: Api, code: str) -> str:
    data = await api.query("""{ tenant(slug: "wuhan") { rewards(first: 100) { edges { node { id code } } } } }""",
                           as_="wuhan-app")
    return next(edge["node"]["id"] for edge in data["tenant"]["rewards"]["edges"] if edge["node"]["code"] == code)
