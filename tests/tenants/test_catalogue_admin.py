"""Catalogue administration through the API (TENANT_ADMIN): validated, audited, visible at once, and in a
defined relation with the city's configuration file."""

from __future__ import annotations

import uuid

import pytest

from tests.factories import consenting_account, earn, redeem
from tests.tenants.test_loading import _copy, _edit, _load

ADMIN = "wuhan-admin"
CREATE = """mutation($input: CreateRewardInput!) { createReward(input: $input) {
    reward { id code name kind status cost { amount } totalStock remainingStock perAccountLimit }
    userErrors { code field message } } }"""
UPDATE = """mutation($input: UpdateRewardInput!) { updateReward(input: $input) {
    reward { id name cost { amount } perAccountLimit } userErrors { code field message } } }"""
STOCK = """mutation($input: SetRewardStockInput!) { setRewardStock(input: $input) {
    reward { totalStock remainingStock } userErrors { code field message } } }"""
RETIRE = """mutation($input: RetireRewardInput!) { retireReward(input: $input) {
    reward { id } userErrors { code field message } } }"""
AUDIT = "{ auditLog(first: 50) { edges { node { at byClient action targetType targetId changes } } } }"
CATALOGUE = '{ tenant(slug: "wuhan") { rewards(first: 100) { edges { node { id code name cost { amount } } } } } }'


def _fields(**overrides) -> dict:
    return {"name": {"en": "Tree planting badge", "zh": "植树徽章"}, "cost": "3", "sponsor": "hankou-bank"} | overrides


async def _create(api, **overrides) -> dict:
    code = overrides.pop("code", f"admin-{uuid.uuid4().hex[:8]}")
    data = await api.query(CREATE, as_=ADMIN, variables={"input": {
        "code": code, "kind": overrides.pop("kind", "REWARD"), "totalStock": overrides.pop("totalStock", None),
        "fields": _fields(**overrides)}})
    return data["createReward"]


async def _audit(api) -> list[dict]:
    return [edge["node"] for edge in (await api.query(AUDIT, as_=ADMIN))["auditLog"]["edges"]]


async def test_an_item_created_is_in_the_catalogue_at_once_redeemable_and_audited(api) -> None:
    created = await _create(api, totalStock=2, perAccountLimit=1)
    assert created["userErrors"] == []
    reward = created["reward"]
    assert reward["cost"] == {"amount": "3"} and reward["remainingStock"] == 2 and reward["perAccountLimit"] == 1
    assert reward["status"] == "ACTIVE"
    catalogue = await api.query(CATALOGUE, as_="wuhan-app")
    assert reward["id"] in [edge["node"]["id"] for edge in catalogue["tenant"]["rewards"]["edges"]]
    account = await consenting_account(api)
    await earn(api, account, 8)
    assert (await redeem(api, account, reward["id"]))["balance"] == {"amount": "5"}
    [event] = [e for e in await _audit(api) if e["targetId"] == reward["id"]]
    assert event["action"] == "CREATE" and event["byClient"] == ADMIN and event["targetType"] == "Reward"
    assert event["changes"]["cost_points"] == {"from": None, "to": 3}


async def test_edits_stock_and_retirement_take_effect_at_once_and_are_audited(api) -> None:
    reward = (await _create(api, totalStock=5))["reward"]
    account = await consenting_account(api)
    await earn(api, account, 16)
    await redeem(api, account, reward["id"])
    await redeem(api, account, reward["id"])

    edited = (await api.query(UPDATE, as_=ADMIN, variables={"input": {"id": reward["id"], "fields": {
        "name": {"en": "Renamed badge", "zh": "新徽章"}, "cost": "4", "perAccountLimit": 3}}}))["updateReward"]
    assert edited["userErrors"] == [] and edited["reward"]["cost"] == {"amount": "4"}
    names = {e["node"]["id"]: e["node"]["name"] for e in (await api.query(CATALOGUE, as_="wuhan-app"))
             ["tenant"]["rewards"]["edges"]}
    assert names[reward["id"]] == "Renamed badge"

    below = (await api.query(STOCK, as_=ADMIN, variables={"input": {"id": reward["id"], "totalStock": 1}}))
    assert below["setRewardStock"]["userErrors"][0]["code"] == "STOCK_BELOW_TAKEN"
    exact = (await api.query(STOCK, as_=ADMIN, variables={"input": {"id": reward["id"], "totalStock": 2}}))
    assert exact["setRewardStock"]["reward"] == {"totalStock": 2, "remainingStock": 0}
    assert (await redeem(api, account, reward["id"]))["userErrors"][0]["code"] == "OUT_OF_STOCK"

    retired = await api.query(RETIRE, as_=ADMIN, variables={"input": {"id": reward["id"]}})
    assert retired["retireReward"]["userErrors"] == []
    assert (await redeem(api, account, reward["id"]))["userErrors"][0]["code"] == "REWARD_UNAVAILABLE"
    again = await api.query(RETIRE, as_=ADMIN, variables={"input": {"id": reward["id"]}})
    assert again["retireReward"]["userErrors"][0]["code"] == "ALREADY_RETIRED"
    status = 'query($id: ID!) { node(id: $id) { ... on Reward { status } } }'
    assert (await api.query(status, as_="wuhan-app", variables={"id": reward["id"]}))["node"] == {"status": "RETIRED"}
    # A retired item is out of the catalogue: it is no longer edited or restocked.
    late_edit = await api.query(UPDATE, as_=ADMIN, variables={"input": {"id": reward["id"], "fields": {"cost": "9"}}})
    late_stock = await api.query(STOCK, as_=ADMIN, variables={"input": {"id": reward["id"], "totalStock": 50}})
    assert [(e["code"], e["field"]) for e in late_edit["updateReward"]["userErrors"]] == [
        ("ALREADY_RETIRED", ["input", "id"])] and late_edit["updateReward"]["reward"] is None
    assert [e["code"] for e in late_stock["setRewardStock"]["userErrors"]] == ["ALREADY_RETIRED"]

    actions = [e["action"] for e in await _audit(api) if e["targetId"] == reward["id"]]
    assert actions == ["RETIRE", "SET_STOCK", "UPDATE", "CREATE"]  # newest first; refused changes left none
    update = next(e for e in await _audit(api) if e["targetId"] == reward["id"] and e["action"] == "UPDATE")
    assert update["changes"]["cost_points"] == {"from": 3, "to": 4}
    assert update["changes"]["name_en"] == {"from": "Tree planting badge", "to": "Renamed badge"}


async def test_a_stock_given_to_an_unlimited_item_counts_a_projects_gifts_not_a_rewards_units(api) -> None:
    reward = (await _create(api))["reward"]
    project = (await _create(api, kind="DONATION", sponsor="wuhan-green-welfare"))["reward"]
    assert reward["remainingStock"] is None and project["remainingStock"] is None
    account = await consenting_account(api)
    await earn(api, account, 24)
    for item in (reward, project):
        for _ in range(3):
            assert (await redeem(api, account, item["id"], quantity=1))["userErrors"] == []

    def stock(item: dict, total: int) -> dict:
        return api.query(STOCK, as_=ADMIN, variables={"input": {"id": item["id"], "totalStock": total}})

    # A reward handed out units while unlimited without counting them: a stock of 10 is 10 more.
    assert (await stock(reward, 10))["setRewardStock"]["reward"] == {"totalStock": 10, "remainingStock": 10}
    assert (await stock(reward, 2))["setRewardStock"]["reward"] == {"totalStock": 2, "remainingStock": 2}
    # A donation project counts every gift (its running total): a stock of 10 is 10 gifts in all.
    assert (await stock(project, 10))["setRewardStock"]["reward"] == {"totalStock": 10, "remainingStock": 7}
    below = (await stock(project, 2))["setRewardStock"]
    assert below["userErrors"][0]["code"] == "STOCK_BELOW_TAKEN" and below["reward"] is None


async def test_a_minimum_contribution_reads_back_exactly(api) -> None:
    reward = (await _create(api, minContributionGrams="0.5"))["reward"]
    query = """query($id: ID!) { node(id: $id) { ... on Reward { eligibility {
        minContribution { grams milligrams } minContributionGrams } } } }"""
    eligibility = (await api.query(query, as_="wuhan-app", variables={"id": reward["id"]}))["node"]["eligibility"]
    assert eligibility == {"minContribution": {"grams": "0.5", "milligrams": 500}, "minContributionGrams": 0}
    account = await consenting_account(api)  # 0 g: below half a gram
    assert [e["code"] for e in (await redeem(api, account, reward["id"]))["userErrors"]] == ["NOT_ELIGIBLE"]


@pytest.mark.parametrize(("overrides", "code"), [
    ({"code": "bad code!"}, "INVALID_CODE"),
    ({"cost": "1.5"}, "INVALID_COST"),  # Wuhan's coins have no decimals
    ({"cost": "-1"}, "INVALID_COST"),
    ({"sponsor": "beijing-green-bank"}, "SPONSOR_NOT_FOUND"),  # another city's issuer
    ({"validFrom": "2026-12-01T00:00:00Z", "validTo": "2026-11-01T00:00:00Z"}, "INVALID_VALIDITY"),
    ({"perAccountLimit": 0}, "INVALID_LIMIT"),
    ({"totalStock": -1}, "INVALID_STOCK"),
    ({"name": {"en": "", "zh": "空"}}, "INVALID_NAME"),
])
async def test_refused_changes_write_nothing(api, overrides, code) -> None:
    before = await _audit(api)
    refused = await _create(api, **overrides)
    assert refused["reward"] is None and refused["userErrors"][0]["code"] == code
    assert await _audit(api) == before


async def test_every_refused_part_of_a_change_is_reported_at_its_input_path(api) -> None:
    before = await _audit(api)
    refused = await _create(api, code="bad code!", totalStock=-1, cost="1.5", sponsor="no-such-bank",
                            name={"en": "", "zh": "名"}, perAccountLimit=0, validTo="2026-12-01T00:00:00",
                            minContributionGrams="lots")
    assert refused["reward"] is None
    assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [
        ("INVALID_CODE", ["input", "code"]),
        ("INVALID_STOCK", ["input", "totalStock"]),
        ("SPONSOR_NOT_FOUND", ["input", "fields", "sponsor"]),
        ("INVALID_COST", ["input", "fields", "cost"]),
        ("INVALID_COST", ["input", "fields", "minContributionGrams"]),
        ("INVALID_NAME", ["input", "fields", "name", "en"]),
        ("INVALID_LIMIT", ["input", "fields", "perAccountLimit"]),
        ("INVALID_VALIDITY", ["input", "fields", "validTo"]),
    ], refused["userErrors"]
    assert await _audit(api) == before

    reward = (await _create(api))["reward"]
    edit = (await api.query(UPDATE, as_=ADMIN, variables={"input": {"id": reward["id"], "fields": {
        "cost": "-1", "description": {"en": "x" * 801, "zh": "说明"}, "cancellationWindowHours": -1}}}))["updateReward"]
    assert [(e["code"], e["field"]) for e in edit["userErrors"]] == [
        ("INVALID_COST", ["input", "fields", "cost"]),
        ("INVALID_NAME", ["input", "fields", "description", "en"]),
        ("INVALID_WINDOW", ["input", "fields", "cancellationWindowHours"]),
    ], edit["userErrors"]
    catalogue = {e["node"]["id"]: e["node"] for e in (await api.query(CATALOGUE, as_="wuhan-app"))
                 ["tenant"]["rewards"]["edges"]}
    assert catalogue[reward["id"]]["cost"] == {"amount": "3"}


async def test_a_code_is_unique_in_its_city(api) -> None:
    first = await _create(api, code="admin-unique")
    assert first["userErrors"] == []
    assert (await _create(api, code="admin-unique"))["userErrors"][0]["code"] == "CODE_TAKEN"
    both = await _create(api, code="admin-unique", cost="-1")  # reported with the other problems
    assert [e["code"] for e in both["userErrors"]] == ["CODE_TAKEN", "INVALID_COST"]


async def test_the_file_and_the_api_each_keep_what_they_manage(api, database, tmp_path) -> None:
    """Restarts re-apply a file item only when the file's text for it changed; API-made items stay."""
    catalogue = {e["node"]["code"]: e["node"] for e in (await api.query(CATALOGUE, as_="wuhan-app"))
                 ["tenant"]["rewards"]["edges"]}
    file_item = next(code for code in catalogue if not code.startswith("admin-"))
    edited = await api.query(UPDATE, as_=ADMIN, variables={"input": {"id": catalogue[file_item]["id"],
                                                                      "fields": {"cost": "77"}}})
    assert edited["updateReward"]["userErrors"] == []
    made = (await _create(api, code="admin-survivor"))["reward"]

    config = _copy(tmp_path)
    await _load(database, config)  # a restart with the file unchanged
    now = {e["node"]["code"]: e["node"] for e in (await api.query(CATALOGUE, as_="wuhan-app"))
           ["tenant"]["rewards"]["edges"]}
    assert now[file_item]["cost"] == {"amount": "77"}, "the administrator's edit survives a restart"
    assert now["admin-survivor"]["id"] == made["id"], "the file never retires items made through the API"

    wuhan = config / "tenants" / "wuhan.toml"
    text = wuhan.read_text(encoding="utf-8")
    at = text.index(f'code = "{file_item}"')
    cost_at = text.index("cost = ", at)
    old_line = text[cost_at:text.index("\n", cost_at)]
    _edit(wuhan, text[at:text.index("\n", cost_at)], text[at:cost_at] + "cost = 9")
    assert old_line != "cost = 9"
    await _load(database, config)  # the file changed this item: the file wins for it
    final = {e["node"]["code"]: e["node"] for e in (await api.query(CATALOGUE, as_="wuhan-app"))
             ["tenant"]["rewards"]["edges"]}
    assert final[file_item]["cost"] == {"amount": "9"}
    assert "admin-survivor" in final


@pytest.mark.parametrize(("overrides", "code"), [
    ({"validTo": "2026-12-01T00:00:00"}, "INVALID_VALIDITY"),  # no UTC offset
    ({"cost": "1E+1000000000"}, "INVALID_COST"),
    ({"minContributionGrams": "1E+1000000000"}, "INVALID_COST"),
    ({"code": "Upper_Case"}, "INVALID_CODE"),  # the file's slug rule
    ({"cancellationWindowHours": 8784}, "INVALID_WINDOW"),
    # Python's Decimal reads these; a catalogue amount is plain ASCII digits.
    ({"cost": "\u0661\u0662"}, "INVALID_COST"), ({"cost": "1_000"}, "INVALID_COST"), ({"cost": "+5"}, "INVALID_COST"),
    ({"cost": " 5 "}, "INVALID_COST"), ({"cost": "1e3"}, "INVALID_COST"), ({"minContributionGrams": "0x10"}, "INVALID_COST"),
])
async def test_more_refused_inputs(api, overrides, code) -> None:
    refused = await _create(api, **overrides)
    assert refused["reward"] is None and refused["userErrors"][0]["code"] == code


async def test_reordering_the_file_reapplies_nothing_and_a_re_added_item_comes_back(api, database, tmp_path) -> None:
    catalogue = {e["node"]["code"]: e["node"] for e in (await api.query(CATALOGUE, as_="wuhan-app"))
                 ["tenant"]["rewards"]["edges"]}
    config = _copy(tmp_path)
    wuhan = config / "tenants" / "wuhan.toml"
    original = wuhan.read_text(encoding="utf-8")
    first_start = original.index("[[rewards]]")
    first_end = original.index("[[rewards]]", first_start + 1)
    first_code = original[first_start:first_end].split('code = "', 1)[1].split('"', 1)[0]
    later = next(code for code in catalogue if code != first_code and not code.startswith("admin-"))
    assert (await api.query(UPDATE, as_=ADMIN, variables={"input": {"id": catalogue[later]["id"],
                                                                     "fields": {"cost": "77"}}}))["updateReward"][
        "userErrors"] == []
    wuhan.write_text(original[:first_start] + original[first_end:], encoding="utf-8")  # remove the first item
    await _load(database, config)
    now = {e["node"]["code"]: e["node"] for e in (await api.query(CATALOGUE, as_="wuhan-app"))
           ["tenant"]["rewards"]["edges"]}
    assert first_code not in now and now[later]["cost"] == {"amount": "77"}, "other items were not re-applied"
    wuhan.write_text(original, encoding="utf-8")  # the same declaration back
    await _load(database, config)
    back = {e["node"]["code"] for e in (await api.query(CATALOGUE, as_="wuhan-app"))["tenant"]["rewards"]["edges"]}
    assert first_code in back
