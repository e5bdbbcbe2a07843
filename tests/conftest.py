"""Shared fixtures: real backing services started on free ports, stopped afterwards.

``redis_server`` starts one ``redis-server`` per test session (no persistence, loopback only) and
``redis_url`` hands each test a freshly flushed logical database on it. ``pg_server`` starts one
PostgreSQL per session (``initdb`` into a temporary directory, a free port, its socket in that
directory) and ``pg_url`` hands each test a database of its own on it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
def redis_process(*extra: str, port: int = 0) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A throwaway redis-server on a free loopback port (no persistence), stopped and removed after."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run scripts/test, which installs it")
    port = port or free_port()
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


# ------------------------------------------------------------------------------------------ PostgreSQL
def pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else where Debian's package puts it."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[::-1]), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed: run scripts/test, which installs postgresql")
    return found


@dataclass
class PgServer:
    """A throwaway PostgreSQL cluster; ``os_user`` runs it (initdb refuses root)."""

    root: Path
    port: int
    os_user: str | None  # None: the current user
    durable: bool = False  # fsync on (benchmarks); tests run without it
    reset_lsn: int = 0  # the write-ahead log's position when ``pg_url`` last emptied the test database

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@/{db}?host={self.root}&port={self.port}"

    def files_of(self, url: str) -> bytes:
        """Every byte at rest of the database ``url`` names: its files, after a checkpoint (so nothing is
        only in memory), and the write-ahead log written since the test began."""
        db = url.split("?", 1)[0].rsplit("/", 1)[-1]
        out = self.psql(
            "CHECKPOINT; SELECT oid, pg_current_wal_lsn() FROM pg_database "
            "WHERE datname = current_database();",
            db,
        )
        oid, lsn = out.split()[-1].split("|")
        base = self.datadir / "base" / oid
        blob = b"".join(p.read_bytes() for p in sorted(base.iterdir()) if p.is_file())
        return blob + self._wal(self.reset_lsn, _lsn(lsn))

    def _wal(self, start: int, end: int) -> bytes:
        """The write-ahead log's bytes from ``start`` to ``end`` (16 MiB segments, timeline 1)."""
        seg = 16 << 20
        out = []
        for n in range(start // seg, end // seg + 1):
            path = self.datadir / "pg_wal" / f"00000001{n >> 8:08X}{n & 0xFF:08X}"
            data = path.read_bytes()
            lo = start - n * seg if n == start // seg else 0
            hi = end - n * seg if n == end // seg else seg
            out.append(data[lo:hi])
        return b"".join(out)

    def cpu_seconds(self) -> float:
        """CPU time the cluster spent so far: the postmaster, its live processes and those it reaped."""
        tick = os.sysconf("SC_CLK_TCK")
        pm = int((self.datadir / "postmaster.pid").read_text().split()[0])
        stat = Path(f"/proc/{pm}/stat").read_text().rsplit(")", 1)[1].split()
        total = sum(int(v) for v in stat[11:15]) / tick
        for child in Path(f"/proc/{pm}/task/{pm}/children").read_text().split():
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile: counted by the postmaster once reaped
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run ``sql`` with psql (synchronous: usable from any fixture); its unaligned output."""
        cmd = [pg_bin("psql"), "-h", str(self.root), "-p", str(self.port), "-U", "postgres", "-d", db]
        done = subprocess.run(
            [*cmd, "-Atq", "-v", "ON_ERROR_STOP=1"], input=sql, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def ctl(self, *args: str) -> None:
        """``pg_ctl`` on this cluster, as its owner (start, stop -m fast, ...)."""
        opts = f"-c port={self.port} -c listen_addresses='' -c unix_socket_directories='{self.root}' "
        # a test cluster: nothing here must survive a crash of the machine, so no fsync (commits are still
        # synchronous: the engine sets synchronous_commit=on); a benchmark's cluster keeps PostgreSQL's
        # defaults
        opts += "-c max_connections=200 -c shared_buffers=64MB"
        if not self.durable:
            opts += " -c fsync=off -c full_page_writes=off"
        cmd = [
            pg_bin("pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.root / "log"),
            "-w",
            "-o",
            opts,
            *args,
        ]
        _as(self.os_user, cmd)


def _as(user: str | None, cmd: list[str]) -> None:
    full = cmd if user is None else ["runuser", "-u", user, "--", *cmd]
    subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def _pg_os_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("no 'postgres' system user to run PostgreSQL as: run scripts/test") from None
    return "postgres"


@contextmanager
def pg_process(durable: bool = False) -> Iterator[PgServer]:
    """initdb into a fresh temporary directory, start on a free port, stop and remove afterwards."""
    user = _pg_os_user()
    root = Path(tempfile.mkdtemp(prefix="smsgw-pg-"))
    if user is not None:
        shutil.chown(root, user)
    server = PgServer(root, free_port(), user, durable)
    initdb = [pg_bin("initdb"), "-D", str(server.datadir), "-U", "postgres", "-A", "trust"]
    _as(user, [*initdb, "--no-sync", "-E", "UTF8", "--no-locale"])
    server.ctl("start")
    try:
        yield server
    finally:
        try:
            server.ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass  # a test stopped it already
        shutil.rmtree(root, ignore_errors=True)


def _lsn(text: str) -> int:
    """A write-ahead log position as PostgreSQL prints it (``16/B374D848``)."""
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


TEST_DB = "smsgw_test"
# every schema a test made (the control store's, the regions'), dropped before the next test
_RESET = """DO $$ DECLARE s text; BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'public')
  LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP;
END $$;"""


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with pg_process() as server:
        server.psql(f"CREATE DATABASE {TEST_DB}")
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The session's test database, emptied (a fresh database per test costs ~0.2 s, this ~20 ms)."""
    pg_server.reset_lsn = _lsn(pg_server.psql(_RESET + "SELECT pg_current_wal_lsn();", TEST_DB).split()[-1])
    return pg_server.url(TEST_DB)


# ------------------------------------------------------------------------------------------ Redis Cluster
def cluster_port() -> int:
    """A free port whose cluster-bus port (+10 000, Redis's rule) is a valid free port too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[list[int]]:
    """A real 3-node Redis Cluster (no replicas, no persistence) on free loopback ports; its ports."""
    with contextlib.ExitStack() as stack:
        nodes = [
            stack.enter_context(
                redis_process(
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", port=cluster_port()
                )
            )[1]
            for _ in range(3)
        ]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in nodes), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        end = time.monotonic() + 20
        while time.monotonic() < end:
            states = [
                subprocess.run(
                    ["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True
                ).stdout
                for p in nodes
            ]
            if all("cluster_state:ok" in s for s in states):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
        yield nodes


@pytest.fixture
def redis_cluster_url(redis_cluster: list[int]) -> str:
    """The cluster, every node emptied; the URL names one node (the client finds the others)."""
    for p in redis_cluster:
        subprocess.run(["redis-cli", "-p", str(p), "FLUSHALL"], check=True, capture_output=True)
    return f"redis://127.0.0.1:{redis_cluster[0]}"


def shared_redis(request: pytest.FixtureRequest, kind: str) -> Any:
    """A client of this test's Redis for ``kind``: a flushed database of the session's server
    ('redis'), or the flushed 3-node cluster ('cluster', a RedisCluster client)."""
    import redis.asyncio as aioredis

    if kind == "cluster":
        return aioredis.RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"))
    return aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
