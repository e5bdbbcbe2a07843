"""Encryption at rest, keyed look-ups and masking."""

from __future__ import annotations

import secrets

import pytest

from gateway.privacy.crypto import (
    CryptoError,
    Keyring,
    decode_master_key,
    new_master_key,
    unwrap_data_key,
    wrap_data_key,
)
from gateway.privacy.mask import mask_phone, scrub


def ring() -> Keyring:
    r = Keyring(b"m" * 32)
    r.add(1, b"k" * 32)
    return r


def test_seal_open_round_trip_and_binding_to_column() -> None:
    r = ring()
    sealed = r.seal(b"+4915123456789", "phone")
    assert b"4915123456789" not in sealed
    assert r.open(sealed, "phone") == b"+4915123456789"
    with pytest.raises(CryptoError):
        r.open(sealed, "body")  # a value copied into another column does not open
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(CryptoError):
        r.open(bytes(tampered), "phone")


def test_rotation_keeps_old_values_readable_and_lookups_stable() -> None:
    r = ring()
    old = r.seal(b"secret", "body")
    lookup = r.lookup("+4915123456789")
    r.add(2, secrets.token_bytes(32))
    new = r.seal(b"secret", "body")
    assert Keyring.key_id_of(old) == 1 and Keyring.key_id_of(new) == 2
    assert r.open(old, "body") == r.open(new, "body") == b"secret"
    assert r.lookup("+4915123456789") == lookup
    unknown = Keyring(b"m" * 32)
    with pytest.raises(CryptoError):
        unknown.open(new, "body")


def test_code_hash_is_keyed_and_bound_to_the_otp() -> None:
    r = ring()
    h = r.code_hash("otp_a", "123456")
    assert r.code_matches("otp_a", "123456", h)
    assert not r.code_matches("otp_a", "123457", h)
    assert not r.code_matches("otp_b", "123456", h)
    assert Keyring(b"x" * 32).code_hash("otp_a", "123456") != h


def test_data_keys_are_wrapped_by_the_master_key() -> None:
    master = decode_master_key(new_master_key())
    wrapped = wrap_data_key(master, 3, b"d" * 32)
    assert unwrap_data_key(master, 3, wrapped) == b"d" * 32
    with pytest.raises(CryptoError):
        unwrap_data_key(master, 4, wrapped)
    with pytest.raises(CryptoError):
        unwrap_data_key(b"z" * 32, 3, wrapped)


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+4915123456789", "+49*********89"),
        ("+14155550123", "+1********23"),
        ("+33612345678", "+33*******78"),
        ("+8613800138000", "+86*********00"),
        ("12", "+****"),
    ],
)
def test_mask_phone(e164: str, masked: str) -> None:
    assert mask_phone(e164) == masked


def test_scrub_masks_numbers_in_free_text() -> None:
    text = "sent to +49 151 23456789 and 4915123456789, order 1234"
    out = scrub(text)
    assert "23456789" not in out and "4915123456789" not in out and "order 1234" in out
