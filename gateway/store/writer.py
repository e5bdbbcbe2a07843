"""Group commit over one aiosqlite connection.

Callers ``await writer.run(statements)``; the writer gathers every operation queued while the previous
transaction was in flight and commits them together, so N concurrent requests cost one fsync instead of
N. A caller resumes only after its transaction has committed. If the batch fails, each operation is
retried alone so one bad statement fails only its own caller.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite

Statement = tuple[str, Sequence[Any]]
T = TypeVar("T")


async def in_db_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` as one job in aiosqlite's connection thread (a whole group commit, a migration).

    aiosqlite has no public call for this; its ``_execute`` is the documented-in-code way it runs every
    job, and the version is pinned."""
    result: T = await conn._execute(fn, *args)  # type: ignore[no-untyped-call]
    return result


@dataclass(frozen=True, slots=True)
class WriteResult:
    rowcount: int
    rows: list[sqlite3.Row]


@dataclass(slots=True)
class _Op:
    statements: Sequence[Statement]
    fetch: bool
    future: asyncio.Future[WriteResult]


class GroupWriter:
    def __init__(self, conn: aiosqlite.Connection, max_batch: int = 1000) -> None:
        self._conn = conn
        self._pending: list[_Op] = []
        self._wake = asyncio.Event()
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.operations = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sqlite-group-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        while self._pending:
            self._wake.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def run(self, statements: Sequence[Statement], fetch: bool = False) -> WriteResult:
        if self._task is None:
            raise RuntimeError("writer not started")
        fut: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Op(statements, fetch, fut))
        self._wake.set()
        return await fut

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                results: list[WriteResult | sqlite3.Error]
                try:
                    results = list(await in_db_thread(self._conn, self._apply_batch, batch))
                except sqlite3.Error:
                    # isolate the failing operation(s): each alone in its own transaction
                    results = []
                    for op in batch:
                        try:
                            results.append((await in_db_thread(self._conn, self._apply_batch, [op]))[0])
                        except sqlite3.Error as e:
                            results.append(e)
                self.batches += 1
                self.operations += len(batch)
                for op, res in zip(batch, results, strict=True):
                    if op.future.done():
                        continue
                    if isinstance(res, BaseException):
                        op.future.set_exception(res)
                    else:
                        op.future.set_result(res)

    def _apply_batch(self, batch: list[_Op]) -> list[WriteResult]:
        """Runs in aiosqlite's connection thread: one transaction for the whole batch."""
        db: sqlite3.Connection = self._conn._conn
        out: list[WriteResult] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for op in batch:
                rowcount, rows = 0, []
                for sql, params in op.statements:
                    cur = db.execute(sql, params)
                    if op.fetch:
                        rows = cur.fetchall()
                    rowcount = cur.rowcount
                out.append(WriteResult(rowcount, rows))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out
