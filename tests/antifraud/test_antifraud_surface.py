"""The public surface the gateway wires (pinned), and the documentation of every reason code."""

from __future__ import annotations

import inspect
from pathlib import Path

import antifraud
from antifraud import REASON_CODES, FraudEngine

ROOT = Path(__file__).resolve().parents[2]


def test_the_public_surface_is_pinned() -> None:
    assert sorted(antifraud.__all__) == sorted(
        [
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
    )
    for name in antifraud.__all__:
        assert getattr(antifraud, name) is not None


def test_the_engine_calls_the_gateway_makes_keep_their_shape() -> None:
    sig = {
        name: str(inspect.signature(getattr(FraudEngine, name)))
        for name in (
            "evaluate",
            "record_verified",
            "record_delivery_failed",
            "allow",
            "lift",
            "block",
            "unlist",
            "lists",
            "recent_decisions",
            "set_tenant_policy",
            "start",
            "flush",
        )
    }
    assert sig["evaluate"] == "(self, req: 'FraudRequest', *, dry_run: 'bool' = False) -> 'Decision'"
    assert "challenged: 'bool' = False" in sig["record_verified"]
    assert "sent_at: 'float', now: 'float'" in sig["record_delivery_failed"]
    assert "until: 'float | None' = None" in sig["allow"]


def test_every_reason_code_is_documented() -> None:
    doc = (ROOT / "docs" / "antifraud.md").read_text("utf-8")
    missing = [code for code in REASON_CODES if f"`{code}`" not in doc]
    assert not missing, f"document these reason codes in docs/antifraud.md: {missing}"


def test_no_gateway_import_inside_antifraud() -> None:
    for path in (ROOT / "antifraud").rglob("*.py"):
        text = path.read_text("utf-8")
        assert "import gateway" not in text and "from gateway" not in text, path
        assert "import pickle" not in text and "pickle.load" not in text, f"{path}: models are JSON"
