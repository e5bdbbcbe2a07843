"""PostgreSQL engine of the store: a connection pool, versioned migrations, group-committed writes.

The store's methods live in area modules (``pg_messages.py``, ``pg_privacy.py``, ...) as mixins over
:class:`PgEngine`, the way the SQLite engine is built; ``gateway/store/__init__.py`` assembles them into
``PgStore``. One store is one schema (``search_path``): the control store ``smsgw``, a residency region
``smsgw_<region>``, on the same database or on the region's own.

Group commit (:class:`PgGroupWriter`): writes queued while a batch is in flight form the next batch,
which runs as ONE transaction on one connection, so N concurrent requests cost one commit (one WAL
flush, ``synchronous_commit=on``) instead of N. A caller resumes only after its own transaction
committed. If a statement of a batch fails for a reason of its own (a broken constraint, a bad value, a
deadlock), the batch is rolled back and each operation rerun in its own transaction, so the failure
reaches only its caller. A failure of the server or the connection fails the whole batch.

Errors: PostgreSQL's own (``asyncpg.PostgresError``: a lock wait past ``lock_timeout``, the server
shutting down, a broken constraint) and :class:`PgUnavailable` (connection refused or lost, a timeout),
which the engine raises for the client-side ones, are this engine's ``unavailable``: the API answers
503, never 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from gateway.privacy.crypto import Keyring, unwrap_data_key, wrap_data_key
from gateway.store.pg_migrations import PG_MIGRATIONS
from gateway.store.tables import SEALED
from gateway.store.writer import Statement, WriteResult

log = logging.getLogger("smsgw.store")

CONTROL_SCHEMA = "smsgw"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def is_pg_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def region_schema(region: str) -> str:
    """The schema holding a residency region's store."""
    return f"{CONTROL_SCHEMA}_{region}"


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """A statement written with ``?`` placeholders (``gateway/store/shared.py``, the queries both
    engines share) in PostgreSQL's ``$1, $2, …``; one with none comes back as it is. None of this
    engine's SQL uses the ``?`` jsonb operator, and none of the shared SQL has a ``?`` in a literal."""
    if "?" not in sql:
        return sql
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


class PgUnavailable(Exception):
    """The PostgreSQL server cannot be reached or did not answer in time (refused or lost connection,
    a timeout): the store cannot serve now."""


# client-side failures that mean "cannot reach the server now"; the server's own are PostgresError
_CONNECTION_ERRORS: tuple[type[Exception], ...] = (OSError, asyncpg.InterfaceError, TimeoutError)


@contextlib.contextmanager
def reachable() -> Iterator[None]:
    """Re-raise a client-side connection failure as :class:`PgUnavailable`."""
    try:
        yield
    except _CONNECTION_ERRORS as e:
        raise PgUnavailable(f"PostgreSQL cannot be reached: {type(e).__name__}: {e}") from e


# SQLSTATE classes of a failure that belongs to one operation, not to the batch: data exception (22),
# integrity constraint (23), transaction rollback (40: deadlock, serialization), syntax or access (42),
# raised by a trigger (P0, e.g. the audit log's append-only guard)
_OWN_FAILURE = ("22", "23", "40", "42", "P0")


def _own_failure(e: BaseException) -> bool:
    return isinstance(e, asyncpg.PostgresError) and str(getattr(e, "sqlstate", ""))[:2] in _OWN_FAILURE


TxFn = Callable[[asyncpg.Connection], Awaitable[Any]]


@dataclass(slots=True)
class _Op:
    statements: Sequence[Statement] | TxFn
    fetch: bool
    future: asyncio.Future[WriteResult]
    blind: bool = False  # the caller needs no row count (plain inserts): may go out with others' rows


def rowcount_of(status: str) -> int:
    """Rows touched, from a command tag such as ``UPDATE 3`` or ``INSERT 0 1``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _apply(conn: asyncpg.Connection, op: _Op) -> WriteResult:
    if callable(op.statements):
        return WriteResult(0, [], await op.statements(conn))
    rowcount, rows = 0, []
    for sql, params in op.statements:
        if op.fetch:
            rows = list(await conn.fetch(sql, *params))
            rowcount = len(rows)
        else:
            rowcount = rowcount_of(await conn.execute(sql, *params))
    return WriteResult(rowcount, rows)


def _same_statements(op: _Op) -> tuple[str, ...] | None:
    """The key under which blind operations are sent together, or None."""
    if not op.blind or callable(op.statements):
        return None
    return tuple(sql for sql, _ in op.statements)


async def _apply_batch(conn: asyncpg.Connection, batch: list[_Op]) -> list[WriteResult | BaseException]:
    """Every operation of a batch, in one transaction. Blind operations with the same statements (e.g.
    every queued ``insert_otp``) go as one ``executemany`` per statement, at the place of the first:
    asyncpg pipelines its rows, one round trip instead of one per row. Moving them is safe because no
    operation of a batch can depend on another's uncommitted row: a caller learns of its row only after
    the commit."""
    groups: dict[tuple[str, ...], list[_Op]] = {}
    for op in batch:
        key = _same_statements(op)
        if key is not None:
            groups.setdefault(key, []).append(op)
    out: dict[int, WriteResult] = {}
    for op in batch:
        if id(op) in out:
            continue
        key = _same_statements(op)
        group = groups.get(key) if key is not None else None
        if key is None or group is None or len(group) == 1:
            out[id(op)] = await _apply(conn, op)
            continue
        for i, sql in enumerate(key):
            await conn.executemany(sql, [member.statements[i][1] for member in group])  # type: ignore[index]
        for member in group:
            out[id(member)] = WriteResult(-1, [])  # not counted: blind callers do not ask
    done: list[WriteResult | BaseException] = [out[id(op)] for op in batch]
    return done


def _settle(batch: list[_Op], results: Sequence[WriteResult | BaseException]) -> None:
    for op, res in zip(batch, results, strict=True):
        if op.future.done():
            continue
        if isinstance(res, BaseException):
            op.future.set_exception(res)
        else:
            op.future.set_result(res)


class PgGroupWriter:
    """Batches the writes queued meanwhile into one transaction; one batch in flight at a time."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._pending: list[_Op] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        self.operations = 0

    async def run_fn(self, fn: TxFn) -> Any:
        """Run ``await fn(connection)`` inside a group-committed transaction: for writes that must read
        what they build on (the audit chain's previous MAC, the highest key id)."""
        return (await self.run(fn)).value

    async def run(
        self, statements: Sequence[Statement] | TxFn, fetch: bool = False, blind: bool = False
    ) -> WriteResult:
        if self._closed:
            raise RuntimeError("store is closed")
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Op(statements, fetch, fut, blind))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self.batches += 1
                self.operations += len(batch)
                try:
                    results = await self._commit(batch)
                except asyncio.CancelledError:  # the loop is stopping: nobody waits in vain
                    _settle(batch, [PgUnavailable("the store's writer was stopped")] * len(batch))
                    raise
                except Exception as e:  # a bug: every caller hears of it rather than waiting forever
                    results = [e] * len(batch)
                _settle(batch, results)
        finally:
            self._task = None

    async def _commit(self, batch: list[_Op]) -> list[WriteResult | BaseException]:
        try:
            with reachable():
                async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                    try:
                        async with conn.transaction():
                            return await _apply_batch(conn, batch)
                    except asyncpg.PostgresError as e:
                        if len(batch) == 1 or not _own_failure(e):
                            return [e] * len(batch)
                    return [await self._alone(conn, op) for op in batch]
        except PgUnavailable as e:
            return [e] * len(batch)

    @staticmethod
    async def _alone(conn: asyncpg.Connection, op: _Op) -> WriteResult | BaseException:
        try:
            with reachable():
                async with conn.transaction():
                    return await _apply(conn, op)
        except (asyncpg.PostgresError, PgUnavailable) as e:
            return e

    async def close(self) -> None:
        """Commit what is queued; later writes raise."""
        self._closed = True
        while self._task is not None:
            await asyncio.shield(self._task)


async def migrate(conn: asyncpg.Connection, schema: str) -> int:
    """Create the schema if needed and bring it to the newest version, in one transaction under an
    advisory lock: processes starting together wait for each other and each step runs once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"smsgw.migrate.{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_version (version integer PRIMARY KEY, '
            "applied_at double precision NOT NULL)"
        )
        version = int(await conn.fetchval(f'SELECT COALESCE(MAX(version), 0) FROM "{schema}".schema_version'))
        for i, script in enumerate(PG_MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            await conn.execute(
                f'INSERT INTO "{schema}".schema_version(version, applied_at) VALUES ($1, $2)', i, time.time()
            )
            log.info("schema migrated", extra={"schema": schema, "schema_version": i})
    return len(PG_MIGRATIONS)


class PgEngine:
    """A pool of connections whose ``search_path`` is this store's schema: point reads on any pooled
    connection, group-committed writes through :class:`PgGroupWriter`."""

    unavailable: tuple[type[Exception], ...] = (asyncpg.PostgresError, PgUnavailable)

    def __init__(
        self,
        dsn: str,
        master_key: bytes,
        *,
        schema: str = CONTROL_SCHEMA,
        lock_wait: float = 5.0,
        pool_size: int = 8,
        timeout: float = 10.0,
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"not a schema name: {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._master = master_key
        self._lock_wait = lock_wait
        self._pool_size = pool_size
        self._timeout = timeout
        self.keyring = Keyring(master_key)
        self._pool: asyncpg.Pool | None = None
        self.writer: PgGroupWriter | None = None

    def _server_settings(self) -> dict[str, str]:
        """Session settings of every connection. ``lock_timeout`` and ``application_name`` given in the
        URL's query (``?lock_timeout=2s``) take precedence; the schema and durability do not yield."""
        given = parse_qs(urlsplit(self.dsn).query)
        tunable = {
            "lock_timeout": f"{int(self._lock_wait * 1000)}ms",  # past it: LockNotAvailableError, a 503
            "application_name": "smsgw",
        }
        return {
            **{k: v for k, v in tunable.items() if k not in given},
            "search_path": self.schema,
            "synchronous_commit": "on",  # a commit returns once its WAL is flushed: durable on return
        }

    # ----------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        with reachable():
            conn = await asyncpg.connect(
                self.dsn, timeout=self._timeout, server_settings=self._server_settings()
            )
            try:
                await migrate(conn, self.schema)
                await self._load_keyring(conn)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._timeout,
                command_timeout=self._timeout,
                server_settings=self._server_settings(),
            )
        self.writer = PgGroupWriter(self._pool, self._timeout)
        self.keyring.fetch_key = self._fetch_key

    async def _load_keyring(self, conn: asyncpg.Connection) -> None:
        """Data keys into the ring; the first open of an empty schema adds key 1 (one process wins)."""
        dek = secrets.token_bytes(32)
        await conn.execute(
            "INSERT INTO keyring(key_id, wrapped, created_at) VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
            wrap_data_key(self._master, 1, dek),
            time.time(),
        )
        for key_id, wrapped in await conn.fetch("SELECT key_id, wrapped FROM keyring ORDER BY key_id"):
            self.keyring.add(int(key_id), unwrap_data_key(self._master, int(key_id), bytes(wrapped)))

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
            self.writer = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except (TimeoutError, *_CONNECTION_ERRORS, asyncpg.PostgresError):
                pool.terminate()

    async def ping(self) -> bool:
        try:
            await self._read_one("SELECT 1", ())
            return True
        except Exception:
            return False

    async def writable(self) -> bool:
        return True  # the server's disk is its own: a full or read-only one fails writes with 503

    # ----------------------------------------------------------------- helpers
    async def _write(
        self, statements: list[Statement], fetch: bool = False, blind: bool = False
    ) -> tuple[int, list[Any]]:
        """``blind``: the caller ignores the row count (it comes back as -1), so the write may be sent
        together with others of the same statements."""
        if self.writer is None:
            raise RuntimeError("store is not open")
        statements = [(numbered(sql), params) for sql, params in statements]
        res = await self.writer.run(statements, fetch, blind)
        return res.rowcount, res.rows

    async def _run_fn(self, fn: TxFn) -> Any:
        if self.writer is None:
            raise RuntimeError("store is not open")
        return await self.writer.run_fn(fn)

    async def _read_one(self, sql: str, params: tuple[Any, ...]) -> asyncpg.Record | None:
        assert self._pool is not None, "store is not open"
        with reachable():
            row: asyncpg.Record | None = await self._pool.fetchrow(numbered(sql), *params)
        return row

    async def _read_all(self, sql: str, params: tuple[Any, ...]) -> list[asyncpg.Record]:
        assert self._pool is not None, "store is not open"
        with reachable():
            return list(await self._pool.fetch(numbered(sql), *params))

    # ----------------------------------------------------------------- key rotation
    async def refresh_keyring(self) -> bool:
        rows = await self._read_all("SELECT key_id, wrapped FROM keyring ORDER BY key_id", ())
        added = False
        for key_id, wrapped in rows:
            if int(key_id) not in self.keyring.data_keys:
                self.keyring.add(int(key_id), unwrap_data_key(self._master, int(key_id), bytes(wrapped)))
                added = True
        return added

    def _fetch_key(self, key_id: int) -> bytes | None:
        """A key another process added, asked for while opening a value (synchronously, so on a
        connection of its own in a helper thread; happens once per new key and process)."""

        async def fetch() -> bytes | None:
            conn = await asyncpg.connect(self.dsn, timeout=5.0, server_settings=self._server_settings())
            try:
                wrapped = await conn.fetchval("SELECT wrapped FROM keyring WHERE key_id = $1", key_id)
            finally:
                await conn.close()
            return None if wrapped is None else bytes(wrapped)

        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                wrapped = pool.submit(asyncio.run, fetch()).result(timeout=10.0)
        except Exception:
            log.warning("data key could not be fetched", extra={"key_id": key_id}, exc_info=True)
            return None
        return None if wrapped is None else unwrap_data_key(self._master, key_id, wrapped)

    async def add_data_key(self, now: float) -> int:
        master = self._master

        async def add(conn: asyncpg.Connection) -> tuple[int, bytes]:
            await conn.execute("LOCK TABLE keyring IN EXCLUSIVE MODE")  # ids allocated one at a time
            key_id = int(await conn.fetchval("SELECT COALESCE(MAX(key_id), 0) + 1 FROM keyring"))
            dek = secrets.token_bytes(32)
            await conn.execute(
                "INSERT INTO keyring(key_id, wrapped, created_at) VALUES ($1, $2, $3)",
                key_id,
                wrap_data_key(master, key_id, dek),
                now,
            )
            return key_id, dek

        added: tuple[int, bytes] = await self._run_fn(add)
        self.keyring.add(*added)
        return added[0]

    SEALED = SEALED

    async def count_stale_sealed(self) -> int:
        active = self.keyring.active_id.to_bytes(4, "big")
        total = 0
        for table, col, _ in self.SEALED:
            row = await self._read_one(
                f"SELECT COUNT(*) FROM {table} WHERE {col} IS NOT NULL "
                f"AND substring({col} FROM 2 FOR 4) <> $1",
                (active,),
            )
            assert row is not None
            total += int(row[0])
        return total

    async def reseal_batch(self, limit: int = 500) -> int:
        ring = self.keyring
        active = ring.active_id.to_bytes(4, "big")
        sealed = self.SEALED

        async def reseal(conn: asyncpg.Connection) -> int:
            done = 0
            for table, col, aad_sql in sealed:
                rows = await conn.fetch(
                    f"SELECT ctid, {col}, {aad_sql} FROM {table} WHERE {col} IS NOT NULL "
                    f"AND substring({col} FROM 2 FOR 4) <> $1 LIMIT $2 FOR UPDATE",
                    active,
                    limit - done,
                )
                for tid, value, aad in rows:
                    await conn.execute(
                        f"UPDATE {table} SET {col} = $1 WHERE ctid = $2",
                        ring.seal(ring.open(bytes(value), aad), aad),
                        tid,
                    )
                done += len(rows)
                if done >= limit:
                    break
            return done

        n: int = await self._run_fn(reseal)
        return n
