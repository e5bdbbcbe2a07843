"""Routing through the gateway against two real sim-carriers: explained choices, brand class, failover,
the breaker opening and probing back, delivery and fill-back rates steering traffic, /v1/routes,
metrics, and 503 no_route."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from carriers.sim.http_server import Inbox, SimHttp, SimOptions
from gateway.app import create_app
from gateway.config import (
    CarrierSettings,
    DispatchSettings,
    RouteSettings,
    RoutingSettings,
    ServerSettings,
    Settings,
    WebhookSettings,
)
from tests.conftest import free_port
from tests.gateway.harness import MASTER_KEY, Gw, ManualClock, Sim

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
NUM = "+4915123456789"


@dataclass
class Sims:
    a: Sim
    b: Sim


@pytest.fixture
async def sims(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Sims:
    out = []
    for seed in (1, 2):
        http = SimHttp(Inbox(), SimOptions(receipt_delay_ms=0, seed=seed))
        server = await aiohttp_server(http.app())
        out.append(Sim(http, f"http://127.0.0.1:{server.port}"))
    return Sims(out[0], out[1])


def carriers_for(sims: Sims) -> list[CarrierSettings]:
    return [
        CarrierSettings(name="sim-a", url=f"{sims.a.url}/messages", timeout_seconds=2.0, down_seconds=0.0),
        CarrierSettings(name="sim-b", url=f"{sims.b.url}/messages", timeout_seconds=2.0, down_seconds=0.0),
    ]


TWO_ROUTES = [
    RouteSettings(name="cheap", carrier="sim-a", price=0.010),
    RouteSettings(name="dear", carrier="sim-b", price=0.012),
]

MakeGw = Callable[..., Awaitable[Gw]]


@pytest.fixture
async def make_gw(tmp_path: Path, aiohttp_client: ClientFactory, sims: Sims) -> AsyncIterator[MakeGw]:
    async def make(
        routes: list[RouteSettings] | None = None,
        *,
        routing: RoutingSettings | None = None,
        webhooks: WebhookSettings | None = None,
        carriers: list[CarrierSettings] | None = None,
    ) -> Gw:
        port = free_port()
        clock = ManualClock()
        settings = Settings(
            server=ServerSettings(port=port),
            db_path=str(tmp_path / "smsgw.db"),
            master_key=MASTER_KEY,
            dispatch=DispatchSettings(workers=8, sweep_interval_seconds=0.2),
            carriers=carriers or carriers_for(sims),
            routes=routes or TWO_ROUTES,
            routing=routing or RoutingSettings(explore_share=0.0),
            webhooks=webhooks or WebhookSettings(),
        )
        app = create_app(settings, clock=clock)
        client = await aiohttp_client(TestServer(app, port=port))
        return Gw(client, app, clock, sims.a, tmp_path / "smsgw.db")

    yield make


async def send(gw: Gw, key: str, to: str = NUM, body: str = "Hello") -> str:
    st, out, _ = await gw.call("POST", "/v1/messages", key, {"to": to, "sender_id": "ACME", "body": body})
    assert st == 202, out
    return str(out["id"])


async def message(gw: Gw, key: str, mid: str) -> dict[str, Any]:
    st, out, _ = await gw.call("GET", f"/v1/messages/{mid}", key)
    assert st == 200
    return dict(out)


async def test_the_choice_is_explained_with_candidates_scores_and_exclusions(
    make_gw: MakeGw, sims: Sims
) -> None:
    routes = [
        *TWO_ROUTES,
        RouteSettings(name="local-de", carrier="sim-a", brand_class="local", price=0.001),
        RouteSettings(name="fr-only", carrier="sim-a", countries=["FR"], price=0.001),
        RouteSettings(name="acme-only", carrier="sim-b", senders=["OTHER"], price=0.001),
    ]
    gw = await make_gw(routes)
    key = await gw.tenant()
    mid = await send(gw, key)
    await gw.settle()
    msg = await message(gw, key, mid)
    assert msg["status"] == "delivered" and msg["route"] == "cheap"
    reason = msg["route_reason"]
    assert reason.startswith(
        "cheapest eligible of 2 for DE (message, international, 1 segment): cheap 0.0111/"
    )
    assert "dear 0.0133/delivered (price 0.0120 default × 1 / delivery 0.90 from 0/0)" in reason
    assert "local-de (local route, brand is international in DE)" in reason
    assert "fr-only (does not cover DE)" in reason
    assert "acme-only (sender 'ACME' not registered on it)" in reason
    assert NUM not in reason and NUM[1:] not in reason
    assert [m.to for m in sims.a.inbox.messages] == [NUM] and sims.b.inbox.received == 0


async def test_a_local_brand_goes_on_the_local_route_and_international_never_does(
    make_gw: MakeGw, sims: Sims
) -> None:
    routes = [
        RouteSettings(name="intl", carrier="sim-a", brand_class="international", price=0.010),
        RouteSettings(name="local-id", carrier="sim-b", brand_class="local", countries=["ID"], price=0.002),
    ]
    gw = await make_gw(routes)
    local_key = await gw.tenant("localco", scopes="onboarding,send")
    st, _, _ = await gw.call(
        "PUT", "/v1/brand", local_key, {"name": "Localco", "countries": {"ID": {"local_entity": True}}}
    )
    assert st == 200
    intl_key = await gw.tenant("globalco", scopes="send")
    to = "+6281234567890"
    st, local_otp, _ = await gw.call("POST", "/v1/otp", local_key, {"to": to})
    assert st == 202
    st, intl_otp, _ = await gw.call("POST", "/v1/otp", intl_key, {"to": to})
    assert st == 202
    await gw.settle()
    local_msg = await message(gw, local_key, local_otp["message_id"])
    intl_msg = await message(gw, intl_key, intl_otp["message_id"])
    assert local_msg["route"] == "local-id" and "(otp, local, 1 segment)" in local_msg["route_reason"]
    assert intl_msg["route"] == "intl"
    assert "local-id (local route, brand is international in ID)" in intl_msg["route_reason"]


async def test_failover_to_the_next_route_at_once_and_never_twice_to_one_route(
    make_gw: MakeGw, sims: Sims
) -> None:
    gw = await make_gw()
    key = await gw.tenant()
    sims.a.http.options.failure_rate = 1.0  # 503 for everything
    mid = await send(gw, key)
    await gw.settle()
    msg = await message(gw, key, mid)
    assert msg["status"] == "delivered" and msg["route"] == "dear" and msg["attempts"] == 2
    assert "tried before for this message" in msg["route_reason"]
    assert sims.a.inbox.received == 0 and [m.to for m in sims.b.inbox.messages] == [NUM]
    m = gw.ctx.instruments.registry
    assert m.get_sample_value("smsgw_route_failovers_total", {"route": "cheap", "outcome": "temporary"}) == 1


async def test_breaker_opens_takes_the_route_out_then_one_probe_brings_it_back(
    make_gw: MakeGw, sims: Sims
) -> None:
    gw = await make_gw(
        routing=RoutingSettings(breaker_failures=3, breaker_cooldown_seconds=30, explore_share=0)
    )
    key = await gw.tenant("acme", scopes="send,admin")
    sims.a.http.options.failure_rate = 1.0
    for i in range(3):
        await send(gw, key, f"+491512345670{i}")
        await gw.settle()
    posts_to_a = gw.ctx.routes.carriers["sim-a"]
    _, table, _ = await gw.call("GET", "/v1/routes", key)
    cheap = next(r for r in table["routes"] if r["name"] == "cheap")
    assert cheap["breaker"]["state"] == "open" and cheap["up"] is False
    assert cheap["breaker"]["reason"] == "3 consecutive failures (last: http_503)"
    # while open, messages go straight to the other route: the broken one is not even tried
    sims.a.http.options.failure_rate = 0.0
    mid = await send(gw, key, "+4915123456710")
    await gw.settle()
    msg = await message(gw, key, mid)
    assert msg["route"] == "dear" and "cheap (breaker open (3 consecutive failures" in msg["route_reason"]
    assert sims.a.inbox.received == 0
    # after the cool-down one message is the probe; it succeeds and the route is back
    gw.clock.advance(31)
    mid = await send(gw, key, "+4915123456711")
    await gw.settle()
    assert (await message(gw, key, mid))["route"] == "cheap"
    _, table, _ = await gw.call("GET", "/v1/routes", key)
    cheap = next(r for r in table["routes"] if r["name"] == "cheap")
    assert cheap["breaker"]["state"] == "closed" and cheap["up"] is True
    reg = gw.ctx.instruments.registry
    for state, n in (("open", 1), ("half_open", 1), ("closed", 1)):
        assert (
            reg.get_sample_value("smsgw_route_breaker_transitions_total", {"route": "cheap", "state": state})
            == n
        )
    assert posts_to_a is gw.ctx.routes.carriers["sim-a"]


async def test_a_failed_probe_keeps_the_route_out_longer(make_gw: MakeGw, sims: Sims) -> None:
    gw = await make_gw(
        routing=RoutingSettings(
            breaker_failures=1, breaker_cooldown_seconds=10, breaker_max_cooldown_seconds=100, explore_share=0
        )
    )
    key = await gw.tenant()
    sims.a.http.options.failure_rate = 1.0
    await send(gw, key, "+4915123456720")
    await gw.settle()
    gw.clock.advance(11)
    mid = await send(gw, key, "+4915123456721")  # the probe: fails, fails over to "dear"
    await gw.settle()
    assert (await message(gw, key, mid))["route"] == "dear"
    health = gw.ctx.routes.health("cheap")
    assert health is not None and health.state.value == "open" and health.open_until - gw.clock() == 20


async def test_all_routes_for_a_country_down_is_503_no_route_at_request_time(
    make_gw: MakeGw, sims: Sims
) -> None:
    routes = [
        RouteSettings(name="fr-a", carrier="sim-a", countries=["FR"]),
        RouteSettings(name="de-b", carrier="sim-b", countries=["DE"]),
    ]
    gw = await make_gw(routes, routing=RoutingSettings(breaker_failures=1, breaker_cooldown_seconds=60))
    key = await gw.tenant()
    sims.a.http.options.failure_rate = 1.0
    st, _, _ = await gw.call("POST", "/v1/otp", key, {"to": "+33612345678"})
    assert st == 202  # accepted while the route looked up; its failure opens the breaker
    await gw.settle()
    st, err, _ = await gw.call("POST", "/v1/otp", key, {"to": "+33612345679"})
    assert st == 503 and err["error"]["code"] == "no_route" and err["error"]["country"] == "FR"
    st, _, _ = await gw.call("POST", "/v1/otp", key, {"to": NUM})
    assert st == 202  # Germany has its own route
    gw.clock.advance(61)  # cooled: the route may be probed, so requests are taken again
    st, _, _ = await gw.call("POST", "/v1/otp", key, {"to": "+33612345670"})
    assert st == 202


async def test_delivery_receipts_move_traffic_off_a_route_that_does_not_deliver(
    make_gw: MakeGw, sims: Sims
) -> None:
    gw = await make_gw()
    key = await gw.tenant()
    sims.a.http.options.undeliverable_rate = 1.0  # accepts everything, delivers nothing
    routes_used = []
    for i in range(10):
        mid = await send(gw, key, f"+49151234567{i:02d}")
        await gw.settle()
        routes_used.append((await message(gw, key, mid))["route"])
    # prior 0.9 × 20: after k undelivered, cheap costs 0.010 × (20 + k) / 18, above 0.012 / 0.9 from k = 5
    assert routes_used == ["cheap"] * 5 + ["dear"] * 5
    health = gw.ctx.routes.health("cheap")
    assert health is not None and health.delivery("DE", gw.clock()) == (0, 5)


async def test_otp_fill_back_steers_otps_to_the_route_whose_codes_get_entered(
    make_gw: MakeGw, sims: Sims
) -> None:
    gw = await make_gw()
    key = await gw.tenant()
    for i in range(10):  # cheap carries ten OTPs; nobody enters the codes
        st, _, _ = await gw.call("POST", "/v1/otp", key, {"to": f"+49151234566{i:02d}"})
        assert st == 202
    await gw.settle()
    assert {m.to[:9] for m in sims.a.inbox.messages} == {"+49151234"} and sims.a.inbox.received == 10
    await gw.ctx.routes.refresh_stats()
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": "+4915123456700"})
    await gw.settle()
    msg = await message(gw, key, body["message_id"])
    # cheap: 0.010 / ((0 + 12) / (10 + 20)) = 0.025 per verified; dear: 0.012 / 0.6 = 0.020
    assert msg["route"] == "dear"
    assert (
        "cheap 0.0250/verified (price 0.0100 default × 1 / fill-back 0.40 from 0/10)" in msg["route_reason"]
    )
    # plain messages still go by delivery, where cheap is fine
    mid = await send(gw, key, "+4915123456701")
    await gw.settle()
    assert (await message(gw, key, mid))["route"] == "cheap"


async def test_routes_view_needs_admin_and_shows_health_and_rates(make_gw: MakeGw, sims: Sims) -> None:
    gw = await make_gw()
    sender_key = await gw.tenant("plain", scopes="send")
    st, err, _ = await gw.call("GET", "/v1/routes", sender_key)
    assert st == 403 and err["error"]["code"] == "forbidden"
    admin = await gw.tenant("ops", scopes="admin")
    await send(gw, admin)
    await gw.settle()
    st, table, _ = await gw.call("GET", "/v1/routes", admin)
    assert st == 200 and table["generation"] == 1
    cheap = table["routes"][0]
    assert cheap["name"] == "cheap" and cheap["carrier"] == "sim-a" and cheap["carrier_type"] == "http"
    assert cheap["up"] is True and cheap["breaker"]["state"] == "closed"
    assert cheap["delivery"]["delivered"] == 1 and cheap["delivery"]["rate"] == 1.0
    assert cheap["fillback"] == {"sent": 0, "verified": 0, "rate": None, "smoothed": 0.6, "window_s": 1800.0}


async def test_route_health_is_exported_at_scrape_time(make_gw: MakeGw, sims: Sims) -> None:
    gw = await make_gw(
        routing=RoutingSettings(breaker_failures=1, breaker_cooldown_seconds=60, explore_share=0.0)
    )
    key = await gw.tenant()
    sims.a.http.options.failure_rate = 1.0
    await send(gw, key)
    await gw.settle()
    resp = await gw.client.get("/metrics")
    text = await resp.text()
    assert 'smsgw_route_up{carrier="sim-a",route="cheap"} 0.0' in text
    assert 'smsgw_route_up{carrier="sim-b",route="dear"} 1.0' in text
    assert 'smsgw_route_breaker_state{route="cheap"} 2.0' in text
    assert 'smsgw_route_breaker_state{route="dear"} 0.0' in text
    assert text.count("# HELP smsgw_route_up ") == 1
    gw.clock.advance(61)
    text = await (await gw.client.get("/metrics")).text()
    assert 'smsgw_route_up{carrier="sim-a",route="cheap"} 1.0' in text  # cooled: takes requests again
