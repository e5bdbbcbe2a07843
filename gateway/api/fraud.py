"""Anti-fraud for tenants: a dry-run check of a send (``send`` scope), and for admins the review of
recent refusals, allow-lists, lifting and adding blocks."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from aiohttp import web

from gateway.api.registry import Query, endpoint
from gateway.auth import authenticate, require
from gateway.context import CTX
from gateway.errors import ApiError
from gateway.phone import parse_number
from gateway.privacy.mask import mask_phone
from gateway.schemas import decode, json_body, query_int
from gateway.services.fraud import EXPECTED_KEY, ClientSignals, checked_expected, tenant_policy
from gateway.store.records import Principal


class ListRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: Literal["number", "prefix", "country"]
    value: str
    until: float | None = None  # allow: until when (epoch seconds); None = until removed


class CheckRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to: str
    client_ip: str | None = None
    device_id: str | None = None
    session_id: str | None = None
    challenge_token: str | None = None


@endpoint(
    "POST",
    "/v1/fraud/check",
    summary="What POST /v1/otp would decide now for this request, without sending or counting anything",
    tag="Anti-fraud",
    scope="send",
    body=CheckRequest,
    errors=("invalid_request", "invalid_number", "unauthorized", "forbidden"),
)
async def check(request: web.Request) -> web.Response:
    """A pre-check for an app's sign-up form, and a release probe for ops: the same rules, limits and
    score as the send path, on the same state, but nothing is counted (no limit is spent, no decision
    logged), so probing never changes what a later request gets. A refusal is an answer here (200),
    not an error."""
    who = await authenticate(request)
    require(who, "send")
    ctx = request.app[CTX]
    req = decode(await json_body(request), CheckRequest)
    num = parse_number(req.to)
    decision, enforced = await ctx.fraud.peek(who, num, ClientSignals.of(req), ctx.clock())
    action, score, retry_after = decision.action, round(decision.score, 4), decision.retry_after
    reasons = [{"code": r.code, "message": r.message, "scope": r.scope} for r in decision.reasons]
    if not who.tenant.may_send_to(num.country):  # the send path refuses this before anti-fraud
        action, retry_after = "block", None
        reasons = [
            {
                "code": "country_not_permitted",
                "message": f"This tenant may not send to {num.country}.",
                "scope": "country",
            }
        ]
    return web.json_response(
        {
            "action": action,
            "reasons": reasons,
            "score": score,
            "retry_after": retry_after,
            "mode": "enforce" if enforced else "monitor",
            "counted": False,
        }
    )


class ModeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mode: Literal["enforce", "monitor"]


@endpoint(
    "PUT",
    "/v1/fraud/mode",
    summary="enforce (default) or monitor: decide and count, but always allow",
    tag="Anti-fraud",
    scope="admin",
    body=ModeRequest,
    errors=("invalid_request", "forbidden"),
)
async def mode(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    req = decode(await json_body(request), ModeRequest)
    await _change_settings(request, who, {"fraud_mode": req.mode}, "fraud.mode", {"mode": req.mode})
    return web.json_response({"mode": req.mode})


async def _change_settings(
    request: web.Request, who: Principal, changes: dict[str, Any], action: str, details: dict[str, Any]
) -> dict[str, Any]:
    """Merge anti-fraud settings of the admin's tenant, make the engine read them at its next check
    (not after the settings refresh), and audit the change; returns the tenant's settings."""
    ctx = request.app[CTX]
    settings = await ctx.db.update_tenant_settings(who.tenant.id, changes)
    ctx.fraud.forget_policy(who.tenant.id)
    await ctx.db.append_audit(
        at=ctx.clock(),
        actor=f"tenant:{who.tenant.id}:admin",
        tenant_id=who.tenant.id,
        action=action,
        target=who.tenant.id,
        details=details,
    )
    return settings


class ExpectedRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    countries: list[str]  # ISO codes; [] = none declared (its allowed countries, when a list, stand in)


def _expected_answer(who: Principal, settings: dict[str, Any]) -> web.Response:
    policy = tenant_policy(who.tenant, settings)
    got = policy.expected_countries
    source = "expected" if got is not None else ("allowed" if policy.allowed_countries else "none")
    return web.json_response(
        {"countries": sorted(got or ()), "in_use": sorted(policy.declared), "source": source}
    )


@endpoint(
    "PUT",
    "/v1/fraud/expected-countries",
    summary="the countries the tenant's users are in: a new tenant's first sends there are not 'unusual'",
    tag="Anti-fraud",
    scope="admin",
    body=ExpectedRequest,
    errors=("invalid_request", "unauthorized", "forbidden"),
)
async def put_expected(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    req = decode(await json_body(request), ExpectedRequest)
    try:
        codes = sorted(checked_expected(req.countries, who.tenant.countries))
    except ValueError as e:
        raise ApiError("invalid_request", f"countries: {e}.") from None
    settings = await _change_settings(
        request, who, {EXPECTED_KEY: codes}, "fraud.expected_countries", {"countries": codes}
    )
    return _expected_answer(who, settings)


@endpoint(
    "GET",
    "/v1/fraud/expected-countries",
    summary="the countries anti-fraud expects the tenant's users in, and where that comes from",
    tag="Anti-fraud",
    scope="admin",
    errors=("unauthorized", "forbidden"),
)
async def get_expected(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    settings = await request.app[CTX].db.tenant_settings(who.tenant.id)
    return _expected_answer(who, settings.get(who.tenant.id, {}))


@endpoint(
    "GET",
    "/v1/fraud/decisions",
    summary="Recent anti-fraud refusals, for review",
    tag="Anti-fraud",
    scope="admin",
    errors=("invalid_request", "unauthorized", "forbidden"),
    query=(Query("limit", "how many, newest first (default 50)", "integer", minimum=1, maximum=500),),
)
async def decisions(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    limit = query_int(request, "limit", 50, 1, 500)
    records = await request.app[CTX].fraud.engine.recent_decisions(who.tenant.id, limit)
    return web.json_response(
        {
            "decisions": [
                {
                    "at": r.at,
                    "number": r.number,
                    "country": r.country,
                    "decision": r.action,
                    "reasons": list(r.codes),
                    "messages": list(r.messages),
                    "score": r.score,
                }
                for r in records
            ]
        }
    )


@endpoint(
    "GET",
    "/v1/fraud/lists",
    summary="Allow-list, lifted and admin blocks",
    tag="Anti-fraud",
    scope="admin",
    errors=("unauthorized", "forbidden"),
)
async def lists(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    return web.json_response(await request.app[CTX].fraud.engine.lists(who.tenant.id))


async def _list_op(request: web.Request, op: str) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    ctx = request.app[CTX]
    req = decode(await json_body(request), ListRequest)
    engine = ctx.fraud.engine
    value = req.value.strip()
    shown = value
    if req.kind == "number":
        num = parse_number(value)  # invalid_number with the reason, like every endpoint
        value, shown = num.e164, mask_phone(num.e164, num.calling_code)
    elif req.kind == "country" and not (len(value) == 2 and value.isascii() and value.isalpha()):
        raise ApiError("invalid_request", "a country is its ISO 3166-1 alpha-2 code, e.g. DE", field="value")
    try:
        if op == "allow":
            result = await engine.allow(who.tenant.id, req.kind, value, until=req.until)
        elif op == "lift":
            result = await engine.lift(who.tenant.id, req.kind, value)
        elif op == "block":
            result = await engine.block(who.tenant.id, req.kind, value)
        else:
            result = "removed" if await engine.unlist(who.tenant.id, req.kind, value) else "absent"
    except ValueError as e:  # a malformed prefix
        raise ApiError("invalid_request", str(e), field="value") from None
    await ctx.db.append_audit(
        at=ctx.clock(),
        actor=f"tenant:{who.tenant.id}:admin",
        tenant_id=who.tenant.id,
        action=f"fraud.{op}",
        target=req.kind,
        details={"value": shown, "result": result},
    )
    return web.json_response({"kind": req.kind, "result": result})


@endpoint(
    "POST",
    "/v1/fraud/allow",
    summary="Allow-list a number, prefix or country (skips range rules)",
    tag="Anti-fraud",
    scope="admin",
    body=ListRequest,
    errors=("invalid_request", "invalid_number", "unauthorized", "forbidden"),
)
async def allow(request: web.Request) -> web.Response:
    return await _list_op(request, "allow")


@endpoint(
    "POST",
    "/v1/fraud/lift",
    summary="Lift a block on a number or prefix for a while",
    tag="Anti-fraud",
    scope="admin",
    body=ListRequest,
    errors=("invalid_request", "invalid_number", "unauthorized", "forbidden"),
)
async def lift(request: web.Request) -> web.Response:
    return await _list_op(request, "lift")


@endpoint(
    "POST",
    "/v1/fraud/block",
    summary="Block a number, prefix or country",
    tag="Anti-fraud",
    scope="admin",
    body=ListRequest,
    errors=("invalid_request", "invalid_number", "unauthorized", "forbidden"),
)
async def block(request: web.Request) -> web.Response:
    return await _list_op(request, "block")


@endpoint(
    "POST",
    "/v1/fraud/unlist",
    summary="Remove an allow-list or block entry",
    tag="Anti-fraud",
    scope="admin",
    body=ListRequest,
    errors=("invalid_request", "invalid_number", "unauthorized", "forbidden"),
)
async def unlist(request: web.Request) -> web.Response:
    return await _list_op(request, "unlist")
