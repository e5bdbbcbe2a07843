"""GSM 03.38 / UCS-2 encoding and UDH segmenting: worked examples, then round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carriers.encoding import (
    DATA_CODING_GSM7,
    DATA_CODING_IA5,
    DATA_CODING_LATIN1,
    DATA_CODING_UCS2,
    ConcatInfo,
    concat_udh,
    count_segments,
    decode_payload,
    gsm7_decode,
    gsm7_encode,
    is_gsm7,
    parse_concat_udh,
    split_message,
    ucs2_decode,
)

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = "\f^{}\\[~]|€"


def test_alphabet_positions_follow_03_38() -> None:
    assert gsm7_encode("@£$¥") == bytes([0x00, 0x01, 0x02, 0x03])
    assert gsm7_encode("Δ_") == bytes([0x10, 0x11])
    assert gsm7_encode("A") == b"\x41"
    assert gsm7_encode("¡¿") == bytes([0x40, 0x60])
    assert gsm7_encode("ÄÖÑÜ§") == bytes([0x5B, 0x5C, 0x5D, 0x5E, 0x5F])
    assert gsm7_encode("äöñüà") == bytes([0x7B, 0x7C, 0x7D, 0x7E, 0x7F])
    assert len(GSM_BASIC) == 127  # 128 positions minus the escape


def test_extension_characters_cost_two_septets() -> None:
    assert gsm7_encode("€") == b"\x1b\x65"
    assert gsm7_encode("{}") == b"\x1b\x28\x1b\x29"
    assert gsm7_encode("[~]|\\^\f") == bytes(
        [0x1B, 0x3C, 0x1B, 0x3D, 0x1B, 0x3E, 0x1B, 0x40, 0x1B, 0x2F, 0x1B, 0x14, 0x1B, 0x0A]
    )
    assert gsm7_decode(b"\x1b\x65") == "€"


def test_what_forces_ucs2() -> None:
    assert is_gsm7("Your code is 123456")
    assert not is_gsm7("ç")  # only capital Ç is in the default alphabet
    assert not is_gsm7("Привет")
    assert not is_gsm7("\x1b")  # the escape itself is not a character we send
    assert split_message("\x1b").data_coding == DATA_CODING_UCS2
    with pytest.raises(ValueError, match="not in the GSM"):
        gsm7_encode("ç")


@pytest.mark.parametrize(
    ("text", "coding", "sizes"),
    [
        ("", DATA_CODING_GSM7, [0]),
        ("a" * 160, DATA_CODING_GSM7, [160]),
        ("a" * 161, DATA_CODING_GSM7, [153, 8]),
        ("a" * 306, DATA_CODING_GSM7, [153, 153]),
        ("a" * 307, DATA_CODING_GSM7, [153, 153, 1]),
        ("€" * 80, DATA_CODING_GSM7, [160]),  # 160 septets: still one SMS
        ("€" * 81, DATA_CODING_GSM7, [152, 10]),  # a pair never straddles: 76 € then 5 €
        ("a" * 152 + "€" + "b", DATA_CODING_GSM7, [155]),  # 155 septets fit one SMS
        ("a" * 152 + "€" + "b" * 10, DATA_CODING_GSM7, [152, 12]),  # € would be septets 153-154
        ("ж" * 70, DATA_CODING_UCS2, [140]),
        ("ж" * 71, DATA_CODING_UCS2, [134, 8]),
        ("😀" * 35, DATA_CODING_UCS2, [140]),  # 70 UTF-16 units
        ("😀" * 36, DATA_CODING_UCS2, [132, 12]),  # 33 pairs fit 67 units, the 34th would not
        ("a" * 66 + "😀", DATA_CODING_UCS2, [136]),  # 68 units ≤ 70: one SMS
        ("a" * 66 + "😀" + "ж" * 3, DATA_CODING_UCS2, [132, 10]),
    ],
)
def test_split_examples(text: str, coding: int, sizes: list[int]) -> None:
    split = split_message(text)
    assert split.data_coding == coding
    assert [len(p) for p in split.parts] == sizes
    assert count_segments(text) == len(sizes)


def test_udh_is_six_octets_and_numbers_the_parts() -> None:
    split = split_message("a" * 200)
    sms = split.with_udh(ref=0xAB)
    assert sms[0][:6] == bytes([0x05, 0x00, 0x03, 0xAB, 0x02, 0x01])
    assert sms[1][:6] == bytes([0x05, 0x00, 0x03, 0xAB, 0x02, 0x02])
    assert all(len(s) <= 6 + 153 for s in sms)
    assert split_message("short").with_udh(ref=1) == [b"short"]  # one SMS: no header


def test_parse_udh_both_reference_sizes_and_bad_headers() -> None:
    assert parse_concat_udh(concat_udh(7, 3, 2) + b"xyz") == (ConcatInfo(7, 3, 2), b"xyz")
    sixteen_bit = bytes([0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01]) + b"hi"
    assert parse_concat_udh(sixteen_bit) == (ConcatInfo(0x1234, 2, 1), b"hi")
    other_ie_first = bytes([0x08, 0x0A, 0x01, 0x00, 0x00, 0x03, 0x09, 0x02, 0x01]) + b"x"
    assert parse_concat_udh(other_ie_first) == (ConcatInfo(9, 2, 1), b"x")
    with pytest.raises(ValueError):
        parse_concat_udh(bytes([0x05, 0x00, 0x03]))
    with pytest.raises(ValueError):
        parse_concat_udh(b"")
    with pytest.raises(ValueError):
        concat_udh(1, 2, 3)


def test_too_long_for_udh_numbering() -> None:
    assert count_segments("a" * 153 * 256) == 256
    with pytest.raises(ValueError, match="255"):
        split_message("a" * 153 * 256)


def test_decode_payload_by_data_coding() -> None:
    assert decode_payload(DATA_CODING_GSM7, gsm7_encode("Grüße €")) == "Grüße €"
    assert decode_payload(DATA_CODING_UCS2, "Привет".encode("utf-16-be")) == "Привет"
    assert decode_payload(DATA_CODING_LATIN1, "café".encode("latin-1")) == "café"
    assert decode_payload(DATA_CODING_IA5, b"plain") == "plain"
    assert ucs2_decode(b"\x00a\x00") == "a"  # an odd trailing octet is dropped


gsm_text = st.text(alphabet=GSM_BASIC + GSM_EXT, max_size=700)


@given(gsm_text)
def test_gsm_round_trip_and_segment_bounds(text: str) -> None:
    split = split_message(text)
    assert split.data_coding == DATA_CODING_GSM7
    assert gsm7_decode(b"".join(split.parts)) == text
    limit = 160 if len(split.parts) == 1 else 153
    for part in split.parts:
        assert len(part) <= limit
    # each part decodes on its own to its share of the text: no ESC was cut from its code
    assert "".join(gsm7_decode(p) for p in split.parts) == text
    assert count_segments(text) == len(split.parts)


@given(st.text(max_size=400))
def test_any_text_round_trips_without_splitting_pairs(text: str) -> None:
    split = split_message(text)
    if split.data_coding == DATA_CODING_UCS2:
        limit = 140 if len(split.parts) == 1 else 134
        for part in split.parts:
            assert len(part) <= limit
            part.decode("utf-16-be")  # strict: raises if a surrogate pair was split
        assert ucs2_decode(b"".join(split.parts)) == text
    else:
        assert gsm7_decode(b"".join(split.parts)) == text
    assert count_segments(text) == len(split.parts)
    sms = split.with_udh(ref=42)
    if len(sms) > 1:
        infos = [parse_concat_udh(s)[0] for s in sms]
        assert infos == [ConcatInfo(42, len(sms), i + 1) for i in range(len(sms))]
