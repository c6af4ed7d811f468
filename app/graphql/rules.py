"""Validation rules of our own, run with GraphQL's standard ones (before anything executes)."""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationRule,
)


class OneMutationFieldPerOperation(ValidationRule):
    """A mutation operation carries exactly one root field (besides `__typename`).

    Each mutation takes its account locks in the platform's one order (ADR 0004); two mutations in one
    transaction would take two accounts' locks in the order the client wrote them, and two such requests
    could deadlock each other. Clients send one mutation per request (batch inputs exist where batching
    matters, e.g. `recordBehaviors`)."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        if node.operation is not OperationType.MUTATION:
            return
        if self._count(node.selection_set, set()) > 1:
            self.report_error(GraphQLError(
                "a mutation operation may contain only one root field; send one mutation per request",
                node, extensions={"code": "BAD_USER_INPUT"}))

    def _count(self, selection_set: SelectionSetNode, seen: set[str]) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += selection.name.value != "__typename"
            elif isinstance(selection, InlineFragmentNode):
                total += self._count(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = self.context.get_fragment(selection.name.value)
                if fragment is not None:
                    total += self._count(fragment.selection_set, seen | {selection.name.value})
        return total
