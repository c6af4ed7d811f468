"""A configuration version's content hash covers only what a version holds, not the catalogue

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-29

`content_hash` hashed a city's whole file but its `effective_from`, so a file whose catalogue alone had
changed published a new version at the next `seed` or start, and that version carried the file's rules
and point unit back over those an administrator had published through the API. The hash now leaves out
the file's current-state parts (issuers, catalogue items, clients; `app.tenants.config.NOT_VERSIONED`),
and every stored version's hash is recomputed from its stored `document` the same way, so a file
compared with the version it last published matches unless its versioned content changed.
"""
import hashlib
import json
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: Union[str, None] = "0020"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# A copy of `app.tenants.config.NOT_VERSIONED` as of this revision (a migration must not change when the
# app does).
NOT_VERSIONED = frozenset({"effective_from", "issuers", "clients", "rewards"})


def _rehash(left_out: frozenset[str]) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, document::text FROM tenant_config_versions")).all()
    for version_id, document in rows:
        kept = {key: value for key, value in json.loads(document).items() if key not in left_out}
        digest = hashlib.sha256(json.dumps(kept, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        connection.execute(sa.text("UPDATE tenant_config_versions SET content_hash = :h WHERE id = :id"),
                           {"h": digest, "id": version_id})


def upgrade() -> None:
    _rehash(NOT_VERSIONED)


def downgrade() -> None:
    _rehash(frozenset({"effective_from"}))
