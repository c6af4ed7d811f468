"""Node ids are opaque: they reveal neither the city nor the order in which objects were made."""

from __future__ import annotations

import base64
import uuid

from app.tenants.models import tenant_id_for
from tests.factories import consenting_account, local_time, make_reward, record, redeem, submit


def _raw(global_id: str) -> bytes:
    return base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4))


async def test_ids_carry_no_tenant_and_no_sequence(api, database) -> None:
    ids: list[str] = []
    for city, app, provider, bank in (("wuhan", "wuhan-app", "wuhan-tong", "hankou-bank"),
                                      ("beijing", "beijing-app", "beijing-mobility", "beijing-green-bank")):
        for _ in range(3):
            account = await consenting_account(api, app=app, providers={provider: ["TRAVEL"]})
            recorded = await submit(api, provider, [record(account, "bus", 1, local_time(1))])
            reward = await make_reward(database, city, cost=0, sponsor=bank)
            redemption = (await redeem(api, account, reward, app=app))["redemption"]["id"]
            ids += [account, recorded[0]["recordId"], reward, redemption]
    secrets = [str(tenant_id_for(city)).encode() for city in ("wuhan", "beijing")] + [b"wuhan", b"beijing"]
    for global_id in ids:
        raw = _raw(global_id)
        assert not any(secret in raw for secret in secrets), raw
        object_id = uuid.UUID(raw.decode().partition(":")[2])
        # Version 4: 122 random bits, no timestamp, no counter, nothing derived from the city
        # (only a Tenant's own id is derived from its public slug).
        assert object_id.version == 4, raw
    assert len(set(ids)) == len(ids)
