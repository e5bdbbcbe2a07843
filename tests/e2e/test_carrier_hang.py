"""A carrier that hangs mid-window and comes back, under steady load (docs/reliability.md, "Carrier hangs").

SMPP: the primary route's peer is the npm ``smpp`` SMSC (tests/peers/smsc.js); SIGSTOP freezes it with
its TCP connection open (nothing answers, nothing is refused), SIGCONT wakes it and it reads everything
it was sent meanwhile. HTTP: the primary is a real HTTP server that reads each request and never
answers. The backup route is the sim-carrier's HTTP side. Every message is counted at both peers by its
body (each one unique): it must be there exactly once in all, and end ``delivered`` through its receipt.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
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
)
from tests.carriers.smpp_peers import NodeSmsc, start_node_smsc
from tests.conftest import free_port
from tests.e2e.procs import spread
from tests.gateway.harness import MASTER_KEY, Gw, ManualClock, Sim

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
ServerFactory = Callable[..., Awaitable[TestServer]]


@dataclass
class Rig:
    gw: Gw
    backup: Sim
    key: str

    async def send(self, i: int) -> str:
        body = {"to": spread(i), "sender_id": "ACME", "body": f"parcel {i:04d} is on its way"}
        st, reply, _ = await self.gw.call("POST", "/v1/messages", self.key, body)
        assert st == 202, reply
        return str(reply["id"])

    async def status(self, mid: str) -> dict[str, Any]:
        st, body, _ = await self.gw.call("GET", f"/v1/messages/{mid}", self.key)
        assert st == 200, body
        return dict(body)

    def backup_bodies(self) -> Counter[str]:
        return Counter(m.text for m in self.backup.inbox.messages)


async def make_rig(
    tmp_path: Path,
    aiohttp_server: ServerFactory,
    aiohttp_client: ClientFactory,
    primary: CarrierSettings,
    routing: RoutingSettings | None = None,
) -> Rig:
    http = SimHttp(Inbox(), SimOptions(receipt_delay_ms=0, seed=5))
    server = await aiohttp_server(http.app())
    backup = Sim(http, f"http://127.0.0.1:{server.port}")
    port = free_port()
    settings = Settings(
        server=ServerSettings(port=port),
        db_path=str(tmp_path / "smsgw.db"),
        master_key=MASTER_KEY,
        dispatch=DispatchSettings(workers=16, sweep_interval_seconds=0.2, retry_backoff_seconds=0.5),
        carriers=[primary, CarrierSettings(name="backup", url=f"{backup.url}/messages", down_seconds=0.0)],
        routes=[
            RouteSettings(name="primary", carrier=primary.name, price=0.005),
            RouteSettings(name="fallback", carrier="backup", price=0.010),
        ],
        routing=routing or RoutingSettings(explore_share=0.0),
    )
    app = create_app(settings)  # the real clock: timeouts, stalls and receipts run in real time
    client = await aiohttp_client(TestServer(app, port=port))
    gw = Gw(client, app, ManualClock(), backup, tmp_path / "smsgw.db")
    return Rig(gw, backup, await gw.tenant("acme", scopes="send,admin"))


async def steady_load(rig: Rig, ids: dict[int, str], count: int, every: float, base: int = 0) -> None:
    for i in range(count):
        ids[base + i] = await rig.send(base + i)
        await asyncio.sleep(every)


async def wait_final(
    rig: Rig, ids: dict[int, str], within: float, final: frozenset[str] = frozenset({"delivered", "failed"})
) -> dict[int, dict[str, Any]]:
    final = final | {"expired", "rejected"}
    seen: dict[int, dict[str, Any]] = {}
    async with asyncio.timeout(within):
        while True:
            seen = {i: await rig.status(mid) for i, mid in ids.items()}
            if all(s["status"] in final for s in seen.values()):
                return seen
            await asyncio.sleep(0.2)


@pytest.fixture
async def smsc() -> AsyncIterator[NodeSmsc]:
    peer = start_node_smsc("--mode", "normal", "--receipt-delay-ms", "5")
    yield peer
    if peer.proc.poll() is None:
        os.kill(peer.proc.pid, signal.SIGCONT)  # never leave it frozen
    peer.stop()


async def test_smpp_peer_silent_mid_window_then_back_no_duplicates_late_receipts_match(
    tmp_path: Path, aiohttp_server: ServerFactory, aiohttp_client: ClientFactory, smsc: NodeSmsc
) -> None:
    primary = CarrierSettings(
        name="smsc",
        type="smpp",
        host="127.0.0.1",
        port=smsc.port,
        system_id="smsgw",
        password="secret",
        window=10,
        timeout_seconds=1.0,  # an answer missing this long: the bind stalls, new traffic goes elsewhere
        stall_grace_seconds=8.0,  # the outstanding submits wait this much longer for the SMSC to return
        enquire_link_seconds=30.0,
    )
    rig = await make_rig(tmp_path, aiohttp_server, aiohttp_client, primary)
    ids: dict[int, str] = {}
    count = 120
    load = asyncio.create_task(steady_load(rig, ids, count, 0.03))
    while len(ids) < 30:
        assert not load.done(), load.exception()
        await asyncio.sleep(0.01)
    os.kill(smsc.proc.pid, signal.SIGSTOP)  # mid-window, mid-load: TCP open, nothing answers
    submits_before = len(smsc.of("submit"))
    await asyncio.sleep(3.0)  # well past the response timeout, well inside the stall grace
    os.kill(smsc.proc.pid, signal.SIGCONT)
    await load
    statuses = await wait_final(rig, ids, 45.0)

    at_smsc = Counter(e["text"] for e in smsc.of("submit"))
    at_backup = rig.backup_bodies()
    bodies = [f"parcel {i:04d} is on its way" for i in range(count)]
    assert (at_smsc + at_backup) == Counter(bodies), "every message exactly once across both carriers"
    assert {s["status"] for s in statuses.values()} == {"delivered"}, Counter(
        s["status"] for s in statuses.values()
    )
    late = smsc.of("submit")[submits_before:]
    sent_during_hang = [i for i, s in statuses.items() if s["route"] == "fallback"]
    # the hang was seen both ways: some messages waited for the SMSC (answered after SIGCONT) ...
    assert late, "no submit_sm was waiting at the SMSC when it froze"
    # ... and new traffic failed over while the bind was stalled
    assert sent_during_hang, "nothing failed over while the SMSC was silent"
    # late submit_sm_resp gave the waiting messages their SMSC ids, and their receipts matched
    waited = {e["text"] for e in late}
    for i, s in statuses.items():
        if bodies[i] in waited:
            assert s["route"] == "primary" and s["status"] == "delivered"
    assert len(smsc.of("receipt_sent")) == len(smsc.of("submit"))
    print(
        f"smpp hang 3 s: {count} messages, {len(waited)} waited at the SMSC and were answered late, "
        f"{len(sent_during_hang)} failed over, 0 duplicates"
    )


async def test_http_carrier_timing_out_fails_over_once_then_takes_traffic_again(
    tmp_path: Path, aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> None:
    hanging = asyncio.Event()
    hanging.set()
    got: list[dict[str, Any]] = []
    held: list[asyncio.Future[None]] = []
    inbox = Inbox()

    async def messages(request: web.Request) -> web.Response:
        body = await request.json()
        got.append(body)
        if hanging.is_set():  # reads the request, never answers (until the test ends)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            held.append(fut)
            await fut
        mid, _ = inbox.add(body["from"], body["to"], body["text"], body.get("ref"))
        return web.json_response({"id": mid})

    app = web.Application()
    app.router.add_post("/messages", messages)
    server = await aiohttp_server(app)
    primary = CarrierSettings(
        name="slow", url=f"http://127.0.0.1:{server.port}/messages", timeout_seconds=1.0, down_seconds=4.0
    )
    routing = RoutingSettings(explore_share=0.0, breaker_cooldown_seconds=2.0)
    rig = await make_rig(tmp_path, aiohttp_server, aiohttp_client, primary, routing)
    ids: dict[int, str] = {}
    await steady_load(rig, ids, 20, 0.1)
    statuses = await wait_final(rig, ids, 30.0)
    hanging.clear()
    for fut in held:
        fut.cancel()

    bodies = [f"parcel {i:04d} is on its way" for i in range(20)]
    assert {s["status"] for s in statuses.values()} == {"delivered"}
    assert {s["route"] for s in statuses.values()} == {"fallback"}
    assert rig.backup_bodies() == Counter(bodies)  # each once at the backup
    at_slow = Counter(b["text"] for b in got)
    assert max(at_slow.values()) == 1  # a route that may hold a message never gets it again
    assert 1 <= len(got) < 20  # the first timeout took the carrier down: the rest never went to it
    print(f"http hang: 20 messages, {len(got)} timed out at the hung carrier, all 20 delivered by the backup")

    # it comes back: once its rest and the breaker's cool-down are over, the cheaper route takes traffic
    await asyncio.sleep(4.5)
    later: dict[int, str] = {}
    await steady_load(rig, later, 5, 0.3, base=100)
    back = await wait_final(rig, later, 20.0, final=frozenset({"submitted", "failed"}))
    assert {(s["route"], s["status"]) for s in back.values()} == {("primary", "submitted")}
    assert Counter(b["text"] for b in got[-5:]) == Counter(f"parcel {i:04d} is on its way" for i in later)
