"""The OpenAPI 3.1 document, built from the route table and the msgspec request types, and a
self-contained /docs page that renders it (no asset from the internet)."""

from __future__ import annotations

import html
import json
from typing import Any

import msgspec
from aiohttp import web

from gateway.api.registry import ROUTES, endpoint
from gateway.errors import ERROR_CODES


def build_spec(version: str) -> dict[str, Any]:
    bodies = [e.body for e in ROUTES if e.body is not None]
    _, components = msgspec.json.schema_components(bodies, ref_template="#/components/schemas/{name}")
    components["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                    "message": {"type": "string"},
                },
                "additionalProperties": True,
            }
        },
    }
    paths: dict[str, dict[str, Any]] = {}
    for e in ROUTES:
        op: dict[str, Any] = {
            "summary": e.summary,
            "tags": [e.tag],
            "operationId": e.handler.__name__,
            "responses": {str(e.success): {"description": "success"}},
        }
        params = [
            {"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for p in e.path.split("/")
            if p.startswith("{")
        ]
        for q in e.query:
            schema: dict[str, Any] = {"type": q.type}
            if q.minimum is not None:
                schema["minimum"] = q.minimum
            if q.maximum is not None:
                schema["maximum"] = q.maximum
            params.append(
                {
                    "name": q.name,
                    "in": "query",
                    "required": q.required,
                    "description": q.description,
                    "schema": schema,
                }
            )
        if params:
            op["parameters"] = params
        if e.scope:
            op["security"] = [{"bearer": []}]
            op["description"] = (
                "Needs any valid API key."
                if e.scope == "any"
                else "Needs an API key with the "
                + " or ".join(f"`{s}`" for s in e.scope.split("|"))
                + " scope (or `admin`)."
            )
        if e.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{e.body.__name__}"}}
                },
            }
        for code in e.errors:
            status = str(ERROR_CODES[code][0])
            resp = op["responses"].setdefault(
                status,
                {
                    "description": "",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            )
            resp["description"] = (resp["description"] + f" `{code}`: {ERROR_CODES[code][1]}").strip()
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smsgw",
            "version": version,
            "description": "International SMS gateway: OTP, messages, routing, anti-fraud, compliance.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@endpoint("GET", "/openapi.json", summary="This API, described in OpenAPI 3", tag="Operations")
async def openapi_json(request: web.Request) -> web.Response:
    from gateway import __version__

    return web.json_response(build_spec(__version__))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smsgw API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}}
h2{{border-bottom:1px solid #ddd;padding-bottom:.2rem}} code,pre{{background:#f4f4f6;border-radius:4px}}
pre{{padding:.6rem;overflow:auto}} .m{{display:inline-block;min-width:4rem;font-weight:700}}
details{{margin:.4rem 0}} summary{{cursor:pointer}}
</style></head><body>
<h1>smsgw API</h1><p>Machine-readable: <a href="/openapi.json">/openapi.json</a>.
Authenticate with <code>Authorization: Bearer &lt;api_key&gt;</code>.</p>
{sections}
</body></html>"""


def render_docs(spec: dict[str, Any]) -> str:
    by_tag: dict[str, list[str]] = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            resp = "".join(
                f"<li><code>{html.escape(s)}</code> {html.escape(r.get('description', ''))}</li>"
                for s, r in sorted(op["responses"].items())
            )
            body = ""
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                schema = json.dumps(spec["components"]["schemas"][ref], indent=2)
                body = f"<p>Body <code>{ref}</code>:</p><pre>{html.escape(schema)}</pre>"
            by_tag.setdefault(op["tags"][0], []).append(
                f"<details><summary><span class=m>{method.upper()}</span> <code>{html.escape(path)}</code> "
                f"— {html.escape(op['summary'])}</summary><p>{html.escape(op.get('description', ''))}</p>"
                f"{body}<ul>{resp}</ul></details>"
            )
    sections = "".join(f"<h2>{html.escape(t)}</h2>{''.join(items)}" for t, items in by_tag.items())
    return _PAGE.format(sections=sections)


@endpoint("GET", "/docs", summary="Human-readable API reference", tag="Operations")
async def docs(request: web.Request) -> web.Response:
    from gateway import __version__

    return web.Response(text=render_docs(build_spec(__version__)), content_type="text/html")
