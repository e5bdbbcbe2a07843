"""The anti-fraud check on the send path, and the numbers it needs after the send.

The engine (``antifraud.FraudEngine``) decides; this module turns its decision into the API's answer
(allow, ``428 challenge_required``, ``403 fraud_blocked``, ``429 rate_limited``), counts it in
``smsgw_fraud_decisions_total`` / ``smsgw_rate_limited_total`` and logs refusals with masked numbers.
On Redis the whole check (limits, counters, features) is one EVALSHA; when Redis is down the engine
decides on process-local state and says so (``shared_state=False``), which is counted here.

A ``challenge_token`` in the request means the tenant's app verified a human (e.g. a CAPTCHA answer
checked by the tenant's own backend, which is the party calling this API); the gateway passes it on
as ``challenge_passed``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from antifraud import Decision, FraudEngine, FraudRequest, TenantPolicy
from gateway.errors import ApiError
from gateway.phone import Number, country_codes
from gateway.privacy.mask import mask_phone
from gateway.store.records import Principal, Tenant
from metrics.instruments import Instruments

log = logging.getLogger("smsgw.fraud")


SettingsLoader = Callable[[str], Awaitable[dict[str, Any]]]

EXPECTED_KEY = "expected_countries"  # in the tenant's settings: a list of ISO codes


def expected_countries(settings: dict[str, Any]) -> frozenset[str] | None:
    """The destinations a tenant said its users are in (a list of ISO codes in its settings); None
    when it said none (an empty or absent list): its allowed countries stand in when they are a list."""
    got = settings.get(EXPECTED_KEY)
    if not isinstance(got, list) or not got:
        return None
    return frozenset(str(c) for c in got)


def checked_expected(
    values: list[str] | tuple[str, ...],
    allowed: frozenset[str],
    allowed_name: str = "the countries this tenant may send to",
) -> frozenset[str]:
    """Expected countries as a tenant (or operator) gives them: known ISO codes, inside the tenant's
    allowed countries (``allowed``, "*" = every country; ``allowed_name`` in the message); raises
    ``ValueError`` naming the bad ones."""
    codes = country_codes(values)
    outside = codes - allowed if "*" not in allowed else frozenset()
    if outside:
        raise ValueError(f"outside {allowed_name}: {', '.join(sorted(outside))}")
    return codes


def tenant_policy(tenant: Tenant, settings: dict[str, Any]) -> TenantPolicy:
    """The tenant's anti-fraud policy from its record and settings: its allowed countries, what it
    declared it serves (a cold-start prior: its expected countries, else its allowed countries when
    they are a list, ``TenantPolicy.declared``), its fraud mode, and its creation time (which bounds
    how much history its baselines can hold)."""
    return TenantPolicy(
        allowed_countries=None if "*" in tenant.countries else frozenset(tenant.countries),
        expected_countries=expected_countries(settings),
        enforce=settings.get("fraud_mode", "enforce") != "monitor",
        created_at=tenant.created_at,
    )


@dataclass(frozen=True, slots=True)
class ClientSignals:
    """What the app tells about the user behind a send (all optional), as anti-fraud reads it."""

    client_ip: str | None = None
    device_id: str | None = None
    session_id: str | None = None
    challenge_token: str | None = None

    @classmethod
    def of(cls, req: object) -> ClientSignals:
        """From a request body with any of these fields (an OTP, a message, a fraud check)."""
        return cls(
            getattr(req, "client_ip", None),
            getattr(req, "device_id", None),
            getattr(req, "session_id", None),
            getattr(req, "challenge_token", None),
        )


class Fraud:
    """The engine plus each tenant's policy: its destination countries, and ``fraud_mode`` from the
    tenant's settings (``enforce``, or ``monitor``: decide, count and log, but always allow)."""

    def __init__(
        self,
        engine: FraudEngine,
        instruments: Instruments,
        tenant_settings: SettingsLoader,
        refresh_s: float = 10.0,
    ) -> None:
        self.engine = engine
        self.m = instruments
        self._load = tenant_settings
        self._refresh = refresh_s
        # tenant → (its countries, its policy, when to read its settings again)
        self._policies: dict[str, tuple[frozenset[str], TenantPolicy, float]] = {}

    async def _policy(self, who: Principal) -> None:
        countries = who.tenant.countries
        seen = self._policies.get(who.tenant.id)
        if seen is not None and seen[0] == countries and time.monotonic() < seen[2]:
            return
        policy = tenant_policy(who.tenant, await self._load(who.tenant.id))
        if seen is None or seen[1] != policy:
            self.engine.set_tenant_policy(who.tenant.id, policy)
        self._policies[who.tenant.id] = (countries, policy, time.monotonic() + self._refresh)

    def forget_policy(self, tenant_id: str) -> None:
        self._policies.pop(tenant_id, None)

    async def _evaluate(
        self,
        who: Principal,
        num: Number,
        signals: ClientSignals,
        now: float,
        *,
        dry_run: bool,
    ) -> Decision:
        await self._policy(who)
        return await self.engine.evaluate(
            FraudRequest(
                tenant_id=who.tenant.id,
                e164=num.e164,
                country=num.country,
                client_ip=signals.client_ip,
                device_id=signals.device_id,
                session_id=signals.session_id,
                challenge_passed=bool(signals.challenge_token),
                now=now,
            ),
            dry_run=dry_run,
        )

    async def peek(
        self,
        who: Principal,
        num: Number,
        signals: ClientSignals,
        now: float,
    ) -> tuple[Decision, bool]:
        """What the send path would decide now for this request, counting nothing (no limit spent, no
        decision logged or counted); with whether the tenant enforces (False: monitor mode, where a
        refusal is only reported and the send would go ahead)."""
        decision = await self._evaluate(
            who,
            num,
            signals,
            now,
            dry_run=True,
        )
        return decision, self._policies[who.tenant.id][1].enforce

    async def check(
        self,
        who: Principal,
        num: Number,
        signals: ClientSignals,
        now: float,
    ) -> Decision:
        decision = await self._evaluate(
            who,
            num,
            signals,
            now,
            dry_run=False,
        )
        if not decision.shared_state:
            self.m.state_backend_errors.labels("antifraud").inc()
        primary = decision.primary
        reasons = [{"code": r.code, "message": r.message, "scope": r.scope} for r in decision.reasons]
        if decision.action == "rate_limited":
            scope = primary.scope if primary else "number"
            self.m.rate_limited.labels(scope).inc()
            retry = max(1, math.ceil(decision.retry_after or 1))
            raise ApiError(
                "rate_limited",
                f"Too many requests for this {scope}; retry in {retry} s.",
                headers={"Retry-After": str(retry)},
                scope=scope,
                retry_after=retry,
                reasons=reasons,
            )
        self.m.fraud_decisions.labels(num.country, decision.action, primary.code if primary else "none").inc()
        if decision.action == "allow":
            return decision
        log.info(
            "fraud decision",
            extra={
                "decision": decision.action,
                "to": mask_phone(num.e164, num.calling_code),
                "country": num.country,
                "tenant": who.tenant.id,
                "reasons": [r["code"] for r in reasons],
                "score": round(decision.score, 3),
            },
        )
        code = decision.error_code
        if code == "challenge_required":
            raise ApiError(
                code,
                "Prove a human (e.g. a CAPTCHA) and send the request again with 'challenge_token'.",
                reasons=reasons,
            )
        if code == "country_not_permitted" and primary is not None:
            raise ApiError(code, primary.message, country=num.country)
        raise ApiError(
            "fraud_blocked", primary.message if primary else "Refused by anti-fraud.", reasons=reasons
        )
