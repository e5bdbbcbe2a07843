"""API keys: issued once, stored as SHA-256 only, resolved per request through a short-lived cache."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from aiohttp import web

from gateway.context import CTX
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.privacy.crypto import hash_api_key
from gateway.store.base import Store
from gateway.store.records import SCOPES, Principal, Tenant

PRINCIPAL = web.RequestKey("smsgw_principal", Principal)
KEY_PREFIX = "sk_live_"


class PrincipalCache:
    """Key hash → principal for ``ttl`` seconds (a revoked key stops working within ttl)."""

    def __init__(self, ttl: float = 10.0, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self._d: OrderedDict[bytes, tuple[Principal | None, float]] = OrderedDict()

    async def get(self, store: Store, key_hash: bytes) -> Principal | None:
        now = time.monotonic()
        hit = self._d.get(key_hash)
        if hit is not None and hit[1] > now:
            return hit[0]
        principal = await store.principal_for_key(key_hash)
        self._d[key_hash] = (principal, now + self.ttl)
        self._d.move_to_end(key_hash)
        while len(self._d) > self.size:
            self._d.popitem(last=False)
        return principal


def key_id(key_hash: bytes) -> str:
    """What operators call a key by (``smsgw tenant key list|revoke``): the first 6 bytes of its hash in
    hex. It names the key without being it: the key cannot be rebuilt from it."""
    return key_hash[:6].hex()


async def create_tenant(
    store: Store, name: str, scopes: frozenset[str], countries: frozenset[str], now: float
) -> tuple[Tenant, str]:
    bad = scopes - set(SCOPES)
    if bad or not scopes:
        raise ValueError(f"unknown scope(s) {sorted(bad)}; known: {', '.join(SCOPES)}")
    if not name.strip() or len(name) > 100:
        raise ValueError("tenant name must be 1-100 characters")
    tenant = Tenant(new_id("tn"), name.strip(), countries, now)
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    await store.create_tenant(tenant, hash_api_key(api_key), scopes)
    return tenant, api_key


async def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            "unauthorized",
            "Send 'Authorization: Bearer <api_key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="smsgw"'},
        )
    ctx = request.app[CTX]
    cache = ctx.extras.setdefault("principal_cache", PrincipalCache())
    assert isinstance(cache, PrincipalCache)
    principal = await cache.get(ctx.db, hash_api_key(token.strip()))
    if principal is None:
        raise ApiError(
            "unauthorized",
            "Unknown or revoked API key.",
            headers={"WWW-Authenticate": 'Bearer realm="smsgw", error="invalid_token"'},
        )
    return principal


def require(principal: Principal, scope: str) -> None:
    """The key holds ``scope`` (or ``admin``); ``scope`` may name alternatives: ``"send|verify"``."""
    wanted = scope.split("|")
    if "admin" in principal.scopes or any(s in principal.scopes for s in wanted):
        return
    what = " or ".join(f"'{s}'" for s in wanted)
    raise ApiError("forbidden", f"This API key lacks the {what} scope.", required_scope=scope)
