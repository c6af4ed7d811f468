"""Small groups: the one rule behind every null of the dashboard, the live tick and market lots (README,
"The regulators' dashboard"; ADR 0015).

Every figure stands for a group: the accounts behind it. A figure whose group is smaller than the
minimum (`CARBON_DASHBOARD_MIN_GROUP_SIZE`) is null, counts and amounts alike; a figure with nothing
behind it (no account, no transaction) is shown, as 0 says nothing about anyone.

The read models count distinct accounts exactly for activity (accounts that earned or spent in a period
or bucket, migration 0013) and for a market lot (its contributors); elsewhere they hold numbers that are
never smaller than the group (an account is behind at least one transaction, and a flow's accounts are
active accounts or fewer). A figure's group is the smallest of those numbers, so a figure known to stand
for too few accounts is always null. What they cannot see: a flow made by fewer accounts than both its
transactions and the accounts active in its period (one account's many credits in a busy week).

Nothing suppressed may be recoverable, within one answer, as a shown whole less its shown parts:
- a city's buckets hidden from a shown period figure are hidden together with enough others that the
  accounts behind all of them provably reach the minimum (`complement`). Groups of one city's buckets do
  not add up (one account is active in many): the accounts behind hidden buckets are at least the most of
  any one of them, and at least the period's active accounts less those of the shown buckets;
- a breakdown's lines below the minimum are folded into one `suppressed` line, and while that line is
  itself below the minimum the smallest shown line is folded into it too; when all of them together are
  still too few, the folded line's figures are null (`fold`);
- a total across cities is null while the cities hidden from it add up to fewer than the minimum
  (`total`): the total minus the shown cities would give them away. Accounts belong to one city, so the
  groups of different cities add up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Figure:
    """A figure before suppression: `value` as shown (a count, grams, points), `group` the accounts behind
    it as the read models bound them, `present` whether anything stands behind it. A flow also keeps what
    bounds its group: its `transactions` and the `accounts` active then (a distinct count)."""

    value: int | Decimal
    group: int
    present: bool
    transactions: int = 0
    accounts: int = 0

    @classmethod
    def count(cls, accounts: int) -> Figure:
        """A count of accounts is its own group."""
        return cls(accounts, accounts, accounts != 0)

    @classmethod
    def flow(cls, value: int | Decimal, transactions: int, active_accounts: int) -> Figure:
        """An amount made by `transactions` in a period (or bucket) with `active_accounts` active."""
        return cls(value, min(transactions, active_accounts), transactions != 0, transactions, active_accounts)

    def hidden(self, minimum: int) -> bool:
        return self.present and self.group < minimum

    def shown(self, minimum: int) -> int | Decimal | None:
        return None if self.hidden(minimum) else self.value


def total(figures: Sequence[Figure], minimum: int) -> int | Decimal | None:
    """The sum over cities, or None where it would give the hidden cities' figures away (or is itself a
    small group)."""
    hidden = [figure for figure in figures if figure.hidden(minimum)]
    if hidden and sum(figure.group for figure in hidden) < minimum:
        return None
    return Figure(sum(f.value for f in figures), sum(f.group for f in figures),
                  any(f.present for f in figures)).shown(minimum)


def complement(parts: Sequence[Figure], whole: Figure, minimum: int) -> list[bool]:
    """Which parts of a shown `whole` (a city's flow in its buckets of a period) to hide: the small ones,
    and while the accounts behind the hidden ones together may be fewer than the minimum, the shown part
    with the smallest group too; that part alone stands for the minimum, so one is always enough. With
    every part that has anything behind it hidden, the whole less the (zero) shown parts is the whole."""
    hidden = [part.hidden(minimum) for part in parts]
    if whole.hidden(minimum) or not any(hidden) or hidden_group(parts, hidden, whole) >= minimum:
        return hidden
    shown = [(part.group, index) for index, part in enumerate(parts) if part.present and not hidden[index]]
    if shown:
        hidden[min(shown)[1]] = True
    return hidden


def hidden_group(parts: Sequence[Figure], hidden: Sequence[bool], whole: Figure) -> int:
    """The group of the hidden parts of `whole` together, as small as the read models allow: the smaller
    of their transactions and the accounts active in them. Those accounts are not the sum of the parts'
    (one account is active in many buckets); they are at least the most of any one hidden part, and at
    least the whole's active accounts less every shown part's (an account active in none of the shown
    parts is in a hidden one)."""
    inside = [part for part, out in zip(parts, hidden, strict=True) if out]
    outside = [part for part, out in zip(parts, hidden, strict=True) if not out]
    accounts = max(max(part.accounts for part in inside), whole.accounts - sum(part.accounts for part in outside))
    return min(sum(part.transactions for part in inside), accounts)


@dataclass(frozen=True)
class Line:
    """A breakdown line: its transactions, reduction (mg) and points (minor units)."""

    transactions: int
    reduction_mg: int
    points: int


SUPPRESSED = "suppressed"


def fold(lines: dict[str, Line], active_accounts: int, minimum: int) -> list[tuple[str, Line | None]]:
    """A breakdown of a city's period, by name; a line's group is the smaller of its transactions and the
    city's active accounts. The small lines become one `SUPPRESSED` line, last, which takes in the smallest
    shown lines until it reaches the minimum; None when even all the lines together are too few."""
    def group(line: Line) -> int:
        return min(line.transactions, active_accounts)

    shown = {name: line for name, line in lines.items() if group(line) >= minimum}
    folded = [line for name, line in lines.items() if name not in shown]
    if folded:
        by_size = sorted(shown, key=lambda name: (group(shown[name]), name))
        while group(_sum(folded)) < minimum and by_size:
            folded.append(shown.pop(by_size.pop(0)))
    result: list[tuple[str, Line | None]] = [(name, shown[name]) for name in sorted(shown)]
    if folded:
        rest = _sum(folded)
        result.append((SUPPRESSED, rest if group(rest) >= minimum else None))
    return result


def _sum(lines: list[Line]) -> Line:
    return Line(sum(line.transactions for line in lines), sum(line.reduction_mg for line in lines),
                sum(line.points for line in lines))
