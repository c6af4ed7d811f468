"""Accounts and consents through the API, as a city app uses them."""

from __future__ import annotations

from sqlalchemy import text

from app.db.session import TenantScope
from app.tenants.models import tenant_id_for
from tests.factories import GRANT, OPEN, consenting_account, grant, holder, local_time, open_account, record, submit

ACCOUNT = """query($id: ID!) { account(id: $id) { id kind status bankAccountMask tenant { slug }
    contribution { grams } balance { amount unit { name } }
    activity(first: 10) { nodes { reductionGrams } }
    consents { provider { slug } categories live grantedAt revokedAt } } }"""
LINK = """mutation($input: LinkBankAccountInput!) { linkBankAccount(input: $input) {
    account { id kind bankAccountMask } userErrors { code field message } } }"""
REVOKE = """mutation($input: RevokeConsentInput!) { revokeConsent(input: $input) {
    consent { live revokedAt } userErrors { code field message } } }"""


def _open_input(**overrides) -> dict:
    return {"tenant": "wuhan", "holderRef": holder(), "kind": "GUEST", "acceptedAgreement": True} | overrides


async def _open(api, as_: str = "wuhan-app", **overrides) -> dict:
    return (await api.query(OPEN, as_=as_, variables={"input": _open_input(**overrides)}))["openAccount"]


async def test_a_tourist_opens_a_guest_account_and_it_reads_back(api) -> None:
    payload = await _open(api)
    assert payload["userErrors"] == [] and payload["created"] is True
    account = (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": payload["account"]["id"]}))["account"]
    assert account["kind"] == "GUEST" and account["status"] == "ACTIVE" and account["bankAccountMask"] is None
    assert account["tenant"] == {"slug": "wuhan"}
    assert account["contribution"] == {"grams": "0"}
    assert account["balance"] == {"amount": "0", "unit": {"name": "carbon coins"}}


async def test_opening_again_returns_the_same_account(api) -> None:
    ref = holder()
    first = await _open(api, holderRef=ref)
    again = await _open(api, holderRef=ref)
    assert again["account"]["id"] == first["account"]["id"]
    assert again["created"] is False and again["account"]["kind"] == "GUEST" and again["userErrors"] == []


async def test_opening_again_differently_is_refused_not_dropped(api) -> None:
    """The same holder again with another kind or bank account: the difference would have been silently
    dropped (the GUEST account came back, the bank number ignored); it is a userError instead."""
    guest = holder()
    await _open(api, holderRef=guest)
    linked = await _open(api, holderRef=guest, kind="BANK_LINKED", bankAccountRef="6222020200112233")
    assert linked["account"] is None
    assert [(e["code"], e["field"]) for e in linked["userErrors"]] == [("ACCOUNT_EXISTS", ["input", "kind"])]
    assert "linkBankAccount" in linked["userErrors"][0]["message"]

    banked = holder()
    first = await _open(api, holderRef=banked, kind="BANK_LINKED", bankAccountRef="6222020200112233")
    other = await _open(api, holderRef=banked, kind="BANK_LINKED", bankAccountRef="6222020200119999")
    assert [(e["code"], e["field"]) for e in other["userErrors"]] == [("ACCOUNT_EXISTS", ["input", "bankAccountRef"])]
    same = await _open(api, holderRef=banked, kind="BANK_LINKED", bankAccountRef="6222 0202 0011 2233")
    assert same["userErrors"] == [] and same["account"]["id"] == first["account"]["id"] and not same["created"]


async def test_the_same_holder_in_two_cities_has_two_accounts(api) -> None:
    ref = holder()
    wuhan = await _open(api, holderRef=ref)
    beijing = await _open(api, as_="beijing-app", tenant="beijing", holderRef=ref)
    assert wuhan["account"]["id"] != beijing["account"]["id"]


async def test_holder_and_bank_references_are_never_stored_in_clear(api, database) -> None:
    ref, bank = holder(), "6222 0202 0011 2233"
    payload = await _open(api, holderRef=ref, kind="BANK_LINKED", bankAccountRef=bank)
    assert payload["account"]["kind"] == "BANK_LINKED"
    async with database.transaction(TenantScope.for_tenant(tenant_id_for("wuhan"))) as session:
        dump = (await session.execute(text(
            "SELECT string_agg(row_to_json(a)::text, ' ') FROM accounts a"))).scalar()
        events = (await session.execute(text(
            "SELECT string_agg(row_to_json(e)::text, ' ') FROM account_events e"))).scalar()
    for secret in (ref, "62220202", "6222020200112233"):
        assert secret not in dump and secret not in (events or "")
    account = (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": payload["account"]["id"]}))["account"]
    assert account["bankAccountMask"] == "•••• 2233"


async def test_open_account_user_errors(api) -> None:
    cases = [
        ({"acceptedAgreement": False}, "AGREEMENT_REQUIRED", ["input", "acceptedAgreement"]),
        ({"kind": "BANK_LINKED"}, "BANK_ACCOUNT_REQUIRED", ["input", "bankAccountRef"]),
        ({"kind": "BANK_LINKED", "bankAccountRef": "12"}, "INVALID_BANK_ACCOUNT", ["input", "bankAccountRef"]),
        ({"bankAccountRef": "6222020200112233"}, "BANK_ACCOUNT_NOT_ALLOWED", ["input", "bankAccountRef"]),
        ({"holderRef": "   "}, "INVALID_HOLDER_REF", ["input", "holderRef"]),
    ]
    for overrides, code, field in cases:
        payload = await _open(api, **overrides)
        assert payload["account"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)], overrides


async def test_a_city_app_opens_accounts_only_in_its_own_city(api) -> None:
    errors = await api.errors(OPEN, as_="wuhan-app", variables={"input": _open_input(tenant="beijing")})
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    for client in ("wuhan-tong", "regulator"):
        errors = await api.errors(OPEN, as_=client, variables={"input": _open_input()})
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_another_citys_account_is_null_and_partners_cannot_read_accounts(api) -> None:
    account_id = await open_account(api)
    assert (await api.query(ACCOUNT, as_="beijing-app", variables={"id": account_id}))["account"] is None
    assert (await api.query(ACCOUNT, as_="wuhan-admin", variables={"id": account_id}))["account"]["id"] == account_id
    for client in ("wuhan-tong", "regulator"):
        errors = await api.errors(ACCOUNT, as_=client, variables={"id": account_id})
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    errors = await api.errors(ACCOUNT, as_="wuhan-app", variables={"id": "garbage"})
    assert [(e["extensions"]["code"], e["extensions"]["argument"]) for e in errors] == [("BAD_USER_INPUT", "id")]


async def test_linking_a_bank_account_keeps_history(api) -> None:
    account_id = await consenting_account(api)
    await submit(api, "wuhan-tong", [record(account_id, "bus", 1, local_time(1))])
    payload = (await api.query(LINK, as_="wuhan-app", variables={"input": {
        "accountId": account_id, "bankAccountRef": "6222020200115566"}}))["linkBankAccount"]
    assert payload["userErrors"] == []
    assert payload["account"] == {"id": account_id, "kind": "BANK_LINKED", "bankAccountMask": "•••• 5566"}
    account = (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": account_id}))["account"]
    assert account["contribution"] == {"grams": "80"} and len(account["activity"]["nodes"]) == 1
    same = (await api.query(LINK, as_="wuhan-app", variables={"input": {
        "accountId": account_id, "bankAccountRef": "6222020200115566"}}))["linkBankAccount"]
    assert same["userErrors"] == []
    other = (await api.query(LINK, as_="wuhan-app", variables={"input": {
        "accountId": account_id, "bankAccountRef": "6222020200119999"}}))["linkBankAccount"]
    assert [e["code"] for e in other["userErrors"]] == ["ALREADY_LINKED"]


async def test_freeze_unfreeze_close(api) -> None:
    account_id = await open_account(api)
    status = 'mutation($id: ID!) {{ {0}(input: {{accountId: $id, reason: "test"}}) {{ account {{ status }} userErrors {{ code }} }} }}'
    for mutation, expected in (("freezeAccount", "FROZEN"), ("unfreezeAccount", "ACTIVE"), ("closeAccount", "CLOSED"),
                               ("closeAccount", "CLOSED")):
        payload = (await api.query(status.format(mutation), as_="wuhan-app", variables={"id": account_id}))[mutation]
        assert payload == {"account": {"status": expected}, "userErrors": []}
    reopened = (await api.query(status.format("unfreezeAccount"), as_="wuhan-admin",
                                variables={"id": account_id}))["unfreezeAccount"]
    assert reopened["userErrors"] == [{"code": "ACCOUNT_CLOSED"}]
    other_city = (await api.query(status.format("freezeAccount"), as_="beijing-app",
                                  variables={"id": account_id}))["freezeAccount"]
    assert other_city["userErrors"] == [{"code": "ACCOUNT_NOT_FOUND"}]


async def test_consent_history_and_errors(api) -> None:
    account_id = await open_account(api)
    await grant(api, account_id, "wuhan-tong", ["TRAVEL"])
    same = await grant(api, account_id, "wuhan-tong", ["TRAVEL", "TRAVEL"])
    wider = await grant(api, account_id, "wuhan-tong", ["TRAVEL", "LIFE"])
    assert same["live"] and wider["categories"] == ["TRAVEL", "LIFE"]
    consents = (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": account_id}))["account"]["consents"]
    assert [(c["categories"], c["live"]) for c in consents] == [(["TRAVEL", "LIFE"], True), (["TRAVEL"], False)]

    def errors_of(payload):
        return [(e["code"], e["field"]) for e in payload["userErrors"]]

    bad_provider = (await api.query(GRANT, as_="wuhan-app", variables={"input": {
        "accountId": account_id, "provider": "anshun-bank", "categories": ["TRAVEL"]}}))["grantConsent"]
    assert errors_of(bad_provider) == [("PROVIDER_NOT_FOUND", ["input", "provider"])]
    empty = (await api.query(GRANT, as_="wuhan-app", variables={"input": {
        "accountId": account_id, "provider": "wuhan-tong", "categories": []}}))["grantConsent"]
    assert errors_of(empty) == [("INVALID_CATEGORIES", ["input", "categories"])]
    missing = (await api.query(REVOKE, as_="wuhan-app", variables={"input": {
        "accountId": account_id, "provider": "hankou-bank"}}))["revokeConsent"]
    assert errors_of(missing) == [("CONSENT_NOT_FOUND", ["input", "provider"])]
    revoked = (await api.query(REVOKE, as_="wuhan-app", variables={"input": {
        "accountId": account_id, "provider": "wuhan-tong"}}))["revokeConsent"]
    assert revoked["userErrors"] == [] and revoked["consent"]["live"] is False


async def test_a_mutation_rolled_back_by_an_error_reports_nothing_as_saved(api) -> None:
    ref = holder()
    # The account is opened, then reading it back fails on a bad argument: the whole mutation is undone.
    document = """mutation($input: OpenAccountInput!) {
        openAccount(input: $input) { account { id activity(first: 1000) { nodes { points } } } userErrors { code } } }"""
    body = (await api.post(document, as_="wuhan-app", variables={"input": _open_input(holderRef=ref)})).json()
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT", "ROLLED_BACK"]
    again = await _open(api, holderRef=ref)
    assert again["created"] is True, "the first call's account must not have been committed"


async def test_consent_history_stays_in_order_when_requests_take_the_lock_out_of_order(api, database) -> None:
    """`now` is when a request began: one that began earlier may take the account's lock later. Nothing
    is then revoked before it was granted, and the live consent is still the newest."""
    from datetime import UTC, datetime, timedelta

    from app.accounts import service
    from app.db.session import TenantScope
    from app.graphql.ids import from_global_id
    from app.tenants.models import tenant_id_for

    account = await open_account(api)
    wuhan, account_id, later = tenant_id_for("wuhan"), from_global_id(account)[1], datetime.now(UTC)
    async with database.transaction(TenantScope.for_tenant(wuhan)) as session:
        await service.grant_consent(session, wuhan, account_id, "wuhan-tong", ["TRAVEL"], "wuhan-app", later)
        await service.grant_consent(session, wuhan, account_id, "wuhan-tong", ["TRAVEL", "LIFE"], "wuhan-app",
                                    later - timedelta(seconds=1))
        await service.revoke_consent(session, wuhan, account_id, "wuhan-tong", "wuhan-app", later - timedelta(seconds=2))
        # A grant after the revocation (no live consent now), begun before all of them.
        await service.grant_consent(session, wuhan, account_id, "wuhan-tong", ["TRAVEL"], "wuhan-app",
                                    later - timedelta(seconds=3))
    consents = (await api.query(ACCOUNT, as_="wuhan-app", variables={"id": account}))["account"]["consents"]
    assert [c["categories"] for c in consents] == [["TRAVEL"], ["TRAVEL", "LIFE"], ["TRAVEL"]]  # newest first
    granted = [datetime.fromisoformat(c["grantedAt"]) for c in consents]
    revoked = [datetime.fromisoformat(c["revokedAt"]) if c["revokedAt"] else None for c in consents]
    assert revoked[0] is None and granted[0] >= revoked[1] >= granted[1] >= revoked[2] >= granted[2]
    assert granted[0] > granted[1] > granted[2]  # strictly: the newest is first, never tied
