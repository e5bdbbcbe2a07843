"""SMPP 3.4 vocabulary as data: command ids, the command_status table, TLV tags and PDU dataclasses.

Nothing here does I/O or byte work: :mod:`carriers.smpp.codec` turns these values into octets and back,
following each class's ``LAYOUT`` (the mandatory body fields in wire order, as in the specification's
section 4 tables), then the TLVs. Every PDU has the header fields ``sequence`` and ``status``
(``command_status``); ``command_length`` is computed by the codec.

The command_status table (:data:`STATUSES`) feeds both retry decisions (:class:`RetryClass`) and the
human-readable reason a failed message carries, so the two can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar


class CommandId(enum.IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015


RESPONSE_BIT = 0x80000000


def is_response(command_id: int) -> bool:
    return bool(command_id & RESPONSE_BIT)


# --------------------------------------------------------------------------- command_status


class RetryClass(enum.Enum):
    """What a non-zero command_status means for the message that got it."""

    OK = "ok"
    RETRY_SAME_ROUTE = "retry-same-route"  # transient trouble at this SMSC; the message itself is fine
    TRY_OTHER_ROUTE = "try-other-route"  # this route will not take it; another one may
    PERMANENT = "permanent"  # the message itself is refused: no route will take it as it is
    THROTTLED = "throttled"  # we are sending too fast: slow down, then try again


@dataclass(frozen=True, slots=True)
class StatusInfo:
    code: int
    name: str
    reason: str
    retry: RetryClass


_R, _O, _P, _T = (
    RetryClass.RETRY_SAME_ROUTE,
    RetryClass.TRY_OTHER_ROUTE,
    RetryClass.PERMANENT,
    RetryClass.THROTTLED,
)

# SMPP 3.4 section 5.1.3, with the retry class we give each code.
_STATUS_ROWS: tuple[tuple[int, str, str, RetryClass], ...] = (
    (0x00, "ESME_ROK", "no error", RetryClass.OK),
    (0x01, "ESME_RINVMSGLEN", "message length is invalid", _O),
    (0x02, "ESME_RINVCMDLEN", "command length is invalid", _O),
    (0x03, "ESME_RINVCMDID", "invalid command id", _O),
    (0x04, "ESME_RINVBNDSTS", "incorrect bind status for the command", _R),
    (0x05, "ESME_RALYBND", "ESME already bound", _R),
    (0x06, "ESME_RINVPRTFLG", "invalid priority flag", _O),
    (0x07, "ESME_RINVREGDLVFLG", "invalid registered delivery flag", _O),
    (0x08, "ESME_RSYSERR", "system error at the SMSC", _R),
    (0x0A, "ESME_RINVSRCADR", "invalid source address (sender)", _O),
    (0x0B, "ESME_RINVDSTADR", "invalid destination address", _O),
    (0x0C, "ESME_RINVMSGID", "message id is invalid", _O),
    (0x0D, "ESME_RBINDFAIL", "bind failed", _O),
    (0x0E, "ESME_RINVPASWD", "invalid password", _O),
    (0x0F, "ESME_RINVSYSID", "invalid system id", _O),
    (0x11, "ESME_RCANCELFAIL", "cancel_sm failed", _O),
    (0x13, "ESME_RREPLACEFAIL", "replace_sm failed", _O),
    (0x14, "ESME_RMSGQFUL", "message queue full at the SMSC", _T),
    (0x15, "ESME_RINVSERTYP", "invalid service type", _O),
    (0x33, "ESME_RINVNUMDESTS", "invalid number of destinations", _O),
    (0x34, "ESME_RINVDLNAME", "invalid distribution list name", _O),
    (0x40, "ESME_RINVDESTFLAG", "invalid destination flag", _O),
    (0x42, "ESME_RINVSUBREP", "invalid submit-with-replace request", _O),
    (0x43, "ESME_RINVESMCLASS", "invalid esm_class (e.g. UDH not accepted)", _O),
    (0x44, "ESME_RCNTSUBDL", "cannot submit to a distribution list", _O),
    (0x45, "ESME_RSUBMITFAIL", "submit_sm failed", _O),
    (0x48, "ESME_RINVSRCTON", "invalid source address TON", _O),
    (0x49, "ESME_RINVSRCNPI", "invalid source address NPI", _O),
    (0x50, "ESME_RINVDSTTON", "invalid destination address TON", _O),
    (0x51, "ESME_RINVDSTNPI", "invalid destination address NPI", _O),
    (0x53, "ESME_RINVSYSTYP", "invalid system_type", _O),
    (0x54, "ESME_RINVREPFLAG", "invalid replace_if_present flag", _O),
    (0x55, "ESME_RINVNUMMSGS", "invalid number of messages", _O),
    (0x58, "ESME_RTHROTTLED", "throttled: message rate limit exceeded", _T),
    (0x61, "ESME_RINVSCHED", "invalid scheduled delivery time", _O),
    (0x62, "ESME_RINVEXPIRY", "invalid validity period", _O),
    (0x63, "ESME_RINVDFTMSGID", "predefined message invalid or not found", _O),
    (0x64, "ESME_RX_T_APPN", "receiver temporary application error", _R),
    (0x65, "ESME_RX_P_APPN", "receiver permanent application error", _P),
    (0x66, "ESME_RX_R_APPN", "receiver rejected the message", _P),
    (0x67, "ESME_RQUERYFAIL", "query_sm failed", _O),
    (0xC0, "ESME_RINVOPTPARSTREAM", "error in the optional part of the PDU", _O),
    (0xC1, "ESME_ROPTPARNOTALLWD", "optional parameter not allowed", _O),
    (0xC2, "ESME_RINVPARLEN", "invalid parameter length", _O),
    (0xC3, "ESME_RMISSINGOPTPARAM", "expected optional parameter missing", _O),
    (0xC4, "ESME_RINVOPTPARAMVAL", "invalid optional parameter value", _O),
    (0xFE, "ESME_RDELIVERYFAILURE", "delivery failure", _O),
    (0xFF, "ESME_RUNKNOWNERR", "unknown error", _O),
)

STATUSES: dict[int, StatusInfo] = {row[0]: StatusInfo(*row) for row in _STATUS_ROWS}
STATUS_BY_NAME: dict[str, StatusInfo] = {s.name: s for s in STATUSES.values()}

ESME_ROK = 0x00
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RSUBMITFAIL = 0x45
ESME_RTHROTTLED = 0x58


def status_info(code: int) -> StatusInfo:
    """The table row for ``code``; vendor-specific (0x400–0x4FF) and unknown codes get a generic row
    classed try-other-route, so an unfamiliar SMSC error never stalls a message on one route."""
    known = STATUSES.get(code)
    if known is not None:
        return known
    if 0x400 <= code <= 0x4FF:
        return StatusInfo(code, f"VENDOR_0x{code:X}", f"SMSC vendor-specific error 0x{code:X}", _O)
    return StatusInfo(code, f"STATUS_0x{code:X}", f"unknown command_status 0x{code:X}", _O)


# --------------------------------------------------------------------------- TLVs


class Tag(enum.IntEnum):
    """TLV tags this package reads or writes (any other tag is kept as raw bytes)."""

    RECEIPTED_MESSAGE_ID = 0x001E  # C-octet string
    USER_MESSAGE_REFERENCE = 0x0204  # u16
    SAR_MSG_REF_NUM = 0x020C  # u16
    SAR_TOTAL_SEGMENTS = 0x020E  # u8
    SAR_SEGMENT_SEQNUM = 0x020F  # u8
    SC_INTERFACE_VERSION = 0x0210  # u8
    NETWORK_ERROR_CODE = 0x0423  # 3 octets: network type, error code (u16)
    MESSAGE_PAYLOAD = 0x0424  # octets
    MESSAGE_STATE = 0x0427  # u8


class MessageState(enum.IntEnum):
    """Values of the message_state TLV (SMPP 3.4 section 5.2.28)."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes

    @classmethod
    def u8(cls, tag: int, v: int) -> Tlv:
        return cls(tag, bytes([v]))

    @classmethod
    def u16(cls, tag: int, v: int) -> Tlv:
        return cls(tag, v.to_bytes(2, "big"))

    @classmethod
    def cstr(cls, tag: int, s: str) -> Tlv:
        return cls(tag, s.encode("ascii") + b"\0")

    def as_int(self) -> int:
        return int.from_bytes(self.value, "big")

    def as_str(self) -> str:
        return self.value.split(b"\0", 1)[0].decode("latin-1")


def find_tlv(tlvs: tuple[Tlv, ...], tag: int) -> Tlv | None:
    for t in tlvs:
        if t.tag == tag:
            return t
    return None


# --------------------------------------------------------------------------- PDUs


class F(enum.Enum):
    """Kinds of mandatory body fields."""

    CSTR = "C-octet string"  # NUL-terminated ASCII, at most ``size`` octets including the NUL
    U8 = "1-octet integer"
    SM = "sm_length + short_message"  # a u8 length then that many octets


Layout = tuple[tuple[str, F, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PduBase:
    COMMAND: ClassVar[CommandId]
    LAYOUT: ClassVar[Layout] = ()
    BODY_OPTIONAL: ClassVar[bool] = False  # a response may omit its body when status != 0
    HAS_TLVS: ClassVar[bool] = False

    sequence: int = 0
    status: int = 0


_BIND_LAYOUT: Layout = (
    ("system_id", F.CSTR, 16),
    ("password", F.CSTR, 9),
    ("system_type", F.CSTR, 13),
    ("interface_version", F.U8, 1),
    ("addr_ton", F.U8, 1),
    ("addr_npi", F.U8, 1),
    ("address_range", F.CSTR, 41),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bind(PduBase):
    LAYOUT: ClassVar[Layout] = _BIND_LAYOUT
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitter(_Bind):
    COMMAND: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiver(_Bind):
    COMMAND: ClassVar[CommandId] = CommandId.BIND_RECEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiver(_Bind):
    COMMAND: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class _BindResp(PduBase):
    LAYOUT: ClassVar[Layout] = (("system_id", F.CSTR, 16),)
    BODY_OPTIONAL: ClassVar[bool] = True
    HAS_TLVS: ClassVar[bool] = True
    system_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitterResp(_BindResp):
    COMMAND: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiverResp(_BindResp):
    COMMAND: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiverResp(_BindResp):
    COMMAND: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP


_SM_LAYOUT: Layout = (
    ("service_type", F.CSTR, 6),
    ("source_addr_ton", F.U8, 1),
    ("source_addr_npi", F.U8, 1),
    ("source_addr", F.CSTR, 21),
    ("dest_addr_ton", F.U8, 1),
    ("dest_addr_npi", F.U8, 1),
    ("destination_addr", F.CSTR, 21),
    ("esm_class", F.U8, 1),
    ("protocol_id", F.U8, 1),
    ("priority_flag", F.U8, 1),
    ("schedule_delivery_time", F.CSTR, 17),
    ("validity_period", F.CSTR, 17),
    ("registered_delivery", F.U8, 1),
    ("replace_if_present_flag", F.U8, 1),
    ("data_coding", F.U8, 1),
    ("sm_default_msg_id", F.U8, 1),
    ("short_message", F.SM, 254),
)

ESM_CLASS_UDHI = 0x40  # short_message starts with a User Data Header
ESM_CLASS_TYPE_MASK = 0x3C
ESM_CLASS_DELIVERY_RECEIPT = 0x04


@dataclass(frozen=True, slots=True, kw_only=True)
class _ShortMessage(PduBase):
    LAYOUT: ClassVar[Layout] = _SM_LAYOUT
    HAS_TLVS: ClassVar[bool] = True
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: tuple[Tlv, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSm(_ShortMessage):
    COMMAND: ClassVar[CommandId] = CommandId.SUBMIT_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSm(_ShortMessage):
    COMMAND: ClassVar[CommandId] = CommandId.DELIVER_SM

    @property
    def is_receipt(self) -> bool:
        return self.esm_class & ESM_CLASS_TYPE_MASK == ESM_CLASS_DELIVERY_RECEIPT


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSmResp(PduBase):
    COMMAND: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP
    LAYOUT: ClassVar[Layout] = (("message_id", F.CSTR, 65),)
    BODY_OPTIONAL: ClassVar[bool] = True
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSmResp(PduBase):
    COMMAND: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP
    LAYOUT: ClassVar[Layout] = (("message_id", F.CSTR, 65),)  # unused: always empty in 3.4
    BODY_OPTIONAL: ClassVar[bool] = True
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLink(PduBase):
    COMMAND: ClassVar[CommandId] = CommandId.ENQUIRE_LINK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLinkResp(PduBase):
    COMMAND: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbind(PduBase):
    COMMAND: ClassVar[CommandId] = CommandId.UNBIND


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindResp(PduBase):
    COMMAND: ClassVar[CommandId] = CommandId.UNBIND_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericNack(PduBase):
    COMMAND: ClassVar[CommandId] = CommandId.GENERIC_NACK


@dataclass(frozen=True, slots=True)
class InvalidPdu:
    """A frame whose length was sound but whose command is unknown or whose body does not parse.

    The stream stays in step (the frame's octets are consumed), so a session answers a request with
    ``generic_nack`` (status :attr:`nack_status`) and goes on."""

    command_id: int
    status: int
    sequence: int
    body: bytes
    reason: str

    @property
    def nack_status(self) -> int:
        return ESME_RINVCMDID if self.command_id not in PDU_CLASSES else ESME_RINVCMDLEN


Pdu = (
    BindTransmitter
    | BindReceiver
    | BindTransceiver
    | BindTransmitterResp
    | BindReceiverResp
    | BindTransceiverResp
    | SubmitSm
    | SubmitSmResp
    | DeliverSm
    | DeliverSmResp
    | EnquireLink
    | EnquireLinkResp
    | Unbind
    | UnbindResp
    | GenericNack
)

PDU_CLASSES: dict[int, type[PduBase]] = {
    cls.COMMAND: cls
    for cls in (
        BindTransmitter,
        BindReceiver,
        BindTransceiver,
        BindTransmitterResp,
        BindReceiverResp,
        BindTransceiverResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        EnquireLink,
        EnquireLinkResp,
        Unbind,
        UnbindResp,
        GenericNack,
    )
}

RESPONSE_FOR: dict[CommandId, CommandId] = {
    CommandId.BIND_TRANSMITTER: CommandId.BIND_TRANSMITTER_RESP,
    CommandId.BIND_RECEIVER: CommandId.BIND_RECEIVER_RESP,
    CommandId.BIND_TRANSCEIVER: CommandId.BIND_TRANSCEIVER_RESP,
    CommandId.SUBMIT_SM: CommandId.SUBMIT_SM_RESP,
    CommandId.DELIVER_SM: CommandId.DELIVER_SM_RESP,
    CommandId.ENQUIRE_LINK: CommandId.ENQUIRE_LINK_RESP,
    CommandId.UNBIND: CommandId.UNBIND_RESP,
}
