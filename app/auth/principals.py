"""Who is calling: a configured API client, its role, and the tenant it belongs to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.db.session import TenantScope
from app.tenants.config import Role


@dataclass(frozen=True)
class Client:
    """An API client from configuration. `tenant_slug` is None only for regulators."""

    slug: str
    role: Role
    name_en: str
    name_zh: str
    tenant_slug: str | None
    tenant_id: uuid.UUID | None
    issuer_slug: str | None
    trusted_documents_only: bool = False


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request. The client fixes tenant and role; nothing in the
    request can widen them."""

    client: Client

    @property
    def role(self) -> Role:
        return self.client.role

    @property
    def tenant_id(self) -> uuid.UUID | None:
        return self.client.tenant_id

    @property
    def is_regulator(self) -> bool:
        return self.client.role is Role.REGULATOR

    def can_see_tenant(self, tenant_id: uuid.UUID) -> bool:
        return self.is_regulator or self.client.tenant_id == tenant_id

    @property
    def scope(self) -> TenantScope:
        if self.is_regulator:
            return TenantScope.regulator()
        assert self.client.tenant_id is not None
        return TenantScope.for_tenant(self.client.tenant_id)
