"""Sender IDs at the gateway: registrations stored and audited, documents sealed, brand profiles, and the
send-time check (``SenderIds.check``) backed by senderid's in-memory index, invalidated on every change
here and, for changes made by other processes, by a cheap version poll in the maintenance loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.errors import ApiError
from gateway.store.base import Store
from senderid import (
    AuditEntry,
    BrandProfile,
    Change,
    Classification,
    IndexData,
    LiveSenderIndex,
    Presence,
    Registration,
    RuleBook,
    SendDecision,
    SenderIdError,
    State,
    Target,
    TargetStatus,
    Template,
    approvals,
    classify,
    expire_due,
)

log = logging.getLogger("smsgw.senderid")

REFUSAL_CODES = {"sender_not_registered", "sender_not_allowed", "invalid_sender", "template_not_registered"}


def _ts(dt: datetime) -> float:
    return dt.timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def reg_to_json(reg: Registration) -> dict[str, Any]:
    return {
        "id": reg.id,
        "tenant_id": reg.tenant_id,
        "sender": reg.sender,
        "brand": reg.brand,
        "use_case": reg.use_case,
        "templates": [{"id": t.id, "text": t.text} for t in reg.templates],
        "document_codes": sorted(reg.documents),
        "created_at": _ts(reg.created_at),
        "targets": [
            {
                "country": t.target.country,
                "route": t.target.route,
                "state": t.state.value,
                "updated_at": _ts(t.updated_at),
                "reason": t.reason,
                "valid_until": _ts(t.valid_until) if t.valid_until else None,
            }
            for t in reg.targets
        ],
    }


def reg_from_json(d: dict[str, Any]) -> Registration:
    return Registration(
        id=d["id"],
        tenant_id=d["tenant_id"],
        sender=d["sender"],
        brand=d["brand"],
        use_case=d["use_case"],
        templates=tuple(Template(t["id"], t["text"]) for t in d["templates"]),
        documents=frozenset(d["document_codes"]),
        targets=tuple(
            TargetStatus(
                Target(t["country"], t["route"]),
                State(t["state"]),
                _dt(t["updated_at"]),
                t["reason"],
                _dt(t["valid_until"]) if t["valid_until"] else None,
            )
            for t in d["targets"]
        ),
        created_at=_dt(d["created_at"]),
    )


def reg_view(reg: Registration, documents: list[dict[str, Any]]) -> dict[str, Any]:
    updated = max([_ts(t.updated_at) for t in reg.targets] + [_ts(reg.created_at)])
    return {
        "id": reg.id,
        "sender": reg.sender,
        "brand": reg.brand,
        "use_case": reg.use_case,
        "templates": [{"id": t.id, "text": t.text} for t in reg.templates],
        "documents": [
            {k: d[k] for k in ("code", "filename", "content_type", "size", "uploaded_at")} for d in documents
        ],
        "countries": [
            {
                "country": t.target.country,
                "route": t.target.route,
                "state": t.state.value,
                "reason": t.reason or None,
                "updated_at": _ts(t.updated_at),
            }
            for t in reg.targets
        ],
        "created_at": _ts(reg.created_at),
        "updated_at": updated,
    }


def profile_to_json(p: BrandProfile) -> dict[str, Any]:
    return {
        "name": p.name,
        "well_known": p.well_known,
        "countries": {
            c: {"local_entity": v.local_entity, "local_team": v.local_team, "local_servers": v.local_servers}
            for c, v in p.countries.items()
        },
    }


def profile_from_json(d: dict[str, Any]) -> BrandProfile:
    return BrandProfile(
        d["name"], bool(d.get("well_known")), {c: Presence(**v) for c, v in d.get("countries", {}).items()}
    )


class SenderIds:
    def __init__(self, rules: RuleBook, store: Store, clock: Callable[[], float]) -> None:
        self.rules = rules
        self.store = store
        self.clock = clock
        self.index = LiveSenderIndex(rules, self._load)
        self._classes: dict[tuple[str, str], Classification] = {}
        self._version: tuple[float, float, int] | None = None

    async def _load(self) -> IndexData:
        regs = [reg_from_json(d) for d in await self.store.list_registrations(None)]
        settings = await self.store.tenant_settings()
        fallbacks = {t: str(s["fallback_sender"]) for t, s in settings.items() if s.get("fallback_sender")}
        return IndexData(tuple(a for r in regs for a in approvals(r)), fallbacks)

    def invalidate(self) -> None:
        self.index.invalidate()
        self._classes.clear()

    async def poll(self) -> None:
        """Pick up changes made by another gateway process (maintenance loop)."""
        version = await self.store.senderid_version()
        if version != self._version:
            if self._version is not None:
                self.invalidate()
            self._version = version

    async def check(self, tenant_id: str, sender: str | None, country: str, text: str | None) -> SendDecision:
        decision = await self.index.check(tenant_id, sender, country, text)
        if not decision.allowed:
            code = decision.code if decision.code in REFUSAL_CODES else "sender_not_registered"
            raise ApiError(
                code,
                decision.message,
                country=country,
                sender=sender,
                requirements=decision.requirements.as_json(),
            )
        return decision

    async def brand_class(self, tenant_id: str, country: str) -> Classification:
        key = (tenant_id, country)
        hit = self._classes.get(key)
        if hit is None:
            raw = await self.store.get_brand(tenant_id)
            profile = profile_from_json(raw) if raw else None
            hit = classify(profile, country, self.rules.brands)
            if len(self._classes) > 100_000:
                self._classes.clear()
            self._classes[key] = hit
        return hit

    async def save(self, change: Change, actor_tenant: str) -> Registration:
        """Persist a workflow change and its audit entries; invalidate the index."""
        reg = change.registration
        now = self.clock()
        await self.store.save_registration(
            reg.id, reg.tenant_id, reg.sender, reg_to_json(reg), _ts(reg.created_at), now
        )
        for entry in change.audit:
            await self._audit(entry, actor_tenant)
        self.invalidate()
        return reg

    async def _audit(self, entry: AuditEntry, tenant_id: str) -> None:
        await self.store.append_audit(
            at=_ts(entry.at),
            actor=entry.actor,
            tenant_id=tenant_id,
            action=entry.action,
            target=str(entry.details.get("registration", "")),
            details=dict(entry.details),
        )

    async def expire_due(self, pending_days: float) -> int:
        """Expire approvals past their validity and submissions left undecided for ``pending_days``."""
        from datetime import timedelta

        now = _dt(self.clock())
        expired = 0
        for raw in await self.store.list_registrations(None):
            reg = reg_from_json(raw)
            change = expire_due(
                reg, now=now, pending_for=timedelta(days=pending_days) if pending_days else None
            )
            if change.audit:
                await self.save(change, reg.tenant_id)
                expired += len(change.audit)
        return expired

    async def load(self, tenant_id: str, reg_id: str) -> Registration:
        raw = await self.store.get_registration(tenant_id, reg_id)
        if raw is None:
            raise ApiError("not_found", "No such sender-ID registration.")
        return reg_from_json(raw)


def api_error(e: SenderIdError) -> ApiError:
    """senderid's error tree → the API's."""
    problems = [str(p) for p in getattr(e, "problems", ())]
    mapping = {
        "invalid_transition": "conflict",
        "reason_required": "invalid_request",
        "unknown_target": "not_found",
        "template_invalid": "invalid_request",
    }
    if e.code.startswith("document_"):
        status = {
            "document_too_large": 413,
            "document_type_not_allowed": 415,
            "document_type_mismatch": 415,
        }.get(e.code, 400)
        return ApiError("invalid_document", e.message, status=status, reason=e.code)
    code = mapping.get(e.code, "invalid_request")
    if problems:
        return ApiError(code, e.message, reason=e.code, problems=problems)
    return ApiError(code, e.message, reason=e.code)
