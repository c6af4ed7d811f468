"""`node(id:)` answers for every type that implements Node, to exactly the clients that can read the
object another way, and is null for everyone else (another city's clients included)."""

from __future__ import annotations

from tests.factories import consenting_account, earn, make_reward, redeem

NODE = """query($id: ID!) { node(id: $id) { id __typename
    ... on ActivityEntry { kind points }
    ... on Consent { provider { slug } live }
    ... on Entitlement { status reward { code } } } }"""
OTHERS = ("beijing-app", "beijing-admin", "wuhan-tong", "regulator")


async def _node(api, client: str, object_id: str) -> dict | None:
    body = (await api.post(NODE, as_=client, variables={"id": object_id})).json()
    assert "errors" not in body, body
    return body["data"]["node"]


async def test_activity_entries_and_consents_are_nodes_for_their_city(api) -> None:
    account = await consenting_account(api)
    await earn(api, account, 8)
    data = await api.query("""query($id: ID!) { account(id: $id) { activity(first: 1) { nodes { id } }
        consents { id } } }""", as_="wuhan-app", variables={"id": account})
    entry_id = data["account"]["activity"]["nodes"][0]["id"]
    consent_id = data["account"]["consents"][0]["id"]
    for client in ("wuhan-app", "wuhan-admin"):
        entry = await _node(api, client, entry_id)
        assert entry == {"id": entry_id, "__typename": "ActivityEntry", "kind": "BEHAVIOR_CREDIT", "points": "8"}
        consent = await _node(api, client, consent_id)
        assert consent["__typename"] == "Consent" and consent["id"] == consent_id and consent["live"] is True
    for client in OTHERS:
        assert await _node(api, client, entry_id) is None, client
        assert await _node(api, client, consent_id) is None, client


async def test_an_entitlement_is_a_node_for_the_sponsoring_bank_only(api, database) -> None:
    account = await consenting_account(api)
    service = await make_reward(database, cost=0, kind="FINANCIAL_SERVICE", sponsor="hankou-bank")
    assert (await redeem(api, account, service))["userErrors"] == []
    listed = await api.query("{ entitlements(first: 10) { edges { node { id reward { code } } } } }",
                             as_="hankou-bank")
    [edge] = [e for e in listed["entitlements"]["edges"]]
    entitlement_id = edge["node"]["id"]
    node = await _node(api, "hankou-bank", entitlement_id)
    assert node == {"id": entitlement_id, "__typename": "Entitlement", "status": "ACTIVE",
                    "reward": edge["node"]["reward"]}
    for client in (*OTHERS, "wuhan-app", "wuhan-admin", "anshun-bank"):  # another bank (of another city)
        assert await _node(api, client, entitlement_id) is None, client
