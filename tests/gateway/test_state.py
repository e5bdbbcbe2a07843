"""The hot shared state: the same tests on the in-memory and the Redis backend."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from gateway.config import load
from gateway.context import Context
from gateway.state import (
    FallbackState,
    MemoryState,
    RedisState,
    StateBackend,
    StateUnavailable,
    connect_redis,
    redis_client,
)
from gateway.state.base import cooldown_key, number_window_key
from metrics.fillback import RedisFillback
from metrics.instruments import create_instruments
from tests.conftest import free_port, redis_process, shared_redis
from tests.gateway.harness import ManualClock


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Here also on a real 3-node Redis Cluster: one request's keys share a hash tag."""
    return str(request.param)


@pytest.fixture
async def state(request: pytest.FixtureRequest, backend_kind: str) -> AsyncIterator[StateBackend]:
    if backend_kind == "memory":
        yield MemoryState(ManualClock(1000.0))
        return
    backend = RedisState(shared_redis(request, backend_kind))
    yield backend
    await backend.close()


async def test_cooldown_then_allowed(state: StateBackend) -> None:
    t = 1000.0
    first = await state.send_gate("t1", "ab", cooldown=30, hourly_limit=10, now=t, member="a")
    assert first.allowed
    again = await state.send_gate("t1", "ab", cooldown=30, hourly_limit=10, now=t + 10, member="b")
    assert (
        not again.allowed and again.reason == "cooldown" and again.retry_after == pytest.approx(20, abs=0.01)
    )
    later = await state.send_gate("t1", "ab", cooldown=30, hourly_limit=10, now=t + 30.5, member="c")
    assert later.allowed


async def test_hourly_window_slides(state: StateBackend) -> None:
    t = 1000.0
    for i in range(3):
        assert (
            await state.send_gate("t1", "n", cooldown=0, hourly_limit=3, now=t + i, member=f"m{i}")
        ).allowed
    full = await state.send_gate("t1", "n", cooldown=0, hourly_limit=3, now=t + 100, member="x")
    assert not full.allowed and full.reason == "number_hourly"
    assert full.retry_after == pytest.approx(3600 - 100, abs=0.01)  # when the oldest leaves the window
    assert (await state.send_gate("t1", "n", cooldown=0, hourly_limit=3, now=t + 3600.5, member="y")).allowed


async def test_forget_erases_one_tenants_gate_for_a_number(state: StateBackend) -> None:
    t = 1000.0
    for tenant in ("t1", "t2"):
        assert (await state.send_gate(tenant, "n", cooldown=30, hourly_limit=1, now=t, member=tenant)).allowed
    assert await state.forget("t1", "n") == 2  # its cooldown and its hourly window
    assert await state.forget("t1", "n") == 0
    assert (await state.send_gate("t1", "n", cooldown=30, hourly_limit=1, now=t + 1, member="x")).allowed
    refused = await state.send_gate("t2", "n", cooldown=30, hourly_limit=1, now=t + 1, member="y")
    assert not refused.allowed and refused.reason == "cooldown"  # another tenant's state stays


async def test_a_released_gate_lets_the_retry_through_and_spares_a_later_cooldown(
    state: StateBackend,
) -> None:
    t = 1000.0
    assert (await state.send_gate("t1", "rel", cooldown=30, hourly_limit=2, now=t, member="a")).allowed
    await state.release_gate("t1", "rel", cooldown=30, now=t, member="a")  # its write failed: not sent
    # neither the cooldown nor the hourly count of the failed send holds the retry back
    assert (await state.send_gate("t1", "rel", cooldown=30, hourly_limit=2, now=t + 1, member="b")).allowed
    # releasing the failed send again, late, must not end the cooldown the retry started
    await state.release_gate("t1", "rel", cooldown=30, now=t, member="a")
    held = await state.send_gate("t1", "rel", cooldown=30, hourly_limit=2, now=t + 2, member="c")
    assert not held.allowed and held.reason == "cooldown"
    assert (await state.send_gate("t1", "rel", cooldown=30, hourly_limit=2, now=t + 40, member="d")).allowed
    full = await state.send_gate("t1", "rel", cooldown=30, hourly_limit=2, now=t + 80, member="e")
    assert not full.allowed and full.reason == "number_hourly"  # b and d count, a does not


async def test_scoped_per_tenant_and_number(state: StateBackend) -> None:
    t = 1000.0
    assert (await state.send_gate("t1", "n", cooldown=30, hourly_limit=1, now=t, member="a")).allowed
    assert (await state.send_gate("t2", "n", cooldown=30, hourly_limit=1, now=t, member="b")).allowed
    assert (await state.send_gate("t1", "m", cooldown=30, hourly_limit=1, now=t, member="c")).allowed
    assert not (await state.send_gate("t1", "n", cooldown=0, hourly_limit=1, now=t + 60, member="d")).allowed


async def test_refused_request_is_not_counted(state: StateBackend) -> None:
    t = 1000.0
    assert (await state.send_gate("t", "n", cooldown=10, hourly_limit=2, now=t, member="a")).allowed
    for i in range(5):  # refused by the cooldown: these must not use up the hourly budget
        assert not (
            await state.send_gate("t", "n", cooldown=10, hourly_limit=2, now=t + i, member=f"r{i}")
        ).allowed
    assert (await state.send_gate("t", "n", cooldown=10, hourly_limit=2, now=t + 11, member="b")).allowed


async def test_verify_attempts_count_up(state: StateBackend) -> None:
    assert [await state.verify_attempt("otp_1", ttl=60) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert await state.verify_attempt("otp_2", ttl=60) == 1


async def test_redis_keys_left_behind(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    backend = RedisState(client)
    await backend.send_gate("t1", "ab", cooldown=30, hourly_limit=10, now=1000.0, member="m")
    await backend.verify_attempt("otp_9", ttl=60)
    keys = sorted(k.decode() for k in await client.keys("*"))
    assert keys == ["smsgw:cd:{t1:ab}", "smsgw:nh:{t1:ab}", "smsgw:va:otp_9"]
    for k in keys:  # nothing is kept forever
        assert 0 < await client.pttl(k) <= 3_600_000
    await backend.close()


async def test_redis_outage_falls_back_to_local_state_for_gates_and_fails_closed_for_attempts() -> None:
    errors: list[str] = []
    changes: list[str] = []
    clock = ManualClock(0.0)
    state = FallbackState(
        RedisState(redis_client(f"redis://127.0.0.1:{free_port()}")),
        errors.append,
        on_change=changes.append,
        hold_off=5.0,
        clock=clock,
    )
    assert (await state.send_gate("t", "n", cooldown=30, hourly_limit=5, now=1000.0, member="a")).allowed
    assert state.down
    assert not (await state.send_gate("t", "n", cooldown=30, hourly_limit=5, now=1001.0, member="b")).allowed
    # a process-local attempt counter would give max_attempts guesses per process: no count, no verdict
    with pytest.raises(StateUnavailable) as e:
        await state.verify_attempt("otp", ttl=60)
    assert e.value.retry_after == 5.0 and e.value.operation == "verify_attempt"
    assert errors == ["send_gate", "send_gate", "verify_attempt"]
    assert changes == ["down"]  # one transition, however many calls
    clock.advance(6)  # the probe after the hold-off fails too: still down, no second transition
    with pytest.raises(StateUnavailable):
        await state.verify_attempt("otp", ttl=60)
    assert changes == ["down"] and state.down
    assert not await state.ping()
    await state.close()


async def test_redis_killed_and_restarted_on_its_port_brings_the_fallback_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real redis-server, SIGKILLed, then started again on the same port with the same AOF: the
    fallback goes back to it by itself after the hold-off, and the attempt count made before the kill
    is still there (it is durable, so attempts never start over)."""
    caplog.set_level(logging.INFO, logger="smsgw.state")
    errors: list[str] = []
    changes: list[str] = []
    clock = ManualClock(0.0)
    port = free_port()
    aof = tempfile.mkdtemp(prefix="smsgw-redis-aof-")
    durable = ("--appendonly", "yes", "--appendfsync", "always", "--dir", aof)
    try:
        with redis_process(*durable, port=port) as (proc, _):
            state = FallbackState(
                RedisState(redis_client(f"redis://127.0.0.1:{port}")),
                errors.append,
                on_change=changes.append,
                hold_off=5.0,
                clock=clock,
            )
            assert await state.verify_attempt("otp", ttl=600) == 1
            assert await state.verify_attempt("otp", ttl=600) == 2
            proc.kill()
            proc.wait(10)
            with pytest.raises(StateUnavailable):
                await state.verify_attempt("otp", ttl=600)
            gate = await state.send_gate("t", "n", cooldown=30, hourly_limit=5, now=1000.0, member="a")
            assert gate.allowed  # local
        with redis_process(*durable, port=port):
            with pytest.raises(StateUnavailable):  # still held off: Redis is not asked yet
                await state.verify_attempt("otp", ttl=600)
            clock.advance(5.1)
            assert await state.verify_attempt("otp", ttl=600) == 3  # Redis again, its count kept
            assert changes == ["down", "up"] and not state.down
            # gates are Redis-backed again: the cooldown taken locally during the outage is not there
            gate = await state.send_gate("t", "n", cooldown=30, hourly_limit=5, now=1001.0, member="b")
            assert gate.allowed
            assert await state.primary.client.exists(cooldown_key("t", "n")) == 1
            await state.close()
    finally:
        shutil.rmtree(aof, ignore_errors=True)
    assert errors == ["verify_attempt", "send_gate", "verify_attempt"]
    lines = [r.getMessage() for r in caplog.records if r.name == "smsgw.state"]
    assert sum("redis unavailable" in m for m in lines) == 1, lines  # once per transition
    assert sum("redis is back" in m for m in lines) == 1, lines


async def test_pooled_connections_dead_after_a_restart_are_retried_not_raised() -> None:
    """Every pooled connection dies with the server; the first command after the restart reconnects
    (the client's one retry) instead of failing and sending the fallback back into an outage."""
    port = free_port()
    with redis_process(port=port) as (proc, _):
        state = RedisState(redis_client(f"redis://127.0.0.1:{port}"))
        await asyncio.gather(*(state.verify_attempt("otp", ttl=60) for _ in range(4)))  # 4 connections
        proc.kill()
        proc.wait(10)
    with redis_process(port=port):
        assert [await state.verify_attempt("otp", ttl=60) for _ in range(4)] == [1, 2, 3, 4]
        await state.close()


async def test_a_hung_redis_is_probed_by_one_call_at_a_time() -> None:
    """A Redis that accepts connections and never answers (as when SIGSTOPped): after the hold-off one
    call probes it and waits out the client's timeout; the calls meanwhile do not queue behind it."""
    connections = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = ManualClock(0.0)
    changes: list[str] = []
    state = FallbackState(
        RedisState(redis_client(f"redis://127.0.0.1:{port}")),
        lambda _: None,
        on_change=changes.append,
        hold_off=5.0,
        clock=clock,
    )
    try:
        with pytest.raises(StateUnavailable):  # the first call finds it hung: down
            await state.verify_attempt("otp", ttl=60)
        before = connections
        clock.advance(6)
        calls = [asyncio.ensure_future(state.verify_attempt("otp", ttl=60)) for _ in range(5)]
        await asyncio.sleep(0)  # one turn of the loop: every call has run up to its first wait
        assert [c.done() for c in calls] == [False, True, True, True, True]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, StateUnavailable) for r in results)
        assert connections - before <= 2  # one probe (and its one client retry), not one per call
        assert changes == ["down"]
    finally:
        await state.close()
        server.close()
        await server.wait_closed()


async def test_fallback_forget_reaches_both_places_or_says_it_could_not() -> None:
    errors: list[str] = []
    state = FallbackState(RedisState(redis_client(f"redis://127.0.0.1:{free_port()}")), errors.append)
    assert (await state.send_gate("t", "n", cooldown=30, hourly_limit=5, now=1000.0, member="a")).allowed
    with pytest.raises((RedisError, OSError)):  # an erasure must not report what it could not reach
        await state.forget("t", "n")
    assert (await state.send_gate("t", "n", cooldown=30, hourly_limit=5, now=1001.0, member="b")).allowed
    await state.close()


async def test_redis_url_naming_a_cluster_node_gives_a_cluster_client(
    redis_cluster_url: str, redis_url: str
) -> None:
    cluster = await connect_redis(redis_cluster_url)
    plain = await connect_redis(redis_url)
    down = await connect_redis(f"redis://127.0.0.1:{free_port()}")  # the fallback covers an outage
    try:
        assert isinstance(cluster, aioredis.RedisCluster) and len(cluster.get_nodes()) == 3
        assert isinstance(plain, aioredis.Redis) and isinstance(down, aioredis.Redis)
        # a number's cooldown and hourly window, read by one script, share a slot
        slots = {
            int(await cluster.cluster_keyslot(k))
            for k in (cooldown_key("t", "n"), number_window_key("t", "n"))
        }
        assert len(slots) == 1
    finally:
        for c in (cluster, plain, down):
            await c.aclose()


async def test_fill_back_writes_hold_off_after_one_fails_on_a_hung_redis(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The dispatcher records every sent OTP in the fill-back store: on a hung Redis one write waits out
    the client's timeouts, the ones after it are skipped (counted) until the hold-off ends, and the
    failure is logged once."""
    connections = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}")
    ctx = Context(settings=load(None, {}), instruments=create_instruments(CollectorRegistry()))
    ctx.fillback = RedisFillback(client)
    try:
        await ctx.record_fillback("sent", "t", "DE", "r", 1000.0)  # waits, fails
        tried = connections
        for _ in range(20):
            await ctx.record_fillback("sent", "t", "DE", "r", 1000.0)  # held off: Redis not asked
        assert connections == tried and ctx.fillback_down
        errors = ctx.instruments.registry.get_sample_value(
            "smsgw_state_backend_errors_total", {"operation": "fillback"}
        )
        assert errors == 21
        assert sum("fill-back store unavailable" in r.getMessage() for r in caplog.records) == 1
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_memory_state_lets_expired_numbers_go_and_keeps_at_most_max_keys() -> None:
    """The embedded state must not grow with every number ever sent to, nor sweep all of them per
    request: expired cooldowns, hourly windows and verify counters leave as time passes, and past
    ``max_keys`` live keys the oldest go first, while the newest keep their limits."""
    clock = ManualClock(1000.0)
    st = MemoryState(clock, max_keys=50)
    for n in range(40):
        assert (
            await st.send_gate("t", f"{n:04x}", cooldown=30, hourly_limit=2, now=clock(), member="m")
        ).allowed
        await st.verify_attempt(f"otp_{n}", ttl=600)
        clock.advance(1)
    sizes = (len(st._until), len(st._windows), len(st._counters))
    assert sizes == (30, 40, 40)  # cooldowns of the first 10 ran out, windows and counters live
    clock.advance(3601)
    await st.send_gate("t", "new", cooldown=30, hourly_limit=2, now=clock(), member="m")
    await st.verify_attempt("otp_new", ttl=600)
    assert (len(st._until), len(st._windows), len(st._counters)) == (1, 1, 1)
    # past max_keys: the oldest leave, the newest keep their cooldown and hourly count
    for n in range(80):
        await st.send_gate("t", f"b{n:04x}", cooldown=30, hourly_limit=2, now=clock(), member="m")
    assert len(st._until) <= 50 and len(st._windows) <= 50
    last = await st.send_gate("t", "b004f", cooldown=30, hourly_limit=2, now=clock(), member="m")
    assert not last.allowed and last.reason == "cooldown"
    # a number sent to again keeps its window past the first send's hour
    st2 = MemoryState(clock)
    await st2.send_gate("t", "x", cooldown=0, hourly_limit=5, now=clock(), member="m")
    clock.advance(1800)
    await st2.send_gate("t", "x", cooldown=0, hourly_limit=5, now=clock(), member="m")
    clock.advance(1900)  # past the first send's hour, inside the second's
    await st2.send_gate("t", "y", cooldown=0, hourly_limit=5, now=clock(), member="m")
    assert number_window_key("t", "x") in st2._windows
    clock.advance(1800)  # past the second send's hour too
    await st2.send_gate("t", "y", cooldown=0, hourly_limit=5, now=clock(), member="m")
    assert number_window_key("t", "x") not in st2._windows
