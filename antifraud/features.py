"""From counters to evidence: fill-back judged while codes are pending, velocity, sweeps, diversity.

**Survival-adjusted fill-back.** A code sent ``a`` seconds ago has been verified by now with
probability ``p·F(a)``, where ``p`` is the share of codes real users verify (the tenant's own
per-country baseline, Beta-smoothed towards the country prior) and ``F`` the delay law of real users.
With the survival ``1-F(a) ≈ Σ c_i·exp(-a/θ_i)`` (a mixture fitted once, ``FraudSettings.delay_mixture``),
``Σ_sends p·F(a)`` needs no timestamps: it is ``x - Σ c_i·P_i`` where ``x = Σ p`` and
``P_i = Σ p·exp(-a/θ_i)`` are decayed counters kept per range. So a range's *expected verifications
by now* is known within a minute of the first sends, long before the codes expire (attackers who pause
longer than the code TTL gain nothing). Failed deliveries are taken out of the expectation, so a route
outage does not look like pumping.

Because every send is weighted by its tenant's own baseline ``p``, ``verified / expected`` is ≈ 1 for
normal traffic whatever the tenant mix, and a tenant whose integration never reports some
verifications has a lower ``p``, not a collapsed fill-back. For each range:

* ``ratio = (verified + m) / (expected + m)``: Beta-smoothed (prior mean 1, strength ``m``), so a few
  requests do not swing it;
* ``deficit = (expected - verified) / sqrt(expected + 1)``: how many standard deviations of
  verifications are missing, the evidence that grows with volume;
* ``velocity = log((recent requests + 1) / (usual requests in that time + 1))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from antifraud import keys as K
from antifraud.numbers import NumberInfo
from antifraud.settings import FraudSettings

RANGE_FIELDS_BASE = (
    K.SENT,
    K.EXPECTED,
    K.VERIFIED,
    K.FAILED,
    K.REQUESTS,
    K.LONG_SENT,
    K.LONG_VERIFIED,
    K.CHALLENGED,
    K.CH_PASSED_REQ,
    K.CH_SENT,
    K.CH_EXPECTED,
    K.CH_VERIFIED,
)
NUMBER_FIELDS = (K.NUM_SENT, K.NUM_VERIFIED, K.NUM_HISTORY)
DEVICE_FIELDS = (K.DEV_REQUESTS, K.DEV_HISTORY)
IP_FIELDS = (K.IP_SHORT, K.IP_DAY, K.IP_VERIFIED)
TENANT_FIELDS = (K.LONG_SENT, K.LONG_VERIFIED, K.REQUESTS)
RESEND_FIELDS = (K.RESEND_SENT,)

# Record layouts (schema ids index FraudSettings-derived τ tables, see schema_taus).
RANGE, NUMBER, DEVICE, IP, TENANT, RESEND = 0, 1, 2, 3, 4, 5


def range_fields(settings: FraudSettings) -> tuple[str, ...]:
    return RANGE_FIELDS_BASE + K.pending_fields(len(settings.delay_mixture))


def schema_fields(settings: FraudSettings) -> tuple[tuple[str, ...], ...]:
    return (range_fields(settings), NUMBER_FIELDS, DEVICE_FIELDS, IP_FIELDS, TENANT_FIELDS, RESEND_FIELDS)


def field_taus(settings: FraudSettings) -> dict[str, float]:
    fb, short, long_ = settings.fillback_tau, settings.short_tau, settings.long_tau
    taus: dict[str, float] = {
        K.SENT: fb,
        K.EXPECTED: fb,
        K.VERIFIED: fb,
        K.FAILED: fb,
        K.REQUESTS: short,
        K.LONG_SENT: long_,
        K.LONG_VERIFIED: long_,
        K.CHALLENGED: fb,
        K.CH_PASSED_REQ: fb,
        K.CH_SENT: fb,
        K.CH_EXPECTED: fb,
        K.CH_VERIFIED: fb,
        K.NUM_SENT: settings.number_tau,
        K.NUM_VERIFIED: settings.number_tau,
        K.NUM_HISTORY: settings.history_tau,
        K.DEV_REQUESTS: settings.number_tau,
        K.DEV_HISTORY: settings.history_tau,
        K.IP_SHORT: short,
        K.IP_DAY: settings.number_tau,
        K.IP_VERIFIED: settings.number_tau,
        K.RESEND_SENT: settings.resend_tau,
    }
    mixture = settings.delay_mixture
    for name, (_, theta) in zip(K.pending_fields(len(mixture)), mixture, strict=True):
        taus[name] = 1.0 / (1.0 / theta + 1.0 / fb)
    return taus


def schema_taus(settings: FraudSettings) -> tuple[tuple[float, ...], ...]:
    taus = field_taus(settings)
    return tuple(tuple(taus[f] for f in fields) for fields in schema_fields(settings))


class RangeView:
    """Derived evidence of one range (a row read with ``range_fields``)."""

    __slots__ = (
        "c_deficit",
        "c_ratio",
        "ch_fail",
        "ch_open",
        "ch_passed",
        "challenged",
        "deficit",
        "expected",
        "fail_share",
        "long_deficit",
        "long_expected",
        "long_ratio",
        "long_sent",
        "long_verified",
        "ratio",
        "requests",
        "rising",
        "sent",
        "usual",
        "velocity",
        "verified",
    )

    def __init__(
        self, row: Sequence[float], settings: FraudSettings, p_ref: float = 0.0, span: float = 0.0
    ) -> None:
        """``span``: seconds of history the range can have, when shorter than the baseline window
        (a tenant created minutes ago); 0: the whole window."""
        n, x, v, f, q, lsent, lver, h, j, k, e, u = row[:12]
        pend = 0.0
        i = 12
        for c, _ in settings.delay_mixture:
            pend += c * row[i]
            i += 1
        expected = x - pend
        if f > 0 and n > 0:
            expected -= f * (x / n)
        if expected < 0.0:
            expected = 0.0
        elif expected > x:
            expected = max(x, 0.0)
        m = settings.prior_strength
        sqrt = math.sqrt
        self.sent = n
        self.expected = expected
        self.verified = v
        self.requests = q
        self.long_sent = lsent
        self.long_verified = lver
        self.challenged = h
        self.ratio = (v + m) / (expected + m)
        self.deficit = (expected - v) / sqrt(expected + 1.0)
        # requests in τ short, usually: the day's baseline, or for a range younger than a day its
        # volume over its age (a new tenant's first minutes are not a spike over an empty day)
        base = settings.long_tau if span <= 0.0 else min(settings.long_tau, max(span, settings.short_tau))
        self.usual = settings.short_tau * lsent / base
        self.velocity = math.log((q + 1.0) / (self.usual + 1.0))
        c_expected = e * expected / x if x > 0 and e > 0 else 0.0
        self.c_ratio = (u + m) / (c_expected + m)
        self.c_deficit = (c_expected - u) / sqrt(c_expected + 1.0)
        self.ch_passed = j
        self.ch_open = k - u  # codes sent after passed challenges, not verified (yet)
        self.ch_fail = math.log((h + 1.0) / (j + 1.0))
        self.fail_share = f / (n + 1.0)
        # Over the long window (a day), against the tenant's own verify rate ``p_ref``: catches
        # attacks too slow for the fill-back window ever to hold enough evidence.
        pending = n * (x - expected) / x if x > 0 else 0.0
        long_expected = p_ref * max(lsent - pending, 0.0)
        self.long_expected = long_expected
        self.long_ratio = (lver + m) / (long_expected + m)
        self.long_deficit = (long_expected - lver) / sqrt(long_expected + 1.0)
        # requests in the last minutes well above the usual level (and at least a few)
        self.rising = q >= settings.breaker_velocity * self.usual + 2.0

    def lower_bound(self, settings: FraudSettings) -> tuple[float, float]:
        """``(ratio, deficit)`` with the expected verifications taken at their lower 1-σ bound
        (``expected - √expected``): the safe direction for a range whose baseline is a few minutes
        old, where a handful of codes not verified yet is noise, not missing verifications."""
        e = self.expected
        lo = max(e - math.sqrt(e), 0.0)
        m = settings.prior_strength
        return (self.verified + m) / (lo + m), (lo - self.verified) / math.sqrt(e + 1.0)


@dataclass(frozen=True, slots=True)
class Sweep:
    distinct: int  # other numbers of the 10k block requested within the sweep window
    near: int  # of which within ±20 of this one (sequential sweeps)


# Recent-list entries ("<value>:<epoch s>") parsed once: a list changes by one entry per request,
# so the same strings come back check after check. ``None``: an entry without a time (skipped).
_ENTRIES: dict[str, tuple[str, float, int] | None] = {}


def _parse_entry(item: str) -> tuple[str, float, int] | None:
    value, _, t = item.partition(":")
    got = (value, float(t), int(value) if value.isdigit() else -1) if t else None
    if len(_ENTRIES) > 100_000:
        _ENTRIES.clear()
    _ENTRIES[item] = got
    return got


def sweep_of(entries: Sequence[str], suffix: int, now: float, window: float) -> Sweep:
    seen: set[int] = set()
    near = 0
    get = _ENTRIES.get
    for item in entries:
        got = get(item, _MISSING)
        if got is _MISSING:
            got = _parse_entry(item)
        if got is None or now - got[1] > window:
            continue
        pos = got[2] if got[2] >= 0 else int(got[0])
        if pos == suffix or pos in seen:
            continue
        seen.add(pos)
        if abs(pos - suffix) <= 20:
            near += 1
    return Sweep(len(seen), near)


def distinct_recent(entries: Sequence[str], now: float, window: float, exclude: str = "") -> int:
    seen: set[str] = set()
    get = _ENTRIES.get
    for item in entries:
        got = get(item, _MISSING)
        if got is _MISSING:
            got = _parse_entry(item)
        if got is not None and now - got[1] <= window and got[0] != exclude:
            seen.add(got[0])
    return len(seen)


_MISSING: Any = object()


FEATURE_NAMES: tuple[str, ...] = (
    "t_cc_deficit",
    "t_cc_log_ratio",
    "t_cc_long_deficit",
    "t_p5_long_deficit",
    "country_established",
    "t_p5_deficit",
    "g_cc_deficit",
    "g_p5_deficit",
    "g_p4_deficit",
    "g_p3_deficit",
    "min_log_ratio",
    "t_cc_velocity",
    "t_p5_velocity",
    "g_cc_velocity",
    "g_p5_velocity",
    "g_p4_velocity",
    "g_p3_requests",
    "sweep_distinct",
    "sweep_near",
    "ch_fail",
    "c_deficit",
    "ip_requests",
    "ip_fill",
    "ip_countries",
    "device_verified",
    "kind_voip",
    "kind_fixed",
    "kind_unknown",
    "night",
    "hour_sin",
    "hour_cos",
    "country_risk",
    "log_price",
    "tenant_country_share",
    "tenant_volume",
    "country_failures",
    "challenge_passed",
    "number_unverified",
    "global_country_volume",
)


@dataclass(slots=True)  # not frozen: one is built per check, and a frozen one costs 3× as much
class Evidence:
    """Everything the rules, the model and the reasons look at for one request."""

    t_all: RangeView
    t_cc: RangeView
    t_p5: RangeView
    g_cc: RangeView
    g_p5: RangeView
    g_p4: RangeView
    g_p3: RangeView
    number_sent: float
    number_verified: float
    number_history: float
    device_requests: float
    device_history: float
    ip_short: float
    ip_day: float
    ip_verified: float
    ip_countries: int
    sweep: Sweep
    local_hour: float
    risk: float
    price: float
    info: NumberInfo
    has_ip: bool
    has_device: bool
    challenge_passed: bool
    # the tenant declared this destination (``TenantPolicy.declared``), of that many; 0: not declared
    declared_of: int = 0
    declared_volume: float = 0.0  # FraudSettings.declared_country_volume when declared
    # the tenant is younger than the baseline window (``TenantPolicy.created_at``, a day)
    young: bool = False
    declares: bool = False  # the tenant declared any country at all (``TenantPolicy.declared``)

    @property
    def served(self) -> bool:
        """Real users are expected here: the tenant's own verify (``established``) or it declared the
        country. Country-level rules (a whole country challenged) stay off in a served country."""
        return self.declared_of > 0 or self.established

    @property
    def new_everywhere(self) -> bool:
        """A tenant under a day old that declared no country: every country is new to it, so its
        first real users anywhere look as new as a farm's numbers, and a whole country is not
        judged by the failures of an attack in it. A tenant that declared its countries has said
        where its users are: elsewhere the country-level evidence stands."""
        return self.young and not self.declares

    @property
    def cold_declared(self) -> bool:
        """A declared country where the tenant has no real users of its own yet (cold start), or any
        declared country of a tenant younger than a day: its short history there says little (a
        day's baseline it does not have, a share of a few minutes' traffic), so the features that
        compare the destination with the tenant's own past are taken from the declaration, at
        least, instead. Twenty verifications in the first hour do not make a baseline."""
        return self.declared_of > 0 and (self.young or not self.established)

    @property
    def ranges(self) -> tuple[tuple[str, RangeView], ...]:
        return (
            ("t_cc", self.t_cc),
            ("t_p5", self.t_p5),
            ("g_cc", self.g_cc),
            ("g_p5", self.g_p5),
            ("g_p4", self.g_p4),
            ("g_p3", self.g_p3),
        )

    @property
    def established(self) -> bool:
        """The tenant's real users verify codes in this country (≥ 2 % of its verifications)."""
        return self.t_cc.long_verified >= max(20.0, 0.02 * self.t_all.long_verified)

    @property
    def number_unverified(self) -> float:
        return max(self.number_sent - self.number_verified, 0.0)

    def vector(self, settings: FraudSettings | None = None) -> list[float]:
        """The model's features. ``settings``: for a young tenant (``young``), the fill-back
        features are taken at the lower 1-σ bound of the expected verifications
        (:meth:`RangeView.lower_bound`); without settings (or for an older tenant), as measured."""
        views = (self.t_cc, self.t_p5, self.g_cc, self.g_p5, self.g_p4, self.g_p3)  # as ``ranges``
        if self.young and settings is not None:
            fill = [r.lower_bound(settings) for r in views]
        else:
            fill = [(r.ratio, r.deficit) for r in views]
        min_log_ratio = 0.0
        for r, (ratio, _) in zip(views, fill, strict=True):
            if r.expected >= 1.0:
                min_log_ratio = min(min_log_ratio, math.log(ratio))
        (t_cc_ratio, t_cc_def), (_, t_p5_def), (_, g_cc_def), (_, g_p5_def), (_, g_p4_def), (_, g_p3_def) = (
            fill
        )
        if self.served or self.new_everywhere:
            # a served country is never challenged as a whole: challenges failed elsewhere in it (a
            # sweep of other blocks) say nothing of this request's block, which its own views judge;
            # nor is a country of a tenant under a day old that declared none
            ch_fail = max(self.t_p5.ch_fail, self.g_p4.ch_fail)
            c_def = max(self.t_p5.c_deficit, self.g_p4.c_deficit)
        else:
            ch_fail = max(self.t_cc.ch_fail, self.t_p5.ch_fail, self.g_p4.ch_fail)
            c_def = max(self.t_cc.c_deficit, self.t_p5.c_deficit, self.g_p4.c_deficit)
        hour = self.local_hour
        angle = 2.0 * math.pi * hour / 24.0
        kind = self.info.kind
        t_cc_velocity = self.t_cc.velocity
        share = math.log((self.t_cc.long_sent + 1.0) / (self.t_all.long_sent + 1.0))
        g_volume = math.log1p(self.g_cc.long_sent)
        if self.cold_declared:
            # judged against the declaration, not an empty history: the tenant's requests now spread
            # over its declared countries (not a day's baseline it does not have yet), at least an even
            # share of its traffic, and a destination the gateway sends to
            n = float(self.declared_of)
            t_cc_velocity = min(
                t_cc_velocity, math.log((self.t_cc.requests + 1.0) / (self.t_all.requests / n + 1.0))
            )
            share = max(share, -math.log(n))
            g_volume = max(g_volume, math.log1p(self.declared_volume))
        return [
            _clip(t_cc_def),
            math.log(t_cc_ratio),
            _clip(self.t_cc.long_deficit) if self.t_cc.rising else 0.0,
            _clip(self.t_p5.long_deficit) if self.t_p5.rising else 0.0,
            1.0 if self.established else 0.0,
            _clip(t_p5_def),
            _clip(g_cc_def),
            _clip(g_p5_def),
            _clip(g_p4_def),
            _clip(g_p3_def),
            min_log_ratio,
            t_cc_velocity,
            self.t_p5.velocity,
            self.g_cc.velocity,
            self.g_p5.velocity,
            self.g_p4.velocity,
            math.log1p(self.g_p3.requests),
            float(min(self.sweep.distinct, 16)),
            float(min(self.sweep.near, 16)),
            ch_fail,
            _clip(c_def),
            math.log1p(self.ip_short),
            math.log((self.ip_verified + 1.0) / (0.7 * self.ip_day + 1.0)),
            float(min(self.ip_countries, 10)),
            1.0 if self.device_history >= 0.5 else 0.0,
            1.0 if kind == "voip" else 0.0,
            1.0 if kind == "fixed_line" else 0.0,
            1.0 if kind == "unknown" else 0.0,
            1.0 if hour < 6.0 else 0.0,
            math.sin(angle),
            math.cos(angle),
            math.log(self.risk / (1.0 - self.risk)),
            math.log(self.price),
            share,
            math.log1p(self.t_all.long_sent),
            self.g_cc.fail_share,
            1.0 if self.challenge_passed else 0.0,
            math.log1p(self.number_unverified),
            g_volume,
        ]


def _clip(x: float, floor: float = 2.0, hi: float = 25.0) -> float:
    """Evidence beyond the noise floor: deficits under 2 σ happen all the time in real traffic."""
    x -= floor
    return 0.0 if x < 0.0 else hi if x > hi else x


def fit_delay_mixture(
    delays: Sequence[float], thetas: Sequence[float] = (8.0, 20.0, 45.0, 300.0), horizon: float = 1200.0
) -> tuple[tuple[float, float], ...]:
    """Fit ``S(a) ≈ Σ c_i·exp(-a/θ_i)`` to observed verification delays (seconds) by least squares.

    Offline helper (numpy), e.g. from the delays of last week's verified OTPs; the result goes into
    ``FraudSettings.delay_mixture``.
    """
    import numpy as np

    d = np.sort(np.asarray(delays, dtype=float))
    if d.size < 50:
        raise ValueError("need at least 50 delays to fit the delay law")
    ages = np.linspace(0.0, horizon, 481)
    survival = 1.0 - np.searchsorted(d, ages, side="right") / d.size
    basis = np.exp(-ages[:, None] / np.asarray(thetas, dtype=float)[None, :])
    coef, *_ = np.linalg.lstsq(basis, survival, rcond=None)
    return tuple((float(c), float(t)) for c, t in zip(coef, thetas, strict=True))
