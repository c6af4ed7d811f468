"""The notifications on channel `carbon_live`, as migration 0015's triggers send them, parsed.

Each names a tenant and ids only: what changed, never the data itself (listeners read that under each
subscriber's own scope). A payload that does not parse is dropped and logged, never raised: one bad
notification must not stop the listener.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.logs import get_logger

CHANNEL = "carbon_live"
log = get_logger("app.live")


@dataclass(frozen=True)
class LedgerNotice:
    """Ledger entries committed together: (account, ledger transaction) pairs, and their kinds."""

    tenant_id: uuid.UUID
    kinds: frozenset[str]
    entries: tuple[tuple[uuid.UUID, uuid.UUID], ...]


@dataclass(frozen=True)
class OutcomeNotice:
    """Behaviour records of one provider: accepted (`R`), rejected (`J`) or reversed (`V`)."""

    kind: str
    tenant_id: uuid.UUID
    provider_id: uuid.UUID
    ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class AccountEventsNotice:
    """Account lifecycle events (OPENED, BANK_LINKED, ...) of a tenant: they move the dashboard."""

    tenant_id: uuid.UUID
    kinds: frozenset[str]


Notice = LedgerNotice | OutcomeNotice | AccountEventsNotice


def parse(payload: str) -> Notice | None:
    """The notice in `payload`, or None (logged) if it is not one."""
    try:
        kind, tenant, third, ids = payload.split("|", 3)
        tenant_id = uuid.UUID(tenant)
        if kind == "L":
            entries = tuple((uuid.UUID(account), uuid.UUID(transaction))
                            for account, transaction in (pair.split(":") for pair in ids.split(",")))
            return LedgerNotice(tenant_id, frozenset(third.split(",")), entries)
        if kind in ("R", "J", "V"):
            return OutcomeNotice(kind, tenant_id, uuid.UUID(third), tuple(uuid.UUID(one) for one in ids.split(",")))
        if kind == "A":
            return AccountEventsNotice(tenant_id, frozenset(third.split(",")))
    except ValueError:
        pass
    log.warning("live_notice_unreadable", length=len(payload), head=payload[:2])
    return None
