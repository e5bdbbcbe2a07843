"""What the engine is asked and what it answers: ``FraudRequest`` in, ``Decision`` out.

A newcomer asking "why was this OTP blocked?" starts here. Every refusal carries at least one
:class:`Reason`: a stable machine ``code`` from :data:`REASON_CODES` (documented in
``docs/antifraud.md``), a human ``message`` that never contains a full phone number, and the
``scope`` the evidence is about (``number``, ``prefix``, ``country``, ``ip``, ``device``, ``tenant``).

Actions and how the gateway answers them::

    allow         → send the SMS
    challenge     → 428 challenge_required; the app proves a human and retries with challenge_passed
    block         → 403 fraud_blocked (403 country_not_permitted when the only reason is geo)
    rate_limited  → 429 rate_limited with Retry-After = ceil(retry_after)

Rule of thumb behind the actions: evidence about the *number* or a *rule* (premium-rate type,
unassigned range, a number requested again and again without ever verifying) blocks; evidence about a
*range* (fill-back collapse in a prefix, a sweep through a block, an unusual country) only challenges,
so real users caught in a suspicious range pass. A challenge is escalated to a block only when the
range keeps failing *after* challenges were passed (a CAPTCHA farm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Action = Literal["allow", "challenge", "block", "rate_limited"]
Scope = Literal["number", "prefix", "country", "ip", "device", "tenant"]

# Stable reason codes. Changing one is a breaking change for dashboards and client apps.
REASON_CODES: dict[str, str] = {
    "country_not_permitted": "the tenant may not send to this destination country",
    "number_invalid": "the number is not valid for its country (unassigned range or wrong length)",
    "number_type_blocked": "the number type is refused by policy (premium-rate, shared-cost, UAN, …)",
    "number_type_challenged": "the number type needs a challenge by policy (e.g. VoIP)",
    "number_nongeographic": "a satellite or global-service number (+881, +870, …): very high cost",
    "blocklisted": "an administrator blocked this number, prefix or country",
    "rate_limited": "a rate limit of the given scope is reached",
    "number_unverified_repeat": "codes were sent again and again to this number and none was verified",
    "range_sweep": "many distinct neighbouring numbers of one block were requested within minutes",
    "prefix_fillback_low": "codes sent to this number range are not being verified, while volume rises",
    "country_fillback_low": "codes sent to this country are not being verified, while volume rises",
    "velocity_spike": "volume to this range or country is far above its usual level",
    "country_unusual": "a destination this tenant rarely or never sends to, with a high pumping risk",
    "challenges_failing": "most challenges issued for this range or country are never passed",
    "challenge_not_verifying": "codes sent after passed challenges are not verified in this range",
    "challenge_farm": "challenges for this range are passed far more often than real users do",
    "ip_multi_country": "one client IP asks for codes to many destination countries",
    "ip_velocity": "one client IP asks for many codes that are not verified",
    "number_type_risky": "the number type (VoIP, landline) makes pumping more likely",
    "new_tenant_risk": "a tenant with no history sends to a high-risk destination",
    "fraud_score": "the combined fraud score is high",
}


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str
    scope: str

    def __post_init__(self) -> None:
        if self.code not in REASON_CODES:
            raise ValueError(f"unknown reason code {self.code!r}")


@dataclass(frozen=True, slots=True)
class FraudRequest:
    """One OTP or message send the gateway wants to make. ``now`` is the request time (epoch s)."""

    tenant_id: str
    e164: str
    country: str
    client_ip: str | None = None
    device_id: str | None = None
    session_id: str | None = None
    challenge_passed: bool = False
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reasons: tuple[Reason, ...] = ()
    retry_after: float | None = None
    score: float = 0.0
    # False when Redis could not be reached and local (per-process) state decided instead.
    shared_state: bool = True
    # Echoed by the gateway to record_verified / record_delivery_failed: it marks sends made after a
    # passed challenge, whose fill-back is tracked apart (a CAPTCHA farm is caught by it).
    challenged: bool = False

    @property
    def primary(self) -> Reason | None:
        return self.reasons[0] if self.reasons else None

    @property
    def http_status(self) -> int:
        return {"allow": 202, "challenge": 428, "block": 403, "rate_limited": 429}[self.action]

    @property
    def error_code(self) -> str | None:
        """The contract's error code for a refusal, None for allow."""
        if self.action == "allow":
            return None
        if self.action == "challenge":
            return "challenge_required"
        if self.action == "rate_limited":
            return "rate_limited"
        if self.reasons and all(r.code == "country_not_permitted" for r in self.reasons):
            return "country_not_permitted"
        return "fraud_blocked"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A reviewable decision, as kept in the recent-decisions log (numbers masked)."""

    at: float
    tenant_id: str
    number: str  # masked: country code and the last two digits
    country: str
    action: Action
    codes: tuple[str, ...]
    score: float
    messages: tuple[str, ...] = field(default=())


def mask_e164(e164: str, country_code: int | None = None) -> str:
    """'+4915123456789' → '+49*********89': the country code and the last two digits, nothing more."""
    digits = e164.lstrip("+")
    if not digits.isdigit() or len(digits) < 6:
        return "+" + "*" * max(len(digits), 4)
    cc = str(country_code) if country_code else digits[:1]
    hidden = len(digits) - len(cc) - 2
    return f"+{cc}{'*' * max(hidden, 1)}{digits[-2:]}"


def describe_prefix(prefix: str, country_code: int) -> str:
    """A range for humans: '+49151234' (1k block) → '+49 151234xxx'. Prefixes are never full numbers."""
    digits = prefix.lstrip("+")
    cc = str(country_code)
    return f"+{cc} {digits[len(cc) :]}" if digits.startswith(cc) else f"+{digits}"
