"""The onboarding console: a static single page at ``/console/`` that talks to the /v1 API.

The page, its script and its style sheet ship inside the package (``gateway/console/``) and are
served from memory with a strict Content-Security-Policy: everything from this origin only, no inline
script, no asset from the internet. The browser keeps the API key in ``sessionStorage`` and sends it
as a bearer token; these endpoints need no key themselves.

``/console/vocabulary.json`` gives the page the human labels of document codes and registration
states, so the console never carries its own copy of ``senderid``'s vocabulary.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from gateway.api.registry import endpoint
from gateway.errors import ApiError
from senderid import DOCUMENT_LABELS, FROM_REQUEST

# the files the console consists of, with their content types; nothing else is served
FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

STATE_LABELS: dict[str, str] = {
    "draft": "Draft",
    "submitted": "Submitted",
    "approved": "Approved",
    "rejected": "Rejected",
    "expired": "Expired",
}

# 'self' only: the console must work without the internet, and an injected script could read the key
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def make_asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@functools.cache
def asset(name: str) -> Asset:
    """A console file, read from the package once and kept (they are a few kilobytes)."""
    if name not in FILES:
        raise KeyError(name)
    body = resources.files("gateway.console").joinpath(name).read_bytes()
    return make_asset(body, FILES[name])


_ASIDE = re.compile(r"\s*\((?:e\.g\.[^)]*|[^)]{9,})\)")


def short_label(label: str) -> str:
    """A label fit for a table cell: examples and long asides in parentheses dropped, short
    abbreviations kept ("letter of authorization (LOA)"), first letter capitalised."""
    short = _ASIDE.sub("", label).strip() or label
    return short[:1].upper() + short[1:]


def vocabulary() -> dict[str, object]:
    """Labels the page shows instead of codes; codes satisfied by the request need no upload."""
    return {
        "documents": dict(DOCUMENT_LABELS),
        "short": {code: short_label(text) for code, text in DOCUMENT_LABELS.items()},
        "from_request": sorted(FROM_REQUEST),
        "states": STATE_LABELS,
    }


@functools.cache
def vocabulary_asset() -> Asset:
    body = json.dumps(vocabulary(), sort_keys=True).encode()
    return make_asset(body, "application/json")


def serve(request: web.Request, a: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": a.etag}
    if a.etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    resp = web.Response(body=a.body, headers=headers)
    resp.headers["Content-Type"] = a.content_type
    return resp


@endpoint("GET", "/console", summary="Redirect to the onboarding console", tag="Console")
async def console_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


@endpoint(
    "GET",
    "/console/",
    summary="Onboarding console: sender-ID requirements, requests, documents, reviews",
    tag="Console",
)
async def console_page(request: web.Request) -> web.Response:
    return serve(request, asset("index.html"))


@endpoint(
    "GET",
    "/console/vocabulary.json",
    summary="Labels of document codes and registration states, for the console",
    tag="Console",
)
async def console_vocabulary(request: web.Request) -> web.Response:
    return serve(request, vocabulary_asset())


@endpoint(
    "GET",
    "/console/{file}",
    summary="The console's script and style sheet",
    tag="Console",
    errors=("not_found",),
)
async def console_file(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in FILES:
        raise ApiError("not_found", "No such console file.")
    return serve(request, asset(name))
