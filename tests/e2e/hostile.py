"""Hostile HTTP clients on raw sockets (slowloris headers, a body that trickles, a huge body, crowds of
idle connections) and a healthy OTP client beside them. Used by tests/e2e/test_hostile_clients.py and
bench/hostile_clients.py; everything targets 127.0.0.1 and stops by itself."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"


def raise_fd_limit(want: int) -> int:
    """Raise this process's soft open-files limit towards ``want`` (children inherit it); returns the
    soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float | None:
    """Seconds until the server closes the connection (EOF or reset), reading and dropping what it
    sends; None if it is still open after ``seconds``."""
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except (ConnectionError, OSError):
        pass
    return time.monotonic() - t0


async def slow_headers(port: int, *, every: float, seconds: float) -> float | None:
    """Slowloris: a request line, then one header byte every ``every`` seconds, never finishing the
    headers. Returns how long the server let it hang on (None: still open after ``seconds``)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    t0 = time.monotonic()
    writer.write(b"POST /v1/otp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = asyncio.ensure_future(closed_within(reader, seconds))
    try:
        while not closed.done() and time.monotonic() - t0 < seconds:
            try:
                writer.write(b"X")
                await writer.drain()
            except (ConnectionError, OSError):
                break
            await asyncio.wait([closed], timeout=every)
        gone = await closed
        return None if gone is None else time.monotonic() - t0
    finally:
        closed.cancel()
        writer.close()


async def slow_body(port: int, key: str, *, every: float, seconds: float) -> tuple[int | None, float]:
    """Complete headers announcing a 200-byte JSON body, then one byte every ``every`` seconds. Returns
    (HTTP status the server answered, or None if none came within ``seconds``; seconds until the
    connection closed or ``seconds``)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    t0 = time.monotonic()
    writer.write(
        b"POST /v1/otp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: 200\r\n\r\n".encode()
        + b'{"to": '
    )
    got = bytearray()

    async def read_all() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                got.extend(chunk)

    done = asyncio.ensure_future(read_all())
    try:
        while not done.done() and time.monotonic() - t0 < seconds:
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(b" ")
                await writer.drain()
            await asyncio.wait([done], timeout=every)
        elapsed = time.monotonic() - t0
        return status_of(bytes(got)), elapsed
    finally:
        done.cancel()
        writer.close()


async def huge_body(port: int, key: str, *, size: int, chunked: bool) -> tuple[int | None, int]:
    """A JSON body of ``size`` bytes, sent as fast as the server takes it, chunked or with its
    Content-Length. Returns (status answered, bytes the server took before answering or closing)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    head = f"POST /v1/otp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
    head += "Content-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
    writer.write(head.encode())
    got = bytearray()

    async def read_all() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                got.extend(chunk)

    done = asyncio.ensure_future(read_all())
    sent = 0
    piece = b" " * 65536
    try:
        while sent < size and not done.done():
            n = min(len(piece), size - sent)
            frame = (f"{n:x}\r\n".encode() + piece[:n] + b"\r\n") if chunked else piece[:n]
            try:
                writer.write(frame)
                async with asyncio.timeout(10):
                    await writer.drain()
            except (ConnectionError, OSError, TimeoutError):
                break
            sent += n
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.shield(done)
        return status_of(bytes(got)), sent
    finally:
        done.cancel()
        writer.close()


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


@dataclass
class IdleCrowd:
    """``n`` connections that open and send nothing, reopened as the server closes them, until stopped.
    ``opened`` counts every connection made; ``closed_by_server`` those the server ended."""

    port: int
    n: int
    opened: int = 0
    closed_by_server: int = 0
    failed: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        for i in range(self.n):
            self._tasks.append(asyncio.ensure_future(self._hold()))
            if i % 200 == 199:
                await asyncio.sleep(0.05)  # open them in waves, as a crowd arrives

    async def _hold(self) -> None:
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, self.port)
            except OSError:
                self.failed += 1
                await asyncio.sleep(0.5)
                continue
            self.opened += 1
            stop = asyncio.ensure_future(self._stop.wait())
            eof = asyncio.ensure_future(reader.read(1))
            try:
                await asyncio.wait([stop, eof], return_when=asyncio.FIRST_COMPLETED)
                if eof.done():
                    self.closed_by_server += 1
            except (ConnectionError, OSError):
                self.closed_by_server += 1
            finally:
                stop.cancel()
                eof.cancel()
                writer.close()

    @property
    def held(self) -> int:
        return self.opened - self.closed_by_server

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def healthy_load(
    port: int, key: str, *, seconds: float, concurrency: int, first: int
) -> tuple[list[float], dict[int, int]]:
    """Well-behaved clients sending OTPs (fresh numbers from ``first`` on) for ``seconds``; returns the
    latencies in seconds and the count of each HTTP status (a connection error counts as status 0)."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(first, first + 10_000_000))
    end = time.monotonic() + seconds
    url = f"http://{HOST}:{port}/v1/otp"
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=30)

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < end:
            body: dict[str, Any] = {"to": fresh_number(next(counter))}
            t0 = time.monotonic()
            try:
                async with session.post(url, json=body, headers=headers) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            latencies.append(time.monotonic() - t0)
            statuses[status] = statuses.get(status, 0) + 1

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return latencies, statuses


def fresh_number(n: int) -> str:
    """The n-th of 10^8 distinct valid German mobile numbers, consecutive ones far apart."""
    return f"+49151{(n * 7919) % 10**8:08d}"


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
