"""Static query cost, checked against a budget per role before execution; reported in `extensions.cost`.

Cost model: every field costs 1 (introspection fields 0); a connection's children count `first`/`last`
times (the argument's literal or variable value, the variable's default, else 20 — the default page
size — when the argument is absent, and 100 when its value cannot be known; at most 100); a plain list
field's children count 10 times (e.g. cities, issuers; not a connection's own `edges`/`nodes`); each
root mutation field costs 10 more. Computed from the parsed document and variables alone, before
any resolver runs, so an over-budget request does no work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType as StrawberryOperationType

from app.graphql.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.tenants.config import Role

MUTATION_COST = 10
LIST_SIZE = 10
BUDGETS = {Role.CITY_APP: 5_000, Role.PARTNER: 5_000, Role.TENANT_ADMIN: 10_000, Role.REGULATOR: 50_000}


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _page_size(node: FieldNode, variables: dict[str, Any], defaults: dict[str, Any]) -> int:
    size: int | None = DEFAULT_PAGE_SIZE
    for argument in node.arguments or ():
        if argument.name.value in ("first", "last"):
            value = argument.value
            if isinstance(value, IntValueNode):
                size = int(value.value)
            elif isinstance(value, VariableNode):
                name = value.name.value
                size = _integer(variables[name]) if name in variables else defaults.get(name, DEFAULT_PAGE_SIZE)
            else:
                size = None
            if size is None:  # unknown: assume the largest page
                size = MAX_PAGE_SIZE
    return max(0, min(size, MAX_PAGE_SIZE))


def _cost(schema: GraphQLSchema, selection_set: SelectionSetNode, parent: Any,
          fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any], defaults: dict[str, Any],
          seen: frozenset[str]) -> int:
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if name.startswith("__"):
                continue
            field = getattr(parent, "fields", {}).get(name)
            if field is None:
                continue
            named = get_named_type(field.type)
            children = (_cost(schema, selection.selection_set, named, fragments, variables, defaults, seen)
                        if selection.selection_set else 0)
            if named.name.endswith("Connection"):
                multiplier = _page_size(selection, variables, defaults)
            elif is_list_type(get_nullable_type(field.type)) and not parent.name.endswith("Connection"):
                multiplier = LIST_SIZE  # (a connection's own edges/nodes are its page, counted above)
            else:
                multiplier = 1
            total += 1 + multiplier * children
        elif isinstance(selection, InlineFragmentNode):
            target = schema.get_type(selection.type_condition.name.value) if selection.type_condition else parent
            total += _cost(schema, selection.selection_set, target, fragments, variables, defaults, seen)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None and fragment.name.value not in seen:
                total += _cost(schema, fragment.selection_set, schema.get_type(fragment.type_condition.name.value),
                               fragments, variables, defaults, seen | {fragment.name.value})
    return total


def operation_cost(schema: GraphQLSchema, document: Any, operation_name: str | None,
                   variables: dict[str, Any]) -> int:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operation = next((o for o in operations if operation_name is None or (o.name and o.name.value == operation_name)),
                     None)
    if operation is None:
        return 0
    defaults = {}
    for definition in operation.variable_definitions or ():
        default = definition.default_value
        defaults[definition.variable.name.value] = (int(default.value) if isinstance(default, IntValueNode)
                                                    else None if default is not None else DEFAULT_PAGE_SIZE)
    root = schema.get_root_type(operation.operation)
    cost = _cost(schema, operation.selection_set, root, fragments, variables, defaults, frozenset())
    if operation.operation is OperationType.MUTATION:
        cost += MUTATION_COST * _root_fields(operation.selection_set, fragments, frozenset())
    return cost


def _root_fields(selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode],
                 seen: frozenset[str]) -> int:
    """Root fields, through inline fragments and fragment spreads."""
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            total += not selection.name.value.startswith("__")
        elif isinstance(selection, InlineFragmentNode):
            total += _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                total += _root_fields(fragment.selection_set, fragments, seen | {selection.name.value})
    return total


def over_budget(cost: int, budget: int) -> GraphQLError | None:
    """The refusal of an operation costing `cost` under `budget` (COST_LIMIT_EXCEEDED), or None: the
    same error over HTTP and at a websocket's `subscribe` (`app.live.transport`)."""
    if cost <= budget:
        return None
    return GraphQLError(f"query cost {cost} exceeds this client's budget of {budget}; ask for smaller pages",
                        extensions={"code": "COST_LIMIT_EXCEEDED", "cost": cost, "budget": budget})


class QueryCost(SchemaExtension):
    """Refuse an operation over its role's budget (COST_LIMIT_EXCEEDED) and report the cost.

    A query or mutation is refused by setting the result, so that it never executes. Strawberry's
    subscription path does not look at a result set here, so a subscription is refused by raising:
    its stream then ends with the error instead of running every event. (The websocket refuses it
    earlier still, with an `error` message for its id.)"""

    def __init__(self) -> None:
        self.cost: int | None = None
        self.budget: int | None = None

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        principal = getattr(context.context, "principal", None)
        if principal is not None and context.graphql_document is not None:
            self.cost = operation_cost(context.schema._schema, context.graphql_document, context.operation_name,
                                       context.variables or {})
            self.budget = BUDGETS[principal.role]
            refusal = over_budget(self.cost, self.budget)
            if refusal is not None:
                if context.operation_type is StrawberryOperationType.SUBSCRIPTION:
                    raise refusal
                context.result = GraphQLExecutionResult(data=None, errors=[refusal])
        yield

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {"cost": {"requestedQueryCost": self.cost, "budget": self.budget}}
