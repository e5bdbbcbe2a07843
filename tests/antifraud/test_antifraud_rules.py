"""Number rules and geo permissions (decided before any shared state is touched), reason codes."""

from __future__ import annotations

import random
import re

import phonenumbers
import pytest

from antifraud import REASON_CODES, Decision, Reason, TenantPolicy, mask_e164
from antifraud.geo import DEFAULT_ALLOWED_COUNTRIES, LocalClock, country_info, parse_country_list
from antifraud.numbers import number_info
from tests.antifraud.conftest import T0, Rig

ANY = TenantPolicy(allowed_countries=None)


@pytest.mark.parametrize(
    ("e164", "code"),
    [
        ("+449012345678", "number_type_blocked"),  # UK premium rate
        ("+4918012345", "number_type_blocked"),  # DE shared cost
        ("+445512345678", "number_type_blocked"),  # UK UAN
        ("+447012345678", "number_type_blocked"),  # UK personal number
        ("+447640123456", "number_type_blocked"),  # UK pager
        ("+18002345678", "number_type_blocked"),  # US toll free
        ("+881612345678", "number_nongeographic"),  # Iridium: typed mobile, priced like gold
        ("+447700900123", "number_invalid"),  # Ofcom drama range: unassigned
        ("+2340000000000", "number_invalid"),
    ],
)
async def test_rule_level_evidence_blocks(make_rig, e164: str, code: str) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    d = await rig.engine.evaluate(rig.req(e164))
    assert d.action == "block"
    assert d.reasons[0].code == code and d.reasons[0].scope == "number"
    assert e164[3:-2] not in d.reasons[0].message, "never a full number in a message"
    assert d.error_code == "fraud_blocked"


async def test_landlines_and_voip_are_scored_not_refused_by_default(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=ANY)
    assert await rig.send("+4930123456") == "allow"  # DE fixed line
    assert await rig.send("+445612345678") == "allow"  # UK VoIP


async def test_number_type_policy_is_configurable(make_rig) -> None:  # type: ignore[no-untyped-def]
    types = dict(ANY.number_types)
    types["voip"] = "challenge"
    types["fixed_line"] = "block"
    rig: Rig = make_rig(policy=TenantPolicy(allowed_countries=None, number_types=types))
    d = await rig.engine.evaluate(rig.req("+445612345678"))
    assert d.action == "challenge" and d.reasons[0].code == "number_type_challenged"
    assert (await rig.engine.evaluate(rig.req("+445612345678", passed=True))).action == "allow"
    d = await rig.engine.evaluate(rig.req("+4930123456"))
    assert d.action == "block" and d.reasons[0].code == "number_type_blocked"


async def test_geo_permissions_default_to_a_safe_list(make_rig) -> None:  # type: ignore[no-untyped-def]
    rig: Rig = make_rig(policy=TenantPolicy())  # what a new tenant gets
    assert "DE" in DEFAULT_ALLOWED_COUNTRIES and "UZ" not in DEFAULT_ALLOWED_COUNTRIES
    assert await rig.send("+4915123456789") == "allow"
    d = await rig.engine.evaluate(rig.req("+998901234567"))
    assert d.action == "block"
    assert d.reasons == (Reason("country_not_permitted", d.reasons[0].message, "country"),)
    assert d.error_code == "country_not_permitted"  # the contract's 403 code
    rig.engine.set_tenant_policy("t1", TenantPolicy(allowed_countries=parse_country_list("UZ,DE")))
    assert await rig.send("+998901234567") == "allow"
    rig.engine.set_tenant_policy("t1", TenantPolicy(allowed_countries=parse_country_list("ALL")))
    assert await rig.send("+2348021234567") == "allow"


def test_country_lists_parse_and_refuse_garbage() -> None:
    assert parse_country_list("ALL") is None
    assert parse_country_list(" us, de ") == frozenset({"US", "DE"})
    with pytest.raises(ValueError, match="USA"):
        parse_country_list("USA,DE")


def test_decisions_map_to_the_contract() -> None:
    assert Decision("allow").http_status == 202 and Decision("allow").error_code is None
    ch = Decision("challenge", (Reason("range_sweep", "x", "prefix"),))
    assert (ch.http_status, ch.error_code) == (428, "challenge_required")
    assert Decision("rate_limited", retry_after=3.0).error_code == "rate_limited"
    mixed = Decision(
        "block", (Reason("country_not_permitted", "x", "country"), Reason("blocklisted", "y", "number"))
    )
    assert mixed.error_code == "fraud_blocked"
    with pytest.raises(ValueError, match="unknown reason code"):
        Reason("made_up", "x", "number")


def test_every_reason_code_is_snake_case_and_explained() -> None:
    for code, text in REASON_CODES.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code), code
        assert len(text) > 20


def test_masking_keeps_country_code_and_last_two_digits() -> None:
    assert mask_e164("+4915123456789", 49) == "+49*********89"
    assert mask_e164("+998901234567", 998) == "+998*******67"
    assert mask_e164("+12") == "+****"


def test_number_classification_matches_phonenumbers_on_thousands_of_numbers() -> None:
    """``number_info`` finds validity and type in one pass; it must agree with the library's own
    ``is_valid_number`` and ``number_type`` (which each redo the work)."""
    rng = random.Random(3)
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    checked = 0
    for region in regions:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            ex = phonenumbers.example_number_for_type(region, kind)
            if ex is None:
                continue
            e164 = phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.E164)
            for _ in range(4):
                k = rng.randint(1, 4)
                cand = e164[:-k] + "".join(rng.choice("0123456789") for _ in range(k))
                info = number_info(cand)
                num = phonenumbers.parse(cand, None)
                assert info.valid == phonenumbers.is_valid_number(num), cand
                if info.valid:
                    assert info.region == phonenumbers.region_code_for_number(num), cand
                    assert int(phonenumbers.number_type(num)) in _TYPES[info.kind], cand
                checked += 1
    assert checked > 1500


_TYPES = {
    name: {v}
    for name, v in (
        ("fixed_line", 0),
        ("mobile", 1),
        ("fixed_line_or_mobile", 2),
        ("toll_free", 3),
        ("premium_rate", 4),
        ("shared_cost", 5),
        ("voip", 6),
        ("personal_number", 7),
        ("pager", 8),
        ("uan", 9),
        ("voicemail", 10),
    )
}
_TYPES["unknown"] = {99}


def test_ranges_are_digit_prefixes_and_zones_come_without_the_geocoder() -> None:
    info = number_info("+4915123456789")
    assert (info.p5, info.p4, info.p3) == ("+49151234", "+491512345", "+4915123456")
    assert info.zone == "Europe/Berlin" and info.suffix4 == 6789
    clock = LocalClock()
    # 2026-03-02 00:00 UTC is 01:00 in Berlin (CET) and 05:00 in Tashkent
    assert clock.hour("Europe/Berlin", T0) == pytest.approx(1.0)
    assert clock.hour(number_info("+998901234567").zone, T0) == pytest.approx(5.0)
    assert clock.hour(None, T0) == pytest.approx(0.0)


@pytest.mark.parametrize("zone", ["Australia/Adelaide", "Asia/Kathmandu", "Pacific/Chatham", "Europe/Berlin"])
def test_a_cached_offset_never_outlives_a_dst_change(zone: str) -> None:
    """Adelaide (+9:30/+10:30) moves its clocks at 16:30 UTC, Chatham (+12:45/+13:45) at 14:00 UTC: the
    cache must follow to the minute, whatever time it was filled at. Checked against zoneinfo itself,
    every 5 minutes across the two days around each change of 2026."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    clock = LocalClock()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    changes = []
    prev = dt.datetime.fromtimestamp(start, tz).utcoffset()
    for h in range(1, 366 * 24):  # the hours of 2026 in which the offset changed
        off = dt.datetime.fromtimestamp(start + h * 3600, tz).utcoffset()
        if off != prev:
            changes.append(start + h * 3600)
        prev = off
    assert len(changes) == (0 if zone == "Asia/Kathmandu" else 2)
    for change in changes or [start]:
        for t in range(int(change - 86400), int(change + 86400), 300):
            expected = dt.datetime.fromtimestamp(t, tz).utcoffset()
            assert expected is not None
            assert clock.offset(zone, float(t)) == expected.total_seconds(), (zone, t)


def test_country_priors_cover_the_high_cost_destinations() -> None:
    uz, de = country_info("UZ"), country_info("DE")
    assert uz.price_usd > 0.1 > de.price_usd / 2 and uz.risk > de.risk
    assert country_info("XX").iso == "ZZ"  # unknown countries are treated as risky, not free
