"""The one schema: each domain's Query (and later Mutation) types merged, Saleor-style."""

from __future__ import annotations

import strawberry
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
from strawberry.types import Info

from app.graphql.context import Context
from app.graphql.cost import QueryCost
from app.graphql.extensions import EventExecutor, MaskUnexpectedErrors, OperationMetrics, RefuseNul, UnitOfWork
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


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    """The schema; without introspection for production deployments that want it off
    (`CARBON_INTROSPECTION=false`)."""
    rules = EXTRA_RULES if introspection else [*EXTRA_RULES, NoSchemaIntrospectionCustomRule]
    return strawberry.Schema(
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


schema = build_schema()
