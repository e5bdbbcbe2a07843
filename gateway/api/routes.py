"""Routing administration and status callbacks: the route table, its reload, the tenant's webhook."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web

from gateway.api.registry import endpoint
from gateway.auth import authenticate, require
from gateway.config import ConfigError, Settings
from gateway.context import CTX, Context
from gateway.errors import ApiError
from gateway.schemas import decode, json_body
from gateway.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, url_problem

log = logging.getLogger("smsgw.api")

ROUTE_LOADER = "route_loader"  # ctx.extras: () -> Settings, re-reads the configuration (blocking)
WEBHOOKS = "webhooks"  # ctx.extras: the WebhookSender


class WebhookRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str
    secret: str


async def reload_routes(ctx: Context) -> dict[str, object]:
    """Re-read the configuration and swap the route table; a bad file keeps the old one (ConfigError)."""
    loader = ctx.extras.get(ROUTE_LOADER)
    if not callable(loader):
        raise ApiError("unavailable", "The route table cannot be reloaded in this process.")
    try:
        settings = await asyncio.to_thread(loader)
    except ConfigError as e:
        ctx.instruments.route_reloads.labels("refused").inc()
        log.error("route table reload refused: the configuration is invalid", extra={"problems": e.problems})
        raise
    assert isinstance(settings, Settings)
    return await ctx.routes.reload(settings)


@endpoint(
    "GET",
    "/v1/routes",
    summary="Routes, their carriers, health and recent rates",
    tag="Routing",
    scope="admin",
)
async def get_routes(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    return web.json_response(request.app[CTX].routes.describe())


@endpoint(
    "POST",
    "/v1/admin/routes/reload",
    summary="Re-read the configuration file and swap the route table (the old one stays on error)",
    tag="Routing",
    scope="admin",
    errors=("invalid_request", "unavailable"),
)
async def post_reload(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    ctx = request.app[CTX]
    try:
        report = await reload_routes(ctx)
    except ConfigError as e:
        raise ApiError(
            "invalid_request",
            "The configuration file is invalid; the route table was not changed.",
            problems=e.problems,
        ) from None
    await ctx.db.append_audit(
        at=ctx.clock(),
        actor=who.tenant.id,
        tenant_id=who.tenant.id,
        action="routes.reload",
        target=str(report["generation"]),
        details={"carriers": report["carriers"], "routes": report["routes"]},
    )
    return web.json_response({"reloaded": True, **report})


def _hook_view(url: str, created_at: float) -> dict[str, object]:
    return {
        "url": url,
        "created_at": created_at,
        "signature_header": SIGNATURE_HEADER,
        "timestamp_header": TIMESTAMP_HEADER,
        "events": ["submitted", "delivered", "failed", "expired"],
    }


def _sender(ctx: Context) -> WebhookSender | None:
    sender = ctx.extras.get(WEBHOOKS)
    return sender if isinstance(sender, WebhookSender) else None


@endpoint(
    "PUT",
    "/v1/webhook",
    summary="Register the tenant's status callback URL and signing secret",
    tag="Routing",
    scope="admin",
    body=WebhookRequest,
    errors=("invalid_request", "invalid_json"),
)
async def put_webhook(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    ctx = request.app[CTX]
    req = decode(await json_body(request), WebhookRequest)
    problem = url_problem(req.url, ctx.settings.webhooks.allow_private_hosts)
    if problem:
        raise ApiError("invalid_request", f"'url': {problem}.", field="url")
    if not 16 <= len(req.secret) <= 256:
        raise ApiError("invalid_request", "'secret' must be 16 to 256 characters.", field="secret")
    now = ctx.clock()
    await ctx.db.put_webhook(who.tenant.id, req.url, req.secret, now)
    sender = _sender(ctx)
    if sender is not None:
        sender.invalidate(who.tenant.id)
    await ctx.db.append_audit(
        at=now, actor=who.tenant.id, tenant_id=who.tenant.id, action="webhook.put", target="", details={}
    )
    return web.json_response(_hook_view(req.url, now))


@endpoint(
    "GET",
    "/v1/webhook",
    summary="The tenant's status callback (never the secret)",
    tag="Routing",
    scope="admin",
    errors=("not_found",),
)
async def get_webhook(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    hook = await request.app[CTX].db.get_webhook(who.tenant.id)
    if hook is None:
        raise ApiError("not_found", "No webhook registered.")
    return web.json_response(_hook_view(hook.url, hook.created_at))


@endpoint(
    "DELETE",
    "/v1/webhook",
    summary="Stop status callbacks",
    tag="Routing",
    scope="admin",
    success=204,
    errors=("not_found",),
)
async def delete_webhook(request: web.Request) -> web.Response:
    who = await authenticate(request)
    require(who, "admin")
    ctx = request.app[CTX]
    if not await ctx.db.delete_webhook(who.tenant.id):
        raise ApiError("not_found", "No webhook registered.")
    sender = _sender(ctx)
    if sender is not None:
        sender.invalidate(who.tenant.id)
    await ctx.db.append_audit(
        at=ctx.clock(),
        actor=who.tenant.id,
        tenant_id=who.tenant.id,
        action="webhook.delete",
        target="",
        details={},
    )
    return web.Response(status=204)
