"""Erasing a number's anti-fraud state (a data subject's erasure), on both backends."""

from __future__ import annotations

from antifraud import LimitRule, TenantPolicy
from antifraud.limits import Erasure, Plan
from tests.antifraud.conftest import Rig

POLICY = TenantPolicy(allowed_countries=None, limits=(LimitRule("number", 60, 2),))
NUMBER = "+4915123000017"
NEIGHBOUR = "+4915123000042"  # the same 10k block


async def live_keys(rig: Rig) -> set[str]:
    if rig.client is not None:
        # SCAN, not KEYS: on a cluster it walks every node
        return {k.decode() if isinstance(k, bytes) else k async for k in rig.client.scan_iter("*")}
    keys: set[str] = rig.backend.keys()  # type: ignore[attr-defined]
    return keys


async def sweep_entries(rig: Rig, e164: str) -> list[str]:
    """The values (last four digits) in the recent-neighbours list of the number's 10k block."""
    await rig.engine.flush()
    snap = await rig.backend.check(
        Plan(
            now=rig.clock.now,
            schemas=rig.engine.schemas,
            count=False,
            lists=((rig.engine.keys.sweep(e164[:-4]), 16),),
        )
    )
    return [e.partition(":")[0] for e in snap.lists[0]]


async def test_forget_removes_the_numbers_counters_and_limits_for_every_tenant(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=POLICY)
    for tenant in ("t1", "t2"):
        assert await rig.send(NUMBER, tenant=tenant) == "allow"
        rig.clock.now += 1
    assert await rig.send(NEIGHBOUR) == "allow"
    await rig.engine.record_verified("t1", NUMBER, "DE", rig.clock.now - 2, rig.clock.now)
    assert await rig.send(NUMBER, tenant="t1") == "allow"
    assert await rig.send(NUMBER, tenant="t1") == "rate_limited"  # 2 a minute
    await rig.engine.flush()

    h = rig.engine.keys.hash(NUMBER)
    mine = {k for k in await live_keys(rig) if k.endswith(":" + h)}
    p = rig.engine.keys.prefix
    assert mine == {f"{p}n:t1:{h}", f"{p}n:t2:{h}", f"{p}lim:number:t1:{h}", f"{p}lim:number:t2:{h}"}
    assert sorted(await sweep_entries(rig, NUMBER)) == ["17", "17", "17", "42"]
    before = await live_keys(rig)

    assert await rig.engine.forget(NUMBER) == 4 + 3  # four keys, three list entries

    after = await live_keys(rig)
    assert after == before - mine, "only the number's own keys went"
    assert not any(h in k for k in after)
    assert await sweep_entries(rig, NUMBER) == ["42"]
    # the neighbour's state is untouched, and the number starts afresh
    n2 = rig.engine.keys.hash(NEIGHBOUR)
    assert f"{p}n:t1:{n2}" in after and f"{p}lim:number:t1:{n2}" in after
    assert await rig.send(NUMBER, tenant="t1") == "allow"
    assert await rig.engine.forget(NUMBER) == 2 + 1  # what that request left: counter, window, list entry


async def test_forget_drops_queued_corrections_so_nothing_comes_back(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=POLICY)
    await rig.engine.block("t1", "number", NUMBER)
    assert await rig.send(NUMBER) == "block"  # counted in the round trip, its correction queued
    assert rig.backend.stats.pending == 1
    h = rig.engine.keys.hash(NUMBER)
    p = rig.engine.keys.prefix
    # the backend's erasure alone (the engine flushes first): a correction queued by a concurrent
    # check must not write the erased keys again
    await rig.backend.erase(Erasure(keys=(f"{p}n:t1:{h}", f"{p}lim:number:t1:{h}")))
    await rig.engine.flush()
    assert not [k for k in await live_keys(rig) if k.endswith(":" + h)]
    # through the engine: the block-list entry is an administrator's decision about the number,
    # not its traffic: it stays
    assert await rig.send(NUMBER) == "block"
    assert await rig.engine.forget(NUMBER) == 2 + 2  # counter and window, two list entries
    assert await rig.send(NUMBER) == "block"


async def test_forget_for_some_tenants_only(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=POLICY)
    for tenant in ("t1", "t2"):
        assert await rig.send(NUMBER, tenant=tenant) == "allow"
    await rig.engine.flush()
    h = rig.engine.keys.hash(NUMBER)
    p = rig.engine.keys.prefix
    assert await rig.engine.forget(NUMBER, tenant_ids=["t1"]) == 2 + 2
    left = {k for k in await live_keys(rig) if k.endswith(":" + h)}
    assert left == {f"{p}n:t2:{h}", f"{p}lim:number:t2:{h}"}
    assert await rig.engine.forget("+4915123000099") == 0  # nothing known about it
