"""Per-client rate limit: a token bucket per client, per server process.

Each client may make `rate` requests a second on average with bursts of `burst`; beyond that the
request is answered HTTP 429 with `Retry-After` (whole seconds until a token is back) before any work is
done. Buckets live in the process: with N server processes behind a load balancer the effective limit
is up to N times higher; configure per process accordingly (a shared limiter is future work).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    rate: float
    burst: float
    clock: object = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def acquire(self, client: str) -> float:
        """0 when the request may proceed (a token is taken), else the seconds to wait."""
        now = self.clock()  # type: ignore[operator]
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(tokens=self.burst, updated=now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate


def retry_after_header(wait_seconds: float) -> str:
    return str(max(1, math.ceil(wait_seconds)))
