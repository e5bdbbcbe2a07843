"""Group commit, pipelined: one transaction per batch, one thread hop per batch.

Callers ``await writer.run(statements)``. The loop's thread runs BEGIN and the batch's statements
(each takes microseconds); the COMMIT, whose fsync is the slow part, runs in the writer's thread,
which releases the GIL while it waits. Writes queued meanwhile form the next batch, which starts when
that commit returns. N concurrent requests cost one fsync instead of N, and a caller resumes only
after its own transaction committed. If a batch fails, each operation is retried alone so one bad
statement fails only its own caller.

When another process holds the database's write lock (a second gateway process, ``smsgw purge``,
``smsgw tenant create``), the loop does not wait for it: BEGIN on the loop's thread never waits
(``busy_timeout=0``), and a batch that finds the lock taken runs whole in the writer's thread, which
waits up to ``lock_wait`` seconds for it (the GIL is released meanwhile). Past that, the batch's
callers get ``sqlite3.OperationalError`` ("database is locked"), which the API answers with 503.

Why statements on the loop's thread: measured here, running them in another thread made every
statement wait for the GIL (up to the 5 ms switch interval) behind the busy loop, and the writer
thread became the bottleneck; per-statement thread hops (aiosqlite's ``execute``) were worse still.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

Statement = tuple[str, Sequence[Any]]


@dataclass(frozen=True, slots=True)
class WriteResult:
    rowcount: int
    rows: list[Any]
    value: Any = None  # what a callable operation returned


TxFn = Callable[[sqlite3.Connection], Any]


@dataclass(slots=True)
class _Op:
    statements: Sequence[Statement] | TxFn
    fetch: bool
    future: asyncio.Future[WriteResult]


class GroupWriter:
    """Owns ``db`` (opened with ``check_same_thread=False``): only its thread touches it."""

    def __init__(self, db: sqlite3.Connection, lock_wait: float = 5.0) -> None:
        self._db = db
        self.lock_wait = lock_wait  # longest wait for another process's write lock (writer thread)
        db.execute("PRAGMA busy_timeout=0")  # on the loop's thread, never wait for a lock
        self._pending: list[_Op] = []
        self._busy = False
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0
        self.operations = 0

    async def run_fn(self, fn: TxFn) -> Any:
        """Run ``fn(connection)`` inside a group-committed transaction (in the writer thread): for writes
        that must read what they build on, e.g. the audit chain's previous hash."""
        return (await self.run(fn)).value

    async def run(self, statements: Sequence[Statement] | TxFn, fetch: bool = False) -> WriteResult:
        if self._closed:
            raise RuntimeError("store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[WriteResult] = loop.create_future()
        self._pending.append(_Op(statements, fetch, fut))
        if not self._busy:
            self._busy = True
            self._idle.clear()
            loop.call_soon(self._next_batch, loop)
        return await fut

    def _next_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            self._busy = False
            self._idle.set()
            return
        try:
            results: list[WriteResult | sqlite3.Error] = list(self._execute(batch))
        except sqlite3.Error as e:
            # rare: another process holds the write lock (wait for it, the whole batch at once), or a
            # statement failed (each operation alone, so it fails only its own caller); either way in
            # the writer's thread, where waiting does not stall the loop
            slow = loop.run_in_executor(self._pool, self._contended, batch, _locked(e))
            slow.add_done_callback(lambda j: self._finish(loop, batch, _outcome(j, len(batch))))
            return
        job = loop.run_in_executor(self._pool, self._commit)
        job.add_done_callback(lambda j: self._committed(loop, batch, results, j))

    def _committed(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[_Op],
        results: list[WriteResult | sqlite3.Error],
        job: asyncio.Future[None],
    ) -> None:
        exc = job.exception()
        if exc is not None:
            _rollback(self._db)
            results = [_store_error(exc)] * len(batch)
        self._finish(loop, batch, results)

    def _finish(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Op], results: list[WriteResult | sqlite3.Error]
    ) -> None:
        self.batches += 1
        self.operations += len(batch)
        for op, res in zip(batch, results, strict=True):
            if op.future.done():
                continue
            if isinstance(res, sqlite3.Error):
                op.future.set_exception(res)
            else:
                op.future.set_result(res)
        self._next_batch(loop)

    def _contended(self, batch: list[_Op], locked: bool) -> list[WriteResult | sqlite3.Error]:
        """In the writer thread, waiting up to ``lock_wait`` for the write lock: the batch in one
        transaction when it only found the lock taken, else (or if that fails on a statement) each
        operation in its own. A lock still taken after the wait fails every operation of the batch."""
        db = self._db
        db.execute(f"PRAGMA busy_timeout={round(self.lock_wait * 1000)}")
        try:
            if locked:
                try:
                    whole: list[WriteResult | sqlite3.Error] = list(self._execute(batch))
                    db.execute("COMMIT")
                    return whole
                except sqlite3.Error as e:
                    _rollback(db)
                    if _locked(e):
                        return [e] * len(batch)
            results: list[WriteResult | sqlite3.Error] = []
            for op in batch:
                try:
                    out = self._execute([op])
                    db.execute("COMMIT")
                    results.append(out[0])
                except sqlite3.Error as e:
                    _rollback(db)
                    if _locked(e):  # waited in vain: the rest would too
                        return results + [e] * (len(batch) - len(results))
                    results.append(e)
            return results
        finally:
            db.execute("PRAGMA busy_timeout=0")

    def _commit(self) -> None:
        """In the writer thread: COMMIT, i.e. the fsync, which releases the GIL while it waits."""
        self._db.execute("COMMIT")

    async def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        await self._idle.wait()
        self._closed = True
        self._pool.shutdown(wait=True)

    def _execute(self, batch: list[_Op]) -> list[WriteResult]:
        """On the loop's thread: BEGIN and every statement of the batch (microseconds each); the
        transaction stays open for ``_commit``. Rolled back if a statement fails."""
        db = self._db
        out: list[WriteResult] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for op in batch:
                if callable(op.statements):
                    out.append(WriteResult(0, [], op.statements(db)))
                    continue
                rowcount, rows = 0, []
                for sql, params in op.statements:
                    cur = db.execute(sql, params)
                    if op.fetch:
                        rows = cur.fetchall()
                    rowcount = cur.rowcount
                out.append(WriteResult(rowcount, rows))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out


def _locked(e: sqlite3.Error) -> bool:
    """The database's write lock is held by another connection (SQLITE_BUSY and its extended codes)."""
    return (getattr(e, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _store_error(exc: BaseException) -> sqlite3.Error:
    """What a caller gets when the writer's thread raised: the store's own error, or anything else (a
    bug) as one, so every caller of the batch hears of it instead of waiting forever."""
    return exc if isinstance(exc, sqlite3.Error) else sqlite3.OperationalError(str(exc))


def _outcome(
    job: asyncio.Future[list[WriteResult | sqlite3.Error]], n: int
) -> list[WriteResult | sqlite3.Error]:
    """The slow path's results, or its failure for each of the batch's callers."""
    exc = job.exception()
    return job.result() if exc is None else [_store_error(exc)] * n
