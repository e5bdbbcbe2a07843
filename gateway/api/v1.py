"""The /v1 API: OTPs and messages."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.api.registry import endpoint
from gateway.auth import authenticate, require
from gateway.context import CTX
from gateway.dispatch import status_view
from gateway.errors import ApiError
from gateway.privacy.mask import mask_phone
from gateway.schemas import MessageRequest, OtpRequest, VerifyRequest, decode, json_body, json_reply
from gateway.services import messages as message_service
from gateway.services import otp as otp_service

log = logging.getLogger("smsgw.api")

_OTP_ERRORS = (
    "invalid_request",
    "invalid_json",
    "invalid_number",
    "unauthorized",
    "forbidden",
    "country_not_permitted",
    "fraud_blocked",
    "sender_not_registered",
    "challenge_required",
    "rate_limited",
    "no_route",
    "payload_too_large",
)


@endpoint(
    "POST",
    "/v1/otp",
    summary="Send a one-time passcode",
    tag="OTP",
    scope="send",
    body=OtpRequest,
    success=202,
    errors=_OTP_ERRORS,
)
async def post_otp(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "send")
    req = decode(await json_body(request), OtpRequest)
    accepted = await otp_service.request_otp(request.app[CTX], who, req)
    return json_reply(accepted.body(), status=202)


@endpoint(
    "POST",
    "/v1/otp/{id}/verify",
    summary="Verify a code",
    tag="OTP",
    scope="verify",
    body=VerifyRequest,
    errors=(
        "invalid_request",
        "incorrect_code",
        "not_found",
        "expired",
        "too_many_attempts",
        "conflict",
        "unavailable",
    ),
)
async def verify_otp(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "verify")
    req = decode(await json_body(request), VerifyRequest)
    otp = await otp_service.verify_otp(request.app[CTX], who, request.match_info["id"], req.code.strip())
    return web.json_response({"id": otp.id, "status": "verified"})


@endpoint(
    "GET",
    "/v1/otp/{id}",
    summary="An OTP's status",
    tag="OTP",
    scope="send|verify",
    errors=("not_found", "unauthorized", "forbidden"),
)
async def get_otp(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "send|verify")
    ctx = request.app[CTX]
    store = ctx.regions.for_id(request.match_info["id"])
    otp = None if store is None else await store.get_otp(who.tenant.id, request.match_info["id"])
    if store is None or otp is None:
        raise ApiError("not_found", "No such OTP.")
    view = otp_service.otp_view(otp, ctx.clock())
    view["to_masked"] = mask_phone(store.keyring.open(otp.phone_enc, "phone").decode())
    return web.json_response(view)


@endpoint(
    "POST",
    "/v1/messages",
    summary="Send an SMS",
    tag="Messages",
    scope="send",
    body=MessageRequest,
    success=202,
    errors=(*_OTP_ERRORS, "no_consent", "quiet_hours"),
)
async def post_message(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "send")
    req = decode(await json_body(request), MessageRequest)
    rec, to_masked = await message_service.send_message(request.app[CTX], who, req)
    return json_reply({"id": rec.id, "status": "queued", "to_masked": to_masked}, status=202)


@endpoint(
    "GET",
    "/v1/messages/{id}",
    summary="A message's delivery status and route",
    tag="Messages",
    scope="send",
    errors=("not_found",),
)
async def get_message(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "send")
    ctx = request.app[CTX]
    store = ctx.regions.for_id(request.match_info["id"])
    rec = None if store is None else await store.get_message(who.tenant.id, request.match_info["id"])
    if rec is None:
        raise ApiError("not_found", "No such message.")
    return web.json_response(status_view(rec))
