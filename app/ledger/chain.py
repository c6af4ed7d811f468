"""Tamper evidence: per-account hash chains (migration 0017) sealed by signed per-city checkpoints.

The chains are kept by a trigger in every writing transaction. A checkpoint seals, for one city, every
chain entry committed since the previous checkpoint: the entries' hashes, ordered by (chain, seq), are
the leaves of a Merkle tree (RFC 6962 style: leaves `sha256(0x00 || h)`, nodes `sha256(0x01 || l || r)`,
an odd node promoted); `root = sha256(previous root || merkle root)` chains checkpoints; the
document (`checkpoint_document`) is signed with the platform's Ed25519 key (`app.ledger.signing`).

Whoever edits the ledger in SQL must recompute the chain from the edit onwards (or `verify-ledger`
names the edited transaction) and then cannot make the sealed Merkle roots match without the key.
Entries newer than the last checkpoint are protected by their chain only: checkpoint often
(`CARBON_CHECKPOINT_INTERVAL_SECONDS`, `carbon-inclusive checkpoint`). Keep the roots outside the
database (both print `anchor=slug:number:root`): `verify-ledger --anchor` then also catches checkpoints
deleted to rewrite what they sealed.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import Database, TenantScope
from app.ledger.signing import Signer, verify

GENESIS = bytes(32)


def merkle_root(hashes: list[bytes]) -> bytes:
    level = [hashlib.sha256(b"\x00" + h).digest() for h in hashes]
    if not level:
        return hashlib.sha256(b"").digest()
    while len(level) > 1:
        paired = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def chained_root(previous_root: bytes, merkle: bytes) -> bytes:
    return hashlib.sha256(previous_root + merkle).digest()


def checkpoint_document(tenant_id: uuid.UUID, number: int, at: datetime, entries: int, merkle: bytes,
                        previous_root: bytes, root: bytes, key_id: str) -> dict[str, Any]:
    """What is signed: a self-describing JSON object (hashes in hex, time in UTC ISO 8601)."""
    return {"type": "carbon-inclusive/ledger-checkpoint", "tenant": str(tenant_id), "number": number,
            "at": at.astimezone(UTC).isoformat(), "entries": entries, "merkleRoot": merkle.hex(),
            "previousRoot": previous_root.hex(), "root": root.hex(), "keyId": key_id}


@dataclass(frozen=True)
class Checkpoint:
    number: int
    entries: int
    root: bytes


_SEAL = text("""
    WITH sealed AS (
        UPDATE ledger_chain SET checkpoint_number = :n
         WHERE tenant_id = :t AND checkpoint_number IS NULL
        RETURNING chain_key, seq, hash
    )
    SELECT hash FROM sealed ORDER BY chain_key, seq
""")


async def checkpoint(session: AsyncSession, tenant_id: uuid.UUID, signer: Signer, now: datetime) -> Checkpoint | None:
    """Seal the city's unsealed chain entries (in the session's tenant scope); None if there are none.
    One checkpointer per city at a time (transaction-level advisory lock)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('carbon-checkpoint:' || :t, 0))"),
                          {"t": str(tenant_id)})
    last = (await session.execute(text(
        "SELECT number, root FROM ledger_checkpoints WHERE tenant_id = :t ORDER BY number DESC LIMIT 1"),
        {"t": tenant_id})).first()
    number, previous_root = (last[0] + 1, bytes(last[1])) if last else (1, GENESIS)
    hashes = [bytes(row[0]) for row in (await session.execute(_SEAL, {"t": tenant_id, "n": number})).all()]
    if not hashes:
        return None
    merkle = merkle_root(hashes)
    root = chained_root(previous_root, merkle)
    document = checkpoint_document(tenant_id, number, now, len(hashes), merkle, previous_root, root, signer.key_id)
    await session.execute(text("""
        INSERT INTO ledger_checkpoints (tenant_id, number, at, entries, merkle_root, previous_root, root, key_id,
                                        signature)
        VALUES (:t, :n, :at, :entries, :merkle, :previous, :root, :key, :signature)
    """), {"t": tenant_id, "n": number, "at": now, "entries": len(hashes), "merkle": merkle,
           "previous": previous_root, "root": root, "key": signer.key_id, "signature": signer.sign(document)})
    return Checkpoint(number=number, entries=len(hashes), root=root)


async def checkpoint_all(database: Database, signer: Signer, now: datetime) -> dict[str, Checkpoint | None]:
    async with database.transaction(TenantScope.regulator()) as session:
        tenants = (await session.execute(text("SELECT id, slug FROM tenants ORDER BY slug"))).all()
    sealed: dict[str, Checkpoint | None] = {}
    for tenant_id, slug in tenants:
        async with database.transaction(TenantScope.for_tenant(tenant_id)) as session:
            sealed[slug] = await checkpoint(session, tenant_id, signer, now)
    return sealed


async def periodic_checkpoints(database: Database, signer: Signer, interval_seconds: float) -> None:
    """`checkpoint_all` every `interval_seconds` while serving (cancel the task to stop); several
    processes take turns on the per-city lock. Failures are logged and retried next time."""
    from app.logs import get_logger

    log = get_logger("app.checkpoints")
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            sealed = await checkpoint_all(database, signer, datetime.now(UTC))
            for slug, done in sealed.items():  # published outside the database: anchors for verify-ledger
                if done is not None:
                    log.info("ledger_checkpoint", city=slug, number=done.number, entries=done.entries,
                             anchor=f"{slug}:{done.number}:{done.root.hex()}")
        except asyncio.CancelledError:
            raise
        except Exception as error:  # keep serving; try again next time
            log.error("ledger_checkpoint_failed", error=type(error).__name__)


_VERIFY_CHUNK = 200_000  # sealed entries read at once by verify_checkpoints


async def _sealed_entries(session: AsyncSession, rows: Sequence[Any]) -> dict[int, list[bytes]]:
    """The entry hashes sealed by the first checkpoints of `rows` (ordered by number) whose entries add
    up to at most `_VERIFY_CHUNK` (at least the first one), per checkpoint in sealing order: one
    statement for many checkpoints, memory bounded."""
    last, total = rows[0][1], 0
    for row in rows:
        if total and total + row[3] > _VERIFY_CHUNK:
            break
        last, total = row[1], total + row[3]
    found: dict[int, list[bytes]] = {row[1]: [] for row in rows if rows[0][1] <= row[1] <= last}
    for number, digest in (await session.execute(text(
            "SELECT checkpoint_number, hash FROM ledger_chain WHERE checkpoint_number BETWEEN :first AND :last "
            "ORDER BY checkpoint_number, chain_key, seq"), {"first": rows[0][1], "last": last})).all():
        found.setdefault(number, []).append(bytes(digest))
    return found


async def verify_checkpoints(session: AsyncSession, public_key: Ed25519PublicKey | None,
                             anchors: Sequence[tuple[int, bytes]] = ()) -> list[tuple[str, str]]:
    """(where, problem) for every checkpoint of the session's city that does not hold: its entries'
    Merkle root, its link to the previous root, (given the public key) its signature, and every anchor
    (a root published outside the database) still present and unchanged: deleting the latest
    checkpoints to rewrite what they sealed is caught by an anchor."""
    problems: list[tuple[str, str]] = []
    previous_root = GENESIS
    rows = (await session.execute(text(
        "SELECT tenant_id, number, at, entries, merkle_root, previous_root, root, key_id, signature "
        "FROM ledger_checkpoints ORDER BY number"))).all()
    roots = {row[1]: bytes(row[6]) for row in rows}
    for number, root in anchors:
        if roots.get(number) != root:
            problems.append((f"checkpoint {number}", "the published root is missing or differs (deleted or "
                                                     "rewritten?)"))
    sealed: dict[int, list[bytes]] = {}
    for i, (tenant_id, number, at, entries, merkle, previous, root, key_id, signature) in enumerate(rows):
        where = f"checkpoint {number}"
        if number not in sealed:  # the entries of this and the next checkpoints, up to a bounded number
            sealed = await _sealed_entries(session, rows[i:])
        hashes = sealed.get(number, [])
        if len(hashes) != entries or merkle_root(hashes) != bytes(merkle):
            problems.append((where, f"sealed {entries} entries, now {len(hashes)} whose Merkle root differs"
                             if len(hashes) != entries else "the sealed entries changed (Merkle root differs)"))
        if bytes(previous) != previous_root or chained_root(bytes(previous), bytes(merkle)) != bytes(root):
            problems.append((where, "does not chain to the previous checkpoint"))
        document = checkpoint_document(tenant_id, number, at, entries, bytes(merkle), bytes(previous), bytes(root),
                                       key_id)
        if public_key is not None and not verify(public_key, document, signature):
            problems.append((where, "the signature does not verify with the platform's public key"))
        previous_root = bytes(root)
    return problems
