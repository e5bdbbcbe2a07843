"""Tracked short links: ``GET /l/{id}`` counts a click on the message's link and redirects."""

from __future__ import annotations

from aiohttp import web

from gateway.api.registry import endpoint
from gateway.context import CTX
from gateway.errors import ApiError
from gateway.ids import new_id
from metrics.conversion import ConversionError, counts_as_click, parse_link_id


@endpoint(
    "GET",
    "/l/{id}",
    summary="A tracked link: counts the click, redirects to the original URL",
    tag="Metrics",
    success=302,
    errors=("not_found",),
)
async def follow_link(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    try:
        link_id = parse_link_id(request.match_info["id"])
    except ConversionError:
        raise ApiError("not_found", "No such link.") from None
    found = await ctx.db.get_link(link_id)
    if found is None:
        raise ApiError("not_found", "No such link.")
    tenant_id, message_id, url = found
    if counts_as_click(request.method, request.headers.get("User-Agent")):
        store = ctx.regions.for_id(message_id)
        msg = None if store is None else await store.get_message(tenant_id, message_id)
        if store is not None and msg is not None:
            await store.insert_event(
                event_id=new_id("evt", ctx.regions.region_for(msg.country)),
                tenant_id=tenant_id,
                message_id=message_id,
                otp_id=None,
                event="click",
                country=msg.country,
                route=msg.route,
                phone_hmac=msg.phone_hmac,
                at=ctx.clock(),
            )
            ctx.instruments.conversion_events.labels(tenant_id, msg.country, "click").inc()
    raise web.HTTPFound(url)
