"""Data-subject requests, consent, quiet hours and the audit trail.

Export and erasure look in the number's region store (residency) and in the control store (copies
of local-first countries); an erasure removes the rows, records a receipt without the number in clear
(masked, plus a keyed hash reference) and is idempotent. Requests are tracked against the 30-day
deadline of GDPR art. 12(3) (the strictest of GDPR, CCPA's 45 days, PIPL's 15 working days is
configurable per operator in docs/compliance.md).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from phonenumbers import timezone as pn_timezone
from redis.exceptions import RedisError

from gateway.context import Context
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.phone import Number, parse_number
from gateway.privacy import consent as keywords
from gateway.privacy.mask import mask_phone
from gateway.privacy.quiet import QuietRule, next_allowed
from gateway.store.base import Store
from gateway.store.records import Principal

log = logging.getLogger("smsgw.privacy")

DSR_DEADLINE_S = 30 * 86400


async def audit(
    ctx: Context,
    *,
    actor: str,
    tenant_id: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> int:
    """Append to the hash-chained audit log (control store). Details must hold no personal data in clear."""
    return await ctx.db.append_audit(
        at=ctx.clock(), actor=actor, tenant_id=tenant_id, action=action, target=target, details=details or {}
    )


def _subject(phone: str) -> Number:
    try:
        return parse_number(phone)
    except ApiError as e:
        raise ApiError("invalid_number", e.message.replace("'to'", "'phone'")) from None


def _stores_for(ctx: Context, num: Number) -> list[tuple[str, Store]]:
    region, store = ctx.regions.for_country(num.country)
    out = [(region, store)]
    if region:  # copies of local-first countries live in the control store
        out.append(("", ctx.db))
    return out


async def export_subject(ctx: Context, who: Principal, phone: str) -> dict[str, Any]:
    num = _subject(phone)
    now = ctx.clock()
    tenant = who.tenant.id
    hmac_ = ctx.db.keyring.lookup(num.e164)
    out: dict[str, Any] = {
        "subject": mask_phone(num.e164, num.calling_code),
        "tenant_id": tenant,
        "generated_at": now,
        "otps": [],
        "messages": [],
        "events": [],
        "consent": [],
        "residency_copies": [],
    }
    for region, store in _stores_for(ctx, num):
        data = await store.subject_data(tenant, hmac_)
        for o in data["otps"]:
            out["otps"].append(
                {
                    "id": o["id"],
                    "status": o["status"],
                    "country": o["country"],
                    "created_at": o["created_at"],
                    "expires_at": o["expires_at"],
                    "verified_at": o["verified_at"],
                    "stored_in": region or "control",
                    "phone": num.e164,
                }
            )
        for m in data["messages"]:
            body = None
            if m.kind != "otp" and m.payload_enc is not None:
                body = store.keyring.open(m.payload_enc, "body").decode()
            out["messages"].append(
                {
                    "id": m.id,
                    "kind": m.kind,
                    "status": m.status,
                    "sender": m.sender,
                    "body": body,
                    "country": m.country,
                    "route": m.route,
                    "created_at": m.created_at,
                    "updated_at": m.updated_at,
                    "stored_in": region or "control",
                    "phone": num.e164,
                }
            )
        out["events"] += data["events"]
        out["consent"] += data["consent"]
        out["residency_copies"] += data["copies"]
    await _record(ctx, who, "export", num, now, {k: len(v) for k, v in out.items() if isinstance(v, list)})
    return out


async def erase_subject(ctx: Context, who: Principal, phone: str) -> dict[str, Any]:
    num = _subject(phone)
    now = ctx.clock()
    hmac_ = ctx.db.keyring.lookup(num.e164)
    removed: dict[str, int] = {}
    for _, store in _stores_for(ctx, num):
        for k, v in (await store.erase_subject(who.tenant.id, hmac_, now)).items():
            removed[k] = removed.get(k, 0) + v
    try:  # the blind index is the same in every region (one lookup key from the master key)
        removed["rate_state"] = await ctx.st.forget(who.tenant.id, hmac_.hex())
        # the number's anti-fraud counters and limit windows (hashed)
        removed["fraud_state"] = await ctx.fraud.engine.forget(num.e164, tenant_ids=(who.tenant.id,))
    except (RedisError, OSError):
        log.error("erasure could not reach the shared state", extra={"tenant": who.tenant.id})
        raise ApiError(
            "unavailable",
            "The stored data was erased, but the shared state (Redis) could not be reached; "
            "send the same request again to finish (it is idempotent).",
        ) from None
    receipt = await _record(ctx, who, "erasure", num, now, removed)
    log.info(
        "subject erased",
        extra={"tenant": who.tenant.id, "request_id": receipt["request_id"], "removed": removed},
    )
    return receipt


async def _record(
    ctx: Context, who: Principal, kind: str, num: Number, now: float, result: dict[str, int]
) -> dict[str, Any]:
    import json

    request_id = new_id("dsr")
    masked = mask_phone(num.e164, num.calling_code)
    subject_hmac = ctx.db.keyring.lookup(num.e164)
    ref = subject_hmac.hex()[:16]
    await ctx.db.record_privacy_request(
        request_id=request_id,
        tenant_id=who.tenant.id,
        kind=kind,
        subject_hmac=subject_hmac,
        subject_masked=masked,
        received_at=now,
        due_at=now + DSR_DEADLINE_S,
        completed_at=now,
        result=json.dumps(result, sort_keys=True),
    )
    await audit(
        ctx,
        actor=f"tenant:{who.tenant.id}",
        tenant_id=who.tenant.id,
        action=f"privacy.{kind}",
        target=request_id,
        details={"subject_ref": ref, "subject": masked, "result": result},
    )
    return {
        "request_id": request_id,
        "kind": kind,
        "subject": masked,
        "subject_ref": ref,
        "received_at": now,
        "due_at": now + DSR_DEADLINE_S,
        "completed_at": now,
        "removed" if kind == "erasure" else "found": result,
    }


# ---------------------------------------------------------------------- consent


async def set_consent(ctx: Context, who: Principal, phone: str, status: str, source: str) -> dict[str, Any]:
    num = _subject(phone)
    _, store = ctx.regions.for_country(num.country)
    await store.set_consent(who.tenant.id, store.keyring.lookup(num.e164), status, source[:64], ctx.clock())
    return {"subject": mask_phone(num.e164, num.calling_code), "status": status, "source": source[:64]}


async def inbound(ctx: Context, sender_phone: str, to: str, text: str) -> dict[str, Any]:
    """A message from a phone (MO): STOP-like keywords opt it out of every tenant that messaged it
    from that sender (or from any sender when none matches); START-like ones opt it back in."""
    action = keywords.keyword(text)
    try:
        num = parse_number(sender_phone)
    except ApiError:
        raise ApiError("invalid_number", "'from' is not a valid E.164 number") from None
    if action is None:
        return {"action": "none"}
    _, store = ctx.regions.for_country(num.country)
    hmac_ = store.keyring.lookup(num.e164)
    tenants = await store.tenants_messaging(hmac_, to) or await store.tenants_messaging(hmac_, None)
    status = "opted_out" if action == "opt_out" else "opted_in"
    for tenant in tenants:
        await store.set_consent(tenant, hmac_, status, f"keyword to {to[:16]}", ctx.clock())
    log.info("inbound keyword", extra={"action": action, "tenants": len(tenants)})
    return {"action": action, "tenants": len(tenants)}


async def require_marketing_consent(ctx: Context, store: Store, tenant_id: str, phone_hmac: bytes) -> None:
    status = await store.consent_status(tenant_id, phone_hmac)
    if status == "opted_out":
        raise ApiError("no_consent", "This number opted out of marketing from this tenant.")
    if status != "opted_in":
        raise ApiError(
            "no_consent",
            "Marketing to this number needs a recorded opt-in (POST /v1/consent); there is none.",
        )


def quiet_hours_start(ctx: Context, num: Number, now: float, mode: str) -> float:
    """When marketing to ``num`` may go out: ``now`` if allowed, else the next allowed time ("defer")
    or ``409 quiet_hours`` ("refuse")."""
    rules = ctx.extras.get("quiet_rules")
    rule = rules.get(num.country) if isinstance(rules, dict) else None
    if not isinstance(rule, QuietRule):
        return now
    import phonenumbers

    zones = [z for z in pn_timezone.time_zones_for_number(phonenumbers.parse(num.e164)) if "/" in z]
    when = datetime.fromtimestamp(now, UTC)
    nxt = next_allowed(rule, zones, when)
    if nxt == when:
        return now
    if mode == "defer" and nxt is not None:
        return nxt.timestamp()
    raise ApiError(
        "quiet_hours",
        f"Marketing to {num.country} is not allowed now in the destination's time "
        f"zone; next allowed at {nxt.isoformat() if nxt else 'unknown'}. "
        'Send with "quiet_hours": "defer" to queue it until then.',
        next_allowed_at=nxt.timestamp() if nxt else None,
    )
