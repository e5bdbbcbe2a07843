"""Tenants, API keys, OTPs and messages on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from operator import attrgetter

from gateway.store.records import MessageRecord, OtpRecord
from gateway.store.sqlite import SqliteEngine
from gateway.store.tables import MSG_COLS, OTP_COLS, message_from


def _insert_sql(table: str, cols: list[str]) -> str:
    return f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


# the hot path's inserts: the SQL text built once (sqlite3's statement cache then finds the prepared
# statement under the same string object) and a row's values taken by one C-level attrgetter, not a
# generator of getattr calls per message
_INSERT_MSG = _insert_sql("messages", MSG_COLS)
_INSERT_OTP = _insert_sql("otps", OTP_COLS)
_MSG_ROW = attrgetter(*MSG_COLS)
_OTP_ROW = attrgetter(*OTP_COLS)
_RECEIPT = (
    "UPDATE messages SET status = ?, error_code = COALESCE(?, error_code), updated_at = ? "
    "WHERE carrier = ? AND carrier_message_id = ? AND status IN ('submitted', 'sending') "
    f"RETURNING {', '.join(MSG_COLS)}"
)


class MessagesMixin(SqliteEngine):
    # ----------------------------------------------------------------- tenants

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

    # ----------------------------------------------------------------- OTPs
    async def insert_otp(self, otp: OtpRecord, message: MessageRecord) -> None:
        await self._write([(_INSERT_OTP, _OTP_ROW(otp)), (_INSERT_MSG, _MSG_ROW(message))])

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
        await self._write([(_INSERT_MSG, _MSG_ROW(message))])

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

    async def apply_receipt(
        self, carrier: str, carrier_message_id: str, status: str, error_code: str | None, now: float
    ) -> MessageRecord | None:
        return (await self.apply_receipts([(carrier, carrier_message_id, status, error_code)], now))[0]

    async def apply_receipts(
        self, receipts: Sequence[tuple[str, str, str, str | None]], now: float
    ) -> list[MessageRecord | None]:
        """One writer operation for the whole batch: no task, future and operation per receipt."""

        def apply(db: sqlite3.Connection) -> list[MessageRecord | None]:
            out: list[MessageRecord | None] = []
            for carrier, carrier_message_id, status, error_code in receipts:
                rows = db.execute(_RECEIPT, (status, error_code, now, carrier, carrier_message_id)).fetchall()
                out.append(message_from(rows[0]) if rows else None)
            return out

        if not receipts:
            return []
        assert self.writer is not None, "store is not open"
        done: list[MessageRecord | None] = await self.writer.run_fn(apply)
        return done
