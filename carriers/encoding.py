"""Message text → SMS payloads: GSM 03.38 when the text allows it, UCS-2 otherwise, split with UDH.

Rules, in the order they are applied:

1. A text made only of characters of the GSM 03.38 default alphabet and its extension table is sent
   with ``data_coding`` 0 as *unpacked* septets, one octet each, as SMPP carries them (the SMSC packs
   them for the air interface). An extension character (``^ { } \\ [ ~ ] | €`` and form feed) costs
   two septets: ESC (0x1B) then its code.
2. Any other text is sent as UCS-2 (``data_coding`` 8), i.e. UTF-16BE: characters outside the Basic
   Multilingual Plane take two 16-bit units (a surrogate pair).
3. A text that fits one SMS (160 septets, or 70 UCS-2 units) is one segment without a header. A longer
   one is split into segments of at most 153 septets, or 67 UCS-2 units, each prefixed with a 6-octet
   concatenation User Data Header (``05 00 03 ref total seq``). An ESC pair and a surrogate pair are
   never split across two segments, so a segment may carry one unit less than the maximum.

:func:`count_segments` gives the segment count used for cost; :func:`split_message` the payloads;
:func:`decode_payload` and :func:`parse_concat_udh` the other direction (for SMSC-side code).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

DATA_CODING_GSM7 = 0x00
DATA_CODING_IA5 = 0x01
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08

GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67
UDH_CONCAT_LEN = 6
MAX_SEGMENTS = 255

ESC = 0x1B

# GSM 03.38 default alphabet, position = septet value. Position 0x1B is the escape to the extension
# table and is never produced from text (a literal U+001B in a text forces UCS-2).
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: character → septet that follows ESC.
_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_ENCODE: dict[str, bytes] = {ch: bytes([i]) for i, ch in enumerate(_BASIC) if i != ESC}
_ENCODE.update({ch: bytes([ESC, code]) for ch, code in _EXTENSION.items()})
_DECODE_BASIC: dict[int, str] = {i: ch for i, ch in enumerate(_BASIC) if i != ESC}
_DECODE_EXT: dict[int, str] = {code: ch for ch, code in _EXTENSION.items()}
_GSM_CHARS = frozenset(_ENCODE)


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM 03.38 default alphabet or extension table."""
    return _GSM_CHARS.issuperset(text)


def gsm7_encode(text: str) -> bytes:
    """Unpacked septets (one per octet; extension characters as ESC + code). ValueError otherwise."""
    try:
        return b"".join([_ENCODE[ch] for ch in text])
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the GSM 03.38 alphabet") from None


def gsm7_decode(data: bytes) -> str:
    """Inverse of :func:`gsm7_encode`. An unknown extension code decodes as its basic character, and a
    trailing lone ESC as a space, as 03.38 recommends."""
    out: list[str] = []
    escaped = False
    for b in data:
        b &= 0x7F
        if escaped:
            out.append(_DECODE_EXT.get(b) or _DECODE_BASIC.get(b, " "))
            escaped = False
        elif b == ESC:
            escaped = True
        else:
            out.append(_DECODE_BASIC[b])
    if escaped:
        out.append(" ")
    return "".join(out)


def ucs2_encode(text: str) -> bytes:
    """UTF-16BE; characters beyond U+FFFF become surrogate pairs."""
    return text.encode("utf-16-be", errors="surrogatepass")


def ucs2_decode(data: bytes) -> str:
    if len(data) % 2:
        data = data[:-1]
    return data.decode("utf-16-be", errors="replace")


@dataclass(frozen=True, slots=True)
class SplitMessage:
    """A text ready for SMPP: the ``data_coding`` and the payload of each segment *without* its UDH
    (see :func:`concat_udh` and :meth:`with_udh`)."""

    data_coding: int
    parts: tuple[bytes, ...]

    @property
    def multipart(self) -> bool:
        return len(self.parts) > 1

    def with_udh(self, ref: int) -> list[bytes]:
        """The short_message of each segment: UDH + payload when multipart, the payload alone when not."""
        if not self.multipart:
            return list(self.parts)
        total = len(self.parts)
        return [concat_udh(ref, total, i + 1) + p for i, p in enumerate(self.parts)]


def _units(text: str) -> tuple[int, list[bytes]]:
    """(data_coding, encoded units): one GSM character (1 or 2 octets) or one UCS-2 character (2 or 4
    octets) per unit, so that a split between units never breaks an ESC or surrogate pair."""
    if is_gsm7(text):
        return DATA_CODING_GSM7, [_ENCODE[ch] for ch in text]
    return DATA_CODING_UCS2, [ch.encode("utf-16-be", errors="surrogatepass") for ch in text]


def _cuts(sizes: list[int], data_coding: int) -> list[int]:
    """Indexes (into ``sizes``) where each segment starts: [0] for a single SMS."""
    if data_coding == DATA_CODING_GSM7:
        single, multi = GSM7_SINGLE, GSM7_MULTI
    else:
        single, multi = UCS2_SINGLE * 2, UCS2_MULTI * 2
    if sum(sizes) <= single:
        return [0]
    cuts, size = [0], 0
    for i, s in enumerate(sizes):
        if size + s > multi:
            cuts.append(i)
            size = 0
        size += s
    return cuts


def split_message(text: str) -> SplitMessage:
    """Choose the encoding and split ``text`` into segments (see the module docstring for the rules).

    ValueError when the text needs more than 255 segments (the UDH cannot number them)."""
    data_coding, units = _units(text)
    cuts = _cuts([len(u) for u in units], data_coding)
    if len(cuts) > MAX_SEGMENTS:
        raise ValueError(f"text needs {len(cuts)} segments; at most {MAX_SEGMENTS} can be concatenated")
    bounds = [*cuts, len(units)]
    parts = tuple(b"".join(units[a:b]) for a, b in itertools.pairwise(bounds))
    return SplitMessage(data_coding, parts)


def count_segments(text: str) -> int:
    """How many SMS ``text`` costs: the number of parts :func:`split_message` produces."""
    if is_gsm7(text):
        return len(_cuts([2 if ch in _EXTENSION else 1 for ch in text], DATA_CODING_GSM7))
    return len(_cuts([4 if ord(ch) > 0xFFFF else 2 for ch in text], DATA_CODING_UCS2))


def concat_udh(ref: int, total: int, seq: int) -> bytes:
    """The 6-octet concatenation UDH (IEI 0x00, 8-bit reference)."""
    if not (0 <= ref <= 255 and 1 <= seq <= total <= MAX_SEGMENTS):
        raise ValueError(f"bad concatenation header ref={ref} total={total} seq={seq}")
    return bytes([5, 0x00, 3, ref, total, seq])


@dataclass(frozen=True, slots=True)
class ConcatInfo:
    ref: int
    total: int
    seq: int


def parse_concat_udh(short_message: bytes) -> tuple[ConcatInfo | None, bytes]:
    """Split a short_message sent with the UDHI flag into (concatenation info, payload).

    Understands IEI 0x00 (8-bit reference) and 0x08 (16-bit reference); other IEs are skipped. A header
    that does not fit the message is ValueError."""
    if not short_message:
        raise ValueError("UDHI set but the message is empty")
    udhl = short_message[0]
    if udhl + 1 > len(short_message):
        raise ValueError(f"UDH length {udhl} exceeds the message ({len(short_message)} octets)")
    header, payload = short_message[1 : udhl + 1], short_message[udhl + 1 :]
    info: ConcatInfo | None = None
    i = 0
    while i + 2 <= len(header):
        iei, iel = header[i], header[i + 1]
        value = header[i + 2 : i + 2 + iel]
        if len(value) != iel:
            raise ValueError("truncated information element in UDH")
        if iei == 0x00 and iel == 3:
            info = ConcatInfo(value[0], value[1], value[2])
        elif iei == 0x08 and iel == 4:
            info = ConcatInfo(int.from_bytes(value[:2], "big"), value[2], value[3])
        i += 2 + iel
    return info, payload


def decode_payload(data_coding: int, payload: bytes) -> str:
    """Text of a short_message payload (UDH already removed) for the data codings SMSCs use."""
    if data_coding == DATA_CODING_UCS2:
        return ucs2_decode(payload)
    if data_coding == DATA_CODING_LATIN1:
        return payload.decode("latin-1")
    if data_coding == DATA_CODING_IA5:
        return payload.decode("ascii", errors="replace")
    return gsm7_decode(payload)  # 0 (SMSC default) and the 0xF0 message-class codings
