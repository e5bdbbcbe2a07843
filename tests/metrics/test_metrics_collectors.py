"""Scrape-time collectors on a fresh registry per test."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest

from metrics import create_instruments
from metrics.collectors import FillbackGauges, register_process_collectors
from metrics.fillback import FillbackStore, MemoryFillback, RedisFillback


def test_process_and_runtime_collectors_join_the_instruments() -> None:
    registry = CollectorRegistry()
    create_instruments(registry, version="1.2.3")
    register_process_collectors(registry)
    text = generate_latest(registry).decode()
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_info",
        "python_gc_objects",
    ):
        assert f"\n{name}" in text, name
    assert 'smsgw_build_info{version="1.2.3"} 1.0' in text


async def check_gauges(store: FillbackStore, now: float) -> None:
    for i in range(4):
        await store.record_sent("acme", "DE", "r1", now - 120)
        if i < 3:
            await store.record_verified("acme", "DE", "r1", now - 120)
    await store.record_sent("beta", "DE", "r1", now - 30)
    await store.record_sent("beta", "US", "r2", now - 30)
    pairs = [("DE", "r1"), ("US", "r2"), ("FR", "r1")]
    gauges = FillbackGauges(store, lambda: pairs, window_s=600, clock=lambda: now)
    registry = CollectorRegistry()
    registry.register(gauges)
    assert registry.get_sample_value("smsgw_fillback_window_sent", {"country": "DE", "route": "r1"}) is None
    await gauges.refresh()

    def sample(name: str, country: str, route: str) -> float | None:
        return registry.get_sample_value(name, {"country": country, "route": route})

    assert sample("smsgw_fillback_window_sent", "DE", "r1") == 5
    assert sample("smsgw_fillback_window_ratio", "DE", "r1") == 0.6
    assert sample("smsgw_fillback_window_ratio", "US", "r2") == 0.0
    assert sample("smsgw_fillback_window_sent", "FR", "r1") == 0
    assert sample("smsgw_fillback_window_ratio", "FR", "r1") is None  # nothing sent: no ratio, not 0
    # a late verification of an OTP sent 2 minutes ago moves the figure at the next refresh
    await store.record_verified("beta", "DE", "r1", now - 30)
    assert sample("smsgw_fillback_window_ratio", "DE", "r1") == 0.6
    await gauges.refresh()
    assert sample("smsgw_fillback_window_ratio", "DE", "r1") == 0.8


async def test_fillback_gauges_memory() -> None:
    now = time.time()
    await check_gauges(MemoryFillback(clock=lambda: now), now)


async def test_fillback_gauges_redis(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await check_gauges(RedisFillback(client), time.time())
    finally:
        await client.aclose()
