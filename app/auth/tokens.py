"""Bearer tokens: HS256 JWTs, each client signing with its own secret.

Claims: `sub` (the client slug), `aud` (`CARBON_TOKEN_AUDIENCE`), `iat`, `exp` (required; at most
`CARBON_TOKEN_MAX_LIFETIME_SECONDS` after `iat`). The client named in `sub` fixes tenant and role;
a token cannot claim either. Secrets: `CARBON_CLIENT_SECRETS` (JSON object slug -> secret) in
production; outside production also the development-only file `config/secrets.dev.toml`.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from app.auth.principals import Client, Principal
from app.tenants.config import CityConfig, ConfigError, PlatformConfig
from app.tenants.models import tenant_id_for

ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32
VERIFIED_CACHE_SIZE = 10_000
MAX_AUTHORIZATION_LENGTH = 4096  # ours are about 250; a token carries no payload of its own


class AuthenticationError(Exception):
    """The request's credentials are missing or invalid; the message is safe to show the caller."""


@dataclass
class ClientRegistry:
    clients: dict[str, Client]
    secrets: dict[str, str]
    audience: str
    max_lifetime_seconds: int
    uses_dev_secrets: bool = False
    # token -> (caller, exp): a token's signature and claims never change, so each is verified once;
    # expiry is still checked on every use. Bounded: cleared when full.
    _verified: dict[str, tuple[Principal, int]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, cities: list[CityConfig], platform: PlatformConfig, secrets: Mapping[str, str], *,
              audience: str, max_lifetime_seconds: int) -> ClientRegistry:
        clients: dict[str, Client] = {}
        for city in cities:
            for client in city.clients:
                clients[client.slug] = Client(
                    slug=client.slug, role=client.role, name_en=client.name.en, name_zh=client.name.zh,
                    tenant_slug=city.slug, tenant_id=tenant_id_for(city.slug), issuer_slug=client.issuer,
                    trusted_documents_only=client.trusted_documents_only,
                )
        for client in platform.clients:
            clients[client.slug] = Client(
                slug=client.slug, role=client.role, name_en=client.name.en, name_zh=client.name.zh,
                tenant_slug=None, tenant_id=None, issuer_slug=None,
            )
        short = sorted(slug for slug, secret in secrets.items() if len(secret) < MIN_SECRET_LENGTH)
        if short:
            raise ConfigError(f"client secrets shorter than {MIN_SECRET_LENGTH} characters: {short}")
        return cls(clients=clients, secrets=dict(secrets), audience=audience,
                   max_lifetime_seconds=max_lifetime_seconds)

    def issue(self, client_slug: str, lifetime_seconds: int | None = None, *, now: float | None = None) -> str:
        if client_slug not in self.clients:
            raise KeyError(f"unknown client {client_slug!r}; configured: {', '.join(sorted(self.clients))}")
        secret = self.secrets.get(client_slug)
        if secret is None:
            raise KeyError(f"no secret configured for client {client_slug!r} (CARBON_CLIENT_SECRETS)")
        issued_at = int(now if now is not None else time.time())
        lifetime = min(lifetime_seconds or self.max_lifetime_seconds, self.max_lifetime_seconds)
        claims = {"sub": client_slug, "aud": self.audience, "iat": issued_at, "exp": issued_at + lifetime}
        return jwt.encode(claims, secret, algorithm=ALGORITHM)

    def authenticate(self, authorization: str | None) -> Principal:
        """Verify an `Authorization: Bearer <jwt>` header value and return the caller."""
        return self.authenticate_until(authorization)[0]

    def authenticate_until(self, authorization: str | None) -> tuple[Principal, int]:
        """The caller, and when (Unix time) its token expires: a long-lived connection ends then."""
        if not authorization:
            raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>' "
                                      "(get one with `carbon-inclusive token CLIENT`)")
        if len(authorization) > MAX_AUTHORIZATION_LENGTH:
            # Before decoding or caching: a valid signature on megabytes of claims would otherwise be
            # decoded and kept in the cache below (a client's secret is enough to fill memory).
            raise AuthenticationError(f"invalid token: longer than {MAX_AUTHORIZATION_LENGTH} characters")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("malformed Authorization header: expected 'Bearer <token>'")
        token = token.strip()
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known
            del self._verified[token]
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("invalid token: not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise AuthenticationError(f"invalid token: algorithm must be {ALGORITHM}")
        slug = unverified.get("sub")
        client = self.clients.get(slug) if isinstance(slug, str) else None
        secret = self.secrets.get(slug) if client else None
        if client is None or secret is None:
            raise AuthenticationError("invalid token: unknown client")
        try:
            claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=self.audience,
                                options={"require": ["exp", "iat", "sub", "aud"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired: get a new one") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("invalid token: wrong audience") from None
        except jwt.PyJWTError:
            raise AuthenticationError("invalid token: signature or claims do not verify") from None
        # PyJWT checks `exp` and `iat` by converting them, so "1795000000" (a string) passes its checks.
        if not all(isinstance(claims[name], int | float) and not isinstance(claims[name], bool)
                   for name in ("exp", "iat")):
            raise AuthenticationError("invalid token: `exp` and `iat` must be numbers (seconds since the epoch)")
        if claims["exp"] - claims["iat"] > self.max_lifetime_seconds:
            raise AuthenticationError("invalid token: lifetime exceeds the allowed maximum")
        principal = Principal(client=client)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, int(claims["exp"]))
        return principal, int(claims["exp"])


def load_secrets(dev_file: Path | None, environment_secrets: Mapping[str, str]) -> dict[str, str]:
    """The environment's secrets when any are given (then the development file is ignored entirely, so
    a deployment can never fall back to a committed secret); otherwise the development file's."""
    if environment_secrets:
        return dict(environment_secrets)
    secrets: dict[str, str] = {}
    if dev_file is not None and dev_file.exists():
        try:
            document = tomllib.loads(dev_file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{dev_file}: not valid TOML: {error}") from error
        table = document.get("clients", {})
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f"{dev_file}: key `clients` must be a table of client slug = \"secret\"")
        secrets.update(table)
    return secrets
