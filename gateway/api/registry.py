"""The route table shared by the app factory and the OpenAPI generator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Query:
    """A query parameter, for the OpenAPI document (the handler parses and validates it)."""

    name: str
    description: str
    type: str = "string"  # JSON-schema type: string | integer
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    scope: str | None = None  # None: no API key needed
    body: type | None = None
    success: int = 200
    errors: tuple[str, ...] = ()
    extra_responses: dict[int, str] = field(default_factory=dict)
    query: tuple[Query, ...] = ()


ROUTES: list[Endpoint] = []


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    scope: str | None = None,
    body: type | None = None,
    success: int = 200,
    errors: tuple[str, ...] = (),
    query: tuple[Query, ...] = (),
) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        ROUTES.append(Endpoint(method, path, fn, summary, tag, scope, body, success, errors, {}, query))
        return fn

    return deco
