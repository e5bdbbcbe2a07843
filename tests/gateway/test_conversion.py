"""Fill-back in the shared store, conversion events and tracked links (both backends)."""

from __future__ import annotations

from tests.gateway.harness import Gw

NUM = "+4915123456789"


async def test_fillback_store_counts_sent_and_verified_by_send_window(gw: Gw) -> None:
    key = await gw.tenant()
    ids = []
    for to in (NUM, "+4915123456780", "+4915123456781"):
        _st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": to})
        ids.append((to, body["id"]))
    await gw.settle()
    to, oid = ids[0]
    gw.clock.advance(120)  # a late verification still counts toward the window the OTP was sent in
    assert (await gw.call("POST", f"/v1/otp/{oid}/verify", key, {"code": gw.code_for(to)}))[0] == 200
    assert gw.ctx.fillback is not None
    rate = await gw.ctx.fillback.rate(None, "DE", "sim-default", 3600, gw.clock())
    assert (rate.sent, rate.verified) == (3, 1)
    tenant = next(iter(gw.ctx.instruments.otp_sent._metrics))[0]
    reg = gw.ctx.instruments.registry
    labels = {"tenant": tenant, "country": "DE", "route": "sim-default"}
    assert reg.get_sample_value("smsgw_otp_verified_total", labels) == 1


async def test_events_need_an_object_of_the_tenant(gw: Gw) -> None:
    key, other = await gw.tenant("a"), await gw.tenant("b")
    _, body, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    st, ev, _ = await gw.call("POST", "/v1/events", key, {"otp_id": body["id"], "event": "order"})
    assert st == 202 and ev["event"] == "order"
    assert (await gw.call("POST", "/v1/events", other, {"otp_id": body["id"], "event": "order"}))[0] == 404
    st, err, _ = await gw.call("POST", "/v1/events", key, {"otp_id": body["id"], "event": "refund"})
    assert st == 400 and err["error"]["code"] == "invalid_request"
    st, err, _ = await gw.call("POST", "/v1/events", key, {"event": "order"})
    assert st == 400
    tenant = next(iter(gw.ctx.instruments.conversion_events._metrics))[0]
    assert (
        gw.ctx.instruments.registry.get_sample_value(
            "smsgw_conversion_events_total", {"tenant": tenant, "country": "DE", "event": "order"}
        )
        == 1
    )


async def test_marketing_links_are_tracked_per_message(gw: Gw) -> None:
    key = await gw.tenant(scopes="send,verify,admin")
    await gw.call("POST", "/v1/consent", key, {"phone": NUM, "status": "opted_in"})
    gw.ctx.extras["quiet_rules"] = {}  # this test is not about the hour of day
    body = "Sale today: https://shop.example/sale?utm=sms and again https://shop.example/sale?utm=sms"
    st, msg, _ = await gw.call(
        "POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": body, "category": "marketing"}
    )
    assert st == 202, msg
    await gw.settle()
    text = gw.sim.texts(NUM)[-1]
    assert "shop.example" not in text
    links = [w for w in text.split() if "/l/" in w]
    assert len(links) == 2 and links[0] == links[1]  # one link per distinct URL
    path = links[0].split(str(gw.client.port), 1)[1]
    resp = await gw.client.get(path, allow_redirects=False, headers={"User-Agent": "Mozilla/5.0 (iPhone)"})
    assert resp.status == 302 and resp.headers["Location"] == "https://shop.example/sale?utm=sms"
    bot = await gw.client.get(path, allow_redirects=False, headers={"User-Agent": "facebookexternalhit/1.1"})
    assert bot.status == 302  # previews are redirected but not counted
    tenant = next(iter(gw.ctx.instruments.conversion_events._metrics))[0]
    assert (
        gw.ctx.instruments.registry.get_sample_value(
            "smsgw_conversion_events_total", {"tenant": tenant, "country": "DE", "event": "click"}
        )
        == 1
    )
    assert (await gw.client.get("/l/nope-nope-no", allow_redirects=False)).status == 404
    st, exp, _ = await gw.call("POST", "/v1/privacy/export", key, {"phone": NUM})
    assert [e["event"] for e in exp["events"]] == ["click"]
