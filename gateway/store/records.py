"""Plain records the store reads and writes. Personal data stays sealed (``*_enc``) in these records;
only the services that need the clear value open it with the store's keyring."""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = ("send", "verify", "onboarding", "admin")


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    countries: frozenset[str]  # ISO codes; "*" = every country
    created_at: float

    def may_send_to(self, country: str) -> bool:
        return "*" in self.countries or country in self.countries


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: Tenant
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """One API key as an operator lists it: never the key, only its hash (whose first 6 bytes in hex
    are the key id the CLI shows and revokes by)."""

    key_hash: bytes
    scopes: frozenset[str]
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class OtpRecord:
    id: str
    tenant_id: str
    phone_enc: bytes
    phone_hmac: bytes
    country: str
    code_hash: bytes
    status: str  # pending | verified | expired | failed
    created_at: float
    expires_at: float
    message_id: str
    locale: str
    template: str
    challenged: bool = False  # sent after a passed challenge (anti-fraud tracks their fill-back apart)
    verified_at: float | None = None
    route: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    tenant_id: str
    kind: str  # otp | transactional | marketing
    phone_enc: bytes
    phone_hmac: bytes
    country: str
    sender: str
    payload_enc: bytes | None  # OTP: the sealed code until handed over; others: the sealed body
    status: str  # queued | sending | submitted | delivered | failed | expired | rejected
    created_at: float
    updated_at: float
    not_before: float
    expires_at: float | None = None
    otp_id: str | None = None
    locale: str | None = None
    template: str | None = None
    route: str | None = None
    route_reason: str | None = None
    carrier: str | None = None
    carrier_message_id: str | None = None
    error_code: str | None = None
    error_reason: str | None = None
    attempts: int = 0
    segments: int | None = None
    tried_routes: str = ""
    claimed_by: str | None = None  # the dispatcher holding it (status "sending") until claimed_until
    claimed_until: float | None = None
    brand_class: str = "international"  # of the tenant's brand in the destination country (routing)
