"""The platform's signature: Ed25519 over canonical JSON, for ledger checkpoints and certificates.

Anyone holding the public key (`carbon-inclusive public-key`) can verify a signed document offline:
canonical JSON is the document with sorted keys, no spaces, UTF-8; the signature is base64url (no
padding) of Ed25519 over those bytes. `keyId` names the key (the first 16 hex digits of the SHA-256 of
the raw public key) so that keys can be rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.settings import Settings, development_key
from app.tenants.config import ConfigError


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def public_pem(self) -> str:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, document: dict[str, Any]) -> str:
        return b64(self.private.sign(canonical(document)))


def verify(public: Ed25519PublicKey, document: dict[str, Any], signature: str) -> bool:
    try:
        public.verify(unb64(signature), canonical(document))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def load_signer(settings: Settings) -> Signer:
    """The key from `CARBON_SIGNING_KEY`, or outside production from the development secrets file."""
    try:
        encoded = (settings.signing_key.get_secret_value() if settings.signing_key is not None
                   else development_key(settings, "signing_key"))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    if encoded is None:
        raise ConfigError("no signing key: set CARBON_SIGNING_KEY (an Ed25519 seed: 32 bytes, base64url)")
    try:
        seed = unb64(encoded)
    except (ValueError, binascii.Error) as error:
        raise ConfigError("the signing key is not base64url") from error
    if len(seed) != 32:
        raise ConfigError("the signing key must be a 32-byte Ed25519 seed")
    return Signer(Ed25519PrivateKey.from_private_bytes(seed))
