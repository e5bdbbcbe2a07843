"""What the SMPP tests share: the node-smpp peer process (tests/peers/smsc.js), a receipt collector and
an inbox for the sim SMSC. The fixtures that start them are in conftest.py."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carriers.base import DeliveryReceipt
from carriers.sim.smpp_server import SmppSim

PEERS = Path(__file__).resolve().parents[1] / "peers"
_install_lock = threading.Lock()


def ensure_node_peer() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the SMPP peer tests need Node.js 18+")
    with _install_lock:
        if not (PEERS / "node_modules" / "smpp" / "package.json").exists():
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is not installed: run `npm ci --prefix tests/peers`")
            subprocess.run(
                [npm, "ci", "--prefix", str(PEERS), "--no-audit", "--no-fund"],
                check=True,
                capture_output=True,
                timeout=300,
            )
    return node


class NodeSmsc:
    """A running tests/peers/smsc.js and what it has reported so far."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.port = 0
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("listening "):
                self.port = int(line.split()[1])
                self._ready.set()
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        self._ready.set()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def wait_ready(self, timeout: float = 20.0) -> None:
        if not self._ready.wait(timeout) or not self.port:
            raise RuntimeError(f"smsc.js did not start: {self.stderr[-5:]}")

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("event") == name]

    async def wait_for(self, name: str, count: int = 1, within: float = 10.0) -> list[dict[str, Any]]:
        """Wait until the peer reported ``count`` events called ``name``; returns them."""

        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(
                    lambda: (
                        sum(e.get("event") == name for e in self.events) >= count
                        or self.proc.poll() is not None
                    ),
                    within,
                )

        await asyncio.to_thread(wait)
        got = self.of(name)
        if len(got) < count:
            raise AssertionError(
                f"peer reported {len(got)} {name!r} (wanted {count}); saw {self.events[-10:]}"
            )
        return got

    def command(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def start_node_smsc(*args: str) -> NodeSmsc:
    """tests/peers/smsc.js (the npm ``smpp`` package's server) on a free port with ``args``, once it
    listens; the caller stops it."""
    proc = subprocess.Popen(
        [ensure_node_peer(), str(PEERS / "smsc.js"), "--port", "0", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peer = NodeSmsc(proc)
    try:
        peer.wait_ready()
    except BaseException:
        peer.stop()
        raise
    return peer


@dataclass
class Receipts:
    """An on_receipt callback that keeps what it got and lets a test wait for it."""

    got: list[tuple[str, DeliveryReceipt]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, carrier: str, receipt: DeliveryReceipt) -> None:
        self.got.append((carrier, receipt))
        self._changed.set()

    async def wait(self, count: int = 1, within: float = 10.0) -> list[DeliveryReceipt]:
        async with asyncio.timeout(within):
            while len(self.got) < count:
                self._changed.clear()
                await self._changed.wait()
        return [r for _, r in self.got]


@dataclass
class SimInbox:
    messages: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, sender: str, to: str, text: str) -> str:
        self.messages.append((sender, to, text))
        return f"sim-{len(self.messages)}"


@dataclass
class RunningSim:
    sim: SmppSim
    inbox: SimInbox
    port: int
