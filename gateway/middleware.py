"""The edge: request ids, timing into the latency histogram, and the one place errors are rendered."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.context import CTX
from gateway.errors import ApiError
from gateway.ids import random_hex
from gateway.logs import request_id
from gateway.schemas import json_reply

log = logging.getLogger("smsgw.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    404: ("not_found", "No such path."),
    405: ("method_not_allowed", "This path does not take that method."),
    413: ("payload_too_large", "The request body is larger than allowed."),
    415: ("unsupported_media_type", "Send application/json."),
}


#: seconds a client should wait after a 503 ``unavailable`` from the store (disk full, read-only or
#: locked database, PostgreSQL down): long enough not to hammer it, short enough to recover quickly
STORE_RETRY_AFTER = "2"


def error_response(err: ApiError, rid: str) -> web.Response:
    resp = json_reply(err.body(), status=err.status, headers=err.headers)
    resp.headers["X-Request-Id"] = rid
    if err.status in _CLOSE_AFTER:
        resp.force_close()  # the rest of a stalled or oversized body is not read: the connection ends
    return resp


_CLOSE_AFTER = frozenset({408, 413})


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")
    if not rid or len(rid) > 64 or not rid.replace("-", "").isalnum():
        rid = random_hex(8)
    token = request_id.set(rid)
    t0 = time.perf_counter()
    status = 500
    try:
        try:
            resp = await handler(request)
            status = resp.status
            resp.headers["X-Request-Id"] = rid
            return resp
        except ApiError as e:
            status = e.status
            return error_response(e, rid)
        except web.HTTPException as e:
            code, message = _HTTP_CODES.get(e.status, ("invalid_request", e.reason))
            if e.status < 400:
                raise
            status = e.status
            return error_response(ApiError(code, message, status=e.status), rid)
        except Exception as e:
            stores = request.app[CTX].stores
            if stores is not None and isinstance(e, stores.unavailable):
                log.exception("store unavailable", extra={"path": request.path})
                status = 503
                return error_response(
                    ApiError(
                        "unavailable",
                        "The store cannot take this now; retry shortly.",
                        headers={"Retry-After": STORE_RETRY_AFTER},
                    ),
                    rid,
                )
            log.exception("unhandled error", extra={"path": request.path})
            status = 500
            return error_response(ApiError("internal_error"), rid)
    finally:
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else "unmatched"
        ctx = request.app[CTX]
        ctx.instruments.http_duration.labels(f"{request.method} {endpoint}", str(status)).observe(
            time.perf_counter() - t0
        )
        request_id.reset(token)
