"""Phone number parsing for the hot path: strict E.164, validated, with its country."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

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
