"""Typed anti-fraud settings: engine-wide knobs and per-tenant policies. Plain values in, no I/O.

The gateway builds these once from its own configuration (nothing here reads the environment) and
hands a tenant's policy to the engine when the tenant is created or changed
(:meth:`antifraud.engine.FraudEngine.set_tenant_policy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from antifraud.geo import DEFAULT_ALLOWED_COUNTRIES
from antifraud.numbers import ALL_KINDS, NumberKind

LimitScope = Literal["tenant", "number", "ip", "device", "prefix", "country"]
LIMIT_SCOPES: tuple[LimitScope, ...] = ("tenant", "number", "ip", "device", "prefix", "country")
TypeAction = Literal["allow", "score", "challenge", "block"]

MINUTE, HOUR, DAY = 60, 3600, 86400


@dataclass(frozen=True, slots=True)
class LimitRule:
    """At most ``limit`` sends per ``window`` seconds per value of ``scope`` (sliding window)."""

    scope: LimitScope
    window: int
    limit: int

    def __post_init__(self) -> None:
        if self.scope not in LIMIT_SCOPES:
            raise ValueError(f"unknown limit scope {self.scope!r}")
        if self.window <= 0 or self.limit < 0:
            raise ValueError(f"limit {self.scope}/{self.window}s needs window > 0 and limit ≥ 0")


# Per-number limits follow login.gov / Telnyx / Sentry practice (3–5 per 5–10 min); IP limits are
# loose on purpose (carrier-grade NAT puts 10–200 real users behind one address); per-prefix limits
# are per tenant on a 10k block (E.164 minus 4 digits), where real traffic is a few a day.
DEFAULT_LIMITS: tuple[LimitRule, ...] = (
    LimitRule("number", MINUTE, 3),
    LimitRule("number", HOUR, 8),
    LimitRule("number", DAY, 15),
    LimitRule("device", MINUTE, 5),
    LimitRule("device", HOUR, 20),
    LimitRule("device", DAY, 60),
    LimitRule("ip", MINUTE, 60),
    LimitRule("ip", HOUR, 600),
    LimitRule("ip", DAY, 5000),
    LimitRule("prefix", MINUTE, 20),
    LimitRule("prefix", HOUR, 200),
    LimitRule("prefix", DAY, 2000),
)

# Refused outright: these numbers earn their owner money per SMS or cannot be a person's phone.
DEFAULT_NUMBER_TYPES: Mapping[NumberKind, TypeAction] = MappingProxyType(
    {
        "mobile": "allow",
        "fixed_line_or_mobile": "allow",
        "fixed_line": "score",
        "voip": "score",
        "unknown": "score",
        "premium_rate": "block",
        "shared_cost": "block",
        "uan": "block",
        "personal_number": "block",
        "pager": "block",
        "voicemail": "block",
        "toll_free": "block",
    }
)


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    # None = every country; new tenants get the operator's safe list.
    allowed_countries: frozenset[str] | None = DEFAULT_ALLOWED_COUNTRIES
    limits: tuple[LimitRule, ...] = DEFAULT_LIMITS
    number_types: Mapping[NumberKind, TypeAction] = field(default_factory=lambda: DEFAULT_NUMBER_TYPES)
    block_nongeographic: bool = True  # satellite and global-service numbers
    prefix_limit_digits: int = 4  # the "prefix" limit scope = E.164 minus this many digits
    challenge_threshold: float | None = None  # None: the model's own threshold
    enforce: bool = True  # False: monitor mode, decisions computed and logged but always allow
    # The destinations the tenant declared it serves (``tenant create --countries``); None: its allowed
    # countries when they are a list. Until the tenant has real users of its own there, a declared
    # country is not "unusual" for it (``Evidence.vector``, cold start).
    expected_countries: frozenset[str] | None = None
    # When the tenant was created (epoch seconds; None: long ago). A tenant younger than the baseline
    # window (a day) has baselines that cover only its age, so its usual volume is taken over its age.
    created_at: float | None = None

    def __post_init__(self) -> None:
        unknown = set(self.number_types) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"unknown number types: {sorted(unknown)}")
        if not 3 <= self.prefix_limit_digits <= 5:
            raise ValueError("prefix_limit_digits must be 3, 4 or 5")

    def with_countries(self, countries: frozenset[str] | None) -> TenantPolicy:
        return replace(self, allowed_countries=countries)

    @property
    def declared(self) -> frozenset[str]:
        """The countries the tenant declared (empty when it may send everywhere and said no more)."""
        got = self.expected_countries if self.expected_countries is not None else self.allowed_countries
        return got or frozenset()


@dataclass(frozen=True, slots=True)
class FraudSettings:
    """Engine-wide knobs. Times in seconds."""

    # Secret for the keyed hashes that replace numbers, IPs and devices in shared-state keys.
    key_secret: bytes = b"smsgw-antifraud"
    # the braces are a Redis Cluster hash tag: every key one check touches (tenant, number, range, IP,
    # sweep) is in one slot, so the one-script check stays valid on a cluster
    key_prefix: str = "smsgw:{af}:"
    default_policy: TenantPolicy = field(default_factory=TenantPolicy)
    tenants: Mapping[str, TenantPolicy] = field(default_factory=dict)
    # Time constants of the decayed counters.
    fillback_tau: float = 1800.0  # fill-back and challenge evidence
    short_tau: float = 120.0  # request velocity
    long_tau: float = 86400.0  # baselines (usual volume, tenant fill-back)
    number_tau: float = 86400.0  # sends per number
    history_tau: float = 30 * 86400.0  # "this number / device verified before"
    # A resend: a code was sent to this number for the same session (or device) within about an OTP's
    # lifetime (decayed count ≥ resend_min, τ resend_tau). It is the retry of a user whose SMS was late
    # or lost, so range rules and the model do not refuse it; the number's own evidence and limits do.
    resend_tau: float = 300.0
    resend_min: float = 0.3
    # Verification delay law of real users as a mixture of exponentials: survival
    # S(a) ≈ Σ c·exp(-a/θ). Fitted to log-normal(median 25 s, σ 0.8) + 2 % after 5 min, max error 0.011.
    delay_mixture: tuple[tuple[float, float], ...] = (
        (-0.677, 8.0),
        (1.521, 20.0),
        (0.109, 45.0),
        (0.052, 300.0),
    )
    prior_strength: float = 4.0  # Beta prior of a range's fill-back, in expected verifications
    tenant_prior_strength: float = 50.0  # Beta prior of a tenant's own per-country fill-back
    # Guard rails (see breaker.py).
    breaker_deficit: float = 4.0  # missing verifications, in standard deviations
    breaker_ratio: float = 0.35  # verified / expected at or below which a range collapsed
    breaker_velocity: float = 2.0  # requests now / usual at or above which volume rises
    outage_failure_share: float = 0.25  # delivery failures above which a country has a route outage
    sweep_window: float = 600.0  # how far back the sweep detector looks
    sweep_distinct: int = 5  # distinct numbers of one 10k block in the window that make a sweep
    sweep_list: int = 16  # neighbours remembered per 10k block
    farm_passes: float = 5.0  # passed challenges in a range under attack that betray a CAPTCHA farm
    # Codes sent after passed challenges that go unverified, in a range a rule flags right now (a farm
    # that passes every challenge): missing verifications in σ, and verified / expected at or below.
    farm_deficit: float = 2.0
    farm_ratio: float = 0.5
    farm_open: float = 4.5  # such codes not verified (yet) in a 10k/100k block a rule flags: 5 (decayed)
    farm_country_verified: float = 20.0  # verifications a day above which a country has real users
    # A country the tenant does not serve and where none of its codes was ever verified (the day's
    # decayed counter below this), with this many recent challenges there, mostly failed: a passed
    # challenge is blocked once a code sent after an earlier passed one stays unverified (an adaptive
    # prober with a CAPTCHA farm, which takes a fresh block after each refusal).
    unproven_verified: float = 0.5
    unproven_challenges: float = 2.0
    unproven_open: float = 0.9
    # There, with at least this many recent challenges and as many failed for each one passed, the
    # first passed challenge is blocked too (a farm's pass among a prober's failures); for a tenant
    # younger than a day, in a country it did not declare, the ``_young`` count (its empty history
    # alone is no evidence, its failures are).
    unproven_failing: float = 3.0
    unproven_failing_young: float = 4.0
    # Cold start in a declared country: the gateway's volume there counts as at least this many sends a
    # day (a destination the tenant said it serves is not unusual because the gateway is new to it).
    declared_country_volume: float = 1000.0
    unverified_repeat_challenge: float = 3.0  # sends to one number in a day, none verified
    unverified_repeat_block: float = 6.0
    lift_seconds: float = 3600.0  # how long "lift a block" exempts a number/prefix from range rules
    decisions_kept: int = 1000  # recent refusals kept per tenant for review
    fallback_retry_seconds: float = 1.0  # after a Redis failure, local state for this long

    def policy_for(self, tenant_id: str) -> TenantPolicy:
        return self.tenants.get(tenant_id, self.default_policy)
