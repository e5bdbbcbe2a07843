"""Phone number parsing for the hot path: strict E.164, validated, with its country."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneMetadata

from antifraud import number_info
from gateway.errors import ApiError

phonenumbers.enable_pattern_cache()


@dataclass(frozen=True, slots=True)
class Number:
    e164: str
    country: str  # ISO 3166-1 alpha-2
    calling_code: int


@lru_cache(maxsize=65536)
def _parse(text: str) -> Number | str:
    if not text.startswith("+") or not text[1:].isdigit() or not 8 <= len(text) <= 16:
        return "must be in E.164 form: '+' then 7 to 15 digits, e.g. +447400123456"
    # anti-fraud classifies the same number next (cached), on a faster path than ``parse``; a national
    # number starting with 0 may carry a trunk prefix that ``parse`` strips, so it takes the full path
    info = number_info(text)
    cc = info.country_code
    if info.valid and cc and info.region not in ("001", "ZZ"):
        prefix = _national_prefix(info.region)
        if prefix is None or not prefix.match(text, 1 + len(str(cc))):
            return Number(text, info.region, cc)
    return _parse_full(text)


@lru_cache(maxsize=512)
def _national_prefix(region: str) -> re.Pattern[str] | None:
    """The region's national (trunk) prefix as ``parse`` recognises it; a national number that starts
    with it may be written with the prefix (``+49 0…``, ``+1 1…``) or be transformed (Norfolk
    Island), so only the full parse can tell its canonical form."""
    meta = PhoneMetadata.metadata_for_region(region)
    pattern = meta.national_prefix_for_parsing if meta is not None else None
    return re.compile(pattern) if pattern else None


def _parse_full(text: str) -> Number | str:
    """The reference: ``phonenumbers`` parse, validate, region, canonical E.164."""
    try:
        num = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return "not a phone number"
    if not phonenumbers.is_valid_number(num):
        return "not a valid number for its country (unassigned range or wrong length)"
    region = phonenumbers.region_code_for_number(num)
    if not region or region == "001":
        return "not a number of a country"
    return Number(
        phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164),
        region,
        num.country_code or 0,
    )


def parse_number(text: str) -> Number:
    """Parse or raise ``400 invalid_number`` with the reason (the number itself is not echoed)."""
    res = _parse(text)
    if isinstance(res, str):
        raise ApiError("invalid_number", f"'to' {res}")
    return res


def country_codes(values: list[str] | tuple[str, ...]) -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes that phone numbers exist for (upper-cased, blanks dropped); raises
    ``ValueError`` naming every unknown one."""
    codes = frozenset(v.strip().upper() for v in values if v.strip())
    unknown = sorted(c for c in codes if c not in phonenumbers.SUPPORTED_REGIONS)
    if unknown:
        raise ValueError(f"unknown country code(s): {', '.join(unknown)}")
    return codes
