"""SQLite engine of the store: WAL, versioned migrations, group-committed writes, a separate reader."""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.privacy.crypto import Keyring, unwrap_data_key, wrap_data_key
from gateway.store.migrations import MIGRATIONS
from gateway.store.records import MessageRecord, OtpRecord, Principal, Tenant
from gateway.store.writer import GroupWriter, Statement

log = logging.getLogger("smsgw.store")

_MSG_COLS = [f.name for f in fields(MessageRecord)]
_OTP_COLS = [f.name for f in fields(OtpRecord) if f.name != "route"]


T = TypeVar("T")


async def in_db_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` as one job in aiosqlite's connection thread (migrations, key loading).

    aiosqlite has no public call for this; ``_execute`` is how it runs every job, and the version
    is pinned."""
    result: T = await conn._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result


def _pragmas(db: sqlite3.Connection, synchronous: str) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA secure_delete=ON")  # freed pages (e.g. a wiped OTP code) are zeroed
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA foreign_keys=ON")


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns it. Safe to run from several processes."""
    db.execute("BEGIN IMMEDIATE")
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        for i, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for stmt in script.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version={i}")
            log.info("schema migrated", extra={"schema_version": i})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


class SqliteStore:
    """Three connections: hot-path point reads on the loop's thread (tens of microseconds each);
    group-committed writes in the writer's thread (``writer.py``); reads that may touch many rows
    (sweeps, exports, purges) on an aiosqlite connection in its own thread."""

    def __init__(self, path: str, master_key: bytes, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._master = master_key
        self._sync = synchronous
        self.keyring = Keyring(master_key)
        self._db: sqlite3.Connection | None = None
        self._bg: aiosqlite.Connection | None = None
        self.writer: GroupWriter | None = None

    # ----------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._bg = await aiosqlite.connect(self.path, isolation_level=None)
        await in_db_thread(self._bg, _pragmas, self._bg._conn, self._sync)
        await in_db_thread(self._bg, migrate, self._bg._conn)
        await in_db_thread(self._bg, self._load_keyring, self._bg._conn)
        await self._bg.execute("PRAGMA query_only=ON")
        self._bg.row_factory = sqlite3.Row
        self._db = sqlite3.connect(self.path, isolation_level=None)
        _pragmas(self._db, self._sync)
        self._db.execute("PRAGMA query_only=ON")
        wdb = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        _pragmas(wdb, self._sync)
        self.writer = GroupWriter(wdb)
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    def _load_keyring(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute("SELECT key_id, wrapped FROM keyring ORDER BY key_id").fetchall()
            if not rows:
                dek = secrets.token_bytes(32)
                db.execute(
                    "INSERT INTO keyring(key_id, wrapped, created_at) VALUES (1, ?, ?)",
                    (wrap_data_key(self._master, 1, dek), time.time()),
                )
                self.keyring.add(1, dek)
            else:
                for key_id, wrapped in rows:
                    self.keyring.add(int(key_id), unwrap_data_key(self._master, int(key_id), wrapped))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
            self.writer._db.close()
            self.writer = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._bg is not None:
            await self._bg.close()
            self._bg = None

    async def ping(self) -> bool:
        try:
            await self._read_one("SELECT 1", ())
            return True
        except (sqlite3.Error, AssertionError):
            return False

    # ----------------------------------------------------------------- helpers
    async def _write(self, statements: list[Statement], fetch: bool = False) -> tuple[int, list[sqlite3.Row]]:
        assert self.writer is not None, "store is not open"
        res = await self.writer.run(statements, fetch)
        return res.rowcount, res.rows

    async def _read_one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        assert self._db is not None, "store is not open"
        row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
        return row

    async def _read_all(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        """Reads that may touch many rows: in aiosqlite's thread, off the loop."""
        assert self._bg is not None, "store is not open"
        return list(await self._bg.execute_fetchall(sql, params))

    @staticmethod
    def _insert(table: str, cols: list[str], obj: Any) -> Statement:
        sql = f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        return sql, tuple(getattr(obj, c) for c in cols)

    @staticmethod
    def _message(row: sqlite3.Row | tuple[Any, ...]) -> MessageRecord:
        return MessageRecord(*[row[i] for i in range(len(_MSG_COLS))])

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
        await self._write(
            [self._insert("otps", _OTP_COLS, otp), self._insert("messages", _MSG_COLS, message)]
        )

    async def get_otp(self, tenant_id: str, otp_id: str) -> OtpRecord | None:
        row = await self._read_one(
            f"SELECT {', '.join('o.' + c for c in _OTP_COLS)}, m.route FROM otps o "
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
        await self._write([self._insert("messages", _MSG_COLS, message)])

    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageRecord | None:
        cols = ", ".join(_MSG_COLS)
        if tenant_id is None:
            row = await self._read_one(f"SELECT {cols} FROM messages WHERE id = ?", (message_id,))
        else:
            row = await self._read_one(
                f"SELECT {cols} FROM messages WHERE id = ? AND tenant_id = ?", (message_id, tenant_id)
            )
        return self._message(row) if row is not None else None

    async def claim(self, message_id: str, worker: str, now: float, lease: float) -> MessageRecord | None:
        _, rows = await self._write(
            [
                (
                    f"UPDATE messages SET status = 'sending', claimed_by = ?, claimed_until = ?, "
                    f"attempts = attempts + 1, updated_at = ? WHERE id = ? AND "
                    f"(status = 'queued' OR (status = 'sending' AND claimed_until < ?)) "
                    f"RETURNING {', '.join(_MSG_COLS)}",
                    (worker, now + lease, now, message_id, now),
                )
            ],
            fetch=True,
        )
        return self._message(rows[0]) if rows else None

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
    ) -> None:
        # an OTP's sealed code is wiped the moment a carrier holds the message
        await self._write(
            [
                (
                    "UPDATE messages SET status = 'submitted', route = ?, route_reason = ?, carrier = ?, "
                    "carrier_message_id = ?, segments = ?, updated_at = ?, "
                    "claimed_by = NULL, claimed_until = NULL, "
                    "payload_enc = CASE WHEN kind = 'otp' THEN NULL ELSE payload_enc END "
                    "WHERE id = ? AND status = 'sending'",
                    (route, route_reason, carrier, carrier_message_id, segments, now, message_id),
                )
            ]
        )

    async def mark_retry(
        self,
        message_id: str,
        *,
        not_before: float,
        tried_routes: str,
        error_code: str,
        error_reason: str,
        now: float,
    ) -> None:
        await self._write(
            [
                (
                    "UPDATE messages SET status = 'queued', not_before = ?, tried_routes = ?, "
                    "error_code = ?, error_reason = ?, updated_at = ?, "
                    "claimed_by = NULL, claimed_until = NULL WHERE id = ? AND status = 'sending'",
                    (not_before, tried_routes, error_code, error_reason, now, message_id),
                )
            ]
        )

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
                    f"RETURNING {', '.join(_MSG_COLS)}",
                    (status, error_code, now, carrier, carrier_message_id),
                )
            ],
            fetch=True,
        )
        return self._message(rows[0]) if rows else None

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._read_all("SELECT status, COUNT(*) FROM messages GROUP BY status", ())
        return {r[0]: int(r[1]) for r in rows}
