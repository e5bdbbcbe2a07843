"""Fill-back store: the same tests on the in-process and the Redis backend (a real redis-server)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from metrics.fillback import (
    KEY_PREFIX,
    BetaPrior,
    FillbackKey,
    FillbackRate,
    FillbackStore,
    MemoryFillback,
    RedisFillback,
    bucket_expires_at,
    bucket_of,
    cost_per_verified,
    keys_for,
)
from tests.conftest import shared_redis

RETENTION = 3 * 3600


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Here also on a real 3-node Redis Cluster: a window's buckets share a hash tag."""
    return str(request.param)


@pytest.fixture
async def clients(backend_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[list[aioredis.Redis]]:
    if backend_kind == "memory":
        yield []
        return
    made = [shared_redis(request, backend_kind), shared_redis(request, backend_kind)]
    yield made
    for c in made:
        await c.aclose()


@pytest.fixture
def now() -> float:
    """Wall time, 10 s into the minute: Redis expires buckets by its own clock, so events must be recent."""
    return (time.time() // 60) * 60 + 10.0


@pytest.fixture
def clock(now: float) -> Clock:
    return Clock(now)


@pytest.fixture
def make_store(clients: list[aioredis.Redis], clock: Clock) -> Callable[[int], FillbackStore]:
    """Stores that share state the way two gateway processes would (memory: one process, one store)."""
    memory = MemoryFillback(clock=clock, retention_s=RETENTION)

    def make(i: int = 0) -> FillbackStore:
        if not clients:
            return memory
        return RedisFillback(clients[i], retention_s=RETENTION)

    return make


@pytest.fixture
def store(make_store: Callable[[int], FillbackStore]) -> FillbackStore:
    return make_store(0)


TRAFFIC = [  # tenant, country, route, sent, verified: 10 sent / 4 verified
    ("acme", "DE", "sim-a", 4, 2),
    ("acme", "US", "sim-b", 3, 1),
    ("beta", "DE", "sim-b", 2, 1),
    ("beta", "US", "sim-a", 1, 0),
]


async def send_traffic(store: FillbackStore, at: float) -> None:
    for tenant, country, route, sent, verified in TRAFFIC:
        for i in range(sent):
            await store.record_sent(tenant, country, route, at)
            if i < verified:
                await store.record_verified(tenant, country, route, at)


async def test_counts_by_every_subset_of_dimensions(store: FillbackStore, now: float) -> None:
    await send_traffic(store, now - 30)
    assert await store.rate(None, None, None, 300, now) == FillbackRate(10, 4, 0.4)
    assert await store.rate(None, "DE", None, 300, now) == FillbackRate(6, 3, 0.5)
    assert await store.rate(None, "US", None, 300, now) == FillbackRate(4, 1, 0.25)
    assert await store.rate(None, None, "sim-a", 300, now) == FillbackRate(5, 2, 0.4)
    assert await store.rate("acme", None, None, 300, now) == FillbackRate(7, 3, 3 / 7)
    assert await store.rate("beta", "DE", None, 300, now) == FillbackRate(2, 1, 0.5)
    assert await store.rate("acme", "US", "sim-b", 300, now) == FillbackRate(3, 1, 1 / 3)
    assert await store.rate("beta", "US", "sim-b", 300, now) == FillbackRate(0, 0, None)
    routes = await store.rates(keys_for("route", ["sim-a", "sim-b", "sim-c"], country="DE"), 300, now)
    assert routes == [FillbackRate(4, 2, 0.5), FillbackRate(2, 1, 0.5), FillbackRate(0, 0, None)]
    assert await store.rates([], 300, now) == []


async def test_late_verification_counts_toward_the_minute_it_was_sent(
    store: FillbackStore, now: float
) -> None:
    sent_at = now - 40 * 60
    await store.record_sent("acme", "DE", "sim-a", sent_at)
    await store.record_sent("acme", "DE", "sim-a", now - 5)
    # verified now, 40 minutes after it was sent
    await store.record_verified("acme", "DE", "sim-a", sent_at)
    assert await store.rate("acme", "DE", "sim-a", 600, now) == FillbackRate(1, 0, 0.0)
    assert await store.rate("acme", "DE", "sim-a", 3600, now) == FillbackRate(2, 1, 0.5)


async def test_window_is_the_last_whole_minutes_including_the_current_one(
    store: FillbackStore, now: float
) -> None:
    minute = bucket_of(now)
    await store.record_sent("acme", "DE", "sim-a", (minute - 4) * 60)  # 4 minutes back: inside 5 min
    await store.record_sent("acme", "DE", "sim-a", (minute - 5) * 60 + 59.9)  # just outside
    assert (await store.rate(None, None, None, 300, now)).sent == 1
    assert (await store.rate(None, None, None, 301, now)).sent == 2
    assert (await store.rate(None, None, None, 240, now)).sent == 0
    with pytest.raises(ValueError, match="window_s"):
        await store.rate(None, None, None, RETENTION + 1, now)
    with pytest.raises(ValueError, match="window_s"):
        await store.rate(None, None, None, 0, now)


async def test_processes_sharing_the_state_agree(
    make_store: Callable[[int], FillbackStore], now: float
) -> None:
    first, second = make_store(0), make_store(1)
    await first.record_sent("acme", "DE", "sim-a", now - 5)
    await second.record_sent("acme", "DE", "sim-a", now - 1)
    await second.record_verified("acme", "DE", "sim-a", now - 5)
    expected = FillbackRate(2, 1, 0.5)
    assert await first.rate(None, "DE", None, 60, now) == expected
    assert await second.rate(None, "DE", None, 60, now) == expected


async def test_events_older_than_retention_are_dropped(
    store: FillbackStore, clients: list[aioredis.Redis], now: float
) -> None:
    await store.record_sent("acme", "DE", "sim-a", now - RETENTION - 120)
    await store.record_verified("acme", "DE", "sim-a", now - RETENTION - 120)
    assert await store.rate(None, None, None, RETENTION, now) == FillbackRate(0, 0, None)
    if clients:
        assert await clients[0].keys("*") == []
    else:
        assert isinstance(store, MemoryFillback)
        assert store.bucket_count() == 0


async def test_memory_backend_prunes_buckets_past_retention(now: float) -> None:
    clock = Clock(now)
    store = MemoryFillback(clock=clock, retention_s=600)
    await store.record_sent("acme", "DE", "sim-a", now)
    clock.t = now + 900
    await store.record_sent("acme", "DE", "sim-a", clock.t)
    assert store.bucket_count() == 1
    assert await store.rate(None, None, None, 600, clock.t) == FillbackRate(1, 0, 0.0)


async def test_redis_keys_and_their_deadlines(redis_url: str, now: float) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = RedisFillback(client, retention_s=RETENTION)
        await store.record_sent("acme", "DE", "sim-a", now - 61)
        await store.record_sent("beta", "US", "sim-b", now)
        await store.record_verified("beta", "US", "sim-b", now)
        b_prev, b_now = bucket_of(now - 61), bucket_of(now)
        assert sorted(await client.keys("*")) == sorted([f"{KEY_PREFIX}{b_prev}", f"{KEY_PREFIX}{b_now}"])
        now_hash = await client.hgetall(f"{KEY_PREFIX}{b_now}")
        assert len(now_hash) == 16  # 8 wildcard combinations, sent and verified
        assert now_hash["s|beta|US|sim-b"] == now_hash["v|*|*|*"] == now_hash["s|*|US|*"] == "1"
        for b in (b_prev, b_now):
            assert await client.expiretime(f"{KEY_PREFIX}{b}") == bucket_expires_at(b, RETENTION)
    finally:
        await client.aclose()


async def test_both_backends_match_a_naive_count(store: FillbackStore, now: float) -> None:
    rng = random.Random(7)
    events = []
    for _ in range(300):
        sent_at = now - rng.uniform(0, 3 * 3600 - 180)  # margin: Redis drops buckets past retention
        labels = (rng.choice("ab"), rng.choice(["DE", "US", "NG"]), rng.choice(["r1", "r2"]))
        events.append((*labels, sent_at, rng.random() < 0.6))
        await store.record_sent(*labels, sent_at)
        if events[-1][4]:
            await store.record_verified(*labels, sent_at)
    for window in (60, 900, 3600, 3 * 3600):
        first_minute = bucket_of(now) - window // 60 + 1
        for key in [
            FillbackKey(),
            FillbackKey("a"),
            FillbackKey(None, "NG", "r2"),
            FillbackKey("b", "DE", "r1"),
        ]:
            hits = [
                e
                for e in events
                if bucket_of(e[3]) >= first_minute
                and all(want is None or want == got for want, got in zip(key, e[:3], strict=True))
            ]
            sent, verified = len(hits), sum(1 for e in hits if e[4])
            got = (await store.rates([key], window, now))[0]
            assert (got.sent, got.verified) == (sent, verified), (window, key)


async def test_labels_that_would_collide_with_the_layout_are_refused(
    store: FillbackStore, now: float
) -> None:
    for bad in ("", "*", "a|b"):
        with pytest.raises(ValueError):
            await store.record_sent(bad, "DE", "sim-a", now)
        with pytest.raises(ValueError):
            await store.rate(None, bad, None, 60, now)


def test_smoothing_with_a_beta_prior() -> None:
    prior = BetaPrior.from_mean(0.8, 20)
    assert (prior.alpha, prior.beta) == pytest.approx((16, 4))
    assert FillbackRate(0, 0, None).smoothed(prior) == pytest.approx(0.8)
    assert FillbackRate(2, 0, 0.0).smoothed(prior) == pytest.approx(16 / 22)
    assert FillbackRate(1000, 100, 0.1).smoothed(prior) == pytest.approx(116 / 1020)
    assert FillbackRate(0, 0, None).smoothed() == 0.5
    assert cost_per_verified(0.05, FillbackRate(80, 40, 0.5), prior) == pytest.approx(0.05 / (56 / 100))
    for mean, strength in ((0, 10), (1, 10), (0.5, 0)):
        with pytest.raises(ValueError):
            BetaPrior.from_mean(mean, strength)
    with pytest.raises(ValueError):
        BetaPrior(0, 1)
