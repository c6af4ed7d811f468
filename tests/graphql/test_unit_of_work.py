"""The unit of work ends only after every resolver of the operation has stopped touching the database."""

from __future__ import annotations

import pytest

NULLING = {
    # entitlements is non-null and refused for a city app: graphql-core then cancels `tenants` mid-query
    "sibling in flight": '{ tenants { name } entitlements(first: 1) { edges { cursor } } }',
    "several errors": '{ tenants { name } entitlements(first: 1) { edges { cursor } } node(id: "bad") { id } }',
}


@pytest.mark.parametrize("document", NULLING.values(), ids=list(NULLING))
async def test_an_error_that_nulls_the_data_leaves_the_connection_sound(api, document) -> None:
    nulled = await api.post(document, as_="wuhan-app")
    assert nulled.json()["data"] is None
    assert "FORBIDDEN" in {error["extensions"]["code"] for error in nulled.json()["errors"]}
    # The same connection serves the next operation (a cancelled statement would have broken it).
    assert (await api.query("{ tenants { slug } }", as_="wuhan-app"))["tenants"] == [{"slug": "wuhan"}]
