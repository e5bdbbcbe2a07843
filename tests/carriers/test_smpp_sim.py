"""The sim-carrier's SMPP side: the raw bytes the acceptance check sends, then SmppCarrier against it."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable

import pytest

from carriers.base import ReceiptStatus, Submission, SubmitOutcome
from carriers.sim.smpp_server import SmppSimOptions, start_smpp_server
from carriers.smpp.client import SmppCarrier
from carriers.smpp.codec import Framer, encode
from carriers.smpp.pdu import (
    DeliverSm,
    SubmitSm,
    Tag,
    Tlv,
    find_tlv,
)
from tests.carriers.smpp_peers import Receipts, RunningSim

StartSim = Callable[..., Awaitable[RunningSim]]
OTP = Submission(ref="m1", sender="BrandX", to="+4915123456789", text="Your code is 123456")


def pdu(cmd: int, seq: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), cmd, 0, seq) + body


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


async def read_pdu(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    head = await reader.readexactly(16)
    length, cmd, status, seq = struct.unpack(">IIII", head)
    return cmd, status, seq, await reader.readexactly(length - 16)


async def test_the_raw_bytes_of_the_acceptance_check(sim_smsc: StartSim) -> None:
    """Byte for byte what /work/shared/acceptance/carriers sends, and what it expects back."""
    running = await sim_smsc()
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(pdu(0x09, 1, cstr("smsgw") + cstr("secret") + cstr("") + bytes([0x34, 0, 0]) + cstr("")))
        cmd, status, seq, _ = await read_pdu(reader)
        assert (cmd, status, seq) == (0x80000009, 0, 1)
        text = b"Your code is 123456"
        body = (
            cstr("")
            + bytes([5, 0])
            + cstr("BrandX")
            + bytes([1, 1])
            + cstr("4915123456789")
            + bytes([0, 0, 0])
            + cstr("")
            + cstr("")
            + bytes([1, 0, 0, 0, len(text)])
            + text
        )
        writer.write(pdu(0x04, 2, body))
        cmd, status, seq, resp_body = await read_pdu(reader)
        assert (cmd, status, seq) == (0x80000004, 0, 2)
        message_id = resp_body.rstrip(b"\0").decode()
        cmd, status, seq, dlr = await read_pdu(reader)
        assert cmd == 0x00000005
        writer.write(struct.pack(">IIII", 17, 0x80000005, 0, seq) + b"\0")
        framer = Framer()
        (deliver,) = framer.feed(struct.pack(">IIII", 16 + len(dlr), cmd, status, seq) + dlr)
        assert isinstance(deliver, DeliverSm) and deliver.is_receipt
        id_tlv = find_tlv(deliver.tlvs, Tag.RECEIPTED_MESSAGE_ID)
        assert id_tlv is not None and id_tlv.as_str() == message_id
        assert f"id:{message_id} ".encode() in deliver.short_message
        assert b"stat:DELIVRD" in deliver.short_message
        assert (deliver.source_addr, deliver.destination_addr) == ("4915123456789", "BrandX")
        writer.write(pdu(0x06, 3))
        cmd, status, seq, _ = await read_pdu(reader)
        assert (cmd, status, seq) == (0x80000006, 0, 3)
        assert await reader.read() == b""  # closed after unbind_resp
    finally:
        writer.close()
    assert running.inbox.messages == [("BrandX", "+4915123456789", "Your code is 123456")]
    assert message_id == "sim-1"
    assert running.sim.stats.deliver_sm_resp == 1


async def test_submit_before_bind_unknown_commands_and_garbage(sim_smsc: StartSim) -> None:
    running = await sim_smsc()
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(encode(SubmitSm(sequence=1, destination_addr="49151", short_message=b"x")))
        assert await read_pdu(reader) == (0x80000004, 0x04, 1, b"")  # ESME_RINVBNDSTS
        writer.write(pdu(0x0999, 2, b"\1\2\3\4"))
        assert await read_pdu(reader) == (0x80000000, 0x03, 2, b"")  # generic_nack ESME_RINVCMDID
        writer.write(pdu(0x15, 3))
        assert await read_pdu(reader) == (0x80000015, 0, 3, b"")  # enquire_link_resp, even unbound
        writer.write(b"\x00\x00\x00\x04junk")
        assert await reader.read() == b""  # unframeable: connection reset
    finally:
        writer.close()
    assert running.sim.stats.framing_errors == 1
    assert running.inbox.messages == []


def carrier(running: RunningSim, **kw: object) -> SmppCarrier:
    opts: dict[str, object] = {"reconnect_backoff": (0.05, 0.5), "response_timeout": 3.0}
    opts.update(kw)
    password = str(opts.pop("password", "secret"))
    return SmppCarrier("sim", "127.0.0.1", running.port, "smsgw", password, **opts)  # type: ignore[arg-type]


async def test_client_against_the_sim(sim_smsc: StartSim, receipts: Receipts) -> None:
    running = await sim_smsc()
    c = carrier(running)
    await c.start(receipts)
    try:
        result = await c.submit(OTP)
        assert (result.outcome, result.carrier_message_id) == (SubmitOutcome.ACCEPTED, "sim-1")
        (r,) = await receipts.wait(1)
        assert (r.carrier_message_id, r.status) == ("sim-1", ReceiptStatus.DELIVERED)
        assert r.raw["message_state"] == "2" and r.raw["stat"] == "DELIVRD"
        assert running.inbox.messages == [("BrandX", "+4915123456789", OTP.text)]
    finally:
        await c.close()


@pytest.mark.parametrize(
    "text",
    ["Ihr Code: 123456. Preis 10€ [inkl.] " * 8, "Код подтверждения 123456 😀 " * 6],
    ids=["gsm", "ucs2"],
)
async def test_long_messages_are_reassembled(sim_smsc: StartSim, receipts: Receipts, text: str) -> None:
    running = await sim_smsc()
    c = carrier(running)
    await c.start(receipts)
    try:
        result = await c.submit(Submission("m2", "+14155550100", "+4915123456789", text))
        assert result.outcome is SubmitOutcome.ACCEPTED and result.segments >= 2
        assert running.inbox.messages == [("+14155550100", "+4915123456789", text)]  # one entry
        assert running.sim.stats.accepted == result.segments
        (r,) = await receipts.wait(1)
        assert r.carrier_message_id == result.carrier_message_id  # the first segment's id
    finally:
        await c.close()


async def test_sar_tlv_segments_are_reassembled(sim_smsc: StartSim) -> None:
    running = await sim_smsc(receipt_rate=0.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(pdu(0x02, 1, cstr("x") + cstr("y") + cstr("") + bytes([0x34, 0, 0]) + cstr("")))
        await read_pdu(reader)
        for seq, part in ((2, b"world"), (1, b"hello ")):  # out of order on purpose
            sar = (Tlv.u16(Tag.SAR_MSG_REF_NUM, 0x0102), Tlv.u8(Tag.SAR_TOTAL_SEGMENTS, 2))
            sm = SubmitSm(
                sequence=10 + seq,
                dest_addr_ton=1,
                destination_addr="4915123456789",
                short_message=part,
                tlvs=(*sar, Tlv.u8(Tag.SAR_SEGMENT_SEQNUM, seq)),
            )
            writer.write(encode(sm))
            cmd, status, _, _ = await read_pdu(reader)
            assert (cmd, status) == (0x80000004, 0)
    finally:
        writer.close()
    assert running.inbox.messages == [("", "+4915123456789", "hello world")]


async def test_credentials_when_configured(sim_smsc: StartSim, receipts: Receipts) -> None:
    running = await sim_smsc(system_id="smsgw", password="secret")
    bad = carrier(running, password="nope")
    await bad.start(receipts)
    try:
        assert not bad.is_up() and "ESME_RINVPASWD" in bad.status()["binds"][0]["last_error"]
    finally:
        await bad.close()
    good = carrier(running)
    await good.start(receipts)
    try:
        assert good.is_up()
    finally:
        await good.close()
    assert running.sim.stats.binds_refused >= 1 and running.sim.stats.binds == 1


@pytest.mark.parametrize(
    ("options", "outcome", "code"),
    [
        ({"throttle_rate": 1.0}, SubmitOutcome.THROTTLED, "ESME_RTHROTTLED"),
        ({"failure_rate": 1.0}, SubmitOutcome.TEMPORARY, "ESME_RSYSERR"),
    ],
    ids=["throttle", "failure"],
)
async def test_throttle_and_failure_knobs(
    sim_smsc: StartSim, receipts: Receipts, options: dict[str, float], outcome: SubmitOutcome, code: str
) -> None:
    running = await sim_smsc(**options)
    c = carrier(running, throttle_backoff=(0.01, 0.02))
    await c.start(receipts)
    try:
        result = await c.submit(OTP)
        assert (result.outcome, result.error_code, result.maybe_accepted) == (outcome, code, False)
        assert running.inbox.messages == []
    finally:
        await c.close()


async def test_undeliverable_receipts_and_latency(sim_smsc: StartSim, receipts: Receipts) -> None:
    running = await sim_smsc(undeliverable_rate=1.0, latency_ms=60.0)
    c = carrier(running)
    await c.start(receipts)
    try:
        t0 = time.perf_counter()
        result = await c.submit(OTP)
        assert time.perf_counter() - t0 >= 0.06
        assert result.outcome is SubmitOutcome.ACCEPTED
        (r,) = await receipts.wait(1)
        assert (r.status, r.error_code, r.raw["network_error_code"]) == (
            ReceiptStatus.FAILED,
            "001",
            "030001",
        )
    finally:
        await c.close()


@pytest.mark.parametrize("rate", [0.0, 1.0])
async def test_receipt_rate(sim_smsc: StartSim, receipts: Receipts, rate: float) -> None:
    # with no delay the receipt is written before the unbind_resp that ends close(): none can be late
    running = await sim_smsc(receipt_rate=rate, receipt_delay_ms=0.0)
    c = carrier(running)
    await c.start(receipts)
    try:
        assert (await c.submit(OTP)).outcome is SubmitOutcome.ACCEPTED
        assert (await c.submit(OTP)).outcome is SubmitOutcome.ACCEPTED
    finally:
        await c.close()
    assert len(receipts.got) == running.sim.stats.receipts_sent == int(2 * rate)


async def test_transmitters_get_their_receipts_on_the_receiver(
    sim_smsc: StartSim, receipts: Receipts
) -> None:
    running = await sim_smsc()
    c = carrier(running, bind_mode="tx", binds=2, window=5)
    await c.start(receipts)
    try:
        results = await asyncio.gather(
            *(c.submit(Submission(f"m{i}", "BrandX", f"+49151234567{i:02d}", "hi")) for i in range(40))
        )
        assert all(r.outcome is SubmitOutcome.ACCEPTED for r in results)
        got = await receipts.wait(40)
        assert sorted(r.carrier_message_id for r in got) == sorted(str(r.carrier_message_id) for r in results)
        assert len(running.inbox.messages) == 40
    finally:
        await c.close()


async def test_many_binds_keep_every_window_busy(sim_smsc: StartSim, receipts: Receipts) -> None:
    running = await sim_smsc(latency_ms=5.0)
    c = carrier(running, binds=4, window=10)
    await c.start(receipts)
    try:
        results = await asyncio.gather(
            *(c.submit(Submission(f"m{i}", "BrandX", "+4915123456789", f"n{i}")) for i in range(400))
        )
        assert all(r.outcome is SubmitOutcome.ACCEPTED for r in results)
        assert len({r.carrier_message_id for r in results}) == 400
        assert running.sim.stats.binds == 4
        await receipts.wait(400)
    finally:
        await c.close()


async def test_start_smpp_server(receipts: Receipts) -> None:
    inbox: list[str] = []

    def on_submit(sender: str, to: str, text: str) -> str:
        inbox.append(text)
        return f"id{len(inbox)}"

    server = await start_smpp_server("127.0.0.1", 0, on_submit, SmppSimOptions(receipt_rate=0.0))
    port = server.sockets[0].getsockname()[1]
    c = SmppCarrier("sim", "127.0.0.1", port, "smsgw", "secret", response_timeout=3.0)
    await c.start(receipts)
    try:
        assert (await c.submit(OTP)).carrier_message_id == "id1"
    finally:
        await c.close()
        server.close()
    assert inbox == [OTP.text]


async def test_tps_limit_per_bind(sim_smsc: StartSim, receipts: Receipts) -> None:
    running = await sim_smsc(receipt_rate=0.0)
    c = carrier(running, tps=20.0, window=10)
    await c.start(receipts)
    try:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(c.submit(OTP) for _ in range(10)))
        elapsed = time.perf_counter() - t0
    finally:
        await c.close()
    assert all(r.outcome is SubmitOutcome.ACCEPTED for r in results)
    assert elapsed >= 0.38  # a burst of 2, then 8 more at 20/s
    assert elapsed < 2.0


async def test_a_submit_held_back_by_throttling_gives_up_in_time(
    sim_smsc: StartSim, receipts: Receipts
) -> None:
    running = await sim_smsc(throttle_rate=1.0)
    c = carrier(running, response_timeout=0.3, throttle_backoff=(5.0, 10.0))
    await c.start(receipts)
    try:
        first = await c.submit(OTP)
        assert (first.outcome, first.error_code) == (SubmitOutcome.THROTTLED, "ESME_RTHROTTLED")
        t0 = time.perf_counter()
        second = await c.submit(OTP)  # the bind is held back for 5 s: wait no longer than 0.3 s
        assert time.perf_counter() - t0 < 1.0
        assert (second.outcome, second.error_code, second.maybe_accepted) == (
            SubmitOutcome.THROTTLED,
            "throttled",
            False,
        )
        assert running.sim.stats.submit_sm == 1  # the second one never left
    finally:
        await c.close()
