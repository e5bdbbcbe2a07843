"""Tenants, API keys, OTPs and messages on PostgreSQL."""

from __future__ import annotations

from typing import Any

from gateway.store.pg import PgEngine
from gateway.store.records import MessageRecord, OtpRecord, Principal, Tenant
from gateway.store.tables import MSG_COLS, OTP_COLS, message_from
from gateway.store.writer import Statement

_MSG = ", ".join(MSG_COLS)


def insert_stmt(table: str, cols: list[str], obj: Any) -> Statement:
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    return f"INSERT INTO {table}({', '.join(cols)}) VALUES ({marks})", tuple(getattr(obj, c) for c in cols)


class PgMessagesMixin(PgEngine):
    # ----------------------------------------------------------------- tenants
    async def create_tenant(self, tenant: Tenant, key_hash: bytes, scopes: frozenset[str]) -> None:
        await self._write(
            [
                (
                    "INSERT INTO tenants(id, name, countries, created_at) VALUES ($1, $2, $3, $4)",
                    (tenant.id, tenant.name, ",".join(sorted(tenant.countries)), tenant.created_at),
                ),
                (
                    "INSERT INTO api_keys(key_hash, tenant_id, scopes, created_at) VALUES ($1, $2, $3, $4)",
                    (key_hash, tenant.id, ",".join(sorted(scopes)), tenant.created_at),
                ),
            ]
        )

    async def add_api_key(self, tenant_id: str, key_hash: bytes, scopes: frozenset[str], now: float) -> bool:
        n, _ = await self._write(
            [
                (
                    "INSERT INTO api_keys(key_hash, tenant_id, scopes, created_at) "
                    "SELECT $1, id, $3, $4 FROM tenants WHERE id = $2",
                    (key_hash, tenant_id, ",".join(sorted(scopes)), now),
                )
            ]
        )
        return n == 1

    async def principal_for_key(self, key_hash: bytes) -> Principal | None:
        row = await self._read_one(
            "SELECT t.id, t.name, t.countries, t.created_at, k.scopes FROM api_keys k "
            "JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
            (key_hash,),
        )
        if row is None:
            return None
        tenant = Tenant(row[0], row[1], frozenset(c for c in row[2].split(",") if c), row[3])
        return Principal(tenant, frozenset(s for s in row[4].split(",") if s))

    # ----------------------------------------------------------------- OTPs
    async def insert_otp(self, otp: OtpRecord, message: MessageRecord) -> None:
        await self._write(
            [insert_stmt("otps", OTP_COLS, otp), insert_stmt("messages", MSG_COLS, message)], blind=True
        )

    async def get_otp(self, tenant_id: str, otp_id: str) -> OtpRecord | None:
        row = await self._read_one(
            f"SELECT {', '.join('o.' + c for c in OTP_COLS)}, m.route FROM otps o "
            "LEFT JOIN messages m ON m.id = o.message_id WHERE o.id = $1 AND o.tenant_id = $2",
            (otp_id, tenant_id),
        )
        return OtpRecord(*row) if row is not None else None

    async def finish_otp(self, otp_id: str, status: str, now: float) -> bool:
        n, _ = await self._write(
            [
                (
                    "UPDATE otps SET status = $1, "
                    "verified_at = CASE WHEN $1 = 'verified' THEN $2::float8 END "
                    "WHERE id = $3 AND status = 'pending'",
                    (status, now, otp_id),
                )
            ]
        )
        return n == 1

    # ----------------------------------------------------------------- messages
    async def insert_message(self, message: MessageRecord) -> None:
        await self._write([insert_stmt("messages", MSG_COLS, message)], blind=True)

    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageRecord | None:
        if tenant_id is None:
            row = await self._read_one(f"SELECT {_MSG} FROM messages WHERE id = $1", (message_id,))
        else:
            row = await self._read_one(
                f"SELECT {_MSG} FROM messages WHERE id = $1 AND tenant_id = $2", (message_id, tenant_id)
            )
        return message_from(row) if row is not None else None

    async def claim(self, message_id: str, worker: str, now: float, lease: float) -> MessageRecord | None:
        _, rows = await self._write(
            [
                (
                    "UPDATE messages SET status = 'sending', claimed_by = $1, claimed_until = $2, "
                    "attempts = attempts + 1, updated_at = $3 WHERE id = $4 AND "
                    "(status = 'queued' OR (status = 'sending' AND claimed_until < $3)) "
                    f"RETURNING {_MSG}",
                    (worker, now + lease, now, message_id),
                )
            ],
            fetch=True,
        )
        return message_from(rows[0]) if rows else None

    async def due_messages(self, now: float, limit: int) -> list[str]:
        """SKIP LOCKED: rows another process is claiming right now are left to it, so processes
        sweeping together split the work instead of queueing behind each other's row locks."""
        rows = await self._read_all(
            "SELECT id FROM messages WHERE (status = 'queued' AND not_before <= $1) "
            "OR (status = 'sending' AND claimed_until < $1) ORDER BY not_before LIMIT $2 "
            "FOR UPDATE SKIP LOCKED",
            (now, limit),
        )
        return [r[0] for r in rows]

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
                    "UPDATE messages SET status = 'submitted', route = $1, route_reason = $2, carrier = $3, "
                    "carrier_message_id = $4, segments = $5, updated_at = $6, "
                    "claimed_by = NULL, claimed_until = NULL, "
                    "payload_enc = CASE WHEN kind = 'otp' THEN NULL ELSE payload_enc END "
                    "WHERE id = $7 AND status = 'sending' AND claimed_by = $8",
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
                    "UPDATE messages SET status = 'queued', not_before = $1, tried_routes = $2, "
                    "error_code = $3, error_reason = $4, updated_at = $5, claimed_by = NULL, "
                    "claimed_until = NULL WHERE id = $6 AND status = 'sending' AND claimed_by = $7",
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
                    "UPDATE messages SET status = $1, error_code = $2, error_reason = $3, updated_at = $4, "
                    "route = COALESCE($5, route), route_reason = COALESCE($6, route_reason), "
                    "claimed_by = NULL, claimed_until = NULL, payload_enc = CASE WHEN kind = 'otp' THEN NULL "
                    "ELSE payload_enc END WHERE id = $7",
                    (status, error_code, error_reason, now, route, route_reason, message_id),
                )
            ]
        )

    async def apply_receipt(
        self, carrier: str, carrier_message_id: str, status: str, error_code: str | None, now: float
    ) -> MessageRecord | None:
        _, rows = await self._write(
            [
                (
                    "UPDATE messages SET status = $1, error_code = COALESCE($2, error_code), updated_at = $3 "
                    "WHERE carrier = $4 AND carrier_message_id = $5 AND status IN ('submitted', 'sending') "
                    f"RETURNING {_MSG}",
                    (status, error_code, now, carrier, carrier_message_id),
                )
            ],
            fetch=True,
        )
        return message_from(rows[0]) if rows else None

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._read_all("SELECT status, COUNT(*) FROM messages GROUP BY status", ())
        return {r[0]: int(r[1]) for r in rows}
