"""The /dashboard page: served without a token and locked down (CSP and friends), and end to end in headless
Chromium against a real `carbon-inclusive serve` on its own database, seeded through the API: sign-in with
a regulator token, the table equal to the API's figures for the same period, charts drawn, errors shown,
sign-out. Full-page screenshots go to test-artifacts/ (dashboard.png, dashboard-sign-in-refused.png).

Needs Debian's chromium and chromium-driver: installed where missing (tests/dashboard/chromium.py), the
browser tests skipped with the reason where they cannot be."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest

from app.dashboard.page import CONTENT_SECURITY_POLICY
from app.db.provision import sibling_database
from app.settings import PROJECT_ROOT
from bench.common import running_server
from tests.conftest import Api
from tests.dashboard import chromium
from tests.factories import SHANGHAI, grant, local_time, open_account, record, redeem, submit

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
COUNTS = ("accountsOpened", "guestAccounts", "bankLinkedAccounts", "activeAccounts")
FIGURES = (*COUNTS, "reductionGrams", "pointsIssued",
           "pointsRedeemed", "pointsExpired", "pointsOutstanding")
QUERY = """query($from: Date!, $to: Date!, $g: Granularity!) { crossCityDashboard(from: $from, to: $to,
    granularity: $g) {
  minimumGroupSize cities { tenant { slug name pointUnit { name } } %(f)s series { start reductionGrams pointsIssued } byBehavior { behavior } }
  totals { %(f)s } } }""" % {"f": " ".join(FIGURES)}


# ---- the page itself (no browser) ----

async def test_the_page_is_public_and_locked_down(api) -> None:
    page = await api.http.get("/dashboard")  # no token: the page is public, the data is not
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "frame-ancestors 'none'", "form-action 'none'"):
        assert directive in policy
    assert "unsafe" not in policy and "http" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "no inline script"
    assert not re.search(r"\sstyle=|<style", page.text), "no inline style"
    assets = [("/dashboard/" + name, "text/javascript") for name in ("format.js", "charts.js", "dashboard.js")]
    for path, media_type in [*assets, ("/dashboard/dashboard.css", "text/css")]:
        asset = await api.http.get(path)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media_type)
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", asset.text), f"{path} fetches nothing external"
        again = await api.http.get(path, headers={"if-none-match": asset.headers["etag"]})
        assert again.status_code == 304
    for path, _ in assets:
        script = (await api.http.get(path)).text
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script), path
    assert (await api.http.get("/dashboard/../config/secrets.dev.toml")).status_code == 404
    assert (await api.http.get("/dashboard/secrets.dev.toml")).status_code == 404
    assert (await api.http.post("/dashboard")).status_code == 405


# ---- end to end ----

@dataclass
class Site:
    base_url: str
    api: Api

    def token(self, client: str) -> str:
        return self.api.registry.issue(client, 3600)

    def dashboard(self, period: dict[str, str]) -> dict:
        response = httpx.post(f"{self.base_url}/graphql", json={"query": QUERY, "variables": period},
                              headers={"authorization": f"Bearer {self.token('regulator')}"}, timeout=30)
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return body["data"]["crossCityDashboard"]


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = chromium.unavailable()
    if reason is not None:
        pytest.skip(f"headless Chromium end-to-end tests skipped: {reason}")


@pytest.fixture(scope="module")
def page_database(settings, database_target, browser_available):
    """A database of its own, beside the worker's: what the seeding commits stays out of the other tests'
    figures."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with sibling_database(database_target, f"carbon_page_{worker}_{os.getpid()}", settings.config_dir) as target:
        yield target


@pytest.fixture(scope="module")
async def site(page_database, registry) -> AsyncIterator[Site]:
    with running_server(page_database) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            api = Api(http=http, registry=registry)
            await _seed(api)
            yield Site(base_url=base_url, api=api)


async def _seed(api: Api) -> None:
    """Figures for three cities over six local days; Shanghai (a trusted-documents-only app) stays empty.
    Wuhan's 5 guest and Guizhou's 5 accounts are shown; Wuhan's 2 bank-linked and Beijing's 2 accounts are
    below the minimum group size (5), so the API suppresses them, Beijing's amounts (two accounts behind
    them) with them, and the totals that would reveal them. Six Wuhan accounts redeem: its points redeemed
    are shown."""
    days = range(1, 7)
    wuhan = [*[await open_account(api) for _ in range(5)],
             *[await open_account(api, kind="BANK_LINKED", bank=f"622202110000987{i}") for i in range(2)]]
    for account in wuhan:
        await grant(api, account, "wuhan-tong", ["TRAVEL"])
        await grant(api, account, "hankou-bank", ["LIFE", "CONSUMPTION"])
    await submit(api, "wuhan-tong", [record(account, behavior, quantity, local_time(day, hour))
                                     for account in wuhan for day in days
                                     for behavior, quantity, hour in (("walking", 9000 + 1000 * day, 21),
                                                                      ("bus", 1, 8), ("bus", 1, 18), ("subway", 1, 12))])
    await submit(api, "wuhan-tong", [record(account, "shared_bike", 4, local_time(day, 15))
                                     for account in wuhan for day in (1, 3, 5)])
    await submit(api, "hankou-bank", [record(account, behavior, 1, local_time(day, hour))
                                      for account in wuhan for day in days
                                      for behavior, hour in (("online_living_payment", 12), ("e_invoice", 13))
                                      if behavior == "e_invoice" or day % 2 == 0])
    rewards = await _rewards(api, "wuhan")
    for account, reward, quantity in (*((donor, "east-lake-wetland", 2) for donor in wuhan[:5]),
                                      (wuhan[6], "hankou-green-credit-card-benefit", 1)):
        assert (await redeem(api, account, rewards[reward], quantity=quantity))["userErrors"] == []

    beijing = [await open_account(api, app="beijing-app") for _ in range(2)]
    for account in beijing:
        await grant(api, account, "beijing-mobility", ["TRAVEL"], app="beijing-app")
    await submit(api, "beijing-mobility", [record(account, behavior, quantity, local_time(day, hour))
                                           for account in beijing for day in days
                                           for behavior, quantity, hour in (("subway", 12, 8), ("bus", 4, 18),
                                                                            ("walking", 7000, 21))])
    parking = (await _rewards(api, "beijing"))["parking-coupon"]
    assert (await redeem(api, beijing[0], parking, app="beijing-app"))["userErrors"] == []

    guizhou = [await open_account(api, app="guizhou-app") for _ in range(5)]
    for account in guizhou:
        await grant(api, account, "anshun-bank", ["TRAVEL", "LIFE", "CONSUMPTION"], app="guizhou-app")
    await submit(api, "anshun-bank", [record(account, behavior, quantity, local_time(day, hour))
                                      for account in guizhou for day in days
                                      for behavior, quantity, hour in (("walking", 12000, 21), ("bus", 1, 8),
                                                                       ("mobile_payment", 1, 13))])


async def _rewards(api: Api, city: str) -> dict[str, str]:
    data = await api.query("""query($slug: String!) { tenant(slug: $slug) { rewards(first: 100) {
        edges { node { id code } } } } }""", as_=f"{city}-app", variables={"slug": city})
    return {edge["node"]["code"]: edge["node"]["id"] for edge in data["tenant"]["rewards"]["edges"]}


@pytest.fixture(scope="module")
def browser(browser_available) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium.CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1440,1000", "--lang=en-US", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # A regulator whose browser is far behind the cities (15 or 16 hours behind China): the page's default
    # period still ends on today's date in the cities, read from their time zones, not the browser's.
    service = Service(executable_path=str(chromium.CHROMEDRIVER), env=os.environ | {"TZ": "America/Los_Angeles"})
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# Mirrors of the page's formatting (dashboard.js): thousands separators, exact amounts, mass in g/kg/t.

def _amount(value) -> str:
    number = Decimal(str(value))
    whole, _, fraction = str(abs(number)).partition(".")
    return ("\u2212" if number < 0 else "") + f"{int(whole):,}" + (f".{fraction}" if fraction else "")


def _mass(grams: str) -> str:
    value = Decimal(grams)
    if abs(value) < 1000:
        return _amount(value.normalize() if value != value.to_integral() else value.to_integral()) + " g"
    if abs(value) < 1_000_000:
        return _amount((value / 1000).quantize(Decimal("0.01"), ROUND_HALF_UP)) + " kg"
    return _amount((value / 1_000_000).quantize(Decimal("0.01"), ROUND_HALF_UP)) + " t"


def _expected(field: str, value, minimum: int) -> list[str]:
    """[text shown, data-value] for a figure of the API (null: suppressed)."""
    if value is None:
        return [f"< {minimum}", ""] if field in COUNTS else ["suppressed", ""]
    return [_mass(value) if field == "reductionGrams" else _amount(value), str(value)]


def _wait(driver, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _sign_in(driver, token: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token)
    driver.find_element(By.ID, "sign-in-button").click()


def _table(driver) -> dict[str, dict[str, tuple[str, str]]]:
    """Per row (city slug or `totals`): field → (shown text, exact value)."""
    return driver.execute_script("""
        const rows = {};
        for (const row of document.querySelectorAll('#comparison tr[data-city]')) {
          rows[row.dataset.city] = {};
          for (const cell of row.querySelectorAll('[data-field]'))
            rows[row.dataset.city][cell.dataset.field] = [cell.textContent, cell.dataset.value || ''];
          rows[row.dataset.city].name = [(row.querySelector('.city-name') || row.querySelector('th')).textContent, ''];
        }
        return rows;""")


def _storage(driver) -> dict:
    return driver.execute_script("return {session: {...sessionStorage}, local: {...localStorage}};")


def _message(driver) -> str:
    return driver.execute_script("const m = document.getElementById('message'); return m.hidden ? '' : m.textContent;")


def _period(driver) -> dict[str, str]:
    return driver.execute_script("""return {from: document.getElementById('from').value,
        to: document.getElementById('to').value, g: document.getElementById('granularity').value};""")


def _assert_table_equals_api(driver, site: Site) -> dict:
    period = _period(driver)
    data = site.dashboard(period)
    shown = _table(driver)
    minimum = data["minimumGroupSize"]
    assert sorted(shown) == sorted([city["tenant"]["slug"] for city in data["cities"]] + ["totals"])
    for city in data["cities"]:
        row = shown[city["tenant"]["slug"]]
        assert row["name"][0] == city["tenant"]["name"]
        assert row["unit"][0] == city["tenant"]["pointUnit"]["name"]
        for field in FIGURES:
            assert row[field] == _expected(field, city[field], minimum), (city["tenant"]["slug"], field)
    for field in FIGURES:
        assert shown["totals"][field] == _expected(field, data["totals"][field], minimum), ("totals", field)
    assert shown["totals"]["unit"][0] == "mixed units, added as they are"
    return data


def test_a_regulator_signs_in_sees_the_figures_and_signs_out(site: Site, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(f"{site.base_url}/dashboard")
    assert driver.find_element(By.ID, "sign-in").is_displayed()
    assert not driver.find_element(By.ID, "dashboard").is_displayed()

    # A wrong token: the API's 401 is shown, nothing is kept.
    _sign_in(driver, "not-a-token")
    _wait(driver, lambda d: "UNAUTHENTICATED" in _message(d))
    assert "Sign-in refused" in _message(driver) and "HTTP 401" in _message(driver)
    assert driver.find_element(By.ID, "sign-in").is_displayed()
    assert _storage(driver) == {"session": {}, "local": {}}
    ARTIFACTS.mkdir(exist_ok=True)
    _full_page_screenshot(driver, ARTIFACTS / "dashboard-sign-in-refused.png")

    # A partner's token is valid but may not read the dashboard: FORBIDDEN, as the API says.
    _sign_in(driver, site.token("wuhan-tong"))
    _wait(driver, lambda d: "FORBIDDEN" in _message(d))
    assert not driver.find_element(By.ID, "figures").is_displayed()
    driver.find_element(By.ID, "sign-out").click()

    # The regulator: every city, the figures the API gives for the same period.
    _sign_in(driver, site.token("regulator"))
    _wait(driver, lambda d: len(_table(d)) == 5)
    assert driver.find_element(By.ID, "signed-in-as").text == "Signed in as regulator"
    assert _message(driver) == ""
    storage = _storage(driver)
    assert list(storage["session"].values()) == [site.token("regulator")] or len(storage["session"]) == 1
    assert storage["local"] == {}
    period = _period(driver)
    today = datetime.now(SHANGHAI).date()
    assert period == {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat(), "g": "DAY"}
    data = _assert_table_equals_api(driver, site)
    wuhan = next(city for city in data["cities"] if city["tenant"]["slug"] == "wuhan")
    assert Decimal(wuhan["pointsIssued"]) > 0 and Decimal(wuhan["pointsRedeemed"]) > 0  # the seeding shows
    assert _table(driver)["wuhan"]["unit"][0] == "carbon coins"
    counts = {slug: {field: row[field][0] for field in COUNTS} for slug, row in _table(driver).items()}
    # Two bank-linked accounts are too few; the guests (opened minus bank-linked) are suppressed with them.
    assert counts["wuhan"] == {"accountsOpened": "7", "guestAccounts": "< 5", "bankLinkedAccounts": "< 5",
                               "activeAccounts": "7"}
    assert counts["guizhou"]["accountsOpened"] == "5" and counts["beijing"]["accountsOpened"] == "< 5"
    assert counts["shanghai"]["accountsOpened"] == "0" and counts["totals"]["accountsOpened"] == "< 5"

    # Charts: one point per city and day, bars for the flows, the behaviour mix and the liability.
    days = len(driver.execute_script("return [...new Set([...document.querySelectorAll("
                                     "'#reduction-chart circle.point')].map(c => c.dataset.start))];"))
    assert days == 30
    assert len(driver.find_elements(By.CSS_SELECTOR, "#reduction-chart circle.point")) == 30 * len(data["cities"])
    drawn = driver.execute_script("""return [...document.querySelectorAll('#reduction-chart g.series')].map(g =>
        [g.dataset.city, [...g.querySelectorAll('circle.point')].map(c => [c.dataset.start, c.dataset.value])]);""")
    for (slug, points), city in zip(drawn, data["cities"], strict=True):
        api_series = {bucket["start"]: bucket["reductionGrams"] for bucket in city["series"]}
        assert slug == city["tenant"]["slug"] and set(api_series) <= {start for start, _ in points}
        assert {start: Decimal(value) for start, value in points if value and Decimal(value)} == {
            start: Decimal(grams) for start, grams in api_series.items() if grams and Decimal(grams)}
        assert {start for start, value in points if value == ""} == {  # suppressed: drawn as such, not as 0
            start for start, grams in api_series.items() if grams is None}
    beijing = next(city for city in data["cities"] if city["tenant"]["slug"] == "beijing")
    assert beijing["pointsIssued"] is None and _table(driver)["beijing"]["pointsIssued"] == ["suppressed", ""]
    assert driver.find_element(By.CSS_SELECTOR, "#reduction-chart svg").get_attribute("role") == "img"
    Select(driver.find_element(By.ID, "points-city")).select_by_value("wuhan")
    bars = driver.find_elements(By.CSS_SELECTOR, "#points-chart rect.bar")
    assert len(bars) == 30 * 3
    issued = sum(Decimal(bar.get_attribute("data-value")) for bar in bars
                 if "flow-issued" in bar.get_attribute("class"))
    assert issued == Decimal(wuhan["pointsIssued"]) > 0 and all(b["pointsIssued"] is not None for b in wuhan["series"])
    Select(driver.find_element(By.ID, "mix-city")).select_by_value("wuhan")
    mix = [row.get_attribute("data-name") for row in driver.find_elements(By.CSS_SELECTOR, "#mix-chart g.bar-row")]
    assert sorted(mix) == sorted(row["behavior"] for row in wuhan["byBehavior"])
    assert driver.find_element(By.CSS_SELECTOR, "#mix-chart g[data-name='walking'] text.label").text == "Walking"
    liability = driver.find_elements(By.CSS_SELECTOR, "#liability-chart g.bar-row")
    assert [row.get_attribute("data-name") for row in liability] == [c["tenant"]["slug"] for c in data["cities"]]
    assert "carbon coins" in driver.find_element(By.CSS_SELECTOR, "#liability-chart g[data-name='wuhan'] text.value").text

    # The token stays for the tab: a reload is still signed in. Then by week, still equal to the API.
    driver.refresh()
    _wait(driver, lambda d: len(_table(d)) == 5)
    Select(driver.find_element(By.ID, "granularity")).select_by_value("WEEK")
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#comparison-caption").text and
          len(d.find_elements(By.CSS_SELECTOR, "#reduction-chart circle.point")) < 30 * len(data["cities"]))
    _assert_table_equals_api(driver, site)
    Select(driver.find_element(By.ID, "granularity")).select_by_value("DAY")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#reduction-chart circle.point"))
          == 30 * len(data["cities"]))

    for select in ("points-city", "mix-city"):
        Select(driver.find_element(By.ID, select)).select_by_value("wuhan")
    _full_page_screenshot(driver, ARTIFACTS / "dashboard.png")
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
              and "401" not in entry["message"] and "403" not in entry["message"]]
    assert severe == [], severe  # no script error, no Content-Security-Policy violation

    # Signing out forgets the token and the figures.
    driver.find_element(By.ID, "sign-out").click()
    assert _storage(driver) == {"session": {}, "local": {}}
    assert driver.find_element(By.ID, "sign-in").is_displayed()
    assert _table(driver) == {} and not driver.find_elements(By.CSS_SELECTOR, "#reduction-chart circle")
    driver.refresh()
    assert driver.find_element(By.ID, "sign-in").is_displayed()


def test_a_city_app_token_shows_its_own_city(site: Site, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{site.base_url}/dashboard")
    _sign_in(browser, site.token("beijing-app"))
    _wait(browser, lambda d: len(_table(d)) == 2)
    assert sorted(_table(browser)) == ["beijing", "totals"]
    assert _table(browser)["totals"]["unit"][0] == "green points"
    browser.find_element(By.ID, "sign-out").click()


def test_an_invalid_period_shows_the_api_error(site: Site, browser) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{site.base_url}/dashboard")
    _sign_in(browser, site.token("regulator"))
    _wait(browser, lambda d: len(_table(d)) == 5)
    browser.execute_script("document.getElementById('from').value = '2020-01-01';")
    browser.find_element(By.ID, "refresh").click()
    _wait(browser, lambda d: "BAD_USER_INPUT" in _message(d))
    assert "366 days" in _message(browser)
    assert not browser.find_element(By.ID, "figures").is_displayed()
    browser.find_element(By.ID, "sign-out").click()


def _full_page_screenshot(driver, path) -> None:
    import base64

    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def test_without_chromium_the_reason_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(chromium, "_present", lambda: False)
    monkeypatch.setattr(chromium.shutil, "which", lambda name: None)
    reason = chromium.unavailable()
    assert reason is not None and "no apt-get" in reason and "apt-get install chromium chromium-driver" in reason
    monkeypatch.setattr(chromium.shutil, "which", lambda name: "/usr/bin/apt-get")
    monkeypatch.setattr(chromium.os, "geteuid", lambda: 1000)
    assert "not run as root" in chromium.unavailable()
