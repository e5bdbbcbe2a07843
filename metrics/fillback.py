"""Rolling fill-back (OTPs verified / OTPs sent) per tenant, country and route, in shared state.

Prometheus counters tell ops how fill-back moves; routing and anti-fraud need the figure *inside* the
gateway, agreed on by every process, and attributed the way a person reads it: a verification counts
toward the minute its OTP was **sent**, however late it arrives. So both events carry ``sent_at``.

Layout (the same in both backends)::

    bucket  = the minute the OTP was sent           int(sent_at // 60)
    field   = kind | tenant | country | route       kind "s" (sent) or "v" (verified)

Each event adds 1 to the 8 fields that match it with any dimension replaced by ``*``, so a query over
any subset of dimensions (``None`` = all) reads one field per bucket instead of scanning them.
A window of ``window_s`` seconds covers the last ``ceil(window_s / 60)`` buckets, the current one
included. Buckets live ``retention_s`` after their minute ends; an event for a bucket older than that
is dropped (it could never be read again).

Redis: one hash per bucket, ``smsgw:{fillback}:<minute>``; one pipelined round trip per event
(8 × HINCRBY + EXPIREAT) and one script call per query, whatever the window.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from typing import NamedTuple, Protocol

import redis.asyncio as aioredis

BUCKET_S = 60
DEFAULT_RETENTION_S = 2 * 86_400
KEY_PREFIX = "smsgw:{fillback}:"  # one hash tag: a window's buckets, summed by one script, share a slot
WILDCARD = "*"
SEPARATOR = "|"


class FillbackKey(NamedTuple):
    """Which OTPs to count; ``None`` in a dimension means every value of it."""

    tenant: str | None = None
    country: str | None = None
    route: str | None = None


@dataclass(frozen=True)
class BetaPrior:
    """What we believe about a fill-back before seeing any OTP: Beta(alpha, beta).

    ``from_mean(0.8, 20)`` is worth 20 OTPs of which 16 were verified: a route with 2 sent / 0 verified
    then reads (0 + 16) / (2 + 20) = 0.73, not 0.
    """

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError("a Beta prior needs alpha > 0 and beta > 0")

    @classmethod
    def from_mean(cls, mean: float, strength: float) -> BetaPrior:
        if not 0 < mean < 1 or strength <= 0:
            raise ValueError("prior mean must be in (0, 1) and strength > 0")
        return cls(alpha=mean * strength, beta=(1 - mean) * strength)


UNINFORMED = BetaPrior(1.0, 1.0)


class FillbackRate(NamedTuple):
    """``sent`` and ``verified`` in the window; ``rate`` is verified / sent, or None when nothing was sent."""

    sent: int
    verified: int
    rate: float | None

    def smoothed(self, prior: BetaPrior = UNINFORMED) -> float:
        """Posterior mean under ``prior``: defined with no data, and steady on small counts."""
        return (self.verified + prior.alpha) / (self.sent + prior.alpha + prior.beta)


def make_rate(sent: int, verified: int) -> FillbackRate:
    return FillbackRate(sent, verified, verified / sent if sent else None)


def cost_per_verified(price: float, rate: FillbackRate, prior: BetaPrior) -> float:
    """Expected spend for one verified OTP on a route: price / smoothed fill-back."""
    return price / rate.smoothed(prior)


class FillbackStore(Protocol):
    async def record_sent(self, tenant: str, country: str, route: str, sent_at: float) -> None: ...

    async def record_verified(self, tenant: str, country: str, route: str, sent_at: float) -> None: ...

    async def rate(
        self, tenant: str | None, country: str | None, route: str | None, window_s: int, now: float
    ) -> FillbackRate: ...

    async def rates(self, keys: Sequence[FillbackKey], window_s: int, now: float) -> list[FillbackRate]: ...


# --- pure helpers shared by both backends -------------------------------------------------------------


def bucket_of(ts: float) -> int:
    return int(ts // BUCKET_S)


def window_buckets(window_s: int, now: float, retention_s: int) -> range:
    if not 0 < window_s <= retention_s:
        raise ValueError(f"window_s must be in (0, {retention_s}]")
    last = bucket_of(now)
    return range(last - math.ceil(window_s / BUCKET_S) + 1, last + 1)


def bucket_expires_at(bucket: int, retention_s: int) -> int:
    """Unix time after which nobody can ask for this bucket any more."""
    return (bucket + 1) * BUCKET_S + retention_s


def _check_label(name: str, value: str) -> str:
    if not value or value == WILDCARD or SEPARATOR in value:
        raise ValueError(f"{name} must be non-empty, not {WILDCARD!r} and without {SEPARATOR!r}: {value!r}")
    return value


def event_fields(kind: str, tenant: str, country: str, route: str) -> list[str]:
    """The 8 fields one event adds to: each dimension either itself or the wildcard."""
    dims = (_check_label("tenant", tenant), _check_label("country", country), _check_label("route", route))
    return [SEPARATOR.join((kind, *combo)) for combo in product(*((d, WILDCARD) for d in dims))]


def query_fields(key: FillbackKey) -> tuple[str, str]:
    dims = [WILDCARD if v is None else _check_label(n, v) for n, v in zip(key._fields, key, strict=True)]
    return SEPARATOR.join(("s", *dims)), SEPARATOR.join(("v", *dims))


# --- in-process backend ------------------------------------------------------------------------------


class MemoryFillback:
    """One process's view: for the embedded mode (no ``REDIS_URL``) and for tests."""

    def __init__(
        self, clock: Callable[[], float] = time.time, retention_s: int = DEFAULT_RETENTION_S
    ) -> None:
        self._clock = clock
        self.retention_s = retention_s
        self._buckets: dict[int, Counter[str]] = {}

    def _add(self, kind: str, tenant: str, country: str, route: str, sent_at: float) -> None:
        fields = event_fields(kind, tenant, country, route)
        now = self._clock()
        oldest = bucket_of(now - self.retention_s)
        bucket = bucket_of(sent_at)
        if bucket < oldest:
            return
        for old in [b for b in self._buckets if b < oldest]:
            del self._buckets[old]
        self._buckets.setdefault(bucket, Counter()).update(fields)

    async def record_sent(self, tenant: str, country: str, route: str, sent_at: float) -> None:
        self._add("s", tenant, country, route, sent_at)

    async def record_verified(self, tenant: str, country: str, route: str, sent_at: float) -> None:
        self._add("v", tenant, country, route, sent_at)

    async def rate(
        self, tenant: str | None, country: str | None, route: str | None, window_s: int, now: float
    ) -> FillbackRate:
        return (await self.rates([FillbackKey(tenant, country, route)], window_s, now))[0]

    async def rates(self, keys: Sequence[FillbackKey], window_s: int, now: float) -> list[FillbackRate]:
        buckets = [self._buckets.get(b) for b in window_buckets(window_s, now, self.retention_s)]
        present = [b for b in buckets if b is not None]
        out = []
        for key in keys:
            s_field, v_field = query_fields(key)
            out.append(make_rate(sum(b[s_field] for b in present), sum(b[v_field] for b in present)))
        return out

    def bucket_count(self) -> int:
        return len(self._buckets)


# --- shared backend ----------------------------------------------------------------------------------

# KEYS: bucket hashes; ARGV: fields. Returns, per field, its sum over the buckets (missing = 0).
_SUM_FIELDS = """
local sums = {}
for j = 1, #ARGV do sums[j] = 0 end
for i = 1, #KEYS do
  local vals = redis.call('HMGET', KEYS[i], unpack(ARGV))
  for j = 1, #ARGV do
    if vals[j] then sums[j] = sums[j] + tonumber(vals[j]) end
  end
end
return sums
"""


def bucket_key(bucket: int, prefix: str = KEY_PREFIX) -> str:
    return f"{prefix}{bucket}"


class RedisFillback:
    """Fill-back every gateway process agrees on. Buckets expire on their own (EXPIREAT)."""

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        retention_s: int = DEFAULT_RETENTION_S,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self._redis = client
        self.retention_s = retention_s
        self._prefix = prefix
        self._sum = client.register_script(_SUM_FIELDS)

    async def _add(self, kind: str, tenant: str, country: str, route: str, sent_at: float) -> None:
        bucket = bucket_of(sent_at)
        key = bucket_key(bucket, self._prefix)
        pipe = self._redis.pipeline(transaction=False)
        for field in event_fields(kind, tenant, country, route):
            pipe.hincrby(key, field, 1)
        # An absolute deadline: idempotent, and a bucket already past it is deleted at once.
        pipe.expireat(key, bucket_expires_at(bucket, self.retention_s))
        await pipe.execute()

    async def record_sent(self, tenant: str, country: str, route: str, sent_at: float) -> None:
        await self._add("s", tenant, country, route, sent_at)

    async def record_verified(self, tenant: str, country: str, route: str, sent_at: float) -> None:
        await self._add("v", tenant, country, route, sent_at)

    async def rate(
        self, tenant: str | None, country: str | None, route: str | None, window_s: int, now: float
    ) -> FillbackRate:
        return (await self.rates([FillbackKey(tenant, country, route)], window_s, now))[0]

    async def rates(self, keys: Sequence[FillbackKey], window_s: int, now: float) -> list[FillbackRate]:
        if not keys:
            return []
        buckets = window_buckets(window_s, now, self.retention_s)
        fields = [f for key in keys for f in query_fields(key)]
        sums = await self._sum(keys=[bucket_key(b, self._prefix) for b in buckets], args=fields)
        counts = [int(v) for v in sums]
        return [make_rate(counts[2 * i], counts[2 * i + 1]) for i in range(len(keys))]


def keys_for(dimension: str, values: Iterable[str], **fixed: str | None) -> list[FillbackKey]:
    """``keys_for("route", ["a", "b"], country="DE")``: one key per value of one dimension."""
    return [FillbackKey(**{**fixed, dimension: v}) for v in values]
