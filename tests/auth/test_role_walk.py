"""Every root field, called as every role: exactly the declared roles get past the permission check.

(The matrix over own and another city's objects, with the exact outcome of each, is test_tenant_walk.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.auth.test_permissions_declared import DECLARED
from app.graphql.ids import from_global_id
from tests.factories import consenting_account, local_time, make_reward, record, submit
from tests.live.inprocess import city_notice, ledger_notice, record_notice, subscription_body

CLIENT_OF_ROLE = {"CITY_APP": "wuhan-app", "PARTNER": "wuhan-tong", "TENANT_ADMIN": "wuhan-admin",
                  "REGULATOR": "regulator"}


async def _documents(api, database) -> dict[str, tuple[str, dict]]:
    account_id = await consenting_account(api)
    recorded = await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])
    reward_id = await make_reward(database, cost=0)
    return {
        "Query.tenants": ("{ tenants { slug } }", {}),
        "Query.tenant": ('{ tenant(slug: "wuhan") { slug } }', {}),
        "Query.node": ("query($id: ID!) { node(id: $id) { id } }", {"id": reward_id}),
        "Query.account": ("query($id: ID!) { account(id: $id) { id } }", {"id": account_id}),
        "Query.entitlements": ("{ entitlements(first: 1) { edges { cursor } } }", {}),
        "Mutation.openAccount": ("""mutation($h: String!) { openAccount(input: {tenant: "wuhan", holderRef: $h,
            kind: GUEST, acceptedAgreement: true}) { userErrors { code } } }""", {"h": uuid.uuid4().hex}),
        "Mutation.linkBankAccount": ("""mutation($id: ID!) { linkBankAccount(input: {accountId: $id,
            bankAccountRef: "6222020200001111"}) { userErrors { code } } }""", {"id": account_id}),
        "Mutation.freezeAccount": ("mutation($id: ID!) { freezeAccount(input: {accountId: $id}) { userErrors { code } } }",
                                   {"id": account_id}),
        "Mutation.unfreezeAccount": ("mutation($id: ID!) { unfreezeAccount(input: {accountId: $id}) { userErrors { code } } }",
                                     {"id": account_id}),
        "Mutation.closeAccount": ("mutation($id: ID!) { closeAccount(input: {accountId: $id}) { userErrors { code } } }",
                                  {"id": account_id}),
        "Mutation.grantConsent": ("""mutation($id: ID!) { grantConsent(input: {accountId: $id, provider: "hankou-bank",
            categories: [LIFE]}) { userErrors { code } } }""", {"id": account_id}),
        "Mutation.revokeConsent": ("""mutation($id: ID!) { revokeConsent(input: {accountId: $id, provider: "hankou-bank"})
            { userErrors { code } } }""", {"id": account_id}),
        "Mutation.recordBehaviors": ("""mutation($r: [BehaviorRecordInput!]!) { recordBehaviors(input: {records: $r})
            { results { status } } }""", {"r": [record(account_id, "subway", 1, local_time(1))]}),
        "Mutation.redeemReward": ("""mutation($a: ID!, $r: ID!, $k: String!) { redeemReward(input: {accountId: $a,
            rewardId: $r, idempotencyKey: $k}) { userErrors { code } } }""",
                                  {"a": account_id, "r": reward_id, "k": uuid.uuid4().hex}),
        "Mutation.cancelRedemption": ("""mutation { cancelRedemption(input: {redemptionId: "UmVkZW1wdGlvbjox"})
            { userErrors { code } } }""", {}),
        "Query.crossCityDashboard": ('{ crossCityDashboard(from: "2026-11-01", to: "2026-11-30") { cities { '
                                     'tenant { slug } } } }', {}),
        "Query.auditLog": ("{ auditLog(first: 5) { edges { cursor } } }", {}),
        "Query.crossProviderDuplicates": ("{ crossProviderDuplicates(first: 5) { edges { cursor } } }", {}),
        "Mutation.createReward": ("""mutation($c: String!) { createReward(input: {code: $c, kind: REWARD, fields: {
            name: {en: "Walk item", zh: "测试"}, cost: "1", sponsor: "hankou-bank"}}) { userErrors { code } } }""",
                                  {"c": f"walk-{uuid.uuid4().hex[:8]}"}),
        "Mutation.updateReward": ("""mutation($id: ID!) { updateReward(input: {id: $id, fields: {cost: "2"}})
            { userErrors { code } } }""", {"id": reward_id}),
        "Mutation.setRewardStock": ("""mutation($id: ID!) { setRewardStock(input: {id: $id, totalStock: 50})
            { userErrors { code } } }""", {"id": reward_id}),
        "Mutation.retireReward": ("""mutation($id: ID!) { retireReward(input: {id: $id}) { userErrors { code } } }""",
                                  {"id": reward_id}),
        "Mutation.publishConfiguration": ("""mutation($t: DateTime!) { publishConfiguration(input: {
            effectiveFrom: $t, pointUnitName: {en: "walk coins", zh: "步行币"},
            pointUnitSingular: {en: "walk coin", zh: "步行币"}}) { userErrors { code } } }""",
                                          {"t": (datetime.now(UTC) + timedelta(days=30)).isoformat()}),
        "Mutation.reverseBehaviorRecord": ("""mutation($id: ID!) { reverseBehaviorRecord(input: {recordId: $id,
            reason: "test"}) { userErrors { code } } }""", {"id": recorded[0]["recordId"]}),
        "Query.marketLots": ("{ marketLots(first: 5) { edges { cursor } } }", {}),
        "Query.signingKey": ("{ signingKey { keyId } }", {}),
        "Mutation.issueMarketLot": ("""mutation { issueMarketLot(input: {tenant: "wuhan", periodFrom: "2024-01-01",
            periodTo: "2024-01-31", idempotencyKey: "walk"}) { userErrors { code } } }""", {}),
        "Mutation.listMarketLot": ("""mutation { listMarketLot(input: {lotId: "TWFya2V0TG90OjE", venue: "x"})
            { userErrors { code } } }""", {}),
        "Mutation.sellMarketLot": ("""mutation { sellMarketLot(input: {lotId: "TWFya2V0TG90OjE", buyer: "x",
            priceYuan: "1"}) { userErrors { code } } }""", {}),
        "Mutation.retireCredits": ("""mutation { retireCredits(input: {lotId: "TWFya2V0TG90OjE", kilograms: 1,
            beneficiary: "x", reason: "y", idempotencyKey: "walk"}) { userErrors { code } } }""", {}),
        # Subscriptions (in process, see tests.live.inprocess): with the notices a commit would send.
        "Subscription.accountActivity": (
            "subscription($a: ID!) { accountActivity(accountId: $a) { entries { kind } } }", {"a": account_id},
            [await ledger_notice(database, "wuhan", from_global_id(account_id)[1])]),
        "Subscription.behaviorOutcomes": (
            "subscription { behaviorOutcomes { outcomes { status } } }", {},
            [await record_notice(database, "wuhan", "wuhan-tong", from_global_id(recorded[0]["recordId"])[1])]),
        "Subscription.dashboardTick": ("subscription { dashboardTick { tenant { slug } } }", {},
                                       [city_notice("wuhan")]),
    }


@pytest.mark.parametrize("role", sorted(CLIENT_OF_ROLE))
async def test_each_role_reaches_exactly_its_declared_fields(api, database, role) -> None:
    documents = await _documents(api, database)
    assert set(documents) == set(DECLARED), "a root field has no sample operation in this walk"
    for field, (document, variables, *notices) in documents.items():
        if field.startswith("Subscription."):
            body = await subscription_body(api, document, as_=CLIENT_OF_ROLE[role], variables=variables,
                                           notices=notices[0])
        else:
            body = (await api.post(document, as_=CLIENT_OF_ROLE[role], variables=variables)).json()
        codes = [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
        if role in DECLARED[field]:
            assert "FORBIDDEN" not in codes and "INTERNAL" not in codes, (field, role, body)
        else:
            assert codes and codes[0] == "FORBIDDEN", (field, role, body)
