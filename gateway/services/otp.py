"""The OTP use case: request (validate, gate, commit, hand to dispatch) and verify.

The code exists in clear only in memory: the ``otps`` row keeps its keyed hash, and the outbox row
keeps it sealed (AES-GCM) only until a carrier has taken the message, when it is wiped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from gateway.context import Context
from gateway.errors import ApiError
from gateway.ids import new_id, random_below
from gateway.phone import parse_number
from gateway.privacy.mask import mask_phone
from gateway.schemas import OtpRequest
from gateway.services.fraud import ClientSignals
from gateway.services.residency import keep_copy
from gateway.state import StateUnavailable
from gateway.store.records import MessageRecord, OtpRecord, Principal

log = logging.getLogger("smsgw.otp")


def generate_code(length: int) -> str:
    """``length`` digits, uniform, from the OS's CSPRNG (buffered: ``gateway.ids``)."""
    return f"{random_below(10**length):0{length}d}"


def render_otp(template: str, code: str, brand: str, minutes: int) -> str:
    return template.replace("{code}", code).replace("{brand}", brand).replace("{minutes}", str(minutes))


def pick_locale(requested: str | None, templates: dict[str, str], default: str) -> str:
    if requested:
        base = requested.replace("_", "-").split("-")[0].lower()
        if requested in templates:
            return requested
        if base in templates:
            return base
    return default


@dataclass(frozen=True)
class OtpAccepted:
    otp: OtpRecord
    to_masked: str
    sender: str | None
    fallback_used: bool

    def body(self) -> dict[str, Any]:
        return {
            "id": self.otp.id,
            "status": "pending",
            "expires_at": self.otp.expires_at,
            "to_masked": self.to_masked,
            "message_id": self.otp.message_id,
            "sender_id": self.sender,
            "fallback_sender_used": self.fallback_used,
        }


async def request_otp(ctx: Context, who: Principal, req: OtpRequest) -> OtpAccepted:
    s = ctx.settings.otp
    num = parse_number(req.to)
    if not who.tenant.may_send_to(num.country):
        raise ApiError(
            "country_not_permitted",
            f"This tenant may not send to {num.country}; ask an admin to allow it.",
            country=num.country,
        )
    if req.locale and len(req.locale) > 16:
        raise ApiError("invalid_request", "'locale' is too long")
    if req.template is not None and req.template not in s.templates:
        raise ApiError("invalid_request", f"unknown template {req.template!r}; known: {sorted(s.templates)}")
    if not ctx.routes.has_route(num.country, num.e164):
        raise ApiError("no_route", f"No carrier route is up for {num.country} now.", country=num.country)
    # the sender must be approved for the destination (checked on the registered template's text too)
    locale = req.template or pick_locale(req.locale, s.templates, s.default_locale)
    minutes = max(1, s.ttl_seconds // 60)
    sample_text = render_otp(s.templates[locale], "0" * s.code_length, s.brand, minutes)
    senderids = ctx.senderids
    decision = await senderids.check(who.tenant.id, req.sender_id, num.country, sample_text)
    brand = await senderids.brand_class(who.tenant.id, num.country)
    now = ctx.clock()
    region, store = ctx.regions.for_country(num.country)
    ring = store.keyring
    phone_hmac = ring.lookup(num.e164)
    otp_id, msg_id = new_id("otp", region), new_id("msg", region)
    gate = await ctx.st.send_gate(
        who.tenant.id,
        phone_hmac.hex(),
        cooldown=s.resend_cooldown_seconds,
        hourly_limit=s.max_per_number_per_hour,
        now=now,
        member=otp_id,
    )
    if not gate.allowed:
        ctx.instruments.rate_limited.labels("number").inc()
        retry = max(1, int(gate.retry_after + 0.999))
        what = (
            "a code was sent to this number moments ago"
            if gate.reason == "cooldown"
            else f"at most {s.max_per_number_per_hour} codes per hour go to one number"
        )
        raise ApiError(
            "rate_limited",
            f"Too many requests: {what}; retry in {retry} s.",
            headers={"Retry-After": str(retry)},
            scope="number",
            limit=gate.reason,
            retry_after=retry,
        )
    # the resend gate comes first: a tap it refuses sends nothing, so anti-fraud must not count it as a
    # send (it would hold it against the number's and the range's limits); a send anti-fraud refuses
    # gives the gate back, as a failed write does below
    try:
        fraud = await ctx.fraud.check(who, num, ClientSignals.of(req), now)
    except BaseException:
        await _release_gate(ctx, who.tenant.id, phone_hmac, now, otp_id)
        raise
    code = generate_code(s.code_length)
    phone_enc = ring.seal(num.e164.encode(), "phone")
    sender = decision.sender_used or ""  # "": the route's own default sender
    otp = OtpRecord(
        id=otp_id,
        tenant_id=who.tenant.id,
        phone_enc=phone_enc,
        phone_hmac=phone_hmac,
        country=num.country,
        code_hash=ring.code_hash(otp_id, code),
        status="pending",
        created_at=now,
        expires_at=now + s.ttl_seconds,
        message_id=msg_id,
        locale=locale,
        template="otp",
        challenged=fraud.challenged,
    )
    claimer, lease_until = ctx.disp.lease(now)
    msg = MessageRecord(
        id=msg_id,
        tenant_id=who.tenant.id,
        kind="otp",
        phone_enc=phone_enc,
        phone_hmac=phone_hmac,
        country=num.country,
        sender=sender,
        brand_class=brand.cls.value,
        payload_enc=ring.seal(code.encode(), "otp_code"),
        status="sending",
        attempts=1,
        claimed_by=claimer,
        claimed_until=lease_until,
        created_at=now,
        updated_at=now,
        not_before=now,
        expires_at=otp.expires_at,
        otp_id=otp_id,
        locale=locale,
        template="otp",
    )
    try:
        await store.insert_otp(otp, msg)
    except BaseException:
        # not accepted (the caller gets 503): this send must not hold the number's cooldown and hourly
        # count against the retry
        await _release_gate(ctx, who.tenant.id, phone_hmac, now, otp_id)
        raise
    await keep_copy(ctx, region, "otp", otp_id, who.tenant.id, num.e164, num.country, now)
    ctx.disp.notify(msg)
    masked = mask_phone(num.e164, num.calling_code)
    log.info(
        "otp accepted",
        extra={"otp_id": otp_id, "to": masked, "country": num.country, "tenant": who.tenant.id},
    )
    return OtpAccepted(otp, masked, decision.sender_used, decision.fallback_used)


async def _release_gate(ctx: Context, tenant_id: str, phone_hmac: bytes, now: float, otp_id: str) -> None:
    """Give back the resend gate of a send that was not accepted (refused by anti-fraud, or its write
    failed), so it holds neither the number's cooldown nor its hourly count against the retry."""
    try:
        await ctx.st.release_gate(
            tenant_id,
            phone_hmac.hex(),
            cooldown=ctx.settings.otp.resend_cooldown_seconds,
            now=now,
            member=otp_id,
        )
    except Exception:
        log.exception("resend gate not released after a refused send", extra={"otp_id": otp_id})


def unavailable(e: StateUnavailable) -> ApiError:
    """503 for a verify whose attempt cannot be counted where every process sees it: fail closed (no
    verdict on the code at all, right or wrong), and say when to try again."""
    retry = max(1, math.ceil(e.retry_after))
    return ApiError(
        "unavailable",
        f"Verify attempts cannot be counted right now (shared state unreachable); retry in {retry} s.",
        headers={"Retry-After": str(retry)},
        retry_after=retry,
    )


def render_message(ctx: Context, rec: MessageRecord) -> str:
    """The dispatcher's renderer: OTP text from the template and the sealed code; other bodies unsealed."""
    store = ctx.regions.for_id(rec.id)
    assert store is not None
    ring = store.keyring
    if rec.payload_enc is None:
        raise ValueError("message has no payload left to send")
    if rec.kind == "otp":
        s = ctx.settings.otp
        code = ring.open(rec.payload_enc, "otp_code").decode()
        template = s.templates.get(rec.locale or s.default_locale, s.templates[s.default_locale])
        return render_otp(template, code, s.brand, max(1, s.ttl_seconds // 60))
    return ring.open(rec.payload_enc, "body").decode()


async def verify_otp(ctx: Context, who: Principal, otp_id: str, code: str) -> OtpRecord:
    s = ctx.settings.otp
    store = ctx.regions.for_id(otp_id)
    otp = None if store is None else await store.get_otp(who.tenant.id, otp_id)
    if store is None or otp is None:
        raise ApiError("not_found", "No such OTP.")
    if otp.status == "verified":
        raise ApiError("conflict", "This OTP was already verified; request a new one.", status=409)
    if otp.status in ("failed",):
        raise ApiError("too_many_attempts", "Too many wrong codes; request a new OTP.")
    now = ctx.clock()
    if otp.status == "expired" or now >= otp.expires_at:
        if otp.status == "pending":
            await store.finish_otp(otp.id, "expired", now)
        raise ApiError("expired", "This OTP has expired; request a new one.")
    if not code.isdigit() or len(code) > 16:
        raise ApiError("incorrect_code", "The code is digits only.", attempts_left=None)
    try:
        attempt = await ctx.st.verify_attempt(otp.id, ttl=max(otp.expires_at - now, 1.0) + 60)
    except StateUnavailable as e:
        raise unavailable(e) from None
    if attempt > s.max_attempts:
        await store.finish_otp(otp.id, "failed", now)
        raise ApiError("too_many_attempts", f"At most {s.max_attempts} attempts per OTP; request a new one.")
    if not store.keyring.code_matches(otp.id, code, otp.code_hash):
        left = s.max_attempts - attempt
        if left <= 0:
            await store.finish_otp(otp.id, "failed", now)
            raise ApiError(
                "too_many_attempts", f"At most {s.max_attempts} attempts per OTP; request a new one."
            )
        raise ApiError(
            "incorrect_code", f"The code does not match; {left} attempt(s) left.", attempts_left=left
        )
    if not await store.finish_otp(otp.id, "verified", now):
        raise ApiError("conflict", "This OTP was already verified; request a new one.", status=409)
    ctx.instruments.otp_verified.labels(who.tenant.id, otp.country, otp.route or "none").inc()
    await ctx.record_fillback("verified", who.tenant.id, otp.country, otp.route or "none", otp.created_at)
    e164 = store.keyring.open(otp.phone_enc, "phone").decode()
    await ctx.fraud.engine.record_verified(
        who.tenant.id, e164, otp.country, otp.created_at, now, challenged=otp.challenged
    )
    log.info("otp verified", extra={"otp_id": otp.id, "tenant": who.tenant.id})
    return otp


def otp_view(otp: OtpRecord, now: float) -> dict[str, Any]:
    status = otp.status
    if status == "pending" and now >= otp.expires_at:
        status = "expired"
    return {
        "id": otp.id,
        "status": status,
        "expires_at": otp.expires_at,
        "created_at": otp.created_at,
        "verified_at": otp.verified_at,
        "country": otp.country,
        "route": otp.route,
        "message_id": otp.message_id,
    }
