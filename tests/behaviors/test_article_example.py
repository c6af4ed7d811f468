"""The article's example, through the API: 2 × 200 g walking cap + 80 g bus + 262 g payment = 742 g."""

from __future__ import annotations

from tests.factories import consenting_account, local_time, record, submit

ACCOUNT = """query($id: ID!) { account(id: $id) {
    id kind status
    contribution { grams }
    balance { amount unit { name } }
    today { behavior { code } creditedGrams capGrams remainingGrams }
    activity(first: 10) { edges { node { occurredAt behavior { code } reductionGrams points status } }
                          pageInfo { hasNextPage endCursor } }
    consents { provider { slug } categories grantedAt revokedAt }
} }"""


async def test_wuhan_citizen_reaches_742_grams(api) -> None:
    account_id = await consenting_account(api)
    walking = await submit(api, "wuhan-tong", [
        record(account_id, "walking", 15000, local_time(2)),
        record(account_id, "walking", 15000, local_time(1)),
        record(account_id, "bus", 1, local_time(1, 8)),
    ])
    assert [(r["status"], r["reductionGrams"]) for r in walking] == [("CAPPED", "200"), ("CAPPED", "200"), ("CREDITED", "80")]
    payment = await submit(api, "hankou-bank", [record(account_id, "online_living_payment", 1, local_time(1, 9))])
    assert (payment[0]["status"], payment[0]["reductionGrams"]) == ("CREDITED", "262")

    account = (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": account_id}))["account"]
    assert account["contribution"] == {"grams": "742"}
    # 10 g per carbon coin, floor with carry: 20 + 20 + 8 + 26 = 74 coins, 2 g carried.
    assert account["balance"] == {"amount": "74", "unit": {"name": "carbon coins"}}
    activity = [edge["node"] for edge in account["activity"]["edges"]]
    assert [(a["behavior"]["code"], a["reductionGrams"], a["points"], a["status"]) for a in activity] == [
        ("walking", "200", "20", "CAPPED"),  # yesterday 10:00 (newest first, by when it happened)
        ("online_living_payment", "262", "26", "CREDITED"),  # yesterday 09:00
        ("bus", "80", "8", "CREDITED"),  # yesterday 08:00
        ("walking", "200", "20", "CAPPED"),  # the day before
    ]
    assert account["activity"]["pageInfo"]["hasNextPage"] is False
    assert {c["provider"]["slug"]: c["categories"] for c in account["consents"]} == {
        "wuhan-tong": ["TRAVEL"], "hankou-bank": ["CONSUMPTION", "LIFE"]}
    walking_today = next(t for t in account["today"] if t["behavior"]["code"] == "walking")
    assert walking_today == {"behavior": {"code": "walking"}, "creditedGrams": "0", "capGrams": "200",
                             "remainingGrams": "200"}
