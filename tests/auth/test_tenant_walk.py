"""The generated isolation matrix: every root query, mutation and subscription, as every role, against
objects of the caller's own city (Wuhan) and of another city (Beijing), with exactly one allowed outcome
for each.

Outcomes: OK (the operation did its work), HIDDEN (null, an empty list, a *_NOT_FOUND user error or, for a
subscription, error or an event that never comes: the object is as if it did not exist), FORBIDDEN (the role may not call the field, or, for openAccount,
not for that city). A root field
missing from the walk fails the test, as does a root field without a declared permission
(test_permissions_declared). Afterwards the other city's objects are checked to be unchanged.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from app.db.session import TenantScope
from app.graphql.ids import from_global_id, to_global_id
from app.market import service as market
from app.tenants.models import tenant_id_for

from tests.auth.test_permissions_declared import DECLARED
from tests.factories import SHANGHAI, consenting_account, local_time, make_reward, record, redeem, submit
from tests.live.inprocess import city_notice, ledger_notice, record_notice, subscription_body

OK, HIDDEN, FORBIDDEN = "OK", "HIDDEN", "FORBIDDEN"
ROLES = ["CITY_APP", "PARTNER", "TENANT_ADMIN", "REGULATOR"]
CLIENT = {"CITY_APP": "wuhan-app", "PARTNER": "wuhan-tong", "TENANT_ADMIN": "wuhan-admin", "REGULATOR": "regulator"}
# A partner acts for one issuer: the bank sees the entitlements of its own products.
CLIENT_FOR_FIELD = {("Query.entitlements", "PARTNER"): "hankou-bank"}
CITY = {"wuhan": {"app": "wuhan-app", "provider": "wuhan-tong", "bank": "hankou-bank", "second": "amap-travel",
                  "trip": ("shared_bike", 20)},
        "beijing": {"app": "beijing-app", "provider": "beijing-mobility", "bank": "beijing-green-bank",
                    "trip": ("bus", 10)}}


@dataclass
class Objects:
    slug: str
    account: str
    reward: str
    record: str
    redemption: str
    entitled_account: str
    lot: str = ""


async def _objects(api, database, slug: str) -> Objects:
    city = CITY[slug]
    second = city.get("second")
    account = await consenting_account(api, app=city["app"], providers={
        city["provider"]: ["TRAVEL"], **({second: ["TRAVEL"]} if second else {})})
    recorded = await submit(api, city["provider"], [record(account, "bus", 5, local_time(1))])
    assert recorded[0]["status"] == "CREDITED", recorded
    if second:  # the same ride from a second travel-data partner: a cross-provider duplicate
        again = await submit(api, second, [record(account, "bus", 5, local_time(1))])
        assert again[0]["code"] == "DUPLICATE_ACROSS_PROVIDERS", again
    else:  # a city with one travel-data partner: the same link written directly
        await _link_duplicate(database, slug, recorded[0]["recordId"])
    reward = await make_reward(database, slug, cost=0, window=24, sponsor=city["bank"])
    redemption = (await redeem(api, account, reward, app=city["app"]))["redemption"]["id"]
    service = await make_reward(database, slug, cost=0, kind="FINANCIAL_SERVICE", sponsor=city["bank"])
    entitled = await consenting_account(api, app=city["app"], providers={city["provider"]: ["TRAVEL"]})
    assert (await redeem(api, entitled, service, app=city["app"]))["userErrors"] == []
    # Over a kilogram a day on days 1 and 2: a market lot of day 2 here; day 1 left for the walk to pool.
    await submit(api, city["provider"], [record(account, *city["trip"], local_time(day, 8)) for day in (1, 2)])
    async with database.transaction(TenantScope.for_tenant(tenant_id_for(slug))) as session:
        pooled = await market.issue_lot(session, tenant_id_for(slug), _local_day(2), _local_day(2), "walk",
                                        datetime.now(UTC), _local_day(0), f"walk-{slug}")
    lot = to_global_id("MarketLot", pooled["id"])
    return Objects(slug, account, reward, recorded[0]["recordId"], redemption, entitled, lot)


def _local_day(days_ago: int):
    return datetime.now(SHANGHAI).date() - timedelta(days=days_ago)


async def _link_duplicate(database, slug: str, record_id: str) -> None:
    async with database.transaction(TenantScope.for_tenant(tenant_id_for(slug))) as session:
        await session.execute(text("""
            INSERT INTO behavior_rejections (id, tenant_id, provider_issuer_id, external_id, account_id, behavior_code,
                                             code, received_at, duplicate_of_record_id, occurred_at)
            SELECT gen_random_uuid(), tenant_id, provider_issuer_id, 'walk-dup', account_id, behavior_code,
                   'DUPLICATE_ACROSS_PROVIDERS', now(), id, occurred_at
              FROM behavior_records WHERE id = :id"""), {"id": from_global_id(record_id)[1]})


def _user_errors(payload: dict) -> list[str]:
    return [error["code"] for error in payload.get("userErrors") or []]


def _field(key: str) -> Callable[[dict], str]:
    """Outcome of a query returning an object: OK if present, HIDDEN if null."""
    return lambda data: OK if data[key] is not None else HIDDEN


def _payload(key: str, hidden: set[str]) -> Callable[[dict], str]:
    """Outcome of a mutation: HIDDEN for a not-found user error, OK without user errors."""
    def outcome(data: dict) -> str:
        codes = _user_errors(data[key])
        if not codes:
            return OK
        assert set(codes) <= hidden, codes  # any other user error means the walk itself is wrong
        return HIDDEN
    return outcome


NOT_FOUND = {"ACCOUNT_NOT_FOUND", "REWARD_UNAVAILABLE", "REDEMPTION_NOT_FOUND", "RECORD_NOT_FOUND", "REWARD_NOT_FOUND",
             "TENANT_NOT_FOUND", "UNKNOWN_TENANT"}

# (name, root field, document, variables from the target objects, outcome of `data`) in walk order:
# destructive operations last.
WALK: list[tuple[str, str, str, Callable[[Objects], dict], Callable[[dict], str]]] = [
    ("tenants", "Query.tenants", "{ tenants { slug } }", lambda o: {},
     None),  # set per target below
    ("tenant", "Query.tenant", "query($s: String!) { tenant(slug: $s) { slug } }", lambda o: {"s": o.slug},
     _field("tenant")),
    ("node: Reward", "Query.node", "query($id: ID!) { node(id: $id) { id } }", lambda o: {"id": o.reward},
     _field("node")),
    ("node: Account", "Query.node", "query($id: ID!) { node(id: $id) { id } }", lambda o: {"id": o.account},
     _field("node")),
    ("node: Redemption", "Query.node", "query($id: ID!) { node(id: $id) { id } }", lambda o: {"id": o.redemption},
     _field("node")),
    ("account", "Query.account", "query($id: ID!) { account(id: $id) { id balance { amount } } }",
     lambda o: {"id": o.account}, _field("account")),
    ("entitlements", "Query.entitlements",
     "query($a: ID!) { entitlements(first: 10, accountId: $a) { edges { node { id } } } }",
     lambda o: {"a": o.entitled_account}, lambda data: OK if data["entitlements"]["edges"] else HIDDEN),
    # Subscriptions run in process with the notices a commit would send (SUBSCRIPTION_NOTICES): the
    # target's, then the caller's own as a sentinel, so a filtered-out target shows as HIDDEN.
    ("accountActivity", "Subscription.accountActivity",
     "subscription($a: ID!) { accountActivity(accountId: $a) { entries { kind } account { id } } }",
     lambda o: {"a": o.account}, lambda data: OK if data["accountActivity"]["entries"] else HIDDEN),
    ("behaviorOutcomes", "Subscription.behaviorOutcomes",
     "subscription { behaviorOutcomes { outcomes { recordId status } } }", lambda o: {},
     None),  # set per target below: OK when the target's record is among the first event's outcomes
    ("dashboardTick", "Subscription.dashboardTick", "subscription { dashboardTick { tenant { slug } } }",
     lambda o: {}, None),  # set per target below: OK when the first tick is the target city's
    ("createReward", "Mutation.createReward",
     """mutation($c: String!, $s: String!) { createReward(input: {code: $c, kind: REWARD, fields: {
        name: {en: "Walk item", zh: "测试"}, cost: "1", sponsor: $s}}) { reward { id } userErrors { code } } }""",
     lambda o: {"c": f"walk-{uuid.uuid4().hex[:8]}", "s": CITY[o.slug]["bank"]},
     _payload("createReward", NOT_FOUND | {"SPONSOR_NOT_FOUND"})),
    ("updateReward", "Mutation.updateReward",
     """mutation($id: ID!) { updateReward(input: {id: $id, fields: {cost: "2"}}) { userErrors { code } } }""",
     lambda o: {"id": o.reward}, _payload("updateReward", NOT_FOUND)),
    ("setRewardStock", "Mutation.setRewardStock",
     """mutation($id: ID!) { setRewardStock(input: {id: $id, totalStock: 50}) { userErrors { code } } }""",
     lambda o: {"id": o.reward}, _payload("setRewardStock", NOT_FOUND)),
    ("crossCityDashboard", "Query.crossCityDashboard",
     '{ crossCityDashboard(from: "2026-11-01", to: "2026-11-30") { cities { tenant { slug } } } }', lambda o: {},
     None),  # set per target below: OK when the target's city is among the dashboard's cities
    ("auditLog", "Query.auditLog", "{ auditLog(first: 50) { edges { node { targetId } } } }", lambda o: {},
     None),  # set per target below: OK when the city's own item's events are listed
    ("marketLots", "Query.marketLots", "{ marketLots(first: 50) { edges { node { id } } } }", lambda o: {},
     None),  # set per target below: OK when the city's lot is listed
    ("signingKey", "Query.signingKey", "{ signingKey { keyId } }", lambda o: {}, lambda data: OK),
    ("issueMarketLot", "Mutation.issueMarketLot",
     """mutation($t: String!, $d: Date!) { issueMarketLot(input: {tenant: $t, periodFrom: $d, periodTo: $d,
        idempotencyKey: "walk"})
        { userErrors { code } } }""", lambda o: {"t": o.slug, "d": _local_day(1).isoformat()},
     _payload("issueMarketLot", {"LOT_NOT_FOUND"})),
    ("listMarketLot", "Mutation.listMarketLot",
     """mutation($id: ID!) { listMarketLot(input: {lotId: $id, venue: "Walk exchange"}) { userErrors { code } } }""",
     lambda o: {"id": o.lot}, _payload("listMarketLot", {"LOT_NOT_FOUND"})),
    ("sellMarketLot", "Mutation.sellMarketLot",
     """mutation($id: ID!) { sellMarketLot(input: {lotId: $id, buyer: "Walk buyer", priceYuan: "10"})
        { userErrors { code } } }""", lambda o: {"id": o.lot}, _payload("sellMarketLot", {"LOT_NOT_FOUND"})),
    ("retireCredits", "Mutation.retireCredits",
     """mutation($id: ID!) { retireCredits(input: {lotId: $id, kilograms: 1, beneficiary: "Walk", reason: "walk",
        idempotencyKey: "walk"})
        { userErrors { code } } }""", lambda o: {"id": o.lot}, _payload("retireCredits", {"LOT_NOT_FOUND"})),
    ("crossProviderDuplicates", "Query.crossProviderDuplicates",
     "{ crossProviderDuplicates(first: 50) { edges { node { accountId } } } }", lambda o: {},
     None),  # set per target below: OK when the city's own duplicate is listed
    ("openAccount", "Mutation.openAccount",
     """mutation($t: String!, $h: String!) { openAccount(input: {tenant: $t, holderRef: $h, kind: GUEST,
        acceptedAgreement: true}) { account { id } userErrors { code } } }""",
     lambda o: {"t": o.slug, "h": uuid.uuid4().hex}, _payload("openAccount", NOT_FOUND)),
    ("linkBankAccount", "Mutation.linkBankAccount",
     """mutation($id: ID!) { linkBankAccount(input: {accountId: $id, bankAccountRef: "6222020200001111"})
        { userErrors { code } } }""", lambda o: {"id": o.account}, _payload("linkBankAccount", NOT_FOUND)),
    ("grantConsent", "Mutation.grantConsent",
     """mutation($id: ID!, $p: String!) { grantConsent(input: {accountId: $id, provider: $p, categories: [LIFE]})
        { userErrors { code } } }""", lambda o: {"id": o.account, "p": CITY[o.slug]["bank"]},
     _payload("grantConsent", NOT_FOUND | {"PROVIDER_NOT_FOUND"})),
    ("recordBehaviors", "Mutation.recordBehaviors",
     """mutation($r: [BehaviorRecordInput!]!) { recordBehaviors(input: {records: $r})
        { results { status code } userErrors { code } } }""",
     lambda o: {"r": [record(o.account, "bus", 1, local_time(2))]},
     lambda data: (OK if data["recordBehaviors"]["results"][0]["status"] == "CREDITED" else
                   HIDDEN if data["recordBehaviors"]["results"][0]["code"] == "ACCOUNT_NOT_FOUND" else
                   f"unexpected {data['recordBehaviors']['results'][0]}")),
    ("redeemReward", "Mutation.redeemReward",
     """mutation($a: ID!, $r: ID!, $k: String!) { redeemReward(input: {accountId: $a, rewardId: $r,
        idempotencyKey: $k}) { userErrors { code } } }""",
     lambda o: {"a": o.account, "r": o.reward, "k": uuid.uuid4().hex}, _payload("redeemReward", NOT_FOUND)),
    ("cancelRedemption", "Mutation.cancelRedemption",
     """mutation($id: ID!) { cancelRedemption(input: {redemptionId: $id}) { userErrors { code } } }""",
     lambda o: {"id": o.redemption}, _payload("cancelRedemption", NOT_FOUND)),
    ("reverseBehaviorRecord", "Mutation.reverseBehaviorRecord",
     """mutation($id: ID!) { reverseBehaviorRecord(input: {recordId: $id, reason: "walk"}) { userErrors { code } } }""",
     lambda o: {"id": o.record}, _payload("reverseBehaviorRecord", NOT_FOUND)),
    ("revokeConsent", "Mutation.revokeConsent",
     """mutation($id: ID!, $p: String!) { revokeConsent(input: {accountId: $id, provider: $p})
        { userErrors { code } } }""", lambda o: {"id": o.account, "p": CITY[o.slug]["provider"]},
     _payload("revokeConsent", NOT_FOUND | {"PROVIDER_NOT_FOUND"})),
    ("freezeAccount", "Mutation.freezeAccount",
     "mutation($id: ID!) { freezeAccount(input: {accountId: $id}) { userErrors { code } } }",
     lambda o: {"id": o.account}, _payload("freezeAccount", NOT_FOUND)),
    ("unfreezeAccount", "Mutation.unfreezeAccount",
     "mutation($id: ID!) { unfreezeAccount(input: {accountId: $id}) { userErrors { code } } }",
     lambda o: {"id": o.account}, _payload("unfreezeAccount", NOT_FOUND)),
    ("publishConfiguration", "Mutation.publishConfiguration",
     """mutation($t: DateTime!) { publishConfiguration(input: {effectiveFrom: $t,
        pointUnitName: {en: "walk coins", zh: "步行币"},
            pointUnitSingular: {en: "walk coin", zh: "步行币"}}) { version { version } userErrors { code } } }""",
     lambda o: {"t": (datetime.now(UTC) + timedelta(days=30)).isoformat()}, _payload("publishConfiguration", {"NOT_AFTER_LATEST", "NOTHING_CHANGED"})),
    ("retireReward", "Mutation.retireReward",
     """mutation($id: ID!) { retireReward(input: {id: $id}) { userErrors { code } } }""",
     lambda o: {"id": o.reward}, _payload("retireReward", NOT_FOUND)),
    ("closeAccount", "Mutation.closeAccount",
     "mutation($id: ID!) { closeAccount(input: {accountId: $id}) { userErrors { code } } }",
     lambda o: {"id": o.account}, _payload("closeAccount", NOT_FOUND)),
]

# Exceptions to "allowed roles: own OK, foreign HIDDEN; others FORBIDDEN".
PUBLIC = {"tenants", "tenant", "node: Reward",  # public configuration: regulators read every city
          "crossCityDashboard", "marketLots", "signingKey", "dashboardTick"}  # and every city's aggregates,
                                                                              # lots, the key
PERSONAL_NODES = {"node: Account", "node: Redemption"}  # citizens' data: the city's app and operator only


def expected(name: str, field: str, role: str, target: str) -> str:
    if role not in DECLARED[field]:
        return FORBIDDEN
    if name == "signingKey":
        return OK  # the platform's, no city's
    if role == "REGULATOR":
        return OK if name in PUBLIC else HIDDEN
    if name in PERSONAL_NODES and role == "PARTNER":
        return HIDDEN
    if name == "openAccount" and target != "wuhan":
        return FORBIDDEN  # "own city only", the same answer for any other slug, existing or not
    if name == "publishConfiguration":
        # It takes no object: it always acts on the caller's own city. The walk publishes once (on the
        # foreign pass, which goes first); the second, identical, is refused (nothing changed).
        return OK if target != "wuhan" else HIDDEN
    return OK if target == "wuhan" else HIDDEN


def _list_outcome(name: str, objects: Objects) -> Callable[[dict], str]:
    if name == "behaviorOutcomes":
        return lambda data: (OK if objects.record in [o["recordId"] for o in data["behaviorOutcomes"]["outcomes"]]
                             else HIDDEN)
    if name == "dashboardTick":
        return lambda data: OK if data["dashboardTick"]["tenant"]["slug"] == objects.slug else HIDDEN
    if name == "tenants":
        return lambda data: OK if objects.slug in [t["slug"] for t in data["tenants"]] else HIDDEN
    if name == "crossCityDashboard":
        return lambda data: (OK if objects.slug in [c["tenant"]["slug"] for c in data["crossCityDashboard"]["cities"]]
                             else HIDDEN)
    if name == "marketLots":
        return lambda data: OK if objects.lot in [e["node"]["id"] for e in data["marketLots"]["edges"]] else HIDDEN
    if name == "crossProviderDuplicates":
        return lambda data: (OK if objects.account in [e["node"]["accountId"] for e in
                                                       data["crossProviderDuplicates"]["edges"]] else HIDDEN)
    # auditLog: the walk's own changes to this city's item appear only in that city's log
    return lambda data: OK if objects.reward in [e["node"]["targetId"] for e in data["auditLog"]["edges"]] else HIDDEN


async def _notices(database, name: str, objects: Objects) -> list:
    if name == "accountActivity":
        return [await ledger_notice(database, objects.slug, from_global_id(objects.account)[1])]
    if name == "behaviorOutcomes":
        return [await record_notice(database, objects.slug, CITY[objects.slug]["provider"],
                                    from_global_id(objects.record)[1])]
    return [city_notice(objects.slug)]


def test_the_walk_covers_every_root_field() -> None:
    assert {field for _, field, *_ in WALK} == set(DECLARED)


async def _state(api, beijing: Objects) -> dict[str, Any]:
    data = await api.query("""query($a: ID!, $e: ID!, $r: ID!) { r: node(id: $r) { ... on Reward { cost { amount }
        totalStock remainingStock } } a: account(id: $a) { status kind balance { amount }
        contribution { grams } consents { provider { slug } revokedAt }
        redemptions(first: 10) { edges { node { id status } } } }
        e: account(id: $e) { status } }""", as_="beijing-app", variables={"a": beijing.account, "e": beijing.entitled_account,
                                                                   "r": beijing.reward})
    return data


@pytest.mark.parametrize("role", ROLES)
async def test_every_field_as_every_role_against_own_and_foreign_objects(api, database, role) -> None:
    own, foreign = await _objects(api, database, "wuhan"), await _objects(api, database, "beijing")
    before = await _state(api, foreign)
    mismatches = []
    for target, objects in (("beijing", foreign), ("wuhan", own)):  # foreign first: own writes come after
        for name, field, document, variables, outcome in WALK:
            client = CLIENT_FOR_FIELD.get((field, role), CLIENT[role])
            if field.startswith("Subscription."):
                notices = await _notices(database, name, objects) + await _notices(database, name, own)
                body = await subscription_body(api, document, as_=client, variables=variables(objects),
                                               notices=notices)
            else:
                body = (await api.post(document, as_=client, variables=variables(objects))).json()
            codes = [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
            if codes:
                got = (FORBIDDEN if codes == ["FORBIDDEN"] else
                       HIDDEN if field.startswith("Subscription.") and set(codes) <= NOT_FOUND else f"errors {codes}")
            else:
                got = (outcome or _list_outcome(name, objects))(body["data"])
            want = expected(name, field, role, target)
            if got != want:
                mismatches.append(f"{name} as {role} on {target}: expected {want}, got {got}")
    assert mismatches == []
    assert await _state(api, foreign) == before, "an operation from Wuhan changed a Beijing object"
