"""Faults through the gateway: a faulty SMPP peer — the npm `smpp` SMSC (tests/peers/smsc.js) or our
sim SMSC — behind the cheaper route, a sim-carrier HTTP route as the backup. Each message must reach
each number once per route at most, and be resubmitted once, elsewhere, when the first route failed.

Covered: a full window outstanding when the connection drops; throttled answers; a refused bind; malformed
PDUs; every route of a country down (503 no_route at request time); receipts for unknown ids; and the
route table reloaded on SIGHUP by a real `smsgw serve` (a bad file keeps the old table)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from carriers.sim.http_server import Inbox, SimHttp, SimOptions
from carriers.sim.smpp_server import SmppSim, SmppSimOptions
from gateway.app import create_app
from gateway.config import (
    CarrierSettings,
    DispatchSettings,
    RouteSettings,
    RoutingSettings,
    ServerSettings,
    Settings,
)
from tests.carriers.smpp_peers import NodeSmsc, start_node_smsc
from tests.conftest import free_port
from tests.e2e.procs import Procs, get_json, wait_until
from tests.gateway.harness import MASTER_KEY, Gw, ManualClock, Sim

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


def numbers(n: int, base: int = 0) -> list[str]:
    return [f"+4915123{base + i:06d}" for i in range(n)]


class Peer(Protocol):
    port: int

    def seen(self) -> Counter[str]:
        """Submissions the SMSC took (held or accepted), per E.164 number."""

    def accepted(self) -> Counter[str]:
        """Submissions it answered ESME_ROK, per number."""


@dataclass
class NodePeer:
    smsc: NodeSmsc

    @property
    def port(self) -> int:
        return self.smsc.port

    def seen(self) -> Counter[str]:
        return Counter(
            "+" + e["dest"] for e in self.smsc.events if e.get("event") in ("submit", "submit_held")
        )

    def accepted(self) -> Counter[str]:
        return Counter("+" + e["dest"] for e in self.smsc.of("submit"))


@dataclass
class SimPeer:
    sim: SmppSim
    port: int
    inbox: Inbox = field(default_factory=Inbox)

    def seen(self) -> Counter[str]:
        return Counter(m.to for m in self.inbox.messages)

    def accepted(self) -> Counter[str]:
        return self.seen()


@dataclass
class Rig:
    gw: Gw
    backup: Sim
    peer: Peer
    key: str = ""

    async def send(self, to: str) -> str:
        st, body, _ = await self.gw.call(
            "POST", "/v1/messages", self.key, {"to": to, "sender_id": "ACME", "body": "Your parcel"}
        )
        assert st == 202, body
        return str(body["id"])

    async def status(self, mid: str) -> dict[str, Any]:
        st, body, _ = await self.gw.call("GET", f"/v1/messages/{mid}", self.key)
        assert st == 200
        return dict(body)

    def backup_counts(self) -> Counter[str]:
        return Counter(m.to for m in self.backup.inbox.messages)


StartNode = Callable[..., NodePeer]


@pytest.fixture
def node_peer() -> Iterator[StartNode]:
    started: list[NodeSmsc] = []

    def start(mode: str, *extra: str) -> NodePeer:
        smsc = start_node_smsc("--mode", mode, "--receipt-delay-ms", "5", *extra)
        started.append(smsc)
        return NodePeer(smsc)

    yield start
    for smsc in started:
        smsc.stop()


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(
    tmp_path: Path,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: ClientFactory,
) -> AsyncIterator[MakeRig]:
    sims: list[SmppSim] = []

    async def make(
        peer: Peer,
        *,
        password: str = "secret",
        routing: RoutingSettings | None = None,
        primary_countries: tuple[str, ...] = ("*",),
        backup_countries: tuple[str, ...] = ("*",),
    ) -> Rig:
        http = SimHttp(Inbox(), SimOptions(receipt_delay_ms=0, seed=11))
        server = await aiohttp_server(http.app())
        backup = Sim(http, f"http://127.0.0.1:{server.port}")
        if isinstance(peer, SimPeer):
            sims.append(peer.sim)
        port = free_port()
        settings = Settings(
            server=ServerSettings(port=port),
            db_path=str(tmp_path / "smsgw.db"),
            master_key=MASTER_KEY,
            dispatch=DispatchSettings(workers=16, sweep_interval_seconds=0.2),
            carriers=[
                CarrierSettings(
                    name="smsc",
                    type="smpp",
                    host="127.0.0.1",
                    port=peer.port,
                    system_id="smsgw",
                    password=password,
                    window=10,
                    timeout_seconds=3.0,
                ),
                CarrierSettings(name="backup", url=f"{backup.url}/messages", down_seconds=0.0),
            ],
            routes=[
                RouteSettings(name="primary", carrier="smsc", price=0.005, countries=list(primary_countries)),
                RouteSettings(
                    name="fallback", carrier="backup", price=0.010, countries=list(backup_countries)
                ),
            ],
            routing=routing or RoutingSettings(explore_share=0.0, throttle_hold_seconds=1.0),
        )
        clock = ManualClock()
        app = create_app(settings, clock=clock)
        client = await aiohttp_client(TestServer(app, port=port))
        gw = Gw(client, app, clock, backup, tmp_path / "smsgw.db")
        rig = Rig(gw, backup, peer)
        rig.key = await gw.tenant("acme", scopes="send,admin")
        return rig

    yield make
    for sim in sims:
        await sim.close()


async def sim_peer(**options: Any) -> SimPeer:
    inbox = Inbox()
    sim = SmppSim(
        lambda s, t, x: inbox.add(s, t, x)[0], SmppSimOptions(seed=3, receipt_delay_ms=5, **options)
    )
    server = await sim.start("127.0.0.1", 0)
    return SimPeer(sim, server.sockets[0].getsockname()[1], inbox)


async def route_view(rig: Rig, name: str) -> dict[str, Any]:
    st, table, _ = await rig.gw.call("GET", "/v1/routes", rig.key)
    assert st == 200
    return dict(next(r for r in table["routes"] if r["name"] == name))


# --------------------------------------------------------------------------- the faults


@pytest.mark.parametrize("kind", ["node", "sim"])
async def test_connection_dropped_with_a_full_window_resubmits_each_message_once_elsewhere(
    kind: str, node_peer: StartNode, make_rig: MakeRig
) -> None:
    if kind == "node":
        peer: Peer = node_peer("drop", "--drop-after", "10")
    else:
        peer = await sim_peer(latency_ms=60_000)  # holds every answer: the window fills
    rig = await make_rig(peer)
    to = numbers(10)
    ids = [await rig.send(n) for n in to]
    if isinstance(peer, SimPeer):
        for _ in range(500):
            if len(peer.inbox.messages) >= 10:
                break
            await asyncio.sleep(0.01)
        await peer.sim.close()  # the SMSC goes away with ten submit_sm unanswered
    else:
        await peer.smsc.wait_for("drop")
    await rig.gw.settle()
    statuses = [await rig.status(i) for i in ids]
    assert {s["status"] for s in statuses} == {"delivered"}
    assert {s["route"] for s in statuses} == {"fallback"}
    assert peer.seen() == Counter({n: 1 for n in to})  # the SMSC may hold each once: never sent again there
    assert rig.backup_counts() == Counter({n: 1 for n in to})  # and each went to the backup exactly once
    assert all(s["attempts"] == 2 for s in statuses)
    primary = await route_view(rig, "primary")
    assert primary["breaker"]["state"] == "open"  # ten lost answers in a row: it opened at the fifth
    assert primary["breaker"]["reason"] == "5 consecutive failures (last: no_response)"


@pytest.mark.parametrize("kind", ["node", "sim"])
async def test_throttled_answers_fail_over_then_the_route_takes_traffic_again(
    kind: str, node_peer: StartNode, make_rig: MakeRig
) -> None:
    # node: submit_sm #1 and #2 ESME_RTHROTTLED, #3 ESME_RMSGQFUL, then ESME_ROK; sim: all throttled
    peer: Peer = node_peer("throttle") if kind == "node" else await sim_peer(throttle_rate=1.0)
    rig = await make_rig(peer)
    reg = rig.gw.ctx.instruments.registry
    to = numbers(4, base=100)
    for i, n in enumerate(to[:3]):
        if isinstance(peer, SimPeer) and i == 2:
            peer.sim.options = dataclasses.replace(peer.sim.options, throttle_rate=0.0)
        mid = await rig.send(n)
        await rig.gw.settle()
        msg = await rig.status(mid)
        if isinstance(peer, SimPeer) and i == 2:
            assert msg["route"] == "primary"
            break
        assert msg["status"] == "delivered" and msg["route"] == "fallback"
        assert reg.get_sample_value("smsgw_route_throttled_total", {"route": "primary"}) == i + 1
        # held after each throttle (1 s, then 2 s): the next message waits until the hold is over
        rig.gw.clock.advance(5)
    if isinstance(peer, NodePeer):
        mid = await rig.send(to[3])
        await rig.gw.settle()
        assert (await rig.status(mid))["route"] == "primary"
        assert peer.accepted() == Counter({to[3]: 1})
        assert rig.backup_counts() == Counter({n: 1 for n in to[:3]})
    else:
        assert peer.accepted() == Counter({to[2]: 1})
        assert rig.backup_counts() == Counter({n: 1 for n in to[:2]})
    primary = await route_view(rig, "primary")
    assert primary["breaker"]["state"] == "closed" and primary["up"] is True  # throttling never trips it


@pytest.mark.parametrize("kind", ["node", "sim"])
async def test_bind_refused_marks_the_route_down_and_traffic_goes_to_the_other(
    kind: str, node_peer: StartNode, make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    peer: Peer = node_peer("badpass") if kind == "node" else await sim_peer(password="secret")
    rig = await make_rig(peer, password="secret" if kind == "node" else "wrong")
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        m.startswith(f"SMPP bind refused by 127.0.0.1:{peer.port} for system_id 'smsgw': ") for m in refused
    ), refused
    assert not any("wrong" in m or "secret" in m for m in refused)  # never the password
    mid = await rig.send(numbers(1, base=200)[0])
    await rig.gw.settle()
    msg = await rig.status(mid)
    assert msg["status"] == "delivered" and msg["route"] == "fallback"
    assert "primary (carrier down: " in msg["route_reason"] and "ESME_RINVPASWD" in msg["route_reason"]
    primary = await route_view(rig, "primary")
    assert primary["up"] is False and "ESME_RINVPASWD" in primary["why_not"]
    text = await (await rig.gw.client.get("/metrics")).text()
    assert 'smsgw_route_up{carrier="smsc",route="primary"} 0.0' in text
    assert peer.seen() == Counter()


async def test_malformed_pdus_reset_the_connection_without_a_crash(
    node_peer: StartNode, make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    peer = node_peer("malformed")  # answers the first submit_sm with an unknown PDU, then garbage
    rig = await make_rig(peer)
    first, second = numbers(2, base=300)
    mid = await rig.send(first)
    await rig.gw.settle()
    msg = await rig.status(mid)
    assert msg["status"] == "delivered" and msg["route"] == "fallback"
    assert any("connection reset" in r.getMessage() for r in caplog.records)
    await peer.smsc.wait_for("bind", 2)  # rebound on a new connection
    carrier = rig.gw.ctx.routes.carriers["smsc"]
    for _ in range(300):
        if carrier.is_up():
            break
        await asyncio.sleep(0.01)
    mid = await rig.send(second)
    await rig.gw.settle()
    assert (await rig.status(mid))["route"] == "primary"
    assert peer.seen() == Counter({first: 1, second: 1}) and rig.backup_counts() == Counter({first: 1})
    assert (await rig.gw.client.get("/healthz")).status == 200


@pytest.mark.parametrize("kind", ["node", "sim"])
async def test_all_routes_of_a_country_down_is_503_no_route_for_otp(
    kind: str, node_peer: StartNode, make_rig: MakeRig
) -> None:
    peer: Peer = node_peer("badpass") if kind == "node" else await sim_peer(password="secret")
    rig = await make_rig(
        peer,
        password="secret" if kind == "node" else "wrong",
        primary_countries=("FR",),
        backup_countries=("DE",),
    )
    st, err, _ = await rig.gw.call("POST", "/v1/otp", rig.key, {"to": "+33612345678"})
    assert st == 503 and err["error"]["code"] == "no_route" and err["error"]["country"] == "FR"
    st, _, _ = await rig.gw.call("POST", "/v1/otp", rig.key, {"to": "+4915123456789"})
    assert st == 202
    assert (await rig.gw.call("GET", "/v1/routes", rig.key))[1]["routes"][0]["up"] is False


async def test_receipts_for_unknown_ids_are_ignored_and_logged(
    node_peer: StartNode, make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    peer = node_peer("normal")
    rig = await make_rig(peer)
    mid = await rig.send(numbers(1, base=400)[0])
    await rig.gw.settle()
    assert (await rig.status(mid))["status"] == "delivered"
    peer.smsc.command(cmd="receipt", id="DEADBEEF", stat="UNDELIV", form="text")
    peer.smsc.command(cmd="receipt", id="CAFE", stat="DELIVRD", form="tlv")
    await peer.smsc.wait_for("deliver_sm_resp", 3)  # answered: one for our message, two for these
    token = rig.gw.ctx.extras["receipt_token"]
    resp = await rig.gw.client.post(
        f"/v1/carriers/backup/receipts?token={token}", json=[{"id": "sim-404", "status": "failed"}]
    )
    assert resp.status == 200
    for _ in range(300):
        held = [
            r for r in caplog.records if r.getMessage().startswith("receipt for a message id no store knows")
        ]
        if len(held) >= 3:
            break
        await asyncio.sleep(0.01)
    assert {r.__dict__["carrier_message_id"] for r in held} == {"DEADBEEF", "CAFE", "sim-404"}
    counts = await rig.gw.ctx.db.count_by_status()
    assert counts == {"delivered": 1}  # nothing else changed
    assert (await rig.gw.client.get("/healthz")).status == 200


# --------------------------------------------------------------------------- reload on SIGHUP


def config_text(sim_port: int, routes: str) -> str:
    return (
        "[[carriers]]\n"
        f'name = "sim"\ntype = "http"\nurl = "http://127.0.0.1:{sim_port}/messages"\n\n'
        "[[carriers]]\n"
        f'name = "sim2"\ntype = "http"\nurl = "http://127.0.0.1:{sim_port}/messages"\n\n' + routes
    )


def test_sighup_reloads_the_route_table_and_a_bad_file_keeps_the_old_one(procs: Procs) -> None:
    sim_port = procs.sim_carrier()
    port = free_port()
    gw = procs.gateway(port, config_text(sim_port, '[[routes]]\nname = "one"\ncarrier = "sim"\n'))
    admin = procs.tenant("ops", scopes="admin,send")

    def routes() -> list[str]:
        import urllib.request

        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/routes", headers={"Authorization": f"Bearer {admin}"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            import json

            return [x["name"] for x in json.loads(r.read())["routes"]]

    wait_until(lambda: get_json(f"http://127.0.0.1:{port}/readyz")["status"] == "ready", 20, "ready")
    assert routes() == ["one"]
    config = procs.workdir / "smsgw.toml"
    config.write_text(
        config_text(
            sim_port,
            '[[routes]]\nname = "one"\ncarrier = "sim"\n\n[[routes]]\nname = "two"\ncarrier = "sim2"\n',
        )
    )
    gw.send_signal(signal.SIGHUP)
    wait_until(lambda: routes() == ["one", "two"], 10, "the new route after SIGHUP")
    config.write_text("[[routes]]\nname = 'broken'\ncarrier = 'nope'\n")
    gw.send_signal(signal.SIGHUP)
    log = procs.workdir / "gw.log"
    wait_until(lambda: "route table reload refused" in log.read_text(), 10, "the refusal in the log")
    assert routes() == ["one", "two"] and gw.poll() is None
