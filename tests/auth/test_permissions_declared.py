"""Every root field declares who may call it (a field added without a permission fails here).

The declared matrix below must equal the code's; test_role_walk and test_tenant_walk check that the
running API enforces it, against own and another city's objects."""

from __future__ import annotations

from app.graphql.schema import schema

ALL = {"CITY_APP", "PARTNER", "TENANT_ADMIN", "REGULATOR"}
DECLARED = {
    "Query.tenants": ALL,
    "Query.tenant": ALL,
    "Query.node": ALL,
    "Query.account": {"CITY_APP", "TENANT_ADMIN"},
    "Query.entitlements": {"PARTNER"},
    "Query.auditLog": {"TENANT_ADMIN"},
    "Query.crossProviderDuplicates": {"TENANT_ADMIN"},
    "Query.crossCityDashboard": {"REGULATOR", "CITY_APP", "TENANT_ADMIN"},
    "Mutation.openAccount": {"CITY_APP"},
    "Mutation.linkBankAccount": {"CITY_APP"},
    "Mutation.freezeAccount": {"CITY_APP", "TENANT_ADMIN"},
    "Mutation.unfreezeAccount": {"CITY_APP", "TENANT_ADMIN"},
    "Mutation.closeAccount": {"CITY_APP", "TENANT_ADMIN"},
    "Mutation.grantConsent": {"CITY_APP"},
    "Mutation.revokeConsent": {"CITY_APP"},
    "Mutation.recordBehaviors": {"PARTNER"},
    "Mutation.redeemReward": {"CITY_APP"},
    "Mutation.cancelRedemption": {"CITY_APP"},
    "Mutation.reverseBehaviorRecord": {"TENANT_ADMIN"},
    "Mutation.createReward": {"TENANT_ADMIN"},
    "Mutation.updateReward": {"TENANT_ADMIN"},
    "Mutation.setRewardStock": {"TENANT_ADMIN"},
    "Mutation.retireReward": {"TENANT_ADMIN"},
    "Mutation.publishConfiguration": {"TENANT_ADMIN"},
    "Query.marketLots": {"TENANT_ADMIN", "REGULATOR"},
    "Query.signingKey": ALL,
    "Mutation.issueMarketLot": {"TENANT_ADMIN"},
    "Mutation.listMarketLot": {"TENANT_ADMIN"},
    "Mutation.sellMarketLot": {"TENANT_ADMIN"},
    "Mutation.retireCredits": {"TENANT_ADMIN"},
    "Subscription.accountActivity": {"CITY_APP", "TENANT_ADMIN"},
    "Subscription.behaviorOutcomes": {"PARTNER"},
    "Subscription.dashboardTick": {"REGULATOR", "CITY_APP", "TENANT_ADMIN"},
}


def _root_fields() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for type_name in ("Query", "Mutation", "Subscription"):
        definition = schema.get_type_by_name(type_name)
        for field in definition.fields:
            roles: set[str] = set()
            for permission in field.permission_classes:
                roles |= {role.value for role in getattr(permission, "roles", ())}
            name = field.graphql_name or schema.config.name_converter.get_graphql_name(field)
            found[f"{type_name}.{name}"] = roles
    return found


def test_every_root_field_declares_its_roles() -> None:
    found = _root_fields()
    undeclared = sorted(name for name, roles in found.items() if not roles)
    assert undeclared == [], f"root fields without a permission class: {undeclared}"
    assert found == DECLARED
