"""Every shared-state key and counter field of the anti-fraud engine, kept together (as arq does).

Keys never contain a phone number, an IP address or a device id in clear: those are replaced by a
keyed BLAKE2b hash (``FraudSettings.key_secret``). Range keys contain digit *prefixes* (at most
E.164 minus 3 digits), which are not numbers of anyone. ``<t>`` is a tenant id, ``*`` across tenants.

========================  =============================================  ==================
key                       what                                           lives
========================  =============================================  ==================
``r:<t>:all:``            the tenant's totals (volume, fill-back)         3 × long τ
``r:<t|*>:cc:<cc>``       a destination country                           3 × long τ
``r:<t|*>:p5:<prefix>``   a 100k block (E.164 minus 5 digits)             3 × long τ
``r:*:p4:<prefix>``       a 10k block                                     4 × fill-back τ
``r:*:p3:<prefix>``       a 1k block                                      4 × fill-back τ
``n:<t>:<hash>``          one number for one tenant                       14 days
``d:<t>:<hash>``          one device for one tenant                       14 days
``rs:<t>:<hash>:<hash>``  one session (or device) asking for one number   2 × resend τ
``ip:<hash>``             one client IP, across tenants                   2 days
``ipc:<hash>``            last destination countries of an IP (list)      1 day
``sw:<hash of p4>``       last numbers requested in a 10k block (list)    2 × sweep window
``lim:<scope>:<t>:<v>``   rate-limit windows of one scope value           2 × longest window
``allow:<t>``             allow-list and lifted blocks (hash)             until removed
``block:<t>``             admin block list (hash)                         until removed
``dec:<t>``               recent refusals for review (list, JSON)         capped length
========================  =============================================  ==================
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from antifraud.settings import FraudSettings

# Counter fields of range hashes ("decayed" as explained in limits.py).
SENT = "n"  # sends                                  τ fill-back
EXPECTED = "x"  # Σ p of sends (p = expected verify prob.)  τ fill-back
VERIFIED = "v"  # verifications, credited at send time       τ fill-back
FAILED = "f"  # delivery failures, credited at send time      τ fill-back
REQUESTS = "q"  # every evaluated request                     τ short
LONG_SENT = "l"  # sends                                      τ long
LONG_VERIFIED = "w"  # verifications                          τ long
CHALLENGED = "h"  # requests answered with a challenge        τ fill-back
CH_PASSED_REQ = "j"  # requests with a passed challenge       τ fill-back
CH_SENT = "k"  # sends after a passed challenge                τ fill-back
CH_EXPECTED = "e"  # Σ p of those                              τ fill-back
CH_VERIFIED = "u"  # their verifications                       τ fill-back
# Pending mass components p0..p3: Σ p·exp(-age/θ_i), τ = 1/(1/θ_i + 1/τ fill-back)
# Entity fields
NUM_SENT = "ns"  # sends to the number                        τ number (1 day)
NUM_VERIFIED = "nv"  # its verifications                      τ number
NUM_HISTORY = "nh"  # its verifications                       τ history (30 days)
DEV_REQUESTS = "dq"  # requests from the device               τ number
DEV_HISTORY = "dh"  # its verifications                       τ history
IP_SHORT = "iq"  # requests from the IP                       τ short
IP_DAY = "id"  # requests from the IP                         τ number
IP_VERIFIED = "iv"  # verifications of codes it asked for     τ number
RESEND_SENT = "rs"  # codes sent to a number for one session   τ resend (an OTP's lifetime)


def pending_fields(n: int) -> tuple[str, ...]:
    return tuple(f"p{i}" for i in range(n))


@dataclass(frozen=True, slots=True)
class Keyring:
    prefix: str
    secret: bytes
    # the keyed hasher with the key already absorbed: copying it is cheaper than keying a new one
    _keyed: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", hashlib.blake2b(key=self.secret[:64], digest_size=9))

    @classmethod
    def of(cls, settings: FraudSettings) -> Keyring:
        return cls(settings.key_prefix, settings.key_secret)

    def hash(self, value: str) -> str:
        """Keyed BLAKE2b of ``value`` (9 bytes, hex)."""
        h = self._keyed.copy()
        h.update(value.encode())
        digest: str = h.hexdigest()
        return digest

    def range(self, tenant: str, depth: str, value: str) -> str:
        return f"{self.prefix}r:{tenant}:{depth}:{value}"

    def number(self, tenant: str, number_hash: str) -> str:
        return f"{self.prefix}n:{tenant}:{number_hash}"

    def device(self, tenant: str, device_hash: str) -> str:
        return f"{self.prefix}d:{tenant}:{device_hash}"

    def resend(self, tenant: str, who_hash: str, number_hash: str) -> str:
        """Codes sent to one number at the request of one session (or device): a resend marker."""
        return f"{self.prefix}rs:{tenant}:{who_hash}:{number_hash}"

    def ip(self, ip_hash: str) -> str:
        return f"{self.prefix}ip:{ip_hash}"

    def ip_countries(self, ip_hash: str) -> str:
        return f"{self.prefix}ipc:{ip_hash}"

    def sweep(self, p4: str) -> str:
        return self.sweep_of(self.hash(p4))

    def sweep_of(self, p4_hash: str) -> str:
        """The sweep list of a 10k block, by the block's hash (callers that remember hashes)."""
        return f"{self.prefix}sw:{p4_hash}"

    def limit(self, scope: str, tenant: str, value: str) -> str:
        return f"{self.prefix}lim:{scope}:{tenant}:{value}"

    def allow(self, tenant: str) -> str:
        return f"{self.prefix}allow:{tenant}"

    def block(self, tenant: str) -> str:
        return f"{self.prefix}block:{tenant}"

    def decisions(self, tenant: str) -> str:
        return f"{self.prefix}dec:{tenant}"


ALL_TENANTS = "*"
