"""One behaviour, one credit, whoever reports it: Wuhan Tong and Amap report the same rides. An
adversarial set: window edges, lines, the same trip twice from each, reversed order, concurrency."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

from tests.factories import consenting_account, local_time, record, submit

BALANCE = "query($id: ID!) { account(id: $id) { contribution { grams } balance { amount } } }"
DUPLICATES = """{ crossProviderDuplicates(first: 20) { edges { node { accountId behavior credited { provider
    externalId occurredAt evidence } rejected { provider externalId occurredAt evidence } creditedRecordId
    reductionGrams } } } }"""
TRAVEL = {"wuhan-tong": ["TRAVEL"], "amap-travel": ["TRAVEL"]}


def _at(base: str, **delta: float) -> str:
    return (datetime.fromisoformat(base) + timedelta(**delta)).isoformat()


def _line(rec: dict, line: str) -> dict:
    return rec | {"evidence": {"line": line}}


async def _contribution(api, account: str) -> Decimal:
    data = await api.query(BALANCE, as_="wuhan-app", variables={"id": account})
    return Decimal(data["account"]["contribution"]["grams"])


async def test_the_same_ride_from_two_partners_is_credited_once_and_linked(api) -> None:
    account = await consenting_account(api, providers=TRAVEL)
    ride = local_time(2, 8)
    first = (await submit(api, "wuhan-tong", [_line(record(account, "subway", 1, ride, "wt-1"), "Line 2")]))[0]
    second = (await submit(api, "amap-travel", [record(account, "subway", 1, _at(ride, minutes=3), "am-1")]))[0]
    assert first["status"] == "CREDITED"
    assert (second["status"], second["code"], second["points"], second["recordId"]) == (
        "REJECTED", "DUPLICATE_ACROSS_PROVIDERS", "0", None)
    assert await _contribution(api, account) == Decimal(80)
    edges = (await api.query(DUPLICATES, as_="wuhan-admin"))["crossProviderDuplicates"]["edges"]
    link = next(e["node"] for e in edges if e["node"]["accountId"] == account)
    assert link["credited"]["provider"] == "wuhan-tong" and link["credited"]["externalId"] == "wt-1"
    assert link["credited"]["evidence"] == {"line": "Line 2"} and link["creditedRecordId"] == first["recordId"]
    assert link["rejected"]["provider"] == "amap-travel" and link["rejected"]["externalId"] == "am-1"
    assert link["behavior"] == "subway" and Decimal(link["reductionGrams"]) == 80
    other_city = (await api.query(DUPLICATES, as_="beijing-admin"))["crossProviderDuplicates"]["edges"]
    assert account not in [e["node"]["accountId"] for e in other_city]


async def test_window_edges_lines_and_modes(api) -> None:
    account = await consenting_account(api, providers=TRAVEL)
    ride = local_time(3, 8)
    await submit(api, "wuhan-tong", [_line(record(account, "bus", 1, ride), "301")])
    results = await submit(api, "amap-travel", [
        record(account, "bus", 1, _at(ride, minutes=10)),  # the window's edge: the same ride
        record(account, "bus", 1, _at(ride, minutes=-10, seconds=-1)),  # just outside: another ride
        _line(record(account, "bus", 1, _at(ride, minutes=2)), "302"),  # another line: another ride
        record(account, "subway", 1, _at(ride, minutes=1)),  # another mode: another ride
    ])
    assert [(r["status"], r["code"]) for r in results] == [
        ("REJECTED", "DUPLICATE_ACROSS_PROVIDERS"), ("CREDITED", None), ("CREDITED", None), ("CREDITED", None)]
    assert await _contribution(api, account) == Decimal(4 * 80)


async def test_each_partner_sending_the_trip_twice_and_in_reverse_order(api) -> None:
    account = await consenting_account(api, providers=TRAVEL)
    ride = local_time(1, 18)
    amap = record(account, "subway", 1, ride, "am-twice")
    tong = record(account, "subway", 1, _at(ride, minutes=-4), "wt-twice")
    # Amap first this time; then both send theirs twice (Amap's again in one batch with itself).
    assert (await submit(api, "amap-travel", [amap]))[0]["status"] == "CREDITED"
    assert [r["status"] for r in await submit(api, "amap-travel", [amap, amap])] == ["DUPLICATE", "DUPLICATE"]
    for _ in range(2):
        again = (await submit(api, "wuhan-tong", [tong]))[0]
        assert (again["status"], again["code"]) == ("REJECTED", "DUPLICATE_ACROSS_PROVIDERS")
    assert await _contribution(api, account) == Decimal(80)


async def test_one_credited_trip_answers_for_one_report_of_the_other_partner(api) -> None:
    """Wuhan Tong's ride gives no line: Amap's two rides within the window cannot both be it."""
    account = await consenting_account(api, providers=TRAVEL)
    ride = local_time(2, 8)
    await submit(api, "wuhan-tong", [record(account, "bus", 1, ride, "wt-plain")])
    first, second = await submit(api, "amap-travel", [_line(record(account, "bus", 1, _at(ride, minutes=9), "am-a"), "2"),
                                                      _line(record(account, "bus", 1, ride, "am-b"), "1")])
    assert (first["status"], second["code"]) == ("CREDITED", "DUPLICATE_ACROSS_PROVIDERS")  # the nearest is it
    later = await submit(api, "amap-travel", [_line(record(account, "bus", 1, _at(ride, minutes=4), "am-c"), "3")])
    assert later[0]["status"] == "CREDITED"  # the plain ride already answers for am-b
    replay = await submit(api, "amap-travel", [_line(record(account, "bus", 1, ride, "am-b"), "1")])
    assert replay[0]["code"] == "DUPLICATE_ACROSS_PROVIDERS"  # a replay keeps its outcome
    assert await _contribution(api, account) == Decimal(3 * 80)


async def test_a_day_reported_again_and_again_by_the_other_partner_is_credited_once(api) -> None:
    """A day's steps (DAY), unlike a trip, is one behaviour however many reports of it a partner sends."""
    account = await consenting_account(api, providers=TRAVEL)
    day = local_time(2, 21)
    first = await submit(api, "wuhan-tong", [record(account, "walking", 4000, day, "wt-day")])
    assert first[0]["status"] == "CREDITED"
    batch = await submit(api, "amap-travel", [record(account, "walking", 4000, _at(day, minutes=-i), f"am-day-{i}")
                                              for i in (1, 2)])
    later = await submit(api, "amap-travel", [record(account, "walking", 4000, _at(day, hours=-5), "am-day-3")])
    assert [(r["status"], r["code"]) for r in batch + later] == [("REJECTED", "DUPLICATE_ACROSS_PROVIDERS")] * 3
    assert await _contribution(api, account) == Decimal(80)
    # Wuhan Tong's own further reports of the day are its own records (externalId decides), as before.
    again = await submit(api, "wuhan-tong", [record(account, "walking", 1000, day, "wt-day-2")])
    assert again[0]["status"] == "CREDITED" and await _contribution(api, account) == Decimal(100)


async def test_one_partner_alone_is_still_told_apart_by_external_id(api) -> None:
    """Two rides at one instant from one provider are two records (externalId decides), as before."""
    account = await consenting_account(api, providers=TRAVEL)
    ride = local_time(2, 9)
    results = await submit(api, "wuhan-tong", [record(account, "bus", 1, ride), record(account, "bus", 1, ride)])
    assert [r["status"] for r in results] == ["CREDITED", "CREDITED"]


async def test_two_partners_submitting_the_same_trips_at_once_credit_each_once(committed_api) -> None:
    api = committed_api
    accounts = [await consenting_account(api, providers=TRAVEL) for _ in range(3)]
    trips = [(account, local_time(1 + i % 3, 7 + i)) for account in accounts for i in range(4)]
    batches = {provider: [record(account, "bus", 1, _at(at, seconds=offset), f"{provider}-{n}")
                          for n, (account, at) in enumerate(trips)]
               for provider, offset in (("wuhan-tong", 0), ("amap-travel", 30))}
    for _ in range(3):  # several rounds, each one sending both partners' batches at the same instant
        fresh = {p: [r | {"externalId": f"{r['externalId']}-{_}", "occurredAt": _at(r["occurredAt"], minutes=20 * _)}
                     for r in batch] for p, batch in batches.items()}
        tong, amap = await asyncio.gather(submit(api, "wuhan-tong", fresh["wuhan-tong"]),
                                          submit(api, "amap-travel", fresh["amap-travel"]))
        for a, b in zip(tong, amap, strict=True):
            assert sorted([a["status"], b["status"]]) == ["CREDITED", "REJECTED"], (a, b)
    for account in accounts:
        assert await _contribution(api, account) == Decimal(80 * 4 * 3)
