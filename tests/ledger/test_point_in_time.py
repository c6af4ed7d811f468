"""balance(at) and contribution(at): an account's values as they stood at a moment, from the ledger's
history (committed requests: each posting carries its own transaction's time)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import SHANGHAI, consenting_account, local_time, record, submit

AT = """query($id: ID!, $at: DateTime) { account(id: $id) { balance(at: $at) { amount }
    contribution(at: $at) { grams } } }"""


async def _at(api, account: str, at: datetime | None) -> tuple[str, str]:
    data = (await api.query(AT, as_="wuhan-app", variables={"id": account, "at": at.isoformat() if at else None}))
    return data["account"]["balance"]["amount"], data["account"]["contribution"]["grams"]


async def _moment() -> datetime:
    await asyncio.sleep(0.02)
    moment = datetime.now(UTC)
    await asyncio.sleep(0.02)
    return moment


async def test_values_at_past_moments(committed_api) -> None:
    api = committed_api
    account = await consenting_account(api)
    opened = await _moment()
    await submit(api, "wuhan-tong", [record(account, "bus", 1, local_time(2))])
    after_one = await _moment()
    await submit(api, "wuhan-tong", [record(account, "subway", 1, local_time(1)), record(account, "bus", 1, local_time(1))])
    assert await _at(api, account, opened) == ("0", "0")
    assert await _at(api, account, after_one) == ("8", "80")
    assert await _at(api, account, await _moment()) == await _at(api, account, None) == ("24", "240")
    # An instant with another offset is the same instant.
    assert await _at(api, account, after_one.astimezone(SHANGHAI)) == ("8", "80")


async def test_the_future_has_no_values(api) -> None:
    account = await consenting_account(api)
    body = (await api.post(AT, as_="wuhan-app", variables={"id": account, "at": (
        datetime.now(UTC) + timedelta(hours=1)).isoformat()})).json()
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "at"}


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-05:00", "9999-12-31T24:00:00"])
async def test_a_moment_with_no_utc_equivalent_is_bad_input(api, at) -> None:
    account = await consenting_account(api)
    body = (await api.post(AT, as_="wuhan-app", variables={"id": account, "at": at})).json()
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "outside the years 1 to 9999" in body["errors"][0]["message"]
    inline = (await api.post('query($id: ID!) { account(id: $id) { balance(at: "%s") { amount } } }' % at,
                             as_="wuhan-app", variables={"id": account})).json()
    assert inline["errors"][0]["extensions"]["code"] != "INTERNAL", inline
