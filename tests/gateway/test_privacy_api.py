"""Data-subject requests, consent, quiet hours, audit and retention over the API (both backends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestServer

from gateway.app import create_app, purge_all
from gateway.privacy.audit import verify_chain
from tests.conftest import free_port
from tests.gateway.conftest import ClientFactory
from tests.gateway.harness import Gw, ManualClock, Sim, make_settings

NUM = "+33612345678"


async def _otp(gw: Gw, key: str, to: str = NUM) -> dict[str, str]:
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": to})
    assert st == 202, body
    return dict(body)


async def test_export_then_erasure_then_export_is_empty(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin")
    other = await gw.tenant("other", scopes="send,verify,admin")
    otp = await _otp(gw, key)
    await gw.settle()
    assert (await gw.call("POST", "/v1/events", key, {"otp_id": otp["id"], "event": "signup"}))[0] == 202
    st, exp, _ = await gw.call("POST", "/v1/privacy/export", key, {"phone": NUM})
    assert st == 200 and [o["id"] for o in exp["otps"]] == [otp["id"]]
    assert (
        exp["messages"][0]["id"] == otp["message_id"] and exp["messages"][0]["body"] is None
    )  # OTP text never kept
    assert exp["events"][0]["event"] == "signup"
    st, exp_other, _ = await gw.call("POST", "/v1/privacy/export", other, {"phone": NUM})
    assert st == 200 and not exp_other["otps"] and not exp_other["messages"]

    st, receipt, _ = await gw.call("POST", "/v1/privacy/erasure", key, {"phone": NUM})
    fraud_state = receipt["removed"].pop("fraud_state")
    assert receipt["removed"].pop("rate_state") == 2  # the resend cooldown and hourly window
    assert st == 200 and receipt["removed"] == {
        "otps": 1,
        "messages": 1,
        "events": 1,
        "copies": 0,
        "consent": 0,
    }
    assert fraud_state >= 1  # the number's anti-fraud counters and limit windows
    assert "612345678" not in json.dumps(receipt) and receipt["subject"] == "+33*******78"
    assert receipt["due_at"] - receipt["received_at"] == 30 * 86400
    st, again, _ = await gw.call("POST", "/v1/privacy/erasure", key, {"phone": NUM})
    assert st == 200 and not any(again["removed"].values())  # idempotent
    st, exp2, _ = await gw.call("POST", "/v1/privacy/export", key, {"phone": NUM})
    assert not exp2["otps"] and not exp2["messages"] and not exp2["events"]
    assert (await gw.call("GET", f"/v1/otp/{otp['id']}", key))[0] == 404
    st, reqs, _ = await gw.call("GET", "/v1/privacy/requests", key)
    assert sorted(r["kind"] for r in reqs["requests"]) == ["erasure", "erasure", "export", "export"]


async def test_erasure_forgets_the_numbers_anti_fraud_state(gw: Gw) -> None:
    # monitor mode lets repeated sends through the score (a limit still refuses), so the limit is reached
    key = await gw.tenant("acme", scopes="send,verify,admin")
    other = await gw.tenant("other", scopes="send,verify,admin")

    async def check(who: str) -> str:
        st, body, _ = await gw.call("POST", "/v1/fraud/check", who, {"to": NUM})
        assert st == 200, body
        return str(body["action"])

    for _ in range(8):  # the number's hourly limit (8), past the resend cooldown each time
        for who in (key, other):
            st, body, _ = await gw.call("POST", "/v1/otp", who, {"to": NUM})
            assert st == 202, body
        gw.clock.advance(31)
    assert await check(key) == await check(other) == "rate_limited"
    st, receipt, _ = await gw.call("POST", "/v1/privacy/erasure", key, {"phone": NUM})
    assert st == 200 and receipt["removed"]["fraud_state"] >= 1
    assert await check(key) == "allow"  # this tenant's memory of the number is gone
    assert await check(other) == "rate_limited"  # another tenant's subject is that tenant's own


async def test_privacy_endpoints_need_admin_and_a_valid_number(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify")
    admin = await gw.tenant("adm", scopes="admin")
    st, err, _ = await gw.call("POST", "/v1/privacy/export", key, {"phone": NUM})
    assert st == 403 and err["error"]["code"] == "forbidden"
    st, err, _ = await gw.call("POST", "/v1/privacy/erasure", admin, {"phone": "+33"})
    assert st == 400 and err["error"]["code"] == "invalid_number"
    st, err, _ = await gw.call("POST", "/v1/privacy/erasure", admin, {"number": NUM})
    assert st == 400 and err["error"]["code"] == "invalid_request"


async def test_marketing_needs_opt_in_and_stop_opts_out(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin")
    de = "+4915123456789"
    msg = {
        "to": de,
        "sender_id": "ACME",
        "body": "Sale today",
        "category": "marketing",
        "quiet_hours": "defer",
    }
    st, err, _ = await gw.call("POST", "/v1/messages", key, msg)
    assert st == 403 and err["error"]["code"] == "no_consent"
    assert (await gw.call("POST", "/v1/consent", key, {"phone": de, "status": "opted_in"}))[0] == 200
    st, body, _ = await gw.call("POST", "/v1/messages", key, msg)
    assert st == 202, body
    assert body["to_masked"] == "+49*********89"  # masked from the number the use case parsed
    gw.clock.advance(3600)  # (past the per-number rate limits)
    # the phone answers STOP to that sender: the tenant that messaged it loses the consent
    token = gw.ctx.extras["receipt_token"]
    resp = await gw.client.post(
        f"/v1/carriers/sim/inbound?token={token}", json={"from": de, "to": "ACME", "text": "Stop"}
    )
    assert resp.status == 200 and (await resp.json()) == {"action": "opt_out", "tenants": 1}
    st, err, _ = await gw.call("POST", "/v1/messages", key, msg)
    assert st == 403 and "opted out" in err["error"]["message"]
    # erasure keeps the opt-out as a suppression entry: marketing cannot resume
    await gw.call("POST", "/v1/privacy/erasure", key, {"phone": de})
    gw.clock.advance(3600)
    assert (await gw.call("POST", "/v1/messages", key, msg))[0] == 403
    # transactional messages are exempt from consent
    assert (await gw.call("POST", "/v1/messages", key, {**msg, "category": "transactional"}))[0] == 202


async def test_quiet_hours_refuse_or_defer(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin")
    await gw.call("POST", "/v1/consent", key, {"phone": NUM, "status": "opted_in"})
    gw.clock.t = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()  # a Sunday: no marketing in France
    msg = {"to": NUM, "sender_id": "ACME", "body": "Sale today", "category": "marketing"}
    st, err, _ = await gw.call("POST", "/v1/messages", key, msg)
    assert st == 409 and err["error"]["code"] == "quiet_hours"
    monday_8 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC).timestamp()  # 08:00 in Paris
    assert err["error"]["next_allowed_at"] == monday_8
    st, body, _ = await gw.call("POST", "/v1/messages", key, {**msg, "quiet_hours": "defer"})
    assert st == 202
    rec = await gw.ctx.db.get_message(None, body["id"])
    assert rec is not None and rec.not_before == monday_8 and rec.status == "queued"
    # OTPs are exempt
    assert (await gw.call("POST", "/v1/otp", key, {"to": NUM}))[0] == 202


async def test_audit_chain_records_privacy_requests(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin")
    await gw.call("POST", "/v1/privacy/export", key, {"phone": NUM})
    await gw.call("POST", "/v1/privacy/erasure", key, {"phone": NUM})
    records = await gw.ctx.db.audit_records()
    assert [r.action for r in records] == ["privacy.export", "privacy.erasure"]
    assert "612345678" not in "".join(r.details for r in records)
    assert verify_chain(gw.ctx.db.keyring.audit_key, records).ok
    st, body, _ = await gw.call("GET", "/v1/audit", key)
    assert st == 200 and len(body["records"]) == 2


async def test_retention_purges_expired_classes(gw: Gw) -> None:
    key = await gw.tenant("acme", scopes="send,verify,admin")
    await _otp(gw, key)
    _, msg, _ = await gw.call("POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hello"})
    await gw.settle()
    gw.clock.advance(8 * 86400)  # bodies (7 days) go; OTP records (30 days) stay
    report = await purge_all(gw.ctx)
    assert report["message_bodies"] == 1 and report["otps"] == 0
    rec = await gw.ctx.db.get_message(None, msg["id"])
    assert rec is not None and rec.payload_enc is None
    gw.clock.advance(100 * 86400)
    report = await purge_all(gw.ctx)
    assert report["otps"] == 1 and report["messages"] == 2
    assert await gw.ctx.db.get_message(None, msg["id"]) is None


async def test_erasure_says_503_when_the_shared_state_is_unreachable(
    tmp_path: Path, sim: Sim, aiohttp_client: ClientFactory
) -> None:
    port = free_port()
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(make_settings(tmp_path, sim.url, port, dead_redis), clock=ManualClock())
    gw = Gw(await aiohttp_client(TestServer(app, port=port)), app, ManualClock(), sim, tmp_path / "smsgw.db")
    key = await gw.tenant("acme", scopes="send,verify,admin")
    assert (await gw.call("POST", "/v1/otp", key, {"to": NUM}))[0] == 202  # sends go on, on local state
    st, err, _ = await gw.call("POST", "/v1/privacy/erasure", key, {"phone": NUM})
    assert st == 503 and err["error"]["code"] == "unavailable", err
    assert "send the same request again" in err["error"]["message"]
    st, exp, _ = await gw.call("POST", "/v1/privacy/export", key, {"phone": NUM})
    assert st == 200 and not exp["otps"]  # the stored data is gone all the same
