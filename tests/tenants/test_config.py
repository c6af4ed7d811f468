"""City configuration files: the shipped ones, and precise errors for broken ones."""

from __future__ import annotations

import shutil
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT
from app.tenants.config import CalculationMethod, ConfigError, load_city_files, parse_city_file

CONFIG = PROJECT_ROOT / "config"


def test_four_shipped_cities_validate() -> None:
    cities = {city.slug: city for city in load_city_files(CONFIG)}
    assert sorted(cities) == ["beijing", "guizhou", "shanghai", "wuhan"]
    for city in cities.values():
        assert city.timezone == "Asia/Shanghai"
        assert {client.slug for client in city.clients} >= {f"{city.slug}-app", f"{city.slug}-admin"}
    assert (cities["wuhan"].point_unit.name.en, cities["wuhan"].point_unit.name.zh) == ("carbon coins", "碳币")
    assert (cities["beijing"].point_unit.name.en, cities["beijing"].point_unit.name.zh) == ("green points", "绿色积分")
    assert cities["wuhan"].claim_window_days == cities["beijing"].claim_window_days == 7


def test_wuhan_has_the_articles_ten_behaviours_with_sources() -> None:
    wuhan = parse_city_file(CONFIG / "tenants" / "wuhan.toml")
    rules = {rule.code: rule for rule in wuhan.behaviors}
    assert len(rules) == 10
    assert rules["walking"].factor_mg == 20 and rules["walking"].milligrams("cap_g_per_day") == 200_000
    assert rules["bus"].factor_mg == rules["subway"].factor_mg == 80_000
    assert rules["online_living_payment"].factor_mg == 262_000
    assert all(len(rule.source) > 10 for rule in rules.values())
    clients = {client.slug: client for client in wuhan.clients}
    assert clients["wuhan-tong"].issuer == "wuhan-tong" and clients["hankou-bank"].issuer == "hankou-bank"


def test_a_per_distance_rule_is_used_with_baseline_minus_mode() -> None:
    per_distance = [rule for city in load_city_files(CONFIG) for rule in city.behaviors
                    if rule.method is CalculationMethod.PER_DISTANCE]
    assert per_distance
    wuhan_bike = next(rule for rule in parse_city_file(CONFIG / "tenants" / "wuhan.toml").behaviors
                      if rule.code == "shared_bike")
    assert wuhan_bike.factor_mg == 93_300


def _copy_config(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG, target)
    return target


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('timezone = "Asia/Shanghai"', 'timezone = "Asia/Wuhan"', "timezone", "unknown time zone"),
    ("claim_window_days = 7", "claim_window_days = 0", "claim_window_days", "greater than or equal to 1"),
    ("grams_per_point = 10", "grams_per_point = -1", "point_unit.grams_per_point", "greater than 0"),
    ("factor_g = 0.02", "factor_g = 0.0205", "behaviors.0.factor_g", "decimal"),
    ('category = "TRAVEL"', 'category = "FLYING"', "behaviors.0.category", "TRAVEL"),
    ('slug = "wuhan"\n', 'slug = "wuhan"\ncolour = "green"\n', "colour", "unknown key"),
    ('timezone = "Asia/Shanghai"\n', '', "timezone", "required key is missing"),
])
def test_broken_file_names_file_key_and_problem(tmp_path, old, new, key, words) -> None:
    config = _copy_config(tmp_path)
    broken = config / "tenants" / "wuhan.toml"
    _rewrite(broken, old, new)
    with pytest.raises(ConfigError) as raised:
        load_city_files(config)
    message = str(raised.value)
    assert str(broken) in message
    assert f"`{key}`" in message
    assert words in message


def test_a_claim_window_as_long_as_the_expiry_period_is_refused(tmp_path) -> None:
    """A late record could land in a lot that has already expired (ADR 0005)."""
    config = _copy_config(tmp_path)
    wuhan = config / "tenants" / "wuhan.toml"
    _rewrite(wuhan, "claim_window_days = 7", "claim_window_days = 366")
    _rewrite(wuhan, "point_expiry_months = 24", "point_expiry_months = 12")
    with pytest.raises(ConfigError) as raised:
        load_city_files(config)
    assert "claim_window_days (366) must be shorter than the expiry period" in str(raised.value)


def test_invalid_toml_names_the_line(tmp_path) -> None:
    config = _copy_config(tmp_path)
    (config / "tenants" / "beijing.toml").write_text("slug = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"beijing\.toml: not valid TOML.*line 1"):
        load_city_files(config)


def test_reference_errors(tmp_path) -> None:
    config = _copy_config(tmp_path)
    wuhan = config / "tenants" / "wuhan.toml"
    _rewrite(wuhan, 'sponsor = "hankou-bank"', 'sponsor = "no-such-bank"')
    with pytest.raises(ConfigError, match="sponsor 'no-such-bank' is not one of the issuers"):
        load_city_files(config)


def test_per_distance_needs_both_factors(tmp_path) -> None:
    config = _copy_config(tmp_path)
    beijing = config / "tenants" / "beijing.toml"
    document = beijing.read_text(encoding="utf-8")
    start = document.index("baseline_g_per_km")
    line_end = document.index("\n", start)
    beijing.write_text(document[:start] + document[line_end + 1:], encoding="utf-8")
    with pytest.raises(ConfigError, match="PER_DISTANCE needs `baseline_g_per_km` and `mode_g_per_km`"):
        load_city_files(config)


def test_slug_must_match_file_name(tmp_path) -> None:
    config = _copy_config(tmp_path)
    (config / "tenants" / "wuhan.toml").rename(config / "tenants" / "hankou.toml")
    with pytest.raises(ConfigError, match="rename the file to wuhan.toml"):
        load_city_files(config)


def test_client_slugs_are_unique_across_cities(tmp_path) -> None:
    config = _copy_config(tmp_path)
    _rewrite(config / "tenants" / "guizhou.toml", 'slug = "guizhou-app"', 'slug = "wuhan-app"')
    with pytest.raises(ConfigError, match="'wuhan-app' is already declared"):
        load_city_files(config)


def test_every_problem_in_every_file_is_reported_at_once(tmp_path) -> None:
    config = _copy_config(tmp_path)
    _rewrite(config / "tenants" / "wuhan.toml", "claim_window_days = 7", "claim_window_days = 0")
    _rewrite(config / "tenants" / "beijing.toml", 'timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"')
    with pytest.raises(ConfigError) as raised:
        load_city_files(config)
    assert "wuhan.toml" in str(raised.value) and "beijing.toml" in str(raised.value)


def test_dev_secrets_cover_every_client() -> None:
    secrets = tomllib.loads((CONFIG / "secrets.dev.toml").read_text(encoding="utf-8"))["clients"]
    slugs = {client.slug for city in load_city_files(CONFIG) for client in city.clients} | {"regulator"}
    assert slugs <= set(secrets)
    assert all(len(secret) >= 32 for secret in secrets.values())


def test_amounts_convert_exactly() -> None:
    wuhan = parse_city_file(CONFIG / "tenants" / "wuhan.toml")
    assert wuhan.points_minor(Decimal("500")) == 500
