"""The OTP path over real HTTP, on both state backends: request → sim-carrier → verify → metrics."""

from __future__ import annotations

import asyncio
import re

from prometheus_client import CollectorRegistry

from tests.gateway.harness import Gw

NUM = "+4915123456789"


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    v = registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_send_verify_counts(gw: Gw) -> None:
    key = await gw.tenant()
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    assert st == 202, body
    assert body["status"] == "pending" and body["to_masked"] == "+49*********89"
    await gw.settle()
    code = gw.code_for(NUM)
    assert len(code) == 6
    st, body, _ = await gw.call("POST", f"/v1/otp/{body['id']}/verify", key, {"code": code})
    assert (st, body["status"]) == (200, "verified")
    reg = gw.ctx.instruments.registry
    tenant = next(iter(gw.ctx.instruments.otp_sent._metrics))[0]  # the one tenant label
    assert sample(reg, "smsgw_otp_sent_total", tenant=tenant, country="DE", route="sim-default") == 1
    assert sample(reg, "smsgw_otp_verified_total", tenant=tenant, country="DE", route="sim-default") == 1
    metrics = await gw.client.get("/metrics")
    text = await metrics.text()
    assert "smsgw_otp_verified_total" in text and "4915123456789" not in text and code not in text


async def test_message_status_reaches_delivered_with_route(gw: Gw) -> None:
    key = await gw.tenant()
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    await gw.settle()
    st, msg, _ = await gw.call("GET", f"/v1/messages/{body['message_id']}", key)
    assert st == 200
    assert msg["status"] == "delivered" and msg["route"] == "sim-default" and msg["carrier"] == "sim"
    assert msg["route_reason"].startswith("cheapest eligible")
    st, otp, _ = await gw.call("GET", f"/v1/otp/{body['id']}", key)
    assert st == 200 and otp["status"] == "pending" and otp["to_masked"] == "+49*********89"


async def test_wrong_code_then_lockout(gw: Gw) -> None:
    key = await gw.tenant()
    _, body, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    await gw.settle()
    code = gw.code_for(NUM)
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        st, err, _ = await gw.call("POST", f"/v1/otp/{body['id']}/verify", key, {"code": wrong})
        assert st == 400 and err["error"]["code"] == "incorrect_code"
        assert err["error"]["attempts_left"] == left
    st, err, _ = await gw.call("POST", f"/v1/otp/{body['id']}/verify", key, {"code": wrong})
    assert st == 429 and err["error"]["code"] == "too_many_attempts"
    # even the right code is refused once the attempts are used up
    st, err, _ = await gw.call("POST", f"/v1/otp/{body['id']}/verify", key, {"code": code})
    assert st == 429 and err["error"]["code"] == "too_many_attempts"


async def test_expired_code_gets_410(gw: Gw) -> None:
    key = await gw.tenant()
    _, body, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    await gw.settle()
    code = gw.code_for(NUM)
    gw.clock.advance(301)
    st, err, _ = await gw.call("POST", f"/v1/otp/{body['id']}/verify", key, {"code": code})
    assert st == 410 and err["error"]["code"] == "expired"
    st, otp, _ = await gw.call("GET", f"/v1/otp/{body['id']}", key)
    assert otp["status"] == "expired"


async def test_verified_code_cannot_be_replayed(gw: Gw) -> None:
    key = await gw.tenant()
    _, body, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    await gw.settle()
    code = gw.code_for(NUM)
    assert (await gw.call("POST", f"/v1/otp/{body['id']}/verify", key, {"code": code}))[0] == 200
    st, err, _ = await gw.call("POST", f"/v1/otp/{body['id']}/verify", key, {"code": code})
    assert st == 409 and err["error"]["code"] == "conflict"


async def test_resend_cooldown_and_number_limits(gw: Gw) -> None:
    key = await gw.tenant()
    assert (await gw.call("POST", "/v1/otp", key, {"to": NUM}))[0] == 202
    st, err, headers = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    assert st == 429 and err["error"]["code"] == "rate_limited" and err["error"]["scope"] == "number"
    assert err["error"]["limit"] == "cooldown" and 1 <= int(headers["Retry-After"]) <= 30
    other = "+4915123456780"
    for _ in range(8):  # anti-fraud's per-number limit: 8 an hour
        st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": other})
        assert st == 202, body
        gw.clock.advance(61)
    st, err, headers = await gw.call("POST", "/v1/otp", key, {"to": other})
    assert st == 429 and err["error"]["scope"] == "number"
    assert (
        err["error"]["reasons"][0]["code"] == "rate_limited"
        and "per hour" in err["error"]["reasons"][0]["message"]
    )
    assert int(headers["Retry-After"]) > 60  # until the hour's window has room again
    # another number is not affected
    assert (await gw.call("POST", "/v1/otp", key, {"to": "+4915123456781"}))[0] == 202


async def test_tenants_do_not_see_each_other(gw: Gw) -> None:
    a, b = await gw.tenant("a"), await gw.tenant("b")
    _, body, _ = await gw.call("POST", "/v1/otp", a, {"to": NUM})
    for path in (f"/v1/otp/{body['id']}", f"/v1/messages/{body['message_id']}"):
        st, err, _ = await gw.call("GET", path, b)
        assert st == 404 and err["error"]["code"] == "not_found"
    st, err, _ = await gw.call("POST", f"/v1/otp/{body['id']}/verify", b, {"code": "123456"})
    assert st == 404


async def test_scopes_and_keys(gw: Gw) -> None:
    verify_only = await gw.tenant("v", scopes="verify")
    st, err, headers = await gw.call("POST", "/v1/otp", None, {"to": NUM})
    assert st == 401 and err["error"]["code"] == "unauthorized" and "Bearer" in headers["WWW-Authenticate"]
    st, err, _ = await gw.call("POST", "/v1/otp", "sk_live_not-a-key", {"to": NUM})
    assert st == 401
    st, err, _ = await gw.call("POST", "/v1/otp", verify_only, {"to": NUM})
    assert st == 403 and err["error"]["code"] == "forbidden" and err["error"]["required_scope"] == "send"


async def test_country_not_permitted(gw: Gw) -> None:
    key = await gw.tenant(countries="US,GB")
    st, err, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    assert st == 403 and err["error"]["code"] == "country_not_permitted" and err["error"]["country"] == "DE"


async def test_bad_input_gets_specific_errors(gw: Gw) -> None:
    key = await gw.tenant()
    cases = [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_request"),
        (b'{"to": 4915123456789}', 400, "invalid_request"),
        (b'{"to": "+4915123456789", "colour": "red"}', 400, "invalid_request"),
        (b'{"to": "4915123456789"}', 400, "invalid_number"),
        (b'{"to": "+49151"}', 400, "invalid_number"),
        (b'{"to": "+999123456789"}', 400, "invalid_number"),
        (b'{"to": "+4900000000000"}', 400, "invalid_number"),
        (b'{"to": "+4915123456789", "template": "nope"}', 400, "invalid_request"),
        (b'{"to": "+4915123456789", "pad": "' + b"x" * 70_000 + b'"}', 413, "payload_too_large"),
    ]
    for raw, status, code in cases:
        st, err, _ = await gw.call("POST", "/v1/otp", key, data=raw)
        assert (st, err["error"]["code"]) == (status, code), raw[:40]
        assert "4915123456789" not in err["error"]["message"]
    st, err, _ = await gw.call("POST", "/v1/otp/otp_nope/verify", key, data=b'{"code": 123}')
    assert st == 400 and err["error"]["code"] == "invalid_request"
    st, err, _ = await gw.call("POST", "/v1/otp/otp_nope/verify", key, {"code": "123456"})
    assert st == 404
    st, err, _ = await gw.call("GET", "/v1/nowhere", key)
    assert st == 404 and err["error"]["code"] == "not_found"
    st, err, _ = await gw.call("DELETE", "/v1/otp", key)
    assert st == 405 and err["error"]["code"] == "method_not_allowed"


async def test_locale_templates(gw: Gw) -> None:
    key = await gw.tenant()
    assert (await gw.call("POST", "/v1/otp", key, {"to": NUM, "locale": "de-DE"}))[0] == 202
    assert (await gw.call("POST", "/v1/otp", key, {"to": "+33612345678", "locale": "xx"}))[0] == 202
    await gw.settle()
    assert gw.sim.texts(NUM)[-1].startswith("Ihr smsgw-Code lautet ")
    assert gw.sim.texts("+33612345678")[-1].startswith("Your smsgw code is ")


async def test_ops_endpoints(gw: Gw) -> None:
    for path in ("/healthz", "/readyz"):
        resp = await gw.client.get(path)
        assert resp.status == 200
    spec = await (await gw.client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/v1/otp",
        "/v1/otp/{id}/verify",
        "/v1/otp/{id}",
        "/v1/messages",
        "/v1/messages/{id}",
        "/metrics",
        "/healthz",
        "/readyz",
    ):
        assert path in spec["paths"], path
    page = await (await gw.client.get("/docs")).text()
    assert "/v1/otp/{id}/verify" in page
    assert not re.search(r"""(?:src|href)=["']https?://""", page), (
        "the docs page must not load internet assets"
    )


async def test_nothing_in_clear_on_disk(gw: Gw) -> None:
    key = await gw.tenant()
    numbers = [f"+4915123{n:06d}" for n in range(20)]
    for to in numbers:
        assert (await gw.call("POST", "/v1/otp", key, {"to": to}))[0] == 202
    await gw.settle()
    codes = [gw.code_for(to) for to in numbers]
    await gw.ctx.db.close()  # flush and checkpoint what it can; the files are scanned as they are
    blob = gw.at_rest()
    assert gw.ctx.db.keyring.lookup(numbers[0]) in blob  # the scan sees what was written (the blind index)
    for to, code in zip(numbers, codes, strict=True):
        assert to[1:].encode() not in blob and to[3:].encode() not in blob
        assert not re.search(rb"(?<!\d)" + code.encode() + rb"(?!\d)", blob), "an OTP code in clear"
    await gw.ctx.db.open()


async def test_a_request_the_resend_cooldown_refuses_is_not_counted_as_a_send(gw: Gw) -> None:
    """A user tapping "resend" within the cooldown gets 429 and nothing is sent: anti-fraud must not
    count those taps against the number's hourly limit (8 an hour), or the user's next real resend
    after the cooldown is refused as if 8 codes had gone out."""
    key = await gw.tenant()
    assert (await gw.call("POST", "/v1/otp", key, {"to": NUM}))[0] == 202
    for _ in range(9):
        st, err, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
        assert st == 429 and err["error"]["limit"] == "cooldown", err
    gw.clock.advance(31)
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    assert st == 202, body


async def test_a_revoked_key_is_refused_once_its_cache_entry_expires(gw: Gw) -> None:
    """Every process caches a key's principal for 10 s (``PrincipalCache``): a revoked key works until
    then and is refused (401) after; the tenant's other keys go on working."""
    from gateway.auth import PrincipalCache
    from gateway.privacy.crypto import hash_api_key

    cache = PrincipalCache(ttl=0.2)
    gw.ctx.extras["principal_cache"] = cache
    key = await gw.tenant()
    principal = await gw.ctx.db.principal_for_key(hash_api_key(key))
    assert principal is not None
    tenant_id = principal.tenant.id
    other = "sk_live_second-key-of-the-same-tenant"
    assert await gw.ctx.db.add_api_key(tenant_id, hash_api_key(other), frozenset({"send"}), 0.0)
    assert (await gw.call("POST", "/v1/otp", key, {"to": NUM}))[0] == 202
    assert await gw.ctx.db.revoke_api_key(tenant_id, hash_api_key(key), 1.0)
    st, _, _ = await gw.call("GET", "/v1/otp/otp_nope", key)
    assert st == 404  # still cached: within the TTL the key works
    await asyncio.sleep(0.25)
    st, err, headers = await gw.call("GET", "/v1/otp/otp_nope", key)
    assert (
        st == 401
        and err["error"]["code"] == "unauthorized"
        and "invalid_token" in headers["WWW-Authenticate"]
    )
    assert (await gw.call("POST", "/v1/otp", other, {"to": "+4915123456780"}))[0] == 202
