"""Route table reload without restart: from the configuration file, validated first (a bad file keeps
the old table), unchanged carriers keep running, new ones start, removed ones close after draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from carriers.sim.http_server import Inbox, SimHttp, SimOptions
from carriers.sim.smpp_server import SmppSim, SmppSimOptions
from carriers.smpp import SmppCarrier
from gateway.app import create_app
from gateway.config import load
from tests.conftest import free_port
from tests.gateway.harness import MASTER_KEY, Gw, ManualClock, Sim

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
NUM = "+4915123456789"


@dataclass
class Env:
    gw: Gw
    config: Path
    http: Sim
    smpp: SmppSim
    smpp_inbox: Inbox
    smpp_port: int

    def write(self, carriers: str, routes: str, extra: str = "") -> None:
        self.config.write_text(header(self.gw.client.port, extra) + carriers + routes)


def header(port: int, extra: str = "") -> str:
    dispatch = "[dispatch]\nworkers = 8\nsweep_interval_seconds = 0.2\n"
    routing = extra or "[routing]\ndrain_seconds = 1.0\nexplore_share = 0.0  # the cheapest route, always"
    return f"[server]\nport = {port}\n\n{dispatch}\n{routing}\n\n"


async def until(what: Callable[[], bool], within: float = 10.0) -> None:
    for _ in range(int(within / 0.01)):
        if what():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def http_carrier(name: str, url: str) -> str:
    return f'[[carriers]]\nname = "{name}"\ntype = "http"\nurl = "{url}/messages"\ndown_seconds = 0\n'


def smpp_carrier(name: str, port: int) -> str:
    return (
        f'[[carriers]]\nname = "{name}"\ntype = "smpp"\nhost = "127.0.0.1"\nport = {port}\n'
        f'system_id = "smsgw"\npassword = "secret"\nwindow = 10\ntimeout_seconds = 3\n'
    )


def route(name: str, carrier: str, price: float) -> str:
    return f'[[routes]]\nname = "{name}"\ncarrier = "{carrier}"\nprice = {price}\n'


@pytest.fixture
async def env(
    tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]], aiohttp_client: ClientFactory
) -> AsyncIterator[Env]:
    http = SimHttp(Inbox(), SimOptions(receipt_delay_ms=0, seed=3))
    server = await aiohttp_server(http.app())
    sim_http = Sim(http, f"http://127.0.0.1:{server.port}")
    smpp_inbox = Inbox()
    smpp = SmppSim(
        lambda s, t, x: smpp_inbox.add(s, t, x)[0], SmppSimOptions(latency_ms=300, receipt_delay_ms=5, seed=1)
    )
    smpp_server = await smpp.start("127.0.0.1", 0)
    smpp_port = smpp_server.sockets[0].getsockname()[1]
    port = free_port()
    config = tmp_path / "smsgw.toml"
    config.write_text(
        header(port)
        + smpp_carrier("smsc", smpp_port)
        + http_carrier("web", sim_http.url)
        + route("via-smpp", "smsc", 0.005)
        + route("via-http", "web", 0.010)
    )
    environ = {"SMSGW_DB": str(tmp_path / "smsgw.db"), "SMSGW_MASTER_KEY": MASTER_KEY}
    settings = load(config, environ)
    clock = ManualClock()
    app = create_app(settings, clock=clock)
    client = await aiohttp_client(TestServer(app, port=port))
    gw = Gw(client, app, clock, sim_http, tmp_path / "smsgw.db")
    yield Env(gw, config, sim_http, smpp, smpp_inbox, smpp_port)
    await smpp.close()


async def test_reload_adds_and_removes_routes_and_drains_a_removed_carrier(env: Env) -> None:
    gw = env.gw
    key = await gw.tenant("ops", scopes="send,admin")
    old_smpp = gw.ctx.routes.carriers["smsc"]
    old_http = gw.ctx.routes.carriers["web"]
    assert isinstance(old_smpp, SmppCarrier) and old_smpp.is_up()
    st, body, _ = await gw.call(
        "POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "in flight"}
    )
    assert st == 202
    await until(lambda: env.smpp.stats.submit_sm >= 1)  # the SMSC holds it 300 ms before it answers
    env.write(
        http_carrier("web", env.http.url) + http_carrier("web2", env.http.url),
        route("via-http", "web", 0.010) + route("via-web2", "web2", 0.008),
    )
    st, report, _ = await gw.call("POST", "/v1/admin/routes/reload", key)
    assert st == 200, report
    assert report["reloaded"] is True and report["generation"] == 2
    assert report["carriers"] == {"kept": ["web"], "started": ["web2"], "closing": ["smsc"]}
    assert report["routes"] == {"added": ["via-web2"], "removed": ["via-smpp"], "changed": [], "total": 2}
    # the submission in flight on the removed carrier finishes, its receipt still arrives, then it closes
    await until(lambda: env.smpp.stats.receipts_sent >= 1)
    await gw.settle()
    st, msg, _ = await gw.call("GET", f"/v1/messages/{body['id']}", key)
    assert msg["status"] == "delivered" and msg["route"] == "via-smpp"
    assert [m.text for m in env.smpp_inbox.messages] == ["in flight"]
    await until(lambda: old_smpp.status()["binds"][0]["state"] == "CLOSED")
    assert old_smpp.closing and not old_smpp.is_up()
    assert gw.ctx.routes.carriers["web"] is old_http  # unchanged carriers keep running
    # new traffic follows the new table
    st, body, _ = await gw.call(
        "POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "after"}
    )
    await gw.settle()
    st, msg, _ = await gw.call("GET", f"/v1/messages/{body['id']}", key)
    assert msg["route"] == "via-web2" and msg["status"] == "delivered"
    st, table, _ = await gw.call("GET", "/v1/routes", key)
    assert [r["name"] for r in table["routes"]] == ["via-http", "via-web2"] and table["generation"] == 2
    text = await (await gw.client.get("/metrics")).text()
    assert 'route="via-smpp"' not in text.split("# HELP smsgw_route_up ")[1].split("# HELP")[0]


async def test_a_bad_file_is_refused_and_the_old_table_stays(env: Env) -> None:
    gw = env.gw
    key = await gw.tenant("ops", scopes="send,admin")
    before = gw.ctx.routes.routes
    env.write(http_carrier("web", env.http.url), route("x", "nope", -1.0) + '[[routes]]\nname = "y"\n')
    st, err, _ = await gw.call("POST", "/v1/admin/routes/reload", key)
    assert st == 400 and err["error"]["code"] == "invalid_request"
    problems = err["error"]["problems"]
    assert "routes[0].price: must not be negative (got -1.0)" in problems
    assert "routes[1].carrier: required" in problems
    assert gw.ctx.routes.routes is before and gw.ctx.routes.generation == 1
    reg = gw.ctx.instruments.registry
    assert reg.get_sample_value("smsgw_route_table_reloads_total", {"result": "refused"}) == 1
    env.config.write_text("this is [not toml")
    st, err, _ = await gw.call("POST", "/v1/admin/routes/reload", key)
    assert st == 400 and "not valid TOML" in err["error"]["problems"][0]
    st, _, _ = await gw.call("POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "still"})
    assert st == 202


async def test_changed_carrier_settings_restart_it_and_reset_its_routes_health(env: Env) -> None:
    gw = env.gw
    key = await gw.tenant("ops", scopes="admin")
    old_http = gw.ctx.routes.carriers["web"]
    env.write(
        smpp_carrier("smsc", env.smpp_port)
        + http_carrier("web", env.http.url).replace("down_seconds = 0", "down_seconds = 1"),
        route("via-smpp", "smsc", 0.005) + route("via-http", "web", 0.02),
        extra="[routing]\nbreaker_failures = 2",
    )
    st, report, _ = await gw.call("POST", "/v1/admin/routes/reload", key)
    assert st == 200
    assert report["carriers"] == {"kept": ["smsc"], "started": ["web"], "closing": ["web"]}
    assert report["routes"]["changed"] == ["via-http"]
    assert gw.ctx.routes.carriers["web"] is not old_http
    health = gw.ctx.routes.health("via-smpp")
    assert health is not None and health.policy.failures == 2


async def test_reload_needs_admin(env: Env) -> None:
    key = await env.gw.tenant("plain", scopes="send")
    st, err, _ = await env.gw.call("POST", "/v1/admin/routes/reload", key)
    assert st == 403 and err["error"]["code"] == "forbidden"
