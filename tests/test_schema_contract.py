"""`schema.graphql` at the repository root is the contract: it must equal what the code exports."""

from __future__ import annotations

from app.graphql.schema import schema
from app.settings import PROJECT_ROOT


def test_checked_in_schema_matches_the_code() -> None:
    checked_in = (PROJECT_ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert checked_in == schema.as_str() + "\n", "schema.graphql is stale: run `make schema` and commit it"


def test_issue_queries_validate_against_the_contract() -> None:
    from graphql import build_schema, parse, validate

    contract = build_schema((PROJECT_ROOT / "schema.graphql").read_text(encoding="utf-8"))
    for document in (
        "{ tenants { slug name timezone pointUnit { name } } }",
        """{ tenant(slug: "wuhan") { slug pointUnit { name gramsPerPoint } issuers { slug name kind }
             behaviors { code name category method }
             rewards(first: 20) { edges { node { id name kind cost { amount unit { name } } } }
                                  pageInfo { hasNextPage endCursor } } } }""",
    ):
        assert validate(contract, parse(document)) == []
