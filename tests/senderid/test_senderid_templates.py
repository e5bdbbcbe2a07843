"""Template registration and matching (India DLT style)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from senderid.errors import TemplateInvalid
from senderid.templates import Template, TemplateSet, match_template

OTP = Template("1107161234567890123", "Your {#var#} code is {#numeric#}. Do not share it.")
ORDER = Template("ord-1", "Order {#alphanumeric#} shipped: track at {#url#}")
NAMED = Template("otp-named", "{code} is your Acme code")


@pytest.fixture(scope="module")
def templates() -> TemplateSet:
    return TemplateSet([OTP, ORDER, NAMED])


@pytest.mark.parametrize(
    ("text", "template_id"),
    [
        ("Your Acme code is 123456. Do not share it.", OTP.id),
        ("Your Acme Bank  code is 42. Do not\nshare it.", OTP.id),
        ("  Your X code is 1. Do not share it.  ", OTP.id),
        ("Order AB12 shipped: track at https://t.example/x?y=1", ORDER.id),
        ("482913 is your Acme code", NAMED.id),
        ("Your Acme code is 12a. Do not share it.", None),
        ("Your code is 1. Do not share it.", None),
        ("Your Acme code is 123456. Do not share it!", None),
        ("Order AB-12 shipped: track at https://t.example", None),
        ("Order AB12 shipped: track at two words", None),
        ("Your " + "x" * 31 + " code is 1. Do not share it.", None),
        ("is your Acme code", None),
        ("", None),
    ],
)
def test_match(templates: TemplateSet, text: str, template_id: str | None) -> None:
    assert match_template(text, templates) == template_id


def test_most_specific_template_wins() -> None:
    loose = Template("loose", "Your {#var#}")
    tight = Template("tight", "Your code is {#numeric#}")
    for order in ([loose, tight], [tight, loose]):
        assert TemplateSet(order).match("Your code is 12") == "tight"
    assert TemplateSet([loose, tight]).match("Your parcel") == "loose"


def test_static_template_matches_only_its_text() -> None:
    ts = TemplateSet([Template("s", "Welcome to Acme")])
    assert ts.match("Welcome  to Acme") == "s"
    assert ts.match("Welcome to Acme!") is None


@pytest.mark.parametrize(
    "template",
    [
        Template("", "text"),
        Template("x" * 65, "text"),
        Template("a", ""),
        Template("a", "   "),
        Template("a", "{#var#} {#numeric#}"),
        Template("a", "Hello {#money#}"),
        Template("a", "x" * 2001),
        Template("a", "x" + "{#var#}x" * 26),
    ],
)
def test_invalid_templates_are_refused(template: Template) -> None:
    with pytest.raises(TemplateInvalid):
        TemplateSet([template])


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(TemplateInvalid, match="given twice"):
        TemplateSet([Template("a", "one"), Template("a", "two")])


def test_hostile_text_cannot_make_matching_slow() -> None:
    chained = TemplateSet(
        [
            Template("v", " ".join(["{#var#}"] * 25) + " END"),
            Template("u", "".join(["{#url#}"] * 25) + "END"),
            Template("w", "".join(["{#var#}"] * 25) + "END"),
        ]
    )
    start = time.perf_counter()
    assert chained.match("a " * 999) is None
    assert chained.match("a" * 1999) is None
    assert time.perf_counter() - start < 2.0  # a backtracking regex takes hours here
    assert chained.match("x" * 4001) is None


@given(st.lists(st.text(alphabet="abcXYZ09 ", min_size=1, max_size=30), min_size=1, max_size=4))
def test_any_filled_in_template_matches_its_own_text(values: list[str]) -> None:
    values = [v.strip() or "v" for v in values]
    template = Template("t", "Hi " + " and ".join("{#var#}" for _ in values) + " bye")
    text = "Hi " + " and ".join(values) + " bye"
    assert TemplateSet([template]).match(text) == "t"
