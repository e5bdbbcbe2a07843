"""SmppCarrier: the :class:`carriers.base.Carrier` over SMPP 3.4, a thin asyncio driver of :class:`Session`.

What the driver owns (everything protocol-shaped is in the sans-IO session):

* sockets: one TCP connection per bind, each with its own :class:`Session`; ``bind_mode="trx"`` opens
  ``binds`` transceivers, ``"tx"`` opens ``binds`` transmitters plus one receiver for the receipts;
* the clock: one timer per connection, armed at :meth:`Session.next_deadline` (response timeouts,
  enquire_link keep-alive);
* reconnects: a dropped or refused bind is retried after an exponential backoff (``reconnect_backoff``
  = initial, maximum seconds, ±20 % jitter), reset once a bind succeeds;
* waiting: :meth:`SmppCarrier.submit` takes a window slot on the bind that can send soonest and waits
  (FIFO) while every window is full, the SMSC throttles, or the TPS limit holds it back — at most
  ``response_timeout`` seconds, then it gives up with TEMPORARY.

Every submit ends: ACCEPTED with the first segment's message id, or a non-ACCEPTED outcome. A
connection lost with submits outstanding resolves each of them as TEMPORARY with ``maybe_accepted``
(the SMSC may or may not have them; the gateway never sends them to this route again, and resubmits
them elsewhere: at-least-once). A peer that goes silent with the connection open (``stall_grace`` > 0)
stalls its bind instead: no new submits there, and the outstanding ones wait for the peer to answer
for up to ``stall_grace`` seconds past ``response_timeout`` (no duplicates when it comes back).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable
from typing import Any, cast

from carriers.base import (
    DeliveryReceipt,
    ReceiptCallback,
    Submission,
    SubmitOutcome,
    SubmitResult,
)
from carriers.encoding import split_message
from carriers.smpp.pdu import ESM_CLASS_UDHI, DeliverSm, RetryClass, SubmitSm
from carriers.smpp.receipts import IssuedIds, parse_receipt
from carriers.smpp.session import (
    Action,
    Backoff,
    BindFailed,
    BindMode,
    BindSucceeded,
    Close,
    DeliverReceived,
    Notice,
    Session,
    Stalled,
    SubmitDone,
    SubmitFailed,
    Throttled,
)

log = logging.getLogger("smsgw.carriers.smpp")

_OUTCOME = {
    RetryClass.THROTTLED: SubmitOutcome.THROTTLED,
    RetryClass.RETRY_SAME_ROUTE: SubmitOutcome.TEMPORARY,
    RetryClass.TRY_OTHER_ROUTE: SubmitOutcome.TEMPORARY,
    RetryClass.PERMANENT: SubmitOutcome.PERMANENT,
}

SubmitAnswer = SubmitDone | SubmitFailed


def address(value: str) -> tuple[int, int, str]:
    """(TON, NPI, address) for a sender or recipient: ``+`` E.164 → international/ISDN, other digits
    of 8 or fewer → a short code (unknown TON, ISDN), longer digit strings → international, anything
    else → alphanumeric."""
    if value.startswith("+") and value[1:].isdigit():
        return 1, 1, value[1:]
    if value.isdigit():
        return (0, 1, value) if len(value) <= 8 else (1, 1, value)
    return 5, 0, value


class _Connection(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        transport = cast(asyncio.Transport, transport)
        self.link.connected(transport)

    def data_received(self, data: bytes) -> None:
        self.link.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost(exc)


class _Link:
    """One bind: its connection, its session, the futures of its outstanding submits."""

    def __init__(self, carrier: SmppCarrier, index: int, mode: BindMode) -> None:
        self.carrier = carrier
        self.index = index
        self.mode = mode
        self.loop = asyncio.get_running_loop()
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.futures: dict[int, asyncio.Future[SubmitAnswer]] = {}
        initial, maximum = carrier.reconnect_backoff
        self.backoff = Backoff(initial, maximum, rng=carrier.rng)
        self.first_attempt = self.loop.create_future()
        self.closed: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.flush_pending = False
        self.last_bind_error = ""
        self.task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"{self.carrier.name}#{self.index}({self.mode.value})"

    # ------------------------------------------------------------------ connection loop

    async def run(self) -> None:
        c = self.carrier
        while not c.closing:
            self.closed = self.loop.create_future()
            try:
                async with asyncio.timeout(c.response_timeout):
                    await self.loop.create_connection(lambda: _Connection(self), c.host, c.port)
            except (OSError, TimeoutError) as e:
                self.last_bind_error = f"cannot connect to {c.host}:{c.port}: {e or type(e).__name__}"
                log.warning(
                    "SMPP connect failed: %s",
                    self.last_bind_error,
                    extra={"carrier": c.name, "bind": self.index},
                )
                self._attempt_done()
            else:
                await self.closed
            if c.closing:
                break
            await asyncio.sleep(self.backoff.next_delay())

    def _attempt_done(self) -> None:
        if not self.first_attempt.done():
            self.first_attempt.set_result(None)

    # ------------------------------------------------------------------ protocol callbacks

    def connected(self, transport: asyncio.Transport) -> None:
        c = self.carrier
        self.transport = transport
        now = self.loop.time()
        self.session = Session(
            system_id=c.system_id,
            password=c.password,
            system_type=c.system_type,
            bind_mode=self.mode,
            window=c.window,
            response_timeout=c.response_timeout,
            enquire_link_interval=c.enquire_link_interval,
            throttle_backoff=c.throttle_backoff,
            tps=c.tps if self.mode is not BindMode.RX else None,
            now=now,
            stall_grace=c.stall_grace,
        )
        try:
            self.session.bind(now)
        except ValueError as e:
            self.last_bind_error = f"credentials do not fit SMPP: {e}"
            log.error("SMPP bind not attempted: %s", self.last_bind_error, extra={"carrier": c.name})
            transport.close()
            return
        self._after([])

    def received(self, data: bytes) -> None:
        if self.session is not None:
            self._after(self.session.receive_data(data, self.loop.time()))

    def lost(self, exc: Exception | None) -> None:
        session, self.session = self.session, None
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if session is not None:
            self._handle(session.connection_lost())
            if not self.carrier.closing and (session.peer_system_id or exc is not None):
                log.warning(
                    "SMPP connection lost",
                    extra={"carrier": self.carrier.name, "bind": self.index, "error": str(exc or "")},
                )
        for fut in self.futures.values():  # belt and braces: the session resolved them all
            if not fut.done():
                fut.set_result(SubmitFailed(0, "connection lost"))
        self.futures.clear()
        self._attempt_done()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)
        self.carrier.update_up()
        self.carrier.wake(all_waiters=True)

    def _on_timer(self) -> None:
        self.timer = None
        if self.session is not None:
            self._after(self.session.tick(self.loop.time()))

    # ------------------------------------------------------------------ acting on the session

    def _after(self, actions: list[Action]) -> None:
        close = self._handle(actions)
        session, transport = self.session, self.transport
        if session is None or transport is None:
            return
        data = session.data_to_send()
        if data:
            transport.write(data)
        if close:
            transport.close()
            return
        deadline = session.next_deadline()
        if deadline is not None and (self.timer is None or deadline < self.timer_at):
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline

    def _handle(self, actions: list[Action]) -> bool:
        close = False
        c = self.carrier
        for a in actions:
            if isinstance(a, SubmitDone | SubmitFailed):
                fut = self.futures.pop(a.sequence, None)
                if isinstance(a, SubmitDone) and a.status.code == 0 and a.message_id:
                    c.issued.add(a.message_id, self.loop.time())
                if fut is not None and not fut.done():
                    fut.set_result(a)
                c.wake()
            elif isinstance(a, DeliverReceived):
                c.deliver(self, a.pdu)
            elif isinstance(a, Throttled):
                c.throttle_events += 1
                log.info(
                    "SMSC throttles: holding submissions for %.2fs",
                    a.until - self.loop.time(),
                    extra={"carrier": c.name, "bind": self.index, "status": a.status.name},
                )
                self.loop.call_at(a.until, c.wake, True)
            elif isinstance(a, BindSucceeded):
                self.backoff.reset()
                self.last_bind_error = ""
                log.info(
                    "SMPP bound",
                    extra={
                        "carrier": c.name,
                        "bind": self.index,
                        "state": a.state.value,
                        "smsc": a.system_id,
                    },
                )
                self._attempt_done()
                c.update_up()
                c.wake(all_waiters=True)
            elif isinstance(a, BindFailed):
                self.last_bind_error = a.reason
                log.error(
                    "SMPP bind refused by %s:%s for system_id %r: %s",
                    c.host,
                    c.port,
                    c.system_id,
                    a.reason,
                    extra={
                        "carrier": c.name,
                        "bind": self.index,
                        "status": a.status.name if a.status else None,
                    },
                )
            elif isinstance(a, Stalled):
                if a.on:
                    log.warning(
                        "SMPP peer silent (%s): outstanding submits wait up to %gs more; no new ones here",
                        a.reason,
                        c.stall_grace,
                        extra={"carrier": c.name, "bind": self.index},
                    )
                else:
                    log.info("SMPP peer answers again", extra={"carrier": c.name, "bind": self.index})
                c.update_up()
                c.wake(all_waiters=True)
            elif isinstance(a, Notice):
                log.warning("SMPP peer: %s", a.message, extra={"carrier": c.name, "bind": self.index})
            elif isinstance(a, Close):
                close = True
                if a.reason not in ("unbound",):
                    log.warning(
                        "SMPP connection reset: %s", a.reason, extra={"carrier": c.name, "bind": self.index}
                    )
        return close

    # ------------------------------------------------------------------ submitting

    def ready_at(self, now: float) -> float | None:
        return self.session.ready_at(now) if self.session is not None else None

    def send(self, pdu: SubmitSm) -> asyncio.Future[SubmitAnswer]:
        """Send now (the caller checked :meth:`ready_at`); the future resolves with the answer."""
        assert self.session is not None
        seq = self.session.submit(pdu, self.loop.time())
        fut: asyncio.Future[SubmitAnswer] = self.loop.create_future()
        self.futures[seq] = fut
        if not self.flush_pending:  # every submit of this loop iteration leaves in one write
            self.flush_pending = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self.flush_pending = False
        self._after([])

    def unbind(self) -> None:
        if self.session is not None:
            self._after(self.session.unbind(self.loop.time()))


class SmppCarrier:
    """A carrier reached over SMPP 3.4 (see the module docstring)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        system_id: str,
        password: str,
        system_type: str = "",
        bind_mode: str = "trx",
        binds: int = 1,
        window: int = 10,
        tps: float | None = None,
        enquire_link_interval: float = 30.0,
        response_timeout: float = 10.0,
        reconnect_backoff: tuple[float, float] = (0.5, 30.0),
        *,
        throttle_backoff: tuple[float, float] = (0.2, 10.0),
        close_grace: float = 5.0,
        stall_grace: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if bind_mode not in ("trx", "tx"):
            raise ValueError("bind_mode must be 'trx' or 'tx'")
        if binds < 1 or window < 1:
            raise ValueError("binds and window must be at least 1")
        self.name = name
        self.host = host
        self.port = port
        self.system_id = system_id
        self.password = password
        self.system_type = system_type
        self.bind_mode = bind_mode
        self.binds = binds
        self.window = window
        self.tps = tps or None
        self.enquire_link_interval = enquire_link_interval
        self.response_timeout = response_timeout
        self.reconnect_backoff = reconnect_backoff
        self.throttle_backoff = throttle_backoff
        self.close_grace = close_grace
        self.stall_grace = stall_grace
        self.rng = rng or random.Random()
        self.closing = False
        self.issued = IssuedIds()
        self.throttle_events = 0
        self.receipts_unmatched = 0
        self._links: list[_Link] = []
        self._senders: list[_Link] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_receipt: ReceiptCallback | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self._ref = self.rng.randrange(256)
        self._rr = 0
        self._up = asyncio.Event()

    # ------------------------------------------------------------------ Carrier protocol

    async def start(self, on_receipt: ReceiptCallback) -> None:
        """Open the binds and wait (at most ``response_timeout``) until each has bound or failed once,
        so :meth:`is_up` is meaningful when this returns."""
        self._on_receipt = on_receipt
        mode = BindMode.TRX if self.bind_mode == "trx" else BindMode.TX
        self._links = [_Link(self, i, mode) for i in range(self.binds)]
        self._senders = list(self._links)
        if mode is BindMode.TX:
            self._links.append(_Link(self, self.binds, BindMode.RX))
        for link in self._links:
            link.task = asyncio.create_task(link.run(), name=f"smpp-{link.label}")
        await asyncio.wait([link.first_attempt for link in self._links], timeout=self.response_timeout)

    def is_up(self) -> bool:
        return not self.closing and any(
            link.session is not None and link.session.can_submit for link in self._senders
        )

    async def wait_up(self) -> None:
        """Return once a bind can take submissions (use with ``asyncio.timeout``)."""
        await self._up.wait()

    def update_up(self) -> None:
        if self.is_up():
            self._up.set()
        else:
            self._up.clear()

    def status(self) -> dict[str, Any]:
        """Per-bind state for health pages and metrics (window occupancy, last bind error)."""
        return {
            "carrier": self.name,
            "up": self.is_up(),
            "throttle_events": self.throttle_events,
            "binds": [
                {
                    "bind": link.index,
                    "mode": link.mode.value,
                    "state": link.session.state.value if link.session else "CLOSED",
                    "outstanding": link.session.outstanding if link.session else 0,
                    "window": self.window,
                    "last_error": link.last_bind_error,
                }
                for link in self._links
            ],
        }

    async def submit(self, sub: Submission) -> SubmitResult:
        try:
            split = split_message(sub.text)
            src = address(sub.sender)
            dst = address(sub.to)
        except ValueError as e:
            return SubmitResult(SubmitOutcome.PERMANENT, error_code="invalid_message", reason=str(e))
        self._ref = (self._ref + 1) % 256
        esm_class = ESM_CLASS_UDHI if split.multipart else 0
        pdus = [
            SubmitSm(
                source_addr_ton=src[0],
                source_addr_npi=src[1],
                source_addr=src[2],
                dest_addr_ton=dst[0],
                dest_addr_npi=dst[1],
                destination_addr=dst[2],
                esm_class=esm_class,
                registered_delivery=1,
                data_coding=split.data_coding,
                short_message=sm,
            )
            for sm in split.with_udh(self._ref)
        ]
        futures: list[asyncio.Future[SubmitAnswer]] = []
        failure: SubmitResult | None = None
        link: _Link | None = None
        for pdu in pdus:
            link = await self._acquire(prefer=link)
            if link is None:
                failure = self._no_slot()
                break
            try:
                futures.append(link.send(pdu))
            except ValueError as e:  # a field does not fit SMPP (e.g. an 11+ character sender): nothing sent
                return SubmitResult(SubmitOutcome.PERMANENT, error_code="invalid_message", reason=str(e))
        answers = await self._answers(futures)
        return _result(answers, len(pdus), failure)

    def _no_slot(self) -> SubmitResult:
        """Why no slot could be had within response_timeout."""
        if self.closing:
            return SubmitResult(SubmitOutcome.TEMPORARY, error_code="closing", reason="carrier closing")
        if not self.is_up():
            return SubmitResult(SubmitOutcome.TEMPORARY, error_code="not_bound", reason="no SMPP bind up")
        now = asyncio.get_running_loop().time()
        if any(link.session is not None and link.session.throttled_until > now for link in self._senders):
            return SubmitResult(
                SubmitOutcome.THROTTLED, error_code="throttled", reason="held back by the SMSC's throttling"
            )
        return SubmitResult(
            SubmitOutcome.TEMPORARY, error_code="window_full", reason="no free window slot in time"
        )

    async def _answers(self, futures: list[asyncio.Future[SubmitAnswer]]) -> list[SubmitAnswer]:
        if not futures:
            return []
        # no timeout here: the session answers every submit_sm by response_timeout (SubmitFailed), and
        # a lost connection answers all of its outstanding ones
        if len(futures) == 1:
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    async def close(self) -> None:
        """Stop taking submissions, let the outstanding ones finish for up to ``close_grace`` seconds,
        unbind, close. Whatever is still outstanding then resolves as TEMPORARY."""
        if self.closing:
            return
        self.closing = True
        self.update_up()
        self.wake(all_waiters=True)
        outstanding = [f for link in self._links for f in link.futures.values()]
        if outstanding:
            await asyncio.wait(outstanding, timeout=self.close_grace)
        closed = [link.closed for link in self._links if link.session is not None and link.closed is not None]
        for link in self._links:
            link.unbind()
        if closed:
            await asyncio.wait(closed, timeout=min(2.0, self.close_grace))
        for link in self._links:
            if link.transport is not None:
                link.transport.abort()
        tasks = [link.task for link in self._links if link.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)

    # ------------------------------------------------------------------ window slots

    def wake(self, all_waiters: bool = False) -> None:
        """A slot may be free (or the world changed): wake the first waiter, or all of them."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                if not all_waiters:
                    return

    async def _acquire(self, prefer: _Link | None) -> _Link | None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.response_timeout
        while True:
            if self.closing:
                return None
            now = loop.time()
            best, best_at = self._pick(now, prefer)
            if best is not None and best_at <= now:
                return best
            if not self.is_up() or now >= give_up:
                return None
            wake_at = give_up if best is None else min(best_at, give_up)
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            timer = loop.call_at(wake_at, _resolve, fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.wake()  # pass on a wake-up we got but will not use
                raise
            finally:
                timer.cancel()

    def _pick(self, now: float, prefer: _Link | None) -> tuple[_Link | None, float]:
        if prefer is not None:
            at = prefer.ready_at(now)
            if at is not None and at <= now:
                return prefer, at
        best: _Link | None = None
        best_at = float("inf")
        n = len(self._senders)
        self._rr = (self._rr + 1) % n
        for i in range(n):
            link = self._senders[(self._rr + i) % n]
            at = link.ready_at(now)
            if at is not None and at < best_at:
                best, best_at = link, at
                if at <= now:
                    break
        return best, best_at

    # ------------------------------------------------------------------ receipts

    def deliver(self, link: _Link, pdu: DeliverSm) -> None:
        receipt = parse_receipt(pdu)
        if receipt is None:
            log.info(
                "deliver_sm that is not a usable delivery receipt ignored",
                extra={"carrier": self.name, "bind": link.index, "esm_class": pdu.esm_class},
            )
            return
        message_id, issued_here = self.issued.resolve(receipt.carrier_message_id)
        if not issued_here:
            self.receipts_unmatched += 1
            log.info(
                "delivery receipt for a message id this process did not submit; passed on to the gateway",
                extra={"carrier": self.name, "bind": link.index, "carrier_message_id": message_id},
            )
        raw = dict(receipt.raw)
        raw["issued_here"] = "1" if issued_here else "0"
        receipt = DeliveryReceipt(message_id, receipt.status, receipt.error_code, raw)
        if self._on_receipt is not None:
            self._spawn(self._on_receipt(self.name, receipt))

    def _spawn(self, aw: Awaitable[None]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._receipt_done)

    def _receipt_done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "receipt callback failed",
                exc_info=task.exception(),
                extra={"carrier": self.name},
            )


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _result(answers: list[SubmitAnswer], segments: int, failure: SubmitResult | None) -> SubmitResult:
    """One SubmitResult for all segments: accepted only when every segment was. ``maybe_accepted`` when
    the SMSC may hold (part of) the message: an answer was lost, or some segments were accepted."""
    some_taken = any(isinstance(a, SubmitDone) and a.status.code == 0 for a in answers)
    for a in answers:
        if isinstance(a, SubmitFailed):
            return SubmitResult(
                SubmitOutcome.TEMPORARY,
                segments=segments,
                error_code="no_response",
                reason=a.reason,
                maybe_accepted=True,
            )
    for a in answers:
        assert isinstance(a, SubmitDone)
        if a.status.code != 0:
            return SubmitResult(
                _OUTCOME.get(a.status.retry, SubmitOutcome.TEMPORARY),
                segments=segments,
                error_code=a.status.name,
                reason=a.status.reason,
                maybe_accepted=some_taken,
            )
        if not a.message_id:
            return SubmitResult(
                SubmitOutcome.TEMPORARY,
                segments=segments,
                error_code="no_message_id",
                reason="submit_sm_resp without a message id",
                maybe_accepted=True,
            )
    if failure is not None:
        return SubmitResult(
            failure.outcome,
            segments=segments,
            error_code=failure.error_code,
            reason=failure.reason,
            maybe_accepted=some_taken,
        )
    first = answers[0]
    assert isinstance(first, SubmitDone)
    return SubmitResult(SubmitOutcome.ACCEPTED, carrier_message_id=first.message_id, segments=segments)
