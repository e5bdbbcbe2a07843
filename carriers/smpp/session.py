"""The ESME side of one SMPP 3.4 session, with no I/O: bytes and the clock in, actions and bytes out.

The driver (:mod:`carriers.smpp.client`) owns the socket and the timers. It calls

* :meth:`Session.bind` once connected, :meth:`Session.submit` to send a submit_sm,
  :meth:`Session.unbind` to leave, each with the current time;
* :meth:`Session.receive_data` with what the socket read, :meth:`Session.tick` when
  :meth:`Session.next_deadline` is reached, :meth:`Session.connection_lost` when the socket closed;
* then writes :meth:`Session.data_to_send` to the socket and acts on the returned :data:`Action` list.

States and the inputs that move between them are one table, :data:`TRANSITIONS`; :func:`transition` is
the only place a state changes. Rules the table encodes:

1. A session is OPEN once connected; sending a bind makes it BINDING; the bind_resp decides BOUND_TX,
   BOUND_RX or BOUND_TRX (status 0) or CLOSED (refused).
2. Either side may unbind a bound session: UNBINDING until unbind_resp (ours) or until the driver
   closes the socket after answering the peer's unbind; then CLOSED.
3. A lost connection, an unframeable byte stream or an unanswered enquire_link/bind/unbind closes the
   session from any state. CLOSED is final: a reconnect makes a new Session.

A silent peer (the TCP connection open, nothing answering: a hung SMSC) is told apart from a lost
answer when ``stall_grace`` > 0: a bound session whose request passed its response deadline becomes
*stalled* — no new submit_sm (``can_submit`` is false, so the carrier reports down and new traffic
goes elsewhere) — and its outstanding requests wait ``stall_grace`` seconds more for the peer to come
back. Their late answers then settle them as usual (a submit_sm_resp that arrives late still gives the
message id its receipt will name); only after the grace do they fail and the connection close. With
``stall_grace`` = 0 a request fails at its response deadline.

Flow control lives here too: at most ``window`` submit_sm await their response; each request has a
response deadline; an idle bound session sends enquire_link every ``enquire_link_interval`` seconds;
ESME_RTHROTTLED / ESME_RMSGQFUL hold submissions back for an exponential backoff; an optional token
bucket caps submit_sm per second.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from carriers.smpp.codec import Framer, FramingError, SmppError, encode
from carriers.smpp.pdu import (
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RSYSERR,
    RESPONSE_FOR,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CommandId,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    InvalidPdu,
    Pdu,
    RetryClass,
    StatusInfo,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    is_response,
    status_info,
)


class SessionError(SmppError):
    """The caller asked for something the session's state does not allow (a driver bug)."""


# --------------------------------------------------------------------------- the state table


class State(enum.Enum):
    OPEN = "OPEN"
    BINDING = "BINDING"
    BOUND_TX = "BOUND_TX"
    BOUND_RX = "BOUND_RX"
    BOUND_TRX = "BOUND_TRX"
    UNBINDING = "UNBINDING"
    CLOSED = "CLOSED"


class Input(enum.Enum):
    SEND_BIND = "send bind_*"
    BOUND_AS_TX = "bind_transmitter_resp ok"
    BOUND_AS_RX = "bind_receiver_resp ok"
    BOUND_AS_TRX = "bind_transceiver_resp ok"
    BIND_REFUSED = "bind_*_resp error"
    SEND_UNBIND = "send unbind"
    RECV_UNBIND = "receive unbind"
    RECV_UNBIND_RESP = "receive unbind_resp"
    FAULT = "framing error / no response"
    CONNECTION_LOST = "connection lost"


_BOUND = (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)

TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.OPEN, Input.SEND_BIND): State.BINDING,
    (State.BINDING, Input.BOUND_AS_TX): State.BOUND_TX,
    (State.BINDING, Input.BOUND_AS_RX): State.BOUND_RX,
    (State.BINDING, Input.BOUND_AS_TRX): State.BOUND_TRX,
    (State.BINDING, Input.BIND_REFUSED): State.CLOSED,
    (State.OPEN, Input.SEND_UNBIND): State.CLOSED,  # nothing to unbind: just close
    (State.BINDING, Input.SEND_UNBIND): State.CLOSED,
    **{(s, Input.SEND_UNBIND): State.UNBINDING for s in _BOUND},
    **{(s, Input.RECV_UNBIND): State.UNBINDING for s in _BOUND},
    (State.UNBINDING, Input.RECV_UNBIND): State.UNBINDING,  # both sides unbinding at once
    (State.UNBINDING, Input.RECV_UNBIND_RESP): State.CLOSED,
    **{(s, Input.FAULT): State.CLOSED for s in State if s is not State.CLOSED},
    **{(s, Input.CONNECTION_LOST): State.CLOSED for s in State},
}


def transition(state: State, event: Input) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise SessionError(f"{event.value!r} is not allowed in state {state.value}") from None


def state_diagram() -> str:
    """The table as a Mermaid state diagram (docs/smpp.md embeds this text; a test keeps them equal)."""
    lines = ["stateDiagram-v2", "    [*] --> OPEN: connected"]
    for (src, ev), dst in TRANSITIONS.items():
        if ev is Input.CONNECTION_LOST and src is not State.CLOSED:
            continue  # drawn once below
        if ev is Input.FAULT:
            continue
        if src is State.CLOSED:
            continue
        lines.append(f"    {src.value} --> {dst.value}: {ev.value}")
    lines.append("    note right of CLOSED: from every state, on connection lost or fault")
    lines.append("    CLOSED --> [*]")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- actions for the driver


@dataclass(frozen=True, slots=True)
class BindSucceeded:
    state: State
    system_id: str  # the SMSC's system_id from bind_resp


@dataclass(frozen=True, slots=True)
class BindFailed:
    status: StatusInfo | None  # None when no bind_resp came (timeout, connection lost)
    reason: str


@dataclass(frozen=True, slots=True)
class SubmitDone:
    """A submit_sm got its answer: submit_sm_resp, or generic_nack (message_id empty)."""

    sequence: int
    status: StatusInfo
    message_id: str


@dataclass(frozen=True, slots=True)
class SubmitFailed:
    """A submit_sm will get no usable answer: timeout, unreadable response or connection lost.
    The SMSC may or may not have taken the message."""

    sequence: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeliverReceived:
    """A deliver_sm arrived (a receipt or a mobile-originated message); deliver_sm_resp is queued."""

    pdu: DeliverSm


@dataclass(frozen=True, slots=True)
class Throttled:
    until: float
    status: StatusInfo


@dataclass(frozen=True, slots=True)
class Notice:
    """Something odd the peer did that the session handled; worth a log line."""

    message: str


@dataclass(frozen=True, slots=True)
class Stalled:
    """The peer went silent past a response deadline (``on``), or answered again (not ``on``)."""

    on: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection now (after writing data_to_send())."""

    reason: str


Action = (
    BindSucceeded
    | BindFailed
    | SubmitDone
    | SubmitFailed
    | DeliverReceived
    | Throttled
    | Notice
    | Stalled
    | Close
)


# --------------------------------------------------------------------------- small policies


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; time comes in through ``now``."""

    def __init__(self, rate: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready_at(self, now: float) -> float:
        self._refill(now)
        if self.tokens >= 1.0 - 1e-9:  # float dust from the refill must not cost a whole retry
            return now
        return now + (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


class Backoff:
    """Exponential backoff with ±20 % jitter: initial, 2×, 4× … capped at ``maximum``."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("need 0 < initial <= maximum")
        self.initial, self.maximum = initial, maximum
        self.rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * 2.0**self.attempt)
        self.attempt += 1
        return min(self.maximum, base * self.rng.uniform(0.8, 1.2))

    def reset(self) -> None:
        self.attempt = 0


# --------------------------------------------------------------------------- the session


class BindMode(enum.Enum):
    TX = "tx"
    RX = "rx"
    TRX = "trx"


_BIND_PDU: dict[BindMode, type[BindTransmitter | BindReceiver | BindTransceiver]] = {
    BindMode.TX: BindTransmitter,
    BindMode.RX: BindReceiver,
    BindMode.TRX: BindTransceiver,
}
_BIND_RESP_INPUT = {
    BindTransmitterResp: Input.BOUND_AS_TX,
    BindReceiverResp: Input.BOUND_AS_RX,
    BindTransceiverResp: Input.BOUND_AS_TRX,
}
_MAX_SEQUENCE = 0x7FFFFFFF
_BIND_COMMANDS = frozenset({CommandId.BIND_TRANSMITTER, CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER})


@dataclass(slots=True)
class _Pending:
    command: CommandId
    deadline: float
    overdue: bool = False  # past its response deadline, waiting out the stall grace


class Session:
    def __init__(
        self,
        *,
        system_id: str,
        password: str,
        system_type: str = "",
        bind_mode: BindMode = BindMode.TRX,
        window: int = 10,
        response_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        throttle_backoff: tuple[float, float] = (0.2, 10.0),
        tps: float | None = None,
        now: float = 0.0,
        max_pdu: int | None = None,
        stall_grace: float = 0.0,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.system_id = system_id
        self.password = password
        self.system_type = system_type
        self.bind_mode = bind_mode
        self.window = window
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.throttle_backoff = throttle_backoff
        self.stall_grace = stall_grace
        self.state = State.OPEN
        self.peer_system_id = ""
        self._framer = Framer() if max_pdu is None else Framer(max_pdu)
        self._out: list[bytes] = []
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._overdue = 0  # requests past their deadline, waiting out the stall grace
        self._submits = 0
        self._last_rx = now
        self._enquire_pending = False
        self._throttle_until = 0.0
        self._throttle_level = 0
        self._bucket = TokenBucket(tps, now=now) if tps else None

    # ------------------------------------------------------------------ state

    def _apply(self, event: Input) -> None:
        self.state = transition(self.state, event)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def can_submit(self) -> bool:
        return self.state in (State.BOUND_TX, State.BOUND_TRX) and not self._overdue

    @property
    def stalled(self) -> bool:
        """The peer let a request pass its response deadline and has sent nothing since."""
        return self._overdue > 0

    @property
    def outstanding(self) -> int:
        """submit_sm sent and not yet answered."""
        return self._submits

    @property
    def free_slots(self) -> int:
        return self.window - self._submits

    @property
    def throttled_until(self) -> float:
        """The end of the current throttle backoff (in the past when not throttled)."""
        return self._throttle_until

    def ready_at(self, now: float) -> float | None:
        """When the next submit_sm may go: ``now`` or later (throttle backoff, TPS limit), or None
        when it cannot go at all (not bound for sending, or the window is full)."""
        if not self.can_submit or self._submits >= self.window:
            return None
        t = max(now, self._throttle_until)
        if self._bucket is not None:
            t = max(t, self._bucket.ready_at(now))
        return t

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has work: the oldest response deadline or the next enquire_link."""
        deadline: float | None = None
        if self._pending:
            deadline = min(p.deadline for p in self._pending.values())
        if self.state in _BOUND and not self._enquire_pending:
            t = self._last_rx + self.enquire_link_interval
            deadline = t if deadline is None else min(deadline, t)
        return deadline

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    # ------------------------------------------------------------------ requests we send

    def _next_sequence(self) -> int:
        while True:
            self._seq = self._seq % _MAX_SEQUENCE + 1
            if self._seq not in self._pending:
                return self._seq

    def _request(self, pdu: Pdu, now: float) -> None:
        data = encode(pdu)
        self._pending[pdu.sequence] = _Pending(pdu.COMMAND, now + self.response_timeout)
        self._out.append(data)

    def bind(self, now: float) -> None:
        """Send the bind for ``bind_mode``. ValueError (state unchanged) when the credentials do not fit
        their SMPP fields (system_id ≤ 15, password ≤ 8, system_type ≤ 12 ASCII characters)."""
        transition(self.state, Input.SEND_BIND)  # raises before anything is queued
        cls = _BIND_PDU[self.bind_mode]
        pdu = cls(
            sequence=self._next_sequence(),
            system_id=self.system_id,
            password=self.password,
            system_type=self.system_type,
        )
        self._request(pdu, now)
        self._apply(Input.SEND_BIND)

    def submit(self, pdu: SubmitSm, now: float) -> int:
        """Queue ``pdu`` (its sequence is assigned here) and return the sequence number.

        SessionError unless :meth:`ready_at` says it may go now; ValueError when the PDU cannot be
        encoded (nothing is queued then)."""
        ready = self.ready_at(now)
        if ready is None:
            raise SessionError(f"cannot submit in state {self.state.value} with {self._submits} outstanding")
        if ready > now:
            raise SessionError(f"submit not allowed before {ready:.3f} (throttled or over TPS)")
        seq = self._next_sequence()
        data = encode(pdu, sequence=seq)
        if self._bucket is not None:
            self._bucket.take(now)
        self._pending[seq] = _Pending(CommandId.SUBMIT_SM, now + self.response_timeout)
        self._submits += 1
        self._out.append(data)
        return seq

    def unbind(self, now: float) -> list[Action]:
        """Start leaving: unbind when bound (close follows its unbind_resp), else close at once."""
        if self.state in _BOUND:
            self._apply(Input.SEND_UNBIND)
            self._request(Unbind(sequence=self._next_sequence()), now)
            return []
        if self.state in (State.OPEN, State.BINDING):
            self._apply(Input.SEND_UNBIND)
            return [*self._fail_all("closing before the bind completed"), Close("closed before bound")]
        return []

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for seq, p in list(self._pending.items()):
            if p.deadline > now or seq not in self._pending:
                continue
            alive = self.state in _BOUND or self.state is State.UNBINDING
            if not p.overdue and self.stall_grace > 0 and alive:
                p.overdue = True  # the peer may only be stalled: wait for it a while longer
                p.deadline = now + self.stall_grace
                self._overdue += 1
                if self._overdue == 1:
                    actions.append(Stalled(True, f"no answer within {self.response_timeout:g}s"))
                continue
            del self._pending[seq]
            waited = self.response_timeout + (self.stall_grace if p.overdue else 0.0)
            if p.overdue:
                self._overdue -= 1
            if p.command is CommandId.SUBMIT_SM:
                self._submits -= 1
                actions.append(SubmitFailed(seq, f"no submit_sm_resp within {waited:g}s"))
            elif self.state is not State.CLOSED:
                what = p.command.name.lower()
                if p.command in _BIND_COMMANDS:
                    actions.append(BindFailed(None, f"no {what}_resp within {waited:g}s"))
                actions.extend(self._fault(f"no {what}_resp within {waited:g}s"))
                break
        if (
            self.state in _BOUND
            and not self._enquire_pending
            and now >= self._last_rx + self.enquire_link_interval
        ):
            self._enquire_pending = True
            self._request(EnquireLink(sequence=self._next_sequence()), now)
        return actions

    def _settled(self, pending: _Pending, actions: list[Action]) -> None:
        """A request left ``_pending`` with an answer: the peer is back when it was the last overdue one."""
        if pending.overdue:
            self._overdue -= 1
            if not self._overdue:
                actions.append(Stalled(False, "the peer answered again"))

    # ------------------------------------------------------------------ what the peer sends

    def receive_data(self, data: bytes, now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = []
        try:
            pdus = self._framer.feed(data)
            while pdus:
                self._last_rx = now
                for pdu in pdus:
                    self._receive(pdu, now, actions)
                    if self.closed:
                        return actions
                pdus = self._framer.feed(b"")
        except FramingError as e:
            actions.extend(self._fault(str(e)))
        return actions

    def connection_lost(self) -> list[Action]:
        if self.state is State.CLOSED and not self._pending:
            return []
        actions: list[Action] = []
        if self.state is State.BINDING:
            actions.append(BindFailed(None, "connection closed before bind_resp"))
        actions.extend(self._fail_all("connection lost before the submit_sm_resp"))
        self._apply(Input.CONNECTION_LOST)
        return actions

    def _fail_all(self, reason: str) -> list[Action]:
        failed: list[Action] = [
            SubmitFailed(seq, reason) for seq, p in self._pending.items() if p.command is CommandId.SUBMIT_SM
        ]
        self._pending.clear()
        self._submits = 0
        self._overdue = 0
        self._enquire_pending = False
        return failed

    def _fault(self, reason: str) -> list[Action]:
        actions = self._fail_all(f"connection reset: {reason}")
        self._apply(Input.FAULT)
        actions.append(Close(reason))
        return actions

    def _receive(self, pdu: Pdu | InvalidPdu, now: float, actions: list[Action]) -> None:
        if isinstance(pdu, InvalidPdu):
            self._receive_invalid(pdu, actions)
        elif is_response(pdu.COMMAND):
            self._receive_response(pdu, now, actions)
        elif isinstance(pdu, DeliverSm):
            if self.state in (State.BOUND_RX, State.BOUND_TRX, State.UNBINDING):
                self._out.append(encode(DeliverSmResp(sequence=pdu.sequence)))
                actions.append(DeliverReceived(pdu))
            else:
                self._out.append(encode(DeliverSmResp(sequence=pdu.sequence, status=ESME_RINVBNDSTS)))
                actions.append(Notice(f"deliver_sm in state {self.state.value} refused"))
        elif isinstance(pdu, EnquireLink):
            self._out.append(encode(EnquireLinkResp(sequence=pdu.sequence)))
        elif isinstance(pdu, Unbind):
            self._out.append(encode(UnbindResp(sequence=pdu.sequence)))
            if self.state in _BOUND or self.state is State.UNBINDING:
                self._apply(Input.RECV_UNBIND)
            actions.append(Close("the SMSC unbound"))
        else:
            self._out.append(encode(GenericNack(sequence=pdu.sequence, status=ESME_RINVCMDID)))
            actions.append(
                Notice(f"unexpected {pdu.COMMAND.name.lower()} from the SMSC answered generic_nack")
            )

    def _receive_invalid(self, pdu: InvalidPdu, actions: list[Action]) -> None:
        if not is_response(pdu.command_id):
            self._out.append(encode(GenericNack(sequence=pdu.sequence, status=pdu.nack_status)))
            actions.append(Notice(f"answered generic_nack to an invalid PDU: {pdu.reason}"))
            return
        pending = self._pending.pop(pdu.sequence, None)
        if pending is None:
            actions.append(Notice(f"ignored an invalid response: {pdu.reason}"))
            return
        self._settled(pending, actions)
        self._settle(
            pdu.sequence, pending, SubmitFailed(pdu.sequence, f"unreadable response: {pdu.reason}"), actions
        )

    def _settle(self, seq: int, pending: _Pending, outcome: Action, actions: list[Action]) -> None:
        if pending.command is CommandId.SUBMIT_SM:
            self._submits -= 1
            actions.append(outcome)
        elif pending.command is CommandId.ENQUIRE_LINK:
            self._enquire_pending = False
        elif pending.command is CommandId.UNBIND:
            self._apply(Input.RECV_UNBIND_RESP)
            actions.append(Close("unbound"))
        else:  # a bind whose answer was unusable
            actions.append(BindFailed(None, "unusable answer to bind"))
            actions.extend(self._fault("unusable answer to bind"))

    def _receive_response(self, pdu: Pdu, now: float, actions: list[Action]) -> None:
        seq = pdu.sequence
        pending = self._pending.get(seq)
        if pending is None:
            actions.append(Notice(f"{pdu.COMMAND.name.lower()} for unknown sequence {seq} ignored"))
            return
        if isinstance(pdu, GenericNack):
            del self._pending[seq]
            self._settled(pending, actions)
            info = status_info(pdu.status or ESME_RSYSERR)
            if pending.command in _BIND_COMMANDS:
                self._apply(Input.BIND_REFUSED)
                self._fail_all("bind refused")
                actions.append(BindFailed(info, f"bind answered generic_nack: {info.name} ({info.reason})"))
                actions.append(Close(f"bind refused: {info.name}"))
                return
            if pending.command is CommandId.SUBMIT_SM:
                self._note_status(info, now, actions)
            self._settle(seq, pending, SubmitDone(seq, info, ""), actions)
            return
        expected = RESPONSE_FOR.get(pending.command)
        if pdu.COMMAND is not expected:
            actions.append(
                Notice(f"{pdu.COMMAND.name.lower()} answered our {pending.command.name.lower()} (seq {seq})")
            )
            del self._pending[seq]
            self._settled(pending, actions)
            self._settle(seq, pending, SubmitFailed(seq, "mismatched response"), actions)
            return
        del self._pending[seq]
        self._settled(pending, actions)
        if isinstance(pdu, SubmitSmResp):
            info = status_info(pdu.status)
            self._note_status(info, now, actions)
            self._submits -= 1
            actions.append(SubmitDone(seq, info, pdu.message_id))
        elif isinstance(pdu, EnquireLinkResp):
            self._enquire_pending = False
        elif isinstance(pdu, UnbindResp):
            self._apply(Input.RECV_UNBIND_RESP)
            actions.append(Close("unbound"))
        elif isinstance(pdu, BindTransmitterResp | BindReceiverResp | BindTransceiverResp):
            if pdu.status == 0:
                self._apply(_BIND_RESP_INPUT[type(pdu)])
                self.peer_system_id = pdu.system_id
                actions.append(BindSucceeded(self.state, pdu.system_id))
            else:
                info = status_info(pdu.status)
                self._apply(Input.BIND_REFUSED)
                self._fail_all("bind refused")
                actions.append(BindFailed(info, f"bind refused: {info.name} ({info.reason})"))
                actions.append(Close(f"bind refused: {info.name}"))

    def _note_status(self, info: StatusInfo, now: float, actions: list[Action]) -> None:
        if info.retry is RetryClass.THROTTLED:
            initial, maximum = self.throttle_backoff
            delay = min(maximum, initial * 2.0**self._throttle_level)
            self._throttle_level += 1
            self._throttle_until = max(self._throttle_until, now + delay)
            actions.append(Throttled(self._throttle_until, info))
        elif info.retry is RetryClass.OK:
            self._throttle_level = 0


_T = TypeVar("_T")


def actions_of(kind: type[_T], actions: Iterable[Action]) -> list[_T]:
    """The actions of one kind (handy for drivers and tests)."""
    return [a for a in actions if isinstance(a, kind)]
