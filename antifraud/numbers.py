"""What a phone number tells before anything is sent: validity, type, country, ranges, time zone.

``number_info`` parses once per E.164 and keeps the result in a bounded LRU, so the hot path pays
``phonenumbers`` (≈ 25–50 µs with the pattern cache, ms without) only for numbers it has not seen.
``phonenumbers.enable_pattern_cache()`` is called on import of this module: without it the metadata
regexes overflow ``re``'s compile cache and a multi-country gateway pays 5–10× more per number.

Ranges are digit prefixes of the E.164 string, at the depths the detector keeps counters for::

    country (+49) → 100k block (E.164 minus 5 digits) → 10k block (minus 4) → 1k block (minus 3)

Operator data from ``phonenumbers.carrier`` only covers 2–3 digits after the country code and says
the *original* operator of a ported number, so digit prefixes stand in for operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import phonenumbers
from phonenumbers import PhoneNumberType, timezone
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.phonenumberutil import (
    COUNTRY_CODE_TO_REGION_CODE,
    _number_type_helper,
    national_significant_number,
)

phonenumbers.enable_pattern_cache()

NumberKind = Literal[
    "mobile",
    "fixed_line",
    "fixed_line_or_mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "unknown",
]

_KINDS: dict[int, NumberKind] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

ALL_KINDS: tuple[NumberKind, ...] = (*_KINDS.values(), "unknown")

# Region code phonenumbers gives to non-geographic numbering (satellite +881/+870, +882/+883 …).
NONGEO_REGION = "001"


@dataclass(frozen=True, slots=True)
class NumberInfo:
    e164: str
    parsed: bool  # False: not even parseable as E.164
    valid: bool  # False: unassigned range, wrong length, or unparseable
    region: str  # ISO 3166-1 alpha-2, "001" for non-geographic, "ZZ" when unknown
    country_code: int
    kind: NumberKind
    zone: str | None  # first IANA time zone of the number, None when unknown
    p5: str  # 100k block: E.164 minus 5 digits
    p4: str  # 10k block
    p3: str  # 1k block

    @property
    def nongeographic(self) -> bool:
        return self.region == NONGEO_REGION

    @property
    def suffix4(self) -> int:
        """The last four digits: the position of the number inside its 10k block."""
        return int(self.e164[-4:]) if self.e164[-4:].isdigit() else 0


def _blocks(e164: str) -> tuple[str, str, str]:
    return e164[:-5], e164[:-4], e164[:-3]


_ZONES: dict[str, str | None] = {}  # 100k block -> time zone: one lookup per block, not per number


def _zone(num: phonenumbers.PhoneNumber, p5: str) -> str | None:
    zone = _ZONES.get(p5, "")
    if zone == "":
        zones = timezone.time_zones_for_number(num)
        zone = zones[0] if zones and zones[0] != "Etc/Unknown" else None
        if len(_ZONES) > 200_000:
            _ZONES.clear()
        _ZONES[p5] = zone
    return zone


def _from_e164(digits: str) -> phonenumbers.PhoneNumber | None:
    """What ``phonenumbers.parse('+' + digits, None)`` returns for a well-formed E.164 string, without
    its generic text handling (15 µs → 1.5 µs): the country code is the 1–3 digit prefix the library
    knows, the rest the national number, leading zeros recorded the way ``parse`` records them."""
    for k in (1, 2, 3):
        cc = int(digits[:k])
        if cc in COUNTRY_CODE_TO_REGION_CODE:
            nsn = digits[k:]
            if not 2 <= len(nsn) <= 17:
                return None
            num = phonenumbers.PhoneNumber(country_code=cc, national_number=int(nsn))
            if len(nsn) > 1 and nsn[0] == "0":
                num.italian_leading_zero = True
                zeros = 1
                while zeros < len(nsn) - 1 and nsn[zeros] == "0":
                    zeros += 1
                if zeros != 1:
                    num.number_of_leading_zeros = zeros
            return num
    return None


@lru_cache(maxsize=131072)
def number_info(e164: str) -> NumberInfo:
    """Parse and classify once per number.

    ``valid`` and ``kind`` come from one pass of the metadata patterns: ``is_valid_number`` and
    ``number_type`` each find the region and match every type pattern again, and a number is valid
    exactly when its type is known for the region the library assigns it to (``phonenumbers``
    9.0.43 source; ``tests/antifraud`` checks the equivalence on thousands of numbers)."""
    digits = e164[1:] if e164.startswith("+") else ""
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        return NumberInfo(e164, False, False, "ZZ", 0, "unknown", None, e164, e164, e164)
    num = _from_e164(digits)
    info = _classify(e164, num) if num is not None else None
    if info is None or not info.valid:
        # the slow, general path: national-prefix transforms of a few regions (e.g. Norfolk
        # Island's 5-digit numbers) only ``parse`` knows; a number valid on the fast path is final
        try:
            info = _classify(e164, phonenumbers.parse(e164, None))
        except phonenumbers.NumberParseException:
            info = None
    return info or NumberInfo(e164, False, False, "ZZ", 0, "unknown", None, *_blocks(e164))


def _classify(e164: str, num: phonenumbers.PhoneNumber) -> NumberInfo:
    cc = num.country_code or 0
    region = phonenumbers.region_code_for_number(num)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(cc, region) if region else None
    if metadata is None:
        return NumberInfo(e164, True, False, region or "ZZ", cc, "unknown", None, *_blocks(e164))
    kind = _KINDS.get(_number_type_helper(national_significant_number(num), metadata), "unknown")
    valid = kind != "unknown"
    p5, p4, p3 = _blocks(e164)
    zone = _zone(num, p5) if valid else None
    return NumberInfo(e164, True, valid, region or "ZZ", cc, kind, zone, p5, p4, p3)
