"""Plain async factories that act through the API as the configured clients would."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
_holders = itertools.count()

OPEN = """mutation($input: OpenAccountInput!) { openAccount(input: $input) {
    account { id kind status } created userErrors { code field message } } }"""
GRANT = """mutation($input: GrantConsentInput!) { grantConsent(input: $input) {
    consent { id categories live provider { slug } } userErrors { code field message } } }"""
RECORD = """mutation($input: RecordBehaviorsInput!) { recordBehaviors(input: $input) {
    results { externalId status code reductionGrams points reason recordId }
    userErrors { code field message } } }"""


def holder() -> str:
    return f"citizen-{uuid.uuid4().hex[:12]}-{next(_holders)}"


def local_time(days_ago: int, hour: int = 10, minute: int = 0) -> str:
    """An ISO timestamp `days_ago` local (Asia/Shanghai) days before today, at hour:minute local."""
    today = datetime.now(SHANGHAI).date()
    moment = datetime.combine(today - timedelta(days=days_ago), time(hour, minute), tzinfo=SHANGHAI)
    return moment.isoformat()


def recent(minutes: int = 1) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


async def open_account(api, *, app: str = "wuhan-app", kind: str = "GUEST", bank: str | None = None,
                       holder_ref: str | None = None) -> str:
    tenant = app.removesuffix("-app")
    data = await api.query(OPEN, as_=app, variables={"input": {
        "tenant": tenant, "holderRef": holder_ref or holder(), "kind": kind, "acceptedAgreement": True,
        "bankAccountRef": bank}})
    payload = data["openAccount"]
    assert payload["userErrors"] == [], payload
    return payload["account"]["id"]


async def grant(api, account_id: str, provider: str, categories: list[str], *, app: str = "wuhan-app") -> dict:
    data = await api.query(GRANT, as_=app, variables={"input": {
        "accountId": account_id, "provider": provider, "categories": categories}})
    assert data["grantConsent"]["userErrors"] == [], data
    return data["grantConsent"]["consent"]


async def consenting_account(api, *, app: str = "wuhan-app", providers: dict[str, list[str]] | None = None) -> str:
    account_id = await open_account(api, app=app)
    for provider, categories in (providers or {"wuhan-tong": ["TRAVEL"], "hankou-bank": ["LIFE", "CONSUMPTION"]}).items():
        await grant(api, account_id, provider, categories, app=app)
    return account_id


def record(account_id: str, behavior: str, quantity, occurred_at: str, external_id: str | None = None) -> dict:
    return {"accountId": account_id, "behavior": behavior, "quantity": str(quantity), "occurredAt": occurred_at,
            "externalId": external_id if external_id is not None else f"ext-{uuid.uuid4().hex}"}


async def submit(api, provider: str, records: list[dict]) -> list[dict]:
    data = await api.query(RECORD, as_=provider, variables={"input": {"records": records}})
    payload = data["recordBehaviors"]
    assert payload["userErrors"] == [], payload
    return payload["results"]
