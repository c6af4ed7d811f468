"""The issue's catalogue queries, through HTTP with real tokens, exactly as clients send them."""

from __future__ import annotations

import pytest

TENANTS = "{ tenants { slug name timezone pointUnit { name } } }"

WUHAN = """{ tenant(slug: "wuhan") {
    slug pointUnit { name gramsPerPoint }
    issuers { slug name kind }
    behaviors { code name category method }
    rewards(first: 20) { edges { node { id name kind cost { amount unit { name } } } }
                         pageInfo { hasNextPage endCursor } }
} }"""


async def test_city_app_sees_only_its_own_tenant(api) -> None:
    data = await api.query(TENANTS, as_="wuhan-app")
    assert data["tenants"] == [
        {"slug": "wuhan", "name": "Wuhan", "timezone": "Asia/Shanghai", "pointUnit": {"name": "carbon coins"}}
    ]


async def test_each_city_shows_its_expiry_policy(api) -> None:
    data = await api.query("{ tenants { slug pointExpiryMonths claimWindowDays } }", as_="regulator")
    expiry = {tenant["slug"]: tenant["pointExpiryMonths"] for tenant in data["tenants"]}
    assert expiry == {"beijing": 12, "guizhou": 24, "shanghai": None, "wuhan": 24}  # as in the README


async def test_regulator_sees_all_four_cities(api) -> None:
    data = await api.query(TENANTS, as_="regulator")
    units = {tenant["slug"]: tenant["pointUnit"]["name"] for tenant in data["tenants"]}
    assert units == {
        "beijing": "green points",
        "guizhou": "low-carbon points",
        "shanghai": "carbon inclusive points",
        "wuhan": "carbon coins",
    }


async def test_wuhan_catalogue_query_as_written(api) -> None:
    tenant = (await api.query(WUHAN, as_="wuhan-app"))["tenant"]
    assert tenant["slug"] == "wuhan"
    assert tenant["pointUnit"] == {"name": "carbon coins", "gramsPerPoint": 10}
    issuers = {issuer["slug"]: issuer["kind"] for issuer in tenant["issuers"]}
    assert issuers["hankou-bank"] == "BANK"
    assert issuers["wuhan-tong"] == "CITY_CARD"
    behaviors = {behavior["code"]: behavior for behavior in tenant["behaviors"]}
    assert len(behaviors) == 10
    assert behaviors["walking"]["category"] == "TRAVEL" and behaviors["walking"]["method"] == "PER_UNIT"
    assert behaviors["bus"]["method"] == "PER_EVENT"
    assert behaviors["online_living_payment"]["method"] == "PER_EVENT"
    assert behaviors["shared_bike"]["method"] == "PER_DISTANCE"
    edges = tenant["rewards"]["edges"]
    assert {edge["node"]["kind"] for edge in edges} == {"REWARD", "DONATION", "FINANCIAL_SERVICE"}
    for edge in edges:
        assert edge["node"]["cost"]["unit"]["name"] == "carbon coins"
    discount = next(edge["node"] for edge in edges if "5-yuan" in edge["node"]["name"])
    assert discount["cost"]["amount"] == "500"
    assert tenant["rewards"]["pageInfo"]["hasNextPage"] is False


async def test_article_factors_are_exact(api) -> None:
    query = """{ tenant(slug: "wuhan") { behaviors { code unit factorGrams capGramsPerDay } } }"""
    behaviors = {b["code"]: b for b in (await api.query(query, as_="wuhan-app"))["tenant"]["behaviors"]}
    assert behaviors["walking"] == {"code": "walking", "unit": "step", "factorGrams": "0.02", "capGramsPerDay": "200"}
    assert behaviors["bus"]["factorGrams"] == "80"
    assert behaviors["subway"]["factorGrams"] == "80"
    assert behaviors["online_living_payment"]["factorGrams"] == "262"
    assert behaviors["shared_bike"]["factorGrams"] == "93.3"


async def test_beijing_prices_transit_by_distance_against_a_car_baseline(api) -> None:
    query = """{ tenant(slug: "beijing") { behaviors { code method factorGrams baselineGramsPerKm modeGramsPerKm } } }"""
    behaviors = {b["code"]: b for b in (await api.query(query, as_="beijing-app"))["tenant"]["behaviors"]}
    assert behaviors["bus"] == {"code": "bus", "method": "PER_DISTANCE", "factorGrams": "165",
                                "baselineGramsPerKm": "220", "modeGramsPerKm": "55"}
    assert behaviors["subway"]["factorGrams"] == "189"


async def test_names_follow_accept_language(api) -> None:
    query = """{ tenant(slug: "wuhan") { name pointUnit { name } issuers { slug name } behaviors { code name }
                rewards(first: 1) { edges { node { name cost { unit { name } } } } } } }"""
    chinese = (await api.query(query, as_="wuhan-app", language="zh-CN,zh;q=0.9,en;q=0.8"))["tenant"]
    assert chinese["name"] == "武汉"
    assert chinese["pointUnit"]["name"] == "碳币"
    assert {i["slug"]: i["name"] for i in chinese["issuers"]}["hankou-bank"] == "汉口银行"
    assert chinese["rewards"]["edges"][0]["node"]["cost"]["unit"]["name"] == "碳币"
    english = (await api.query(query, as_="wuhan-app", language="en-US,zh;q=0.5"))["tenant"]
    assert english["name"] == "Wuhan"
    assert (await api.query(query, as_="wuhan-app", language="fr"))["tenant"]["pointUnit"]["name"] == "carbon coins"
    assert (await api.query(query, as_="wuhan-app", language="en;q=0.1, zh-TW"))["tenant"]["name"] == "武汉"


async def test_other_tenant_is_null_for_a_city_app(api) -> None:
    assert (await api.query('{ tenant(slug: "beijing") { slug } }', as_="wuhan-app"))["tenant"] is None
    assert (await api.query('{ tenant(slug: "nowhere") { slug } }', as_="regulator"))["tenant"] is None
    assert (await api.query('{ tenant(slug: "beijing") { slug } }', as_="regulator"))["tenant"] == {"slug": "beijing"}


async def test_partner_and_admin_see_their_own_city(api) -> None:
    for client in ("wuhan-tong", "hankou-bank", "wuhan-admin"):
        assert [t["slug"] for t in (await api.query(TENANTS, as_=client))["tenants"]] == ["wuhan"]
    assert [t["slug"] for t in (await api.query(TENANTS, as_="anshun-bank"))["tenants"]] == ["guizhou"]


PAGE = """query($first: Int, $after: String, $last: Int, $before: String, $kind: RewardKind) {
  tenant(slug: "beijing") { rewards(first: $first, after: $after, last: $last, before: $before, kind: $kind) {
    edges { cursor node { code kind } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }"""


async def _page(api, **variables) -> dict:
    return (await api.query(PAGE, as_="beijing-app", variables=variables))["tenant"]["rewards"]


async def test_keyset_pagination_walks_the_catalogue_forwards_and_backwards(api) -> None:
    everything = [edge["node"]["code"] for edge in (await _page(api, first=100))["edges"]]
    assert len(everything) == 6
    seen, after = [], None
    while True:
        page = await _page(api, first=4, after=after)
        seen += [edge["node"]["code"] for edge in page["edges"]]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == everything
    last_two = await _page(api, last=2)
    assert [edge["node"]["code"] for edge in last_two["edges"]] == everything[-2:]
    assert last_two["pageInfo"]["hasPreviousPage"] is True
    before = await _page(api, last=3, before=last_two["pageInfo"]["startCursor"])
    assert [edge["node"]["code"] for edge in before["edges"]] == everything[1:4]
    assert before["pageInfo"]["hasNextPage"] is True


async def test_kind_filter(api) -> None:
    page = await _page(api, first=100, kind="REWARD")
    assert page["edges"] and {edge["node"]["kind"] for edge in page["edges"]} == {"REWARD"}
    codes = {edge["node"]["code"] for edge in page["edges"]}
    assert {"subway-card-10-yuan", "cycling-monthly-card", "parking-coupon", "green-consumption-coupon"} <= codes


@pytest.mark.parametrize(("variables", "argument"), [
    ({"first": 101}, "first"),
    ({"first": -1}, "first"),
    ({"last": 500}, "last"),
    ({"first": 1, "last": 1}, "last"),
    ({"first": 1, "after": "not-a-cursor"}, "after"),
])
async def test_bad_page_arguments_are_typed_errors(api, variables, argument) -> None:
    errors = await api.errors(PAGE, as_="beijing-app", variables=variables)
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}


async def test_a_cursor_of_another_list_is_refused(api, committed_api) -> None:
    """A cursor is bound to its connection and owner: another city's catalogue cursor, or an activity
    cursor, is a typed error naming the argument, not a quiet position in this list."""
    wuhan = (await api.query('{ tenant(slug: "wuhan") { rewards(first: 1) { pageInfo { endCursor } } } }',
                             as_="wuhan-app"))["tenant"]["rewards"]["pageInfo"]["endCursor"]
    own = (await _page(api, first=1))["pageInfo"]["endCursor"]
    assert (await _page(api, first=1, after=own))["edges"]  # its own cursor still pages
    for variables, argument in (({"first": 1, "after": wuhan}, "after"), ({"last": 1, "before": wuhan}, "before")):
        errors = await api.errors(PAGE, as_="beijing-app", variables=variables)
        assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}
        assert "another list" in errors[0]["message"]
    created = await api.query("""mutation { createReward(input: {code: "cursor-badge", kind: REWARD, fields: {
        name: {en: "Badge", zh: "徽章"}, cost: "1", sponsor: "hankou-bank"}}) { userErrors { code } } }""",
                              as_="wuhan-admin")
    assert created["createReward"]["userErrors"] == []
    log = await api.query("{ auditLog(first: 1) { pageInfo { endCursor } } }", as_="wuhan-admin")
    audit_cursor = log["auditLog"]["pageInfo"]["endCursor"]  # a time-keyed cursor of another city's log
    audit = "query($a: String) { auditLog(first: 1, after: $a) { edges { cursor } } }"
    await api.query(audit, as_="wuhan-admin", variables={"a": audit_cursor})  # pages its own log
    errors = await api.errors(audit, as_="beijing-admin", variables={"a": audit_cursor})
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}


def _forged(scope, *values) -> str:
    """A cursor carrying the right list's tag but a sort key the server never made."""
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps([scope.tag, *values]).encode()).decode().rstrip("=")


@pytest.mark.parametrize("key", [
    (1, 2), (1, ["a"]), (True, "00000000-0000-0000-0000-000000000000"), (2**40, "00000000-0000-0000-0000-000000000000"),
    (1,), (1, "not-a-uuid"),
])
async def test_a_forged_position_cursor_is_bad_input(api, key) -> None:
    from app.graphql.pagination import CursorScope
    from app.tenants.models import tenant_id_for

    cursor = _forged(CursorScope("rewards", tenant_id_for("beijing")), *key)
    errors = await api.errors(PAGE, as_="beijing-app", variables={"first": 1, "after": cursor})
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}


@pytest.mark.parametrize("key", [
    ("2026-01-01T00:00:00+00:00", 5), (5, "00000000-0000-0000-0000-000000000000"),
    ("9999-12-31T23:59:59-23:59", "00000000-0000-0000-0000-000000000000"),
    ("0001-01-01T00:00:00+14:00", "00000000-0000-0000-0000-000000000000"),
    ("2026-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"),  # no offset
])
async def test_a_forged_time_cursor_is_bad_input(api, key) -> None:
    from app.graphql.pagination import CursorScope
    from app.tenants.models import tenant_id_for

    cursor = _forged(CursorScope("auditLog", tenant_id_for("wuhan")), *key)
    errors = await api.errors("query($a: String) { auditLog(first: 1, after: $a) { edges { cursor } } }",
                              as_="wuhan-admin", variables={"a": cursor})
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}


async def test_a_deeply_nested_cursor_is_bad_input(api) -> None:
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).decode()
    errors = await api.errors(PAGE, as_="beijing-app", variables={"first": 1, "after": cursor})
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}


async def test_node_lookup_respects_tenants(api) -> None:
    data = await api.query('{ tenant(slug: "wuhan") { id rewards(first: 1) { edges { node { id code } } } } }',
                           as_="wuhan-app")
    reward = data["tenant"]["rewards"]["edges"][0]["node"]
    node_query = "query($id: ID!) { node(id: $id) { id ... on Reward { code remainingStock } } }"
    found = await api.query(node_query, as_="wuhan-app", variables={"id": reward["id"]})
    assert found["node"]["code"] == reward["code"]
    assert (await api.query(node_query, as_="beijing-app", variables={"id": reward["id"]}))["node"] is None
    assert (await api.query(node_query, as_="regulator", variables={"id": reward["id"]}))["node"]["id"] == reward["id"]
    errors = await api.errors(node_query, as_="wuhan-app", variables={"id": "%%%"})
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_each_city_has_a_small_finite_stock_item_and_unlimited_items_report_null(api) -> None:
    query = """query($slug: String!) { tenant(slug: $slug) { rewards(first: 100) { edges { node { code remainingStock } } } } }"""
    for slug in ("wuhan", "beijing", "guizhou", "shanghai"):
        nodes = [e["node"] for e in (await api.query(query, as_="regulator", variables={"slug": slug}))["tenant"]["rewards"]["edges"]]
        stocks = [node["remainingStock"] for node in nodes]
        assert any(stock is not None and stock <= 100 for stock in stocks), slug
        assert None in stocks, slug
