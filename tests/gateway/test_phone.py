"""The hot-path number parser equals the reference (``phonenumbers`` parse + validate + E.164) on
numbers of every calling code, including trunk-prefixed and transformed forms."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumberType

from gateway.errors import ApiError
from gateway.phone import _parse, _parse_full, parse_number


def samples(seed: int, per_type: int) -> list[str]:
    """Numbers near each region's example numbers (mostly valid), with digits changed, one added or
    dropped, plus random digit strings behind every calling code (mostly invalid)."""
    rng = random.Random(seed)
    out: list[str] = []
    for cc, regions in sorted(COUNTRY_CODE_TO_REGION_CODE.items()):
        for region in regions:
            for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
                ex = phonenumbers.example_number_for_type(region, kind) if region != "001" else None
                if ex is None:
                    continue
                nsn = phonenumbers.national_significant_number(ex)
                for _ in range(per_type):
                    k = rng.randint(0, len(nsn))
                    tail = len(nsn) - k + rng.choice((-1, 0, 0, 0, 1))
                    out.append(f"+{cc}{nsn[:k]}{''.join(rng.choice('0123456789') for _ in range(tail))}")
        out += [f"+{cc}{rng.randrange(10**6, 10**12)}" for _ in range(3)]
    return out


TRICKY = [
    "+4902553325490",  # German trunk 0 written after the country code
    "+116692625482",  # NANP trunk 1
    "+67252537",  # Norfolk Island 5-digit form, transformed by parse
    "+390612345678",  # Italian leading zero, kept
    "+79161234567",
    "+447400123456",
    "+8613800138000",
    "+80012345678",  # non-geographic (001)
]


@pytest.mark.parametrize("seed", [1, 2])
def test_fast_parse_equals_the_reference(seed: int) -> None:
    cases = samples(seed, 12) + TRICKY
    valid = 0
    for text in cases:
        fast, ref = _parse.__wrapped__(text), _parse_full(text)
        if isinstance(ref, str):
            assert isinstance(fast, str), text  # both refuse (the wording may differ)
        else:
            valid += 1
            assert fast == ref, text
    assert valid > len(cases) // 4  # the sample holds plenty of valid numbers


def test_canonical_form_and_refusals() -> None:
    assert parse_number("+4902553325490").e164 == "+492553325490"
    assert parse_number("+447400123456").country == "GB"
    for bad in ("+80012345678", "+4915", "4915123456789", "+49151234567890123"):
        with pytest.raises(ApiError) as e:
            parse_number(bad)
        assert e.value.code == "invalid_number"
