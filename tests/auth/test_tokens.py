"""Bearer-token authentication at the HTTP boundary."""

from __future__ import annotations

import time

import jwt
import pytest

QUERY = {"query": "{ tenants { slug } }"}


async def test_missing_token_is_401_with_a_clear_message(api) -> None:
    response = await api.http.post("/graphql", json=QUERY)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Authorization: Bearer" in error["message"]


def _forge(claims: dict, secret: str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


@pytest.mark.parametrize("case", ["bad-signature", "expired", "wrong-audience", "unknown-client", "garbage",
                                  "no-exp", "basic-scheme", "other-clients-secret", "too-long-lived",
                                  "string-exp", "string-iat", "boolean-iat", "huge-but-signed"])
async def test_invalid_tokens_are_refused(api, case) -> None:
    now = int(time.time())
    secret = api.registry.secrets["wuhan-app"]
    good = {"sub": "wuhan-app", "aud": "carbon-inclusive", "iat": now, "exp": now + 600}
    header = {
        "bad-signature": f"Bearer {_forge(good, 'x' * 40)}",
        "expired": f"Bearer {_forge(good | {'iat': now - 7200, 'exp': now - 3600}, secret)}",
        "wrong-audience": f"Bearer {_forge(good | {'aud': 'someone-else'}, secret)}",
        "unknown-client": f"Bearer {_forge(good | {'sub': 'nobody'}, secret)}",
        "garbage": "Bearer not.a.jwt",
        "no-exp": f"Bearer {_forge({k: v for k, v in good.items() if k != 'exp'}, secret)}",
        "basic-scheme": "Basic d3VoYW4tYXBwOnNlY3JldA==",
        # A client cannot claim to be another with its own secret.
        "other-clients-secret": f"Bearer {_forge(good | {'sub': 'regulator'}, secret)}",
        "too-long-lived": f"Bearer {_forge(good | {'exp': now + 10 * 365 * 86400}, secret)}",
        # PyJWT converts these to check them: the claims must be numbers, not just convertible.
        "string-exp": f"Bearer {_forge(good | {'exp': str(now + 600)}, secret)}",
        "string-iat": f"Bearer {_forge(good | {'iat': str(now)}, secret)}",
        "boolean-iat": f"Bearer {_forge(good | {'iat': True}, secret)}",
        # Validly signed, but megabytes: it would be decoded and cached (memory) before this limit.
        "huge-but-signed": f"Bearer {_forge(good | {'pad': 'x' * 1_000_000}, secret)}",
    }[case]
    response = await api.http.post("/graphql", json=QUERY, headers={"authorization": header})
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in response.json()


async def test_a_huge_token_is_refused_before_it_is_decoded_or_cached(api) -> None:
    now = int(time.time())
    secret = api.registry.secrets["wuhan-app"]
    token = _forge({"sub": "wuhan-app", "aud": "carbon-inclusive", "iat": now, "exp": now + 600, "pad": "x" * 5000},
                   secret)
    before = len(api.registry._verified)
    response = await api.http.post("/graphql", json=QUERY, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "longer than" in response.json()["errors"][0]["message"]
    assert len(api.registry._verified) == before


async def test_valid_token_is_accepted(api) -> None:
    token = api.registry.issue("wuhan-app", 60)
    response = await api.http.post("/graphql", json=QUERY, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["data"] == {"tenants": [{"slug": "wuhan"}]}


async def test_graphiql_page_loads_without_a_token(api) -> None:
    response = await api.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
    # Never framed by another site (a developer's pasted token would send its requests).
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_get_query_without_token_is_401(api) -> None:
    response = await api.http.get("/graphql", params={"query": "{ tenants { slug } }"},
                                  headers={"accept": "application/json"})
    assert response.status_code == 401


def test_issue_refuses_unknown_clients(registry) -> None:
    with pytest.raises(KeyError, match="unknown client"):
        registry.issue("nobody")


def test_token_bucket_allows_bursts_then_asks_to_wait() -> None:
    from app.auth.ratelimit import RateLimiter, retry_after_header

    now = [100.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0, 0, 0]
    wait = limiter.acquire("a")
    assert wait == 0.5 and retry_after_header(wait) == "1"
    assert limiter.acquire("b") == 0, "clients have their own buckets"
    now[0] += 0.5
    assert limiter.acquire("a") == 0


async def test_over_the_limit_is_429_with_retry_after(settings, database, registry) -> None:
    from httpx import ASGITransport, AsyncClient

    from app.main import create_app

    limited = settings.model_copy(update={"rate_limit_per_second": 1, "rate_limit_burst": 2})
    app = create_app(limited, database=database, registry=registry)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as http:
        headers = {"authorization": f"Bearer {registry.issue('wuhan-app', 60)}"}
        statuses = [(await http.post("/graphql", json=QUERY, headers=headers)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        refused = await http.post("/graphql", json=QUERY, headers=headers)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        other = {"authorization": f"Bearer {registry.issue('beijing-app', 60)}"}
        assert (await http.post("/graphql", json=QUERY, headers=other)).status_code == 200
