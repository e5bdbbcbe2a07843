"""Guard rails: explainable rules that act whatever the model says.

Each rule reads the :class:`~antifraud.features.Evidence` of one request and yields a
:class:`Finding`. Rules are evaluated from the smallest range up, and only the first range-level
finding is reported, so the reason names the smallest range that explains the anomaly.

=========================  ===============================================================  =========
rule                       fires when                                                       action
=========================  ===============================================================  =========
number_unverified_repeat   ≥ 6 (3) codes to this number in a day, none verified             block (challenge)
range_sweep                ≥ 5 other numbers of this 10k block requested in 10 min           challenge
prefix_fillback_low        in a 1k/10k/100k block (this tenant's or everyone's): ≥ 4 σ of   challenge
                           verifications missing, verified/expected ≤ 0.35, requests ≥ 2×
                           usual, and no route outage in the country
country_fillback_low       the same for the country, stricter (≥ 6 σ, ≤ 0.35, ≥ 2×)          challenge
challenges_failing         ≥ 4 challenges in the last ~30 min in the range, ≥ 3 in 4 never  challenge
                           passed, and requests still coming (in a country the tenant does
                           not serve: whether or not requests are still coming)
challenge_farm             the request passed a challenge in a block (or a country where     block
                           the tenant has no real users) where ≥ 5 challenges were passed
                           in ~30 min while ≥ 2 in 3 failed (CAPTCHA farm); or, in a country
                           the tenant does not serve and never had a code verified in, ≥ 3
                           recent challenges (4 for a tenant under a day old) with ≥ 3 (4)
                           failed for each passed, outside the request's own 10k block
challenge_not_verifying    the request passed a challenge, but codes sent after passed      block
                           challenges in its range are not verified (≥ 4 σ, ≤ 0.35; where a
                           range rule fires for the request: ≥ 2 σ, ≤ 0.5, a CAPTCHA farm
                           that passes every challenge; or ≥ 5 such codes still open in
                           a 10k/100k block a rule flags; in a country the tenant does not
                           serve, a day old or more, where none of its codes was ever
                           verified and ≥ 2 recent challenges mostly failed: one such code)
=========================  ===============================================================  =========

**Breakers lift by themselves.** Nothing is latched: every request re-reads decayed counters. Once
an attack stops, requests fade from the velocity counter within minutes (τ short = 5 min), the
missing verifications fade with the fill-back window (τ = 30 min) and real users who pass a challenge
and verify pull the ratio back up. While an attack goes on, its failed challenges keep the range
challenged, however slow the attacker is.

**Outage or pumping?** Failed deliveries are taken out of the expected verifications
(``features.py``), and while a country's delivery failure share is above
``outage_failure_share`` the fill-back breakers stay quiet there: a route outage hits many ranges and
operators at once with delivery errors; pumping concentrates on a few blocks with rising volume and
receipts that say "delivered".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from antifraud.features import Evidence, RangeView
from antifraud.settings import FraudSettings

RangeName = Literal["t_cc", "t_p5", "g_cc", "g_p5", "g_p4", "g_p3", "number"]


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    action: Literal["challenge", "block"]
    where: RangeName  # which counters: t_ = this tenant's, g_ = across tenants
    detail: str


# smallest range first; tenant before global at the same depth
_PREFIX_ORDER: tuple[RangeName, ...] = ("g_p3", "g_p4", "t_p5", "g_p5")
_COUNTRY_ORDER: tuple[RangeName, ...] = ("t_cc", "g_cc")
_CHALLENGE_ORDER: tuple[RangeName, ...] = ("g_p4", "t_p5", "g_p5", "t_cc")
_ESCALATION_ORDER: tuple[RangeName, ...] = (*_CHALLENGE_ORDER, "g_cc")
_BLOCK_ORDER: tuple[RangeName, ...] = ("g_p4", "t_p5", "g_p5")


def _view(ev: Evidence, name: RangeName) -> RangeView:
    view: RangeView = getattr(ev, name)
    return view


def route_outage(ev: Evidence, s: FraudSettings) -> bool:
    return ev.g_cc.fail_share >= s.outage_failure_share or ev.t_cc.fail_share >= s.outage_failure_share


def rising(r: RangeView, s: FraudSettings) -> bool:
    """Requests in the last minutes well above the range's usual level (and at least a few)."""
    return r.rising


def _collapsed(r: RangeView, deficit: float, s: FraudSettings) -> bool:
    return r.deficit >= deficit and r.ratio <= s.breaker_ratio and rising(r, s)


def _fill(r: RangeView) -> str:
    return f"{r.verified:.0f} verified of {r.expected:.0f} expected by now"


def _long_collapsed(r: RangeView, s: FraudSettings) -> bool:
    return r.long_deficit >= s.breaker_deficit + 2.0 and r.long_ratio <= s.breaker_ratio and rising(r, s)


def _long_fill(r: RangeView) -> str:
    return f"{r.long_verified:.0f} verified of {r.long_expected:.0f} expected today"


def number_finding(sent: float, verified: float, history: float, s: FraudSettings) -> Finding | None:
    """The number's own evidence (its counters: codes sent today, verified today, verified ever)."""
    unverified = max(sent - verified, 0.0)
    if unverified >= s.unverified_repeat_block:
        return Finding("number_unverified_repeat", "block", "number", f"{unverified:.0f} codes today")
    if unverified >= s.unverified_repeat_challenge and history < 0.5:
        return Finding("number_unverified_repeat", "challenge", "number", f"{unverified:.0f} codes today")
    return None


def range_rules(ev: Evidence, s: FraudSettings) -> Finding | None:
    """The first range-level finding, smallest range first (challenge only)."""
    if ev.sweep.distinct >= s.sweep_distinct:
        return Finding(
            "range_sweep",
            "challenge",
            "g_p4",
            f"{ev.sweep.distinct} other numbers of the block in {s.sweep_window / 60:.0f} min",
        )
    # a country where this tenant's real users verify is never challenged as a whole (only the
    # blocks inside it): blocking a served country is the false-positive disaster to avoid
    country_level = not ev.served
    if not route_outage(ev, s):
        for name in _PREFIX_ORDER:
            r = _view(ev, name)
            if _collapsed(r, s.breaker_deficit, s):
                return Finding("prefix_fillback_low", "challenge", name, _fill(r))
        if _long_collapsed(ev.t_p5, s):
            return Finding("prefix_fillback_low", "challenge", "t_p5", _long_fill(ev.t_p5))
        if country_level:
            for name in _COUNTRY_ORDER:
                r = _view(ev, name)
                if _collapsed(r, s.breaker_deficit + 2.0, s):
                    return Finding("country_fillback_low", "challenge", name, _fill(r))
            if _long_collapsed(ev.t_cc, s):
                return Finding("country_fillback_low", "challenge", "t_cc", _long_fill(ev.t_cc))
    for name in _CHALLENGE_ORDER:
        if name == "t_cc" and (not country_level or ev.new_everywhere):
            continue
        r = _view(ev, name)
        # in a country the tenant does not serve, failed challenges alone keep it challenged
        # (an adaptive prober pauses between ranges); elsewhere only while requests keep coming
        active = name == "t_cc" or rising(r, s)
        if r.challenged >= 4.0 and r.ch_fail >= math.log(4.0) and active:
            return Finding(
                "challenges_failing", "challenge", name, f"{r.challenged:.0f} challenges, few passed"
            )
    return None


def _never_verified(ev: Evidence, s: FraudSettings) -> bool:
    """A country the tenant neither serves nor declared, where it never had a code verified (its
    day's decayed counter)."""
    return not ev.served and ev.t_cc.long_verified < s.unproven_verified


def _unproven(ev: Evidence, s: FraudSettings) -> bool:
    """A country the tenant neither serves nor declared, where, a day old or more, it never had a code
    verified (its day's decayed counter), and whose recent challenges were mostly not passed. A
    younger tenant's empty history there says nothing yet (``Evidence.young``)."""
    r = ev.t_cc
    return (
        not ev.young
        and _never_verified(ev, s)
        and r.challenged >= s.unproven_challenges
        and r.ch_fail >= math.log(2.0)
    )


def _failing_unproven(ev: Evidence, s: FraudSettings) -> bool:
    """Where none of the tenant's codes was ever verified and it does not serve the country, its
    recent challenges there failed ``n`` times or more for each one passed (``n`` challenges at
    least): a prober's CAPTCHA farm, whose passes are the exception among its failures. Real users
    pass most challenges they get. ``n`` is ``unproven_failing``, or ``unproven_failing_young`` for a
    tenant younger than a day, whose empty history is no evidence but whose failed challenges are.
    The failures must lie outside the request's own 10k block (fewer than ``n`` there): a prober
    that takes a fresh block after each refusal spreads them; inside a block under attack the
    block's own farm rule judges (``farm_passes``), so a real user there keeps the challenge they
    passed."""
    r = ev.t_cc
    n = s.unproven_failing_young if ev.young else s.unproven_failing
    return (
        _never_verified(ev, s) and r.challenged >= n and r.ch_fail >= math.log(n) and ev.g_p4.challenged < n
    )


def escalation(ev: Evidence, s: FraudSettings, attacked: bool = False) -> Finding | None:
    """For a request that passed a challenge: block when the range is under attack and challenges
    are passed far more often than its real users could, or passed challenges are not verifying.

    ``attacked``: a range rule fires for the request right now (a sweep, a fill-back collapse,
    failing challenges). There a CAPTCHA farm that passes every challenge is met sooner: a few codes
    sent after passed challenges that go unverified are enough (``farm_deficit``, ``farm_ratio``),
    since real users who pass a challenge verify their code as often as anyone, and in a block under
    attack a handful of codes sent after passed challenges and still unverified is enough
    (``farm_open``): a farm sends them seconds apart, before any could be verified."""
    if not ev.challenge_passed:
        return None
    for name in _CHALLENGE_ORDER:
        if name == "t_cc" and (
            ev.declared_of > 0 or ev.new_everywhere or ev.t_cc.long_verified >= s.farm_country_verified
        ):
            # where the tenant has (or declared) real users, their passed challenges are no farm; a
            # tenant under a day old that declared nothing has no history to tell its first real
            # users from a farm anywhere
            continue
        r = _view(ev, name)
        if r.ch_passed >= s.farm_passes and r.ch_fail >= math.log(3.0):
            return Finding(
                "challenge_farm", "block", name, f"{r.ch_passed:.0f} challenges passed, most others failed"
            )
    r = ev.t_cc
    if _unproven(ev, s) and r.ch_open >= s.unproven_open:
        # where nothing was ever verified and challenges fail, a code sent after a passed challenge
        # that is still not verified makes the next passed challenge a farm's
        return Finding(
            "challenge_not_verifying",
            "block",
            "t_cc",
            f"{r.ch_open:.0f} codes sent after passed challenges unverified, none ever verified here",
        )
    if _failing_unproven(ev, s):
        return Finding(
            "challenge_farm",
            "block",
            "t_cc",
            f"{r.challenged:.0f} recent challenges here, most failed, and none of its codes ever verified",
        )
    if attacked:
        for name in _BLOCK_ORDER:
            r = _view(ev, name)
            if r.ch_open >= s.farm_open:
                return Finding(
                    "challenge_not_verifying",
                    "block",
                    name,
                    f"{r.ch_open:.0f} codes sent after passed challenges in a block under attack, unverified",
                )
    deficit, ratio = (s.farm_deficit, s.farm_ratio) if attacked else (s.breaker_deficit, s.breaker_ratio)
    for name in _ESCALATION_ORDER:
        r = _view(ev, name)
        if r.c_deficit >= deficit and r.c_ratio <= ratio:
            return Finding(
                "challenge_not_verifying", "block", name, "codes sent after passed challenges go unverified"
            )
    return None
