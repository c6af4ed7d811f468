"""Keyed hashes for personal identifiers: the holder reference and the bank account reference.

Per-tenant keys are derived from one master key (`CARBON_HOLDER_HASH_KEY`) with HMAC-SHA256 and a
purpose label, so the same citizen in two cities has unrelated hashes and a leaked table of one city
cannot be joined with another's. The clear values are never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

from app.settings import Settings, development_key
from app.tenants.config import ConfigError

_BANK_REF = re.compile(r"^[A-Za-z0-9]{6,34}$")


class HolderHasher:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) < 32:
            raise ConfigError("the holder hash key must have at least 32 bytes")
        self._master = master_key

    def _key(self, tenant_id: uuid.UUID, purpose: str) -> bytes:
        return hmac.new(self._master, f"carbon-inclusive/{purpose}/v1/".encode() + tenant_id.bytes,
                        hashlib.sha256).digest()

    def holder_hash(self, tenant_id: uuid.UUID, holder_ref: str) -> bytes:
        return hmac.new(self._key(tenant_id, "holder"), holder_ref.encode(), hashlib.sha256).digest()

    def bank_account_hash(self, tenant_id: uuid.UUID, normalized_ref: str) -> bytes:
        return hmac.new(self._key(tenant_id, "bank-account"), normalized_ref.encode(), hashlib.sha256).digest()


def normalize_bank_ref(bank_account_ref: str) -> str | None:
    """Spaces and dashes removed, upper-case; None when it is not 6–34 letters and digits."""
    normalized = re.sub(r"[\s-]", "", bank_account_ref).upper()
    return normalized if _BANK_REF.match(normalized) else None


def mask_bank_ref(normalized_ref: str) -> str:
    return "•••• " + normalized_ref[-4:]


def load_holder_hasher(settings: Settings) -> HolderHasher:
    """The master key from `CARBON_HOLDER_HASH_KEY`, or outside production from the dev secrets file."""
    if settings.holder_hash_key is not None:
        return HolderHasher(settings.holder_hash_key.get_secret_value().encode())
    try:
        key = development_key(settings, "holder_hash_key")
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if key is not None:
        return HolderHasher(key.encode())
    raise ConfigError("no holder hash key: set CARBON_HOLDER_HASH_KEY (at least 32 bytes)")
