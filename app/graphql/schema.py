"""The one schema: each domain's Query (and later Mutation) types merged, Saleor-style."""

from __future__ import annotations

import re
import traceback

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, Info

from app.graphql.context import Context
from app.graphql.cost import QueryCost
from app.graphql.errors import error_code
from app.graphql.extensions import (
    DocumentShape,
    EventExecutor,
    MaskUnexpectedErrors,
    OperationMetrics,
    RefuseNul,
    UnitOfWork,
)
from app.graphql.node import Node, resolve_node
from app.graphql.rules import OneMutationFieldPerOperation
from app.graphql.scalars import SCALAR_MAP
from app.accounts.graphql import Account, AccountMutations, AccountQuery, ActivityEntry, Consent
from app.auth.permissions import ANY_CLIENT
from app.behaviors.graphql import BehaviorAdminQuery, BehaviorMutations, ReversalMutations
from app.rewards.graphql import Entitlement, Redemption, RewardMutations, RewardQuery
from app.dashboard.graphql import DashboardQuery
from app.market.graphql import MarketMutations, MarketQuery
from app.tenants.admin_graphql import AdminQuery, CatalogueMutations, ConfigurationMutations
from app.live.graphql import Subscription
from app.tenants.graphql import Issuer, Reward, Tenant, TenantQuery
from app.logs import get_logger

log = get_logger("app.graphql")


@strawberry.type
class Query(TenantQuery, AccountQuery, RewardQuery, AdminQuery, BehaviorAdminQuery, DashboardQuery, MarketQuery):
    @strawberry.field(description="Any object by its global id; null if absent or not visible to the caller.",
                      permission_classes=[ANY_CLIENT])
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        return await resolve_node(info, id)


MAX_TOKENS = 20_000
MAX_DEPTH = 12
MAX_ALIASES = 30
EXTRA_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
    OneMutationFieldPerOperation,
]


@strawberry.type
class Mutation(AccountMutations, BehaviorMutations, RewardMutations, ReversalMutations, CatalogueMutations,
               ConfigurationMutations, MarketMutations):
    pass


SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


class Schema(strawberry.Schema):
    """strawberry's Schema, logging errors without what the client sent.

    strawberry logs every error's message at ERROR, and a message can quote the request: graphql-core's
    coercion errors repeat the variable's whole value ("Variable '$input' got invalid value {...
    'holderRef': ..., 'bankAccountRef': ...}"), parse errors a line of the document. Personal data never
    goes to the log (app.logs), so here an error is logged by what it is, not by what it says: a client's
    mistake (a code of ours, or graphql-core's request errors) at INFO with its code and path; a bug at
    ERROR with the exception's type and where it was raised (file, line and function of each frame; not
    its message, which may quote a value either). Clients still get the full message, except graphql-core's
    "Did you mean ...?" suggestions when introspection is off (`hide_suggestions`): they name fields and
    types near a wrong guess, enough to rebuild the schema one guess at a time."""

    hide_suggestions = False

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        operation = execution_context.operation_name if execution_context is not None else None
        for error in errors:
            if self.hide_suggestions and "Did you mean" in error.message:
                error.message = SUGGESTION.sub("", error.message)
            original = error.original_error
            path = ".".join(str(part) for part in error.path) if error.path else None
            code = error_code(error)
            if code == "INTERNAL" and original is not None:
                frames = [f"{frame.filename}:{frame.lineno} {frame.name}"
                          for frame in traceback.extract_tb(original.__traceback__)]
                log.error("graphql_unexpected_error", operation=operation, path=path, error=type(original).__name__,
                          frames=frames[-12:])
            else:
                log.info("graphql_error", operation=operation, path=path, code=code)


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    """The schema; without introspection for production deployments that want it off
    (`CARBON_INTROSPECTION=false`)."""
    rules = EXTRA_RULES if introspection else [*EXTRA_RULES, NoSchemaIntrospectionCustomRule]
    built = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Each subscription event in its own unit of work under the subscriber's scope (others unchanged).
        execution_context_class=EventExecutor,
        types=[Tenant, Reward, Issuer, Account, ActivityEntry, Consent, Redemption, Entitlement],
        config=StrawberryConfig(auto_camel_case=True, scalar_map=SCALAR_MAP),
        extensions=[
            # Basic request limits (a fuller cost analysis comes with the public-clients work): deep,
            # alias-heavy or huge documents are refused before they run. Batches travel in variables.
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            # Before validation (and before the validation cache, which validates whatever it is given).
            DocumentShape,
            # The same rule classes every request, so the validation cache keeps hitting (limiter
            # extensions built per request would make new rule classes and miss it every time).
            lambda: AddValidationRules(rules),
            # Fresh extension instances per request; strawberry keeps the LRU caches module-wide.
            lambda: ParserCache(maxsize=1024),
            lambda: ValidationCache(maxsize=1024),
            OperationMetrics,
            # Before the unit of work: what they refuse never opens a transaction.
            RefuseNul,
            QueryCost,
            UnitOfWork,
            MaskUnexpectedErrors,
        ],
    )
    built.hide_suggestions = not introspection
    return built


schema = build_schema()
