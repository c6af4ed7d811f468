"""Account activity: keyset pages, newest first, and a constant number of SQL statements."""

from __future__ import annotations

from tests.factories import consenting_account, local_time, record, submit
from tests.graphql.test_query_counts import count_queries

PAGE = """query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) { account(id: $id) {
    activity(first: $first, after: $after, last: $last, before: $before) {
        edges { cursor node { occurredAt behavior { code name } reductionGrams points status } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }"""


async def _account_with_records(api, count: int) -> str:
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1, 6 + i // 60, i % 60))
                                     for i in range(count)])
    return account_id


async def test_pages_walk_every_entry_once_newest_first(api) -> None:
    account_id = await _account_with_records(api, 7)
    seen, after = [], None
    while True:
        page = (await api.query(PAGE, as_="wuhan-app", variables={"id": account_id, "first": 3, "after": after}))
        activity = page["account"]["activity"]
        seen += [edge["node"]["occurredAt"] for edge in activity["edges"]]
        if not activity["pageInfo"]["hasNextPage"]:
            break
        after = activity["pageInfo"]["endCursor"]
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)
    last = (await api.query(PAGE, as_="wuhan-app", variables={"id": account_id, "last": 2}))["account"]["activity"]
    assert [edge["node"]["occurredAt"] for edge in last["edges"]] == seen[-2:]


async def test_activity_statement_count_does_not_grow_with_the_page(api, database) -> None:
    account_id = await _account_with_records(api, 30)
    with count_queries(database) as one:
        small = await api.query(PAGE, as_="wuhan-app", variables={"id": account_id, "first": 1})
    with count_queries(database) as hundred:
        large = await api.query(PAGE, as_="wuhan-app", variables={"id": account_id, "first": 100})
    assert len(small["account"]["activity"]["edges"]) == 1
    assert len(large["account"]["activity"]["edges"]) == 30
    assert len(one) == len(hundred), (one, hundred)
