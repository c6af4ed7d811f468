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


REDEEM = """mutation($input: RedeemRewardInput!) { redeemReward(input: $input) {
    redemption { id status voucherCode quantity points { amount } cancellableUntil } balance { amount }
    userErrors { code field message } } }"""
CANCEL = """mutation($input: CancelRedemptionInput!) { cancelRedemption(input: $input) {
    redemption { id status cancelledAt } balance { amount } userErrors { code field message } } }"""


async def earn(api, account_id: str, coins: int, *, provider: str = "wuhan-tong") -> list[dict]:
    """Credit `coins` Wuhan carbon coins (a multiple of 8) with bus rides, at most 10 a day, within the window."""
    assert coins % 8 == 0 and coins <= 8 * 10 * 7
    rides = coins // 8
    records = [record(account_id, "bus", 1, local_time(1 + i // 10, 6, i % 10)) for i in range(rides)]
    return await submit(api, provider, records)


async def make_reward(database, tenant: str = "wuhan", **fields) -> str:
    """A catalogue item made for a test (inside the test's transaction); returns its global id."""
    from sqlalchemy import text

    from app.db.session import TenantScope
    from app.graphql.ids import to_global_id
    from app.tenants.models import tenant_id_for

    tenant_id = tenant_id_for(tenant)
    reward_id = uuid.uuid4()
    values = {"id": reward_id, "t": tenant_id, "code": f"test-{reward_id.hex[:10]}", "kind": "REWARD",
              "cost": 10, "stock": None, "limit": None, "period": "LIFETIME", "window": 0, "bank": False,
              "min_mg": 0, "valid_from": None, "valid_to": None, "sponsor": "hankou-bank"} | fields
    async with database.transaction(TenantScope.for_tenant(tenant_id)) as session:
        await session.execute(text("""
            INSERT INTO rewards (id, tenant_id, code, kind, position, name_en, name_zh, cost_points, stock_total,
                stock_taken, per_account_limit, limit_period, valid_from, valid_to, sponsor_issuer_id,
                cancellation_window_hours, bank_linked_only, min_contribution_mg, active)
            SELECT :id, :t, :code, :kind, 1000, 'Test item', '测试', :cost, :stock, 0, :limit, :period, :valid_from,
                   :valid_to, i.id, :window, :bank, :min_mg, true
            FROM issuers i WHERE i.tenant_id = :t AND i.slug = :sponsor
        """), values)
        if values["kind"] == "DONATION":
            from app.ledger.service import ensure_donation_account

            await ensure_donation_account(session, tenant_id, values["code"])
    return to_global_id("Reward", reward_id)


async def redeem(api, account_id: str, reward_id: str, *, quantity: int = 1, key: str | None = None,
                 app: str = "wuhan-app") -> dict:
    data = await api.query(REDEEM, as_=app, variables={"input": {
        "accountId": account_id, "rewardId": reward_id, "quantity": quantity,
        "idempotencyKey": key or uuid.uuid4().hex}})
    return data["redeemReward"]


async def register_document(database, city: str, text: str):
    """A trusted document registered for `city` (inside the test's transaction); returns it."""
    from app.db.session import TenantScope
    from app.graphql.trusted import compile_document, register_documents
    from app.tenants.models import tenant_id_for

    document = compile_document(text, "test")
    async with database.transaction(TenantScope.for_tenant(tenant_id_for(city))) as session:
        await register_documents(session, [tenant_id_for(city)], [document], "test")
    return document
