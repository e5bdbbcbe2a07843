"""Octets ⇄ PDUs, with no I/O: :func:`encode`, :func:`decode` and the stream :class:`Framer`.

Framing rules (SMPP 3.4 section 3.2): every PDU starts with a 16-octet header, all integers big-endian;
``command_length`` counts the whole PDU including itself. A length below 16 or above the framer's cap
cannot be skipped safely (nothing tells where the next PDU starts), so it breaks the stream for good:
:class:`FramingError`, and the connection must be reset. A frame with a sound length but an unknown
command or an unreadable body is consumed and surfaced as :class:`~carriers.smpp.pdu.InvalidPdu`, so the
session can answer ``generic_nack`` and carry on.

Decoding is lenient where real SMSCs are sloppy and the meaning stays clear: a response with status
≠ 0 may omit its body, C-octet strings longer than the specification's maximum are accepted, and up to
three zero octets after the last field (a stray NUL after short_message) are ignored.
"""

from __future__ import annotations

import struct
from typing import Any

from carriers.base import CarrierError
from carriers.smpp.pdu import (
    PDU_CLASSES,
    F,
    InvalidPdu,
    Pdu,
    PduBase,
    Tlv,
)

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
DEFAULT_MAX_PDU = 66_560  # a 64 KiB message_payload TLV plus the largest mandatory body
_TLV_HEAD = struct.Struct(">HH")


class SmppError(CarrierError):
    """Root of this package's errors.

    SmppError
     ├── FramingError      the byte stream cannot be framed any more: reset the connection
     └── SessionError      a call the session's state does not allow (a programming fault)
    """


class FramingError(SmppError):
    """A command_length outside [16, cap]: the peer is not speaking SMPP, or the stream is corrupt."""


class _BodyError(ValueError):
    pass


def encode(pdu: Pdu, sequence: int | None = None) -> bytes:
    """The PDU's octets, with ``sequence`` instead of ``pdu.sequence`` when given. ValueError when a
    field does not fit its SMPP type (too long, not ASCII)."""
    cls = type(pdu)
    parts: list[bytes] = []
    if not (cls.BODY_OPTIONAL and pdu.status != 0 and _body_empty(pdu)):
        for name, kind, size in cls.LAYOUT:
            value = getattr(pdu, name)
            if kind is F.CSTR:
                raw = value.encode("ascii")
                if len(raw) >= size or b"\0" in raw:
                    raise ValueError(f"{cls.__name__}.{name}={value!r}: at most {size - 1} ASCII characters")
                parts.append(raw)
                parts.append(b"\0")
            elif kind is F.U8:
                parts.append(bytes((value,)))
            else:
                if len(value) > size:
                    raise ValueError(f"{cls.__name__}.{name}: {len(value)} octets, at most {size}")
                parts.append(bytes((len(value),)))
                parts.append(value)
        if cls.HAS_TLVS:
            for t in getattr(pdu, "tlvs", ()):
                parts.append(_TLV_HEAD.pack(t.tag, len(t.value)))
                parts.append(t.value)
    body = b"".join(parts)
    seq = pdu.sequence if sequence is None else sequence
    return HEADER.pack(HEADER_LEN + len(body), cls.COMMAND, pdu.status, seq) + body


def _body_empty(pdu: PduBase) -> bool:
    return all(getattr(pdu, name) in ("", 0, b"") for name, _, _ in pdu.LAYOUT) and not getattr(
        pdu, "tlvs", ()
    )


def decode(frame: bytes) -> Pdu | InvalidPdu:
    """One whole PDU (exactly ``command_length`` octets) → its dataclass, or InvalidPdu."""
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise FramingError(f"frame of {len(frame)} octets but command_length says {length}")
    cls = PDU_CLASSES.get(command_id)
    if cls is None:
        return InvalidPdu(command_id, status, sequence, frame[16:], f"unknown command_id 0x{command_id:08X}")
    try:
        fields = _parse_body(cls, frame)
    except _BodyError as e:
        return InvalidPdu(command_id, status, sequence, frame[16:], f"{cls.__name__}: {e}")
    pdu: Pdu = cls(sequence=sequence, status=status, **fields)  # type: ignore[assignment]
    return pdu


def _parse_body(cls: type[PduBase], frame: bytes) -> dict[str, Any]:
    end = len(frame)
    pos = HEADER_LEN
    fields: dict[str, Any] = {}
    if pos == end and cls.BODY_OPTIONAL:
        return fields
    for name, kind, _size in cls.LAYOUT:
        if kind is F.CSTR:
            nul = frame.find(b"\0", pos, end)
            if nul < 0:
                raise _BodyError(f"{name} is not NUL-terminated within the PDU")
            fields[name] = frame[pos:nul].decode("latin-1")
            pos = nul + 1
        elif kind is F.U8:
            if pos >= end:
                raise _BodyError(f"the body ends before {name}")
            fields[name] = frame[pos]
            pos += 1
        else:
            if pos >= end:
                raise _BodyError(f"the body ends before sm_length ({name})")
            n = frame[pos]
            if pos + 1 + n > end:
                raise _BodyError(f"sm_length {n} runs past the end of the PDU")
            fields[name] = frame[pos + 1 : pos + 1 + n]
            pos += 1 + n
    if cls.HAS_TLVS:
        tlvs: list[Tlv] = []
        while end - pos >= 4:
            tag, n = _TLV_HEAD.unpack_from(frame, pos)
            if pos + 4 + n > end:
                raise _BodyError(f"TLV 0x{tag:04X} of length {n} runs past the end of the PDU")
            tlvs.append(Tlv(tag, frame[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        fields["tlvs"] = tuple(tlvs)
    if pos < end and (end - pos > 3 or any(frame[pos:end])):
        raise _BodyError(f"{end - pos} unexpected octets after the last field")
    return fields


class Framer:
    """Turns a TCP byte stream into PDUs: ``feed(data) -> list[Pdu | InvalidPdu]``.

    The buffer never holds more than one incomplete PDU, and a command_length above ``max_pdu`` is
    refused before any of its body is buffered, so memory per connection is bounded by ``max_pdu``.

    When a framing error follows PDUs decoded in the same call, those PDUs are returned first and the
    error is raised by the next call (``feed(b"")`` surfaces it): nothing that arrived intact is lost.
    Once broken, the framer stays broken.
    """

    def __init__(self, max_pdu: int = DEFAULT_MAX_PDU) -> None:
        if max_pdu < HEADER_LEN:
            raise ValueError("max_pdu must be at least 16")
        self.max_pdu = max_pdu
        self._buf = bytearray()
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def broken(self) -> FramingError | None:
        return self._error

    def feed(self, data: bytes) -> list[Pdu | InvalidPdu]:
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[Pdu | InvalidPdu] = []
        pos, n = 0, len(buf)
        while n - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length < HEADER_LEN or length > self.max_pdu:
                head = bytes(buf[pos : pos + 16]).hex()
                self._error = FramingError(
                    f"command_length {length} is outside [16, {self.max_pdu}]: "
                    f"the peer sent something that is not SMPP (first octets {head})"
                )
                del buf[:]
                if out:
                    return out
                raise self._error
            if n - pos < length:
                break
            out.append(decode(bytes(buf[pos : pos + length])))
            pos += length
        if pos:
            del buf[:pos]
        return out
