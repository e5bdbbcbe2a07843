"""Delivery receipts from deliver_sm: the TLV form, the appendix-B text form, and the ids they name."""

from __future__ import annotations

from carriers.base import ReceiptStatus
from carriers.smpp.pdu import DeliverSm, Tag, Tlv
from carriers.smpp.receipts import IssuedIds, parse_receipt, parse_receipt_text

SPEC_TEXT = (
    "id:0123456789 sub:001 dlvrd:001 submit date:2401021530 done date:2401021531 "
    "stat:DELIVRD err:000 Text:Your code is 555000"
)


def test_text_form_fields() -> None:
    assert parse_receipt_text(SPEC_TEXT) == {
        "id": "0123456789",
        "sub": "001",
        "dlvrd": "001",
        "submit_date": "2401021530",
        "done_date": "2401021531",
        "stat": "DELIVRD",
        "err": "000",
    }


def test_text_receipt_never_keeps_the_message_text() -> None:
    r = parse_receipt(DeliverSm(esm_class=0x04, short_message=SPEC_TEXT.encode()))
    assert r is not None
    assert (r.carrier_message_id, r.status, r.error_code) == ("0123456789", ReceiptStatus.DELIVERED, None)
    assert "555000" not in repr(r.raw)


def test_text_form_statuses_and_errors() -> None:
    cases = {
        "UNDELIV": ReceiptStatus.FAILED,
        "REJECTD": ReceiptStatus.FAILED,
        "EXPIRED": ReceiptStatus.EXPIRED,
        "DELETED": ReceiptStatus.FAILED,
        "UNKNOWN": ReceiptStatus.FAILED,
        "ACCEPTD": ReceiptStatus.ENROUTE,
        "ENROUTE": ReceiptStatus.ENROUTE,
        "delivrd": ReceiptStatus.DELIVERED,
    }
    for stat, expected in cases.items():
        text = f"id:abc sub:001 dlvrd:000 submit date:2401021530 done date:2401021531 stat:{stat} err:034"
        r = parse_receipt(DeliverSm(esm_class=0x04, short_message=text.encode()))
        assert r is not None and r.status is expected, stat
        assert r.error_code == (None if expected is ReceiptStatus.DELIVERED else "034")


def test_tlv_form() -> None:
    pdu = DeliverSm(
        esm_class=0x04,
        tlvs=(
            Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "AB12"),
            Tlv.u8(Tag.MESSAGE_STATE, 5),
            Tlv(Tag.NETWORK_ERROR_CODE, bytes([3, 0x00, 0x22])),
        ),
    )
    r = parse_receipt(pdu)
    assert r is not None
    assert (r.carrier_message_id, r.status, r.error_code) == ("AB12", ReceiptStatus.FAILED, "net3:34")
    assert r.raw["network_error_code"] == "030022"


def test_tlvs_win_over_the_text() -> None:
    pdu = DeliverSm(
        esm_class=0x04,
        short_message=b"id:TEXTID stat:UNDELIV err:001",
        tlvs=(Tlv.cstr(Tag.RECEIPTED_MESSAGE_ID, "TLVID"), Tlv.u8(Tag.MESSAGE_STATE, 2)),
    )
    r = parse_receipt(pdu)
    assert r is not None
    assert (r.carrier_message_id, r.status, r.error_code) == ("TLVID", ReceiptStatus.DELIVERED, None)


def test_text_in_message_payload_and_ucs2() -> None:
    payload = DeliverSm(esm_class=0x04, tlvs=(Tlv(Tag.MESSAGE_PAYLOAD, b"id:p1 stat:EXPIRED err:000"),))
    r = parse_receipt(payload)
    assert r is not None and (r.carrier_message_id, r.status) == ("p1", ReceiptStatus.EXPIRED)
    ucs2 = DeliverSm(esm_class=0x04, data_coding=8, short_message="id:u1 stat:DELIVRD".encode("utf-16-be"))
    r = parse_receipt(ucs2)
    assert r is not None and r.carrier_message_id == "u1"


def test_not_a_receipt() -> None:
    assert parse_receipt(DeliverSm(short_message=b"hello from a phone")) is None  # mobile-originated
    assert parse_receipt(DeliverSm(esm_class=0x04, short_message=b"stat:DELIVRD")) is None  # no id
    assert parse_receipt(DeliverSm(esm_class=0x04, short_message=b"id:x stat:WEIRD")) is None


def test_issued_ids_match_across_bases() -> None:
    ids = IssuedIds()
    ids.add("0000007B", now=0.0)  # hex in submit_sm_resp
    ids.add("456", now=0.0)
    ids.add("sim-9", now=0.0)
    assert ids.resolve("0000007B") == ("0000007B", True)
    assert ids.resolve("123") == ("0000007B", True)  # the receipt wrote 0x7B in decimal
    assert ids.resolve("1c8") == ("456", True)  # and back: 456 = 0x1C8
    assert ids.resolve("sim-9") == ("sim-9", True)
    assert ids.resolve("sim-10") == ("sim-10", False)
    assert ids.resolve("999") == ("999", False)


def test_issued_ids_forget_by_count_and_age() -> None:
    ids = IssuedIds(limit=3, ttl=100.0)
    for i in range(5):
        ids.add(f"id{i}", now=float(i))
    assert len(ids) == 3
    assert ids.resolve("id0")[1] is False and ids.resolve("id4")[1] is True
    ids.add("late", now=103.5)  # id2 (t=2) and id3 (t=3) are now older than 100 s
    assert [ids.resolve(f"id{i}")[1] for i in (2, 3, 4)] == [False, False, True]
    ids.add("A", now=200.0)
    assert ids.resolve("10") == ("A", True)
    assert len(ids) == 2  # "late" (103.5) is still within 100 s of 200
