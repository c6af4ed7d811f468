"""What one answer gives away, checked by brute force on small random cities: every set of cells that a
combination of the published lines (of every breakdown, and the city's figure) adds up to stands for at
least the minimum, and so do the hidden buckets of a shown period figure. The rule:
app/dashboard/suppression.py; the cases found by review: test_suppression.py."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.dashboard.suppression import SUPPRESSED, Figure, Line, complement, fold

MINIMUM = 5
CATEGORY = {"bus": "TRAVEL", "subway": "TRAVEL", "walking": "TRAVEL", "reusable_cup": "CONSUMPTION"}


def _rank(rows: list[list[Fraction]]) -> int:
    rows = [row[:] for row in rows]
    rank, columns = 0, len(rows[0]) if rows else 0
    for column in range(columns):
        pivot = next((i for i in range(rank, len(rows)) if rows[i][column] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        for i in range(len(rows)):
            if i != rank and rows[i][column] != 0:
                factor = rows[i][column] / rows[rank][column]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[rank], strict=True)]
        rank += 1
    return rank


def _published(cells: dict, breakdowns: int, active: int) -> list[list[Fraction]]:
    """The cells each published figure adds up: every line with figures, and the city's figure if shown."""
    keys = list(cells)
    vectors = []
    for dimension, folded in enumerate(fold(cells, breakdowns, active, MINIMUM)):
        shown = {name for name, _ in folded if name != SUPPRESSED}
        for name, line in folded:
            if line is None:
                continue
            inside = [key[dimension] == name if name != SUPPRESSED else
                      key[dimension] is not None and key[dimension] not in shown for key in keys]
            assert line == Line(*(sum(getattr(cells[k], f) for k, i in zip(keys, inside, strict=True) if i)
                                  for f in ("transactions", "reduction_mg", "points")))
            vectors.append([Fraction(int(i)) for i in inside])
    if min(sum(line.transactions for line in cells.values()), active) >= MINIMUM:
        vectors.append([Fraction(1)] * len(keys))
    return vectors


def _nothing_small_is_derivable(cells: dict, breakdowns: int, active: int) -> None:
    keys = list(cells)
    published = _published(cells, breakdowns, active)
    rank = _rank(published) if published else 0
    for size in range(1, len(keys) + 1):
        for chosen in combinations(range(len(keys)), size):
            indicator = [Fraction(int(i in chosen)) for i in range(len(keys))]
            if published and _rank([*published, indicator]) == rank:  # a combination of the published lines
                group = min(sum(cells[keys[i]].transactions for i in chosen), active)
                assert group >= MINIMUM, ([keys[i] for i in chosen], group, fold(cells, breakdowns, active, MINIMUM))


_SIZES = st.sampled_from([1, 1, 2, 3, 4, 5, 6, 9, 30])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from(sorted(CATEGORY)), st.sampled_from(["mobility", "bank", "metro"])),
                       _SIZES, min_size=1, max_size=7), st.sampled_from([3, 8, 40]))
def test_no_combination_of_credit_lines_is_a_small_group(sizes: dict, active: int) -> None:
    cells = {(behavior, CATEGORY[behavior], issuer): Line(n, 10 * n, 100 * n + 7)
             for (behavior, issuer), n in sizes.items()}
    _nothing_small_is_derivable(cells, 3, active)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from(["DONATION", "REDEMPTION", "REDEMPTION_CANCELLED"]),
                                 st.sampled_from(["trees", "river", None])), _SIZES, min_size=1, max_size=7),
       st.sampled_from([3, 8, 40]))
def test_no_combination_of_redemption_lines_is_a_small_group(sizes: dict, active: int) -> None:
    cells = {key: Line(n, 0, -50 * n) for key, n in sizes.items() if (key[0] == "REDEMPTION") == (key[1] is None)}
    if cells:
        _nothing_small_is_derivable(cells, 2, active)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 5)), min_size=1, max_size=30))
def test_the_hidden_buckets_of_a_shown_period_stand_for_the_minimum(transactions: list[tuple[int, int]]) -> None:
    """Accounts (0-9) making transactions in buckets (0-5), every active account in the flow: the period
    less the shown buckets is the hidden ones, whose distinct accounts must reach the minimum (unless they
    are everything there is, the period itself)."""
    buckets = range(6)
    accounts = {b: {a for a, at in transactions if at == b} for b in buckets}
    parts = [Figure.flow(0, sum(1 for _, at in transactions if at == b), len(accounts[b])) for b in buckets]
    whole = Figure.flow(0, len(transactions), len({a for a, _ in transactions}))
    hidden = complement(parts, whole, MINIMUM)
    assert all(out for part, out in zip(parts, hidden, strict=True) if part.hidden(MINIMUM))
    present = {b for b in buckets if parts[b].present}
    inside = {b for b in present if hidden[b]}
    if not whole.hidden(MINIMUM) and inside and inside != present:
        assert len(set().union(*(accounts[b] for b in inside))) >= MINIMUM, (accounts, hidden)
