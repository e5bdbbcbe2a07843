"""Cold start: a tenant created minutes ago, with the shipped model, on both backends.

Its first ordinary sends to a country it declared (``tenant create --countries``) are judged against
the declaration, not against its empty history, whatever the hour at the destination; pumping from
the same fresh tenant is still refused."""

from __future__ import annotations

import random

from antifraud import TenantPolicy, load_scorer
from antifraud.simulate import NumberPool
from tests.antifraud.conftest import T0, Rig

DECLARED = frozenset({"DE", "FR", "US"})
NIGHT = T0 + 2 * 3600  # 02:00 UTC: 03:00 in Germany, before dawn


def fresh(make_rig, **kw: object) -> Rig:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=TenantPolicy(**kw), model=load_scorer())  # type: ignore[arg-type]
    rig.clock.now = NIGHT
    return rig


def german_numbers(n: int) -> list[str]:
    rng = random.Random(13)
    pool = NumberPool(13)
    return [pool.legit_number("DE", rng) for _ in range(n)]


async def ordinary_users(rig: Rig, numbers: list[str]) -> list[str]:
    """One real user after another, a minute or so apart, each verifying its code after ~25 s."""
    actions = []
    for i, e164 in enumerate(numbers):
        rig.clock.now += 40 + 7 * (i % 5)
        req = rig.req(e164, ip=f"84.{i % 7}.{i}.9", device=f"dev-{i}", session=f"s-{i}")
        d = await rig.engine.evaluate(req)
        actions.append(d.action)
        if d.action == "allow":
            await rig.engine.record_verified("t1", e164, "", req.now, req.now + 25, client_ip=req.client_ip)
    return actions


async def test_a_new_tenants_first_sends_to_a_declared_country_at_night_are_allowed(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = fresh(make_rig, allowed_countries=DECLARED, created_at=NIGHT - 60)
    actions = await ordinary_users(rig, german_numbers(30))
    assert actions == ["allow"] * 30


async def test_a_code_and_two_messages_to_one_number_before_dawn_in_a_declared_country(make_rig) -> None:  # type: ignore[no-untyped-def]
    # what the tenant-isolation sweep does (an OTP, then messages to the same number, none verified
    # yet): before the cold-start prior, the third send was challenged before dawn for a tenant that
    # declared nothing (country_unusual: the gateway's volume to DE; fraud_score: the hour there)
    async def three(rig: Rig, tenant: str) -> list[str]:  # one Redis for both rigs: two tenants
        out = []
        for _ in range(3):
            rig.clock.now += 5
            out.append(await rig.send("+4915123456789", ip=None, tenant=tenant))
        return out

    declared = fresh(make_rig, allowed_countries=DECLARED, created_at=NIGHT - 60)
    assert await three(declared, "t1") == ["allow"] * 3
    assert (await three(fresh(make_rig, allowed_countries=None), "t2"))[-1] == "challenge"


async def test_pumping_from_a_new_tenant_in_its_declared_country_is_still_refused(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig = fresh(make_rig, allowed_countries=DECLARED, created_at=NIGHT - 60)
    actions = []
    for i in range(40):  # a sweep through one 10k block, nothing verified
        rig.clock.now += 2
        actions.append(await rig.send(f"+4915123000{i:03d}", ip="203.0.113.7"))
    assert actions[:5] == ["allow"] * 5
    assert actions.count("allow") <= 6, actions
    d = await rig.engine.evaluate(rig.req("+4915123000777", ip="203.0.113.7"))
    assert d.action == "challenge" and d.reasons[0].code == "range_sweep"


async def test_the_in_process_window_plays_fresh_tenants_that_declare_their_countries() -> None:
    from antifraud.evaluate import run_windows, window_origin

    assert [window_origin(s) % 86400 / 3600 for s in (101, 102, 103)] == [1.0, 6.0, 11.0]
    model = load_scorer()
    (fig,) = await run_windows([101], 40.0, model=model, legit_rate=3.0)
    new = fig.friction.families["new_tenant"]
    assert new.requests == fig.legit.requests > 50, "every real user of a window is a new tenant's"
    assert fig.families, "and the attacks ran"
    (again,) = await run_windows([101], 40.0, model=model, legit_rate=3.0)
    assert again.legit.requests == fig.legit.requests and again.legit.challenged == fig.legit.challenged
