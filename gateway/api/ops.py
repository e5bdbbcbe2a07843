"""Operations endpoints: health, readiness, Prometheus metrics, OpenAPI, carrier receipts."""

from __future__ import annotations

import json
import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.registry import Query, endpoint
from gateway.context import CTX
from gateway.errors import ApiError
from gateway.schemas import json_body, json_reply, token_matches


@endpoint("GET", "/healthz", summary="Alive", tag="Operations")
async def healthz(request: web.Request) -> web.Response:
    # the process id tells ops (and tests) which of `serve --workers N` answered
    return web.json_response({"status": "ok", "pid": os.getpid()})


@endpoint(
    "GET",
    "/readyz",
    summary="Ready to take traffic (store, state and a route up)",
    tag="Operations",
    errors=("unavailable",),
)
async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    checks = {
        "started": ctx.ready,
        "draining": ctx.draining,
        "store": ctx.ready and await ctx.db.ping(),
        "store_writable": ctx.ready and all([await s.writable() for _, s in ctx.regions.all()]),
        "state": ctx.ready and await ctx.st.ping(),
        "route": ctx.ready and any(ctx.routes.is_up(r) for r in ctx.routes.routes),
    }
    ok = (
        checks["started"]
        and not checks["draining"]
        and checks["store"]
        and checks["store_writable"]
        and checks["route"]
    )
    return web.json_response(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503
    )


@endpoint("GET", "/metrics", summary="Prometheus metrics", tag="Operations")
async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = generate_latest(ctx.exposition or ctx.instruments.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


RECEIPTS_MAX_BYTES = 6 * 1024 * 1024  # what aiohttp's client_max_size allowed them before


@endpoint(
    "POST",
    "/v1/carriers/{carrier}/receipts",
    summary="Delivery receipts from an HTTP carrier",
    tag="Carriers",
    errors=("unauthorized", "not_found", "invalid_request"),
    query=(Query("token", "the carrier token of this gateway (its receipt URLs carry it)", required=True),),
)
async def carrier_receipt(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = request.match_info["carrier"]
    token = request.query.get("token", "")
    expected = ctx.extras.get("receipt_token")
    if not isinstance(expected, str) or not token_matches(token, expected):
        raise ApiError("unauthorized", "Bad receipt token.")
    carrier = ctx.routes.carriers.get(name)
    handle = getattr(carrier, "handle_receipt", None)
    if handle is None:
        raise ApiError("not_found", "No HTTP carrier of that name.")
    # a carrier may post a batch, so the limit is the app's upload limit, not server.max_body_bytes; a
    # body that stalls gets 408 after server.body_timeout_seconds like every other JSON body
    raw = await json_body(request, limit=RECEIPTS_MAX_BYTES)
    try:
        payload = json.loads(raw)
    except ValueError:
        raise ApiError("invalid_json") from None
    if not isinstance(payload, dict | list):
        raise ApiError("invalid_request", "Post a receipt object or an array of them.")
    accepted = await handle(payload)
    if not accepted:
        raise ApiError("invalid_request", "A receipt needs 'id' and a known 'status'.")
    return json_reply({"accepted": accepted})
