"""Data-subject requests, consent, inbound keywords, the audit trail, conversion events."""

from __future__ import annotations

from aiohttp import web

from gateway.api.registry import Query, endpoint
from gateway.auth import authenticate, require
from gateway.context import CTX
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.schemas import (
    ConsentRequest,
    EventRequest,
    InboundRequest,
    PhoneRequest,
    decode,
    json_body,
    token_matches,
)
from gateway.services import privacy


@endpoint(
    "POST",
    "/v1/privacy/export",
    summary="Everything held about a phone number (this tenant)",
    tag="Privacy",
    scope="admin",
    body=PhoneRequest,
    errors=("invalid_request", "invalid_number", "forbidden"),
)
async def export(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    req = decode(await json_body(request), PhoneRequest)
    return web.json_response(await privacy.export_subject(request.app[CTX], who, req.phone))


@endpoint(
    "POST",
    "/v1/privacy/erasure",
    summary="Erase a phone number's data (this tenant); returns a receipt",
    tag="Privacy",
    scope="admin",
    body=PhoneRequest,
    errors=("invalid_request", "invalid_number", "forbidden", "unavailable"),
)
async def erasure(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    req = decode(await json_body(request), PhoneRequest)
    return web.json_response(await privacy.erase_subject(request.app[CTX], who, req.phone))


@endpoint(
    "GET",
    "/v1/privacy/requests",
    summary="Data-subject requests with their 30-day deadlines",
    tag="Privacy",
    scope="admin",
    errors=("forbidden",),
)
async def requests(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    return web.json_response({"requests": await request.app[CTX].db.privacy_requests(who.tenant.id)})


@endpoint(
    "POST",
    "/v1/consent",
    summary="Record a marketing opt-in or opt-out",
    tag="Privacy",
    scope="send",
    body=ConsentRequest,
    errors=("invalid_request", "invalid_number"),
)
async def consent(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "send")
    req = decode(await json_body(request), ConsentRequest)
    return web.json_response(
        await privacy.set_consent(request.app[CTX], who, req.phone, req.status, req.source)
    )


@endpoint(
    "POST",
    "/v1/carriers/{carrier}/inbound",
    summary="Mobile-originated messages from a carrier (STOP etc.)",
    tag="Carriers",
    body=InboundRequest,
    errors=("unauthorized", "invalid_request", "invalid_number"),
    query=(Query("token", "the carrier token of this gateway (its receipt URLs carry it)", required=True),),
)
async def inbound(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    expected = ctx.extras.get("receipt_token")
    if not isinstance(expected, str) or not token_matches(request.query.get("token", ""), expected):
        raise ApiError("unauthorized", "Bad carrier token.")
    req = decode(await json_body(request), InboundRequest)
    return web.json_response(await privacy.inbound(ctx, req.from_, req.to, req.text))


@endpoint(
    "GET",
    "/v1/audit",
    summary="This tenant's audit trail (newest 500)",
    tag="Privacy",
    scope="admin",
    errors=("forbidden",),
)
async def audit_log(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    records = await request.app[CTX].db.audit_records(who.tenant.id, limit=500)
    return web.json_response(
        {
            "records": [
                {
                    "seq": r.seq,
                    "at": r.at,
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "details": r.details,
                }
                for r in records
            ]
        }
    )


@endpoint(
    "POST",
    "/v1/events",
    summary="Report a conversion event for a message or an OTP",
    tag="Metrics",
    scope="send",
    body=EventRequest,
    success=202,
    errors=("invalid_request", "not_found"),
)
async def events(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "send")
    ctx = request.app[CTX]
    req = decode(await json_body(request), EventRequest)
    if (req.message_id is None) == (req.otp_id is None):
        raise ApiError("invalid_request", "Name exactly one of 'message_id' and 'otp_id'.")
    obj_id = req.message_id or req.otp_id or ""
    store = ctx.regions.for_id(obj_id)
    country, route, phone_hmac, message_id = "", None, None, req.message_id
    if store is not None and req.otp_id:
        otp = await store.get_otp(who.tenant.id, req.otp_id)
        if otp is not None:
            country, route, phone_hmac, message_id = otp.country, otp.route, otp.phone_hmac, otp.message_id
    elif store is not None and req.message_id:
        msg = await store.get_message(who.tenant.id, req.message_id)
        if msg is not None:
            country, route, phone_hmac = msg.country, msg.route, msg.phone_hmac
    if store is None or not country:
        raise ApiError("not_found", "No such message or OTP for this tenant.")
    event_id = new_id("evt", ctx.regions.region_for(country))
    await store.insert_event(
        event_id=event_id,
        tenant_id=who.tenant.id,
        message_id=message_id,
        otp_id=req.otp_id,
        event=req.event,
        country=country,
        route=route,
        phone_hmac=phone_hmac,
        at=ctx.clock(),
    )
    ctx.instruments.conversion_events.labels(who.tenant.id, country, req.event).inc()
    return web.json_response({"id": event_id, "event": req.event}, status=202)
