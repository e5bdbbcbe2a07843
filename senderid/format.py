"""Sender format rules: is this sender well formed, of which kind, and does the country accept that kind?

Kinds:

- **short code**: 3-8 digits, nothing else;
- **long number**: an E.164 number, with or without the leading ``+`` (9-15 digits), that ``phonenumbers``
  says is valid; normalised to ``+<digits>``;
- **alphanumeric**: anything else; 3-11 characters from the safe set ``A-Z a-z 0-9``, space and
  ``. - & _`` (the set UK operators publish, the strictest published; all are in the GSM 03.38 basic set),
  with at least one letter and no space at either end.

Every rule that fails is reported (not only the first) as a :class:`FormatIssue` with a stable code:

| code | rule |
| --- | --- |
| ``sender_empty`` | no sender |
| ``alphanumeric_too_short`` / ``alphanumeric_too_long`` | 3-11 characters |
| ``alphanumeric_bad_characters`` | only ``A-Z a-z 0-9``, space, ``. - & _`` |
| ``alphanumeric_no_letter`` | at least one letter (a sender such as ``123-45`` is refused) |
| ``alphanumeric_edge_space`` | no space at the start or end |
| ``alphanumeric_not_allowed`` | the country accepts no alphanumeric sender |
| ``numeric_too_short`` | fewer than 3 digits |
| ``numeric_too_long`` | more than 15 digits |
| ``numeric_invalid`` | not a valid E.164 number |
| ``numeric_not_allowed`` | the country accepts no numeric sender (long number or short code) |

Warnings (the sender is accepted): ``alphanumeric_limited`` / ``numeric_limited`` (only some operators
keep it; others overwrite it), ``alphanumeric_support_unknown`` / ``numeric_support_unknown``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import phonenumbers

from senderid.rules import CountryRule, Support

ALPHA_MIN = 3
ALPHA_MAX = 11
SHORT_CODE_MIN = 3
SHORT_CODE_MAX = 8
E164_MAX_DIGITS = 15
ALPHA_SAFE = re.compile(r"[A-Za-z0-9 .\-&_]")
_ALPHA_SAFE_RUN = re.compile(r"[A-Za-z0-9 .\-&_]+")
_LETTER = re.compile(r"[A-Za-z]")
_DIGITS = re.compile(r"\+?[0-9]+")


class SenderKind(enum.StrEnum):
    ALPHANUMERIC = "alphanumeric"
    LONG_NUMBER = "long_number"
    SHORT_CODE = "short_code"

    @property
    def numeric(self) -> bool:
        return self is not SenderKind.ALPHANUMERIC


@dataclass(frozen=True, slots=True)
class FormatIssue:
    """One failed rule (or warning): a stable machine ``code`` and a sentence for people."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class FormatResult:
    """``ok`` when no rule failed. ``kind`` and ``normalized`` are set whenever the kind could be told."""

    sender: str
    kind: SenderKind | None
    normalized: str
    errors: tuple[FormatIssue, ...] = ()
    warnings: tuple[FormatIssue, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(e.code for e in self.errors)

    @property
    def refused_by_country(self) -> bool:
        """True when the sender is well formed but the country refuses its kind."""
        return bool(self.errors) and all(e.code.endswith("_not_allowed") for e in self.errors)


def sender_kind(sender: str) -> SenderKind:
    """The kind a sender is judged as (see the module docstring); does not validate."""
    if _DIGITS.fullmatch(sender):
        if not sender.startswith("+") and len(sender) <= SHORT_CODE_MAX:
            return SenderKind.SHORT_CODE
        return SenderKind.LONG_NUMBER
    return SenderKind.ALPHANUMERIC


def check_sender_format(sender: str, rule: CountryRule) -> FormatResult:
    """Check ``sender`` against the format rules and against what ``rule``'s country accepts."""
    if not sender:
        return FormatResult(sender, None, "", (FormatIssue("sender_empty", "a sender is required"),))
    kind = sender_kind(sender)
    if kind is SenderKind.ALPHANUMERIC:
        errors = _alphanumeric_errors(sender)
        normalized = sender
        support = rule.alphanumeric
    else:
        errors, normalized = _numeric_errors(sender, kind)
        support = rule.numeric
    warnings: list[FormatIssue] = []
    family = "alphanumeric" if kind is SenderKind.ALPHANUMERIC else "numeric"
    noun = (
        "alphanumeric sender IDs" if family == "alphanumeric" else "numeric senders (numbers or short codes)"
    )
    if support is Support.NO:
        errors.append(FormatIssue(f"{family}_not_allowed", f"{rule.name} ({rule.iso2}) accepts no {noun}"))
    elif support is Support.LIMITED:
        warnings.append(
            FormatIssue(
                f"{family}_limited",
                f"{rule.name} ({rule.iso2}) accepts {noun} only on some operators; "
                "others may replace the sender",
            )
        )
    elif support is Support.UNKNOWN:
        warnings.append(
            FormatIssue(
                f"{family}_support_unknown", f"whether {rule.name} ({rule.iso2}) accepts {noun} is not known"
            )
        )
    return FormatResult(sender, kind, normalized, tuple(errors), tuple(warnings))


def _alphanumeric_errors(sender: str) -> list[FormatIssue]:
    errors: list[FormatIssue] = []
    n = len(sender)
    if n < ALPHA_MIN:
        errors.append(
            FormatIssue(
                "alphanumeric_too_short",
                f"an alphanumeric sender needs at least {ALPHA_MIN} characters; '{sender}' has {n}",
            )
        )
    if n > ALPHA_MAX:
        errors.append(
            FormatIssue(
                "alphanumeric_too_long",
                f"an alphanumeric sender may have at most {ALPHA_MAX} characters; it has {n}",
            )
        )
    bad = (
        []
        if _ALPHA_SAFE_RUN.fullmatch(sender)
        else sorted({c for c in sender if not ALPHA_SAFE.fullmatch(c)})
    )
    if bad:
        shown = " ".join(repr(c) for c in bad[:10])
        errors.append(
            FormatIssue(
                "alphanumeric_bad_characters",
                f"only A-Z, a-z, 0-9, space, '.', '-', '&' and '_' are allowed; found {shown}",
            )
        )
    if not _LETTER.search(sender):
        errors.append(
            FormatIssue("alphanumeric_no_letter", "an alphanumeric sender needs at least one letter A-Z")
        )
    if sender != sender.strip():
        errors.append(FormatIssue("alphanumeric_edge_space", "a sender may not start or end with a space"))
    return errors


def _numeric_errors(sender: str, kind: SenderKind) -> tuple[list[FormatIssue], str]:
    digits = sender.lstrip("+")
    if kind is SenderKind.SHORT_CODE:
        if len(digits) < SHORT_CODE_MIN:
            return [
                FormatIssue(
                    "numeric_too_short",
                    f"a short code has {SHORT_CODE_MIN}-{SHORT_CODE_MAX} digits; '{sender}' has "
                    f"{len(digits)}",
                )
            ], digits
        return [], digits
    normalized = "+" + digits
    if len(digits) > E164_MAX_DIGITS:
        return [
            FormatIssue(
                "numeric_too_long",
                f"an E.164 number has at most {E164_MAX_DIGITS} digits; '{sender}' has {len(digits)}",
            )
        ], normalized
    try:
        number = phonenumbers.parse(normalized, None)
        valid = phonenumbers.is_valid_number(number)
    except phonenumbers.NumberParseException:
        valid = False
    if not valid:
        return [FormatIssue("numeric_invalid", f"'{sender}' is not a valid E.164 phone number")], normalized
    return [], normalized
