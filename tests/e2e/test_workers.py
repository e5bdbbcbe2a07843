"""``smsgw serve --workers N``: N processes on one port under a supervisor that restarts a dead worker
and drains them all on SIGTERM; refused where state or store cannot be shared. Real processes on a
real Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from gateway.config import load
from gateway.supervisor import restart_delay, why_not_shared
from tests.conftest import free_port
from tests.e2e.procs import Procs, sim_config, wait_until


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc)."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.update(int(c) for c in text)
    return out


def healthz_pid(port: int) -> int:
    # a new connection each time, so the kernel's SO_REUSEPORT hash may pick another worker
    req = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return int(json.loads(r.read())["pid"])


def test_settings_that_cannot_be_shared_are_named() -> None:
    memory = load(None, {})
    problem = why_not_shared(memory, 2)
    assert problem is not None
    assert "REDIS_URL" in problem and "SMSGW_DATABASE_URL" in problem
    assert why_not_shared(memory, 1) is None  # one process needs nothing shared
    shared = load(None, {"REDIS_URL": "redis://127.0.0.1:1/0", "SMSGW_DATABASE_URL": "postgresql://h/db"})
    assert why_not_shared(shared, 4) is None
    redis_only = load(None, {"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert "SMSGW_DATABASE_URL" in (why_not_shared(redis_only, 2) or "")
    assert "REDIS_URL" not in (why_not_shared(redis_only, 2) or "")


def test_a_crash_loop_backs_off_and_a_single_death_restarts_at_once() -> None:
    assert restart_delay(1) == 0.0
    delays = [restart_delay(n) for n in range(2, 12)]
    assert delays == sorted(delays) and delays[0] == 0.5 and delays[-1] == 30.0


def test_workers_refused_without_shared_state_and_store(tmp_path: Path) -> None:
    procs = Procs(tmp_path)
    r = procs.smsgw("serve", "--port", str(free_port()), "--workers", "2")
    assert r.returncode == 2
    assert "REDIS_URL" in r.stderr and "SMSGW_DATABASE_URL" in r.stderr, r.stderr


@pytest.fixture
def shared(tmp_path: Path, redis_url: str, pg_url: str) -> Procs:
    return Procs(tmp_path, env={"REDIS_URL": redis_url, "SMSGW_DATABASE_URL": pg_url})


def test_two_workers_share_the_port_a_dead_one_is_restarted_and_sigterm_drains_all(shared: Procs) -> None:
    procs = shared
    try:
        sim_port = procs.sim_carrier()
        port = free_port()
        path = procs.workdir / "smsgw.toml"
        path.write_text(sim_config(port, sim_port))
        sup = procs.start("gw", "serve", "--workers", "2", "--config", str(path), port=port)
        wait_until(lambda: len(children(sup.pid)) == 2, 20, "two workers")
        workers = children(sup.pid)
        # both answer on the one port
        wait_until(lambda: {healthz_pid(port) for _ in range(40)} == workers, 20, "both workers answering")

        # and both take OTPs (one store, one state for all)
        key = procs.tenant()
        for n in range(6):
            body = json.dumps({"to": f"+4915123{n:06d}"}).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/otp",
                data=body,
                headers={"Authorization": f"Bearer {key}", "Connection": "close"},
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 202

        # whichever worker a scrape reaches, it counts every worker's decisions (multiprocess metrics)
        def allowed() -> float:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Connection": "close"})
            with urllib.request.urlopen(req, timeout=5) as r:
                text = r.read().decode()
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("smsgw_fraud_decisions_total{") and 'decision="allow"' in line
            )

        assert {allowed() for _ in range(20)} == {6.0}

        # a worker that dies is started again; the port never stops answering meanwhile
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(children(sup.pid) - {victim}) == 2, 20, "the dead worker replaced")
        assert victim not in children(sup.pid)
        replacement = (children(sup.pid) - workers).pop()
        wait_until(lambda: healthz_pid(port) == replacement, 20, "the new worker answering")

        # SIGTERM: every worker drains and exits, then the supervisor
        alive = children(sup.pid)
        t0 = time.monotonic()
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(30) == 0
        assert time.monotonic() - t0 < 30
        for pid in alive:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        procs.stop_all()


def test_a_gateway_on_a_redis_cluster_sends_and_verifies(tmp_path: Path, redis_cluster_url: str) -> None:
    """REDIS_URL naming one node of a 3-node cluster: the anti-fraud check, the resend gate, the attempt
    counter and fill-back all run there (any key spread over slots would fail with CROSSSLOT)."""
    procs = Procs(tmp_path, env={"REDIS_URL": redis_cluster_url})
    try:
        sim_port = procs.sim_carrier()
        port = free_port()
        procs.gateway(port, sim_config(port, sim_port))
        key = procs.tenant(fraud_mode="enforce")
        auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        def post(path: str, body: dict[str, str]) -> tuple[int, dict[str, object]]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers=auth
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        to = "+4915123456789"
        status, otp = post("/v1/otp", {"to": to})
        assert status == 202, otp
        inbox = f"http://127.0.0.1:{sim_port}/inbox?to={urllib.parse.quote(to)}"
        wait_until(lambda: bool(json.loads(urllib.request.urlopen(inbox).read())), 10, "the SMS")
        text = json.loads(urllib.request.urlopen(inbox).read())[0]["text"]
        code = next(w for w in text.replace(".", " ").split() if w.isdigit())
        assert (
            post(f"/v1/otp/{otp['id']}/verify", {"code": "000000" if code != "000000" else "111111"})[0]
            == 400
        )
        assert post(f"/v1/otp/{otp['id']}/verify", {"code": code}) == (
            200,
            {"id": otp["id"], "status": "verified"},
        )
        again = post("/v1/otp", {"to": to})  # the resend cooldown, kept on the cluster
        assert again[0] == 429, again
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert "smsgw_state_backend_errors_total{" not in metrics  # no fallback to local state was needed
    finally:
        procs.stop_all()
