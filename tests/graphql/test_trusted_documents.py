"""Trusted documents by hash, and the redeemReward fast path: the same answers as full execution."""

from __future__ import annotations

import uuid

from app.graphql.ids import to_global_id
from app.graphql.trusted import DOCUMENTS, document_hash
from tests.factories import consenting_account, earn, make_reward

REDEEM_DOCUMENT = next(document for document in DOCUMENTS.values() if document.name == "RedeemReward")


async def _by_hash(api, variables: dict, *, as_: str = "wuhan-app", apollo: bool = False) -> dict:
    body = ({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": REDEEM_DOCUMENT.sha256}}}
            if apollo else {"documentId": f"sha256:{REDEEM_DOCUMENT.sha256}"}) | {"variables": variables}
    response = await api.http.post("/graphql", json=body, headers=api.headers(as_))
    assert response.status_code == 200, response.text
    return response.json()


async def _by_text(api, variables: dict, *, as_: str = "wuhan-app") -> dict:
    return (await api.post(REDEEM_DOCUMENT.text, as_=as_, variables=variables)).json()


def _input(account_id: str, reward_id: str, **overrides) -> dict:
    return {"input": {"accountId": account_id, "rewardId": reward_id, "quantity": 1,
                      "idempotencyKey": uuid.uuid4().hex} | overrides}


def _normalised(body: dict) -> dict:
    payload = (body.get("data") or {}).get("redeemReward")
    if payload and payload["redemption"]:
        payload["redemption"]["id"] = "ID"
        if payload["redemption"]["voucherCode"]:
            payload["redemption"]["voucherCode"] = "VOUCHER"
    return body


async def test_the_fast_path_serves_a_redemption_in_one_statement_outside_graphql(api, database) -> None:
    from tests.graphql.test_query_counts import count_queries

    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    reward_id = await make_reward(database, cost=10)
    with count_queries(database) as statements:
        body = await _by_hash(api, _input(account_id, reward_id))
    assert body["data"]["redeemReward"]["userErrors"] == []
    assert statements == [], "the fast path runs carbon_redeem_in_tenant() directly, not GraphQL execution"


def test_the_document_hash_is_its_text_hash() -> None:
    assert REDEEM_DOCUMENT.sha256 == document_hash(REDEEM_DOCUMENT.text)
    assert REDEEM_DOCUMENT.fast_path is not None


async def test_fast_path_answers_like_full_execution(api, database) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    cases = {
        "ok": await make_reward(database, cost=10),
        "INSUFFICIENT_POINTS": await make_reward(database, cost=1000),
        "OUT_OF_STOCK": await make_reward(database, cost=1, stock=0),
        "NOT_ELIGIBLE": await make_reward(database, cost=1, bank=True),
    }
    for name, reward_id in cases.items():
        fast = _normalised(await _by_hash(api, _input(account_id, reward_id)))
        full = _normalised(await _by_text(api, _input(account_id, reward_id)))
        if name == "ok":
            assert fast["data"]["redeemReward"]["balance"] == {"amount": "70"}
            assert full["data"]["redeemReward"]["balance"] == {"amount": "60"}
            fast["data"]["redeemReward"]["balance"] = full["data"]["redeemReward"]["balance"]
        assert fast == full, name
    for overrides in ({"quantity": 0}, {"idempotencyKey": ""}):
        assert _normalised(await _by_hash(api, _input(account_id, cases["ok"], **overrides))) == \
            _normalised(await _by_text(api, _input(account_id, cases["ok"], **overrides)))
    assert (await _by_hash(api, _input("nonsense", cases["ok"])))["data"]["redeemReward"]["userErrors"][0]["code"] == \
        "ACCOUNT_NOT_FOUND"


async def test_replay_by_hash_returns_the_first_result(api, database) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    reward_id = await make_reward(database, cost=10)
    variables = _input(account_id, reward_id)
    first = await _by_hash(api, variables, apollo=True)
    again = await _by_hash(api, variables)
    assert again["data"]["redeemReward"]["redemption"] == first["data"]["redeemReward"]["redemption"]
    assert again["data"]["redeemReward"]["balance"] == {"amount": "70"}
    by_text = await _by_text(api, variables)
    assert by_text["data"]["redeemReward"]["redemption"] == first["data"]["redeemReward"]["redemption"]


async def test_other_roles_and_odd_variables_go_through_full_execution(api, database) -> None:
    account_id = await consenting_account(api)
    reward_id = await make_reward(database, cost=1)
    forbidden = await _by_hash(api, _input(account_id, reward_id), as_="wuhan-tong")
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    wrong_type = await _by_hash(api, {"input": {"accountId": account_id, "rewardId": reward_id, "quantity": "one",
                                                "idempotencyKey": "k"}})
    assert wrong_type["errors"] and "data" not in wrong_type or wrong_type.get("data") is None


async def test_unknown_hash_is_refused(api) -> None:
    response = await api.http.post("/graphql", json={"documentId": "sha256:" + "0" * 64, "variables": {}},
                                   headers=api.headers("wuhan-app"))
    assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_fast_path_edges_answer_like_full_execution(api, database, monkeypatch) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    reward_id = await make_reward(database, cost=1)
    body = {"documentId": f"sha256:{REDEEM_DOCUMENT.sha256}", "variables": _input(account_id, reward_id),
            "operationName": "SomethingElse"}
    wrong_operation = await api.http.post("/graphql", json=body, headers=api.headers("wuhan-app"))
    assert wrong_operation.status_code == 400 and "Unknown operation" in wrong_operation.text
    text_json = await api.http.post("/graphql", content=__import__("json").dumps(
        {"documentId": f"sha256:{REDEEM_DOCUMENT.sha256}", "variables": _input(account_id, reward_id)}),
        headers=api.headers("wuhan-app") | {"content-type": "text/json"})
    assert text_json.status_code >= 400
    nul = await api.http.post("/graphql", json={"documentId": f"sha256:{REDEEM_DOCUMENT.sha256}",
                                                "variables": _input(account_id, reward_id, idempotencyKey="x\u0000")},
                              headers=api.headers("wuhan-app"))
    assert nul.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    missing = await _by_hash(api, _input(account_id, to_global_id("Reward", uuid.uuid4())))
    full_missing = await _by_text(api, _input(account_id, to_global_id("Reward", uuid.uuid4())))
    assert missing == full_missing
    assert missing["data"]["redeemReward"]["userErrors"][0]["message"] == "no such item in this city"
    assert await _balance_of(api, account_id) == "80", "none of these may have redeemed"

    from app.db.session import Database

    async def broken(self, sql, *args):
        raise RuntimeError("connection refused, secret detail")

    monkeypatch.setattr(Database, "fetchval", broken)
    response = await api.http.post("/graphql", json={"documentId": f"sha256:{REDEEM_DOCUMENT.sha256}",
                                                     "variables": _input(account_id, reward_id)},
                                   headers=api.headers("wuhan-app"))
    assert response.status_code == 200 and "secret" not in response.text
    assert response.json() == {"data": None, "errors": [{"message": "Unexpected error.", "path": ["redeemReward"],
                                                         "extensions": {"code": "INTERNAL"}}],
                               "extensions": {"cost": {"requestedQueryCost": REDEEM_DOCUMENT.cost, "budget": 5000}}}


async def _balance_of(api, account_id: str) -> str:
    data = await api.query('query($id: ID!) { account(id: $id) { balance { amount } } }', as_="wuhan-app",
                           variables={"id": account_id})
    return data["account"]["balance"]["amount"]
