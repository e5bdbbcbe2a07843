"""The sim-carrier's HTTP side and its inbox.

``POST /messages`` ``{"from", "to", "text", "dlr_url"?, "ref"?}`` → ``{"id"}``;
``GET /inbox?to=+E164`` → that number's messages, newest first; ``GET /stats`` → counters and the
receipt knobs; ``POST /fail`` ``{"to": "+E164"}`` → ``{"switched": n}``: the receipts of that number's
messages still held back (``receipt_delay_ms``) become ``failed`` receipts, posted at once; the answer
comes once the gateway took them (or the posting gave up). A receipt already sent cannot be overturned
(``switched`` is then 0): a run that fails chosen messages starts the sim with a receipt delay longer
than the time it takes to decide (``smsgw sim-carrier --receipt-delay-ms 25000``).
Knobs: latency, failure rate (answers 503), delivery-receipt rate and delay, undeliverable rate
(receipt says failed). A repeated ``ref`` returns the first id and adds nothing to the inbox.

A held receipt is ``pending`` until its time comes (``sent``) or ``POST /fail`` takes it (``switched``);
the flusher skips what is no longer pending.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger("smsgw.sim")


@dataclass
class SimOptions:
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    receipt_rate: float = 1.0
    receipt_delay_ms: float = 50.0
    undeliverable_rate: float = 0.0
    seed: int | None = None
    inbox_limit: int = 200_000


@dataclass
class InboxMessage:
    id: str
    sender: str
    to: str
    text: str
    received_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "text": self.text,
            "received_at": self.received_at,
        }


@dataclass
class Inbox:
    limit: int = 200_000
    messages: deque[InboxMessage] = field(default_factory=deque)
    by_to: dict[str, list[InboxMessage]] = field(default_factory=dict)
    by_ref: dict[str, str] = field(default_factory=dict)
    received: int = 0
    duplicates: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, sender: str, to: str, text: str, ref: str | None = None) -> tuple[str, bool]:
        """Store a message; returns (id, new). A known ref returns its first id and stores nothing."""
        if ref is not None and ref in self.by_ref:
            self.duplicates += 1
            return self.by_ref[ref], False
        msg = InboxMessage(f"sim-{next(self._ids)}", sender, to, text, time.time())
        self.messages.append(msg)
        self.by_to.setdefault(to, []).append(msg)
        if ref is not None:
            self.by_ref[ref] = msg.id
        self.received += 1
        while len(self.messages) > self.limit:
            old = self.messages.popleft()
            lst = self.by_to.get(old.to)
            if lst:
                lst.remove(old)
                if not lst:
                    del self.by_to[old.to]
        return msg.id, True


@dataclass(slots=True, eq=False)
class HeldReceipt:
    """One receipt waiting for its time: ``pending`` → ``sent`` (its time came) | ``switched``
    (``POST /fail`` posted a failed receipt instead)."""

    due: float  # time.monotonic()
    url: str
    to: str
    payload: dict[str, str]
    state: str = "pending"


class SimHttp:
    def __init__(self, inbox: Inbox, options: SimOptions) -> None:
        self.inbox = inbox
        self.options = options
        self.rng = random.Random(options.seed)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.receipts_sent = 0
        self._receipts: dict[str, deque[HeldReceipt]] = {}
        self._held: dict[str, deque[HeldReceipt]] = {}  # pending receipts by destination number
        self._flushers: set[str] = set()
        self.receipts_failed = 0
        self.receipts_switched = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/messages", self.submit)
        app.router.add_get("/inbox", self.inbox_view)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/fail", self.fail)
        app.cleanup_ctx.append(self._client)
        return app

    async def _client(self, app: web.Application) -> Any:
        self._session = aiohttp.ClientSession()
        yield
        for t in list(self._tasks):
            t.cancel()
        await self._session.close()

    async def submit(self, request: web.Request) -> web.Response:
        """One message object, or an array of them (bulk): answers ``{"id"}`` or an array in order."""
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "invalid json"}, status=400)
        if self.options.latency_ms:
            await asyncio.sleep(self.options.latency_ms / 1000)
        if isinstance(body, list):
            if not body or len(body) > 1000:
                return web.json_response({"error": "a bulk request holds 1 to 1000 messages"}, status=400)
            if self.options.failure_rate and self.rng.random() < self.options.failure_rate:
                return web.json_response({"error": "simulated failure"}, status=503)
            return web.json_response([self._accept(item) for item in body])
        if self.options.failure_rate and self.rng.random() < self.options.failure_rate:
            return web.json_response({"error": "simulated failure"}, status=503)
        answer = self._accept(body)
        return web.json_response(answer, status=int(answer.get("status", 200)))

    def _accept(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("from", "to", "text")
        ):
            return {"error": "from, to and text are required strings", "status": 400}
        ref = body.get("ref") if isinstance(body.get("ref"), str) else None
        mid, new = self.inbox.add(body["from"], body["to"], body["text"], ref)
        dlr_url = body.get("dlr_url")
        if new and isinstance(dlr_url, str) and self.rng.random() < self.options.receipt_rate:
            status = "failed" if self.rng.random() < self.options.undeliverable_rate else "delivered"
            self._queue_receipt(dlr_url, mid, status, body["to"])
        return {"id": mid}

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _queue_receipt(self, url: str, mid: str, status: str, to: str) -> None:
        """Receipts are posted in batches (a JSON array), as HTTP aggregators do under load."""
        due = time.monotonic() + self.options.receipt_delay_ms / 1000
        held = HeldReceipt(due, url, to, _receipt(mid, status))
        self._receipts.setdefault(url, deque()).append(held)
        self._held.setdefault(to, deque()).append(held)
        if url not in self._flushers:
            self._flushers.add(url)
            self._spawn(self._flush_receipts(url))

    async def _flush_receipts(self, url: str) -> None:
        queue = self._receipts[url]
        try:
            while queue:
                if queue[0].state != "pending":  # switched by POST /fail: already posted
                    queue.popleft()
                    continue
                wait = queue[0].due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                now = time.monotonic()
                batch: list[dict[str, str]] = []
                while queue and queue[0].due <= now and len(batch) < 500:
                    held = queue.popleft()
                    if held.state == "pending":
                        self._release(held, "sent")
                        batch.append(held.payload)
                if batch:
                    await self._post_receipts(url, batch)
        finally:
            self._flushers.discard(url)

    @property
    def receipts_held(self) -> int:
        """Receipts pending now."""
        return sum(len(q) for q in self._held.values())

    def _release(self, held: HeldReceipt, state: str) -> None:
        held.state = state
        same = self._held.get(held.to)
        if same is not None:
            if same[0] is held:  # receipts of one number fall due in order: O(1)
                same.popleft()
            else:
                same.remove(held)
            if not same:
                del self._held[held.to]

    async def fail(self, request: web.Request) -> web.Response:
        """``{"to": "+E164"}``: the held receipts of that number's messages become failed receipts,
        posted now (one batch per receipt URL); answers ``{"switched": n}`` after posting."""
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "invalid json"}, status=400)
        to = body.get("to") if isinstance(body, dict) else None
        if not isinstance(to, str) or not to:
            return web.json_response({"error": "to is a required string"}, status=400)
        batches: dict[str, list[dict[str, str]]] = {}
        for held in list(self._held.get(to, ())):
            self._release(held, "switched")
            batches.setdefault(held.url, []).append(_receipt(held.payload["id"], "failed"))
        n = sum(len(b) for b in batches.values())
        self.receipts_switched += n
        for url, batch in batches.items():
            await self._post_receipts(url, batch)
        return web.json_response({"switched": n})

    async def _post_receipts(self, url: str, batch: list[dict[str, str]]) -> None:
        assert self._session is not None
        for attempt in range(5):
            try:
                timeout = aiohttp.ClientTimeout(total=5)
                async with self._session.post(url, json=batch, timeout=timeout) as r:
                    if r.status < 500:
                        self.receipts_sent += len(batch)
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2 * 2**attempt)
        self.receipts_failed += len(batch)
        log.warning("receipts could not be delivered", extra={"count": len(batch)})

    async def inbox_view(self, request: web.Request) -> web.Response:
        to = request.query.get("to", "")
        msgs = self.inbox.by_to.get(to, [])
        return web.json_response([m.as_json() for m in reversed(msgs)])

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "received": self.inbox.received,
                "duplicates": self.inbox.duplicates,
                "receipts_sent": self.receipts_sent,
                "receipts_failed": self.receipts_failed,
                "receipts_held": self.receipts_held,
                "receipts_switched": self.receipts_switched,
                "receipt_rate": self.options.receipt_rate,
                "receipt_delay_ms": self.options.receipt_delay_ms,
            }
        )


def _receipt(mid: str, status: str) -> dict[str, str]:
    payload = {"id": mid, "status": status}
    if status == "failed":
        payload["err"] = "001"
    return payload
