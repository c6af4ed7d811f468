"""Trusted documents by hash, and the redeemReward fast path: the same answers as full execution."""

from __future__ import annotations

import uuid

from app.graphql.ids import to_global_id
from app.graphql.trusted import DOCUMENTS, document_hash
from tests.factories import consenting_account, earn, make_reward, register_document

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


async def test_a_document_id_that_is_not_the_querys_hash_is_refused(api) -> None:
    """Both sent: the text would run, so the id must be its hash (a client could otherwise label any text
    with a trusted document's id)."""
    listed, other = "{ tenants { slug name } }", "{ tenants { timezone } }"
    for body in ({"documentId": f"sha256:{document_hash(listed)}", "query": other},
                 {"query": other, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_hash(listed)}}}):
        answer = (await api.http.post("/graphql", json=body, headers=api.headers("wuhan-app"))).json()
        assert "data" not in answer and answer["errors"][0]["extensions"]["code"] == "DOCUMENT_ID_MISMATCH", answer
    matching = {"query": other, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_hash(other)}}}
    answer = (await api.http.post("/graphql", json=matching, headers=api.headers("wuhan-app"))).json()
    assert answer["data"] == {"tenants": [{"timezone": "Asia/Shanghai"}]}


async def test_fast_path_edges_answer_like_full_execution(api, database, monkeypatch) -> None:
    account_id = await consenting_account(api)
    await earn(api, account_id, 80)
    reward_id = await make_reward(database, cost=1)
    body = {"documentId": f"sha256:{REDEEM_DOCUMENT.sha256}", "variables": _input(account_id, reward_id),
            "operationName": "SomethingElse"}
    wrong_operation = await api.http.post("/graphql", json=body, headers=api.headers("wuhan-app") | {
        "accept": "application/graphql-response+json"})
    assert wrong_operation.status_code == 400 and "unknown operation" in wrong_operation.text
    assert "data" not in wrong_operation.json()
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


# ------------------------------------------------------------------ registered documents, restricted clients

async def _send(api, body: dict, as_: str, accept: str = "application/graphql-response+json"):
    return await api.http.post("/graphql", json=body, headers=api.headers(as_) | {"accept": accept})


async def test_a_registered_document_is_served_by_id_in_its_city_only(api, database) -> None:
    document = await register_document(database, "wuhan", f"query Slugs{uuid.uuid4().hex} {{ tenants {{ slug }} }}")
    body = {"documentId": f"sha256:{document.sha256}"}
    served = await _send(api, body, "wuhan-app")
    assert served.status_code == 200 and served.json()["data"] == {"tenants": [{"slug": "wuhan"}]}
    by_get = await api.http.get("/graphql", params=body, headers=api.headers("wuhan-app"))
    assert by_get.status_code == 200 and by_get.json()["data"] == {"tenants": [{"slug": "wuhan"}]}
    elsewhere = await _send(api, body, "beijing-app")
    assert elsewhere.status_code == 400 and "data" not in elsewhere.json()
    assert elsewhere.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_trusted_documents_only_client_sends_nothing_else(api, database) -> None:
    """shanghai-app is configured with `trusted_documents_only = true`."""
    free_form = await _send(api, {"query": "{ tenants { slug } }"}, "shanghai-app")
    assert free_form.status_code == 400 and "data" not in free_form.json()
    assert free_form.json()["errors"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"
    legacy = await _send(api, {"query": "{ tenants { slug } }"}, "shanghai-app", accept="application/json")
    assert legacy.status_code == 200 and legacy.json()["errors"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"
    unknown = await _send(api, {"documentId": "sha256:" + "1" * 64}, "shanghai-app")
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    document = await register_document(database, "shanghai", f"query Mine{uuid.uuid4().hex} {{ tenants {{ slug }} }}")
    registered = await _send(api, {"documentId": f"sha256:{document.sha256}"}, "shanghai-app")
    assert registered.status_code == 200 and registered.json()["data"] == {"tenants": [{"slug": "shanghai"}]}
    built_in = await _send(api, {"documentId": f"sha256:{REDEEM_DOCUMENT.sha256}",
                                 "variables": _input("nonsense", "nonsense")}, "shanghai-app")
    assert built_in.json()["data"]["redeemReward"]["userErrors"][0]["code"] == "ACCOUNT_NOT_FOUND"
    # Other clients of the city are not restricted.
    assert (await _send(api, {"query": "{ tenants { slug } }"}, "shanghai-admin")).status_code == 200


def test_documents_that_do_not_validate_are_refused() -> None:
    import pytest

    from app.graphql.trusted import DocumentRefused, compile_document

    with pytest.raises(DocumentRefused, match="does not validate"):
        compile_document("{ tenants { nope } }", "x")
    with pytest.raises(DocumentRefused, match="does not parse"):
        compile_document("{ tenants {", "x")


def test_the_register_command(database_target, tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    good = tmp_path / "CitySlugs.graphql"
    good.write_text(f"query CitySlugs{uuid.uuid4().hex} {{ tenants {{ slug }} }}\n", encoding="utf-8")
    bad = tmp_path / "Bad.graphql"
    bad.write_text("{ tenants { nope } }", encoding="utf-8")
    env = {"CARBON_DATABASE_URL": database_target.owner_url, "CARBON_APP_DATABASE_URL": database_target.app_url,
           "PATH": str(Path(sys.executable).parent)}
    script = str(Path(sys.executable).parent / "carbon-inclusive")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script, "documents", *args], capture_output=True, text=True, env=env, timeout=120)

    refused = run("register", str(good), str(bad))
    assert refused.returncode == 2 and "Bad.graphql: does not validate" in refused.stderr
    assert "nothing was registered" in refused.stderr
    first = run("register", str(good), "--city", "wuhan", "--city", "beijing")
    digest = document_hash(good.read_text(encoding="utf-8"))
    assert first.returncode == 0, first.stderr
    assert f"sha256:{digest}" in first.stdout and "(beijing: registered, wuhan: registered)" in first.stdout
    again = run("register", "--city", "wuhan", str(good))  # the files after the option, as the README writes it
    assert again.returncode == 0 and "(wuhan: already registered)" in again.stdout, again.stderr
    assert run("register", "--city", "wuhan", str(good), "--nope").returncode == 2  # still an error
    listed = run("list", "--city", "wuhan")
    assert f"wuhan\tsha256:{digest}" in listed.stdout
    # The hash is of the file's bytes (CRLF kept), and one text named twice is registered once.
    crlf = tmp_path / "Windows.graphql"
    crlf.write_bytes(f"query Win{uuid.uuid4().hex} {{\r\n  tenants {{ slug }}\r\n}}\r\n".encode())
    twice = run("register", str(crlf), str(crlf), "--city", "wuhan")
    crlf_digest = document_hash(crlf.read_bytes().decode("utf-8"))
    assert twice.stdout.count(f"sha256:{crlf_digest}") == 2 and "already registered" not in twice.stdout, twice.stdout
    assert run("register", str(good), "--city", "paris").returncode == 2
