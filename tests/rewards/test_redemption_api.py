"""Redemption of rewards, donations and financial services through the API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.factories import (
    CANCEL,
    REDEEM,
    consenting_account,
    earn,
    make_reward,
    open_account,
    redeem,
)

ACCOUNT = """query($id: ID!) { account(id: $id) { balance { amount }
    activity(first: 20) { nodes { kind status points redemptionId } } } }"""


async def _balance(api, account_id: str) -> str:
    return (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": account_id}))["account"]["balance"]["amount"]


async def test_catalogue_query_as_written(api) -> None:
    data = await api.query("""{ tenant(slug: "wuhan") { rewards(first: 100, kind: REWARD) { edges { node {
        id name kind cost { amount unit { name } } remainingStock perAccountLimit } } } } }""", as_="wuhan-app")
    nodes = [edge["node"] for edge in data["tenant"]["rewards"]["edges"]]
    assert nodes and {node["kind"] for node in nodes} == {"REWARD"}
    discount = next(node for node in nodes if "5-yuan" in node["name"])
    assert discount["remainingStock"] == 50 and discount["cost"]["unit"]["name"] == "carbon coins"
    assert any(node["remainingStock"] is None for node in nodes)


async def test_redeem_a_reward_spends_points_takes_stock_and_shows_in_activity(api, database) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    reward_id = await make_reward(database, cost=30, stock=5)
    payload = await redeem(api, account_id, reward_id)
    assert payload["userErrors"] == []
    assert payload["redemption"]["status"] == "FULFILLED" and len(payload["redemption"]["voucherCode"]) == 14
    assert payload["redemption"]["points"] == {"amount": "30"} and payload["balance"] == {"amount": "50"}
    node = await api.query('query($id: ID!) { node(id: $id) { ... on Reward { remainingStock } } }',
                           as_="wuhan-app", variables={"id": reward_id})
    assert node["node"]["remainingStock"] == 4
    activity = (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": account_id}))["account"]["activity"]["nodes"]
    assert activity[0]["kind"] == "REDEMPTION" and activity[0]["points"] == "-30"
    assert activity[0]["redemptionId"] == payload["redemption"]["id"]


async def test_replay_returns_the_first_result_and_conflicts_are_refused(api, database) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    reward_id = await make_reward(database, cost=30)
    first = await redeem(api, account_id, reward_id, key="key-1")
    again = await redeem(api, account_id, reward_id, key="key-1")
    assert again["redemption"]["id"] == first["redemption"]["id"]
    assert again["redemption"]["voucherCode"] == first["redemption"]["voucherCode"]
    assert await _balance(api, account_id) == "50"
    conflict = await redeem(api, account_id, reward_id, key="key-1", quantity=2)
    assert [e["code"] for e in conflict["userErrors"]] == ["IDEMPOTENCY_CONFLICT"]
    assert await _balance(api, account_id) == "50"


async def test_every_error_code(api, database) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    cases = {
        "INSUFFICIENT_POINTS": await make_reward(database, cost=81),
        "OUT_OF_STOCK": await make_reward(database, cost=1, stock=0),
        "NOT_ELIGIBLE": await make_reward(database, cost=1, bank=True),
        "REWARD_UNAVAILABLE": await make_reward(database, cost=1, valid_to=datetime.now(UTC) - timedelta(days=1)),
    }
    for code, reward_id in cases.items():
        payload = await redeem(api, account_id, reward_id)
        assert [e["code"] for e in payload["userErrors"]] == [code], code
        assert payload["redemption"] is None
    high_bar = await make_reward(database, cost=1, min_mg=10**9)
    assert [e["code"] for e in (await redeem(api, account_id, high_bar))["userErrors"]] == ["NOT_ELIGIBLE"]
    limited = await make_reward(database, cost=1, limit=1, period="MONTH")
    assert (await redeem(api, account_id, limited))["userErrors"] == []
    assert [e["code"] for e in (await redeem(api, account_id, limited))["userErrors"]] == ["LIMIT_REACHED"]
    garbage = await redeem(api, account_id, "not-an-id")
    assert [e["code"] for e in garbage["userErrors"]] == ["REWARD_UNAVAILABLE"]
    await api.query('mutation($id: ID!) { freezeAccount(input: {accountId: $id}) { account { status } } }',
                    as_="wuhan-app", variables={"id": account_id})
    frozen = await redeem(api, account_id, await make_reward(database, cost=1))
    assert [e["code"] for e in frozen["userErrors"]] == ["ACCOUNT_FROZEN"]
    assert await _balance(api, account_id) == "79"


async def test_eligibility_for_an_account_explains_why_not(api, database) -> None:
    account_id = await open_account(api)
    reward_id = await make_reward(database, cost=10, bank=True, stock=0)
    query = """query($r: ID!, $a: ID!) { node(id: $r) { ... on Reward { eligibilityFor(accountId: $a) {
        eligible reasons } } } }"""
    check = (await api.query(query, as_="wuhan-app", variables={"r": reward_id, "a": account_id}))["node"]
    assert check["eligibilityFor"] == {"eligible": False,
                                       "reasons": ["NOT_ELIGIBLE", "OUT_OF_STOCK", "INSUFFICIENT_POINTS"]}
    free = await make_reward(database, cost=0)
    check = (await api.query(query, as_="wuhan-app", variables={"r": free, "a": account_id}))["node"]
    assert check["eligibilityFor"] == {"eligible": True, "reasons": []}
    other_city = await open_account(api, app="beijing-app")
    check = (await api.query(query, as_="wuhan-app", variables={"r": free, "a": other_city}))["node"]
    assert check["eligibilityFor"] is None


async def test_eligibility_refuses_what_redemption_refuses_as_bad_input(api, database) -> None:
    account_id = await open_account(api)
    reward_id = await make_reward(database, cost=10)
    query = """query($r: ID!, $a: ID!, $q: Int!) { node(id: $r) { ... on Reward {
        eligibilityFor(accountId: $a, quantity: $q) { eligible reasons } } } }"""
    for quantity in (0, -5, 101):  # redeemReward answers INVALID_QUANTITY; the check must not say "eligible"
        errors = await api.errors(query, as_="wuhan-app", variables={"r": reward_id, "a": account_id, "q": quantity})
        assert [(e["extensions"]["code"], e["extensions"]["argument"]) for e in errors] == [
            ("BAD_USER_INPUT", "quantity")], errors
    for malformed in ("garbage", reward_id):  # not an id; the id of something else
        errors = await api.errors(query, as_="wuhan-app", variables={"r": reward_id, "a": malformed, "q": 1})
        assert [(e["extensions"]["code"], e["extensions"]["argument"]) for e in errors] == [
            ("BAD_USER_INPUT", "accountId")], errors
    check = (await api.query(query, as_="wuhan-app", variables={"r": reward_id, "a": account_id, "q": 100}))["node"]
    assert check["eligibilityFor"] == {"eligible": False, "reasons": ["INSUFFICIENT_POINTS"]}


async def test_donation_moves_points_to_the_project_with_running_totals(api, database) -> None:
    project = await make_reward(database, kind="DONATION", cost=5, sponsor="wuhan-green-welfare", window=24)
    totals_query = 'query($id: ID!) { node(id: $id) { ... on Reward { donations { points { amount } gifts } } } }'
    donors = [await consenting_account(api) for _ in range(2)]
    for donor in donors:
        await earn(api, donor, 16)
        payload = await redeem(api, donor, project, quantity=2)
        assert payload["userErrors"] == [] and payload["redemption"]["voucherCode"] is None
    totals = (await api.query(totals_query, as_="wuhan-app", variables={"id": project}))["node"]["donations"]
    assert totals == {"points": {"amount": "20"}, "gifts": 4}
    last = await redeem(api, donors[0], project, quantity=1)
    cancelled = (await api.query(CANCEL, as_="wuhan-app", variables={"input": {
        "redemptionId": last["redemption"]["id"]}}))["cancelRedemption"]
    assert cancelled["userErrors"] == [] and cancelled["redemption"]["status"] == "CANCELLED"
    totals = (await api.query(totals_query, as_="wuhan-app", variables={"id": project}))["node"]["donations"]
    assert totals == {"points": {"amount": "20"}, "gifts": 4}
    assert await _balance(api, donors[0]) == "6"


async def test_cancellation_refunds_points_and_stock_within_the_window_only(api, database) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    cancellable = await make_reward(database, cost=20, stock=3, window=24)
    final = await make_reward(database, cost=20, window=0)
    first = await redeem(api, account_id, cancellable, quantity=2)
    assert first["balance"] == {"amount": "40"}
    payload = (await api.query(CANCEL, as_="wuhan-app", variables={"input": {
        "redemptionId": first["redemption"]["id"], "reason": "changed mind"}}))["cancelRedemption"]
    assert payload["userErrors"] == [] and payload["balance"] == {"amount": "80"}
    again = (await api.query(CANCEL, as_="wuhan-app", variables={"input": {
        "redemptionId": first["redemption"]["id"]}}))["cancelRedemption"]
    assert again["userErrors"] == [] and again["balance"] == {"amount": "80"}
    stock = await api.query('query($id: ID!) { node(id: $id) { ... on Reward { remainingStock } } }',
                            as_="wuhan-app", variables={"id": cancellable})
    assert stock["node"]["remainingStock"] == 3
    kept = await redeem(api, account_id, final)
    refused = (await api.query(CANCEL, as_="wuhan-app", variables={"input": {
        "redemptionId": kept["redemption"]["id"]}}))["cancelRedemption"]
    assert [e["code"] for e in refused["userErrors"]] == ["NOT_CANCELLABLE"]  # a window of 0 hours
    activity = (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": account_id}))["account"]["activity"]["nodes"]
    assert [a["kind"] for a in activity[:3]] == ["REDEMPTION", "REDEMPTION_CANCELLED", "REDEMPTION"]

    late = await redeem(api, account_id, cancellable)  # its 24 hours have passed (moved back below)
    from sqlalchemy import text

    from app.db.session import TenantScope
    from app.graphql.ids import from_global_id
    from app.tenants.models import tenant_id_for

    async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
        await session.execute(text("UPDATE redemptions SET cancellable_until = now() - interval '1 second' "
                                   "WHERE id = :id"), {"id": from_global_id(late["redemption"]["id"])[1]})
    closed = (await api.query(CANCEL, as_="wuhan-app", variables={"input": {
        "redemptionId": late["redemption"]["id"]}}))["cancelRedemption"]
    assert [e["code"] for e in closed["userErrors"]] == ["CANCELLATION_WINDOW_CLOSED"]


async def test_financial_service_entitlement_is_visible_to_the_sponsoring_bank_only(api) -> None:
    bank_ref = "6222 0211 0000 4321"
    account_id = await open_account(api, kind="BANK_LINKED", bank=bank_ref)
    for provider, categories in (("wuhan-tong", ["TRAVEL"]),):
        await api.query('mutation($i: GrantConsentInput!) { grantConsent(input: $i) { userErrors { code } } }',
                        as_="wuhan-app", variables={"i": {"accountId": account_id, "provider": provider,
                                                          "categories": categories}})
    await earn(api, account_id, 240)
    card = next(edge["node"] for edge in (await api.query(
        '{ tenant(slug: "wuhan") { rewards(first: 100, kind: FINANCIAL_SERVICE) { edges { node { id code } } } } }',
        as_="wuhan-app"))["tenant"]["rewards"]["edges"])
    payload = await redeem(api, account_id, card["id"])
    assert payload["userErrors"] == [], payload
    query = """query($ref: String, $account: ID) { entitlements(first: 10, bankAccountRef: $ref, accountId: $account) {
        edges { node { accountId status reward { code } } } } }"""
    by_bank = (await api.query(query, as_="hankou-bank", variables={"ref": bank_ref}))["entitlements"]["edges"]
    assert [(e["node"]["accountId"], e["node"]["status"], e["node"]["reward"]["code"]) for e in by_bank] == [
        (account_id, "ACTIVE", card["code"])]
    assert (await api.query(query, as_="wuhan-tong", variables={"account": account_id}))["entitlements"]["edges"] == []
    assert (await api.query(query, as_="anshun-bank", variables={"ref": bank_ref}))["entitlements"]["edges"] == []
    for malformed in ("garbage", card["id"]):  # never read as "no entitlement"
        errors = await api.errors(query, as_="hankou-bank", variables={"account": malformed})
        assert [(e["extensions"]["code"], e["extensions"]["argument"]) for e in errors] == [
            ("BAD_USER_INPUT", "accountId")], errors
    errors = await api.errors(query, as_="wuhan-app", variables={"ref": bank_ref})
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_guizhou_loan_rate_tiers_need_contribution(api) -> None:
    account_id = await open_account(api, app="guizhou-app", kind="BANK_LINKED", bank="6228480012345678")
    tiers = [edge["node"] for edge in (await api.query(
        '{ tenant(slug: "guizhou") { rewards(first: 100, kind: FINANCIAL_SERVICE) { edges { node { id code } } } } }',
        as_="guizhou-app"))["tenant"]["rewards"]["edges"] if "tier" in edge["node"]["code"]]
    assert len(tiers) >= 3
    payload = await redeem(api, account_id, tiers[0]["id"], app="guizhou-app")
    assert [e["code"] for e in payload["userErrors"]] == ["NOT_ELIGIBLE"]


async def test_only_city_apps_redeem(api, database) -> None:
    account_id = await open_account(api)
    reward_id = await make_reward(database)
    for client in ("wuhan-tong", "wuhan-admin", "regulator"):
        errors = await api.errors(REDEEM, as_=client, variables={"input": {
            "accountId": account_id, "rewardId": reward_id, "idempotencyKey": uuid.uuid4().hex}})
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    other = await redeem(api, account_id, reward_id, app="beijing-app")
    assert [e["code"] for e in other["userErrors"]] == ["ACCOUNT_NOT_FOUND"]


async def test_an_account_lists_its_redemptions_newest_first(api, database) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    reward_id = await make_reward(database, cost=10)
    made = [(await redeem(api, account_id, reward_id))["redemption"]["id"] for _ in range(3)]
    query = """query($id: ID!, $after: String) { account(id: $id) { redemptions(first: 2, after: $after) {
        edges { node { id status voucherCode reward { id } points { amount } } } pageInfo { hasNextPage endCursor } } } }"""
    page = (await api.query(query, as_="wuhan-app", variables={"id": account_id}))["account"]["redemptions"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = (await api.query(query, as_="wuhan-app", variables={"id": account_id, "after": page["pageInfo"]["endCursor"]}))
    ids = [e["node"]["id"] for e in page["edges"]] + [e["node"]["id"] for e in rest["account"]["redemptions"]["edges"]]
    assert sorted(ids) == sorted(made) and len(set(ids)) == 3
    assert all(e["node"]["reward"]["id"] == reward_id and e["node"]["voucherCode"] for e in page["edges"])
