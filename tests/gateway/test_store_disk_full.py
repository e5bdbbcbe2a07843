"""A database whose file system fills up: on a real 6 MiB tmpfs mounted inside the test (root only), with
a ballast file taking all but a little of it so the disk fills after a few dozen requests.

What must hold: a request whose write cannot be committed gets 503 ``unavailable`` with Retry-After
(never 500); every request that got 202 is in the database and reaches the carrier exactly once; a
failed group commit fails every waiter of its batch and acknowledges nothing; ``/readyz`` says the
store cannot write; and once space returns the gateway takes traffic again by itself, no restart."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.ids import new_id
from gateway.store import SqliteStore
from gateway.store.records import Tenant
from gateway.store.sqlite import MIN_FREE_BYTES
from tests.conftest import free_port
from tests.e2e.procs import spread
from tests.gateway.harness import Gw, ManualClock, Sim, make_settings

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]

FS_SIZE = "6m"


@contextlib.contextmanager
def tmpfs(path: Path, size: str = FS_SIZE) -> Iterator[Path]:
    """A size-limited file system at ``path`` for the duration; skips where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI and the dev machine run as root)")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        for _ in range(50):  # a file the gateway just closed may keep the mount busy a moment
            if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(directory: Path, leave: int) -> Path:
    """A ballast file taking all the free space of ``directory``'s file system but ``leave`` bytes."""
    ballast = directory / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            os.write(fd, chunk)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    os.truncate(ballast, max(os.path.getsize(ballast) - leave, 0))
    return ballast


def free_bytes(directory: Path) -> int:
    fs = os.statvfs(directory)
    return fs.f_bavail * fs.f_frsize


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "fs") as path:
        yield path


@pytest.fixture(params=["memory", "redis"])
async def disk_gw(
    request: pytest.FixtureRequest, small_fs: Path, sim: Sim, aiohttp_client: ClientFactory
) -> AsyncIterator[Gw]:
    """The gateway app with its SQLite database (and WAL) on ``small_fs``, each state backend."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    port = free_port()
    clock = ManualClock()
    app = create_app(make_settings(small_fs, sim.url, port, redis_url), clock=clock)
    client = await aiohttp_client(TestServer(app, port=port))
    yield Gw(client, app, clock, sim, small_fs / "smsgw.db")
    await client.close()  # before small_fs is unmounted


async def test_a_full_disk_answers_503_keeps_every_202_and_recovers_when_space_returns(disk_gw: Gw) -> None:
    gw = disk_gw
    key = await gw.tenant()
    ballast = fill(gw.db_path.parent, leave=128 * 1024)

    accepted: dict[str, str] = {}  # number -> OTP id
    refused: list[str] = []
    others: list[tuple[int, object]] = []
    n = 0
    while len(refused) < 40 and n < 3000:
        numbers = [spread(n + i) for i in range(20)]
        n += len(numbers)
        answers = await asyncio.gather(*(gw.call("POST", "/v1/otp", key, {"to": to}) for to in numbers))
        for to, (status, body, headers) in zip(numbers, answers, strict=True):
            if status == 202:
                accepted[to] = body["id"]
            elif status == 503 and body["error"]["code"] == "unavailable":
                assert int(headers["Retry-After"]) > 0
                refused.append(to)
            else:
                others.append((status, body))
    assert not others, others[:3]  # no 500, nothing but 202 or 503 unavailable
    assert refused, f"the disk never filled in {n} requests"
    assert accepted, "not one request fitted before the disk filled"

    # while full: reads still work, /readyz tells the balancer, /healthz stays alive
    assert free_bytes(gw.db_path.parent) < MIN_FREE_BYTES
    status, ready, _ = await gw.call("GET", "/readyz")
    assert status == 503 and ready["checks"]["store_writable"] is False, ready
    assert ready["checks"]["store"] is True
    assert (await gw.call("GET", "/healthz"))[0] == 200
    some = next(iter(accepted.values()))
    assert (await gw.call("GET", f"/v1/otp/{some}", key))[0] == 200

    ballast.unlink()  # space returns: no restart, no operator step
    status, ready, _ = await gw.call("GET", "/readyz")
    assert status == 200, ready
    after = [spread(9_000 + i) for i in range(5)]
    for to in after:
        status, body, _ = await gw.call("POST", "/v1/otp", key, {"to": to})
        assert status == 202, body
        accepted[to] = body["id"]

    # every 202 reaches the carrier once, without waiting for a claim's lease to run out (the clock
    # does not move): submissions made while the disk was full were recorded once it had room
    await gw.ctx.disp.drain(30.0)
    for _ in range(300):
        counts = await gw.ctx.db.count_by_status()
        if not counts.get("queued") and not counts.get("sending"):
            break
        await asyncio.sleep(0.05)
    assert sum(counts.values()) == len(accepted), counts  # nothing refused was stored
    assert set(counts) <= {"submitted", "delivered"}, counts
    for to, otp_id in accepted.items():
        assert len(gw.sim.texts(to)) == 1, to[:6]
        status, body, _ = await gw.call("GET", f"/v1/otp/{otp_id}", key)
        assert status == 200 and body["status"] == "pending", body
    assert gw.sim.inbox.duplicates == 0  # no resubmission after a lost bookkeeping write
    assert not any(gw.sim.texts(to) for to in refused)  # a 503 sends nothing

    # and the stored OTPs are whole: one accepted while the disk was filling verifies
    to, otp_id = next(iter(accepted.items()))
    status, body, _ = await gw.call("POST", f"/v1/otp/{otp_id}/verify", key, {"code": gw.code_for(to)})
    assert status == 200 and body["status"] == "verified", body


def tenant(name: str) -> Tenant:
    return Tenant(id=new_id("ten"), name=name, created_at=time.time(), countries=frozenset({"*"}))


async def test_a_commit_that_finds_the_disk_full_fails_every_waiter_and_acknowledges_nothing_unwritten(
    small_fs: Path,
) -> None:
    path = str(small_fs / "full.db")
    master = secrets.token_bytes(32)
    store = SqliteStore(path, master)
    await store.open()
    acked: list[Tenant] = []
    failed: list[Tenant] = []
    try:
        ballast = fill(small_fs, leave=64 * 1024)
        rounds = 0
        while len(failed) < 100 and rounds < 50:
            rounds += 1
            batch = [tenant(f"t{rounds}-{i}") for i in range(100)]  # many callers, few group commits
            results = await asyncio.gather(
                *(store.create_tenant(t, t.id.encode(), frozenset({"send"})) for t in batch),
                return_exceptions=True,
            )
            for t, res in zip(batch, results, strict=True):
                if res is None:
                    acked.append(t)
                else:
                    assert isinstance(res, store.unavailable), repr(res)
                    assert "full" in str(res), res
                    failed.append(t)
        assert failed, "the disk never filled"
        assert await store.ping()  # reads go on
        ballast.unlink()
        late = tenant("late")
        await store.create_tenant(late, late.id.encode(), frozenset({"send"}))  # the writer is not wedged
        acked.append(late)
    finally:
        await store.close()

    # a fresh connection, as after a restart: every acknowledged write is there, no failed one is
    again = SqliteStore(path, master)
    await again.open()
    try:
        for t in acked:
            p = await again.principal_for_key(t.id.encode())
            assert p is not None and p.tenant == t
        for t in failed:
            assert await again.principal_for_key(t.id.encode()) is None
    finally:
        await again.close()
