"""Loading configuration into the database: versions, new cities, catalogue refresh — seen through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from httpx import ASGITransport, AsyncClient

from app.auth.tokens import ClientRegistry
from app.db.session import NO_TENANT, TenantScope
from app.main import create_app
from app.settings import PROJECT_ROOT
from app.tenants import repository
from app.tenants.config import PlatformConfig, load_city_files, parse_platform_file
from app.tenants.models import tenant_id_for
from app.tenants.service import load_cities
from tests.conftest import Api
from tests.tenants.test_config import _copy_config, _rewrite

CONFIG = PROJECT_ROOT / "config"


_copy, _edit = _copy_config, _rewrite  # one copy of the helpers (tests/tenants/test_config.py)


async def _load(database, config: Path, now: datetime | None = None):
    async with database.transaction(NO_TENANT) as session:
        return await load_cities(session, load_city_files(config), now=now or datetime.now(UTC))


async def _versions(database, slug: str):
    async with database.transaction(TenantScope.for_tenant(tenant_id_for(slug))) as session:
        return await repository.versions_of(session, tenant_id_for(slug))


async def test_unchanged_files_publish_nothing(database) -> None:
    results = await _load(database, CONFIG)
    assert [(r.slug, r.published, r.version) for r in results] == [
        ("beijing", False, 1), ("guizhou", False, 1), ("shanghai", False, 1), ("wuhan", False, 1)]


async def test_renamed_unit_publishes_a_version_and_the_next_query_shows_it(api, database, tmp_path) -> None:
    query = '{ tenant(slug: "wuhan") { pointUnit { name } configVersion { version } rewards(first: 1) { edges { node { cost { unit { name } } } } } } }'
    before = (await api.query(query, as_="wuhan-app"))["tenant"]
    assert before["pointUnit"]["name"] == "carbon coins" and before["configVersion"]["version"] == 1

    config = _copy(tmp_path)
    _edit(config / "tenants" / "wuhan.toml", 'en = "carbon coins"', 'en = "carbon credits"')
    published_at = datetime.now(UTC) - timedelta(seconds=1)
    results = {r.slug: r for r in await _load(database, config, now=published_at)}
    assert results["wuhan"].published and results["wuhan"].version == 2
    assert not results["beijing"].published
    # Never backdated: the new version starts at load time, not at the file's 2024 effective_from.
    assert results["wuhan"].effective_from == published_at

    after = (await api.query(query, as_="wuhan-app"))["tenant"]
    assert after["pointUnit"]["name"] == "carbon credits"
    assert after["configVersion"]["version"] == 2
    assert after["rewards"]["edges"][0]["node"]["cost"]["unit"]["name"] == "carbon credits"

    versions = await _versions(database, "wuhan")
    assert [(v.version, v.unit_name_en) for v in versions] == [(1, "carbon coins"), (2, "carbon credits")]


async def test_changed_rule_keeps_the_old_version_and_can_be_scheduled(api, database, tmp_path) -> None:
    config = _copy(tmp_path)
    wuhan = config / "tenants" / "wuhan.toml"
    _edit(wuhan, "effective_from = 2024-01-01T00:00:00+08:00", "effective_from = 2099-01-01T00:00:00+08:00")
    _edit(wuhan, "factor_g = 262", "factor_g = 300")
    results = {r.slug: r for r in await _load(database, config)}
    assert results["wuhan"].version == 2
    assert results["wuhan"].effective_from == datetime(2098, 12, 31, 16, tzinfo=UTC)

    # Scheduled for the future: today's queries still price with version 1.
    query = '{ tenant(slug: "wuhan") { configVersion { version } behaviors { code factorGrams } } }'
    tenant = (await api.query(query, as_="wuhan-app"))["tenant"]
    assert tenant["configVersion"]["version"] == 1
    assert {b["code"]: b["factorGrams"] for b in tenant["behaviors"]}["online_living_payment"] == "262"

    async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
        future = await repository.current_tenants(session, datetime(2099, 6, 1, tzinfo=UTC), slugs=["wuhan"])
        rules = await repository.rules_for_versions(session, [future[0].version_id])
    assert future[0].version == 2
    assert {r.code: r.factor_mg for r in rules[future[0].version_id]}["online_living_payment"] == 300_000


async def test_catalogue_refresh_adjusts_stock_and_retires_removed_items(api, database, tmp_path) -> None:
    query = '{ tenant(slug: "wuhan") { rewards(first: 100) { edges { node { code remainingStock } } } } }'
    stock = lambda data: {e["node"]["code"]: e["node"]["remainingStock"] for e in data["tenant"]["rewards"]["edges"]}  # noqa: E731
    before = stock(await api.query(query, as_="wuhan-app"))
    finite = next(code for code, left in before.items() if left is not None)

    config = _copy(tmp_path)
    wuhan = config / "tenants" / "wuhan.toml"
    text = wuhan.read_text(encoding="utf-8")
    # Take the unlimited shared-bicycle card out of the file and add 25 units to the finite item.
    block_start = text.index('code = "shared-bicycle-monthly-card"')
    block_start = text.rindex("[[rewards]]", 0, block_start)
    block_end = text.index("[[rewards]]", block_start + 1)
    text = text[:block_start] + text[block_end:]
    finite_at = text.index(f'code = "{finite}"')
    stock_at = text.index("stock = ", finite_at)
    line_end = text.index("\n", stock_at)
    text = text[:stock_at] + f"stock = {before[finite] + 25}" + text[line_end:]
    wuhan.write_text(text, encoding="utf-8")

    results = {r.slug: r for r in await _load(database, config)}
    assert results["wuhan"].retired_rewards == 1
    after = stock(await api.query(query, as_="wuhan-app"))
    assert "shared-bicycle-monthly-card" not in after
    assert after[finite] == before[finite] + 25


async def test_adding_a_city_is_adding_one_file(settings, database, tmp_path) -> None:
    config = _copy(tmp_path)
    text = (config / "tenants" / "shanghai.toml").read_text(encoding="utf-8")
    xiamen = (text.replace('slug = "shanghai"', 'slug = "xiamen"')
                  .replace('en = "Shanghai"', 'en = "Xiamen"').replace('zh = "上海"', 'zh = "厦门"')
                  .replace('"shanghai-', '"xiamen-')
                  # this test's app sends query text (Shanghai's production app sends trusted documents only)
                  .replace("trusted_documents_only = true", "trusted_documents_only = false"))
    (config / "tenants" / "xiamen.toml").write_text(xiamen, encoding="utf-8")

    cities = load_city_files(config)
    results = {r.slug: r for r in await _load(database, config)}
    assert results["xiamen"].published and results["xiamen"].version == 1

    secrets = {client.slug: f"{client.slug}-test-secret-0123456789abcdef" for city in cities for client in city.clients}
    secrets["regulator"] = "regulator-test-secret-0123456789abcdef"
    registry = ClientRegistry.build(cities, parse_platform_file(config / "platform.toml"), secrets,
                                    audience=settings.token_audience, max_lifetime_seconds=3600)
    app = create_app(settings, database=database, registry=registry)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as http:
        api = Api(http=http, registry=registry)
        own = await api.query("{ tenants { slug name pointUnit { name } } }", as_="xiamen-app")
        assert own["tenants"] == [{"slug": "xiamen", "name": "Xiamen", "pointUnit": {"name": "carbon inclusive points"}}]
        everyone = await api.query("{ tenants { slug } }", as_="regulator")
        assert [t["slug"] for t in everyone["tenants"]] == ["beijing", "guizhou", "shanghai", "wuhan", "xiamen"]
        rewards = await api.query('{ tenant(slug: "xiamen") { rewards(first: 5) { edges { node { name } } } } }',
                                  as_="xiamen-app")
        assert rewards["tenant"]["rewards"]["edges"]


def test_platform_file_is_optional(tmp_path) -> None:
    assert parse_platform_file(tmp_path / "missing.toml") == PlatformConfig()
