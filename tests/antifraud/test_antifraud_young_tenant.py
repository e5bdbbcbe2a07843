"""A young tenant (created less than a day ago): what its first minutes of history may and may not
decide (docs/antifraud.md, "Cold start"). Built on :class:`~antifraud.features.Evidence` directly,
so each test pins one behaviour of the features and rules."""

from __future__ import annotations

from collections.abc import Sequence

from antifraud import FraudSettings
from antifraud.features import FEATURE_NAMES, Evidence, RangeView, Sweep
from antifraud.numbers import number_info

S = FraudSettings()
PAD = (0.0,) * len(S.delay_mixture)


def view(
    *,
    sent: float = 0.0,
    expected: float | None = None,
    verified: float = 0.0,
    requests: float = 0.0,
    long_sent: float = 0.0,
    long_verified: float = 0.0,
    span: float = 0.0,
) -> RangeView:
    """A range whose codes were all sent long ago (nothing pending): ``expected`` of ``sent``."""
    x = sent if expected is None else expected
    row: Sequence[float] = (sent, x, verified, 0.0, requests, long_sent, long_verified, 0, 0, 0, 0, 0, *PAD)
    return RangeView(row, S, 0.8, span)


def evidence(*, t_cc: RangeView, t_all: RangeView, t_p5: RangeView | None = None, **kw: object) -> Evidence:
    empty = view()
    return Evidence(
        t_all=t_all,
        t_cc=t_cc,
        t_p5=t_p5 or empty,
        g_cc=empty,
        g_p5=empty,
        g_p4=empty,
        g_p3=empty,
        number_sent=1.0,
        number_verified=0.0,
        number_history=0.0,
        device_requests=1.0,
        device_history=0.0,
        ip_short=1.0,
        ip_day=1.0,
        ip_verified=0.0,
        ip_countries=0,
        sweep=Sweep(0, 0),
        local_hour=14.0,
        risk=0.3,
        price=0.05,
        info=number_info("+4915123456789"),
        has_ip=True,
        has_device=True,
        **{"challenge_passed": False, **kw},  # type: ignore[arg-type]
    )


def feature(ev: Evidence, name: str) -> float:
    return ev.vector()[FEATURE_NAMES.index(name)]


def test_a_young_tenant_stays_judged_against_its_declaration_after_its_first_verifications() -> None:
    # an hour old, 30 verifications in DE (established by count), most of its traffic elsewhere and
    # a burst to DE right now: a day-old tenant would be judged on that, a young one on DE's declaration
    span = 3600.0
    t_all = view(sent=400, verified=300, requests=30, long_sent=400, long_verified=300, span=span)
    t_cc = view(sent=40, verified=30, requests=20, long_sent=40, long_verified=30, span=span)
    kw = {"declared_of": 2, "declared_volume": S.declared_country_volume}
    young = evidence(t_cc=t_cc, t_all=t_all, young=True, **kw)
    old = evidence(t_cc=t_cc, t_all=t_all, young=False, **kw)
    assert young.established and old.established
    assert young.cold_declared and not old.cold_declared
    assert feature(young, "tenant_country_share") > feature(old, "tenant_country_share")
    assert feature(young, "t_cc_velocity") < feature(old, "t_cc_velocity")
    assert feature(young, "global_country_volume") > feature(old, "global_country_volume")
    # an undeclared country is not helped by the tenant's youth
    undeclared = evidence(t_cc=t_cc, t_all=t_all, young=True)
    assert not undeclared.cold_declared


def test_a_young_tenants_few_unverified_codes_are_discounted_by_their_uncertainty() -> None:
    # minutes old: 4 codes expected by now, 1 verified: within noise, not a collapsed fill-back
    t_all = view(sent=10, verified=5, requests=10, long_sent=10, long_verified=5, span=300.0)
    t_cc = view(sent=5, expected=4.0, verified=1, requests=5, long_sent=5, long_verified=1, span=300.0)
    young = evidence(t_cc=t_cc, t_all=t_all, t_p5=t_cc, young=True)
    old = evidence(t_cc=t_cc, t_all=t_all, t_p5=t_cc, young=False)
    assert feature(young, "min_log_ratio") == feature(young, "t_cc_log_ratio")
    for name in ("min_log_ratio", "t_cc_log_ratio"):
        as_measured = feature(old, name)
        assert as_measured < -0.3, name  # what a young tenant used to be judged on
        assert as_measured < young.vector(S)[FEATURE_NAMES.index(name)] < 0.0, name
    assert young.vector() == old.vector(S), "the discount needs the young tenant and the settings"
    # pumping from the same young tenant: 60 codes expected, none verified, still far beyond noise
    pumped = view(sent=70, expected=60.0, verified=0, requests=40, long_sent=70, span=300.0)
    ev = evidence(t_cc=pumped, t_all=t_all, t_p5=pumped, young=True)
    x = ev.vector(S)
    assert x[FEATURE_NAMES.index("min_log_ratio")] < -2.0
    assert x[FEATURE_NAMES.index("t_p5_deficit")] > 3.0


def failing(challenged: float, **kw: float) -> RangeView:
    """A range with ``challenged`` recent challenges, none passed."""
    row = [*(0.0,) * 12, *PAD]
    row[4], row[7] = kw.get("requests", challenged), challenged
    return RangeView(row, S, 0.8, 0.0)


def test_challenges_failed_elsewhere_in_a_served_country_do_not_score_this_block() -> None:
    # a sweep of one block of a declared country: 500 challenges failed there; a real user in another
    # block of it is judged by its own block (a served country is never challenged as a whole)
    t_all = view(sent=400, verified=300, requests=30, long_sent=4000, long_verified=3000)
    swept = failing(500.0)
    declared = evidence(t_cc=swept, t_all=t_all, declared_of=3, declared_volume=S.declared_country_volume)
    assert declared.served and feature(declared, "ch_fail") == 0.0
    assert feature(declared, "c_deficit") == 0.0
    # where the tenant does not serve the country (and is a day old or more), they do
    unserved = evidence(t_cc=swept, t_all=t_all)
    assert not unserved.served and feature(unserved, "ch_fail") > 6.0
    # nor for a tenant under a day old that declared no country, whose real users anywhere are new
    assert feature(evidence(t_cc=swept, t_all=t_all, young=True), "ch_fail") == 0.0
    assert feature(evidence(t_cc=swept, t_all=t_all, young=True, declares=True), "ch_fail") > 6.0
    # the request's own block still counts, served or not
    in_block = evidence(t_cc=swept, t_p5=failing(8.0), t_all=t_all, declared_of=3)
    assert feature(in_block, "ch_fail") > 2.0


def test_a_young_tenants_countries_are_not_challenged_or_farm_blocked_as_a_whole() -> None:
    # a tenant created an hour ago, no country declared: an attack in UZ fails challenges there; its
    # first real users in UZ (other blocks) are not challenged for the country's failures, and one
    # who passed a challenge is not blocked as a farm for the country's passes
    from antifraud.breaker import escalation, range_rules

    t_all = view(sent=50, verified=20, requests=20, long_sent=50, long_verified=20, span=3600.0)
    row = [*(0.0,) * 12, *PAD]
    row[4], row[7], row[8] = 30.0, 30.0, 6.0  # 30 challenges, 6 passed (a farm among a sweep)
    country = RangeView(row, S, 0.8, 3600.0)
    old = evidence(t_cc=country, t_all=t_all)
    young = evidence(t_cc=country, t_all=t_all, young=True)
    got = range_rules(old, S)
    assert got is not None and got.code == "challenges_failing" and got.where == "t_cc"
    assert range_rules(young, S) is None
    # a young tenant that declared its countries (not this one) said where its users are: there the
    # country-level evidence stands
    got = range_rules(evidence(t_cc=country, t_all=t_all, young=True, declares=True), S)
    assert got is not None and got.code == "challenges_failing"
    # 30 challenges, 8 passed: a farm's passes for a day-old tenant's country (≥ 5 passed, ≥ 2 in 3
    # failed); fewer than 4 failed for each passed, so not the prober's pattern either
    row[8] = 8.0
    country = RangeView(row, S, 0.8, 3600.0)
    old = evidence(t_cc=country, t_all=t_all, challenge_passed=True)
    young = evidence(t_cc=country, t_all=t_all, challenge_passed=True, young=True)
    farm = escalation(old, S)
    assert farm is not None and farm.code == "challenge_farm" and farm.where == "t_cc"
    assert escalation(young, S) is None
