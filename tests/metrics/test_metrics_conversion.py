"""Tracked short links and the conversion funnel (pure logic)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.conversion import (
    FUNNEL,
    LINK_ID,
    ConversionError,
    EventRequest,
    FunnelStep,
    count_events,
    counts_as_click,
    find_urls,
    funnel,
    new_link_id,
    parse_event,
    parse_event_request,
    parse_link_id,
    rewrite_links,
)

BASE = "https://s.example.org"


def fixed_ids(*ids: str) -> Callable[[], str]:
    it = iter(ids)
    return lambda: next(it)


@pytest.mark.parametrize(
    ("body", "urls"),
    [
        ("Sale! https://shop.example.com/x?a=1&b=2.", ["https://shop.example.com/x?a=1&b=2"]),
        ("(see http://a.example/b) now", ["http://a.example/b"]),
        ("wiki https://en.example.org/A_(b)!", ["https://en.example.org/A_(b)"]),
        ("two: https://a.example, HTTPS://B.example/p;", ["https://a.example", "HTTPS://B.example/p"]),
        ("no link here, only https:// and www.example.com", []),
        ('"https://q.example/"', ["https://q.example/"]),
    ],
)
def test_find_urls(body: str, urls: list[str]) -> None:
    spans = find_urls(body)
    assert [s.url for s in spans] == urls
    assert all(body[s.start : s.end] == s.url for s in spans)


def test_rewrite_binds_each_distinct_url_to_the_message() -> None:
    body = "20% off https://shop.example.com/sale?utm=sms, again https://shop.example.com/sale?utm=sms or https://x.example."
    ids = fixed_ids("AAAAAAAAAAAA", "BBBBBBBBBBBB")
    out = rewrite_links(body, BASE + "/", "msg_1", new_id=ids)
    assert out.body == (
        f"20% off {BASE}/l/AAAAAAAAAAAA, again {BASE}/l/AAAAAAAAAAAA or {BASE}/l/BBBBBBBBBBBB."
    )
    assert [(link.link_id, link.message_id, link.target_url) for link in out.links] == [
        ("AAAAAAAAAAAA", "msg_1", "https://shop.example.com/sale?utm=sms"),
        ("BBBBBBBBBBBB", "msg_1", "https://x.example"),
    ]
    # rewriting the result again changes nothing: its links already point at the gateway
    again = rewrite_links(out.body, BASE, "msg_1")
    assert again.body == out.body and again.links == ()


def test_link_ids_are_random_and_carry_nothing_about_message_or_number() -> None:
    body = "Offer for +4915123456789: https://shop.example.com/p"
    a = rewrite_links(body, BASE, "msg_1")
    b = rewrite_links(body, BASE, "msg_1")
    ids = {a.links[0].link_id, b.links[0].link_id}
    assert len(ids) == 2  # same message, same URL: still a fresh id
    for link_id in ids:
        assert LINK_ID.fullmatch(link_id)
        assert "msg" not in link_id and "4915" not in link_id
    assert len({new_link_id() for _ in range(2000)}) == 2000


def test_rewrite_refuses_bad_inputs() -> None:
    with pytest.raises(ConversionError):
        rewrite_links("https://a.example", BASE, "")
    with pytest.raises(ConversionError):
        rewrite_links("https://a.example", "s.example.org", "m1")
    with pytest.raises(ConversionError, match="malformed"):
        rewrite_links("https://a.example", BASE, "m1", new_id=lambda: "short")


@given(st.text(alphabet=st.sampled_from("ab .,()https:/x?=&\n"), max_size=80))
def test_rewrite_keeps_every_character_outside_the_links(body: str) -> None:
    out = rewrite_links(body, BASE, "m1", new_id=lambda: "Z" * 12)
    link = f"{BASE}/l/{'Z' * 12}"
    spans = find_urls(body)
    expected, pos = [], 0
    for s in spans:
        expected += [body[pos : s.start], link]
        pos = s.end
    expected.append(body[pos:])
    assert out.body == "".join(expected)
    assert len(out.links) == len({s.url for s in spans})


def test_link_id_parsing_and_clicks() -> None:
    assert parse_link_id("abcDEF_-1234") == "abcDEF_-1234"
    for bad in ("", "abc", "abcDEF_-1234x", "../etc/passwd", "abcDEF_-12 4"):
        with pytest.raises(ConversionError) as err:
            parse_link_id(bad)
        assert err.value.code == "not_found"
    assert counts_as_click("GET", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)")
    assert counts_as_click("get", None)
    assert not counts_as_click("HEAD", "Mozilla/5.0")
    assert not counts_as_click("GET", "facebookexternalhit/1.1 Facebot Twitterbot/1.0")
    assert not counts_as_click("GET", "WhatsApp/2.23.20.0")


def test_event_requests() -> None:
    assert parse_event_request({"otp_id": "otp_1", "event": "signup"}) == EventRequest(
        "otp", "otp_1", "signup"
    )
    assert parse_event_request({"message_id": "m", "otp_id": None, "event": "payment"}) == EventRequest(
        "message", "m", "payment"
    )
    bad = [
        [],
        {"event": "click"},
        {"message_id": "m", "otp_id": "o", "event": "click"},
        {"message_id": "", "event": "click"},
        {"message_id": 5, "event": "click"},
        {"message_id": "m" * 129, "event": "click"},
        {"message_id": "m", "event": "purchase"},
        {"message_id": "m"},
        {"message_id": "m", "event": ["click"]},
    ]
    for payload in bad:
        with pytest.raises(ConversionError) as err:
            parse_event_request(payload)
        assert err.value.code == "invalid_request"
    assert [parse_event(e) for e in FUNNEL] == list(FUNNEL)


def test_funnel_shares() -> None:
    counts = count_events(["click"] * 200 + ["signup"] * 50 + ["order"] * 10 + ["payment"] * 5)
    assert funnel(counts) == [
        FunnelStep("click", 200, None, None),
        FunnelStep("signup", 50, 0.25, 0.25),
        FunnelStep("order", 10, 0.2, 0.05),
        FunnelStep("payment", 5, 0.5, 0.025),
    ]
    assert funnel({"signup": 3}) == [
        FunnelStep("click", 0, None, None),
        FunnelStep("signup", 3, None, None),
        FunnelStep("order", 0, 0.0, None),
        FunnelStep("payment", 0, None, None),
    ]
    with pytest.raises(ConversionError):
        funnel({"view": 1})
    with pytest.raises(ConversionError):
        count_events(["click", "refund"])
