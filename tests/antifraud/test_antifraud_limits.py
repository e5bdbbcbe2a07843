"""Rate limits and the shared-state semantics, on both backends (memory and a real Redis)."""

from __future__ import annotations

import math
import random

import pytest
import redis.asyncio as aioredis

from antifraud import LimitRule, MemoryFraudBackend, RedisFraudBackend, TenantPolicy
from antifraud.limits import (
    FlagRead,
    HashAdd,
    HashRead,
    LimitSpec,
    LimitUndo,
    ListPush,
    Plan,
    Settle,
    retry_after,
    window_estimate,
)
from antifraud.settings import LimitScope
from tests.antifraud.conftest import T0, Rig
from tests.conftest import shared_redis

NUM = "+4915123000{:03d}"  # valid German mobile numbers, one 10k block


def only(*rules: LimitRule) -> TenantPolicy:
    return TenantPolicy(allowed_countries=None, limits=rules)


# ---- the arithmetic ------------------------------------------------------------------------------------


def test_window_estimate_weighs_the_previous_window_by_what_is_left_of_it() -> None:
    # 30 s into a minute: half of the previous minute still counts
    assert window_estimate(cur=2, prev=10, now=60 * 1000 + 30, window=60) == pytest.approx(2 + 5)
    assert window_estimate(cur=0, prev=0, now=T0, window=3600) == 0


def test_retry_after_is_the_exact_time_until_one_more_fits() -> None:
    now, w, limit = 60 * 1000 + 15, 60, 10
    # current window holds 4, previous 10: need prev·(1-f) + 4 + 1 ≤ 10 → f ≥ 0.5 → 15 s more
    assert retry_after(4, 10, limit, now, w) == pytest.approx(15.0)
    # current window alone is over: wait for it to end, then for it to fade below the limit
    wait = retry_after(12, 0, limit, now, w)
    assert wait == pytest.approx(45 + 60 * (1 - 9 / 12))
    assert window_estimate(0, 12, now + wait, w) + 1 == pytest.approx(limit)
    assert retry_after(0, 0, 0, now, w) == w  # a zero limit never fits


# ---- through the engine, on both backends ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "vary"),
    [
        ("number", lambda i: {"e164": NUM.format(1)}),
        ("ip", lambda i: {"e164": NUM.format(i), "ip": "203.0.113.9"}),
        ("device", lambda i: {"e164": NUM.format(i), "device": "dev-1"}),
        ("prefix", lambda i: {"e164": NUM.format(i)}),
        ("country", lambda i: {"e164": NUM.format(i)}),
        ("tenant", lambda i: {"e164": NUM.format(i)}),
    ],
)
async def test_each_scope_limits_and_says_which(make_rig, scope: LimitScope, vary) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=only(LimitRule(scope, 60, 3)))
    for i in range(3):
        kw = vary(i)
        assert (
            await rig.send(kw.pop("e164"), ip=kw.get("ip", f"100.0.0.{i}"), device=kw.get("device"))
            == "allow"
        )
    kw = vary(3)
    d = await rig.engine.evaluate(
        rig.req(kw.pop("e164"), ip=kw.get("ip", "100.0.0.3"), device=kw.get("device"))
    )
    assert d.action == "rate_limited"
    assert d.primary is not None and d.primary.code == "rate_limited" and d.primary.scope == scope
    assert d.retry_after is not None and 0 < d.retry_after <= 120
    assert "3 per minute" in d.primary.message


async def test_minute_hour_and_day_windows_slide(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(
        policy=only(LimitRule("number", 60, 2), LimitRule("number", 3600, 3), LimitRule("number", 86400, 4))
    )
    n = NUM.format(7)
    assert [await rig.send(n) for _ in range(2)] == ["allow", "allow"]
    d = await rig.engine.evaluate(rig.req(n))
    assert d.action == "rate_limited" and d.retry_after is not None
    rig.clock.now += d.retry_after + 0.01  # exactly when the minute window lets one more in
    assert await rig.send(n) == "allow"
    rig.clock.now += 120
    d = await rig.engine.evaluate(rig.req(n))
    assert d.action == "rate_limited" and "per hour" in d.reasons[0].message
    rig.clock.now += 2 * 3600
    assert await rig.send(n) == "allow"  # the 4th of the day
    rig.clock.now += 2 * 3600
    d = await rig.engine.evaluate(rig.req(n))
    assert d.action == "rate_limited" and "per day" in d.reasons[0].message


async def test_refused_requests_do_not_use_up_limits(make_rig) -> None:  # type: ignore[no-untyped-def]
    # a sweep is challenged; challenged requests are not sent, so they must not fill the IP's quota
    rig: Rig = make_rig(policy=only(LimitRule("ip", 3600, 8)))
    actions = [await rig.send(NUM.format(i), ip="203.0.113.7") for i in range(20)]
    assert actions[:5] == ["allow"] * 5
    assert "challenge" in actions
    assert actions.count("rate_limited") == 0, "only 5 SMS were sent from this IP"
    for i in range(3):
        assert await rig.send(f"+2348021234{i:03d}", ip="203.0.113.7") == "allow"
    assert await rig.send("+23480212349999"[:14], ip="203.0.113.7") == "rate_limited"


async def test_dry_runs_count_nothing(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=only(LimitRule("number", 60, 1)))
    n = NUM.format(3)
    for _ in range(5):
        assert (await rig.engine.evaluate(rig.req(n), dry_run=True)).action == "allow"
    assert await rig.send(n) == "allow"
    assert await rig.send(n) == "rate_limited"


# ---- the backends agree, operation by operation -----------------------------------------------------------


def _random_plan(rng: random.Random, t: float) -> tuple[Plan, Settle | None]:
    schemas = ((60.0, 600.0, 3600.0), (86400.0,))
    keys = [f"k:{i}" for i in range(4)]
    late = [
        HashAdd(rng.choice(keys), 0, ((rng.randrange(3), rng.uniform(-1, 2)),), t - rng.uniform(0, 30), 1e6)
        for _ in range(rng.randint(0, 3))
    ]
    writes = (*late, HashAdd("e:1", 1, ((0, 1.0),), t, 1e6))
    plan = Plan(
        now=t,
        schemas=schemas,
        count=rng.random() < 0.9,
        limits=(LimitSpec("lim:a", ((10, 3), (60, 6)), 1e6), LimitSpec("lim:b", ((3600, 20),), 1e6)),
        reads=(*(HashRead(k, 0) for k in keys), HashRead("e:1", 1)),
        lists=(("l:1", 5),),
        flags=(FlagRead("f:1", ("a", "b")),),
        writes=writes,
        pushes=(ListPush("l:1", f"v{rng.randrange(100)}:{t:.0f}", 5, 1e6),),
    )
    settle = None
    if rng.random() < 0.3:
        settle = Settle(
            adds=(HashAdd(rng.choice(keys), 0, ((0, -1.0),), t - 1, 1e6),),
            undos=(LimitUndo("lim:a", (10, 60), t - rng.uniform(0, 20)),),
            logs=(ListPush("log:1", f"rec{t:.0f}", 3, 1e6),),
        )
    return plan, settle


async def test_memory_and_redis_backends_agree_on_random_sequences(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    red, mem = RedisFraudBackend(client), MemoryFraudBackend()
    await red.hset("f:1", {"a": "x"})
    await mem.hset("f:1", {"a": "x"})
    rng = random.Random(5)
    t = T0
    try:
        for step in range(400):
            t += rng.expovariate(0.5) if step % 97 else 500.0
            plan, settle = _random_plan(rng, t)
            a, b = mem.execute(plan), await red.check(plan)
            assert a.hits == b.hits, step
            assert a.lists == b.lists and a.flags == b.flags, step
            for ra, rb in zip(a.reads, b.reads, strict=True):
                assert ra == pytest.approx(rb, rel=1e-12, abs=1e-12), step
            if settle is not None:
                mem.settle(settle)
                red.settle(settle)
        await mem.flush(t, plan.schemas)
        await red.flush(t, plan.schemas)
        assert await mem.lrange("log:1", 10) == await red.lrange("log:1", 10)
    finally:
        await client.aclose()


async def test_decayed_counters_credit_late_events_at_their_own_time(
    backend_kind: str, request: pytest.FixtureRequest
) -> None:
    client = shared_redis(request, backend_kind) if backend_kind != "memory" else None
    backend = RedisFraudBackend(client) if client is not None else MemoryFraudBackend()
    schemas = ((100.0,),)
    try:
        await backend.check(Plan(now=T0, schemas=schemas, writes=(HashAdd("c", 0, ((0, 1.0),), T0, 1e6),)))
        # an event that happened at T0 but is reported 50 s later weighs exp(-50/100) from the start
        await backend.check(
            Plan(now=T0 + 50, schemas=schemas, writes=(HashAdd("c", 0, ((0, 1.0),), T0, 1e6),))
        )
        snap = await backend.check(
            Plan(now=T0 + 100, schemas=schemas, count=False, reads=(HashRead("c", 0),))
        )
        assert snap.reads[0][0] == pytest.approx(2 * math.exp(-1.0), rel=1e-12)
    finally:
        if client is not None:
            await client.aclose()


async def test_strings_of_any_width_travel_intact(make_rig) -> None:  # type: ignore[no-untyped-def]
    # multi-byte text in the plan (list field names) and in the reply (flag values, list entries):
    # the Redis wire format counts bytes, not characters
    rig: Rig = make_rig(policy=only())
    await rig.engine.block("t1", "country", "äö")  # stored upper-cased: "ÄÖ"
    d = await rig.engine.evaluate(rig.req(NUM.format(5), country="ÄO"))
    assert d.action == "allow"
    d = await rig.engine.evaluate(rig.req(NUM.format(6), country="ÄÖ"))
    assert d.action == "block" and d.reasons[0].code == "blocklisted"
    assert (await rig.engine.lists("t1"))["block"][0]["value"] == "ÄÖ"
