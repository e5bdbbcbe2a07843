"""Another process holding the SQLite write lock (a second gateway process, ``smsgw purge``): writes wait
for it in the writer's thread, never on the event loop, and fail with a store error past ``lock_wait``."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.ids import new_id
from gateway.store import SqliteStore
from gateway.store.records import Tenant
from tests.gateway.conftest import SQLITE_STACKS
from tests.gateway.harness import Gw


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """What another process does while it writes: hold the database's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


@dataclass
class Ticker:
    """Measures the longest stall of the event loop while it runs."""

    longest: float = 0.0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "lock.db"), secrets.token_bytes(32), lock_wait=2.0)
    await s.open()
    yield s
    await s.close()


def tenant(name: str) -> Tenant:
    return Tenant(id=new_id("ten"), name=name, created_at=time.time(), countries=frozenset({"*"}))


async def add(store: SqliteStore, t: Tenant) -> None:
    await store.create_tenant(t, t.id.encode(), frozenset({"send"}))


async def stored(store: SqliteStore, t: Tenant) -> bool:
    p = await store.principal_for_key(t.id.encode())
    return p is not None and p.tenant == t


async def test_a_write_waits_for_another_process_without_stalling_the_loop(
    store: SqliteStore, tmp_path: Path
) -> None:
    ticker = Ticker()
    tick = asyncio.create_task(ticker.run())
    try:
        with write_lock(tmp_path / "lock.db"):
            first, second = tenant("a"), tenant("b")
            writes = asyncio.gather(add(store, first), add(store, second))
            await asyncio.sleep(0.6)
            assert not writes.done()  # waiting for the lock
            assert await store.ping()  # reads go on meanwhile
        await asyncio.wait_for(writes, 2.0)
    finally:
        tick.cancel()
    # waiting on the loop would stall it for the whole 0.6 s (or deadlock: the lock is released by
    # this very coroutine); 0.25 s leaves room for a busy CI machine
    assert ticker.longest < 0.25, f"the loop stalled for {ticker.longest * 1000:.0f} ms"
    assert await stored(store, first) and await stored(store, second)


async def test_a_lock_held_past_lock_wait_fails_the_write_with_an_unavailable_error(
    store: SqliteStore, tmp_path: Path
) -> None:
    assert store.writer is not None
    store.writer.lock_wait = 0.2
    with write_lock(tmp_path / "lock.db"):
        with pytest.raises(store.unavailable) as caught:
            await add(store, tenant("a"))
        assert "locked" in str(caught.value)
    later = tenant("b")
    await add(store, later)  # the writer is not wedged by the failure
    assert await stored(store, later)


async def test_a_statement_error_fails_only_its_own_caller_while_the_lock_was_contended(
    store: SqliteStore, tmp_path: Path
) -> None:
    dup = tenant("dup")
    await add(store, dup)
    with write_lock(tmp_path / "lock.db") as other:
        ok = tenant("ok")
        writes = asyncio.gather(add(store, dup), add(store, ok), return_exceptions=True)
        await asyncio.sleep(0.1)
        other.execute("COMMIT")
        bad, good = await asyncio.wait_for(writes, 2.0)
    assert isinstance(bad, sqlite3.IntegrityError) and good is None
    assert await stored(store, ok)


@pytest.mark.parametrize("stack", SQLITE_STACKS, indirect=True)
async def test_the_api_answers_503_while_another_process_holds_the_lock_too_long(gw: Gw) -> None:
    key = await gw.tenant()
    writer = gw.ctx.db.writer  # type: ignore[attr-defined]
    writer.lock_wait = 0.2
    with write_lock(gw.db_path):
        st, err, headers = await gw.call("POST", "/v1/otp", key, {"to": "+4915123456789"})
        assert st == 503 and err["error"]["code"] == "unavailable", err
        assert int(headers["Retry-After"]) > 0
        st, _, _ = await gw.call("GET", "/healthz")
        assert st == 200
    st, body, _ = await gw.call("POST", "/v1/otp", key, {"to": "+4915123456789"})
    assert st == 202, body
