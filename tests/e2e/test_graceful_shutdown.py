"""SIGTERM to a real `smsgw serve` under load (docs/reliability.md, "Graceful shutdown").

The carrier is the npm ``smpp`` SMSC (tests/peers/smsc.js) behind a TPS limit, so a backlog is still
waiting when the signal comes. Checked: /readyz answers 503 before the listener closes; every request
gets its normal answer (202) or a refused connection, never an error; the SMPP bind is unbound (the
SMSC sees the unbind PDU); the process exits within a bounded time; a new process on the same database
sends what was left, and every accepted message reaches the SMSC exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.carriers.smpp_peers import NodeSmsc, start_node_smsc
from tests.conftest import free_port
from tests.e2e.procs import Procs, spread, wait_until


@pytest.fixture
def smsc() -> Iterator[NodeSmsc]:
    peer = start_node_smsc("--mode", "normal", "--receipt-delay-ms", "5")
    yield peer
    peer.stop()


def config(port: int, smsc_port: int) -> str:
    return (
        f"[server]\nport = {port}\ndrain_seconds = 2.0\n\n"
        "[dispatch]\nworkers = 4\nclaim_lease_seconds = 10.0\nsweep_interval_seconds = 0.2\n\n"
        f'[[carriers]]\nname = "smsc"\ntype = "smpp"\nhost = "127.0.0.1"\nport = {smsc_port}\n'
        'system_id = "smsgw"\npassword = "secret"\ntps = 15.0\ntimeout_seconds = 2.0\n'
        "stall_grace_seconds = 2.0\n\n"
        '[[routes]]\nname = "primary"\ncarrier = "smsc"\n'
    )


def request(url: str, key: str | None = None, body: dict[str, str] | None = None) -> tuple[int, str]:
    """(status, body text), or (0, reason) when the connection was refused or closed."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        return 0, str(getattr(e, "reason", e))


def serve(procs: Procs, port: int, cfg: str, workers: int) -> subprocess.Popen[bytes]:
    path = procs.workdir / "smsgw.toml"
    path.write_text(cfg)
    return procs.start(
        "gw", "serve", "--port", str(port), "--config", str(path), "--workers", str(workers), port=port
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_unbinds_and_a_restart_sends_the_rest_exactly_once(
    request: pytest.FixtureRequest, tmp_path: Path, smsc: NodeSmsc, workers: int
) -> None:
    env = {}
    if workers > 1:  # the supervisor forwards SIGTERM; workers share PostgreSQL and Redis
        env = {
            "REDIS_URL": request.getfixturevalue("redis_url"),
            "SMSGW_DATABASE_URL": request.getfixturevalue("pg_url"),
        }
    procs = Procs(tmp_path, env=env)
    try:
        drain_and_restart(procs, smsc, workers)
    finally:
        procs.stop_all()


def drain_and_restart(procs: Procs, smsc: NodeSmsc, workers: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = config(port, smsc.port)
    gw = serve(procs, port, cfg, workers)
    key = procs.tenant()
    wait_until(lambda: request(f"{base}/readyz")[0] == 200, 20, "ready")

    answers: list[tuple[float, int, str, int]] = []  # (time, status, body, index)
    readiness: list[tuple[float, int]] = []
    stop = threading.Event()

    def sender(offset: int) -> None:
        i = offset
        while not stop.is_set() and i < offset + 400:
            body = {"to": spread(i), "sender_id": "ACME", "body": f"parcel {i:04d} is on its way"}
            st, text = request(f"{base}/v1/messages", key, body)
            answers.append((time.monotonic(), st, text, i))
            if st == 0:
                return  # the listener is closed: this client stops
            i += 1
            time.sleep(0.02)

    def prober() -> None:
        while not stop.is_set():
            st, _ = request(f"{base}/readyz")
            readiness.append((time.monotonic(), st))
            if st == 0:
                return
            time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(k * 1000,)) for k in range(2)]
    threads.append(threading.Thread(target=prober))
    for t in threads:
        t.start()
    time.sleep(1.5)
    t_term = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    try:
        gw.wait(30)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    exited_after = time.monotonic() - t_term

    # bounded: drain delay (2 s) + in-flight requests + the dispatcher's grace (5 s) + the unbind
    assert exited_after < 20, f"took {exited_after:.1f}s to exit"
    assert gw.returncode == 0, procs.workdir.joinpath("gw.log").read_text()[-3000:]
    # readiness went 503 before the listener closed, and while requests were still served
    after = [(t, st) for t, st in readiness if t >= t_term]
    first_503 = next(t for t, st in after if st == 503)
    first_refused = next(t for t, st in after if st == 0)
    assert first_503 < first_refused
    assert first_refused - t_term >= 1.5  # the drain delay (2 s), loosely
    # every request had its normal answer or found the door closed: no 5xx, nothing half-answered
    statuses = Counter(st for _, st, _, _ in answers)
    assert set(statuses) <= {202, 0}, statuses
    refusals = [text for _, st, text, _ in answers if st == 0]
    assert all("refused" in r.lower() for r in refusals), refusals  # not a request cut off mid-answer
    served_while_draining = [a for a in answers if a[1] == 202 and a[0] > first_503]
    assert served_while_draining, "no request was served during the drain delay"
    accepted = {i: json.loads(text)["id"] for _, st, text, i in answers if st == 202}
    # the SMPP session said goodbye properly
    assert smsc.of("unbind"), smsc.events[-5:]
    sent_before = Counter(e["text"] for e in smsc.of("submit"))
    assert len(sent_before) < len(accepted), "nothing was left to send: the test proved no restart"
    log = procs.workdir.joinpath("gw.log").read_text()
    assert "released claims of messages not sent before stopping" in log
    assert len(smsc.of("unbind")) == workers  # each worker's bind

    # restart on the same database: what was left goes out, nothing goes twice
    serve(procs, port, cfg, workers)
    bodies = Counter(f"parcel {i:04d} is on its way" for i in accepted)
    wait_until(lambda: len(smsc.of("submit")) >= len(accepted), 40, "every accepted message at the SMSC")
    time.sleep(1.0)  # anything sent twice would arrive now
    at_smsc = Counter(e["text"] for e in smsc.of("submit"))
    assert at_smsc == bodies
    print(
        f"graceful shutdown, {workers} worker(s): {len(accepted)} accepted "
        f"({len(served_while_draining)} while draining), "
        f"{sum(sent_before.values())} sent before exit, {len(accepted) - sum(sent_before.values())} "
        f"sent after restart, exit {exited_after:.1f}s after SIGTERM, "
        f"readyz 503 {first_refused - first_503:.2f}s before the listener closed"
    )
