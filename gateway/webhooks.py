"""Status callbacks: every status change of a tenant's message POSTed to the tenant's webhook.

The dispatcher calls :meth:`WebhookSender.emit` (synchronous, O(1), never blocks or raises) at each
change — submitted, delivered, failed, expired. A background runner looks the tenant's webhook up
(cached for ``cache_ttl`` seconds; for a tenant known to have none, ``emit`` returns at once), builds the JSON
body and POSTs it with

    X-Smsgw-Signature: sha256=<hex HMAC-SHA256 of the raw body under the tenant's secret>
    X-Smsgw-Timestamp: <unix seconds, also in the body as "timestamp", so it is signed too>

A 2xx answer ends it. A network error, a timeout, 408, 429 or 5xx is retried after
``backoff_seconds`` × 2^(attempt-1), at most ``max_backoff_seconds``, up to ``max_attempts`` tries in
all; any other answer is final. The same event keeps its ``event_id`` across retries (receivers
de-duplicate on it); events of one message may arrive out of order under retries — order by ``at``.
The body never carries the phone number: ``to_masked`` only, and error texts pass through
:func:`gateway.privacy.mask.scrub`.

Pending events are durable: the runner writes each event to the store's outbox (one group commit
for all emitted since the last) before its first try, and deletes it once delivered or given up, so
a restart or a crash does not lose it. Each event is leased to the process that emitted it; a clean
stop releases the leases, and after a crash another process (or the restarted one) takes the events
over once their lease ran out, with the same ``event_id`` and the tries already made. Only events
emitted in the milliseconds before a crash, not yet written, are lost. Beyond ``queue_limit`` events
held in memory, new ones wait in the outbox only and are taken in as room frees up.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from gateway.config import WebhookSettings
from gateway.privacy.crypto import CryptoError
from gateway.privacy.mask import mask_phone, scrub
from gateway.store.base import OutboxEvent, Webhook
from gateway.store.records import MessageRecord
from gateway.store.router import Stores
from metrics.instruments import Instruments

log = logging.getLogger("smsgw.webhooks")

SIGNATURE_HEADER = "X-Smsgw-Signature"
TIMESTAMP_HEADER = "X-Smsgw-Timestamp"
RETRY_STATUSES = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class StatusEvent:
    message_id: str
    tenant_id: str
    kind: str
    otp_id: str | None
    country: str
    status: str
    at: float
    route: str | None
    segments: int | None
    error_code: str | None
    error_reason: str | None
    phone_enc: bytes

    @classmethod
    def of(
        cls,
        rec: MessageRecord,
        status: str,
        at: float,
        *,
        route: str | None = None,
        segments: int | None = None,
        error_code: str | None = None,
        error_reason: str | None = None,
    ) -> StatusEvent:
        return cls(
            message_id=rec.id,
            tenant_id=rec.tenant_id,
            kind=rec.kind,
            otp_id=rec.otp_id,
            country=rec.country,
            status=status,
            at=at,
            route=route or rec.route,
            segments=segments or rec.segments,
            error_code=error_code,
            error_reason=error_reason,
            phone_enc=rec.phone_enc,
        )


class StatusSink(Protocol):
    def wants(self, tenant_id: str) -> bool:
        """False only when events of this tenant would surely be dropped (so none need be built)."""
        ...

    def emit(self, event: StatusEvent) -> None: ...


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Wait before try ``attempt + 1`` after ``attempt`` failed tries (1, 2, 4 … × base, capped)."""
    return float(min(base * 2 ** (attempt - 1), cap))


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a webhook (None: it can). Loopback, private and link-local literal
    addresses are refused unless the operator allows them (``webhooks.allow_private_hosts``)."""
    if len(url) > 2048:
        return "the URL is longer than 2048 characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL cannot be parsed"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "use an http(s) URL with a host"
    if parts.username or parts.password:
        return "credentials in the URL are not accepted; use the signature to authenticate us"
    if port == 0:
        return "the port is not valid"
    host = parts.hostname.lower()
    if allow_private:
        return None
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return f"{host} is a local host name"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
        return f"{host} is not a public address"
    return None


@dataclass(order=True)
class _Job:
    due: float  # loop time of the next try
    seq: int
    tenant_id: str
    event_id: str
    event: StatusEvent | None = None  # as emitted, until the runner builds ``payload`` and saves it
    payload: dict[str, Any] | None = None  # the body's fields but ``attempt`` and ``timestamp``
    attempt: int = 0  # tries made so far


class WebhookSender:
    """See the module docstring. ``start()`` runs it, ``drain()`` waits until nothing is left to send."""

    def __init__(
        self,
        stores: Stores,
        settings: WebhookSettings,
        instruments: Instruments,
        *,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 10.0,
        worker_id: str | None = None,
    ) -> None:
        self.stores = stores
        self.settings = settings
        self.m = instruments
        self.clock = clock
        self.cache_ttl = cache_ttl
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._unsaved: list[_Job] = []  # emitted, not yet in the outbox
        self._ids: set[str] = set()  # event ids held in memory (saved, not yet delivered or given up)
        self._ready: deque[_Job] = deque()
        self._later: list[_Job] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._cache: dict[str, tuple[float, Webhook | None]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._seq = 0
        self._dropped = 0
        self._runner: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ intake
    def wants(self, tenant_id: str) -> bool:
        hit = self._cache.get(tenant_id)
        return hit is None or hit[1] is not None or hit[0] <= self._loop_time()

    def emit(self, event: StatusEvent) -> None:
        if not self.wants(event.tenant_id):
            return  # a tenant known to have no webhook: nothing to queue
        if len(self._unsaved) >= 4 * self.settings.queue_limit:  # the store has not taken them for long
            self._dropped += 1
            self.m.webhook_deliveries.labels("dropped").inc()
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning(
                    "webhook outbox unreachable: status callbacks dropped", extra={"dropped": self._dropped}
                )
            return
        self._seq += 1
        self._unsaved.append(_Job(0.0, self._seq, event.tenant_id, secrets.token_hex(12), event))
        self._idle.clear()
        self._wake.set()

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    def invalidate(self, tenant_id: str) -> None:
        """The tenant's webhook changed (this process's API handled it; others see it after cache_ttl)."""
        self._cache.pop(tenant_id, None)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._runner = asyncio.create_task(self._run(), name="webhooks")
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="webhooks-sweep")

    async def drain(self, within: float = 10.0) -> bool:
        """Wait until every event this process holds was delivered or given up (retries included);
        False on timeout. Events waiting unclaimed in the outbox (beyond ``queue_limit``) come in with
        the next sweep."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    async def stop(self, grace: float = 2.0) -> None:
        """Give pending callbacks ``grace`` seconds, then stop; what is left stays in the outbox, its
        leases released, for the next process to deliver."""
        await self.drain(grace)
        for task in (self._runner, self._sweeper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for t in list(self._inflight):
            t.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._save()  # emitted meanwhile: written, so the next process sends them
        left = len(self._ready) + len(self._later) + len(self._unsaved)
        try:
            released = await self.stores.control.outbox_release(self.worker_id)
        except Exception:
            log.exception("webhook outbox leases not released; they run out by themselves")
            released = 0
        if left or released:
            log.info("stopping with status callbacks pending in the outbox", extra={"pending": released})
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ the runner
    def _pending(self) -> int:
        return len(self._unsaved) + len(self._ready) + len(self._later) + len(self._inflight)

    def _held(self) -> int:
        return len(self._ready) + len(self._later) + len(self._inflight)

    def _lease_until(self, due: float) -> float:
        return max(due, self.clock()) + self.settings.claim_lease_seconds

    async def _save(self) -> None:
        """Write what was emitted since the last call to the outbox (one transaction), then hold it for
        delivery; beyond ``queue_limit`` it is written unclaimed, for a sweep to take in later. If the
        store fails, the events are still delivered, from memory only (a crash would lose them)."""
        jobs, self._unsaved = self._unsaved, []
        if not jobs:
            return
        now = self.clock()
        room = max(self.settings.queue_limit - self._held(), 0)
        held, overflow = jobs[:room], jobs[room:]
        for job in jobs:
            assert job.event is not None
            job.payload = self._fields(job.event)
            job.event = None
        rows = [self._row(j, now) for j in held]
        try:
            if rows:
                await self.stores.control.outbox_add(
                    rows, worker=self.worker_id, lease_until=self._lease_until(now), now=now
                )
            if overflow:
                await self.stores.control.outbox_add(
                    [self._row(j, now) for j in overflow], worker=None, lease_until=0.0, now=now
                )
        except Exception:
            log.exception("webhook outbox write failed; delivering from memory")
            held = jobs
        self._ids.update(j.event_id for j in held)
        self._ready.extend(held)

    @staticmethod
    def _row(job: _Job, due: float) -> OutboxEvent:
        assert job.payload is not None
        return OutboxEvent(
            job.event_id, job.tenant_id, json.dumps(job.payload, separators=(",", ":")), job.attempt, due
        )

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("webhook outbox sweep failed")
            await asyncio.sleep(self.settings.sweep_seconds)

    async def sweep_once(self) -> int:
        """Take over events whose lease ran out (their process died, or they waited beyond
        ``queue_limit``), as many as there is room for; returns how many."""
        now = self.clock()
        await self.stores.control.outbox_renew(self.worker_id, now + self.settings.claim_lease_seconds)
        room = self.settings.queue_limit - self._held() - len(self._unsaved)
        if room <= 0:
            return 0
        got = await self.stores.control.outbox_claim(
            self.worker_id, now, self.settings.claim_lease_seconds, room
        )
        got = [ev for ev in got if ev.event_id not in self._ids]  # ours already (a lease that lapsed)
        loop_now = asyncio.get_running_loop().time()
        for ev in got:
            self._ids.add(ev.event_id)
            self._seq += 1
            job = _Job(
                loop_now + max(ev.due - now, 0.0),
                self._seq,
                ev.tenant_id,
                ev.event_id,
                None,
                json.loads(ev.payload),
                ev.attempt,
            )
            heapq.heappush(self._later, job)
        if got:
            log.info("webhook events taken over from the outbox", extra={"events": len(got)})
            self._idle.clear()
            self._wake.set()
        return len(got)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._unsaved:
                await self._save()
            now = loop.time()
            while self._later and self._later[0].due <= now:
                self._ready.append(heapq.heappop(self._later))
            while self._ready and len(self._inflight) < self.settings.concurrency:
                task = asyncio.create_task(self._deliver(self._ready.popleft()))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if not self._pending():
                self._idle.set()
            if self._unsaved:
                continue  # emitted while we saved: save them before sleeping
            self._wake.clear()
            timeout = None
            if self._later and len(self._inflight) < self.settings.concurrency:
                timeout = max(0.0, self._later[0].due - loop.time())
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery crashed", exc_info=task.exception())
        self._wake.set()

    async def _lookup(self, tenant_id: str) -> Webhook | None:
        loop_now = asyncio.get_running_loop().time()
        hit = self._cache.get(tenant_id)
        if hit is not None and hit[0] > loop_now:
            return hit[1]
        hook = await self.stores.control.get_webhook(tenant_id)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[tenant_id] = (loop_now + self.cache_ttl, hook)
        return hook

    def _fields(self, ev: StatusEvent) -> dict[str, Any]:
        """The body's fields but the per-try ones; the number only masked, error texts scrubbed (this is
        also what the outbox keeps)."""
        store = self.stores.for_id(ev.message_id)
        to_masked = None
        if store is not None:
            try:
                to_masked = mask_phone(store.keyring.open(ev.phone_enc, "phone").decode())
            except CryptoError:
                to_masked = None
        return {
            "type": "message.status",
            "message_id": ev.message_id,
            "otp_id": ev.otp_id,
            "kind": ev.kind,
            "status": ev.status,
            "at": ev.at,
            "country": ev.country,
            "to_masked": to_masked,
            "route": ev.route,
            "segments": ev.segments,
            "error_code": ev.error_code,
            "error_reason": scrub(ev.error_reason) if ev.error_reason else None,
        }

    def body(self, job: _Job, now: float) -> bytes:
        if job.payload is None:
            assert job.event is not None
            job.payload = self._fields(job.event)
        payload = {"event_id": job.event_id, **job.payload, "attempt": job.attempt + 1, "timestamp": int(now)}
        return json.dumps(payload, separators=(",", ":")).encode()

    async def _deliver(self, job: _Job) -> None:
        try:
            hook = await self._lookup(job.tenant_id)
        except Exception:
            log.warning("webhook look-up failed; retrying", exc_info=True)
            hook, result = None, "lookup_failed"
        else:
            if hook is None:
                await self._forget(job)  # this tenant has (no longer) a webhook
                return
            result = await self._post(hook, job)
        if result == "ok":
            self.m.webhook_deliveries.labels("ok").inc()
            await self._forget(job)
            return
        job.attempt += 1
        if result == "final" or job.attempt >= self.settings.max_attempts:
            self.m.webhook_deliveries.labels("failed").inc()
            log.warning(
                "status callback given up",
                extra={
                    "tenant": job.tenant_id,
                    "message_id": (job.payload or {}).get("message_id"),
                    "tries": job.attempt,
                },
            )
            await self._forget(job)
            return
        self.m.webhook_deliveries.labels("retry").inc()
        delay = retry_delay(job.attempt, self.settings.backoff_seconds, self.settings.max_backoff_seconds)
        due = self.clock() + delay
        try:
            mine = await self.stores.control.outbox_retry(
                job.event_id,
                attempt=job.attempt,
                due=due,
                worker=self.worker_id,
                lease_until=self._lease_until(due),
            )
        except Exception:
            log.exception("webhook outbox not updated; retrying from memory")
            mine = True
        if not mine:
            self._ids.discard(job.event_id)
            return  # our lease ran out and another process took the event over: it sends it
        job.due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._later, job)

    async def _forget(self, job: _Job) -> None:
        self._ids.discard(job.event_id)
        try:
            await self.stores.control.outbox_done([job.event_id])
        except Exception:
            log.exception("webhook outbox row not deleted; it may be sent again (same event_id)")

    async def _post(self, hook: Webhook, job: _Job) -> str:
        """ "ok", "retry" or "final"."""
        assert self._session is not None, "webhook sender not started"
        now = self.clock()
        body = self.body(job, now)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "smsgw-webhooks/1",
            SIGNATURE_HEADER: sign(hook.secret, body),
            TIMESTAMP_HEADER: str(int(now)),
        }
        try:
            async with self._session.post(
                hook.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
                allow_redirects=False,
            ) as resp:
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            log.info(
                "status callback failed: %s",
                type(e).__name__,
                extra={"tenant": hook.tenant_id, "attempt": job.attempt + 1},
            )
            return "retry"
        if 200 <= status < 300:
            return "ok"
        log.info(
            "status callback answered %s",
            status,
            extra={"tenant": hook.tenant_id, "attempt": job.attempt + 1},
        )
        return "retry" if status >= 500 or status in RETRY_STATUSES else "final"
