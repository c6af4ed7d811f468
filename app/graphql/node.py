"""The Relay `Node` interface and `node(id:)` dispatch. Each domain registers its node types."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.types import Info

from app.graphql.ids import from_global_id

NodeResolver = Callable[[Info, uuid.UUID], Awaitable[Any]]
_resolvers: dict[str, NodeResolver] = {}


@strawberry.interface(description="An object with a globally unique, opaque id.")
class Node:
    id: strawberry.ID


def register_node(type_name: str, resolver: NodeResolver) -> None:
    _resolvers[type_name] = resolver


async def resolve_node(info: Info, global_id: str) -> Any:
    type_name, object_id = from_global_id(global_id)
    resolver = _resolvers.get(type_name)
    return None if resolver is None else await resolver(info, object_id)
