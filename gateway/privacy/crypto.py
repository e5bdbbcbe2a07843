"""Encryption at rest and keyed look-ups.

Envelope encryption: the master key (``SMSGW_MASTER_KEY``, the key-encryption key) never touches data.
It wraps versioned data keys (kept, wrapped, in each store's ``keyring`` table) and derives, with HKDF,
the two keys that must NOT change when data keys rotate:

* the look-up key: HMAC-SHA256 of a phone number, so rows can be found by number without decrypting;
* the code key: HMAC-SHA256 of (otp id, code), the only form in which an OTP code is stored.

A sealed value is ``b"\\x01" | key_id (4 bytes, big endian) | nonce (12) | AES-256-GCM ciphertext+tag``, with
the column's name as associated data so a value copied into another column does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.ids import random_bytes

_VERSION = 1
_HEADER = struct.Struct(">BI")


class CryptoError(Exception):
    """A sealed value could not be opened (wrong key, tampered, unknown key id)."""


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"smsgw-v1", info=info).derive(master)


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def decode_master_key(text: str) -> bytes:
    key = base64.b64decode(text.strip(), validate=True)
    if len(key) != 32:
        raise CryptoError("master key must be 32 bytes")
    return key


def wrap_data_key(master: bytes, key_id: int, data_key: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_derive(master, b"wrap")).encrypt(nonce, data_key, b"dek:%d" % key_id)


def unwrap_data_key(master: bytes, key_id: int, wrapped: bytes) -> bytes:
    try:
        return AESGCM(_derive(master, b"wrap")).decrypt(wrapped[:12], wrapped[12:], b"dek:%d" % key_id)
    except InvalidTag:
        raise CryptoError(f"data key {key_id} does not unwrap: wrong SMSGW_MASTER_KEY?") from None


@dataclass
class Keyring:
    """Data keys by id plus the derived look-up and code keys. Pure: no I/O."""

    master: bytes
    data_keys: dict[int, bytes] = field(default_factory=dict)
    active_id: int = 0
    # asked for a key id this ring has not seen (added by a rotation in another process); returns the
    # unwrapped key or None
    fetch_key: Callable[[int], bytes | None] | None = None

    def __post_init__(self) -> None:
        self._lookup_key = _derive(self.master, b"lookup")
        self._code_key = _derive(self.master, b"otp-code")
        self.audit_key = _derive(self.master, b"audit-chain")
        self._aead: dict[int, AESGCM] = {k: AESGCM(v) for k, v in self.data_keys.items()}

    def add(self, key_id: int, data_key: bytes, *, activate: bool = True) -> None:
        self.data_keys[key_id] = data_key
        self._aead[key_id] = AESGCM(data_key)
        if activate:
            self.active_id = key_id

    def seal(self, plaintext: bytes, column: str) -> bytes:
        nonce = random_bytes(12)  # the OS's CSPRNG, read in blocks (gateway.ids)
        aead = self._aead[self.active_id]
        return (
            _HEADER.pack(_VERSION, self.active_id) + nonce + aead.encrypt(nonce, plaintext, column.encode())
        )

    def open(self, sealed: bytes, column: str) -> bytes:
        if len(sealed) < _HEADER.size + 12 + 16:
            raise CryptoError("sealed value too short")
        version, key_id = _HEADER.unpack_from(sealed)
        if version != _VERSION:
            raise CryptoError(f"unknown sealed-value version {version}")
        aead = self._aead.get(key_id)
        if aead is None and self.fetch_key is not None:
            fetched = self.fetch_key(key_id)
            if fetched is not None:
                self.add(key_id, fetched, activate=key_id > self.active_id)
                aead = self._aead[key_id]
        if aead is None:
            raise CryptoError(f"unknown data key id {key_id}")
        start = _HEADER.size
        try:
            return aead.decrypt(sealed[start : start + 12], sealed[start + 12 :], column.encode())
        except InvalidTag:
            raise CryptoError("sealed value does not authenticate") from None

    @staticmethod
    def key_id_of(sealed: bytes) -> int:
        return int(_HEADER.unpack_from(sealed)[1])

    def lookup(self, value: str) -> bytes:
        """Stable keyed hash for equality look-ups (survives data-key rotation)."""
        return hmac.new(self._lookup_key, value.encode(), hashlib.sha256).digest()

    def code_hash(self, otp_id: str, code: str) -> bytes:
        return hmac.new(self._code_key, f"{otp_id}:{code}".encode(), hashlib.sha256).digest()

    def code_matches(self, otp_id: str, code: str, stored: bytes) -> bool:
        return hmac.compare_digest(self.code_hash(otp_id, code), stored)


def hash_api_key(api_key: str) -> bytes:
    """API keys carry 256 bits of randomness, so a plain SHA-256 cannot be brute-forced back."""
    return hashlib.sha256(api_key.encode()).digest()
