"""The SQL issued by one request does not grow with the length of the lists it returns."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event

CATALOGUE = """query($first: Int) { tenants { slug pointUnit { name } issuers { slug }
    behaviors { code factorGrams }
    rewards(first: $first) { edges { node { id name cost { amount unit { name } } sponsor { slug name } } } } } }"""


@contextmanager
def count_queries(database):
    statements: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append(statement)

    target = database.bind.sync_connection
    event.listen(target, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(target, "before_cursor_execute", before)


async def test_statement_count_is_independent_of_list_lengths(api, database) -> None:
    with count_queries(database) as one_city_one_reward:
        data = await api.query(CATALOGUE, as_="wuhan-app", variables={"first": 1})
    assert len(data["tenants"]) == 1 and len(data["tenants"][0]["rewards"]["edges"]) == 1

    with count_queries(database) as all_cities_all_rewards:
        data = await api.query(CATALOGUE, as_="regulator", variables={"first": 100})
    assert len(data["tenants"]) == 4
    assert sum(len(t["rewards"]["edges"]) for t in data["tenants"]) > 15

    assert len(all_cities_all_rewards) == len(one_city_one_reward), (one_city_one_reward, all_cities_all_rewards)
    # scope + tenants + issuers + rules + rewards + sponsors (+ savepoint bookkeeping in tests)
    assert len(one_city_one_reward) <= 8
