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
- a city's breakdowns of the same transactions (behaviour, category, issuer; kind, project) are folded
  alike (`fold`): the transactions are split into blocks that each stand for at least the minimum, and a
  line is shown only when it is made of whole blocks. Whatever the shown lines of every breakdown and
  the city's figure are combined into, it is a sum of whole blocks: no part of a block can be told;
- a total across cities is null while the cities hidden from it add up to fewer than the minimum
  (`total`): the total minus the shown cities would give them away. Accounts belong to one city, so the
  groups of different cities add up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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

    def within(self, group: int) -> Figure:
        """The same figure, standing for at most `group` accounts: it gives a group of that size away."""
        return replace(self, group=min(self.group, group))

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

# A cell of a city's transactions: its line in each breakdown, None where it is in none of a breakdown's
# lines (that breakdown covers part of the whole; the rest is the whole less its lines).
Key = tuple[str | None, ...]
Block = frozenset[Key]
_MIXED = object()  # a block spread over several lines of a breakdown


def fold(cells: Mapping[Key, Line], breakdowns: int, active_accounts: int,
         minimum: int) -> list[list[tuple[str, Line | None]]]:
    """`breakdowns` breakdowns of the same transactions of a city's period, folded alike: per breakdown (a
    position of the keys), its shown lines by name, then a `SUPPRESSED` line for the others if any.

    The cells are joined into blocks until each stands for at least the minimum (a block's group: the
    smaller of its transactions and the city's active accounts): the smallest block at a time, with the
    block that leaves the most lines made of whole blocks (ties: the fewest of the first breakdown's
    lost, then the smallest). A line is shown when it is made of whole blocks; the others are folded
    into the `SUPPRESSED` line, shown when it is made of whole blocks too (it is unless the breakdown's
    rest is not), else None. So every shown line, every folded line and their sums and differences
    across breakdowns are sums of whole blocks. When even all the cells together are too few, nothing
    is shown but the folded lines, as None."""
    blocks = [frozenset([key]) for key in sorted(cells, key=_order)]
    transactions = {block: cells[next(iter(block))].transactions for block in blocks}
    lines = {block: _lines(block, breakdowns) for block in blocks}
    first = {block: _order(next(iter(block))) for block in blocks}  # for ties, the order of the cells

    def group(block: Block) -> int:
        return min(transactions[block], active_accounts)

    def small(block: Block) -> bool:
        return transactions[block] != 0 and group(block) < minimum

    while len(blocks) > 1 and any(small(block) for block in blocks):
        alone = min((block for block in blocks if small(block)), key=lambda block: (group(block), first[block]))
        mixed = _mixed(blocks, lines, breakdowns)
        partner = min((block for block in blocks if block is not alone), key=lambda block: (
            _lost(lines[alone], lines[block], mixed), group(block), first[block]))
        joined = alone | partner
        transactions[joined], lines[joined] = transactions[alone] + transactions[partner], _lines(joined, breakdowns)
        first[joined] = min(first[alone], first[partner])
        blocks = [block for block in blocks if block is not alone and block is not partner] + [joined]
    whole = not any(small(block) for block in blocks)
    return [_folded(cells, not_whole, dimension, whole)
            for dimension, not_whole in enumerate(_mixed(blocks, lines, breakdowns))]


def _folded(cells: Mapping[Key, Line], mixed: set[str | None], dimension: int,
            whole: bool) -> list[tuple[str, Line | None]]:
    lines: dict[str | None, list[Line]] = {}
    for key, line in cells.items():
        lines.setdefault(key[dimension], []).append(line)
    shown = {name for name in lines if name is not None and name not in mixed} if whole else set()
    folded = [line for name, found in lines.items() if name is not None and name not in shown for line in found]
    result: list[tuple[str, Line | None]] = [(name, _sum(lines[name])) for name in sorted(shown)]
    if folded:
        result.append((SUPPRESSED, _sum(folded) if whole and None not in mixed else None))
    return result


def _lines(block: Block, breakdowns: int) -> tuple[object, ...]:
    """The block's line in each breakdown, or `_MIXED` where it is spread over several."""
    names = [{key[dimension] for key in block} for dimension in range(breakdowns)]
    return tuple(found.pop() if len(found) == 1 else _MIXED for found in names)


def _mixed(blocks: list[Block], lines: dict[Block, tuple[object, ...]], breakdowns: int) -> list[set[str | None]]:
    """Per breakdown, the lines that are not made of whole blocks."""
    return [{key[dimension] for block in blocks if lines[block][dimension] is _MIXED for key in block}
            for dimension in range(breakdowns)]


def _lost(alone: tuple[object, ...], other: tuple[object, ...], mixed: list[set[str | None]]) -> tuple[int, ...]:
    """The lines made of whole blocks that joining two blocks (their lines given) would no longer leave so:
    in all, then per breakdown in order."""
    lost = []
    for ours, theirs, not_whole in zip(alone, other, mixed, strict=True):
        lost.append(0 if ours == theirs and ours is not _MIXED else
                    sum(1 for line in (ours, theirs) if line is not _MIXED and line not in not_whole))
    return (sum(lost), *lost)


def _order(key: Key) -> tuple[tuple[bool, str], ...]:
    return tuple((name is not None, name or "") for name in key)


def _sum(lines: list[Line]) -> Line:
    return Line(sum(line.transactions for line in lines), sum(line.reduction_mg for line in lines),
                sum(line.points for line in lines))
