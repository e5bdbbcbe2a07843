"""Redis specifics: exactly one command per check, script reload, and an outage that must not take
the API down (local limits, logged loudly, counted)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from antifraud import (
    FraudEngine,
    FraudRequest,
    FraudSettings,
    LimitRule,
    RedisFraudBackend,
    RulesOnlyScorer,
    TenantPolicy,
)
from tests.antifraud.conftest import T0
from tests.conftest import free_port, redis_process

POLICY = TenantPolicy(allowed_countries=None, limits=(LimitRule("number", 60, 2),))
END = "antifraud-test-end"


def engine_on(client: aioredis.Redis, **kw: object) -> FraudEngine:
    backend = RedisFraudBackend(client, **kw)  # type: ignore[arg-type]
    return FraudEngine(FraudSettings(default_policy=POLICY), backend, RulesOnlyScorer(), clock=lambda: T0)


def req(e164: str, t: float, passed: bool = False) -> FraudRequest:
    return FraudRequest("t1", e164, "", "100.1.2.3", "dev-1", None, passed, t)


async def watch(url: str, run) -> list[str]:  # type: ignore[no-untyped-def]
    """Run ``run()`` while MONITOR records every command a client sends (not those the script runs)."""
    seen: list[str] = []
    mon = aioredis.Redis.from_url(url)
    async with mon.monitor() as m:

        async def collect() -> None:
            while True:
                c = await m.next_command()
                if c["client_type"] == "lua":
                    continue
                if END in c["command"]:
                    return
                seen.append(c["command"].split(" ", 1)[0].upper())

        task = asyncio.create_task(collect())
        await run()
        await asyncio.wait_for(task, 10)
    await mon.aclose()
    return seen


async def test_exactly_one_redis_command_per_check(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    engine = engine_on(client)
    await engine.start()  # SCRIPT LOAD, once
    actions: list[str] = []

    async def run() -> None:
        t = T0
        for i in range(12):  # allowed, then a sweep: challenged (each correction rides on the next call)
            t += 2
            actions.append((await engine.evaluate(req(f"+4915123000{i:03d}", t))).action)
        for _ in range(3):  # the number limit: rate limited on the third
            t += 1
            actions.append((await engine.evaluate(req("+2348021234567", t))).action)
        await engine.record_verified("t1", "+4915123000001", "DE", T0 + 2, t)
        await engine.record_delivery_failed("t1", "+4915123000002", "DE", T0 + 4, t)
        actions.append((await engine.evaluate(req("+449012345678", t))).action)  # rule: no round trip
        await client.echo(END)

    seen = await watch(redis_url, run)
    assert "challenge" in actions and "rate_limited" in actions and actions[-1] == "block"
    assert seen == ["EVALSHA"] * 17, seen
    await client.aclose()


async def test_the_script_is_reloaded_after_noscript(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    engine = engine_on(client)
    await engine.start()
    assert (await engine.evaluate(req("+4915123456789", T0))).action == "allow"
    await client.script_flush()
    assert (await engine.evaluate(req("+4915123456780", T0 + 1))).action == "allow"

    async def run() -> None:
        await engine.evaluate(req("+4915123456781", T0 + 2))
        await client.echo(END)

    assert await watch(redis_url, run) == ["EVALSHA"]
    assert engine.backend.stats.shared_errors == 0
    await client.aclose()


async def test_a_client_that_decodes_replies_is_refused(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisFraudBackend(client)
    await client.aclose()


async def test_unreachable_redis_falls_back_to_local_limits_loudly(caplog: pytest.LogCaptureFixture) -> None:
    # the client retries with back-off (redis-py's default); the backend's own call timeout bounds it
    client = aioredis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2
    )
    now = [0.0]
    engine = engine_on(client, monotonic=lambda: now[0], retry_seconds=1.0, log_every=60.0, call_timeout=0.1)
    backend = engine.backend
    assert isinstance(backend, RedisFraudBackend)
    caplog.set_level(logging.WARNING, logger="smsgw.antifraud")
    await engine.start()  # cannot load the script: counted, not raised
    actions = []
    for i in range(3):
        now[0] += 2.0  # past the retry pause: every check tries Redis again
        d = await engine.evaluate(req("+4915123456789", T0 + i))
        assert not d.shared_state
        actions.append(d.action)
    assert actions == ["allow", "allow", "rate_limited"], "the number limit still holds, locally"
    assert backend.stats.shared_errors == 4 and backend.stats.fallback_checks == 3
    assert engine.stats.local_state == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "logged loudly, but once per log_every, not per request"
    assert "LOCAL" in errors[0].getMessage()
    await client.aclose()


@pytest.fixture
def own_redis() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server this test may stop (the session's server must keep running)."""
    with redis_process() as (proc, port):
        yield proc, f"redis://127.0.0.1:{port}/0"


async def test_redis_dying_mid_traffic_keeps_answering(own_redis, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    proc, url = own_redis
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
    now = [0.0]
    engine = engine_on(client, monotonic=lambda: now[0], retry_seconds=5.0)
    await engine.start()
    d = await engine.evaluate(req("+4915123456789", T0))
    assert d.action == "allow" and d.shared_state
    proc.terminate()
    proc.wait(10)
    caplog.set_level(logging.ERROR, logger="smsgw.antifraud")
    d = await engine.evaluate(req("+4915123456700", T0 + 1))
    assert d.action == "allow" and not d.shared_state
    now[0] += 1.0  # within the retry pause: straight to local state, no connect attempt
    errors_before = engine.backend.stats.shared_errors
    d = await engine.evaluate(req("+4915123456701", T0 + 2))
    assert not d.shared_state and engine.backend.stats.shared_errors == errors_before
    assert any("Redis unreachable" in r.getMessage() for r in caplog.records)
    await client.aclose()
