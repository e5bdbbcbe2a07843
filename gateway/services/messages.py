"""The message use case: transactional and marketing SMS (bodies sealed at rest)."""

from __future__ import annotations

import logging

from gateway.context import Context
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.phone import parse_number
from gateway.privacy.mask import mask_phone
from gateway.schemas import MessageRequest
from gateway.services import privacy
from gateway.services.fraud import ClientSignals
from gateway.services.residency import keep_copy
from gateway.store.records import MessageRecord, Principal
from metrics.conversion import rewrite_links

log = logging.getLogger("smsgw.messages")

MAX_BODY_CHARS = 1600


async def send_message(ctx: Context, who: Principal, req: MessageRequest) -> tuple[MessageRecord, str]:
    """Accept one message; the record and its number masked (from the number parsed here, as the OTP
    use case does, so the answer does not parse it again)."""
    num = parse_number(req.to)
    if not req.body.strip():
        raise ApiError("invalid_request", "'body' must not be empty")
    if len(req.body) > MAX_BODY_CHARS:
        raise ApiError("invalid_request", f"'body' is longer than {MAX_BODY_CHARS} characters")
    if not req.sender_id.strip() or len(req.sender_id) > 16:
        raise ApiError("invalid_request", "'sender_id' must be 1-16 characters")
    if not who.tenant.may_send_to(num.country):
        raise ApiError(
            "country_not_permitted", f"This tenant may not send to {num.country}.", country=num.country
        )
    await ctx.fraud.check(who, num, ClientSignals.of(req), ctx.clock())
    decision = await ctx.senderids.check(who.tenant.id, req.sender_id, num.country, req.body)
    brand = await ctx.senderids.brand_class(who.tenant.id, num.country)
    region, store = ctx.regions.for_country(num.country)
    ring = store.keyring
    now = ctx.clock()
    not_before = now
    if req.category == "marketing":
        await privacy.require_marketing_consent(ctx, store, who.tenant.id, ring.lookup(num.e164))
        not_before = privacy.quiet_hours_start(ctx, num, now, req.quiet_hours)
    if not ctx.routes.has_route(num.country, num.e164):
        raise ApiError("no_route", f"No carrier route is up for {num.country} now.", country=num.country)
    phone_enc = ring.seal(num.e164.encode(), "phone")
    msg_id = new_id("msg", region)
    body, links = req.body, []
    if req.category == "marketing" and req.track_links:
        rewritten = rewrite_links(req.body, ctx.settings.public_url, msg_id)
        body, links = rewritten.body, [(link.link_id, link.target_url) for link in rewritten.links]
    claimer, lease_until = ctx.disp.lease(now)
    rec = MessageRecord(
        id=msg_id,
        tenant_id=who.tenant.id,
        kind=req.category,
        phone_enc=phone_enc,
        phone_hmac=ring.lookup(num.e164),
        country=num.country,
        sender=decision.sender_used or "",
        brand_class=brand.cls.value,
        payload_enc=ring.seal(body.encode(), "body"),
        status="sending" if not_before <= now else "queued",
        attempts=1 if not_before <= now else 0,
        claimed_by=claimer if not_before <= now else None,
        claimed_until=lease_until if not_before <= now else None,
        created_at=now,
        updated_at=now,
        not_before=not_before,
    )
    if links:
        await ctx.db.insert_links(who.tenant.id, msg_id, links, now)
    await store.insert_message(rec)
    await keep_copy(ctx, region, "message", rec.id, who.tenant.id, num.e164, num.country, now)
    if not_before <= now:
        ctx.disp.notify(rec)
    log.info("message accepted", extra={"message_id": rec.id, "country": num.country, "kind": req.category})
    return rec, mask_phone(num.e164, num.calling_code)
