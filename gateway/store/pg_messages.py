"""Tenants, API keys, OTPs and messages on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from gateway.store.pg import PgEngine
from gateway.store.records import MessageRecord, OtpRecord
from gateway.store.tables import MSG_COLS, OTP_COLS, message_from
from gateway.store.writer import Statement

_MSG = ", ".join(MSG_COLS)


def insert_stmt(table: str, cols: list[str], obj: Any) -> Statement:
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    return f"INSERT INTO {table}({', '.join(cols)}) VALUES ({marks})", tuple(getattr(obj, c) for c in cols)


class PgMessagesMixin(PgEngine):
    # ----------------------------------------------------------------- tenants

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

    # ----------------------------------------------------------------- OTPs
    async def insert_otp(self, otp: OtpRecord, message: MessageRecord) -> None:
        await self._write(
            [insert_stmt("otps", OTP_COLS, otp), insert_stmt("messages", MSG_COLS, message)], blind=True
        )

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

    async def apply_receipts(
        self, receipts: Sequence[tuple[str, str, str, str | None]], now: float
    ) -> list[MessageRecord | None]:
        """Concurrent ``apply_receipt`` calls: the PostgreSQL writer pipelines them into its batch."""
        return list(await asyncio.gather(*(self.apply_receipt(c, m, s, e, now) for c, m, s, e in receipts)))
