"""The one masking function for phone numbers in logs, API answers, errors and traces."""

from __future__ import annotations

import re

import phonenumbers

# a run of digits (with the usual separators) that is not part of a word: ids such as otp_b912b354…
# keep their hex digits
_DIGIT_RUN = re.compile(r"(?<![\w+])\+?\d[\d \-().]{6,}\d(?!\w)")


def mask_phone(e164: str, calling_code: int | None = None) -> str:
    """'+4915123456789' -> '+49*********89': country code and the last two digits, nothing more."""
    digits = e164.lstrip("+")
    if not digits.isdigit() or len(digits) < 6:
        return "+" + "*" * max(len(digits), 4)
    if calling_code is not None:
        cc = str(calling_code)
    else:
        try:
            cc = str(phonenumbers.parse("+" + digits, None).country_code)
        except phonenumbers.NumberParseException:
            cc = digits[:1]
    hidden = len(digits) - len(cc) - 2
    return f"+{cc}{'*' * max(hidden, 1)}{digits[-2:]}"


def scrub(text: str) -> str:
    """Mask every phone-number-looking run of 8+ digits in free text (log messages, errors)."""

    def repl(m: re.Match[str]) -> str:
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        if len(digits) < 8:
            return raw
        return mask_phone("+" + digits)

    return _DIGIT_RUN.sub(repl, text)
