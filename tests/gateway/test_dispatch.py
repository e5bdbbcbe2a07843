"""Dispatch against a real sim-carrier: retries, final failures with reasons, OTP expiry, receipts."""

from __future__ import annotations

from tests.gateway.harness import Gw

NUM = "+4915123456789"


async def test_carrier_failure_retries_with_backoff_then_fails_with_the_carrier_error(gw: Gw) -> None:
    key = await gw.tenant()
    gw.sim.http.options.failure_rate = 1.0  # every submission answered 503
    st, body, _ = await gw.call(
        "POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hello"}
    )
    assert st == 202
    await gw.ctx.disp.drain()
    rec = await gw.ctx.db.get_message(None, body["id"])
    assert rec is not None and rec.status == "queued" and rec.error_code == "http_503"
    assert rec.not_before > gw.clock()  # waiting for its backoff, not spinning
    gw.ctx.routes.carriers["sim"]._down_until = 0.0  # type: ignore[attr-defined]
    for _ in range(6):
        gw.clock.advance(120)
        gw.ctx.routes.carriers["sim"]._down_until = 0.0  # type: ignore[attr-defined]
        await gw.ctx.disp.sweep_once()
        await gw.ctx.disp.drain()
    st, msg, _ = await gw.call("GET", f"/v1/messages/{body['id']}", key)
    assert msg["status"] == "failed" and msg["error_code"] == "http_503"
    assert msg["error_reason"].startswith("gave up after 5 attempts")
    assert gw.sim.inbox.received == 0


async def test_message_goes_through_when_the_carrier_recovers(gw: Gw) -> None:
    key = await gw.tenant()
    gw.sim.http.options.failure_rate = 1.0
    _st, body, _ = await gw.call(
        "POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hello"}
    )
    await gw.ctx.disp.drain()
    gw.sim.http.options.failure_rate = 0.0
    gw.clock.advance(10)
    gw.ctx.routes.carriers["sim"]._down_until = 0.0  # type: ignore[attr-defined]
    await gw.ctx.disp.sweep_once()
    await gw.settle()
    _, msg, _ = await gw.call("GET", f"/v1/messages/{body['id']}", key)
    assert msg["status"] == "delivered" and msg["attempts"] == 2
    assert gw.sim.texts(NUM) == ["Hello"]


async def test_otp_that_cannot_leave_before_expiry_fails_fast(gw: Gw) -> None:
    key = await gw.tenant()
    gw.ctx.routes.carriers["sim"]._down_until = 1e12  # type: ignore[attr-defined]  # the only route is down
    st, err, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    assert st == 503 and err["error"]["code"] == "no_route"
    gw.ctx.routes.carriers["sim"]._down_until = 0.0  # type: ignore[attr-defined]
    gw.sim.http.options.failure_rate = 1.0
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    assert st == 202
    await gw.ctx.disp.drain()  # refused once, waiting for its backoff
    gw.sim.http.options.failure_rate = 0.0
    gw.clock.advance(400)  # by the time it could go again, the OTP has expired
    gw.ctx.routes.carriers["sim"]._down_until = 0.0  # type: ignore[attr-defined]
    await gw.ctx.disp.sweep_once()
    await gw.ctx.disp.drain()
    st, msg, _ = await gw.call("GET", f"/v1/messages/{body['message_id']}", key)
    assert msg["status"] == "expired" and msg["error_code"] == "otp_expired"
    assert gw.sim.inbox.received == 0


async def test_transactional_message_body_sealed_and_delivered(gw: Gw) -> None:
    key = await gw.tenant()
    st, body, _ = await gw.call(
        "POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Your parcel is on its way"}
    )
    assert st == 202 and body["status"] == "queued"
    await gw.settle()
    assert gw.sim.texts(NUM) == ["Your parcel is on its way"]
    assert gw.sim.inbox.by_to[NUM][0].sender == "ACME"
    st, msg, _ = await gw.call("GET", f"/v1/messages/{body['id']}", key)
    assert msg["status"] == "delivered"


async def test_receipt_endpoint_needs_the_token_and_valid_receipts(gw: Gw) -> None:
    resp = await gw.client.post(
        "/v1/carriers/sim/receipts?token=wrong", json={"id": "x", "status": "delivered"}
    )
    assert resp.status == 401
    for odd in ("%C3%A9t%C3%A9", "%00", ""):  # non-ASCII was a 500 (hmac.compare_digest refuses it)
        resp = await gw.client.post(
            f"/v1/carriers/sim/receipts?token={odd}", json={"id": "x", "status": "delivered"}
        )
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
        resp = await gw.client.post(f"/v1/carriers/sim/inbound?token={odd}", json={"from": "+4915123456789"})
        assert resp.status == 401
    token = gw.ctx.extras["receipt_token"]
    resp = await gw.client.post(
        f"/v1/carriers/sim/receipts?token={token}", json={"id": "x", "status": "bogus"}
    )
    assert resp.status == 400
    resp = await gw.client.post(
        f"/v1/carriers/nope/receipts?token={token}", json={"id": "x", "status": "delivered"}
    )
    assert resp.status == 404
    # a well-formed receipt for an id nobody knows is accepted and then dropped (logged), not an error
    resp = await gw.client.post(
        f"/v1/carriers/sim/receipts?token={token}", json=[{"id": "sim-404", "status": "delivered"}]
    )
    assert resp.status == 200 and (await resp.json())["accepted"] == 1


async def test_a_submission_that_outlives_its_lease_leaves_the_message_to_the_worker_that_took_it(
    gw: Gw,
) -> None:
    """Fencing: while our submission hangs at the carrier, the lease runs out and another worker claims
    the message. Our late "accepted" must not mark it submitted, report it or release the other's claim."""
    import asyncio

    key = await gw.tenant()
    gw.sim.http.options.latency_ms = 400
    st, body, _ = await gw.call(
        "POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hello"}
    )
    assert st == 202
    await asyncio.sleep(0.15)  # the submission is at the carrier now
    gw.clock.advance(gw.ctx.settings.dispatch.claim_lease_seconds + 1)
    other = await gw.ctx.db.claim(body["id"], "w-other", gw.clock(), 30.0)
    assert other is not None
    await gw.ctx.disp.drain()
    rec = await gw.ctx.db.get_message(None, body["id"])
    assert rec is not None and (rec.status, rec.claimed_by, rec.carrier_message_id) == (
        "sending",
        "w-other",
        None,
    )
    reg = gw.ctx.instruments.registry
    assert reg.get_sample_value("smsgw_dispatch_takeovers_total") == 1
    assert gw.sim.inbox.received == 1  # the carrier did get it: the takeover's submission is de-duplicated


async def test_the_receipts_of_one_post_are_applied_in_one_transaction_in_the_order_they_came(gw: Gw) -> None:
    key = await gw.tenant()
    gw.sim.http.options.receipt_rate = 0.0  # this test posts the receipts itself
    ids = []
    for i in range(20):
        st, body, _ = await gw.call(
            "POST", "/v1/messages", key, {"to": f"+491512345{i:04d}", "sender_id": "ACME", "body": "Hi"}
        )
        assert st == 202
        ids.append(body["id"])
    await gw.ctx.disp.drain()
    sim_ids = [m.id for m in gw.sim.inbox.messages]
    assert len(sim_ids) == 20
    receipts = [{"id": sim_ids[0], "status": "failed", "err": "001"}]
    receipts += [{"id": sid, "status": "delivered"} for sid in sim_ids]  # the first one again: too late
    writer = gw.ctx.db.writer  # type: ignore[attr-defined]
    before = writer.batches
    token = gw.ctx.extras["receipt_token"]
    resp = await gw.client.post(f"/v1/carriers/sim/receipts?token={token}", json=receipts)
    assert resp.status == 200 and (await resp.json())["accepted"] == 21
    assert writer.batches == before + 1  # one group commit for all of them, not one after another
    by_carrier_id = {}
    for mid in ids:
        rec = await gw.ctx.db.get_message(None, mid)
        assert rec is not None and rec.carrier_message_id is not None
        by_carrier_id[rec.carrier_message_id] = rec
    assert by_carrier_id[sim_ids[0]].status == "failed" and by_carrier_id[sim_ids[0]].error_code == "001"
    assert all(by_carrier_id[sid].status == "delivered" for sid in sim_ids[1:])


async def test_receipt_body_that_stalls_gets_408(gw: Gw) -> None:
    """Receipts used to be read with request.json(): a body that stalled held the handler forever. Now
    they go through json_body: 408 request_timeout after server.body_timeout_seconds."""
    import asyncio
    import dataclasses
    import time

    from tests.e2e import hostile

    server = dataclasses.replace(gw.ctx.settings.server, body_timeout_seconds=1.0)
    gw.ctx.settings = dataclasses.replace(gw.ctx.settings, server=server)
    token = gw.ctx.extras["receipt_token"]
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.client.port)
    t0 = time.monotonic()
    writer.write(
        f"POST /v1/carriers/sim/receipts?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        + b'{"id": '
    )
    try:
        async with asyncio.timeout(20):
            answer = await reader.read(65536)
    finally:
        writer.close()
    assert hostile.status_of(answer) == 408, answer[:200]
    assert b'"request_timeout"' in answer
    assert 0.5 < time.monotonic() - t0 < 15
    # the same receipt sent whole is still taken
    resp = await gw.client.post(
        f"/v1/carriers/sim/receipts?token={token}", json={"id": "x", "status": "delivered"}
    )
    assert resp.status == 200, await resp.text()
