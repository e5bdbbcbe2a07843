"""Sender format rules: each rule, its machine code, and what countries accept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from senderid.format import SenderKind, check_sender_format, sender_kind
from senderid.rules import CountryRule, RuleBook, Support, load_rules


@pytest.fixture(scope="module")
def book() -> RuleBook:
    return load_rules()


OPEN = CountryRule(iso2="DE", name="Germany", alphanumeric=Support.YES, numeric=Support.YES)


@pytest.mark.parametrize(
    ("sender", "kind", "normalized"),
    [
        ("ACME", SenderKind.ALPHANUMERIC, "ACME"),
        ("Acme Shop", SenderKind.ALPHANUMERIC, "Acme Shop"),
        ("A.B-C&D_E", SenderKind.ALPHANUMERIC, "A.B-C&D_E"),
        ("Shop24", SenderKind.ALPHANUMERIC, "Shop24"),
        ("abc", SenderKind.ALPHANUMERIC, "abc"),
        ("ABCDEFGHIJK", SenderKind.ALPHANUMERIC, "ABCDEFGHIJK"),
        ("123", SenderKind.SHORT_CODE, "123"),
        ("12345678", SenderKind.SHORT_CODE, "12345678"),
        ("+4915123456789", SenderKind.LONG_NUMBER, "+4915123456789"),
        ("4915123456789", SenderKind.LONG_NUMBER, "+4915123456789"),
        ("+14155552671", SenderKind.LONG_NUMBER, "+14155552671"),
    ],
)
def test_well_formed_senders(sender: str, kind: SenderKind, normalized: str) -> None:
    result = check_sender_format(sender, OPEN)
    assert result.ok, result.errors
    assert (result.kind, result.normalized) == (kind, normalized)
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("sender", "codes"),
    [
        ("", ("sender_empty",)),
        ("AB", ("alphanumeric_too_short",)),
        ("ABCDEFGHIJKL", ("alphanumeric_too_long",)),
        ("ACME!", ("alphanumeric_bad_characters",)),
        ("Café", ("alphanumeric_bad_characters",)),
        ("ACME/OTP", ("alphanumeric_bad_characters",)),
        ("123-45", ("alphanumeric_no_letter",)),
        (" ACME", ("alphanumeric_edge_space",)),
        ("ACME ", ("alphanumeric_edge_space",)),
        ("A!", ("alphanumeric_too_short", "alphanumeric_bad_characters")),
        ("!!!!!!!!!!!!", ("alphanumeric_too_long", "alphanumeric_bad_characters", "alphanumeric_no_letter")),
        ("12", ("numeric_too_short",)),
        ("+12", ("numeric_invalid",)),
        ("+4900000", ("numeric_invalid",)),
        ("999999999999", ("numeric_invalid",)),
        ("1234567890123456", ("numeric_too_long",)),
    ],
)
def test_each_failed_rule_is_reported_with_its_code(sender: str, codes: tuple[str, ...]) -> None:
    result = check_sender_format(sender, OPEN)
    assert not result.ok
    assert result.codes == codes
    assert all(e.message for e in result.errors)
    assert not result.refused_by_country


def test_country_without_alphanumeric_senders_refuses_them(book: RuleBook) -> None:
    us = book.country("US")
    result = check_sender_format("ACME", us)
    assert result.codes == ("alphanumeric_not_allowed",)
    assert result.refused_by_country
    assert "United States (US) accepts no alphanumeric sender IDs" in result.errors[0].message
    assert check_sender_format("+14155552671", us).ok


def test_country_without_numeric_senders_refuses_numbers_and_short_codes(book: RuleBook) -> None:
    ae = book.country("AE")
    for sender in ("+971501234567", "12345"):
        result = check_sender_format(sender, ae)
        assert result.codes == ("numeric_not_allowed",) and result.refused_by_country
    assert check_sender_format("ACME", ae).ok


def test_malformed_and_refused_kind_are_both_reported(book: RuleBook) -> None:
    result = check_sender_format("AB", book.country("US"))
    assert result.codes == ("alphanumeric_too_short", "alphanumeric_not_allowed")
    assert not result.refused_by_country


@pytest.mark.parametrize(
    ("iso2", "sender", "warning"),
    [
        ("IN", "ACMEIN", "alphanumeric_limited"),
        ("GB", "+447911123456", "numeric_limited"),
        ("NO", "ACME", "alphanumeric_support_unknown"),
        ("NO", "+4791234567", "numeric_support_unknown"),
    ],
)
def test_limited_or_unknown_support_accepts_with_a_warning(
    book: RuleBook, iso2: str, sender: str, warning: str
) -> None:
    result = check_sender_format(sender, book.country(iso2))
    assert result.ok
    assert [w.code for w in result.warnings] == [warning]


@pytest.mark.parametrize("row_iso2", ["AR", "BR", "CA", "CL", "CN", "CO", "EC", "KR", "MY", "NZ", "TW", "US"])
def test_every_country_that_accepts_no_alphanumeric_sender_refuses_one(book: RuleBook, row_iso2: str) -> None:
    assert check_sender_format("ACME", book.country(row_iso2)).codes == ("alphanumeric_not_allowed",)


@given(st.text(alphabet="ABCabcxyz019 .-&_", min_size=3, max_size=11))
def test_safe_set_senders_with_a_letter_and_no_edge_space_pass(sender: str) -> None:
    result = check_sender_format(sender, OPEN)
    has_letter = any(c.isalpha() for c in sender)
    if sender.isdigit():
        assert result.kind is not SenderKind.ALPHANUMERIC
    else:
        assert result.ok is (has_letter and sender == sender.strip())


@given(st.text(min_size=1, max_size=20))
def test_any_text_gets_a_kind_and_never_crashes(sender: str) -> None:
    result = check_sender_format(sender, OPEN)
    assert result.kind is sender_kind(sender)
    assert result.ok or result.errors
