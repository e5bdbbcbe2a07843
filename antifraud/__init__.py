"""smsgw anti-fraud: rate limits, geo permissions, number rules and an SMS-pumping detector.

A library the gateway calls on every send; it takes plain values in and never imports ``gateway``.
Wiring, in short::

    backend = MemoryFraudBackend()                       # or RedisFraudBackend(redis.asyncio.Redis)
    engine = FraudEngine(FraudSettings(...), backend, load_scorer(), clock=time.time)
    engine.set_tenant_policy(tenant_id, TenantPolicy(allowed_countries=...))
    decision = await engine.evaluate(FraudRequest(tenant_id, e164, country, ip, device, session,
                                                  challenge_passed, now))
    ... decision.action in {"allow", "challenge", "block", "rate_limited"}, decision.reasons ...
    await engine.record_verified(tenant_id, e164, country, sent_at, now, challenged=decision.challenged)
    await engine.record_delivery_failed(tenant_id, e164, country, sent_at, now)

Training (``antifraud.model.train``), the simulator (``antifraud.simulate``) and the evaluation report
(``antifraud.evaluate``) are imported on demand. How each signal works, the reason codes and the
evaluation figures: ``docs/antifraud.md``.
"""

from antifraud.decision import (
    REASON_CODES,
    Action,
    Decision,
    DecisionRecord,
    FraudRequest,
    Reason,
    mask_e164,
)
from antifraud.engine import EngineStats, FraudEngine
from antifraud.geo import DEFAULT_ALLOWED_COUNTRIES, parse_country_list
from antifraud.limits import BackendStats, FraudBackend
from antifraud.limits_memory import MemoryFraudBackend
from antifraud.limits_redis import RedisFraudBackend
from antifraud.numbers import NumberInfo, number_info
from antifraud.scorer import LinearScorer, ModelError, RulesOnlyScorer, Scorer, load_scorer
from antifraud.settings import (
    DEFAULT_LIMITS,
    DEFAULT_NUMBER_TYPES,
    FraudSettings,
    LimitRule,
    TenantPolicy,
)

__all__ = [
    "DEFAULT_ALLOWED_COUNTRIES",
    "DEFAULT_LIMITS",
    "DEFAULT_NUMBER_TYPES",
    "REASON_CODES",
    "Action",
    "BackendStats",
    "Decision",
    "DecisionRecord",
    "EngineStats",
    "FraudBackend",
    "FraudEngine",
    "FraudRequest",
    "FraudSettings",
    "LimitRule",
    "LinearScorer",
    "MemoryFraudBackend",
    "ModelError",
    "NumberInfo",
    "Reason",
    "RedisFraudBackend",
    "RulesOnlyScorer",
    "Scorer",
    "TenantPolicy",
    "load_scorer",
    "mask_e164",
    "number_info",
    "parse_country_list",
]
