"""The sim-carrier's HTTP side and its inbox.

``POST /messages`` ``{"from", "to", "text", "dlr_url"?, "ref"?}`` → ``{"id"}``;
``GET /inbox?to=+E164`` → that number's messages, newest first; ``GET /stats`` → counters.
Knobs: latency, failure rate (answers 503), delivery-receipt rate and delay, undeliverable rate
(receipt says failed). A repeated ``ref`` returns the first id and adds nothing to the inbox.
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


class SimHttp:
    def __init__(self, inbox: Inbox, options: SimOptions) -> None:
        self.inbox = inbox
        self.options = options
        self.rng = random.Random(options.seed)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.receipts_sent = 0
        self._receipts: dict[str, deque[tuple[float, dict[str, str]]]] = {}
        self._flushers: set[str] = set()
        self.receipts_failed = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/messages", self.submit)
        app.router.add_get("/inbox", self.inbox_view)
        app.router.add_get("/stats", self.stats)
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
            self._queue_receipt(dlr_url, mid, status)
        return {"id": mid}

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _queue_receipt(self, url: str, mid: str, status: str) -> None:
        """Receipts are posted in batches (a JSON array), as HTTP aggregators do under load."""
        payload = {"id": mid, "status": status}
        if status == "failed":
            payload["err"] = "001"
        due = time.monotonic() + self.options.receipt_delay_ms / 1000
        self._receipts.setdefault(url, deque()).append((due, payload))
        if url not in self._flushers:
            self._flushers.add(url)
            self._spawn(self._flush_receipts(url))

    async def _flush_receipts(self, url: str) -> None:
        queue = self._receipts[url]
        try:
            while queue:
                wait = queue[0][0] - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                now = time.monotonic()
                batch: list[dict[str, str]] = []
                while queue and queue[0][0] <= now and len(batch) < 500:
                    batch.append(queue.popleft()[1])
                if batch:
                    await self._post_receipts(url, batch)
        finally:
            self._flushers.discard(url)

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
            }
        )
