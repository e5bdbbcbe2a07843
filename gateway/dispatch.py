"""Durable dispatch: accepted messages are committed first, then handed to carriers from here.

A request gets its 202 only after its message row is committed (status ``queued``). The request path
then calls :meth:`Dispatcher.notify` so the message usually leaves within the same millisecond; a
sweep finds whatever the fast path missed — messages accepted by a process that died, retries whose
time has come, and claims whose lease ran out. A claim (``queued → sending``) is a conditional
update, so two processes never submit the same message at once. The carrier gets our message id as
its client reference, so a resubmission after a crash between submit and bookkeeping is recognised
by carriers that de-duplicate (the sim-carrier does; SMPP has no such field: see docs/architecture.md).

Message lifecycle (one table, one transition): queued → sending → submitted → delivered | failed |
expired; sending → queued (retry on another route) | failed | expired.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from carriers.base import DeliveryReceipt, ReceiptStatus, Submission, SubmitOutcome, SubmitResult
from carriers.encoding import count_segments
from carriers.routing import Message
from gateway.config import DispatchSettings
from gateway.privacy.crypto import CryptoError
from gateway.routetable import RouteTable
from gateway.store.base import Store
from gateway.store.records import MessageRecord
from gateway.store.router import Stores
from gateway.webhooks import StatusEvent, StatusSink
from metrics.instruments import Instruments

log = logging.getLogger("smsgw.dispatch")

TRANSITIONS: dict[tuple[str, str], str] = {
    ("queued", "claim"): "sending",
    ("sending", "accepted"): "submitted",
    ("sending", "retry"): "queued",
    ("sending", "fail"): "failed",
    ("sending", "expire"): "expired",
    ("submitted", "delivered"): "delivered",
    ("submitted", "failed"): "failed",
    ("submitted", "expired"): "expired",
}


def transition(state: str, event: str) -> str:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(f"message cannot go from {state!r} on {event!r}") from None


Renderer = Callable[[MessageRecord], str]


def parse_tried(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """``"a,b!"`` → routes tried this round {a, b}; routes that may hold the message {b}."""
    names = [t for t in text.split(",") if t]
    return frozenset(t.rstrip("!") for t in names), frozenset(t[:-1] for t in names if t.endswith("!"))


def format_tried(tried: frozenset[str], unsafe: frozenset[str]) -> str:
    return ",".join(sorted(t + ("!" if t in unsafe else "") for t in tried | unsafe))


SentHook = Callable[[MessageRecord, str], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        stores: Stores,
        table: RouteTable,
        settings: DispatchSettings,
        instruments: Instruments,
        render: Renderer,
        *,
        dlr_url: Callable[[str], str | None],
        worker_id: str,
        on_sent: SentHook | None = None,
        status_sink: StatusSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stores = stores
        self.table = table
        self.settings = settings
        self.m = instruments
        self.render = render
        self.dlr_url = dlr_url
        self.worker_id = worker_id
        self.on_sent = on_sent
        self.on_failed: Callable[[MessageRecord, float], Awaitable[None]] | None = (
            None  # an OTP's receipt said it was not delivered (anti-fraud)
        )
        self.status_sink = status_sink
        self.clock = clock
        self._queue: asyncio.Queue[str | MessageRecord] = asyncio.Queue()
        self._queued: set[str] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._inflight = 0
        self._stopping = False
        self._idle = asyncio.Event()
        self._early_receipts: dict[tuple[str, str], tuple[DeliveryReceipt, float]] = {}
        self._receipts: list[tuple[str, DeliveryReceipt, asyncio.Future[None]]] = []
        self._receipt_tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ intake
    def lease(self, now: float) -> tuple[str, float]:
        """(worker, until) for a message the request path inserts already claimed by this process:
        it needs no claim write, and the sweep of any process takes it over if this one dies."""
        return self.worker_id, now + self.settings.claim_lease_seconds

    def notify(self, message: str | MessageRecord) -> None:
        """A message was committed: send it soon. A record inserted already claimed by this worker
        (``lease``) is handed over as is; an id is claimed first."""
        message_id = message if isinstance(message, str) else message.id
        if message_id not in self._queued:
            self._queued.add(message_id)
            self._queue.put_nowait(message)
            self.m.dispatch_queue.set(self._queue.qsize())

    async def sweep_once(self) -> int:
        """Queue every message that is due (crash recovery, retries, expired leases)."""
        found = 0
        for _, store in self.stores.all():
            due = await store.due_messages(self.clock(), 1000)
            for mid in due:
                self.notify(mid)
            found += len(due)
        return found

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        for i in range(self.settings.workers):
            self._workers.append(asyncio.create_task(self._work(), name=f"dispatch-{i}"))
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="dispatch-sweep")

    async def drain(self, within: float = 10.0) -> None:
        """Until nothing is queued or in flight (tests, shutdown), or ``within`` seconds pass."""
        try:
            async with asyncio.timeout(within):
                while (self._queue.qsize() and not self._stopping) or self._inflight:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            log.warning(
                "dispatch did not drain in time",
                extra={"queued": self._queue.qsize(), "inflight": self._inflight},
            )

    async def stop(self, grace: float = 5.0) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        self._stopping = True  # workers finish the message in hand and take no more
        self._queue.put_nowait("")  # wake one idle worker (each one passes it on as it leaves)
        await self.drain(grace)
        for t in self._workers:
            t.cancel()
        await asyncio.gather(
            *self._workers,
            *([self._sweeper] if self._sweeper else []),
            *self._receipt_tasks,
            return_exceptions=True,
        )
        self._workers.clear()
        released = await self.release_unsent()
        if released:
            log.info("released claims of messages not sent before stopping", extra={"released": released})

    async def release_unsent(self) -> int:
        """Messages still waiting in this process's queue at shutdown: those inserted already claimed by
        this worker go back to ``queued`` without a claim (durably, fenced by our worker id), so the
        next process's sweep sends them at once instead of after the lease. A submission cut off in
        flight (past the drain grace) keeps its claim: the lease's takeover resubmits it, and the
        carrier de-duplicates by our message id."""
        released = 0
        now = self.clock()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item == "":
                continue  # the stop wake-up
            self._queued.discard(item if isinstance(item, str) else item.id)
            if isinstance(item, str) or item.claimed_by != self.worker_id:
                continue  # not claimed by us: it is queued in the store already
            store = self.stores.for_id(item.id)
            if store is None:
                continue
            try:
                ok = await store.mark_retry(
                    item.id,
                    not_before=now,
                    tried_routes=item.tried_routes,
                    error_code=item.error_code or "",
                    error_reason=item.error_reason or "",
                    now=now,
                    worker=self.worker_id,
                )
            except Exception:
                log.exception("could not release a claim; its lease will", extra={"message_id": item.id})
                continue
            released += ok
        self.m.dispatch_queue.set(0)
        return released

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                log.exception("dispatch sweep failed")
            self._gc_receipts()
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    async def _work(self) -> None:
        while True:
            mid = await self._queue.get()
            if self._stopping:
                self._queue.put_nowait(mid)  # left for release_unsent (and the next worker's wake-up)
                return
            self._queued.discard(mid if isinstance(mid, str) else mid.id)
            self.m.dispatch_queue.set(self._queue.qsize())
            self._inflight += 1
            try:
                await self.process(mid)
            except Exception:
                log.exception(
                    "dispatch of a message failed; it stays queued for the sweep", extra={"message_id": mid}
                )
            finally:
                self._inflight -= 1
                if not self._inflight and (self._stopping or not self._queue.qsize()):
                    self._idle.set()

    # ------------------------------------------------------------------ one message
    async def process(self, message: str | MessageRecord) -> None:
        now = self.clock()
        message_id = message if isinstance(message, str) else message.id
        store = self.stores.for_id(message_id)
        if store is None:
            log.error("message id names an unknown region", extra={"message_id": message_id})
            return
        rec: MessageRecord | None
        if (
            isinstance(message, MessageRecord)
            and message.claimed_by == self.worker_id
            and (message.claimed_until or 0) > now + 1.0
        ):
            rec = message  # inserted already claimed by us, lease still good: no claim write needed
        else:
            rec = await store.claim(message_id, self.worker_id, now, self.settings.claim_lease_seconds)
        if rec is None:
            return  # someone else has it, or it is no longer queued
        if rec.not_before > now + 0.001:
            await store.mark_retry(
                message_id,
                not_before=rec.not_before,
                tried_routes=rec.tried_routes,
                error_code=rec.error_code or "",
                error_reason=rec.error_reason or "",
                now=now,
                worker=self.worker_id,
            )
            return
        if rec.expires_at is not None and now >= rec.expires_at:
            await self._final(rec, "expired", "otp_expired", "the OTP expired before a carrier took it")
            return
        try:
            text = self.render(rec)
            to = store.keyring.open(rec.phone_enc, "phone").decode()
        except CryptoError:
            log.error("message cannot be decrypted", extra={"message_id": rec.id})
            await self._final(rec, "failed", "decrypt_failed", "stored message cannot be decrypted")
            return
        tried, unsafe = parse_tried(rec.tried_routes)
        facts = Message(
            country=rec.country,
            e164=to,
            brand_class=rec.brand_class,
            sender=rec.sender,
            segments=count_segments(text),
            otp=rec.kind == "otp",
            key=rec.id,
        )
        choice = self.table.choose(facts, tried)
        route = choice.route
        if route is None:
            # no eligible route is up now: try again after a backoff (until attempts or the OTP run out)
            await self._retry(rec, tried, unsafe, "no_route", choice.reason, round_over=True)
            return
        carrier = self.table.carriers[route.carrier]
        self.table.acquire(route)
        t0 = time.perf_counter()
        try:
            result = await carrier.submit(
                Submission(
                    ref=rec.id, sender=rec.sender, to=to, text=text, dlr_url=self.dlr_url(route.carrier)
                )
            )
        except BaseException:
            # never expected (carriers answer every fault with an outcome): the breaker still hears of it,
            # and the message stays claimed until its lease runs out and the sweep takes it again
            self.table.record_submit(
                route, SubmitResult(SubmitOutcome.TEMPORARY, error_code="carrier_exception"), facts
            )
            raise
        self.m.submit_latency.labels(route.name).observe(time.perf_counter() - t0)
        self.table.record_submit(route, result, facts)
        now = self.clock()
        if result.outcome is SubmitOutcome.ACCEPTED and result.carrier_message_id:
            if not await self._record_submitted(
                store,
                rec,
                route=route.name,
                route_reason=choice.reason,
                carrier=route.carrier,
                carrier_message_id=result.carrier_message_id,
                segments=result.segments,
                now=now,
                worker=self.worker_id,
            ):
                # our lease ran out during the submission and another worker took the message over:
                # it reports the message (the carrier de-duplicates the second submission by our id)
                log.warning(
                    "message taken over while it was being submitted",
                    extra={"message_id": rec.id, "route": route.name},
                )
                self.m.dispatch_takeovers.inc()
                return
            self.m.messages.labels(rec.country, route.name, "submitted").inc()
            self._emit(rec, "submitted", now, route=route.name, segments=result.segments)
            if self.on_sent is not None:
                await self.on_sent(rec, route.name)
            early = self._early_receipts.pop((route.carrier, result.carrier_message_id), None)
            if early is not None:
                await self.on_receipt(route.carrier, early[0])
            return
        log.warning(
            "carrier did not accept",
            extra={
                "message_id": rec.id,
                "route": route.name,
                "outcome": result.outcome.value,
                "error_code": result.error_code,
            },
        )
        code = result.error_code or result.outcome.value
        if result.outcome is SubmitOutcome.PERMANENT:
            await self._final(
                rec,
                "failed",
                code,
                result.reason or "refused by carrier",
                route=route.name,
                route_reason=choice.reason,
            )
            return
        # fail over: the next eligible route right away; when none is left, a new round after a backoff.
        # A route that may have taken the message (the answer was lost) is never used again for it.
        self.m.route_failovers.labels(route.name, result.outcome.value).inc()
        tried = tried | {route.name}
        if result.maybe_accepted:
            unsafe = unsafe | {route.name}
        reason = f"{route.name}: {result.reason or result.outcome.value}"
        round_over = self.table.choose(facts, tried).route is None
        await self._retry(rec, tried, unsafe, code, reason, round_over=round_over)

    async def _record_submitted(self, store: Store, rec: MessageRecord, **fields: Any) -> bool:
        """The carrier holds the message: record that. A store that cannot write now (disk full,
        read-only, locked, connection lost) is retried while our claim lasts: giving up would leave
        the message claimed, and once the lease ran out the sweep would submit it a second time, a
        duplicate SMS wherever the carrier does not de-duplicate by our id (SMPP). Past the lease,
        the store's error goes up and the sweep's takeover is the fallback."""
        left = (rec.claimed_until or 0) - self.clock() - 1.0
        deadline = time.monotonic() + max(left, 0.0)
        delay = 0.05
        while True:
            try:
                return await store.mark_submitted(rec.id, **fields)
            except self.stores.unavailable:
                if time.monotonic() + delay >= deadline:
                    raise
                log.warning(
                    "the store cannot record a submission now; retrying while the claim lasts",
                    extra={"message_id": rec.id},
                )
                self.m.dispatch_bookkeeping_retries.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _store(self, rec: MessageRecord) -> Store:
        store = self.stores.for_id(rec.id)
        assert store is not None
        return store

    def _emit(self, rec: MessageRecord, status: str, at: float, **fields: Any) -> None:
        sink = self.status_sink
        if sink is not None and sink.wants(rec.tenant_id):
            sink.emit(StatusEvent.of(rec, status, at, **fields))

    async def _retry(
        self,
        rec: MessageRecord,
        tried: frozenset[str],
        unsafe: frozenset[str],
        code: str,
        reason: str,
        *,
        round_over: bool,
    ) -> None:
        now = self.clock()
        if rec.attempts >= self.settings.max_attempts:
            await self._final(rec, "failed", code, f"gave up after {rec.attempts} attempts; last: {reason}")
            return
        if round_over:
            delay = self.settings.retry_backoff_seconds * (2 ** max(rec.attempts - 1, 0))
            not_before = now + min(delay, 300.0)
            tried = unsafe  # a new round: every route is eligible again but those that may hold it
        else:
            not_before = now
        if rec.expires_at is not None and not_before >= rec.expires_at:
            await self._final(rec, "expired", code, f"{reason}; the OTP would expire before the next try")
            return
        await self._store(rec).mark_retry(
            rec.id,
            not_before=not_before,
            tried_routes=format_tried(tried, unsafe),
            error_code=code,
            error_reason=reason,
            now=now,
            worker=self.worker_id,
        )
        if not round_over:
            self.notify(rec.id)

    async def _final(
        self,
        rec: MessageRecord,
        status: str,
        code: str,
        reason: str,
        *,
        route: str | None = None,
        route_reason: str | None = None,
    ) -> None:
        await self._store(rec).mark_final(
            rec.id,
            status=status,
            error_code=code,
            error_reason=reason,
            now=self.clock(),
            route=route,
            route_reason=route_reason,
        )
        self.m.messages.labels(rec.country, route or "none", status).inc()
        self._emit(rec, status, self.clock(), route=route or rec.route, error_code=code, error_reason=reason)

    # ------------------------------------------------------------------ receipts
    def on_receipt(self, carrier: str, receipt: DeliveryReceipt) -> Awaitable[None]:
        """A receipt to apply. Those that arrive in one loop iteration are applied together, in one
        store write (a carrier posting hundreds at once costs one transaction, not one each); the
        answer resolves once this one was applied, or raises the store's error."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if receipt.status is ReceiptStatus.ENROUTE:
            done.set_result(None)
            return done
        self._receipts.append((carrier, receipt, done))
        if len(self._receipts) == 1:
            loop.call_soon(self._take_receipts)
        return done

    def _take_receipts(self) -> None:
        batch, self._receipts = self._receipts, []
        task = asyncio.get_running_loop().create_task(self._apply_receipts(batch))
        self._receipt_tasks.add(task)
        task.add_done_callback(self._receipt_tasks.discard)

    async def _apply_receipts(self, batch: list[tuple[str, DeliveryReceipt, asyncio.Future[None]]]) -> None:
        try:
            await self._apply_receipt_batch([(carrier, receipt) for carrier, receipt, _ in batch])
        except BaseException as e:
            for _, _, done in batch:
                if not done.done():
                    done.set_exception(e)
            if not isinstance(e, Exception):
                raise
        else:
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _apply_receipt_batch(self, batch: list[tuple[str, DeliveryReceipt]]) -> None:
        """Every receipt of the batch at once: the store's group commit makes them one transaction."""
        now = self.clock()
        found: list[MessageRecord | None] = [None] * len(batch)
        for _, store in self.stores.all():
            left = [i for i, rec in enumerate(found) if rec is None]
            if not left:
                break
            applied = await store.apply_receipts(
                [
                    (
                        batch[i][0],
                        batch[i][1].carrier_message_id,
                        batch[i][1].status.value,
                        batch[i][1].error_code,
                    )
                    for i in left
                ],
                now,
            )
            for i, rec in zip(left, applied, strict=True):
                found[i] = rec
        for (carrier, receipt), rec in zip(batch, found, strict=True):
            if rec is None:
                # it may have raced ahead of our own bookkeeping (an SMSC may even send it before its
                # submit_sm_resp): keep it briefly; the sweep drops it, logged, if nothing claims it
                log.info(
                    "receipt for a message id no store knows (yet); held for 60 s",
                    extra={"carrier": carrier, "carrier_message_id": receipt.carrier_message_id},
                )
                if len(self._early_receipts) < 100_000:
                    self._early_receipts[(carrier, receipt.carrier_message_id)] = (receipt, time.monotonic())
                continue
            status = receipt.status.value
            self.m.messages.labels(rec.country, rec.route or "none", status).inc()
            if rec.route:
                self.table.record_receipt(rec.route, rec.country, receipt.status)
            self._emit(rec, status, now, error_code=receipt.error_code)
            if (
                rec.kind == "otp"
                and receipt.status is not ReceiptStatus.DELIVERED
                and self.on_failed is not None
            ):
                await self.on_failed(rec, now)

    def _gc_receipts(self) -> None:
        limit = time.monotonic() - 60
        stale = [k for k, (_, t) in self._early_receipts.items() if t < limit]
        for k in stale:
            del self._early_receipts[k]
            log.info(
                "receipt for an unknown message id ignored",
                extra={"carrier": k[0], "carrier_message_id": k[1]},
            )


def status_view(rec: MessageRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "status": "queued" if rec.status == "sending" else rec.status,
        "route": rec.route,
        "route_reason": rec.route_reason,
        "carrier": rec.carrier,
        "segments": rec.segments,
        "error_code": rec.error_code,
        "error_reason": rec.error_reason,
        "attempts": rec.attempts,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
    }
