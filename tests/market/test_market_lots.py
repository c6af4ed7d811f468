"""Market lots through the API: issue (pool, serials, buffer, composition), list, sell, retire with a signed
certificate; a milligram in one lot only (by the database); conservation; the buffer-pool policy on
reversals; concurrent retirements; citizens see their lot; regulators see every city's lots."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import text

from app.db.server import asyncpg_dsn
from app.db.session import TenantScope
from app.graphql.ids import from_global_id
from app.ledger.signing import verify
from app.tenants.models import tenant_id_for
from tests.factories import SHANGHAI, consenting_account, local_time, record, submit

LOT = """id city number periodFrom periodTo vintage status records pooledGrams bufferGrams reversedGrams
    shortfallGrams serialKilograms serialFrom serialTo retiredKilograms cancelledKilograms availableKilograms
    composition { behavior configVersion records grams } venue buyer priceYuan"""
ISSUE = f"""mutation($i: IssueMarketLotInput!) {{ issueMarketLot(input: $i) {{ lot {{ {LOT} }}
    userErrors {{ code field message }} }} }}"""
LIST = f"""mutation($i: ListMarketLotInput!) {{ listMarketLot(input: $i) {{ lot {{ {LOT} }} userErrors {{ code }} }} }}"""
SELL = f"""mutation($i: SellMarketLotInput!) {{ sellMarketLot(input: $i) {{ lot {{ {LOT} }} userErrors {{ code }} }} }}"""
RETIRE = f"""mutation($i: RetireCreditsInput!) {{ retireCredits(input: $i) {{
    certificate {{ id kilograms serialFrom serialTo beneficiary document signature keyId }}
    lot {{ {LOT} }} userErrors {{ code field message }} }} }}"""
REVERSE = """mutation($i: ReverseBehaviorRecordInput!) { reverseBehaviorRecord(input: $i) { userErrors { code } } }"""
WUHAN = tenant_id_for("wuhan")


def _day(days_ago: int) -> str:
    return (datetime.now(SHANGHAI).date() - timedelta(days=days_ago)).isoformat()


PERIOD = {"tenant": "wuhan", "periodFrom": _day(6), "periodTo": _day(1)}


async def _rides(api, kilometres: list[int], days_ago: int = 2) -> list[dict]:
    """Shared-bike rides in Wuhan: 93.3 g a km (at most 1,866 g a ride)."""
    results = []
    for km in kilometres:
        account = await consenting_account(api)
        results += await submit(api, "wuhan-tong", [record(account, "shared_bike", km, local_time(days_ago, 8))])
    assert all(r["status"] == "CREDITED" for r in results), results
    return results


async def _verified_mg(database, pooled: bool | None = None) -> int:
    condition = {None: "", True: "AND EXISTS", False: "AND NOT EXISTS"}[pooled]
    if pooled is not None:
        condition += " (SELECT 1 FROM market_lot_records m WHERE m.record_id = r.id)"
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        return int(await session.scalar(text(
            f"SELECT coalesce(sum(reduction_mg), 0) FROM behavior_records r WHERE reversed_at IS NULL {condition}")))


async def _issue(api, **period) -> dict:
    key = {"idempotencyKey": uuid.uuid4().hex}
    return (await api.query(ISSUE, as_="wuhan-admin", variables={"i": PERIOD | key | period}))["issueMarketLot"]


async def _sold(api, lot_id: str) -> dict:
    assert (await api.query(LIST, as_="wuhan-admin", variables={"i": {"lotId": lot_id, "venue": "Hubei Carbon Emission "
                                                                                               "Exchange"}}))
    sold = await api.query(SELL, as_="wuhan-admin", variables={"i": {"lotId": lot_id, "buyer": "Wuhan Steel Co.",
                                                                       "priceYuan": "1234.50"}})
    assert sold["sellMarketLot"]["userErrors"] == []
    return sold["sellMarketLot"]["lot"]


async def test_a_lot_pools_the_period_with_serials_buffer_and_composition(api, database) -> None:
    await _rides(api, [20, 20, 10])
    unpooled_before = await _verified_mg(database, pooled=False)
    issued = await _issue(api)
    assert issued["userErrors"] == [], issued
    lot = issued["lot"]
    pooled_mg = int(Decimal(lot["pooledGrams"]) * 1000)
    assert pooled_mg > 0 and lot["status"] == "ISSUED" and lot["vintage"] == int(PERIOD["periodFrom"][:4])
    serial_kg, buffer_mg = int(lot["serialKilograms"]), int(Decimal(lot["bufferGrams"]) * 1000)
    assert serial_kg * 1_000_000 + buffer_mg == pooled_mg and buffer_mg >= pooled_mg * 5 / 100
    assert (serial_kg + 1) * 1_000_000 > pooled_mg * 95 / 100  # no more withheld than needed
    assert sum(Decimal(part["grams"]) for part in lot["composition"]) == Decimal(lot["pooledGrams"])
    assert sum(int(part["records"]) for part in lot["composition"]) == int(lot["records"])
    # Conservation: what was unpooled in the period is now pooled, and pooled + unpooled = every verified mg.
    assert await _verified_mg(database, pooled=True) + await _verified_mg(database, pooled=False) == \
        await _verified_mg(database)
    assert await _verified_mg(database, pooled=False) == unpooled_before - pooled_mg
    first, last = int(lot["serialFrom"].rsplit("-", 1)[1]), int(lot["serialTo"].rsplit("-", 1)[1])
    assert lot["serialFrom"].startswith(f"WUHAN-{lot['vintage']}-") and last - first + 1 == serial_kg
    again = await _issue(api)
    assert [e["code"] for e in again["userErrors"]] == ["NOTHING_TO_POOL"]  # a milligram in one lot only


async def test_the_database_refuses_a_record_in_two_lots(api, database) -> None:
    await _rides(api, [20])
    assert (await _issue(api))["userErrors"] == []
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        with pytest.raises(Exception, match="market_lot_records_pkey|duplicate key"):
            async with session.begin_nested():
                await session.execute(text("INSERT INTO market_lot_records (record_id, tenant_id, lot_id, reduction_mg) "
                                           "SELECT record_id, tenant_id, lot_id, reduction_mg FROM market_lot_records "
                                           "LIMIT 1"))


@pytest.mark.parametrize(("period", "code"), [
    ({"periodFrom": _day(1), "periodTo": _day(3)}, "INVALID_PERIOD"),
    ({"periodTo": _day(0)}, "INVALID_PERIOD"),  # today is not finished
    ({"periodFrom": "2025-12-30", "periodTo": "2026-01-02"}, "INVALID_PERIOD"),  # two vintages
    ({"periodFrom": "2024-01-01", "periodTo": "2024-01-31"}, "NOTHING_TO_POOL"),
    ({"tenant": "beijing"}, "LOT_NOT_FOUND"),  # another city's operator
])
async def test_bad_issues_change_nothing(api, database, period, code) -> None:
    await _rides(api, [20])
    pooled = await _verified_mg(database, pooled=True)
    refused = await _issue(api, **period)
    assert refused["lot"] is None and [e["code"] for e in refused["userErrors"]] == [code], refused
    assert await _verified_mg(database, pooled=True) == pooled


async def test_a_small_pool_gets_no_lot(api) -> None:
    await _rides(api, [5], days_ago=5)  # 466.5 g on a day no other test writes
    refused = await _issue(api, periodFrom=_day(5), periodTo=_day(5))
    assert [e["code"] for e in refused["userErrors"]] == ["LOT_TOO_SMALL"]


async def test_lifecycle_and_a_certificate_anyone_can_verify(api) -> None:
    await _rides(api, [20, 20, 20])
    lot = (await _issue(api))["lot"]
    early = await api.query(RETIRE, as_="wuhan-admin", variables={"i": {
        "lotId": lot["id"], "kilograms": 1, "beneficiary": "x", "reason": "y", "idempotencyKey": "k0"}})
    assert [e["code"] for e in early["retireCredits"]["userErrors"]] == ["WRONG_STATUS"]  # not sold yet
    sold = await _sold(api, lot["id"])
    assert (sold["status"], sold["buyer"], sold["priceYuan"], sold["venue"]) == (
        "SOLD", "Wuhan Steel Co.", "1234.50", "Hubei Carbon Emission Exchange")
    done = (await api.query(RETIRE, as_="wuhan-admin", variables={"i": {
        "lotId": lot["id"], "kilograms": 2, "beneficiary": "Wuhan Marathon 2026", "reason": "event offset",
        "idempotencyKey": "marathon"}}))
    certificate = done["retireCredits"]["certificate"]
    assert done["retireCredits"]["userErrors"] == [] and certificate["kilograms"] == 2
    assert certificate["serialFrom"] == lot["serialFrom"] and certificate["document"]["lot"] == lot["number"]
    key = (await api.query("{ signingKey { keyId pem } }", as_="wuhan-tong"))["signingKey"]
    public = load_pem_public_key(key["pem"].encode())
    assert certificate["keyId"] == key["keyId"] and verify(public, certificate["document"], certificate["signature"])
    forged = certificate["document"] | {"kilograms": 20}
    assert not verify(public, forged, certificate["signature"])
    rest = int(done["retireCredits"]["lot"]["availableKilograms"])
    too_many = await api.query(RETIRE, as_="wuhan-admin", variables={"i": {
        "lotId": lot["id"], "kilograms": rest + 1, "beneficiary": "b", "reason": "r", "idempotencyKey": "too-many"}})
    assert [e["code"] for e in too_many["retireCredits"]["userErrors"]] == ["NOT_ENOUGH_CREDITS"]
    final = await api.query(RETIRE, as_="wuhan-admin", variables={"i": {
        "lotId": lot["id"], "kilograms": rest, "beneficiary": "b", "reason": "r", "idempotencyKey": "rest"}})
    assert final["retireCredits"]["lot"]["status"] == "RETIRED"
    assert final["retireCredits"]["certificate"]["serialTo"] == lot["serialTo"]


async def test_reversals_are_answered_by_the_buffer_then_by_cancelled_serials(api) -> None:
    rides = await _rides(api, [20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 3])
    lot = (await _issue(api))["lot"]
    buffer_mg = int(Decimal(lot["bufferGrams"]) * 1000)
    small = next(r for r in rides if Decimal(r["reductionGrams"]) * 1000 <= buffer_mg)
    await api.query(REVERSE, as_="wuhan-admin", variables={"i": {"recordId": small["recordId"], "reason": "fraud"}})
    after = (await api.query(f"{{ marketLots(first: 5) {{ edges {{ node {{ {LOT} }} }} }} }}", as_="wuhan-admin"))
    mine = next(e["node"] for e in after["marketLots"]["edges"] if e["node"]["id"] == lot["id"])
    assert Decimal(mine["reversedGrams"]) == Decimal(small["reductionGrams"]) and mine["cancelledKilograms"] == 0
    for ride in [r for r in rides if r is not small][:2]:  # beyond the buffer: serials cancelled from the top
        await api.query(REVERSE, as_="wuhan-admin", variables={"i": {"recordId": ride["recordId"], "reason": "fraud"}})
    after = (await api.query(f"{{ marketLots(first: 5) {{ edges {{ node {{ {LOT} }} }} }} }}", as_="wuhan-admin"))
    mine = next(e["node"] for e in after["marketLots"]["edges"] if e["node"]["id"] == lot["id"])
    reversed_mg = int(Decimal(mine["reversedGrams"]) * 1000)
    cancelled = int(mine["cancelledKilograms"])
    assert cancelled == -(-(reversed_mg - buffer_mg) // 1_000_000) > 0 and Decimal(mine["shortfallGrams"]) == 0
    backing = int(Decimal(mine["pooledGrams"]) * 1000) - reversed_mg
    assert (int(mine["serialKilograms"]) - cancelled) * 1_000_000 <= backing  # every live serial is backed


async def test_citizens_see_their_lot_and_regulators_every_city(api) -> None:
    account = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account, "shared_bike", 20, local_time(2, 8))] )
    await _rides(api, [20])
    lot = (await _issue(api))["lot"]
    activity = await api.query("""query($id: ID!) { account(id: $id) { activity(first: 5) { edges { node {
        kind marketLot { id number serialFrom } } } } } }""", as_="wuhan-app", variables={"id": account})
    credits = [e["node"] for e in activity["account"]["activity"]["edges"] if e["node"]["kind"] == "BEHAVIOR_CREDIT"]
    assert credits and all(c["marketLot"] == {"id": lot["id"], "number": lot["number"], "serialFrom": lot["serialFrom"]}
                           for c in credits)
    seen = await api.query(f"""{{ crossCityDashboard(from: "{_day(30)}", to: "{_day(0)}") {{ cities {{
        tenant {{ slug }} marketLots {{ id serialKilograms }} }} }} }}""", as_="regulator")
    by_city = {c["tenant"]["slug"]: c["marketLots"] for c in seen["crossCityDashboard"]["cities"]}
    assert lot["id"] in [entry["id"] for entry in by_city["wuhan"]] and by_city["beijing"] == []
    assert (await api.post("{ marketLots(first: 1) { edges { cursor } } }", as_="wuhan-app")).json()["errors"][0][
        "extensions"]["code"] == "FORBIDDEN"
    # An operator-only field asked by a regulator is null with its error; the lots still come back.
    body = (await api.post("{ marketLots(first: 5) { edges { node { id retirements { id } } } } }",
                           as_="regulator")).json()
    lots = {e["node"]["id"]: e["node"] for e in body["data"]["marketLots"]["edges"]}
    assert lots[lot["id"]]["retirements"] is None
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}


async def test_regulators_see_no_contributor_figures_of_a_lot_below_the_minimum(api) -> None:
    """QA: a lot of one citizen's records showed the regulator its records, composition and proceeds. Below
    the minimum group size (5 contributors) a regulator gets null for what is about the contributors, and
    the market's figures (serials, status, price) as the operators do; the city's operators see it whole."""
    about_contributors = ("contributors", "records", "pooledGrams", "bufferGrams", "reversedGrams", "shortfallGrams",
                          "composition", "proceedsPoints")
    fields = " ".join(["id status serialFrom serialTo serialKilograms retiredKilograms cancelledKilograms "
                       "availableKilograms venue buyer priceYuan", *about_contributors]).replace(
        "composition", "composition { behavior configVersion records grams }")
    query = f"{{ marketLots(first: 50) {{ edges {{ node {{ {fields} }} }} }} }}"

    async def lot_as(client: str, lot_id: str) -> dict:
        edges = (await api.query(query, as_=client))["marketLots"]["edges"]
        return next(edge["node"] for edge in edges if edge["node"]["id"] == lot_id)

    await _rides(api, [20], days_ago=6)  # one citizen's ride, on a day no other test pools
    alone = await _sold(api, (await _issue(api, periodFrom=_day(6), periodTo=_day(6)))["lot"]["id"])
    operator, regulator = await lot_as("wuhan-admin", alone["id"]), await lot_as("regulator", alone["id"])
    assert operator["contributors"] == 1 and operator["records"] == 1 and len(operator["composition"]) == 1
    assert int(operator["proceedsPoints"]) > 0 and Decimal(operator["pooledGrams"]) > 0
    assert {key: regulator[key] for key in about_contributors} == dict.fromkeys(about_contributors)
    assert {key: value for key, value in regulator.items() if key not in about_contributors} == {
        key: value for key, value in operator.items() if key not in about_contributors}
    seen = await api.query(f"""{{ crossCityDashboard(from: "{_day(30)}", to: "{_day(0)}") {{ cities {{
        marketLots {{ id pooledGrams serialKilograms }} }} }} }}""", as_="regulator")
    on_dashboard = next(lot for city in seen["crossCityDashboard"]["cities"] for lot in city["marketLots"]
                        if lot["id"] == alone["id"])
    assert on_dashboard == {"id": alone["id"], "pooledGrams": None, "serialKilograms": operator["serialKilograms"]}

    await _rides(api, [20] * 5, days_ago=5)  # five contributors: the regulator sees the lot whole
    five = (await _issue(api, periodFrom=_day(5), periodTo=_day(5)))["lot"]
    assert await lot_as("regulator", five["id"]) == await lot_as("wuhan-admin", five["id"])
    assert (await lot_as("regulator", five["id"]))["contributors"] == 5


async def test_concurrent_retirements_never_exceed_the_lot(committed_api, database_target) -> None:
    api = committed_api
    await _rides(api, [20, 20], days_ago=3)
    issued = await _issue(api, periodFrom=_day(3), periodTo=_day(3))
    assert issued["userErrors"] == [], issued
    lot = await _sold(api, issued["lot"]["id"])
    available = int(lot["availableKilograms"])
    results = await asyncio.gather(*(api.query(RETIRE, as_="wuhan-admin", variables={"i": {
        "lotId": lot["id"], "kilograms": 1, "beneficiary": f"b{i}", "reason": "r", "idempotencyKey": f"c{i}"}}) for i in range(available + 4)))
    done = [r["retireCredits"]["certificate"] for r in results if r["retireCredits"]["certificate"]]
    refused = [r["retireCredits"]["userErrors"][0]["code"] for r in results if r["retireCredits"]["userErrors"]]
    assert len(done) == available and refused == ["NOT_ENOUGH_CREDITS"] * 4
    assert len({c["serialFrom"] for c in done}) == available  # no serial retired twice
    _, kwargs = asyncpg_dsn(database_target.owner_url)
    owner = await asyncpg.connect(**kwargs)
    try:
        row = await owner.fetchrow("SELECT status, retired_kg FROM market_lots WHERE serial_kg = retired_kg + "
                                   "cancelled_kg AND retired_kg = $1 ORDER BY issued_at DESC LIMIT 1", available)
        assert row is not None and row["status"] == "RETIRED"
    finally:
        await owner.close()


async def test_a_key_raced_on_another_lot_is_a_conflict_not_a_failure(committed_api, database_target) -> None:
    """The key is the city's and the lock the lot's: a retirement of another lot with the same key,
    committing while this one runs, makes this one IDEMPOTENCY_CONFLICT (it was an IntegrityError)."""
    api = committed_api
    await _rides(api, [20, 20], days_ago=3)
    await _rides(api, [20, 20], days_ago=4)
    lot = await _sold(api, (await _issue(api, periodFrom=_day(3), periodTo=_day(3)))["lot"]["id"])
    other = await _sold(api, (await _issue(api, periodFrom=_day(4), periodTo=_day(4)))["lot"]["id"])
    key = f"raced-{uuid.uuid4().hex[:8]}"
    _, kwargs = asyncpg_dsn(database_target.owner_url)
    owner = await asyncpg.connect(**kwargs)
    try:
        racing = owner.transaction()  # the other lot's retirement with the key: inserted, not yet committed
        await racing.start()
        await owner.execute("""
            INSERT INTO market_retirements (id, tenant_id, lot_id, kilograms, serial_from, beneficiary, reason,
                                            retired_at, by_client, document, signature, idempotency_key, request_hash)
            SELECT gen_random_uuid(), tenant_id, id, 1, serial_start, 'b', 'r', now(), 'test', '{}', 's', $2, 'other'
              FROM market_lots WHERE id = $1""", from_global_id(other["id"])[1], key)
        call = asyncio.create_task(api.query(RETIRE, as_="wuhan-admin", variables={"i": {
            "lotId": lot["id"], "kilograms": 1, "beneficiary": "b", "reason": "r", "idempotencyKey": key}}))
        for _ in range(1000):  # until the request waits on the uncommitted key
            if await owner.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND wait_event = 'transactionid' AND datname = current_database()"):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the retirement never waited on the raced key")
        await racing.commit()
        refused = (await asyncio.wait_for(call, 30))["retireCredits"]
        assert [e["code"] for e in refused["userErrors"]] == ["IDEMPOTENCY_CONFLICT"], refused
        assert await owner.fetchval("SELECT retired_kg FROM market_lots WHERE id = $1",
                                    from_global_id(lot["id"])[1]) == 0  # nothing retired, nothing half-written
    finally:
        await owner.execute("DELETE FROM market_retirements WHERE idempotency_key = $1", key)
        await owner.close()


async def test_the_issues_own_example_needs_no_key(api) -> None:
    """`issueMarketLot(input: {tenant, periodFrom, periodTo})` and `retireCredits(input: {lotId, kilograms,
    beneficiary, reason})` as the issue writes them: a key is recommended, not required."""
    await _rides(api, [20, 20])
    issued = await api.query(ISSUE, as_="wuhan-admin", variables={"i": PERIOD})
    lot = await _sold(api, issued["issueMarketLot"]["lot"]["id"])
    done = await api.query(RETIRE, as_="wuhan-admin", variables={"i": {
        "lotId": lot["id"], "kilograms": 1, "beneficiary": "b", "reason": "r"}})
    assert done["retireCredits"]["userErrors"] == [] and done["retireCredits"]["certificate"]["kilograms"] == 1


async def test_replays_return_the_first_result(api) -> None:
    await _rides(api, [20, 20, 20])
    first = await _issue(api, idempotencyKey="lot-nov")
    again = await _issue(api, idempotencyKey="lot-nov")
    assert again["lot"] == first["lot"] and again["userErrors"] == []
    other = await _issue(api, idempotencyKey="lot-nov", periodFrom=_day(5))
    assert [e["code"] for e in other["userErrors"]] == ["IDEMPOTENCY_CONFLICT"]
    lot = await _sold(api, first["lot"]["id"])
    retire = {"lotId": lot["id"], "kilograms": 1, "beneficiary": "Wuhan Metro", "reason": "offset", "idempotencyKey": "r1"}
    one = (await api.query(RETIRE, as_="wuhan-admin", variables={"i": retire}))["retireCredits"]
    two = (await api.query(RETIRE, as_="wuhan-admin", variables={"i": retire}))["retireCredits"]
    assert two["certificate"] == one["certificate"] and two["lot"]["retiredKilograms"] == 1
    changed = (await api.query(RETIRE, as_="wuhan-admin", variables={"i": retire | {"kilograms": 2}}))["retireCredits"]
    assert [e["code"] for e in changed["userErrors"]] == ["IDEMPOTENCY_CONFLICT"]


@pytest.mark.parametrize("price", ["1e30", "-1", "1.001", "NaN"])
async def test_bad_prices_are_typed_errors(api, price) -> None:
    await _rides(api, [20, 20])
    lot = (await _issue(api))["lot"]
    await api.query(LIST, as_="wuhan-admin", variables={"i": {"lotId": lot["id"], "venue": "v"}})
    body = (await api.post(SELL, as_="wuhan-admin", variables={"i": {"lotId": lot["id"], "buyer": "b",
                                                                      "priceYuan": price}})).json()
    codes = [e["code"] for e in (body.get("data") or {}).get("sellMarketLot", {}).get("userErrors", [])] or [
        e["extensions"]["code"] for e in body.get("errors", [])]
    assert codes in (["INVALID_INPUT"], ["BAD_USER_INPUT"]), body


async def test_sale_proceeds_go_back_to_contributors_pro_rata(api) -> None:
    """Wuhan shares 20% of a sale at 10 coins a yuan: exact shares by pooled reduction, in the ledger."""
    rides = {}
    for km in (20, 20, 10):
        account = await consenting_account(api)
        rides[account] = await submit(api, "wuhan-tong", [record(account, "shared_bike", km, local_time(4, 8))])
    before = {a: await _balance(api, a) for a in rides}
    lot = (await _issue(api, periodFrom=_day(4), periodTo=_day(4)))["lot"]
    sold = await _sold(api, lot["id"])
    total = int(Decimal("1234.50") * Decimal("0.2") * 10)
    lots = (await api.query("{ marketLots(first: 20) { edges { node { id proceedsPoints } } } }",
                            as_="wuhan-admin"))["marketLots"]["edges"]
    assert next(int(e["node"]["proceedsPoints"]) for e in lots if e["node"]["id"] == sold["id"]) == total == 2469
    payouts = await _payouts(api, rides)
    pooled = {a: sum(int(Decimal(r["reductionGrams"]) * 1000) for r in recs) for a, recs in rides.items()}
    lot_weight = int(Decimal(lot["pooledGrams"]) * 1000)
    assert set(payouts) == set(rides) and sum(pooled.values()) <= lot_weight
    for account in rides:  # pro rata: within one point of the exact fraction of the lot's pooled reduction
        assert abs(payouts[account] - total * pooled[account] / lot_weight) < 1
        assert await _balance(api, account) == before[account] + payouts[account]
    if sum(pooled.values()) == lot_weight:  # only these three in the lot: the shares add up exactly
        assert sum(payouts.values()) == total


async def _balance(api, account: str) -> int:
    data = await api.query("query($id: ID!) { account(id: $id) { balance { amount } } }", as_="wuhan-app",
                           variables={"id": account})
    return int(Decimal(data["account"]["balance"]["amount"]))


async def _payouts(api, accounts) -> dict[str, int]:
    found = {}
    for account in accounts:
        data = await api.query("""query($id: ID!) { account(id: $id) { activity(first: 20) { edges { node {
            kind points } } } } }""", as_="wuhan-app", variables={"id": account})
        points = [int(Decimal(e["node"]["points"])) for e in data["account"]["activity"]["edges"]
                  if e["node"]["kind"] == "LOT_PROCEEDS"]
        if points:
            found[account] = sum(points)
    return found


def test_shares_add_up_exactly() -> None:
    import uuid as _uuid

    from app.market.service import shares

    keys = [_uuid.UUID(int=i) for i in range(1, 4)]
    split = shares(10, dict(zip(keys, [1, 1, 1], strict=True)))
    assert sum(split.values()) == 10 and sorted(split.values()) == [3, 3, 4]
    assert shares(7, {keys[0]: 3, keys[1]: 1}) == {keys[0]: 5, keys[1]: 2}
    assert shares(0, {keys[0]: 1}) == {} and shares(5, {}) == {}


async def test_certificates_stay_in_serial_order_in_time(api, database, settings) -> None:
    """A request that began earlier but took the lot's lock later does not date its certificate before
    the one it follows (serials are retired from the bottom)."""
    from app.ledger.signing import load_signer
    from app.market import service as market

    await _rides(api, [20, 20])
    lot = await _sold(api, (await _issue(api))["lot"]["id"])
    lot_id, signer, later = from_global_id(lot["id"])[1], load_signer(settings), datetime.now(SHANGHAI)
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        first = await market.retire(session, WUHAN, lot_id, 1, "b", "r", "test", later, signer)
        second = await market.retire(session, WUHAN, lot_id, 1, "b", "r", "test", later - timedelta(seconds=1), signer)
    assert second.document["serialFrom"] > first.document["serialFrom"]
    assert datetime.fromisoformat(second.document["retiredAt"]) > datetime.fromisoformat(first.document["retiredAt"])
