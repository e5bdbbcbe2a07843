"""Run smsgw commands as real processes (as users and operators do), stopped by their PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import free_port, wait_port

MASTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def sim_config(port: int, sim_port: int, *, sections: str = "", carrier: str = "", extra: str = "") -> str:
    """A gateway config with one HTTP carrier "sim" (the sim-carrier on ``sim_port``) and one route
    "sim-default" to it. ``sections`` go before the carrier (e.g. ``[dispatch]``), ``carrier`` lines
    into its table, ``extra`` after the route (more tables)."""
    return (
        f"[server]\nport = {port}\n\n{sections}\n"
        f'[[carriers]]\nname = "sim"\ntype = "http"\nurl = "http://127.0.0.1:{sim_port}/messages"\n{carrier}\n'
        f'[[routes]]\nname = "sim-default"\ncarrier = "sim"\n{extra}\n'
    )


@dataclass
class Procs:
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "SMSGW_DB": str(self.workdir / "smsgw.db"),
            "SMSGW_MASTER_KEY": MASTER_KEY,
            **self.env,
        }
        self.env.pop("SMSGW_CONFIG", None)
        self.env.pop("REDIS_URL", None) if "REDIS_URL" not in self.env else None

    def smsgw(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self, name: str, *args: str, port: int) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115  (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(proc)
        try:
            wait_port(port, 20)
        except RuntimeError:
            proc.kill()
            raise RuntimeError(
                f"{name} did not listen: {(self.workdir / f'{name}.log').read_text()[-2000:]}"
            ) from None
        return proc

    def sim_carrier(self, *extra: str) -> int:
        port = free_port()
        self.start("sim", "sim-carrier", "--http-port", str(port), "--smpp-port", "0", *extra, port=port)
        return port

    def gateway(self, port: int, config: str | None = None) -> subprocess.Popen[bytes]:
        args = ["serve", "--port", str(port)]
        if config is not None:
            path = self.workdir / "smsgw.toml"
            path.write_text(config)
            args += ["--config", str(path)]
        return self.start("gw", *args, port=port)

    def tenant(
        self,
        name: str = "acme",
        scopes: str = "send,verify",
        countries: str = "ALL",
        fraud_mode: str = "monitor",
    ) -> str:
        """Anti-fraud in monitor mode unless asked: these tests send synthetic bursts on purpose."""
        r = self.smsgw(
            "tenant", "create", name, "--scopes", scopes, "--countries", countries, "--fraud-mode", fraud_mode
        )
        assert r.returncode == 0, r.stderr
        return str(json.loads(r.stdout.strip().splitlines()[-1])["api_key"])

    def stop_all(self) -> None:
        """SIGTERM each process still running, then a second SIGTERM a moment later: a gateway drains on
        the first (``/readyz`` 503 for ``server.drain_seconds``) and skips the rest of that delay on the
        second (gateway/app.py ``graceful_stop``), so a test's teardown does not wait out a load
        balancer's drain; the shutdown itself (dispatcher drain, unbind, store close) still runs. The
        drain delay is tested where it matters (test_graceful_shutdown.py)."""
        running = [p for p in reversed(self.started) if p.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # let each take the first signal (it starts the drain) before the second
        for p in running:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.started:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def spread(n: int) -> str:
    """The n-th of many valid German mobile numbers, each in its own 10k block (like real users, not a
    sweep through one range, which anti-fraud's rate limits would rightly stop)."""
    return f"+49151{(n * 37) % 100:02d}{n // 100:02d}{(n * 7919) % 10000:04d}"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_until(pred: Any, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")
