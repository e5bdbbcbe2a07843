"""Sender-ID registration workflow, country requirements, brand profile and classification."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from aiohttp import BodyPartReader, web

from gateway.api.registry import Query, endpoint
from gateway.auth import authenticate, require
from gateway.context import CTX, Context
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.schemas import decode, json_body
from gateway.services.senderid import SenderIds, api_error, profile_from_json, profile_to_json, reg_view
from gateway.store.records import Principal
from senderid import (
    DOCUMENT_LABELS,
    SenderIdError,
    Target,
    Template,
    UploadPolicy,
    add_documents,
    approve,
    check_upload,
    open_request,
    parse_profile,
    reject,
    resubmit,
    submit,
)

_ERRORS = ("invalid_request", "invalid_json", "unauthorized", "forbidden", "not_found", "conflict")


class RegistrationRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    sender: str
    brand: str
    use_case: str = ""
    countries: list[str]
    templates: list[str] = []
    routes: dict[str, str] = {}  # country -> carrier route, when the registration is per route


class SubmitRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    countries: list[str] | None = None


class DecisionRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    country: str
    route: str | None = None
    reason: str = ""
    valid_until: float | None = None  # approve: the approval expires then (e.g. the LOA's end), epoch seconds


def _svc(ctx: Context) -> SenderIds:
    svc = ctx.extras.get("senderids")
    assert isinstance(svc, SenderIds)
    return svc


def _onboarding(who: Principal) -> None:
    if not who.scopes & {"onboarding", "admin"}:
        raise ApiError("forbidden", "This API key lacks the 'onboarding' scope.", required_scope="onboarding")


def _actor(who: Principal) -> str:
    return f"tenant:{who.tenant.id}:{'admin' if 'admin' in who.scopes else 'onboarding'}"


async def _view(ctx: Context, who: Principal, reg_id: str) -> dict[str, Any]:
    reg = await _svc(ctx).load(who.tenant.id, reg_id)
    return reg_view(reg, await ctx.db.documents(who.tenant.id, reg_id))


@endpoint(
    "GET",
    "/v1/whoami",
    summary="The calling key's tenant and scopes",
    tag="Sender IDs",
    scope="any",
    errors=("unauthorized",),
)
async def whoami(request: web.Request) -> web.Response:
    who = await authenticate(request)
    return web.json_response(
        {"tenant_id": who.tenant.id, "name": who.tenant.name, "scopes": sorted(who.scopes)}
    )


@endpoint(
    "GET",
    "/v1/senderid/countries",
    summary="Each country's sender-ID requirements",
    tag="Sender IDs",
    scope="any",
    errors=("unauthorized",),
)
async def countries(request: web.Request) -> web.Response:
    await authenticate(request)
    rules = _svc(request.app[CTX]).rules
    out = []
    for iso2, r in sorted(rules.countries.items()):
        out.append(
            {
                "iso2": iso2,
                "name": r.name,
                "alphanumeric": r.alphanumeric.value,
                "registration_required": r.registration_required.value,
                "numeric": r.numeric.value,
                "template_registration_required": r.template_registration_required.value,
                "documents_required": sorted(r.required_documents),
                "documents_labels": {d: DOCUMENT_LABELS.get(d, d) for d in sorted(r.required_documents)},
                "lead_time_days": str(r.lead_time) if r.lead_time else None,
                "priced_apart": r.priced_apart.value,
                "notes": r.notes,
            }
        )
    return web.json_response({"countries": out})


@endpoint(
    "POST",
    "/v1/sender-ids",
    summary="File a sender-ID registration (draft)",
    tag="Sender IDs",
    scope="onboarding",
    body=RegistrationRequest,
    success=201,
    errors=_ERRORS,
)
async def create(request: web.Request) -> web.Response:
    who = await authenticate(request)
    _onboarding(who)
    ctx = request.app[CTX]
    req = decode(await json_body(request), RegistrationRequest)
    svc = _svc(ctx)
    try:
        change = open_request(
            id=new_id("sid"),
            tenant_id=who.tenant.id,
            sender=req.sender.strip(),
            brand=req.brand,
            use_case=req.use_case,
            targets=[Target(c.upper(), req.routes.get(c.upper())) for c in req.countries],
            templates=[Template(f"t{i + 1}", text) for i, text in enumerate(req.templates)],
            rules=svc.rules,
            actor=_actor(who),
            at=_now(ctx),
        )
    except SenderIdError as e:
        raise api_error(e) from None
    reg = await svc.save(change, who.tenant.id)
    return web.json_response(reg_view(reg, []), status=201)


@endpoint(
    "GET",
    "/v1/sender-ids",
    summary="This tenant's sender-ID registrations",
    tag="Sender IDs",
    scope="onboarding",
    errors=("unauthorized", "forbidden"),
)
async def list_all(request: web.Request) -> web.Response:
    who = await authenticate(request)
    _onboarding(who)
    ctx = request.app[CTX]
    regs = await ctx.db.list_registrations(who.tenant.id)
    out = [await _view(ctx, who, r["id"]) for r in regs]
    return web.json_response({"sender_ids": out})


@endpoint(
    "GET",
    "/v1/sender-ids/{id}",
    summary="One registration with its per-country status",
    tag="Sender IDs",
    scope="onboarding",
    errors=("unauthorized", "forbidden", "not_found"),
)
async def get_one(request: web.Request) -> web.Response:
    who = await authenticate(request)
    _onboarding(who)
    return web.json_response(await _view(request.app[CTX], who, request.match_info["id"]))


@endpoint(
    "POST",
    "/v1/sender-ids/{id}/documents",
    summary="Upload a document (multipart: code, file)",
    tag="Sender IDs",
    scope="onboarding",
    success=201,
    errors=("invalid_request", "invalid_document", "unauthorized", "forbidden", "not_found"),
)
async def upload(request: web.Request) -> web.Response:
    who = await authenticate(request)
    _onboarding(who)
    ctx = request.app[CTX]
    svc = _svc(ctx)
    reg = await svc.load(who.tenant.id, request.match_info["id"])
    policy = UploadPolicy()
    if request.content_length is not None and request.content_length > policy.max_bytes + 64 * 1024:
        raise ApiError(
            "payload_too_large", f"Documents are limited to {policy.max_bytes // (1024 * 1024)} MiB."
        )
    if not request.content_type.startswith("multipart/"):
        raise ApiError("invalid_request", "Send multipart/form-data with the fields 'code' and 'file'.")
    code, filename, content, declared = "", "", b"", None
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "code":
            code = (await part.text()).strip()
        elif part.name == "file":
            filename = part.filename or ""
            declared = part.headers.get("Content-Type")
            content = bytes(await part.read())
            if len(content) > policy.max_bytes:
                break
    try:
        checked = check_upload(code, filename, content, declared_type=declared, policy=policy)
        change = add_documents(reg, [checked.code], actor=_actor(who), at=_now(ctx))
    except SenderIdError as e:
        raise api_error(e) from None
    await ctx.db.add_document(
        doc_id=new_id("doc"),
        registration_id=reg.id,
        tenant_id=who.tenant.id,
        code=checked.code,
        filename=checked.filename,
        content_type=f"application/{checked.kind.value}"
        if checked.kind.value == "pdf"
        else f"image/{checked.kind.value}",
        content=content,
        uploaded_at=ctx.clock(),
    )
    await svc.save(change, who.tenant.id)
    return web.json_response(await _view(ctx, who, reg.id), status=201)


@endpoint(
    "POST",
    "/v1/sender-ids/{id}/submit",
    summary="Submit draft countries (missing documents are listed)",
    tag="Sender IDs",
    scope="onboarding",
    body=SubmitRequest,
    errors=_ERRORS,
)
async def submit_(request: web.Request) -> web.Response:
    who = await authenticate(request)
    _onboarding(who)
    ctx = request.app[CTX]
    svc = _svc(ctx)
    raw = await json_body(request, allow_empty=True)
    req = decode(raw, SubmitRequest) if raw.strip() else SubmitRequest()
    reg = await svc.load(who.tenant.id, request.match_info["id"])
    try:
        # a rejected or expired country named again goes back to draft first
        targets = None
        if req.countries is not None:
            targets = [
                t.target for t in reg.targets if t.target.country in {c.upper() for c in req.countries}
            ]
            for t in targets:
                if reg.status(t).state.value in ("rejected", "expired"):
                    change = resubmit(reg, t, actor=_actor(who), at=_now(ctx))
                    reg = await svc.save(change, who.tenant.id)
        outcome = submit(reg, targets, rules=svc.rules, actor=_actor(who), at=_now(ctx))
    except SenderIdError as e:
        raise api_error(e) from None
    await svc.save(outcome.change, who.tenant.id)
    refused = [
        {
            "country": t.country,
            "route": t.route,
            "missing": list(m),
            "missing_labels": [DOCUMENT_LABELS.get(c, c) for c in m],
        }
        for t, m in outcome.refused.items()
    ]
    return web.json_response({"registration": await _view(ctx, who, reg.id), "refused": refused})


async def _decide(request: web.Request, approve_it: bool) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    ctx = request.app[CTX]
    svc = _svc(ctx)
    req = decode(await json_body(request), DecisionRequest)
    reg = await svc.load(who.tenant.id, request.match_info["id"])
    target = Target(req.country.upper(), req.route)
    try:
        if approve_it:
            until = None
            if req.valid_until is not None:
                from datetime import UTC, datetime

                until = datetime.fromtimestamp(req.valid_until, UTC)
            change = approve(reg, target, actor=_actor(who), at=_now(ctx), valid_until=until)
        else:
            change = reject(reg, target, req.reason, actor=_actor(who), at=_now(ctx))
    except SenderIdError as e:
        raise api_error(e) from None
    await svc.save(change, who.tenant.id)
    return web.json_response(await _view(ctx, who, reg.id))


@endpoint(
    "POST",
    "/v1/sender-ids/{id}/approve",
    summary="Approve a submitted country",
    tag="Sender IDs",
    scope="admin",
    body=DecisionRequest,
    errors=_ERRORS,
)
async def approve_(request: web.Request) -> web.Response:
    return await _decide(request, True)


@endpoint(
    "POST",
    "/v1/sender-ids/{id}/reject",
    summary="Reject a submitted country, with a reason",
    tag="Sender IDs",
    scope="admin",
    body=DecisionRequest,
    errors=_ERRORS,
)
async def reject_(request: web.Request) -> web.Response:
    return await _decide(request, False)


@endpoint(
    "GET",
    "/v1/sender-ids/{id}/audit",
    summary="A registration's audit trail",
    tag="Sender IDs",
    scope="onboarding",
    errors=("unauthorized", "forbidden", "not_found"),
)
async def audit_trail(request: web.Request) -> web.Response:
    who = await authenticate(request)
    _onboarding(who)
    ctx = request.app[CTX]
    reg = await _svc(ctx).load(who.tenant.id, request.match_info["id"])
    records = await ctx.db.audit_records(who.tenant.id, target=reg.id)
    return web.json_response(
        {
            "entries": [
                {"actor": r.actor, "at": r.at, "action": r.action, "details": json.loads(r.details)}
                for r in records
            ]
        }
    )


@endpoint(
    "PUT",
    "/v1/brand",
    summary="The tenant's brand profile (local presence per country)",
    tag="Brand",
    scope="onboarding",
    errors=("invalid_request", "invalid_json", "unauthorized", "forbidden"),
)
async def put_brand(request: web.Request) -> web.Response:
    who = await authenticate(request)
    _onboarding(who)
    ctx = request.app[CTX]
    try:
        data = json.loads(await json_body(request))
    except ValueError:
        raise ApiError("invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError("invalid_request", "Send a JSON object.")
    fallback = data.pop("fallback_sender", None)
    try:
        profile = parse_profile(data)
    except SenderIdError as e:
        raise api_error(e) from None
    previous = await ctx.db.get_brand(who.tenant.id)
    if profile.well_known is False and previous and previous.get("well_known") and "admin" not in who.scopes:
        raise ApiError(
            "forbidden",
            "Only an admin key may clear 'well_known' (it makes traffic local).",
            required_scope="admin",
        )
    await ctx.db.put_brand(who.tenant.id, profile_to_json(profile), ctx.clock())
    if fallback is not None:
        if not isinstance(fallback, str) or len(fallback) > 16:
            raise ApiError("invalid_request", "'fallback_sender' must be a sender ID string")
        await ctx.db.update_tenant_settings(who.tenant.id, {"fallback_sender": fallback.strip() or None})
    await ctx.db.append_audit(
        at=ctx.clock(),
        actor=_actor(who),
        tenant_id=who.tenant.id,
        action="brand.update",
        target=who.tenant.id,
        details={"profile": profile_to_json(profile), "fallback_sender": fallback},
    )
    _svc(ctx).invalidate()
    return web.json_response(
        {"brand": profile_to_json(profile_from_json(profile_to_json(profile))), "fallback_sender": fallback}
    )


@endpoint(
    "GET",
    "/v1/brand/classification",
    summary="International or local in a country, with reasons",
    tag="Brand",
    scope="any",
    errors=("invalid_request", "unauthorized"),
    query=(Query("country", "ISO 3166-1 alpha-2 code of the destination", required=True),),
)
async def classification(request: web.Request) -> web.Response:
    who = await authenticate(request)
    country = request.query.get("country", "").upper()
    if len(country) != 2 or not country.isalpha():
        raise ApiError("invalid_request", "Give ?country=XX (ISO 3166-1 alpha-2).")
    result = await _svc(request.app[CTX]).brand_class(who.tenant.id, country)
    return web.json_response(result.as_json())


def _now(ctx: Context) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ctx.clock(), UTC)
