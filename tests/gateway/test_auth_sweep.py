"""Every endpoint that needs an API key refuses a request without one (401) and a key without its scope
(403), before it looks at the body: swept over the route table, so a new endpoint cannot forget it."""

from __future__ import annotations

import re

import pytest

import gateway.app  # noqa: F401  (registers every route)
from gateway.api.registry import ROUTES, Endpoint
from tests.gateway.harness import Gw

SCOPED = [e for e in ROUTES if e.scope is not None]
# a key holding every scope but the one an endpoint needs ("any": every key will do, so no 403 case)
ALL_SCOPES = {"send", "verify", "onboarding", "admin"}


def concrete(e: Endpoint) -> str:
    return re.sub(r"\{[^}]+\}", "x_0000", e.path)


@pytest.mark.parametrize("e", SCOPED, ids=[f"{e.method} {e.path}" for e in SCOPED])
async def test_no_key_is_401_and_a_key_without_the_scope_is_403(gw: Gw, e: Endpoint) -> None:
    st, err, headers = await gw.call(e.method, concrete(e), None, json={})
    assert (st, err["error"]["code"]) == (401, "unauthorized"), err
    assert headers["WWW-Authenticate"].startswith("Bearer")  # RFC 6750
    st, err, headers = await gw.call(e.method, concrete(e), "sk_live_not-a-key", json={})
    assert (st, err["error"]["code"]) == (401, "unauthorized"), err
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    if e.scope != "any":
        others = ",".join(sorted(ALL_SCOPES - {*e.scope.split("|"), "admin"}))
        key = await gw.tenant("t-" + e.handler.__name__, scopes=others)
        st, err, _ = await gw.call(e.method, concrete(e), key, json={})
        assert (st, err["error"]["code"]) == (403, "forbidden"), err


def test_the_sweep_covers_the_api() -> None:
    assert len(SCOPED) > 30 and {e.scope for e in SCOPED} >= {"send", "verify", "onboarding", "admin", "any"}
    assert {s for e in SCOPED for s in e.scope.split("|")} <= ALL_SCOPES | {"any"}  # no typo in a scope
