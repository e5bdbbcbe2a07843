"""Tenants, API keys, OTPs and messages on SQLite."""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from typing import Any

from gateway.store.records import MessageRecord, OtpRecord, Principal, Tenant
from gateway.store.sqlite import SqliteEngine
from gateway.store.writer import Statement

MSG_COLS = [f.name for f in fields(MessageRecord)]
OTP_COLS = [f.name for f in fields(OtpRecord) if f.name != "route"]


def insert_stmt(table: str, cols: list[str], obj: Any) -> Statement:
    sql = f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    return sql, tuple(getattr(obj, c) for c in cols)


def message_from(row: sqlite3.Row | tuple[Any, ...]) -> MessageRecord:
    return MessageRecord(*[row[i] for i in range(len(MSG_COLS))])


class MessagesMixin(SqliteEngine):
    # ----------------------------------------------------------------- tenants
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

    async def add_api_key(self, tenant_id: str, key_hash: bytes, scopes: frozenset[str], now: float) -> bool:
        """Another key for an existing tenant; False when there is no such tenant."""
        row = await self._read_one("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,))
        if row is None:
            return False
        await self._write(
            [
                (
                    "INSERT INTO api_keys(key_hash, tenant_id, scopes, created_at) VALUES (?, ?, ?, ?)",
                    (key_hash, tenant_id, ",".join(sorted(scopes)), now),
                )
            ]
        )
        return True

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

    # ----------------------------------------------------------------- OTPs
    async def insert_otp(self, otp: OtpRecord, message: MessageRecord) -> None:
        await self._write([insert_stmt("otps", OTP_COLS, otp), insert_stmt("messages", MSG_COLS, message)])

    async def get_otp(self, tenant_id: str, otp_id: str) -> OtpRecord | None:
        row = await self._read_one(
            f"SELECT {', '.join('o.' + c for c in OTP_COLS)}, m.route FROM otps o "
            "LEFT JOIN messages m ON m.id = o.message_id WHERE o.id = ? AND o.tenant_id = ?",
            (otp_id, tenant_id),
        )
        return OtpRecord(*row) if row is not None else None

    async def finish_otp(self, otp_id: str, status: str, now: float) -> bool:
        n, _ = await self._write(
            [
                (
                    "UPDATE otps SET status = ?, verified_at = CASE WHEN ? = 'verified' THEN ? END "
                    "WHERE id = ? AND status = 'pending'",
                    (status, status, now, otp_id),
                )
            ]
        )
        return n == 1

    # ----------------------------------------------------------------- messages
    async def insert_message(self, message: MessageRecord) -> None:
        await self._write([insert_stmt("messages", MSG_COLS, message)])

    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageRecord | None:
        cols = ", ".join(MSG_COLS)
        if tenant_id is None:
            row = await self._read_one(f"SELECT {cols} FROM messages WHERE id = ?", (message_id,))
        else:
            row = await self._read_one(
                f"SELECT {cols} FROM messages WHERE id = ? AND tenant_id = ?", (message_id, tenant_id)
            )
        return message_from(row) if row is not None else None

    async def claim(self, message_id: str, worker: str, now: float, lease: float) -> MessageRecord | None:
        _, rows = await self._write(
            [
                (
                    f"UPDATE messages SET status = 'sending', claimed_by = ?, claimed_until = ?, "
                    f"attempts = attempts + 1, updated_at = ? WHERE id = ? AND "
                    f"(status = 'queued' OR (status = 'sending' AND claimed_until < ?)) "
                    f"RETURNING {', '.join(MSG_COLS)}",
                    (worker, now + lease, now, message_id, now),
                )
            ],
            fetch=True,
        )
        return message_from(rows[0]) if rows else None

    async def due_messages(self, now: float, limit: int) -> list[str]:
        rows = await self._read_all(
            "SELECT id FROM messages WHERE (status = 'queued' AND not_before <= ?) "
            "OR (status = 'sending' AND claimed_until < ?) ORDER BY not_before LIMIT ?",
            (now, now, limit),
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

    async def apply_receipt(
        self, carrier: str, carrier_message_id: str, status: str, error_code: str | None, now: float
    ) -> MessageRecord | None:
        _, rows = await self._write(
            [
                (
                    f"UPDATE messages SET status = ?, error_code = COALESCE(?, error_code), updated_at = ? "
                    f"WHERE carrier = ? AND carrier_message_id = ? AND status IN ('submitted', 'sending') "
                    f"RETURNING {', '.join(MSG_COLS)}",
                    (status, error_code, now, carrier, carrier_message_id),
                )
            ],
            fetch=True,
        )
        return message_from(rows[0]) if rows else None

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._read_all("SELECT status, COUNT(*) FROM messages GROUP BY status", ())
        return {r[0]: int(r[1]) for r in rows}
