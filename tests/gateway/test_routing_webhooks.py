"""Status callbacks against a real aiohttp receiver started in the test: registration, signed bodies
without the phone number, every status change, retries with backoff, dispatch never blocked."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
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
    ServerSettings,
    Settings,
    WebhookSettings,
)
from gateway.webhooks import WebhookSender, retry_delay, sign, url_problem, verify_signature
from tests.conftest import free_port
from tests.gateway.harness import MASTER_KEY, Gw, ManualClock, Sim

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
NUM = "+4915123456789"
SECRET = "whsec_0123456789abcdef"


@dataclass
class Receiver:
    """A tenant's webhook endpoint: records every POST; answers from ``script`` (then 200)."""

    url: str = ""
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    hang: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((dict(request.headers), body))
        self.changed.set()
        if self.hang:
            await asyncio.sleep(self.hang)
        return web.Response(status=self.script.pop(0) if self.script else 200)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.got]

    async def wait(self, count: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/smsgw", rec.handle)
    server = await aiohttp_server(app)
    rec.url = f"http://127.0.0.1:{server.port}/hooks/smsgw"
    return rec


@pytest.fixture
async def gw(
    tmp_path: Path,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    aiohttp_client: ClientFactory,
) -> AsyncIterator[Gw]:
    http = SimHttp(Inbox(), SimOptions(receipt_delay_ms=0, seed=5))
    server = await aiohttp_server(http.app())
    sim = Sim(http, f"http://127.0.0.1:{server.port}")
    port = free_port()
    settings = Settings(
        server=ServerSettings(port=port),
        db_path=str(tmp_path / "smsgw.db"),
        master_key=MASTER_KEY,
        dispatch=DispatchSettings(workers=8, sweep_interval_seconds=0.2, max_attempts=1),
        carriers=[CarrierSettings(name="sim", url=f"{sim.url}/messages", down_seconds=0)],
        routes=[RouteSettings(name="only", carrier="sim")],
        webhooks=WebhookSettings(
            allow_private_hosts=True,
            backoff_seconds=0.05,
            max_backoff_seconds=0.2,
            timeout_seconds=1.0,
            sweep_seconds=0.05,
        ),
    )
    clock = ManualClock()
    app = create_app(settings, clock=clock)
    client = await aiohttp_client(TestServer(app, port=port))
    yield Gw(client, app, clock, sim, tmp_path / "smsgw.db")


def sender(gw: Gw) -> WebhookSender:
    s = gw.ctx.extras["webhooks"]
    assert isinstance(s, WebhookSender)
    return s


async def register(gw: Gw, key: str, url: str) -> None:
    st, body, _ = await gw.call("PUT", "/v1/webhook", key, {"url": url, "secret": SECRET})
    assert st == 200, body


async def test_every_status_change_is_posted_signed_and_without_the_number(
    gw: Gw, receiver: Receiver
) -> None:
    key = await gw.tenant("acme", scopes="send,admin")
    await register(gw, key, receiver.url)
    st, body, _ = await gw.call("POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hi"})
    assert st == 202
    await gw.settle()
    await receiver.wait(2)
    assert await sender(gw).drain()
    events = receiver.events()
    assert [e["status"] for e in events] == ["submitted", "delivered"]
    for (headers, raw), event in zip(receiver.got, events, strict=True):
        assert verify_signature(SECRET.encode(), raw, headers["X-Smsgw-Signature"])
        assert headers["X-Smsgw-Signature"] == sign(SECRET.encode(), raw)
        assert headers["X-Smsgw-Timestamp"] == str(event["timestamp"])
        assert (
            event["message_id"] == body["id"]
            and event["route"] == "only"
            and event["kind"] == "transactional"
        )
        assert event["to_masked"] == "+49*********89" and event["country"] == "DE"
        assert NUM not in raw.decode() and NUM[1:] not in raw.decode()
        assert event["attempt"] == 1
    assert not verify_signature(b"wrong secret", receiver.got[0][1], receiver.got[0][0]["X-Smsgw-Signature"])
    assert events[0]["event_id"] != events[1]["event_id"]


async def test_failed_and_expired_are_posted_too(gw: Gw, receiver: Receiver) -> None:
    key = await gw.tenant("acme", scopes="send,admin")
    await register(gw, key, receiver.url)
    gw.sim.http.options.failure_rate = 1.0  # one attempt allowed: the message fails for good
    st, _, _ = await gw.call("POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hi"})
    assert st == 202
    await gw.ctx.disp.drain()
    await receiver.wait(1)
    failed = receiver.events()[0]
    assert failed["status"] == "failed" and failed["error_code"] == "http_503"
    assert failed["error_reason"].startswith("gave up after 1 attempts")
    gw.sim.http.options.failure_rate = 0.0
    gw.sim.http.options.receipt_rate = 0.0
    st, otp, _ = await gw.call("POST", "/v1/otp", key, {"to": "+4915123456780"})
    assert st == 202
    await gw.ctx.disp.drain()
    await receiver.wait(2)
    assert receiver.events()[1]["status"] == "submitted" and receiver.events()[1]["otp_id"] == otp["id"]


async def test_retries_with_backoff_until_the_receiver_takes_it(gw: Gw, receiver: Receiver) -> None:
    key = await gw.tenant("acme", scopes="send,admin")
    await register(gw, key, receiver.url)
    gw.sim.http.options.receipt_rate = 0.0
    receiver.script = [500, 503, 429]  # three failures, then 200
    await gw.call("POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hi"})
    await gw.ctx.disp.drain()
    await receiver.wait(4)
    assert await sender(gw).drain()
    events = receiver.events()
    assert [e["attempt"] for e in events] == [1, 2, 3, 4]
    assert len({e["event_id"] for e in events}) == 1  # the same event, retried
    reg = gw.ctx.instruments.registry
    assert reg.get_sample_value("smsgw_webhook_deliveries_total", {"result": "retry"}) == 3
    assert reg.get_sample_value("smsgw_webhook_deliveries_total", {"result": "ok"}) == 1


async def test_retries_are_bounded_and_a_client_error_is_final(gw: Gw, receiver: Receiver) -> None:
    key = await gw.tenant("acme", scopes="send,admin")
    await register(gw, key, receiver.url)
    gw.sim.http.options.receipt_rate = 0.0
    receiver.script = [500] * 10
    await gw.call("POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hi"})
    await gw.ctx.disp.drain()
    assert await sender(gw).drain()
    assert len(receiver.got) == 6  # max_attempts
    receiver.script = [404]
    await gw.call("POST", "/v1/messages", key, {"to": "+4915123456781", "sender_id": "ACME", "body": "Hi"})
    await gw.ctx.disp.drain()
    assert await sender(gw).drain()
    assert len(receiver.got) == 7
    reg = gw.ctx.instruments.registry
    assert reg.get_sample_value("smsgw_webhook_deliveries_total", {"result": "failed"}) == 2


async def test_a_slow_receiver_never_blocks_dispatch(gw: Gw, receiver: Receiver) -> None:
    key = await gw.tenant("acme", scopes="send,admin")
    await register(gw, key, receiver.url)
    receiver.hang = 5.0  # longer than the webhook timeout (1 s): every callback times out
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(20):
        st, _, _ = await gw.call(
            "POST", "/v1/messages", key, {"to": f"+49151234567{i:02d}", "sender_id": "ACME", "body": "Hi"}
        )
        assert st == 202
    await gw.settle()
    assert loop.time() - t0 < 3.0
    counts = await gw.ctx.db.count_by_status()
    assert counts.get("delivered") == 20


async def test_registration_validation_and_views(gw: Gw, receiver: Receiver) -> None:
    key = await gw.tenant("acme", scopes="send,admin")
    st, err, _ = await gw.call("GET", "/v1/webhook", key)
    assert st == 404
    bad = [
        ({"url": "ftp://example.com/x", "secret": SECRET}, "use an http(s) URL"),
        ({"url": "https://user:pw@example.com/x", "secret": SECRET}, "credentials in the URL"),
        ({"url": "https://example.com/x", "secret": "short"}, "16 to 256"),
        ({"url": "https://example.com/x"}, "secret"),
    ]
    for payload, why in bad:
        st, err, _ = await gw.call("PUT", "/v1/webhook", key, payload)
        assert st == 400 and why in err["error"]["message"], err
    await register(gw, key, "https://hooks.example.com/smsgw")
    st, view, _ = await gw.call("GET", "/v1/webhook", key)
    assert st == 200 and view["url"] == "https://hooks.example.com/smsgw" and SECRET not in json.dumps(view)
    rows = await gw.ctx.db._read_all("SELECT secret_enc FROM tenant_webhooks", ())
    assert SECRET.encode() not in rows[0][0]
    other = await gw.tenant("other", scopes="admin")
    assert (await gw.call("GET", "/v1/webhook", other))[0] == 404  # tenants see only their own
    assert (await gw.call("GET", "/v1/webhook", await gw.tenant("plain", scopes="send")))[0] == 403
    st, _, _ = await gw.call("DELETE", "/v1/webhook", key)
    assert st == 204
    assert (await gw.call("GET", "/v1/webhook", key))[0] == 404


def test_private_addresses_are_refused_unless_allowed() -> None:
    assert url_problem("https://hooks.example.com/x", False) is None
    for url in ("http://127.0.0.1:8080/x", "http://10.0.0.5/x", "http://localhost/x", "http://[::1]/x"):
        assert url_problem(url, False) is not None, url
        assert url_problem(url, True) is None
    assert url_problem("http://169.254.169.254/latest/meta-data", False) is not None


def test_backoff_doubles_and_is_capped() -> None:
    assert [retry_delay(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


# ------------------------------------------------------------------------------------ durable outbox
def outbox(gw: Gw) -> list[tuple[str, int, str | None]]:
    """What the database holds: (event_id, tries made, holder) of every undelivered callback."""
    with sqlite3.connect(gw.db_path) as db:
        rows = db.execute("SELECT event_id, attempt, claimed_by FROM webhook_outbox ORDER BY created_at")
        return [(str(r[0]), int(r[1]), r[2]) for r in rows]


def crash(s: WebhookSender) -> None:
    """A process dying: its tasks stop where they are, nothing is released or written."""
    for t in (s._runner, s._sweeper, *s._inflight):
        if t is not None:
            t.cancel()


async def successor(gw: Gw, name: str) -> WebhookSender:
    """The next process's sender on the same database (a restart, or another gateway process)."""
    nxt = WebhookSender(
        gw.ctx.regions, gw.ctx.settings.webhooks, gw.ctx.instruments, clock=gw.clock, worker_id=name
    )
    await nxt.start()
    return nxt


async def failing_callback(gw: Gw, receiver: Receiver) -> str:
    """One message whose "submitted" callback the receiver keeps refusing; returns the event id."""
    key = await gw.tenant("acme", scopes="send,admin")
    await register(gw, key, receiver.url)
    gw.sim.http.options.receipt_rate = 0.0  # one status change only: submitted
    receiver.script = [503] * 1000
    st, _, _ = await gw.call("POST", "/v1/messages", key, {"to": NUM, "sender_id": "ACME", "body": "Hi"})
    assert st == 202
    await gw.ctx.disp.drain()
    await receiver.wait(2)  # the first try and a retry were refused
    [(event_id, tries, holder)] = outbox(gw)
    assert tries >= 1 and holder == sender(gw).worker_id
    return event_id


async def test_callbacks_pending_at_a_clean_stop_are_sent_by_the_next_process(
    gw: Gw, receiver: Receiver
) -> None:
    event_id = await failing_callback(gw, receiver)
    await sender(gw).stop(grace=0.0)
    [(still, tries, _)] = outbox(gw)
    assert still == event_id
    before = len(receiver.got)
    receiver.script = []  # the receiver is back
    nxt = await successor(gw, "next")
    try:
        await receiver.wait(before + 1)
        assert await nxt.drain()
    finally:
        await nxt.stop()
    last = receiver.events()[-1]
    assert last["event_id"] == event_id and last["attempt"] == tries + 1 and last["status"] == "submitted"
    assert outbox(gw) == []  # delivered: gone from the database


async def test_callbacks_of_a_crashed_process_are_taken_over_once_their_lease_runs_out(
    gw: Gw, receiver: Receiver
) -> None:
    event_id = await failing_callback(gw, receiver)
    crash(sender(gw))
    receiver.script = []
    nxt = await successor(gw, "next")
    try:
        await asyncio.sleep(0.3)  # several sweeps: the dead process's lease still holds
        assert [e for e in receiver.events() if e["attempt"] > 2] == [] and outbox(gw)[0][2] != "next"
        gw.clock.advance(gw.ctx.settings.webhooks.claim_lease_seconds + 1)
        await receiver.wait(3)
        assert await nxt.drain()
    finally:
        await nxt.stop()
    assert receiver.events()[-1]["event_id"] == event_id and outbox(gw) == []


async def test_beyond_the_memory_limit_callbacks_wait_in_the_outbox_and_all_arrive(
    gw: Gw, receiver: Receiver
) -> None:
    s = sender(gw)
    s.settings = replace(s.settings, queue_limit=2)
    key = await gw.tenant("acme", scopes="send,admin")
    await register(gw, key, receiver.url)
    gw.sim.http.options.receipt_rate = 0.0
    receiver.hang = 0.2  # slow enough that emitted events pile up
    for i in range(8):
        st, _, _ = await gw.call(
            "POST", "/v1/messages", key, {"to": f"+49151234567{i:02d}", "sender_id": "ACME", "body": "Hi"}
        )
        assert st == 202
    await gw.ctx.disp.drain()
    await receiver.wait(8, within=20)
    assert await s.drain()
    assert sorted(e["message_id"] for e in receiver.events()) == sorted(
        {e["message_id"] for e in receiver.events()}
    )
    assert len(receiver.got) == 8 and outbox(gw) == []
    reg = gw.ctx.instruments.registry
    assert reg.get_sample_value("smsgw_webhook_deliveries_total", {"result": "dropped"}) in (None, 0.0)
