"""The SMPP codec against PDUs written out octet by octet, fed with every split of the stream.

SAMPLE_BIND is the sample PDU of SMPP 3.4 section 3.2.2 (bind_transmitter, "SMPP3TEST"). The others
are transcribed by hand from the field tables of sections 4.1–4.7 and 5.3 (each field on its own line),
not produced by our encoder.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.smpp.codec import DEFAULT_MAX_PDU, Framer, FramingError, decode, encode
from carriers.smpp.pdu import (
    STATUSES,
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
    Pdu,
    RetryClass,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Tlv,
    Unbind,
    UnbindResp,
    status_info,
)


def h(text: str) -> bytes:
    """Hex octets as the specification prints them, spaces and newlines ignored."""
    return bytes.fromhex("".join(text.split()))


SAMPLE_BIND = h(
    """
    00 00 00 2F  00 00 00 02  00 00 00 00  00 00 00 01
    53 4D 50 50 33 54 45 53 54 00
    73 65 63 72 65 74 30 38 00
    53 55 42 4D 49 54 31 00
    00
    01
    01
    00
    """
)

EXAMPLES: list[tuple[bytes, Pdu]] = [
    (
        SAMPLE_BIND,
        BindTransmitter(
            sequence=1,
            system_id="SMPP3TEST",
            password="secret08",
            system_type="SUBMIT1",
            interface_version=0x00,
            addr_ton=1,
            addr_npi=1,
            address_range="",
        ),
    ),
    (
        # bind_transceiver "smsgw"/"secret", interface_version 0x34
        h(
            """
            00 00 00 22  00 00 00 09  00 00 00 00  00 00 00 02
            73 6D 73 67 77 00
            73 65 63 72 65 74 00
            00
            34 00 00
            00
            """
        ),
        BindTransceiver(sequence=2, system_id="smsgw", password="secret"),
    ),
    (
        # bind_transceiver_resp "SMSC" with the sc_interface_version TLV (0x0210, length 1, 0x34)
        h(
            """
            00 00 00 1A  80 00 00 09  00 00 00 00  00 00 00 02
            53 4D 53 43 00
            02 10 00 01 34
            """
        ),
        BindTransceiverResp(sequence=2, system_id="SMSC", tlvs=(Tlv(0x0210, b"\x34"),)),
    ),
    (
        # bind_receiver_resp refused with ESME_RINVPASWD: no body (section 4.1.4)
        h("00 00 00 10  80 00 00 01  00 00 00 0E  00 00 00 03"),
        BindReceiverResp(sequence=3, status=0x0E),
    ),
    (
        # submit_sm: alphanumeric "BrandX" to +4915123456789, registered_delivery 1, "Hi"
        h(
            """
            00 00 00 36  00 00 00 04  00 00 00 00  00 00 00 05
            00
            05 00 42 72 61 6E 64 58 00
            01 01 34 39 31 35 31 32 33 34 35 36 37 38 39 00
            00 00 00
            00
            00
            01 00 00 00
            02 48 69
            """
        ),
        SubmitSm(
            sequence=5,
            source_addr_ton=5,
            source_addr="BrandX",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="4915123456789",
            registered_delivery=1,
            short_message=b"Hi",
        ),
    ),
    (
        # submit_sm_resp with message_id "0000001"
        h("00 00 00 18  80 00 00 04  00 00 00 00  00 00 00 05  30 30 30 30 30 30 31 00"),
        SubmitSmResp(sequence=5, message_id="0000001"),
    ),
    (
        # submit_sm_resp ESME_RTHROTTLED (0x58), body omitted
        h("00 00 00 10  80 00 00 04  00 00 00 58  00 00 00 06"),
        SubmitSmResp(sequence=6, status=0x58),
    ),
    (
        # deliver_sm delivery receipt (esm_class 0x04), TLVs receipted_message_id "ab12" and
        # message_state DELIVERED (2), empty short_message
        h(
            """
            00 00 00 42  00 00 00 05  00 00 00 00  00 00 00 09
            00
            01 01 34 39 31 35 31 32 33 34 35 36 37 38 39 00
            05 00 42 72 61 6E 64 58 00
            04 00 00
            00
            00
            00 00 00 00
            00
            00 1E 00 05 61 62 31 32 00
            04 27 00 01 02
            """
        ),
        DeliverSm(
            sequence=9,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="4915123456789",
            dest_addr_ton=5,
            destination_addr="BrandX",
            esm_class=0x04,
            tlvs=(Tlv(Tag.RECEIPTED_MESSAGE_ID, b"ab12\0"), Tlv(Tag.MESSAGE_STATE, b"\x02")),
        ),
    ),
    (h("00 00 00 11  80 00 00 05  00 00 00 00  00 00 00 09  00"), DeliverSmResp(sequence=9)),
    (h("00 00 00 10  00 00 00 15  00 00 00 00  00 00 00 07"), EnquireLink(sequence=7)),
    (h("00 00 00 10  80 00 00 15  00 00 00 00  00 00 00 07"), EnquireLinkResp(sequence=7)),
    (h("00 00 00 10  00 00 00 06  00 00 00 00  00 00 00 08"), Unbind(sequence=8)),
    (h("00 00 00 10  80 00 00 06  00 00 00 00  00 00 00 08"), UnbindResp(sequence=8)),
    (h("00 00 00 10  80 00 00 00  00 00 00 03  00 00 00 0A"), GenericNack(sequence=10, status=3)),
]

STREAM = b"".join(raw for raw, _ in EXAMPLES)
EXPECTED = [pdu for _, pdu in EXAMPLES]


@pytest.mark.parametrize(("raw", "pdu"), EXAMPLES, ids=[type(p).__name__ for _, p in EXAMPLES])
def test_examples_decode_and_encode_byte_for_byte(raw: bytes, pdu: Pdu) -> None:
    assert decode(raw) == pdu
    assert encode(pdu) == raw


def test_spec_sample_fields() -> None:
    pdu = decode(SAMPLE_BIND)
    assert isinstance(pdu, BindTransmitter)
    assert (pdu.system_id, pdu.password, pdu.system_type) == ("SMPP3TEST", "secret08", "SUBMIT1")
    assert len(SAMPLE_BIND) == 0x2F


def test_feed_one_octet_at_a_time() -> None:
    framer = Framer()
    got: list[object] = []
    for i in range(len(STREAM)):
        got += framer.feed(STREAM[i : i + 1])
    assert got == EXPECTED
    assert framer.buffered == 0


def test_feed_every_two_way_split() -> None:
    for cut in range(len(STREAM) + 1):
        framer = Framer()
        got = framer.feed(STREAM[:cut]) + framer.feed(STREAM[cut:])
        assert got == EXPECTED, cut


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_feed_any_split(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    framer = Framer()
    got: list[object] = []
    for a, b in itertools.pairwise(bounds):
        got += framer.feed(STREAM[a:b])
    assert got == EXPECTED


def test_bad_length_is_a_clear_framing_error() -> None:
    framer = Framer()
    with pytest.raises(FramingError, match=r"command_length 8 is outside \[16, "):
        framer.feed(h("00 00 00 08 00 00 00 15 00 00 00 00"))
    with pytest.raises(FramingError):  # broken for good: nothing after it can be framed
        framer.feed(EXAMPLES[-1][0])


def test_oversized_length_refused_before_buffering_the_body() -> None:
    framer = Framer(max_pdu=1024)
    with pytest.raises(FramingError, match="outside"):
        framer.feed(h("00 10 00 00"))  # 1 MiB announced: refused on its first 4 octets
    assert framer.buffered == 0
    assert Framer().max_pdu == DEFAULT_MAX_PDU


def test_good_pdus_before_a_bad_length_are_returned_first() -> None:
    framer = Framer()
    good = EXAMPLES[-3][0] + EXAMPLES[-2][0]
    assert framer.feed(good + h("FF FF FF FF 00 00")) == [EXPECTED[-3], EXPECTED[-2]]
    assert framer.broken is not None
    with pytest.raises(FramingError):
        framer.feed(b"")


def test_buffer_holds_at_most_one_incomplete_pdu() -> None:
    framer = Framer()
    framer.feed(STREAM * 50 + STREAM[:20])
    assert framer.buffered == 20


def test_unknown_command_is_surfaced_not_fatal() -> None:
    framer = Framer()
    unknown = h("00 00 00 14  00 00 09 99  00 00 00 00  00 00 00 0B  DE AD BE EF")
    got = framer.feed(unknown + EXAMPLES[-5][0])
    assert isinstance(got[0], InvalidPdu)
    assert got[0].sequence == 0x0B
    assert got[0].reason == "unknown command_id 0x00000999"
    assert got[0].nack_status == 0x03  # ESME_RINVCMDID
    assert got[1] == EXPECTED[-5]


def test_malformed_body_is_surfaced_not_fatal() -> None:
    no_nul = h("00 00 00 15  80 00 00 04  00 00 00 00  00 00 00 05  41 42 43 44 45")
    bad = decode(no_nul)
    assert isinstance(bad, InvalidPdu)
    assert "message_id is not NUL-terminated" in bad.reason
    short_sm = h("00 00 00 14  00 00 00 05  00 00 00 00  00 00 00 05  00 01 01 41")
    assert isinstance(decode(short_sm), InvalidPdu)
    tlv_overrun = h("00 00 00 17  80 00 00 09  00 00 00 00  00 00 00 02  41 00 02 10 00 09 34")
    assert "runs past the end" in decode(tlv_overrun).reason  # type: ignore[union-attr]


def test_stray_nul_after_short_message_is_tolerated() -> None:
    raw = EXAMPLES[4][0]
    padded = (len(raw) + 1).to_bytes(4, "big") + raw[4:] + b"\0"
    assert decode(padded) == EXPECTED[4]


def test_encode_refuses_fields_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="system_id"):
        encode(BindTransceiver(system_id="x" * 16))
    with pytest.raises(ValueError):
        encode(SubmitSm(source_addr="Grüße"))
    with pytest.raises(ValueError, match="short_message"):
        encode(SubmitSm(short_message=b"x" * 255))


def test_status_table_is_data_with_retry_classes() -> None:
    assert status_info(0x58).retry is RetryClass.THROTTLED
    assert status_info(0x14).retry is RetryClass.THROTTLED
    assert status_info(0x08).retry is RetryClass.RETRY_SAME_ROUTE
    assert status_info(0x0B).retry is RetryClass.TRY_OTHER_ROUTE
    assert status_info(0x66).retry is RetryClass.PERMANENT
    assert status_info(0x0E).name == "ESME_RINVPASWD"
    assert status_info(0x401).name == "VENDOR_0x401"
    assert status_info(0x1234).retry is RetryClass.TRY_OTHER_ROUTE
    assert all(code == info.code and info.reason for code, info in STATUSES.items())


# --------------------------------------------------------------------------- round trips

ascii_str = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=15)
u8 = st.integers(min_value=0, max_value=255)
seq = st.integers(min_value=0, max_value=0x7FFFFFFF)
tlvs = st.lists(
    st.builds(Tlv, st.integers(min_value=0, max_value=0xFFFF), st.binary(max_size=40)), max_size=4
).map(tuple)

short_message_pdus = st.one_of(
    *[
        st.builds(
            cls,
            sequence=seq,
            service_type=ascii_str.map(lambda s: s[:5]),
            source_addr_ton=u8,
            source_addr_npi=u8,
            source_addr=ascii_str,
            dest_addr_ton=u8,
            dest_addr_npi=u8,
            destination_addr=ascii_str,
            esm_class=u8,
            protocol_id=u8,
            priority_flag=u8,
            schedule_delivery_time=ascii_str,
            validity_period=ascii_str,
            registered_delivery=u8,
            replace_if_present_flag=u8,
            data_coding=u8,
            sm_default_msg_id=u8,
            short_message=st.binary(max_size=254),
            tlvs=tlvs,
        )
        for cls in (SubmitSm, DeliverSm)
    ]
)
bind_pdus = st.one_of(
    *[
        st.builds(
            cls,
            sequence=seq,
            system_id=ascii_str,
            password=ascii_str.map(lambda s: s[:8]),
            system_type=ascii_str.map(lambda s: s[:12]),
            interface_version=u8,
            addr_ton=u8,
            addr_npi=u8,
            address_range=ascii_str,
        )
        for cls in (BindTransmitter, BindReceiver, BindTransceiver)
    ]
)
bind_resps = st.one_of(
    *[
        st.builds(cls, sequence=seq, system_id=ascii_str.filter(bool), tlvs=tlvs)
        for cls in (BindTransmitterResp, BindReceiverResp, BindTransceiverResp)
    ]
)
headers_only = st.one_of(
    *[
        st.builds(cls, sequence=seq, status=st.integers(min_value=0, max_value=0xFFFFFFFF))
        for cls in (EnquireLink, EnquireLinkResp, Unbind, UnbindResp, GenericNack)
    ]
)
resps = st.builds(SubmitSmResp, sequence=seq, message_id=ascii_str.filter(bool))
any_pdu = st.one_of(short_message_pdus, bind_pdus, bind_resps, headers_only, resps)


@given(any_pdu)
def test_decode_encode_round_trip(pdu: Pdu) -> None:
    raw = encode(pdu)
    assert int.from_bytes(raw[:4], "big") == len(raw)
    assert decode(raw) == pdu


@given(st.lists(any_pdu, min_size=1, max_size=6), st.data())
def test_stream_of_random_pdus_any_split(pdus: list[Pdu], data: st.DataObject) -> None:
    stream = b"".join(encode(p) for p in pdus)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=8))
    bounds = [0, *sorted(cuts), len(stream)]
    framer = Framer()
    got: list[object] = []
    for a, b in itertools.pairwise(bounds):
        got += framer.feed(stream[a:b])
    assert got == pdus
