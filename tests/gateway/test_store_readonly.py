"""A database whose file system turns read-only under the gateway: a real 16 MiB ext4 image, loop-mounted
inside the test with ``errors=remount-ro`` (root only), and a real file-system error raised through the
kernel's ``/sys/fs/ext4/<dev>/trigger_fs_error``. ext4 then remounts itself read-only (``emergency_ro``),
as it does when a disk starts failing; a plain ``mount -o remount,ro`` is refused while the database is
open, so this is the way to make it happen under a running gateway.

What must hold: once the file system is read-only every new request that must write gets 503
``unavailable`` with Retry-After (never 500) and nothing of it is sent; reads of what was stored go on;
``/readyz`` answers 503 with ``checks.store_writable: false``. A read-only ext4 does not come back by
itself (the kernel wants ``e2fsck``), so the recovery is the operator's: stop, ``e2fsck``, mount, start —
and then every request that got a 202 is in the database and reaches the carrier."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import DispatchSettings
from tests.conftest import free_port
from tests.e2e.procs import spread
from tests.gateway.harness import Gw, ManualClock, Sim, make_settings

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]

IMAGE_MIB = 16
LEASE = 30.0


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)


class Ext4:
    """An ext4 image file loop-mounted at ``mount``; ``fail()`` raises a real file-system error."""

    def __init__(self, image: Path, mount: Path) -> None:
        self.image, self.mount = image, mount

    def create(self) -> None:
        if os.geteuid() != 0:
            pytest.skip("loop-mounting an ext4 image needs root (CI and the dev machine run as root)")
        for tool in ("mkfs.ext4", "e2fsck", "losetup"):
            if run("sh", "-c", f"command -v {tool}").returncode != 0:
                pytest.skip(f"{tool} (e2fsprogs, util-linux) is not installed")
        with open(self.image, "wb") as f:
            f.truncate(IMAGE_MIB << 20)
        r = run("mkfs.ext4", "-q", "-F", str(self.image))
        assert r.returncode == 0, r.stderr
        self.mount.mkdir(parents=True, exist_ok=True)

    def attach(self) -> None:
        r = run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mount))
        if r.returncode != 0:
            pytest.skip(f"loop mounts are not permitted here: {r.stderr.strip()}")

    @property
    def device(self) -> str:
        return run("findmnt", "-n", "-o", "SOURCE", str(self.mount)).stdout.strip()

    def options(self) -> str:
        return run("findmnt", "-n", "-o", "OPTIONS", str(self.mount)).stdout.strip()

    def fail(self) -> None:
        knob = Path("/sys/fs/ext4") / Path(self.device).name / "trigger_fs_error"
        if not knob.exists():
            pytest.skip(f"this kernel has no {knob}")
        knob.write_text("smsgw test: the disk under the database fails\n")

    def detach(self) -> None:
        for _ in range(50):  # a file just closed may keep the mount busy a moment
            if run("umount", str(self.mount)).returncode == 0:
                return
            time.sleep(0.1)
        run("umount", "-l", str(self.mount))

    def repair(self) -> None:
        r = run("e2fsck", "-f", "-y", str(self.image))
        assert r.returncode in (0, 1), r.stdout + r.stderr  # 1: errors corrected


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Ext4]:
    fs = Ext4(tmp_path / "disk.img", tmp_path / "fs")
    fs.create()
    fs.attach()
    try:
        yield fs
    finally:
        if fs.device:
            fs.detach()


@contextlib.asynccontextmanager
async def gateway(
    fs: Ext4, sim: Sim, redis_url: str, clock: ManualClock, factory: ClientFactory
) -> AsyncIterator[Gw]:
    port = free_port()
    settings = make_settings(
        fs.mount,
        sim.url,
        port,
        redis_url,
        dispatch=DispatchSettings(workers=8, sweep_interval_seconds=0.2, claim_lease_seconds=LEASE),
    )
    app = create_app(settings, clock=clock)
    client = await factory(TestServer(app, port=port))
    try:
        yield Gw(client, app, clock, sim, fs.mount / "smsgw.db")
    finally:
        await client.close()


@pytest.mark.parametrize("state", ["memory", "redis"])
async def test_a_file_system_turning_read_only_under_load_answers_503_and_loses_no_202(
    state: str, ext4: Ext4, sim: Sim, aiohttp_client: ClientFactory, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if state == "redis" else ""
    clock = ManualClock()
    accepted: dict[str, str] = {}  # number -> OTP id
    refused: list[str] = []
    others: list[tuple[int, object]] = []
    fault_after = 75  # the stream below raises the fault once this many requests got their 202
    enough = asyncio.Event()

    async def send(gw: Gw, key: str, n: int) -> None:
        to = spread(n)
        status, body, headers = await gw.call("POST", "/v1/otp", key, {"to": to})
        if status == 202:
            accepted[to] = body["id"]
            if len(accepted) >= fault_after:
                enough.set()
        elif status == 503 and isinstance(body, dict) and body["error"]["code"] == "unavailable":
            assert int(headers["Retry-After"]) > 0
            refused.append(to)
        else:
            others.append((status, body))

    async with gateway(ext4, sim, redis_url, clock, aiohttp_client) as gw:
        key = await gw.tenant()
        n = 0
        for _ in range(3):  # traffic before the fault, dispatched
            await asyncio.gather(*(send(gw, key, n + i) for i in range(20)))
            n += 20
        await gw.settle()
        before = dict(accepted)
        assert len(before) == 60 and not refused and not others, (len(before), refused[:1], others[:1])

        # the disk fails while requests are in flight: a steady stream of sends, the fault in its middle
        stop = asyncio.Event()
        counter = iter(range(n, n + 100_000))

        async def stream() -> None:
            while not stop.is_set():
                await send(gw, key, next(counter))

        streams = [asyncio.create_task(stream()) for _ in range(10)]
        await enough.wait()
        ext4.fail()
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*streams)
        n = next(counter)
        assert "emergency_ro" in ext4.options() or "ro" in ext4.options().split(","), ext4.options()
        assert refused, "no request met the read-only file system"

        # read-only now: every write refused, reads go on, the balancer is told
        late: list[str] = []
        for i in range(20):
            to = spread(n + i)
            status, body, headers = await gw.call("POST", "/v1/otp", key, {"to": to})
            assert status == 503 and body["error"]["code"] == "unavailable", (status, body)
            assert int(headers["Retry-After"]) > 0
            late.append(to)
        n += 20
        assert not others, others[:3]  # no 500, nothing but 202 or 503 unavailable
        status, ready, _ = await gw.call("GET", "/readyz")
        assert status == 503 and ready["checks"]["store_writable"] is False, ready
        assert (await gw.call("GET", "/healthz"))[0] == 200
        some = next(iter(before.values()))
        status, body, _ = await gw.call("GET", f"/v1/otp/{some}", key)
        assert status == 200 and body["id"] == some, body
        await asyncio.sleep(0.5)  # the dispatcher meets the read-only store too; it must not crash the app
    assert not any(sim.texts(to) for to in late)  # a 503 sends nothing

    # the operator's recovery: the process is down, e2fsck, mount, start
    ext4.detach()
    ext4.repair()
    ext4.attach()
    clock.advance(LEASE + 1)  # claims the failed process held run out, as they would in real time
    async with gateway(ext4, sim, redis_url, clock, aiohttp_client) as gw:
        counts: dict[str, int] = {}
        for _ in range(400):
            await gw.ctx.disp.drain(5.0)
            counts = await gw.ctx.db.count_by_status()
            if not counts.get("queued") and not counts.get("sending"):
                break
            await asyncio.sleep(0.05)
        assert sum(counts.values()) == len(accepted), (counts, len(accepted))  # every 202, nothing refused
        assert set(counts) <= {"submitted", "delivered"}, counts
        for to, otp_id in accepted.items():
            assert sim.texts(to), f"an accepted OTP never reached the carrier ({to[:6]}…)"
            status, body, _ = await gw.call("GET", f"/v1/otp/{otp_id}", key)
            assert status == 200 and body["status"] == "pending", body
        for to in before:  # dispatched and recorded before the fault: never sent again
            assert len(sim.texts(to)) == 1, to[:6]
        assert not any(sim.texts(to) for to in refused)
        status, body, _ = await gw.call("POST", "/v1/otp", key, {"to": spread(n)})
        assert status == 202, body
