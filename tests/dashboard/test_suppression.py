"""Small groups are suppressed in amounts as in counts, wherever aggregates are read: a city's figures, its
series and the totals on crossCityDashboard, the live tick's `today`, the folded breakdown line, market
lots (tests/market) and donation totals; and nothing suppressed is a shown whole less shown parts within
one answer (buckets of one citizen, breakdowns of the same transactions, a lot's proceeds, the balance).
The rule itself: app/dashboard/suppression.py.

Beijing's ledger is written by rolled-back tests only (committed tests write Wuhan's), so the Beijing
figures here are the test's own."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from app.dashboard import repository
from app.dashboard.suppression import SUPPRESSED, Figure, Line, complement, fold, total
from app.db.session import TenantScope
from app.graphql.ids import from_global_id
from app.tenants.models import tenant_id_for
from tests.factories import SHANGHAI, consenting_account, local_time, make_reward, recent, record, redeem, submit
from tests.market.test_market_lots import _issue, _rides, _sold
from tests.live.inprocess import ledger_notice, subscription_body

MINIMUM = 5
TICK = """subscription { dashboardTick { tenant { slug } localDate
    today { activeAccounts reductionGrams pointsIssued pointsRedeemed pointsExpired pointsOutstanding } } }"""
DASHBOARD = """query($from: Date!, $to: Date!) { crossCityDashboard(from: $from, to: $to) {
  cities { tenant { slug } activeAccounts reductionGrams pointsIssued pointsRedeemed pointsExpired pointsOutstanding
           series { start activeAccounts reductionGrams pointsIssued }
           byBehavior { behavior category transactions reductionGrams points }
           byCategory { name transactions reductionGrams points } byIssuer { name transactions reductionGrams points }
           donations { name transactions points }
           redemptionsByKind { name transactions points } }
  totals { activeAccounts reductionGrams pointsIssued pointsRedeemed pointsOutstanding } } }"""


def _day(days_ago: int) -> str:
    return (datetime.now(SHANGHAI).date() - timedelta(days=days_ago)).isoformat()


async def _riders(api, count: int, when: str, km: int = 2) -> tuple[list[str], list[dict]]:
    """`count` new Beijing accounts, each with one bus ride at `when` (165 g and 165 points a km)."""
    accounts = [await consenting_account(api, app="beijing-app", providers={"beijing-mobility": ["TRAVEL"]})
                for _ in range(count)]
    results = await submit(api, "beijing-mobility", [record(account, "bus", km, when) for account in accounts])
    assert all(result["status"] == "CREDITED" for result in results), results
    return accounts, results


async def _tick(api, database, as_: str, accounts: list[str]) -> dict:
    """The tick a commit of these accounts' ledger rows sends, as `as_` receives it."""
    notices = [await ledger_notice(database, "beijing", from_global_id(account)[1]) for account in accounts]
    body = await subscription_body(api, TICK, as_=as_, notices=notices)
    assert "errors" not in body, body
    tick = body["data"]["dashboardTick"]
    assert tick["tenant"]["slug"] == "beijing" and tick["localDate"] == _day(0)
    return tick["today"]


async def _beijing(api, start: str, end: str, as_: str = "regulator", city: str = "beijing") -> tuple[dict, dict]:
    data = (await api.query(DASHBOARD, as_=as_, variables={"from": start, "to": end}))["crossCityDashboard"]
    return next(c for c in data["cities"] if c["tenant"]["slug"] == city), data["totals"]


# ---- (a) amounts, not only counts: the live tick, the city's figures, the totals ----

async def test_one_citizens_credit_is_not_in_the_live_tick(api, database) -> None:
    """QA: with one active citizen in Beijing, the regulator's tick carried that citizen's credit (and its
    time) while the account count was null."""
    one, _ = await _riders(api, 1, recent())
    for reader in ("regulator", "beijing-app"):
        assert await _tick(api, database, reader, one) == {
            "activeAccounts": None, "reductionGrams": None, "pointsIssued": None, "pointsRedeemed": "0",
            "pointsExpired": "0", "pointsOutstanding": None}  # nothing redeemed or expired: 0, about nobody
    more, results = await _riders(api, MINIMUM - 1, recent())
    today = await _tick(api, database, "regulator", one + more)
    assert today["activeAccounts"] == MINIMUM
    assert Decimal(today["pointsIssued"]) == sum(Decimal(r["points"]) for r in results) + 330
    assert Decimal(today["reductionGrams"]) == Decimal(today["pointsIssued"])  # 1 g a point
    assert today["pointsOutstanding"] is not None


async def test_the_tick_reads_the_transactions_per_kind_the_dashboard_reads(api, database) -> None:
    """The tick's `today` reads the day's transactions per kind alone, not the breakdown's lines: the same
    numbers as crossCityDashboard's read of that day."""
    await _riders(api, 2, recent())
    beijing, today = tenant_id_for("beijing"), datetime.now(SHANGHAI).date()
    async with database.transaction(TenantScope.for_tenant(beijing)) as session:
        kinds = await repository.kinds(session, [beijing], today, today)
        found = await repository.breakdown(session, [beijing], today, today)
    assert kinds == {beijing: found.period_kinds(beijing)} and kinds[beijing]["BEHAVIOR_CREDIT"] == 2


async def test_amounts_of_a_small_group_are_null_on_the_dashboard(api) -> None:
    await _riders(api, 1, recent())
    for reader in ("regulator", "beijing-app"):
        beijing, totals = await _beijing(api, _day(0), _day(0), as_=reader)
        assert [beijing[f] for f in ("activeAccounts", "reductionGrams", "pointsIssued", "pointsOutstanding")] == [
            None] * 4 and beijing["pointsRedeemed"] == "0"
        assert beijing["series"] == [{"start": _day(0), "activeAccounts": None, "reductionGrams": None,
                                      "pointsIssued": None}]
    # Beijing alone: its total would be its own figures.
    _, totals = await _beijing(api, _day(0), _day(0), as_="beijing-app")
    assert totals["pointsIssued"] is None and totals["reductionGrams"] is None and totals["activeAccounts"] is None


async def test_a_suppressed_bucket_is_not_the_periods_figure_less_the_others(api) -> None:
    """Five riders yesterday, one today: the two days' figure (six accounts) is shown; today's (one
    account) is not, and neither is yesterday's, or the period less yesterday would be today's."""
    await _riders(api, MINIMUM, local_time(1, 9))
    await _riders(api, 1, recent())
    beijing, _ = await _beijing(api, _day(1), _day(0))
    assert int(beijing["activeAccounts"]) == MINIMUM + 1 and Decimal(beijing["pointsIssued"]) == 330 * (MINIMUM + 1)
    series = {bucket["start"]: bucket for bucket in beijing["series"]}
    assert series[_day(1)]["activeAccounts"] == MINIMUM and series[_day(0)]["activeAccounts"] is None
    assert [series[day]["pointsIssued"] for day in (_day(1), _day(0))] == [None, None]
    assert [series[day]["reductionGrams"] for day in (_day(1), _day(0))] == [None, None]


# ---- (b) the folded line is a group like any other ----

async def test_the_folded_line_is_itself_suppressed(api, database) -> None:
    """QA: Wuhan's donations were [{name: "suppressed", transactions: 1, points: "50"}], one citizen's
    gift. Here one Beijing citizen's donation, and one subway ride among six bus riders."""
    accounts, _ = await _riders(api, MINIMUM + 1, local_time(1, 9))
    assert (await submit(api, "beijing-mobility", [record(accounts[0], "subway", 3, local_time(1, 18))]))[0][
        "status"] == "CREDITED"
    project = await make_reward(database, tenant="beijing", kind="DONATION", cost=100, sponsor="beijing-green-welfare")
    assert (await redeem(api, accounts[0], project, app="beijing-app"))["userErrors"] == []
    for reader in ("regulator", "beijing-app"):
        beijing, _ = await _beijing(api, _day(1), _day(0), as_=reader)
        nothing = {"transactions": None, "points": None}
        assert beijing["donations"] == [{"name": SUPPRESSED, **nothing}]
        assert beijing["redemptionsByKind"] == [{"name": SUPPRESSED, **nothing}]
        assert beijing["pointsRedeemed"] is None  # one account's gift
        # The subway ride alone would be pointsIssued less the bus line: the bus line is folded with it.
        assert beijing["byBehavior"] == [{"behavior": SUPPRESSED, "category": None, "transactions": MINIMUM + 2,
                                          "reductionGrams": beijing["reductionGrams"],
                                          "points": beijing["pointsIssued"]}]


# ---- (c) within one answer, nothing suppressed is a shown whole less shown parts ----

async def test_one_citizens_hidden_buckets_are_not_the_period_less_the_shown_buckets(api) -> None:
    """Review: six riders on day −1, one citizen riding once on each of days −2..−6. Each of those days
    was hidden, but the five were taken as five accounts together, so the period's figure less day −1
    was the citizen's five-day total. Day −1 goes with them: one account stands behind the five."""
    await _riders(api, MINIMUM + 1, local_time(1))
    lone = await consenting_account(api, app="beijing-app", providers={"beijing-mobility": ["TRAVEL"]})
    rides = await submit(api, "beijing-mobility", [record(lone, "bus", 2, local_time(days, 9)) for days in range(2, 7)])
    assert all(ride["status"] == "CREDITED" for ride in rides), rides
    beijing, _ = await _beijing(api, _day(6), _day(1))
    assert int(beijing["activeAccounts"]) == MINIMUM + 2
    assert Decimal(beijing["pointsIssued"]) == 330 * (MINIMUM + 1) + sum(Decimal(ride["points"]) for ride in rides)
    series = {bucket["start"]: bucket for bucket in beijing["series"]}
    assert series[_day(1)]["activeAccounts"] == MINIMUM + 1  # a count does not add up across days: still shown
    assert [(series[_day(days)]["pointsIssued"], series[_day(days)]["reductionGrams"]) for days in range(1, 7)] == [
        (None, None)] * 6


async def test_a_folded_behaviour_is_not_a_category_less_a_shown_behaviour(api) -> None:
    """Review: seven bus riders, six of them also with a reusable cup, and one citizen's subway ride. The
    subway line was folded with the cup line, the bus line and the TRAVEL line were shown, and TRAVEL less
    bus was the ride (1 transaction, 567 points). The breakdowns are now folded alike: subway goes with
    bus (same category and issuer), so no line of one breakdown less lines of another leaves the ride."""
    providers = {"beijing-mobility": ["TRAVEL", "CONSUMPTION"]}
    crowd = [await consenting_account(api, app="beijing-app", providers=providers) for _ in range(MINIMUM + 2)]
    assert all(r["status"] == "CREDITED" for r in await submit(api, "beijing-mobility", [
        record(account, "bus", 2, local_time(1, 9)) for account in crowd]))
    assert all(r["status"] == "CREDITED" for r in await submit(api, "beijing-mobility", [
        record(account, "reusable_cup", 1, local_time(1, 10)) for account in crowd[:-1]]))
    lone = await consenting_account(api, app="beijing-app", providers=providers)
    ride = (await submit(api, "beijing-mobility", [record(lone, "subway", 3, local_time(1, 18))]))[0]
    assert ride["status"] == "CREDITED" and ride["points"] == "567"
    for reader in ("regulator", "beijing-app"):
        beijing, _ = await _beijing(api, _day(1), _day(1), as_=reader)

        def lines(breakdown: str, key: str = "name") -> dict:
            return {line[key]: (line["transactions"], line["points"]) for line in beijing[breakdown]}

        assert lines("byBehavior", "behavior") == {"reusable_cup": (6, "180"), SUPPRESSED: (8, "2877")}
        assert lines("byCategory") == {"CONSUMPTION": (6, "180"), "TRAVEL": (8, "2877")}
        assert lines("byIssuer") == {"beijing-mobility": (14, "3057")} and beijing["pointsIssued"] == "3057"
        # Every category less its shown behaviours is 0 or the minimum's worth of transactions.
        for category, (transactions, _) in lines("byCategory").items():
            rest = transactions - sum(b["transactions"] for b in beijing["byBehavior"] if b["category"] == category)
            assert rest == 0 or rest >= MINIMUM, (category, rest)


async def test_a_lots_proceeds_paid_to_a_few_are_not_points_issued_less_the_behaviours(api, database) -> None:
    """Points issued are the behaviours' credits plus lot sale proceeds; the behaviour lines (or the
    reduction at the rates they show) are the credits, so points issued less them were the proceeds paid
    to a lot's contributors, however few. Here one citizen's lot is sold today, among six riders."""
    await _rides(api, [20], days_ago=6)  # one citizen's ride, on a day no other test pools
    await _sold(api, (await _issue(api, periodFrom=_day(6), periodTo=_day(6)))["lot"]["id"])
    for _ in range(MINIMUM + 1):
        await submit(api, "wuhan-tong", [record(await consenting_account(api), "bus", 1, recent())])
    async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
        paid = await session.scalar(text("""SELECT count(*) FROM ledger_transactions
            WHERE kind = 'LOT_PROCEEDS' AND occurred_at >= :today"""), {"today": datetime.combine(
                datetime.now(SHANGHAI).date(), datetime.min.time(), SHANGHAI)})
    assert paid >= 1
    wuhan, _ = await _beijing(api, _day(0), _day(0), city="wuhan")
    assert wuhan["reductionGrams"] is not None and all(line["points"] is not None for line in wuhan["byBehavior"])
    if paid < MINIMUM:  # lots of committed tests (2 contributors each) may have been sold today too
        assert wuhan["pointsIssued"] is None and [bucket["pointsIssued"] for bucket in wuhan["series"]] == [None]


async def test_points_outstanding_do_not_give_a_suppressed_flow_away(api, database) -> None:
    """With nothing before the period, the points outstanding at its end are the issued less the redeemed
    less the expired: one citizen's redemption among six riders was the issued less the outstanding."""
    accounts, _ = await _riders(api, MINIMUM + 1, local_time(1, 9))
    reward = await make_reward(database, tenant="beijing", cost=100, sponsor="beijing-green-bank")
    assert (await redeem(api, accounts[0], reward, app="beijing-app"))["userErrors"] == []
    beijing, _ = await _beijing(api, _day(1), _day(0))
    assert beijing["pointsIssued"] == str(330 * (MINIMUM + 1)) and beijing["pointsExpired"] == "0"
    assert beijing["pointsRedeemed"] is None and beijing["pointsOutstanding"] is None
    # A period that starts later has an opening balance the answer does not give: shown.
    later, _ = await _beijing(api, _day(0), _day(0))
    assert later["pointsRedeemed"] is None and later["pointsOutstanding"] == str(330 * (MINIMUM + 1) - 100)


# ---- (d) a donation project's running totals, read by a regulator ----

async def test_regulators_read_donation_projects_without_their_totals(api, database) -> None:
    """QA: the regulator's donation totals failed INTERNAL (the regulator role may not read ledger
    accounts). They are null for a regulator by design; the city's own clients read them."""
    project = await make_reward(database, kind="DONATION", cost=5, sponsor="wuhan-green-welfare")
    donor = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(donor, "bus", 1, local_time(1))])
    assert (await redeem(api, donor, project))["userErrors"] == []
    query = """{ tenant(slug: "wuhan") { rewards(first: 100, kind: DONATION) { edges { node {
        id code donations { points { amount } gifts } } } } } }"""
    projects = (await api.query(query, as_="regulator"))["tenant"]["rewards"]["edges"]
    assert len(projects) > 1 and all(edge["node"]["donations"] is None for edge in projects)
    own = (await api.query(query, as_="wuhan-app"))["tenant"]["rewards"]["edges"]
    assert next(e["node"]["donations"] for e in own if e["node"]["id"] == project) == {
        "points": {"amount": "5"}, "gifts": 1}


# ---- the rule ----

def test_a_figure_is_null_below_the_minimum_unless_nothing_stands_behind_it() -> None:
    assert Figure.count(0).shown(MINIMUM) == 0 and Figure.count(4).shown(MINIMUM) is None
    assert Figure.flow(20, transactions=1, active_accounts=9).shown(MINIMUM) is None
    assert Figure.flow(20, transactions=9, active_accounts=1).shown(MINIMUM) is None  # one account, nine credits
    assert Figure.flow(0, transactions=0, active_accounts=0).shown(MINIMUM) == 0
    assert Figure.flow(-5, transactions=2, active_accounts=0).shown(MINIMUM) is None  # reversals of nobody active
    assert Figure.flow(45, transactions=5, active_accounts=5).shown(MINIMUM) == 45


def test_a_total_is_null_while_the_hidden_cities_are_too_few() -> None:
    big, small = Figure.flow(100, 50, 20), Figure.flow(7, 3, 3)
    assert total([big, small], MINIMUM) is None  # 107 − 100 would be the small city's
    assert total([big, small, Figure.flow(9, 2, 2)], MINIMUM) == 116  # hidden together: 5 accounts
    assert total([big, Figure.flow(0, 0, 0)], MINIMUM) == 100
    assert total([Figure.flow(1, 1, 1), Figure.flow(1, 1, 1)], MINIMUM) is None


def test_a_hidden_part_takes_the_smallest_shown_parts_with_it() -> None:
    parts = [Figure.flow(10, 9, 9), Figure.flow(20, 6, 6), Figure.flow(0, 0, 0), Figure.flow(3, 1, 1)]
    assert complement(parts, Figure.flow(33, 16, 12), MINIMUM) == [False, True, False, True]
    assert complement(parts, Figure.flow(33, 16, 4), MINIMUM) == [False, False, False, True]  # the whole is hidden
    assert complement(parts[:3], Figure.flow(30, 15, 12), MINIMUM) == [False, False, False]


def test_hidden_buckets_stand_for_the_accounts_provably_behind_them() -> None:
    crowd, lone = Figure.flow(60, 6, 6), Figure.flow(10, 1, 1)
    # One account on five days is one account: the period's seven active less the crowd's six leave one.
    assert complement([crowd, *[lone] * 5], Figure.flow(110, 11, 7), MINIMUM) == [True] * 6
    # Five accounts on five days: the period's eleven less the crowd's six leave five, enough.
    assert complement([crowd, *[lone] * 5], Figure.flow(110, 11, 11), MINIMUM) == [False] + [True] * 5
    # A hidden bucket's flow of two transactions is two accounts at most, however many were active.
    busy, few = Figure.flow(200, 20, 5), Figure.flow(20, 2, 5)
    assert complement([busy, few], Figure.flow(220, 22, 10), MINIMUM) == [True, True]
    # A bucket hidden with others that alone stands for the minimum is enough.
    assert complement([crowd, lone, Figure.flow(70, 7, 7)], Figure.flow(140, 14, 8), MINIMUM) == [True, True, False]


def test_the_folded_line_takes_in_the_smallest_lines_until_it_is_big_enough() -> None:
    lines = {("bus",): Line(9, 900, 90), ("walking",): Line(6, 600, 60), ("subway",): Line(1, 100, 10)}
    assert fold(lines, 1, active_accounts=20, minimum=MINIMUM) == [[("bus", Line(9, 900, 90)),
                                                                    (SUPPRESSED, Line(7, 700, 70))]]
    assert fold(lines, 1, active_accounts=3, minimum=MINIMUM) == [[(SUPPRESSED, None)]]
    assert fold({("bus",): Line(9, 900, 90)}, 1, 20, MINIMUM) == [[("bus", Line(9, 900, 90))]]
    assert fold({("subway",): Line(1, 100, 10)}, 1, 20, MINIMUM) == [[(SUPPRESSED, None)]]
    assert fold({}, 2, 20, MINIMUM) == [[], []]


def test_breakdowns_of_the_same_transactions_are_folded_alike() -> None:
    bus, cup, subway = Line(7, 7, 70), Line(6, 6, 60), Line(1, 1, 10)
    cells = {("bus", "TRAVEL", "mobility"): bus, ("reusable_cup", "CONSUMPTION", "mobility"): cup,
             ("subway", "TRAVEL", "mobility"): subway}
    # The subway ride goes with the bus rides (same category, same issuer): only behaviour lines are lost.
    assert fold(cells, 3, 20, MINIMUM) == [[("reusable_cup", cup), (SUPPRESSED, Line(8, 8, 80))],
                                           [("CONSUMPTION", cup), ("TRAVEL", Line(8, 8, 80))],
                                           [("mobility", Line(14, 14, 140))]]
    # A small provider's bus rides: its issuer line less its walking line would be them. Joined with the
    # other provider's bus rides, the behaviours stay and the issuers are folded.
    walking = Line(50, 50, 500)
    cells = {("bus", "TRAVEL", "a"): Line(100, 100, 1000), ("bus", "TRAVEL", "b"): subway,
             ("walking", "TRAVEL", "b"): walking}
    assert fold(cells, 3, 200, MINIMUM) == [[("bus", Line(101, 101, 1010)), ("walking", walking)],
                                            [("TRAVEL", Line(151, 151, 1510))],
                                            [(SUPPRESSED, Line(151, 151, 1510))]]
    assert fold(cells, 3, 3, MINIMUM) == [[(SUPPRESSED, None)]] * 3  # all of them too few


def test_a_breakdown_of_part_of_the_whole_folds_its_rest_too() -> None:
    """Donations are part of the redemptions (None: a redemption of no project); the whole less the
    project lines is the rest, so a folded line is shown only when the rest is made of whole blocks."""
    gifts, gift, vouchers = Line(6, 0, -60), Line(1, 0, -10), Line(10, 0, -100)
    cells = {("DONATION", "trees"): gifts, ("DONATION", "river"): gift, ("REDEMPTION", None): vouchers}
    assert fold(cells, 2, 20, MINIMUM) == [[("DONATION", Line(7, 0, -70)), ("REDEMPTION", vouchers)],
                                           [(SUPPRESSED, Line(7, 0, -70))]]
    cells = {("DONATION", "river"): gift, ("REDEMPTION", None): vouchers}
    assert fold(cells, 2, 20, MINIMUM) == [[(SUPPRESSED, Line(11, 0, -110))], [(SUPPRESSED, None)]]
