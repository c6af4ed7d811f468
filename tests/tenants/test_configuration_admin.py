"""Publishing configuration through the API (TENANT_ADMIN): a renamed point unit or a new rule set,
effective from a future time, never retroactive, validated like a city file, audited, and kept across
restarts until the city's file itself changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.tenants.test_loading import _copy, _edit, _load, _versions

PUBLISH = """mutation($input: PublishConfigurationInput!) { publishConfiguration(input: $input) {
    version { version effectiveFrom } userErrors { code field message } } }"""
CITY = '{ tenant(slug: "wuhan") { pointUnit { name } configVersion { version } behaviors { code factorGrams } } }'
RULES = """{ tenant(slug: "wuhan") { behaviors { code name category method unit factorGrams baselineGramsPerKm
    modeGramsPerKm capGramsPerDay capGramsPerMonth capGramsPerEvent source
    sameBehavior { match windowMinutes } } } }"""


SINGULAR = {"en": "coin", "zh": "币"}


def _soon(seconds: float = 1.5) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def _publish(api, **input_) -> dict:
    return (await api.query(PUBLISH, as_="wuhan-admin", variables={"input": input_}))["publishConfiguration"]


async def _current_rules(api) -> list[dict]:
    rules = []
    for rule in (await api.query(RULES, as_="wuhan-app"))["tenant"]["behaviors"]:
        document = {"code": rule["code"], "name": {"en": rule["name"], "zh": rule["name"]},
                    "category": rule["category"], "method": rule["method"], "unit": rule["unit"],
                    "source": rule["source"], "sameBehavior": {k: v for k, v in rule["sameBehavior"].items() if v}}
        for field, key in (("factorGrams", "factorGrams"), ("baselineGramsPerKm", "baselineGramsPerKm"),
                           ("modeGramsPerKm", "modeGramsPerKm"), ("capGramsPerDay", "capGramsPerDay"),
                           ("capGramsPerMonth", "capGramsPerMonth"), ("capGramsPerEvent", "capGramsPerEvent")):
            if rule[field] is not None and not (field == "factorGrams" and rule["method"] == "PER_DISTANCE"):
                document[key] = rule[field]
        rules.append(document)
    return rules


async def test_a_renamed_point_unit_takes_effect_when_scheduled_and_is_audited(api) -> None:
    before = (await api.query(CITY, as_="wuhan-app"))["tenant"]
    published = await _publish(api, effectiveFrom=_soon(), pointUnitName={"en": "green coins", "zh": "绿色币"},
                               pointUnitSingular={"en": "green coin", "zh": "绿色币"})
    assert published["userErrors"] == [] and published["version"]["version"] == before["configVersion"]["version"] + 1
    assert (await api.query(CITY, as_="wuhan-app"))["tenant"]["pointUnit"] == before["pointUnit"]  # not yet
    await asyncio.sleep(1.6)
    after = (await api.query(CITY, as_="wuhan-app"))["tenant"]
    assert after["pointUnit"] == {"name": "green coins"} and after["behaviors"] == before["behaviors"]
    singular = await api.query('{ tenant(slug: "wuhan") { pointUnit { singular } } }', as_="wuhan-app")
    assert singular["tenant"]["pointUnit"] == {"singular": "green coin"}
    log = (await api.query("{ auditLog(first: 5) { edges { node { action byClient changes } } } }",
                           as_="wuhan-admin"))["auditLog"]["edges"]
    assert log[0]["node"]["action"] == "PUBLISH_CONFIGURATION" and log[0]["node"]["byClient"] == "wuhan-admin"


async def test_a_new_rule_set_replaces_the_rules_from_its_time(api) -> None:
    rules = await _current_rules(api)
    bus = next(rule for rule in rules if rule["code"] == "bus")
    bus["factorGrams"] = "123.5"
    published = await _publish(api, effectiveFrom=_soon(), rules=rules)
    assert published["userErrors"] == [], published
    await asyncio.sleep(1.6)
    factors = {b["code"]: b["factorGrams"] for b in (await api.query(CITY, as_="wuhan-app"))["tenant"]["behaviors"]}
    assert factors["bus"] == "123.5" and len(factors) == len(rules)
    log = (await api.query("{ auditLog(first: 1) { edges { node { action changes } } } }", as_="wuhan-admin"))
    changes = log["auditLog"]["edges"][0]["node"]["changes"]
    old_bus = next(b for b in changes["behaviors"]["from"] if b["code"] == "bus")
    new_bus = next(b for b in changes["behaviors"]["to"] if b["code"] == "bus")
    assert new_bus["factor_g"] == "123.5" and old_bus["factor_g"] != "123.5"  # the rules themselves are audited


@pytest.mark.parametrize(("change", "code", "field"), [
    ({"effectiveFrom": "2020-01-01T00:00:00Z", "pointUnitName": {"en": "x", "zh": "x"},
      "pointUnitSingular": SINGULAR}, "RETROACTIVE",
     ["effectiveFrom"]),
    ({"pointUnitName": {"en": "", "zh": "空"}, "pointUnitSingular": SINGULAR}, "INVALID_CONFIGURATION",
     ["pointUnitName", "en"]),
    ({"pointUnitName": {"en": "leaf coins", "zh": "叶币"}}, "INVALID_CONFIGURATION", ["pointUnitSingular"]),
    ({"rules": [{"code": "bus", "name": {"en": "Bus", "zh": "公交"}, "category": "TRAVEL", "method": "PER_DISTANCE",
                 "unit": "km", "source": "test", "sameBehavior": {"match": "TRIP", "windowMinutes": 5}}]},
     "INVALID_CONFIGURATION", ["rules", "0"]),
    ({"rules": [{"code": "bus", "name": {"en": "Bus", "zh": "公交"}, "category": "TRAVEL", "method": "PER_EVENT",
                 "unit": "ride", "source": "test", "factorGrams": "80", "sameBehavior": {"match": "TRIP"}}]},
     "INVALID_CONFIGURATION", ["rules", "0", "sameBehavior"]),  # a trip needs its window
    ({"rules": []}, "INVALID_CONFIGURATION", ["rules"]),
    ({}, "NOTHING_CHANGED", []),
    ({"effectiveFrom": "2027-06-01T00:00:00", "pointUnitName": {"en": "x", "zh": "x"},
      "pointUnitSingular": SINGULAR}, "INVALID_CONFIGURATION",
     ["effectiveFrom"]),  # no UTC offset
    ({"effectiveFrom": "2999-01-01T00:00:00Z", "pointUnitName": {"en": "x", "zh": "x"},
      "pointUnitSingular": SINGULAR}, "TOO_FAR_AHEAD",
     ["effectiveFrom"]),
])
async def test_refused_publications_write_nothing(api, database, change, code, field) -> None:
    before = await _versions(database, "wuhan")
    refused = await _publish(api, **({"effectiveFrom": _soon(60)} | change))
    assert refused["version"] is None and refused["userErrors"][0]["code"] == code, refused
    assert refused["userErrors"][0]["field"][: len(field) + 1] == ["input", *field], refused
    assert await _versions(database, "wuhan") == before


async def test_every_problem_of_a_rule_set_is_reported_at_its_input_path(api) -> None:
    rules = await _current_rules(api)
    rules[0]["factorGrams"] = "lots"
    rules[1]["name"] = {"en": "", "zh": "空"}
    refused = await _publish(api, effectiveFrom=_soon(60), rules=rules)
    fields = [error["field"] for error in refused["userErrors"]]
    assert refused["version"] is None and ["input", "rules", "0", "factorGrams"] in fields, refused
    assert any(field[:4] == ["input", "rules", "1", "name"] for field in fields), refused
    assert all(error["code"] == "INVALID_CONFIGURATION" for error in refused["userErrors"])


async def test_a_duplicate_rule_code_is_reported_at_the_rule(api) -> None:
    rules = await _current_rules(api)
    rules.append(dict(rules[0]))
    refused = await _publish(api, effectiveFrom=_soon(60), rules=rules)
    error = refused["userErrors"][0]
    assert error["field"] == ["input", "rules", str(len(rules) - 1), "code"], error
    assert error["message"].startswith(f"rules.{len(rules) - 1}.code: rules.{len(rules) - 1}.code ") and \
        "Value error" not in error["message"], error


async def test_versions_follow_each_other(api) -> None:
    later = await _publish(api, effectiveFrom=_soon(3600), pointUnitName={"en": "later coins", "zh": "后币"},
                           pointUnitSingular=SINGULAR)
    assert later["userErrors"] == []
    earlier = await _publish(api, effectiveFrom=_soon(60), pointUnitName={"en": "early coins", "zh": "早币"},
                             pointUnitSingular=SINGULAR)
    assert earlier["userErrors"][0]["code"] == "NOT_AFTER_LATEST"


async def test_an_api_version_survives_restarts_until_the_file_changes(api, database, tmp_path) -> None:
    published = await _publish(api, effectiveFrom=_soon(), pointUnitName={"en": "kept coins", "zh": "留币"},
                               pointUnitSingular=SINGULAR)
    assert published["userErrors"] == []
    await asyncio.sleep(1.6)
    config = _copy(tmp_path)
    results = {r.slug: r for r in await _load(database, config)}  # a restart, file unchanged
    assert not results["wuhan"].published
    assert (await api.query(CITY, as_="wuhan-app"))["tenant"]["pointUnit"] == {"name": "kept coins"}
    wuhan = config / "tenants" / "wuhan.toml"
    text = wuhan.read_text(encoding="utf-8")
    wuhan.write_text(text.replace("claim_window_days = 7", "claim_window_days = 6", 1), encoding="utf-8")
    results = {r.slug: r for r in await _load(database, config, now=datetime.now(UTC) + timedelta(seconds=1))}
    assert results["wuhan"].published  # the file changed: it wins from then on


async def test_a_catalogue_only_file_change_keeps_the_api_version(api, database, tmp_path) -> None:
    """A file whose catalogue (or issuers, or clients) alone changed publishes no version: a version
    made from it would carry the file's rules and unit back over those published through the API."""
    rules = [rule for rule in await _current_rules(api) if rule["code"] != "walking"]
    published = await _publish(api, effectiveFrom=_soon(), rules=rules,
                               pointUnitName={"en": "operator coins", "zh": "运营币"}, pointUnitSingular=SINGULAR)
    assert published["userErrors"] == [], published
    await asyncio.sleep(1.6)
    before = await _versions(database, "wuhan")
    config = _copy(tmp_path)
    wuhan = config / "tenants" / "wuhan.toml"
    _edit(wuhan, 'name = { en = "East Lake wetland protection"', 'name = { en = "East Lake wetland fund"')
    results = {r.slug: r for r in await _load(database, config)}

    assert not results["wuhan"].published and results["wuhan"].version == published["version"]["version"]
    assert results["wuhan"].behaviors == len(rules)  # what is in force, not what the file lists
    assert await _versions(database, "wuhan") == before
    city = (await api.query(CITY, as_="wuhan-app"))["tenant"]
    assert city["pointUnit"] == {"name": "operator coins"} and "walking" not in {b["code"] for b in city["behaviors"]}
    names = await api.query('{ tenant(slug: "wuhan") { rewards(first: 100, kind: DONATION) { edges { node { name } } } } }',
                            as_="wuhan-app")
    assert "East Lake wetland fund" in {e["node"]["name"] for e in names["tenant"]["rewards"]["edges"]}
