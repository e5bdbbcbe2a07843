"""Shared fixtures: real backing services started on free ports, stopped afterwards.

``redis_server`` starts one ``redis-server`` per test session (no persistence, loopback only) and
``redis_url`` hands each test a freshly flushed logical database on it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


REDIS_ARGS = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")  # loopback, nothing on disk


@contextmanager
def redis_process(*extra: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A throwaway redis-server on a free loopback port (no persistence), stopped and removed after."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run scripts/test, which installs it")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="smsgw-redis-")
    proc = subprocess.Popen(
        [exe, *REDIS_ARGS, "--port", str(port), "--dir", workdir, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    with redis_process("--databases", "64") as (_, port):
        yield f"redis://127.0.0.1:{port}"


_db_counter = iter(range(1, 10_000))


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A flushed logical database of the session's redis-server (db 1..63, reused round-robin)."""
    import redis as redis_sync

    db = next(_db_counter) % 63 + 1
    url = f"{redis_server}/{db}"
    client = redis_sync.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


@pytest.fixture(params=["memory", "redis"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both state backends; pair with ``redis_url`` where kind == 'redis'."""
    return str(request.param)
