"""Redis stops under load and comes back (issue 15, item 1), with real processes throughout.

Two ``smsgw serve`` processes share one PostgreSQL and a redis-server of this test's own (AOF on,
``appendfsync always``, its own port and folder), with a sim-carrier behind them. A thread keeps
steady load on both (an OTP to a new number, then a verify with a wrong code, in turn) while the test
SIGKILLs Redis and then starts it again on the same port and folder. What must hold:

- the API kept answering: no 500, no refused or dropped connection; sends 202 (or a documented 429),
  verifies 400 ``incorrect_code`` or, while Redis is away, 503 ``unavailable`` with ``Retry-After: 5``,
  never 200; a verify with the RIGHT code during the outage is 503 too (fail closed, no verdict);
- every 202 reached the sim-carrier exactly once;
- the verify attempts counted before the kill are still counted after (AOF), so a guess budget never
  starts over; after the restart verifies work again;
- rate limits are shared through Redis again: a number sent through one process is in cooldown on the
  other (while Redis was away each process kept its own, as documented);
- each process counted one down and one up transition and logged each once; no number in clear in
  the logs.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, redis_process
from tests.e2e.procs import Procs, sim_config, spread, wait_until

WRONG = "1234567"  # seven digits: a wrong code that can never match a six-digit one


@dataclass
class Answer:
    phase: str  # "before" | "outage" | "restarted" | "after", when the request was sent
    done: str  # the phase when its answer came (a request sent just before the kill ends in the outage)
    kind: str  # "send" | "verify"
    gateway: int
    status: int  # 0: no HTTP answer at all (refused, reset, timed out)
    code: str = ""  # the error code, "" on success
    retry_after: str | None = None
    seconds: float = 0.0  # how long the answer took


@dataclass
class Load:
    """Steady traffic on both gateways from one thread, every answer kept."""

    ports: list[int]
    key: str
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # number -> OTP id (each number once)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            port = self.ports[n % len(self.ports)]
            to = spread(5000 + n)
            n += 1
            phase, t0 = self.phase, time.monotonic()
            status, body, headers = call(port, "/v1/otp", self.key, {"to": to})
            self.answers.append(
                Answer(
                    phase,
                    self.phase,
                    "send",
                    port,
                    status,
                    error_code(body),
                    headers.get("Retry-After"),
                    time.monotonic() - t0,
                )
            )
            if status != 202:
                continue
            self.accepted[to] = body["id"]
            phase, t0 = self.phase, time.monotonic()
            status, body, headers = call(port, f"/v1/otp/{body['id']}/verify", self.key, {"code": WRONG})
            self.answers.append(
                Answer(
                    phase,
                    self.phase,
                    "verify",
                    port,
                    status,
                    error_code(body),
                    headers.get("Retry-After"),
                    time.monotonic() - t0,
                )
            )
            time.sleep(0.01)  # steady, not flat out: the machine is shared


def call(port: int, path: str, key: str, body: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)
    except OSError:
        return 0, None, {}


def error_code(body: Any) -> str:
    return str(body["error"]["code"]) if isinstance(body, dict) and "error" in body else ""


def inbox(sim_port: int, to: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{sim_port}/inbox?to={urllib.parse.quote(to)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return list(json.loads(r.read()))


def metric(port: int, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    series = f"{name}{{{labels}}}" if labels else name
    total = 0.0
    for line in text.splitlines():
        if line.startswith(series + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def code_of(sim_port: int, to: str) -> str:
    m = re.search(r"\b(\d{6})\b", inbox(sim_port, to)[0]["text"])
    assert m
    return m.group(1)


@pytest.mark.timeout(100)
@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_redis_stops_under_load_and_comes_back(tmp_path: Path, pg_url: str, fault: str) -> None:
    """``killed``: SIGKILL, then a new redis-server on the same port and AOF folder (connections
    refused, then every pooled connection dead). ``frozen``: SIGSTOP, then SIGCONT (connections
    accepted and never answered: every call to it ends in the client's timeouts)."""
    redis_port = free_port()
    aof = tmp_path / "redis"
    aof.mkdir()
    durable = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(aof))
    procs = Procs(
        tmp_path, env={"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "SMSGW_DATABASE_URL": pg_url}
    )
    load: Load | None = None
    thread: threading.Thread | None = None
    redis: subprocess.Popen[bytes] | None = None
    try:
        with contextlib.ExitStack() as servers:
            redis, _ = servers.enter_context(redis_process(*durable, port=redis_port))
            sim_port = procs.sim_carrier()
            ports = [free_port(), free_port()]
            for i, port in enumerate(ports):
                path = tmp_path / f"gw{i}.toml"
                path.write_text(sim_config(port, sim_port))
                procs.start(f"gw{i}", "serve", "--config", str(path), port=port)
            a, b = ports
            key = procs.tenant()

            # an OTP with two wrong guesses made while Redis is up
            probe = "+4915199000001"
            status, otp, _ = call(a, "/v1/otp", key, {"to": probe})
            assert status == 202, otp
            wait_until(lambda: bool(inbox(sim_port, probe)), 20, "the probe OTP's SMS")
            right = code_of(sim_port, probe)
            for left, port in ((4, b), (3, a)):
                status, body, _ = call(port, f"/v1/otp/{otp['id']}/verify", key, {"code": WRONG})
                assert (status, body["error"]["code"], body["error"]["attempts_left"]) == (
                    400,
                    "incorrect_code",
                    left,
                )

            load = Load(ports, key)
            thread = threading.Thread(target=load.run, daemon=True)
            thread.start()
            wait_until(lambda: len(load.accepted) >= 10, 30, "load before the outage")

            load.phase = "outage"
            t_fault = time.monotonic()
            if fault == "killed":
                redis.kill()  # no goodbye: connections just die
                redis.wait(10)
            else:
                redis.send_signal(signal.SIGSTOP)
            # both processes notice (the load reaches both) and keep answering
            wait_until(
                lambda: all(metric(p, "smsgw_state_fallback_active") == 1 for p in ports), 30, "fallback"
            )
            detected_s = time.monotonic() - t_fault
            outage_sent = len(load.accepted)
            # the right code, while the attempt counter is unreachable: no verdict
            status, body, headers = call(a, f"/v1/otp/{otp['id']}/verify", key, {"code": right})
            assert (status, body["error"]["code"], headers.get("Retry-After")) == (503, "unavailable", "5"), (
                body
            )
            # documented fallback: each process keeps its own resend cooldown meanwhile
            local = "+4915199000002"
            assert call(a, "/v1/otp", key, {"to": local})[0] == 202
            assert call(a, "/v1/otp", key, {"to": local})[0] == 429  # the same process: its cooldown holds
            assert call(b, "/v1/otp", key, {"to": local})[0] == 202  # the other process did not see it
            # hold the outage past one hold-off, so each process re-probes a dead Redis at least once
            time.sleep(6)
            wait_until(lambda: len(load.accepted) >= outage_sent + 10, 30, "sends accepted in the outage")

            load.phase = "restarted"
            t_back = time.monotonic()
            if fault == "killed":
                servers.enter_context(redis_process(*durable, port=redis_port))
            else:
                redis.send_signal(signal.SIGCONT)
            # back by itself within the hold-off (5 s), probed by the load
            wait_until(
                lambda: all(metric(p, "smsgw_state_fallback_active") == 0 for p in ports), 30, "recovery"
            )
            recovered_s = time.monotonic() - t_back
            load.phase = "after"
            after_sent = len(load.accepted)
            wait_until(lambda: len(load.accepted) >= after_sent + 10, 30, "load after the outage")
            load.stop.set()
            thread.join(30)

            # the two guesses before the outage still count: this third one leaves two, not four
            status, body, _ = call(b, f"/v1/otp/{otp['id']}/verify", key, {"code": WRONG})
            assert (status, body["error"]["code"], body["error"]["attempts_left"]) == (
                400,
                "incorrect_code",
                2,
            )
            assert call(a, f"/v1/otp/{otp['id']}/verify", key, {"code": right})[:2] == (
                200,
                {"id": otp["id"], "status": "verified"},
            )
            # the resend cooldown is shared through Redis again
            shared = "+4915199000003"
            assert call(a, "/v1/otp", key, {"to": shared})[0] == 202
            status, body, headers = call(b, "/v1/otp", key, {"to": shared})
            assert (status, body["error"]["code"]) == (429, "rate_limited") and headers.get("Retry-After")

            metrics = {
                p: {t: metric(p, "smsgw_state_fallback_total", f'transition="{t}"') for t in ("down", "up")}
                for p in ports
            }
            refused = {
                p: metric(p, "smsgw_state_backend_errors_total", 'operation="verify_attempt"') for p in ports
            }

            # every accepted message reached the carrier, once
            numbers = [*load.accepted, probe, local, shared]
            wait_until(
                lambda: all(inbox(sim_port, n) for n in numbers), 60, "every accepted SMS at the carrier"
            )
            copies = {n: len(inbox(sim_port, n)) for n in numbers}
            procs.stop_all()

        answers = load.answers
        sends = [x for x in answers if x.kind == "send"]
        verifies = [x for x in answers if x.kind == "verify"]
        assert not [x for x in answers if x.status == 0], "connections refused or dropped"
        assert not [x for x in answers if x.status >= 500 and x.code != "unavailable"]
        assert {(x.status, x.code) for x in sends} <= {(202, ""), (429, "rate_limited")}
        assert {(x.status, x.code) for x in verifies} <= {(400, "incorrect_code"), (503, "unavailable")}
        assert all(x.retry_after == "5" for x in verifies if x.status == 503)
        assert not [x for x in verifies if x.status == 503 and x.phase == x.done in ("before", "after")]
        assert [x for x in verifies if x.status == 503 and x.phase == "outage"], "no verify met the outage"
        by_phase = {
            ph: sum(x.status == 202 for x in sends if x.phase == ph) for ph in ("before", "outage", "after")
        }
        assert all(by_phase.values()), by_phase

        assert {n: c for n, c in copies.items() if n != local and c != 1} == {}
        assert copies[local] == 2  # accepted twice, once per process, during the outage

        for p in ports:
            assert metrics[p] == {"down": 1.0, "up": 1.0}, metrics
            assert refused[p] >= 1
        for i in range(2):
            log = (tmp_path / f"gw{i}.log").read_text()
            lines = [json.loads(s) for s in log.splitlines() if s.startswith("{")]
            state = [x["msg"] for x in lines if x.get("logger") == "smsgw.state"]
            assert sum(m.startswith("redis unavailable") for m in state) == 1, state
            assert sum(m.startswith("redis is back") for m in state) == 1, state
            assert not [n for n in numbers if n in log or n[1:] in log], "a number in clear in the log"
        slowest = {
            ph: round(max((x.seconds for x in sends if x.phase == ph), default=0.0), 2)
            for ph in ("before", "outage", "restarted", "after")
        }
        print(
            f"\n{fault}: sends {len(sends)} (202 by phase {by_phase}), verifies {len(verifies)} "
            f"({sum(x.status == 503 for x in verifies)} answered 503 while Redis was away or not yet probed "
            f"again); fallback on both processes {detected_s:.1f} s after the fault, back on Redis "
            f"{recovered_s:.1f} s after it returned; slowest send by phase (s) {slowest}; "
            f"accepted messages at the carrier exactly once: {len(numbers)}"
        )
    finally:
        if load is not None:
            load.stop.set()
        if thread is not None:
            thread.join(30)
        if redis is not None and redis.poll() is None:
            redis.send_signal(signal.SIGCONT)  # a frozen one must be able to take its SIGTERM
        procs.stop_all()
