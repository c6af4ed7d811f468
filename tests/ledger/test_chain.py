"""Tamper evidence: an edit made directly in SQL is caught and located by `verify-ledger`; a chain
rewritten consistently is caught by the signed checkpoint; concurrent writers never fork a chain."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import text

from app.db.server import asyncpg_dsn
from app.db.session import Database, TenantScope
from app.ledger.chain import checkpoint, checkpoint_all, merkle_root, verify_checkpoints
from app.ledger.signing import load_signer, verify
from app.tenants.models import tenant_id_for
from tests.factories import consenting_account, local_time, record, submit
from tests.ledger.test_ledger import _verify

WUHAN = tenant_id_for("wuhan")

# Recompute an account's chain from its entry `seq` onwards, as an attacker with SQL access would.
REWRITE = """
WITH RECURSIVE entries AS (
    SELECT c.transaction_id, c.seq, c.prev_hash, carbon_ledger_digest(c.prev_hash, t) AS hash
      FROM ledger_chain c JOIN ledger_transactions t ON t.id = c.transaction_id
     WHERE c.chain_key = $1 AND c.seq = $2
    UNION ALL
    SELECT c.transaction_id, c.seq, e.hash, carbon_ledger_digest(e.hash, t)
      FROM entries e JOIN ledger_chain c ON c.chain_key = $1 AND c.seq = e.seq + 1
      JOIN ledger_transactions t ON t.id = c.transaction_id
)
UPDATE ledger_chain c SET prev_hash = e.prev_hash, hash = e.hash FROM entries e WHERE c.transaction_id = e.transaction_id
"""


async def _owner(database_target) -> asyncpg.Connection:
    _, kwargs = asyncpg_dsn(database_target.owner_url)
    return await asyncpg.connect(**kwargs)  # the table owner: what someone with database access could do


async def _rides(api, count: int) -> str:
    account = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account, "bus", 1, local_time(1, 6, i)) for i in range(count)])
    return account


async def _chain(owner: asyncpg.Connection, account: str) -> list[asyncpg.Record]:
    from app.graphql.ids import from_global_id

    return await owner.fetch("SELECT c.*, t.points FROM ledger_chain c JOIN ledger_transactions t ON t.id = "
                             "c.transaction_id WHERE c.chain_key = $1 ORDER BY seq", from_global_id(account)[1])


async def test_an_edited_transaction_is_caught_and_named(committed_api, database_target) -> None:
    account = await _rides(committed_api, 3)
    owner = await _owner(database_target)
    try:
        chain = await _chain(owner, account)
        assert [entry["seq"] for entry in chain] == [1, 2, 3] and chain[1]["prev_hash"] == chain[0]["hash"]
        edited = chain[1]["transaction_id"]
        await owner.execute("UPDATE ledger_transactions SET points = points + 5 WHERE id = $1", edited)
        try:
            result = _verify(database_target)
            assert result.returncode == 1
            assert f"chain_hashes_match: {edited} seq 2" in result.stdout, result.stdout
        finally:
            await owner.execute("UPDATE ledger_transactions SET points = points - 5 WHERE id = $1", edited)
    finally:
        await owner.close()
    assert _verify(database_target).returncode == 0


async def test_a_consistently_rewritten_chain_is_caught_by_the_signed_checkpoint(committed_api, app_engine,
                                                                                database_target, settings) -> None:
    account = await _rides(committed_api, 2)
    signer = load_signer(settings)
    sealed = await checkpoint_all(Database(app_engine), signer, datetime.now(UTC))  # committed
    assert sealed["wuhan"] is not None and sealed["wuhan"].entries >= 2
    owner = await _owner(database_target)
    try:
        first = (await _chain(owner, account))[0]
        # The attacker edits the first ride and recomputes the rest of the chain: every chain check holds.
        await owner.execute("UPDATE ledger_transactions SET points = points + 5 WHERE id = $1", first["transaction_id"])
        await owner.execute(REWRITE, first["chain_key"], 1)
        try:
            result = _verify(database_target)
            assert result.returncode == 1 and "chain_hashes_match" not in result.stdout, result.stdout
            assert f"checkpoints_hold: checkpoint {sealed['wuhan'].number} the sealed entries changed" in result.stdout
            # Deleting the checkpoint too (and unsealing its entries) hides the rewrite from the database
            # alone; the root published when it was taken (an anchor) does not go away.
            anchor = f"wuhan:{sealed['wuhan'].number}:{sealed['wuhan'].root.hex()}"
            async with owner.transaction():
                await owner.execute("UPDATE ledger_chain SET checkpoint_number = NULL WHERE checkpoint_number >= $1 "
                                    "AND tenant_id = $2", sealed["wuhan"].number, WUHAN)
                await owner.execute("DELETE FROM ledger_checkpoints WHERE number >= $1 AND tenant_id = $2",
                                    sealed["wuhan"].number, WUHAN)
            hidden = _verify(database_target)
            assert "checkpoints_hold" not in hidden.stdout
            anchored = _verify(database_target, "--anchor", anchor)
            assert anchored.returncode == 1 and "the published root is missing" in anchored.stdout, anchored.stdout
        finally:
            await owner.execute("UPDATE ledger_transactions SET points = points - 5 WHERE id = $1",
                                first["transaction_id"])
            await owner.execute(REWRITE, first["chain_key"], 1)
    finally:
        await owner.close()
    assert _verify(database_target).returncode == 0


async def test_deleted_and_added_entries_are_caught(committed_api, database_target) -> None:
    account = await _rides(committed_api, 3)
    owner = await _owner(database_target)
    try:
        chain = await _chain(owner, account)
        tampering = owner.transaction()  # looked at inside the owner's transaction, then rolled back
        await tampering.start()
        try:
            await owner.execute("DELETE FROM ledger_chain WHERE transaction_id = $1", chain[1]["transaction_id"])
            gap = await owner.fetch(_check("chain_links_intact"))
            assert [(row[1], row[2]) for row in gap if row[0] == str(chain[0]["chain_key"])] == [
                ("seq 3", "a gap or a repeat in the chain (deleted or added?)")], gap
            outside = await owner.fetch(_check("every_transaction_chained"))
            assert [row[0] for row in outside] == [str(chain[1]["transaction_id"])], outside
        finally:
            await tampering.rollback()
    finally:
        await owner.close()


def _check(name: str) -> str:
    from app.ledger.invariants import CHECKS

    return CHECKS[name].replace(":limit", "20")


async def test_checkpoints_verify_with_the_public_key_only(api, database, settings) -> None:
    await _rides(api, 2)
    signer = load_signer(settings)
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        done = await checkpoint(session, WUHAN, signer, datetime.now(UTC))
        assert done is not None and await checkpoint(session, WUHAN, signer, datetime.now(UTC)) is None  # all sealed
        assert await verify_checkpoints(session, signer.public) == []
        stranger = load_signer(settings.model_copy(update={"signing_key": _secret("A" * 43)}))
        problems = await verify_checkpoints(session, stranger.public)
        assert problems and all("signature does not verify" in problem for _, problem in problems)


def _secret(value: str):
    from pydantic import SecretStr

    return SecretStr(value)


async def test_concurrent_ingestion_never_forks_a_chain(committed_api, database_target) -> None:
    account = await consenting_account(committed_api)
    await asyncio.gather(*(submit(committed_api, "wuhan-tong", [record(account, "bus", 1, local_time(1, 7, i))])
                           for i in range(8)))
    owner = await _owner(database_target)
    try:
        assert [entry["seq"] for entry in await _chain(owner, account)] == list(range(1, 9))
    finally:
        await owner.close()


def test_merkle_roots_and_signatures() -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(5)]
    assert merkle_root(leaves) != merkle_root(leaves[:4]) and merkle_root(leaves) != merkle_root(leaves[::-1])
    assert merkle_root([leaves[0]]) == hashlib.sha256(b"\x00" + leaves[0]).digest()
    from app.settings import Settings

    signer = load_signer(Settings(signing_key=_secret("B" * 43)))
    document = {"b": 1, "a": "碳"}
    signature = signer.sign(document)
    assert verify(signer.public, {"a": "碳", "b": 1}, signature)  # canonical: key order does not matter
    assert not verify(signer.public, {"a": "碳", "b": 2}, signature) and not verify(signer.public, document, "x")


@pytest.mark.parametrize("key", ["short", "!!!not base64!!!"])
def test_a_bad_signing_key_is_refused(key: str) -> None:
    from app.settings import Settings
    from app.tenants.config import ConfigError

    with pytest.raises(ConfigError):
        load_signer(Settings(signing_key=_secret(key)))


async def test_the_migration_backfill_chains_an_existing_ledger(committed_api, database_target) -> None:
    await _rides(committed_api, 3)
    from importlib import import_module

    backfill = import_module("app.db.migrations.versions.0017_ledger_hash_chain").BACKFILL
    owner = await _owner(database_target)
    try:
        rebuilding = owner.transaction()  # the chain dropped and rebuilt as the migration would, rolled back
        await rebuilding.start()
        try:
            before = await owner.fetchval("SELECT count(*) FROM ledger_chain")
            await owner.execute("DELETE FROM ledger_chain")
            await owner.execute(backfill)
            assert await owner.fetchval("SELECT count(*) FROM ledger_chain") == before > 0
            for check in ("chain_hashes_match", "chain_links_intact", "every_transaction_chained"):
                assert await owner.fetch(_check(check).replace(
                    "OR (c.checkpoint_number IS NOT NULL", "OR (false")) == [], check
        finally:
            await rebuilding.rollback()
    finally:
        await owner.close()


async def test_a_posting_moved_to_another_account_is_caught(committed_api, database_target) -> None:
    first, second = await _rides(committed_api, 1), await _rides(committed_api, 1)
    owner = await _owner(database_target)
    try:
        from app.graphql.ids import from_global_id

        moving = owner.transaction()
        await moving.start()
        try:
            source = await owner.fetchrow(
                "SELECT p.id, p.amount, la.asset FROM ledger_postings p JOIN ledger_accounts la ON la.id = "
                "p.ledger_account_id WHERE la.account_id = $1 AND la.asset = 'CONTRIBUTION_MG'",
                from_global_id(first)[1])
            target = await owner.fetchval("SELECT id FROM ledger_accounts WHERE account_id = $1 AND asset = $2",
                                          from_global_id(second)[1], source["asset"])
            await owner.execute("UPDATE ledger_postings SET ledger_account_id = $1 WHERE id = $2", target, source["id"])
            await owner.execute("UPDATE ledger_accounts SET balance = balance + $1 WHERE id = $2", source["amount"],
                                target)
            await owner.execute("UPDATE ledger_accounts SET balance = balance - $1 WHERE account_id = $2 AND "
                                "asset = 'CONTRIBUTION_MG'", source["amount"], from_global_id(first)[1])
            found = await owner.fetch(_check("postings_belong_to_their_transaction"))
            assert [row[0] for row in found] == [str(source["id"])], found
        finally:
            await moving.rollback()
    finally:
        await owner.close()


@pytest.mark.parametrize("chunk", [1, 3, 200_000])
async def test_checkpoints_are_verified_in_bounded_chunks(api, database, settings, monkeypatch, chunk: int) -> None:
    from app.ledger import chain

    signer = load_signer(settings)
    numbers = []
    async with database.transaction(TenantScope.for_tenant(WUHAN)) as session:
        for rides in (2, 1, 3):  # three checkpoints of 2, 1 and 3 entries (more from other tests' data)
            await _rides(api, rides)
            done = await checkpoint(session, WUHAN, signer, datetime.now(UTC))
            assert done is not None
            numbers.append(done.number)
        monkeypatch.setattr(chain, "_VERIFY_CHUNK", chunk)
        # Entries grouped under the wrong checkpoint would change its Merkle root: every one still holds.
        assert await verify_checkpoints(session, signer.public) == []
        sealed = await chain._sealed_entries(session, (await session.execute(text(
            "SELECT tenant_id, number, at, entries FROM ledger_checkpoints WHERE number = ANY(:n) ORDER BY number"),
            {"n": numbers})).all())
    if chunk == 1:  # at least one checkpoint a read, however many entries it sealed
        assert list(sealed) == numbers[:1]
    elif chunk == 200_000:
        assert list(sealed) == numbers and [len(sealed[n]) for n in numbers][1] >= 1
