"""The one masking function for phone numbers in logs, API answers, errors and traces."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

_E164_MAX = 15  # digits in an E.164 number at most; longer input takes the full parse

# a run of digits (with the usual separators) that is not part of a word: ids such as otp_b912b354…
# keep their hex digits
_DIGIT_RUN = re.compile(r"(?<![\w+])\+?\d[\d \-().]{6,}\d(?!\w)")


def mask_phone(e164: str, calling_code: int | None = None) -> str:
    """'+4915123456789' -> '+49*********89': country code and the last two digits, nothing more."""
    digits = e164.lstrip("+")
    if not digits.isdigit() or len(digits) < 6:
        return "+" + "*" * max(len(digits), 4)
    cc = str(calling_code) if calling_code is not None else _calling_code(digits)
    hidden = len(digits) - len(cc) - 2
    return f"+{cc}{'*' * max(hidden, 1)}{digits[-2:]}"


def _calling_code(digits: str) -> str:
    """The country calling code ``phonenumbers.parse("+" + digits)`` finds, or the first digit where
    parsing fails. Up to E.164's 15 digits without the full parse (a request's answer masks its number
    with this): the code is the 1-3 digit prefix found in the table of codes (codes are prefix-free),
    as the parse extracts it; ``tests/gateway/test_privacy.py`` compares both on random input."""
    if len(digits) > _E164_MAX:
        return _calling_code_by_parse(digits)
    if digits[0] != "0":
        for n in (1, 2, 3):
            if int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE:
                return digits[:n]
    return digits[:1]


def _calling_code_by_parse(digits: str) -> str:
    """What ``_calling_code`` stands in for (the tests compare the two)."""
    try:
        return str(phonenumbers.parse("+" + digits, None).country_code)
    except phonenumbers.NumberParseException:
        return digits[:1]


def scrub(text: str) -> str:
    """Mask every phone-number-looking run of 8+ digits in free text (log messages, errors)."""

    def repl(m: re.Match[str]) -> str:
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        if len(digits) < 8:
            return raw
        return mask_phone("+" + digits)

    return _DIGIT_RUN.sub(repl, text)
