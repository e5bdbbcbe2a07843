"""SQLite engine of the store: connections, WAL, versioned migrations, group-committed writes.

The store's methods live in area modules (``sqlite_messages.py``, ``sqlite_privacy.py``) as mixins over
:class:`SqliteEngine`; ``gateway/store/__init__.py`` assembles them into ``SqliteStore``."""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.privacy.crypto import Keyring, unwrap_data_key, wrap_data_key
from gateway.store.migrations import MIGRATIONS
from gateway.store.tables import SEALED
from gateway.store.writer import GroupWriter, Statement

log = logging.getLogger("smsgw.store")


T = TypeVar("T")


async def in_db_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` as one job in aiosqlite's connection thread (migrations, key loading).

    aiosqlite has no public call for this; ``_execute`` is how it runs every job, and the version
    is pinned."""
    result: T = await conn._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result


#: below this much free space on the database's file system, /readyz reports the store not writable:
#: a group commit appends a few pages to the WAL, and a checkpoint may grow the database file
MIN_FREE_BYTES = 1 << 20


def disk_writable(fs: os.statvfs_result, min_free: int = MIN_FREE_BYTES) -> bool:
    """A file system that is mounted read-write and has ``min_free`` bytes left for this user."""
    return not fs.f_flag & os.ST_RDONLY and fs.f_bavail * fs.f_frsize >= min_free


def probe_write(directory: str) -> bool:
    """Create, write and remove a small file in ``directory``: the file system really takes writes.

    statvfs alone misses a file system the kernel turned read-only after an error: ext4 with
    ``errors=remount-ro`` flags itself ``emergency_ro`` and keeps reporting read-write, while every
    write fails with EROFS (tests/gateway/test_store_readonly.py)."""
    probe = os.path.join(directory, f".smsgw-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError:
        return False
    return True


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
            for stmt in re.split(r";\s*\n", script):
                if stmt.strip():
                    db.execute(stmt)
            db.execute(f"PRAGMA user_version={i}")
            log.info("schema migrated", extra={"schema_version": i})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


class SqliteEngine:
    """Three connections: hot-path point reads on the loop's thread (tens of microseconds each);
    group-committed writes in the writer's thread (``writer.py``); reads that may touch many rows
    (sweeps, exports, purges) on an aiosqlite connection in its own thread."""

    unavailable: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(
        self, path: str, master_key: bytes, *, synchronous: str = "FULL", lock_wait: float = 5.0
    ) -> None:
        self.path = path
        self._lock_wait = lock_wait
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
        self.writer = GroupWriter(wdb, self._lock_wait)
        self.keyring.fetch_key = self._fetch_key
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

    async def writable(self) -> bool:
        directory = str(Path(self.path).parent)
        try:
            if not disk_writable(os.statvfs(directory)):
                return False
        except OSError:
            return False
        return probe_write(directory)  # a few µs, like the statvfs above; /readyz is polled every few s

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

    # ----------------------------------------------------------------- key rotation
    async def refresh_keyring(self) -> bool:
        """Load data keys another process added (``smsgw keys rotate``); True when one was new."""
        rows = await self._read_all("SELECT key_id, wrapped FROM keyring ORDER BY key_id", ())
        added = False
        for key_id, wrapped in rows:
            if int(key_id) not in self.keyring.data_keys:
                self.keyring.add(int(key_id), unwrap_data_key(self._master, int(key_id), wrapped))
                added = True
        return added

    def _fetch_key(self, key_id: int) -> bytes | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT wrapped FROM keyring WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None else unwrap_data_key(self._master, key_id, row[0])

    async def add_data_key(self, now: float) -> int:
        """A new data key, wrapped by the master key, made the active one for new values."""
        master = self._master

        def add(db: sqlite3.Connection) -> tuple[int, bytes]:
            (top,) = db.execute("SELECT COALESCE(MAX(key_id), 0) FROM keyring").fetchone()
            key_id, dek = int(top) + 1, secrets.token_bytes(32)
            db.execute(
                "INSERT INTO keyring(key_id, wrapped, created_at) VALUES (?, ?, ?)",
                (key_id, wrap_data_key(master, key_id, dek), now),
            )
            return key_id, dek

        assert self.writer is not None
        added: tuple[int, bytes] = await self.writer.run_fn(add)
        self.keyring.add(*added)
        return added[0]

    SEALED = SEALED

    async def count_stale_sealed(self) -> int:
        """How many sealed values are not under the active data key."""
        active = self.keyring.active_id.to_bytes(4, "big")
        total = 0
        for table, col, _ in self.SEALED:
            rows = await self._read_all(
                f"SELECT COUNT(*) FROM {table} WHERE {col} IS NOT NULL AND substr({col}, 2, 4) != ?",
                (active,),
            )
            total += int(rows[0][0])
        return total

    async def reseal_batch(self, limit: int = 500) -> int:
        """Re-encrypt up to ``limit`` values under the active key, in one transaction; returns how many."""
        ring = self.keyring
        active = ring.active_id.to_bytes(4, "big")
        sealed = self.SEALED

        def reseal(db: sqlite3.Connection) -> int:
            done = 0
            for table, col, aad_sql in sealed:
                rows = db.execute(
                    f"SELECT rowid, {col}, {aad_sql} FROM {table} WHERE {col} IS NOT NULL "
                    f"AND substr({col}, 2, 4) != ? LIMIT ?",
                    (active, limit - done),
                ).fetchall()
                for rowid, value, aad in rows:
                    db.execute(
                        f"UPDATE {table} SET {col} = ? WHERE rowid = ?",
                        (ring.seal(ring.open(value, aad), aad), rowid),
                    )
                done += len(rows)
                if done >= limit:
                    break
            return done

        assert self.writer is not None
        n: int = await self.writer.run_fn(reseal)
        return n
