"""Delivery receipts from deliver_sm, in either form SMSCs use, and the ids they refer to.

1. TLV form (SMPP 3.4 section 5.2.12): ``receipted_message_id`` names the message, ``message_state``
   says what became of it, ``network_error_code`` (optional) why it failed.
2. Text form (SMPP 3.4 appendix B, de facto everywhere) in short_message or message_payload::

       id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...

When both are present the TLVs win (they are typed; the text is free-form). The ``text:`` field holds
the first characters of the message, which may be an OTP code: it is never kept.

:class:`IssuedIds` remembers the message ids this process got in submit_sm_resp, so that a receipt
whose id the SMSC wrote in the other base (hex in the response, decimal in the receipt, or back) is
reported under the id the gateway stored. A receipt for an id not issued here is still reported
(flagged ``issued_here=0`` in ``raw``): with several gateway processes on one system_id an SMSC may send
a receipt on any of their binds, and only the gateway's message store can tell whether it is known.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from carriers.base import DeliveryReceipt, ReceiptStatus
from carriers.encoding import DATA_CODING_UCS2, ucs2_decode
from carriers.smpp.pdu import DeliverSm, MessageState, Tag, find_tlv

_STAT: dict[str, ReceiptStatus] = {
    "DELIVRD": ReceiptStatus.DELIVERED,
    "EXPIRED": ReceiptStatus.EXPIRED,
    "DELETED": ReceiptStatus.FAILED,
    "UNDELIV": ReceiptStatus.FAILED,
    "ACCEPTD": ReceiptStatus.ENROUTE,
    "UNKNOWN": ReceiptStatus.FAILED,
    "REJECTD": ReceiptStatus.FAILED,
    "ENROUTE": ReceiptStatus.ENROUTE,
}
_STATE: dict[int, ReceiptStatus] = {
    MessageState.ENROUTE: ReceiptStatus.ENROUTE,
    MessageState.DELIVERED: ReceiptStatus.DELIVERED,
    MessageState.EXPIRED: ReceiptStatus.EXPIRED,
    MessageState.DELETED: ReceiptStatus.FAILED,
    MessageState.UNDELIVERABLE: ReceiptStatus.FAILED,
    MessageState.ACCEPTED: ReceiptStatus.ENROUTE,
    MessageState.UNKNOWN: ReceiptStatus.FAILED,
    MessageState.REJECTED: ReceiptStatus.FAILED,
}
_FIELD = re.compile(r"(?i)\b(id|sub|dlvrd|submit date|done date|stat|err):")
_TEXT = re.compile(r"(?i)\btext:")


def parse_receipt_text(text: str) -> dict[str, str]:
    """The fields of an appendix-B receipt text, keys lower-case (``submit date`` → ``submit_date``),
    without the ``text`` field. Fields may come in any order; unknown words are ignored."""
    head = _TEXT.split(text, maxsplit=1)[0]
    matches = list(_FIELD.finditer(head))
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(head)
        out[m.group(1).lower().replace(" ", "_")] = head[m.end() : end].strip()
    return out


def _body_text(pdu: DeliverSm) -> str:
    data = pdu.short_message
    if not data:
        payload = find_tlv(pdu.tlvs, Tag.MESSAGE_PAYLOAD)
        data = payload.value if payload is not None else b""
    if pdu.data_coding == DATA_CODING_UCS2:
        return ucs2_decode(data)
    # receipts are ASCII in practice whatever data_coding says; latin-1 never fails
    return data.decode("latin-1")


def parse_receipt(pdu: DeliverSm) -> DeliveryReceipt | None:
    """The receipt a deliver_sm carries, or None when it is not a usable receipt (a mobile-originated
    message, or a receipt without message id or status)."""
    id_tlv = find_tlv(pdu.tlvs, Tag.RECEIPTED_MESSAGE_ID)
    text = _body_text(pdu)
    fields = parse_receipt_text(text) if ("id:" in text.lower() or pdu.is_receipt) else {}
    if id_tlv is None and not fields.get("id"):
        return None
    message_id = id_tlv.as_str() if id_tlv is not None else fields["id"]
    status: ReceiptStatus | None = None
    state_tlv = find_tlv(pdu.tlvs, Tag.MESSAGE_STATE)
    if state_tlv is not None and state_tlv.value:
        status = _STATE.get(state_tlv.as_int())
        fields["message_state"] = str(state_tlv.as_int())
    if status is None and "stat" in fields:
        status = _STAT.get(fields["stat"].upper())
    if status is None or not message_id:
        return None
    error_code: str | None = None
    err = fields.get("err", "")
    if err and err.strip("0"):
        error_code = err
    net = find_tlv(pdu.tlvs, Tag.NETWORK_ERROR_CODE)
    if net is not None and len(net.value) == 3:
        fields["network_error_code"] = net.value.hex()
        code = int.from_bytes(net.value[1:], "big")
        if error_code is None and code:
            error_code = f"net{net.value[0]}:{code}"
    if status is ReceiptStatus.DELIVERED:
        error_code = None
    return DeliveryReceipt(carrier_message_id=message_id, status=status, error_code=error_code, raw=fields)


class IssuedIds:
    """Message ids from submit_sm_resp, kept for ``ttl`` seconds and at most ``limit`` of them."""

    def __init__(self, limit: int = 200_000, ttl: float = 72 * 3600.0) -> None:
        self.limit = limit
        self.ttl = ttl
        self._ids: OrderedDict[str, float] = OrderedDict()
        self._by_number: dict[tuple[int, int], str] = {}  # (base, value) -> id as issued

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str, now: float) -> None:
        self._ids[message_id] = now
        self._ids.move_to_end(message_id)
        for key in _numbers(message_id):
            self._by_number[key] = message_id
        while self._ids:
            oldest, t = next(iter(self._ids.items()))
            if len(self._ids) <= self.limit and t >= now - self.ttl:
                break
            del self._ids[oldest]
            for key in _numbers(oldest):
                if self._by_number.get(key) == oldest:
                    del self._by_number[key]

    def resolve(self, raw_id: str) -> tuple[str, bool]:
        """(the id to report, whether this process issued it). Tries the id as given, then the same
        number written in the other base: a decimal receipt id for a hexadecimal response id or back
        (case and leading zeros do not matter)."""
        if raw_id in self._ids:
            return raw_id, True
        for base, value in _numbers(raw_id):
            other = 16 if base == 10 else 10
            issued = self._by_number.get((other, value))
            if issued is not None:
                return issued, True
        return raw_id, False


def _numbers(message_id: str) -> list[tuple[int, int]]:
    """The numbers an id can be read as: (10, n) when all digits, (16, n) when all hex digits."""
    out: list[tuple[int, int]] = []
    if not message_id or len(message_id) > 32:
        return out
    if message_id.isdigit():
        out.append((10, int(message_id)))
    try:
        out.append((16, int(message_id, 16)))
    except ValueError:
        pass
    return out
