"""The pumping detector's rules, breakers, reasons and admin operations, on both backends."""

from __future__ import annotations

from dataclasses import replace

import pytest

from antifraud import FraudSettings, TenantPolicy
from tests.antifraud.conftest import Rig

ANY = TenantPolicy(allowed_countries=None, limits=())
BLOCK = "+4915123000{:03d}"  # one 10k block of German mobile numbers
P5 = "+49151230{}{:04d}"  # ten 10k blocks of one 100k block


async def verify(rig: Rig, e164: str, sent_at: float, delay: float = 20.0, **kw: object) -> None:
    await rig.engine.record_verified(
        kw.pop("tenant", "t1"),
        e164,
        "",
        sent_at,
        sent_at + delay,
        **kw,  # type: ignore[arg-type]
    )


async def test_a_sweep_through_a_block_is_challenged_and_a_passed_challenge_is_let_through(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    actions = []
    for i in range(8):
        rig.clock.now += 3
        actions.append(await rig.send(BLOCK.format(i)))
    assert actions[:5] == ["allow"] * 5 and actions[5:] == ["challenge"] * 3
    d = await rig.engine.evaluate(rig.req(BLOCK.format(9)))
    assert d.reasons[0].code == "range_sweep" and d.reasons[0].scope == "prefix"
    assert "+49 1512300xxxx" in d.reasons[0].message and "across tenants" in d.reasons[0].message
    passed = await rig.engine.evaluate(rig.req(BLOCK.format(9), passed=True))
    assert passed.action == "allow" and passed.challenged


async def test_a_sweep_spread_over_tenants_is_seen_across_tenants(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    for i in range(5):
        rig.clock.now += 20
        assert await rig.send(BLOCK.format(i), tenant=f"shop{i}") == "allow"
    assert await rig.send(BLOCK.format(5), tenant="shop9") == "challenge"


async def test_fill_back_collapse_under_rising_volume_challenges_the_smallest_range(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    first_challenge = None
    for i in range(120):  # one every 30 s over ten 10k blocks: no block is swept
        rig.clock.now += 30
        d = await rig.engine.evaluate(rig.req(P5.format(i % 10, i)))
        if d.action == "challenge":
            first_challenge = (i, d)
            break
    assert first_challenge is not None, "codes never verified in a rising range must trip the breaker"
    i, d = first_challenge
    assert 20 <= i <= 90
    assert d.reasons[0].code == "prefix_fillback_low" and d.reasons[0].scope == "prefix"
    assert "+49 151230xxxxx" in d.reasons[0].message and "verified of" in d.reasons[0].message


async def test_the_same_traffic_with_real_users_verifying_passes(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    for i in range(120):
        rig.clock.now += 30
        e164 = P5.format(i % 10, i)
        assert await rig.send(e164) == "allow", i
        if i % 8:  # 7 in 8 verify, 20 s later (credited at send time)
            await verify(rig, e164, rig.clock.now)


async def test_a_route_outage_is_not_pumping(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    for i in range(120):
        rig.clock.now += 30
        e164 = P5.format(i % 10, i)
        assert await rig.send(e164) == "allow", i
        if i % 2:  # half the deliveries fail: the carrier says so; the delivered half verify
            await rig.engine.record_delivery_failed("t1", e164, "", rig.clock.now, rig.clock.now + 5)
        elif i % 8:
            await verify(rig, e164, rig.clock.now)


async def serve_country(rig: Rig, n: int = 40) -> None:
    """Some history: real users in Germany, spread over blocks, verifying (the country is served)."""
    for i in range(n):
        rig.clock.now += 600
        e164 = f"+49176{i:03d}{i * 7919 % 100000:05d}"
        assert await rig.send(e164) == "allow"
        await verify(rig, e164, rig.clock.now)
    rig.clock.now += 3600


async def test_breakers_lift_after_the_attack_stops(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    await serve_country(rig)
    for i in range(120):
        rig.clock.now += 30
        await rig.send(P5.format(i % 10, i))
    assert await rig.send(P5.format(3, 9999)) == "challenge"
    end = rig.clock.now
    released = None
    for minute in range(1, 240):
        rig.clock.now = end + 60 * minute
        if (
            await rig.engine.evaluate(rig.req(P5.format(minute % 10, 5000 + minute)), dry_run=True)
        ).action == "allow":
            released = minute
            break
    assert released is not None and released <= 30, released


async def test_a_country_the_tenant_does_not_serve_stays_challenged_while_challenges_fail(make_rig) -> None:  # type: ignore[no-untyped-def]
    # an adaptive prober pauses between ranges: in a country without real users of this tenant, the
    # failed challenges (30 min memory) keep new ranges challenged, not only while requests flow
    rig: Rig = make_rig(policy=ANY)
    for i in range(120):
        rig.clock.now += 30
        await rig.send(P5.format(i % 10, i))
    rig.clock.now += 15 * 60
    d = await rig.engine.evaluate(rig.req("+4917612345678"))
    assert d.action == "challenge" and d.reasons[0].code == "challenges_failing"
    assert d.reasons[0].scope == "country"


async def test_returning_users_are_not_caught_in_a_suspicious_range(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    regular = BLOCK.format(900)
    assert await rig.send(regular) == "allow"
    await verify(rig, regular, rig.clock.now)
    rig.clock.now += 3600
    for i in range(10):
        rig.clock.now += 2
        await rig.send(BLOCK.format(i))
    assert await rig.send(BLOCK.format(11)) == "challenge"
    assert await rig.send(regular) == "allow"


async def test_a_number_asked_again_and_again_without_verifying(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    victim = "+4915123456789"
    actions = []
    for _ in range(8):
        rig.clock.now += 300
        d = await rig.engine.evaluate(rig.req(victim))
        if d.action == "challenge":
            d = await rig.engine.evaluate(rig.req(victim, passed=True))
        actions.append((d.action, d.reasons[0].code if d.reasons else ""))
    assert actions[:3] == [("allow", "")] * 3
    assert ("block", "number_unverified_repeat") in actions
    assert actions[-1] == ("block", "number_unverified_repeat")


async def test_a_captcha_farm_in_an_attacked_block_is_blocked(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    # in a country with real users of the tenant (where nothing was ever verified, the farm's second
    # passed challenge is already refused: test_where_nothing_was_ever_verified_...)
    await serve_country(rig)
    seen = []
    for i in range(60):
        rig.clock.now += 2
        d = await rig.engine.evaluate(rig.req(BLOCK.format(i)))
        if d.action == "challenge" and i % 6 == 0:  # the farm solves one challenge in six
            d = await rig.engine.evaluate(rig.req(BLOCK.format(i), passed=True))
            seen.append(d.action if d.action == "allow" else d.reasons[0].code)
    assert seen[:2] == ["allow", "allow"]
    assert "challenge_farm" in seen and seen[-1] == "challenge_farm"


async def test_a_farm_that_passes_every_challenge_is_blocked_within_a_few_codes(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    actions = []
    for i in range(40):  # a sweep; a solving service answers every 428 with a valid token
        rig.clock.now += 1
        d = await rig.engine.evaluate(rig.req(BLOCK.format(i), device=f"farm-{i}"))
        if d.action == "challenge":
            d = await rig.engine.evaluate(rig.req(BLOCK.format(i), device=f"farm-{i}", passed=True))
        actions.append(d.reasons[0].code if d.reasons else d.action)
    assert actions.count("allow") <= 5 + 5, actions  # before the sweep shows, then a few passed ones
    assert actions[-1] == "challenge_not_verifying" and actions.count("challenge_not_verifying") >= 25


async def test_a_resend_from_the_same_session_is_delivery_evidence_not_pumping(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    for i in range(6):  # the block is swept: a new number there is challenged
        rig.clock.now += 3
        await rig.send(BLOCK.format(i))
    user = BLOCK.format(900)
    rig.clock.now += 3
    first = await rig.engine.evaluate(rig.req(user, session="s-1", passed=True))
    assert first.action == "allow" and first.challenged
    rig.clock.now += 45  # the SMS did not come; the user asks again from the same page
    assert await rig.send(user, session="s-2") == "challenge", "another session is not this user's resend"
    assert await rig.send(user, session="s-1") == "allow"
    rig.clock.now += 3600  # long after the code's lifetime it is a new request again
    for i in range(6):
        rig.clock.now += 3
        await rig.send(BLOCK.format(10 + i))
    assert await rig.send(user, session="s-1") == "challenge"
    # one-number pumping through "resends" still meets the number's own evidence
    victim = "+4917612345678"
    actions = []
    for _ in range(5):
        rig.clock.now += 60
        d = await rig.engine.evaluate(rig.req(victim, session="bomb"))
        actions.append(d.reasons[0].code if d.reasons else d.action)
    assert actions[:3] == ["allow"] * 3 and actions[-1] == "number_unverified_repeat", actions


async def test_codes_sent_after_passed_challenges_must_get_verified(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    outcome = []
    for i in range(80):  # an app that always passes a token, to a block where nobody verifies
        rig.clock.now += 20
        d = await rig.engine.evaluate(rig.req(P5.format(i % 10, i), passed=True))
        outcome.append(d.reasons[0].code if d.reasons else d.action)
    assert outcome[0] == "allow"
    assert outcome[-1] == "challenge_not_verifying"


async def test_allow_list_block_list_and_lift(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    for i in range(8):
        rig.clock.now += 3
        await rig.send(BLOCK.format(i))
    assert await rig.send(BLOCK.format(20)) == "challenge"
    # lift the block's range rules for an hour
    label = await rig.engine.lift("t1", "prefix", "+491512300")
    assert label == "+491512300"
    for i in range(21, 30):
        rig.clock.now += 3
        assert await rig.send(BLOCK.format(i)) == "allow"
    rig.clock.now += 3601  # a lift expires: the same sweep is challenged again
    actions = []
    for i in range(30, 37):
        rig.clock.now += 3
        actions.append(await rig.send(BLOCK.format(i)))
    assert actions[-1] == "challenge"
    # allow-list a number (stored as a keyed hash, shown masked)
    assert await rig.engine.allow("t1", "number", BLOCK.format(40)) == "+49*********40"
    assert await rig.send(BLOCK.format(40)) == "allow"  # inside the swept block
    # block-list a country
    await rig.engine.block("t1", "country", "de")
    d = await rig.engine.evaluate(rig.req("+4917612345678"))
    assert d.action == "block" and d.reasons[0].code == "blocklisted" and d.reasons[0].scope == "country"
    lists = await rig.engine.lists("t1")
    assert {e["value"] for e in lists["allow"]} == {"+491512300", "+49*********40"}
    assert [e["value"] for e in lists["block"]] == ["DE"]
    assert not next(e for e in lists["allow"] if e["value"] == "+491512300")["active"]
    assert await rig.engine.unlist("t1", "country", "DE")
    assert await rig.send("+4917612345678") == "allow"
    assert not await rig.engine.unlist("t1", "country", "DE")
    with pytest.raises(ValueError, match="prefix"):
        await rig.engine.allow("t1", "prefix", "4915")


async def test_recent_refusals_are_reviewable_and_masked(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    for i in range(7):
        rig.clock.now += 3
        await rig.send(BLOCK.format(i))
    await rig.send("+449012345678")
    records = await rig.engine.recent_decisions("t1", 10)
    assert [r.action for r in records] == ["block", "challenge", "challenge"]
    assert records[0].codes == ("number_type_blocked",) and records[0].number == "+44********78"
    assert records[1].codes[0] == "range_sweep" and records[1].messages
    for r in records:
        assert "5123000" not in r.number and all("5123000" not in m for m in r.messages)
    assert await rig.engine.recent_decisions("other", 10) == []


async def test_monitor_mode_decides_but_always_allows(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=TenantPolicy(allowed_countries=frozenset({"DE"}), limits=(), enforce=False))
    d = await rig.engine.evaluate(rig.req("+998901234567"))
    assert d.action == "allow" and d.reasons[0].code == "country_not_permitted"
    assert rig.engine.stats.decisions["allow"] == 1


async def test_settings_tune_the_rules(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(settings=FraudSettings(default_policy=ANY, sweep_distinct=2))
    for i in range(2):
        rig.clock.now += 3
        assert await rig.send(BLOCK.format(i)) == "allow"
    assert await rig.send(BLOCK.format(2)) == "challenge"


UZ_BLOCK = "+99890123{:04d}"  # one 10k block of Uzbek mobile numbers


async def probe_uz(rig: Rig, tenant: str = "t1", block: str = UZ_BLOCK, challenged: int = 5) -> None:
    """An adaptive prober's first block: a sweep, challenged from its sixth number on, and its
    challenges not passed."""
    got = []
    for i in range(5 + challenged):
        rig.clock.now += 5
        got.append(await rig.send(block.format(i), tenant=tenant))
    assert got[:5] == ["allow"] * 5 and got[5:] == ["challenge"] * challenged, got
    rig.clock.now += 120


async def test_where_nothing_was_ever_verified_a_farms_second_passed_challenge_is_blocked(make_rig) -> None:  # type: ignore[no-untyped-def]
    # an adaptive prober with a CAPTCHA farm moves to a fresh block after its refusals: in a country
    # where none of the tenant's codes was ever verified and its challenges fail, the farm's first
    # passed challenge (after two failed ones) gets its code; while that code stays unverified, the
    # next one (after more failures) is refused
    rig: Rig = make_rig(policy=ANY)
    await probe_uz(rig, challenged=2)
    assert await rig.send("+998937770001", passed=True) == "allow"
    for i in (20, 21):  # two more challenges, not passed
        rig.clock.now += 20
        assert await rig.send(UZ_BLOCK.format(i)) == "challenge"
    rig.clock.now += 20
    d = await rig.engine.evaluate(rig.req("+998937770002", passed=True))
    assert d.action == "block" and d.reasons[0].code == "challenge_not_verifying", d.reasons
    assert d.reasons[0].scope == "country" and "none ever verified here" in d.reasons[0].message


async def test_where_nothing_was_ever_verified_a_pass_among_many_failures_is_blocked(make_rig) -> None:  # type: ignore[no-untyped-def]
    # five challenges failed in the country and none passed: the farm's first pass, in a fresh block,
    # is refused too; after two failures only (another tenant), it is not
    rig: Rig = make_rig(policy=ANY)
    await probe_uz(rig)
    d = await rig.engine.evaluate(rig.req("+998937770001", passed=True))
    assert d.action == "block" and d.reasons[0].code == "challenge_farm", d.reasons
    assert d.reasons[0].scope == "country" and "none of its codes ever verified" in d.reasons[0].message
    await probe_uz(rig, "t4", "+99890789{:04d}", challenged=2)
    assert await rig.send("+998937780001", tenant="t4", passed=True) == "allow"


async def test_a_pass_inside_the_attacked_block_is_left_to_the_block_rules(make_rig) -> None:  # type: ignore[no-untyped-def]
    # the failures are in the request's own block: a real user inside a block under attack who passes
    # the challenge is judged by the block's farm rule (five passes), not refused for the country's
    rig: Rig = make_rig(policy=ANY)
    await probe_uz(rig)
    d = await rig.engine.evaluate(rig.req(UZ_BLOCK.format(77), passed=True))
    assert d.action == "allow", d.reasons


async def test_one_verified_code_or_a_young_tenant_keeps_a_country_out_of_that_rule(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    sent_at = rig.clock.now
    assert await rig.send("+998931112233") == "allow"  # a real user, who types the code in
    await verify(rig, "+998931112233", sent_at)
    await probe_uz(rig)
    assert await rig.send("+998937770001", passed=True) == "allow"
    rig.clock.now += 60
    d = await rig.engine.evaluate(rig.req("+998937770002", passed=True))
    assert d.action == "allow", d.reasons
    # a tenant created an hour ago has no history to speak of yet: its empty one is not evidence,
    # and three failed challenges are not enough (four are, below)
    rig.engine.set_tenant_policy(
        "t2", TenantPolicy(allowed_countries=None, limits=(), created_at=rig.clock.now - 3600)
    )
    await probe_uz(rig, "t2", "+99890456{:04d}", challenged=3)
    assert await rig.send("+998937770008", tenant="t2", passed=True) == "allow"
    rig.clock.now += 60
    d = await rig.engine.evaluate(rig.req("+998937770009", tenant="t2", passed=True))
    assert d.action == "allow", d.reasons


async def test_a_young_tenants_pass_among_many_failures_is_blocked_outside_its_declared_countries(
    make_rig,
) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    young = TenantPolicy(allowed_countries=None, limits=(), created_at=rig.clock.now - 3600)
    rig.engine.set_tenant_policy("t2", young)
    await probe_uz(rig, "t2", "+99890456{:04d}")
    d = await rig.engine.evaluate(rig.req("+998937770008", tenant="t2", passed=True))
    assert d.action == "block" and d.reasons[0].code == "challenge_farm", d.reasons
    # where it declared it serves the country, its real users' passes are not a farm's
    rig.engine.set_tenant_policy("t3", replace(young, expected_countries=frozenset({"UZ"})))
    for i in range(5):
        rig.clock.now += 5
        await rig.send(f"+99890457{i:04d}", tenant="t3")
    for i in range(5):
        rig.clock.now += 5
        assert await rig.send(f"+99890458{i:04d}", tenant="t3") == "challenge"
    rig.clock.now += 120
    d = await rig.engine.evaluate(rig.req("+998937770009", tenant="t3", passed=True))
    assert d.action == "allow", d.reasons
