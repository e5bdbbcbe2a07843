"""The queries both engines run word for word: written once, with ``?`` placeholders (the
PostgreSQL engine numbers them, ``$1 …``, once per statement text). Each engine's own SQL stays in
its ``sqlite_*.py`` / ``pg_*.py`` modules; this class only needs ``_write``, ``_read_one`` and
``_read_all`` from the engine it is mixed into."""

from __future__ import annotations

import json
from typing import Any

from gateway.store.records import ApiKeyInfo, OtpRecord, Principal, Tenant
from gateway.store.tables import OTP_COLS
from gateway.store.writer import Statement


class SharedQueries:
    """Mixed into both engines' stores after their own areas; the engine fills the three helpers."""

    async def _write(self, statements: list[Statement], fetch: bool = False) -> tuple[int, list[Any]]:
        raise NotImplementedError

    async def _read_one(self, sql: str, params: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    async def _read_all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        raise NotImplementedError

    # ----------------------------------------------------------------- messages
    async def create_tenant(self, tenant: Tenant, key_hash: bytes, scopes: frozenset[str]) -> None:
        await self._write(
            [
                (
                    "INSERT INTO tenants(id, name, countries, created_at) VALUES (?, ?, ?, ?)",
                    (tenant.id, tenant.name, ",".join(sorted(tenant.countries)), tenant.created_at),
                ),
                (
                    "INSERT INTO api_keys(key_hash, tenant_id, scopes, created_at) VALUES (?, ?, ?, ?)",
                    (key_hash, tenant.id, ",".join(sorted(scopes)), tenant.created_at),
                ),
            ]
        )

    async def principal_for_key(self, key_hash: bytes) -> Principal | None:
        row = await self._read_one(
            "SELECT t.id, t.name, t.countries, t.created_at, k.scopes FROM api_keys k "
            "JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = ? AND k.revoked_at IS NULL",
            (key_hash,),
        )
        if row is None:
            return None
        tenant = Tenant(row[0], row[1], frozenset(c for c in row[2].split(",") if c), row[3])
        return Principal(tenant, frozenset(s for s in row[4].split(",") if s))

    async def api_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        rows = await self._read_all(
            "SELECT key_hash, scopes, created_at, revoked_at FROM api_keys WHERE tenant_id = ? "
            "ORDER BY created_at, key_hash",
            (tenant_id,),
        )
        return [ApiKeyInfo(bytes(r[0]), frozenset(s for s in r[1].split(",") if s), r[2], r[3]) for r in rows]

    async def revoke_api_key(self, tenant_id: str, key_hash: bytes, now: float) -> bool:
        n, _ = await self._write(
            [
                (
                    "UPDATE api_keys SET revoked_at = ? "
                    "WHERE key_hash = ? AND tenant_id = ? AND revoked_at IS NULL",
                    (now, key_hash, tenant_id),
                )
            ]
        )
        return n == 1

    async def get_otp(self, tenant_id: str, otp_id: str) -> OtpRecord | None:
        row = await self._read_one(
            f"SELECT {', '.join('o.' + c for c in OTP_COLS)}, m.route FROM otps o "
            "LEFT JOIN messages m ON m.id = o.message_id WHERE o.id = ? AND o.tenant_id = ?",
            (otp_id, tenant_id),
        )
        return OtpRecord(*row) if row is not None else None

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
        worker: str,
    ) -> bool:
        # an OTP's sealed code is wiped the moment a carrier holds the message
        n, _ = await self._write(
            [
                (
                    "UPDATE messages SET status = 'submitted', route = ?, route_reason = ?, carrier = ?, "
                    "carrier_message_id = ?, segments = ?, updated_at = ?, "
                    "claimed_by = NULL, claimed_until = NULL, "
                    "payload_enc = CASE WHEN kind = 'otp' THEN NULL ELSE payload_enc END "
                    "WHERE id = ? AND status = 'sending' AND claimed_by = ?",
                    (route, route_reason, carrier, carrier_message_id, segments, now, message_id, worker),
                )
            ]
        )
        return n == 1

    async def mark_retry(
        self,
        message_id: str,
        *,
        not_before: float,
        tried_routes: str,
        error_code: str,
        error_reason: str,
        now: float,
        worker: str,
    ) -> bool:
        n, _ = await self._write(
            [
                (
                    "UPDATE messages SET status = 'queued', not_before = ?, tried_routes = ?, "
                    "error_code = ?, error_reason = ?, updated_at = ?, claimed_by = NULL, "
                    "claimed_until = NULL WHERE id = ? AND status = 'sending' AND claimed_by = ?",
                    (not_before, tried_routes, error_code, error_reason, now, message_id, worker),
                )
            ]
        )
        return n == 1

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
    ) -> None:
        await self._write(
            [
                (
                    "UPDATE messages SET status = ?, error_code = ?, error_reason = ?, updated_at = ?, "
                    "route = COALESCE(?, route), route_reason = COALESCE(?, route_reason), "
                    "claimed_by = NULL, claimed_until = NULL, payload_enc = CASE WHEN kind = 'otp' THEN NULL "
                    "ELSE payload_enc END WHERE id = ?",
                    (status, error_code, error_reason, now, route, route_reason, message_id),
                )
            ]
        )

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._read_all("SELECT status, COUNT(*) FROM messages GROUP BY status", ())
        return {r[0]: int(r[1]) for r in rows}

    # ----------------------------------------------------------------- privacy
    async def record_privacy_request(
        self,
        *,
        request_id: str,
        tenant_id: str,
        kind: str,
        subject_hmac: bytes,
        subject_masked: str,
        received_at: float,
        due_at: float,
        completed_at: float | None,
        result: str | None,
    ) -> None:
        await self._write(
            [
                (
                    "INSERT INTO privacy_requests(id, tenant_id, kind, subject_hmac, subject_masked, "
                    "received_at, due_at, completed_at, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        request_id,
                        tenant_id,
                        kind,
                        subject_hmac,
                        subject_masked,
                        received_at,
                        due_at,
                        completed_at,
                        result,
                    ),
                )
            ]
        )

    async def consent_status(self, tenant_id: str, phone_hmac: bytes) -> str | None:
        row = await self._read_one(
            "SELECT status FROM consent WHERE tenant_id = ? AND phone_hmac = ?", (tenant_id, phone_hmac)
        )
        return None if row is None else str(row[0])

    async def tenants_messaging(self, phone_hmac: bytes, sender: str | None) -> list[str]:
        if sender:
            rows = await self._read_all(
                "SELECT DISTINCT tenant_id FROM messages WHERE phone_hmac = ? AND sender = ?",
                (phone_hmac, sender),
            )
        else:
            rows = await self._read_all(
                "SELECT DISTINCT tenant_id FROM messages WHERE phone_hmac = ?", (phone_hmac,)
            )
        return [str(r[0]) for r in rows]

    # ----------------------------------------------------------------- senderid
    async def get_registration(self, tenant_id: str, reg_id: str) -> dict[str, Any] | None:
        row = await self._read_one(
            "SELECT data FROM sender_registrations WHERE id = ? AND tenant_id = ?", (reg_id, tenant_id)
        )
        return None if row is None else dict(json.loads(row[0]))

    async def list_registrations(self, tenant_id: str | None) -> list[dict[str, Any]]:
        if tenant_id is None:
            rows = await self._read_all("SELECT data FROM sender_registrations ORDER BY created_at", ())
        else:
            rows = await self._read_all(
                "SELECT data FROM sender_registrations WHERE tenant_id = ? "
                "ORDER BY created_at DESC LIMIT 1000",
                (tenant_id,),
            )
        return [dict(json.loads(r[0])) for r in rows]

    async def documents(self, tenant_id: str, registration_id: str) -> list[dict[str, Any]]:
        rows = await self._read_all(
            "SELECT id, code, filename, content_type, size, uploaded_at FROM sender_documents "
            "WHERE tenant_id = ? AND registration_id = ? ORDER BY uploaded_at",
            (tenant_id, registration_id),
        )
        return [
            dict(zip(("id", "code", "filename", "content_type", "size", "uploaded_at"), r, strict=True))
            for r in rows
        ]

    async def get_brand(self, tenant_id: str) -> dict[str, Any] | None:
        row = await self._read_one("SELECT profile FROM brand_profiles WHERE tenant_id = ?", (tenant_id,))
        return None if row is None else dict(json.loads(row[0]))

    async def tenant_settings(self, tenant_id: str | None = None) -> dict[str, dict[str, Any]]:
        if tenant_id is None:
            rows = await self._read_all("SELECT id, settings FROM tenants", ())
        else:
            rows = await self._read_all("SELECT id, settings FROM tenants WHERE id = ?", (tenant_id,))
        return {str(r[0]): dict(json.loads(r[1])) for r in rows}

    # ----------------------------------------------------------------- webhooks
    async def delete_webhook(self, tenant_id: str) -> bool:
        n, _ = await self._write([("DELETE FROM tenant_webhooks WHERE tenant_id = ?", (tenant_id,))])
        return n == 1

    async def outbox_retry(
        self, event_id: str, *, attempt: int, due: float, worker: str, lease_until: float
    ) -> bool:
        n, _ = await self._write(
            [
                (
                    "UPDATE webhook_outbox SET attempt = ?, due = ?, claimed_until = ? "
                    "WHERE event_id = ? AND claimed_by = ?",
                    (attempt, due, lease_until, event_id, worker),
                )
            ]
        )
        return n == 1
