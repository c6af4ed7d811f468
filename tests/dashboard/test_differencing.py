"""What one answer gives away, checked by brute force on small random cities: the hidden buckets of a
shown period figure stand for at least the minimum, in distinct accounts. The rule:
app/dashboard/suppression.py; the cases found by review: test_suppression.py."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.dashboard.suppression import Figure, complement

MINIMUM = 5


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
