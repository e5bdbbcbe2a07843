"""The SMPP 3.4 side of ``smsgw sim-carrier``: a small asyncio SMSC on our own codec.

* binds any system_id/password (``smsgw``/``secret`` in the examples) unless
  :attr:`SmppSimOptions.system_id` / ``password`` are set; bind_transmitter, bind_receiver and
  bind_transceiver are all accepted;
* answers submit_sm with submit_sm_resp after ``latency_ms``; a fraction ``throttle_rate`` is answered
  ESME_RTHROTTLED and a fraction ``failure_rate`` ESME_RSYSERR (nothing is stored for those);
* hands each accepted message to ``on_submit(sender, to_e164, text)``, which stores it in the
  sim-carrier's inbox and returns its id. Concatenated segments (UDH 8- or 16-bit reference, or the
  sar_* TLVs) are reassembled first and make one inbox entry; each segment gets its own message id
  and the receipt names the first segment's, which is the id clients keep;
* after ``receipt_delay_ms``, for a fraction ``receipt_rate`` of the messages that asked for one,
  sends a delivery receipt as deliver_sm carrying both forms (receipted_message_id + message_state
  TLVs, and the appendix-B text), ``UNDELIV`` for a fraction ``undeliverable_rate``; on the submitting
  connection when it can receive, else on another receiving bind of the same system_id;
* answers enquire_link and unbind; a request it does not know gets generic_nack; a byte stream that
  cannot be framed resets the connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from carriers.encoding import ConcatInfo, decode_payload, parse_concat_udh
from carriers.smpp.codec import Framer, FramingError, encode
from carriers.smpp.pdu import (
    ESM_CLASS_DELIVERY_RECEIPT,
    ESM_CLASS_UDHI,
    ESME_RALYBND,
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVPASWD,
    ESME_RINVSYSID,
    ESME_RSUBMITFAIL,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    InvalidPdu,
    MessageState,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    UnbindResp,
    find_tlv,
    is_response,
)

log = logging.getLogger("smsgw.sim.smpp")

OnSubmit = Callable[[str, str, str], str]
"""(sender, to as E.164, text) → the inbox id of the stored message."""


@dataclass(frozen=True)
class SmppSimOptions:
    latency_ms: float = 0.0
    failure_rate: float = 0.0
    throttle_rate: float = 0.0
    receipt_rate: float = 1.0
    receipt_delay_ms: float = 50.0
    undeliverable_rate: float = 0.0
    seed: int | None = None
    system_id: str | None = None  # None: any system_id binds
    password: str | None = None  # None: any password
    reassembly_timeout: float = 60.0


@dataclass
class SimStats:
    binds: int = 0
    binds_refused: int = 0
    submit_sm: int = 0
    accepted: int = 0
    throttled: int = 0
    failed: int = 0
    messages: int = 0  # inbox entries (a reassembled long message counts once)
    receipts_sent: int = 0
    receipts_undeliverable: int = 0
    deliver_sm_resp: int = 0
    generic_nack_sent: int = 0
    framing_errors: int = 0


@dataclass
class _Partial:
    parts: dict[int, str]
    total: int
    first_id: str
    started: float
    want_receipt: bool
    conn: _SmscConnection


@dataclass
class _Receipt:
    message_id: str
    sender: str
    to: str
    submitted: float


@dataclass
class SmppSim:
    """The SMSC's shared state: options, inbox callback, open connections, partial long messages."""

    on_submit: OnSubmit
    options: SmppSimOptions = field(default_factory=SmppSimOptions)
    stats: SimStats = field(default_factory=SimStats)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.options.seed)
        self.connections: set[_SmscConnection] = set()
        self.partials: dict[tuple[str, str, str, int, int], _Partial] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None

    def next_id(self) -> str:
        return f"smpp-{next(self._ids)}"

    async def start(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _SmscConnection(self), host, port)
        return self._server

    async def close(self) -> None:
        """Stop listening and drop every connection (asyncio.Server.close leaves them open)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def receiver_for(self, system_id: str, preferred: _SmscConnection) -> _SmscConnection | None:
        if preferred.can_receive:
            return preferred
        for conn in self.connections:
            if conn.can_receive and conn.system_id == system_id:
                return conn
        return None

    def expire_partials(self, now: float) -> None:
        limit = now - self.options.reassembly_timeout
        for key in [k for k, p in self.partials.items() if p.started < limit]:
            partial = self.partials.pop(key)
            log.info(
                "incomplete concatenated message dropped",
                extra={"first_id": partial.first_id, "parts": len(partial.parts), "total": partial.total},
            )


async def start_smpp_server(
    host: str, port: int, on_submit: OnSubmit, options: SmppSimOptions
) -> asyncio.Server:
    """Listen for SMPP on host:port (see the module docstring for the behaviour)."""
    return await SmppSim(on_submit, options).start(host, port)


def _sender(ton: int, addr: str) -> str:
    """International numbers get their "+"; short codes and alphanumeric senders stay as sent."""
    return f"+{addr}" if ton == 1 and addr.isdigit() else addr


def _recipient(addr: str) -> str:
    """Recipients are E.164: digits get a "+" whatever the TON says."""
    return addr if addr.startswith("+") or not addr.isdigit() else f"+{addr}"


def _stamp(t: float) -> str:
    return time.strftime("%y%m%d%H%M", time.gmtime(t))


class _SmscConnection(asyncio.Protocol):
    def __init__(self, sim: SmppSim) -> None:
        self.sim = sim
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None
        self.bound: type[Pdu] | None = None
        self.system_id = ""
        self.seq = itertools.count(1)
        self.out: list[bytes] = []
        self.loop = asyncio.get_running_loop()
        self.timers: set[asyncio.TimerHandle] = set()

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.sim.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sim.connections.discard(self)
        self.transport = None
        for t in self.timers:
            t.cancel()
        self.timers.clear()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def can_receive(self) -> bool:
        return self.transport is not None and self.bound in (BindReceiver, BindTransceiver)

    @property
    def can_transmit(self) -> bool:
        return self.bound in (BindTransmitter, BindTransceiver)

    def data_received(self, data: bytes) -> None:
        try:
            pdus = self.framer.feed(data)
            while pdus:
                for pdu in pdus:
                    self.handle(pdu)
                pdus = self.framer.feed(b"")
        except FramingError as e:
            self.sim.stats.framing_errors += 1
            log.warning("SMPP framing error, connection reset: %s", e)
            self.flush()
            self.abort()
            return
        self.flush()

    def send(self, pdu: Pdu) -> None:
        self.out.append(encode(pdu))

    def send_now(self, pdu: Pdu) -> None:
        self.send(pdu)
        self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        def run() -> None:
            self.timers.discard(handle)
            fn()

        handle = self.loop.call_later(delay, run)
        self.timers.add(handle)

    # ------------------------------------------------------------------ PDUs

    def handle(self, pdu: Pdu | InvalidPdu) -> None:
        stats = self.sim.stats
        if isinstance(pdu, InvalidPdu):
            if not is_response(pdu.command_id):
                stats.generic_nack_sent += 1
                self.send(GenericNack(sequence=pdu.sequence, status=pdu.nack_status))
            return
        if isinstance(pdu, SubmitSm):
            self.submit(pdu)
        elif isinstance(pdu, DeliverSmResp):
            stats.deliver_sm_resp += 1
        elif isinstance(pdu, EnquireLink):
            self.send(EnquireLinkResp(sequence=pdu.sequence))
        elif isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver):
            self.bind(pdu)
        elif isinstance(pdu, Unbind):
            self.send(UnbindResp(sequence=pdu.sequence))
            self.flush()
            self.bound = None
            if self.transport is not None:
                self.transport.close()
        elif not is_response(pdu.COMMAND):
            stats.generic_nack_sent += 1
            self.send(GenericNack(sequence=pdu.sequence, status=ESME_RINVCMDID))

    def bind(self, pdu: BindTransmitter | BindReceiver | BindTransceiver) -> None:
        opts = self.sim.options
        resp: type[BindTransmitterResp | BindReceiverResp | BindTransceiverResp] = BindTransceiverResp
        if isinstance(pdu, BindTransmitter):
            resp = BindTransmitterResp
        elif isinstance(pdu, BindReceiver):
            resp = BindReceiverResp
        status = 0
        if self.bound is not None:
            status = ESME_RALYBND
        elif opts.system_id is not None and pdu.system_id != opts.system_id:
            status = ESME_RINVSYSID
        elif opts.password is not None and pdu.password != opts.password:
            status = ESME_RINVPASWD
        if status:
            self.sim.stats.binds_refused += 1
            self.send(resp(sequence=pdu.sequence, status=status))
            return
        self.bound = type(pdu)
        self.system_id = pdu.system_id
        self.sim.stats.binds += 1
        self.send(resp(sequence=pdu.sequence, system_id="smsgw-sim"))

    def submit(self, pdu: SubmitSm) -> None:
        sim, stats, opts = self.sim, self.sim.stats, self.sim.options
        stats.submit_sm += 1
        if not self.can_transmit:
            self.send(SubmitSmResp(sequence=pdu.sequence, status=ESME_RINVBNDSTS))
            return
        status, message_id = 0, ""
        if opts.throttle_rate and sim.rng.random() < opts.throttle_rate:
            status = ESME_RTHROTTLED
            stats.throttled += 1
        elif opts.failure_rate and sim.rng.random() < opts.failure_rate:
            status = ESME_RSYSERR
            stats.failed += 1
        else:
            try:
                message_id = self.accept(pdu)
            except ValueError as e:
                log.info("submit_sm refused: %s", e)
                status = ESME_RSUBMITFAIL
                stats.failed += 1
            except Exception:
                log.exception("the inbox refused a message")
                status = ESME_RSYSERR
                stats.failed += 1
        resp = SubmitSmResp(sequence=pdu.sequence, status=status, message_id=message_id)
        if opts.latency_ms > 0:
            self.later(opts.latency_ms / 1000, lambda: self.send_now(resp))
        else:
            self.send(resp)

    def accept(self, pdu: SubmitSm) -> str:
        """Store the message (or the segment) and return its message id."""
        sim, stats = self.sim, self.sim.stats
        sender = _sender(pdu.source_addr_ton, pdu.source_addr)
        to = _recipient(pdu.destination_addr)
        short_message = pdu.short_message
        if not short_message:
            payload_tlv = find_tlv(pdu.tlvs, Tag.MESSAGE_PAYLOAD)
            short_message = payload_tlv.value if payload_tlv is not None else b""
        concat: ConcatInfo | None = None
        if pdu.esm_class & ESM_CLASS_UDHI:
            concat, short_message = parse_concat_udh(short_message)
        else:
            ref = find_tlv(pdu.tlvs, Tag.SAR_MSG_REF_NUM)
            total = find_tlv(pdu.tlvs, Tag.SAR_TOTAL_SEGMENTS)
            seq = find_tlv(pdu.tlvs, Tag.SAR_SEGMENT_SEQNUM)
            if ref is not None and total is not None and seq is not None:
                concat = ConcatInfo(ref.as_int(), total.as_int(), seq.as_int())
        text = decode_payload(pdu.data_coding, short_message)
        want_receipt = bool(pdu.registered_delivery & 0x03)
        stats.accepted += 1
        now = time.time()
        if concat is None or concat.total <= 1:
            message_id = sim.on_submit(sender, to, text)
            stats.messages += 1
            if want_receipt:
                self.schedule_receipt(_Receipt(message_id, sender, to, now))
            return message_id
        if not 1 <= concat.seq <= concat.total:
            raise ValueError(f"segment {concat.seq} of {concat.total}")
        message_id = sim.next_id()
        key = (self.system_id, sender, to, concat.ref, concat.total)
        sim.expire_partials(now)
        partial = sim.partials.get(key)
        if partial is None:
            partial = sim.partials[key] = _Partial({}, concat.total, "", now, want_receipt, self)
        partial.parts[concat.seq] = text
        if concat.seq == 1:
            partial.first_id = message_id
            partial.want_receipt = want_receipt
            partial.conn = self
        if len(partial.parts) == partial.total:
            del sim.partials[key]
            full = "".join(partial.parts[i] for i in range(1, partial.total + 1))
            sim.on_submit(sender, to, full)
            stats.messages += 1
            if partial.want_receipt:
                partial.conn.schedule_receipt(_Receipt(partial.first_id, sender, to, now))
        return message_id

    # ------------------------------------------------------------------ receipts

    def schedule_receipt(self, r: _Receipt) -> None:
        sim = self.sim
        if sim.rng.random() >= sim.options.receipt_rate:
            return
        self.later(sim.options.receipt_delay_ms / 1000, lambda: self.send_receipt(r))

    def send_receipt(self, r: _Receipt) -> None:
        sim = self.sim
        conn = sim.receiver_for(self.system_id, self)
        if conn is None:
            log.info("receipt dropped: no receiving bind", extra={"message_id": r.message_id})
            return
        undeliverable = sim.options.undeliverable_rate and sim.rng.random() < sim.options.undeliverable_rate
        stat, err, state = (
            ("UNDELIV", "001", MessageState.UNDELIVERABLE)
            if undeliverable
            else (
                "DELIVRD",
                "000",
                MessageState.DELIVERED,
            )
        )
        text = (
            f"id:{r.message_id} sub:001 dlvrd:{'000' if undeliverable else '001'} "
            f"submit date:{_stamp(r.submitted)} done date:{_stamp(time.time())} stat:{stat} err:{err} text:"
        )
        tlvs = [Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, r.message_id), Tlv.u8(Tag.MESSAGE_STATE, state)]
        if undeliverable:
            tlvs.append(Tlv(Tag.NETWORK_ERROR_CODE, bytes([3, 0, 1])))
            sim.stats.receipts_undeliverable += 1
        src, dst = r.to.lstrip("+"), r.sender.lstrip("+")
        conn.send(
            DeliverSm(
                sequence=next(conn.seq),
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=src,
                dest_addr_ton=1 if r.sender.startswith("+") else 5,
                dest_addr_npi=1 if r.sender.startswith("+") else 0,
                destination_addr=dst,
                esm_class=ESM_CLASS_DELIVERY_RECEIPT,
                short_message=text.encode("ascii"),
                tlvs=tuple(tlvs),
            )
        )
        conn.flush()
        sim.stats.receipts_sent += 1
