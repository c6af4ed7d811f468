"""Declarative role permissions for GraphQL fields (strawberry permission classes).

Every root field and mutation declares who may call it; a caller of another role gets a top-level
error with `extensions.code = FORBIDDEN` and nothing runs. Tenant scoping (own tenant only) is then
enforced by the resolvers and, underneath, by row-level security.
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from app.tenants.config import Role


class _RolePermission(BasePermission):
    roles: frozenset[Role] = frozenset()
    message = "forbidden"
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is not None and principal.role in self.roles


def allow(*roles: Role) -> type[BasePermission]:
    """A permission class admitting exactly `roles`."""
    names = "/".join(role.value for role in roles)
    return type(
        f"Allow{''.join(role.value.title().replace('_', '') for role in roles)}",
        (_RolePermission,),
        {"roles": frozenset(roles), "message": f"only {names} clients may use this field"},
    )


ANY_CLIENT = allow(Role.CITY_APP, Role.PARTNER, Role.TENANT_ADMIN, Role.REGULATOR)
CITY_APP = allow(Role.CITY_APP)
CITY_APP_OR_ADMIN = allow(Role.CITY_APP, Role.TENANT_ADMIN)
PARTNER = allow(Role.PARTNER)
TENANT_ADMIN = allow(Role.TENANT_ADMIN)
