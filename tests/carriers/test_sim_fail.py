"""The sim-carrier's ``POST /fail``: a held delivery receipt becomes a failed one, posted at once.

A real receiver (an aiohttp server standing in for the gateway's receipt endpoint) collects what the
sim posts; nothing sleeps blindly: the tests wait for the receiver to see a receipt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from carriers.sim.http_server import Inbox, SimHttp, SimOptions

ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
A, B = "+998901234567", "+4915123456789"


class Receiver:
    """Receipts posted to it, in arrival order; ``wait(n)`` until it holds ``n`` of them."""

    def __init__(self) -> None:
        self.receipts: list[dict[str, str]] = []
        self.posts = 0
        self._grew = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/receipts", self.take)
        return app

    async def take(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.receipts += body if isinstance(body, list) else [body]
        self.posts += 1
        self._grew.set()
        return web.json_response({"accepted": len(body)})

    async def wait(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self.receipts) < n:
                self._grew.clear()
                await self._grew.wait()


async def _rig(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory, delay_ms: float
) -> tuple[TestClient[Any, Any], Receiver, str]:
    rx = Receiver()
    server = await aiohttp_server(rx.app())
    sim = SimHttp(Inbox(), SimOptions(receipt_delay_ms=delay_ms, seed=1))
    client = await aiohttp_client(sim.app())
    return client, rx, str(server.make_url("/receipts"))


async def _send(client: TestClient[Any, Any], to: str, dlr: str | None) -> str:
    body = {"from": "Brand", "to": to, "text": "Your code is 123456"}
    r = await client.post("/messages", json=body if dlr is None else {**body, "dlr_url": dlr})
    assert r.status == 200
    return str((await r.json())["id"])


async def test_held_receipts_of_a_number_become_failed_receipts_posted_before_the_answer(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> None:
    client, rx, dlr = await _rig(aiohttp_server, aiohttp_client, delay_ms=300.0)
    a1, a2, b1 = await _send(client, A, dlr), await _send(client, A, dlr), await _send(client, B, dlr)
    await _send(client, A, None)  # asked for no receipt: nothing to switch
    assert (await (await client.get("/stats")).json())["receipts_held"] == 3

    r = await client.post("/fail", json={"to": A})
    assert r.status == 200 and await r.json() == {"switched": 2}
    # posted before the answer, in one batch, with the failure code
    assert rx.receipts == [
        {"id": a1, "status": "failed", "err": "001"},
        {"id": a2, "status": "failed", "err": "001"},
    ]
    assert rx.posts == 1
    assert await (await client.post("/fail", json={"to": A})).json() == {"switched": 0}

    # B's receipt comes at its time; A's delivered receipts are never sent after the failed ones
    await rx.wait(3)
    assert rx.receipts[2] == {"id": b1, "status": "delivered"}
    stats = await (await client.get("/stats")).json()
    assert stats["receipts_held"] == 0 and stats["receipts_switched"] == 2
    assert stats["receipts_sent"] == 3 and stats["receipt_delay_ms"] == 300.0
    assert await (await client.post("/fail", json={"to": B})).json() == {"switched": 0}, "already sent"
    assert len(rx.receipts) == 3


async def test_a_receipt_already_sent_cannot_be_overturned(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> None:
    client, rx, dlr = await _rig(aiohttp_server, aiohttp_client, delay_ms=0.0)
    mid = await _send(client, A, dlr)
    await rx.wait(1)
    assert await (await client.post("/fail", json={"to": A})).json() == {"switched": 0}
    assert rx.receipts == [{"id": mid, "status": "delivered"}]
    assert await (await client.post("/fail", json={"to": "+10000000000"})).json() == {"switched": 0}


async def test_fail_refuses_a_body_without_a_number(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> None:
    client, _, _ = await _rig(aiohttp_server, aiohttp_client, delay_ms=0.0)
    for body in ({}, {"to": 5}, {"to": ""}, ["+1"]):
        r = await client.post("/fail", json=body)
        assert r.status == 400, body
    r = await client.post("/fail", data=b"{not json")
    assert r.status == 400
