"""The durable store's interface. ``SqliteStore`` fills it now; a PostgreSQL engine can fill it later.

Writes are group-committed: an awaiting caller resumes only after its write is durable, but many
callers share one transaction. Every method that takes a tenant id scopes its query to that tenant, so
another tenant's object reads as absent (the API answers 404).
"""

from __future__ import annotations

from typing import Protocol

from gateway.privacy.crypto import Keyring
from gateway.store.records import MessageRecord, OtpRecord, Principal, Tenant


class Store(Protocol):
    keyring: Keyring

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    # tenants and keys
    async def create_tenant(self, tenant: Tenant, key_hash: bytes, scopes: frozenset[str]) -> None: ...
    async def principal_for_key(self, key_hash: bytes) -> Principal | None: ...

    # OTPs and messages
    async def insert_otp(self, otp: OtpRecord, message: MessageRecord) -> None: ...
    async def get_otp(self, tenant_id: str, otp_id: str) -> OtpRecord | None: ...
    async def finish_otp(self, otp_id: str, status: str, now: float) -> bool:
        """pending -> verified/expired/failed; False when it was no longer pending."""
        ...

    async def insert_message(self, message: MessageRecord) -> None: ...
    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageRecord | None: ...

    # dispatch
    async def claim(self, message_id: str, worker: str, now: float, lease: float) -> MessageRecord | None: ...
    async def due_messages(self, now: float, limit: int) -> list[str]: ...
    async def mark_submitted(
        self,
        message_id: str,
        *,
        route: str,
        route_reason: str,
        carrier: str,
        carrier_message_id: str,
        segments: int,
        now: float,
    ) -> None: ...
    async def mark_retry(
        self,
        message_id: str,
        *,
        not_before: float,
        tried_routes: str,
        error_code: str,
        error_reason: str,
        now: float,
    ) -> None: ...
    async def mark_final(
        self,
        message_id: str,
        *,
        status: str,
        error_code: str | None,
        error_reason: str | None,
        now: float,
        route: str | None = None,
        route_reason: str | None = None,
    ) -> None: ...
    async def apply_receipt(
        self, carrier: str, carrier_message_id: str, status: str, error_code: str | None, now: float
    ) -> MessageRecord | None: ...
    async def count_by_status(self) -> dict[str, int]: ...
