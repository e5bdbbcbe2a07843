"""``smsgw serve --workers N``: N gateway processes on one port, kept alive by a small supervisor.

Each worker is an ordinary ``smsgw serve`` process that binds the port with ``SO_REUSEPORT``, so the
kernel spreads connections over them; nothing is shared between workers but the store (PostgreSQL)
and the state (Redis), which is why ``--workers > 1`` is refused when either is process-local.

The supervisor only starts, watches and stops processes (the standard library's ``subprocess`` and
signals: no queue, no IPC):

- a worker that dies is started again, after a delay that doubles with each quick death in a row
  (a crash loop does not spin) and resets once a worker stayed up;
- SIGTERM or SIGINT is forwarded to every worker, which drains itself (its own graceful shutdown);
  a worker still alive after ``stop_timeout`` is killed; the supervisor exits 0 once all are gone;
- SIGHUP (route table reload) is forwarded to every worker.

The decisions (may these settings run several workers? how long before a restart?) are plain
functions, tested without processes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.config import Settings

log = logging.getLogger("smsgw.supervisor")

STOP_TIMEOUT = 30.0  # a worker's own drain is bounded well below this (readiness grace + shutdown)
STABLE_AFTER = 30.0  # a worker up this long resets its slot's crash count
MAX_DELAY = 30.0


def why_not_shared(settings: Settings, workers: int) -> str | None:
    """None when ``workers`` processes can share these settings' state and store; else why not."""
    if workers <= 1:
        return None
    problems = []
    if not settings.redis_url:
        problems.append(
            "the state (rate limits, anti-fraud counters, OTP attempts) is in memory: set REDIS_URL"
        )
    if not settings.database_url:
        problems.append(
            "the store is one SQLite file, which allows one writer at a time: "
            "set SMSGW_DATABASE_URL=postgresql://…"
        )
    for name, where in settings.residency.regions.items():
        if where and not where.startswith(("postgresql://", "postgres://")):
            problems.append(f"residency region {name!r} is a SQLite file ({where})")
    if not problems:
        return None
    return f"--workers {workers} needs state and store that processes share; " + "; ".join(problems)


def restart_delay(quick_deaths: int) -> float:
    """Seconds to wait before starting a worker again after ``quick_deaths`` deaths in a row, each
    within :data:`STABLE_AFTER` of its start: 0 for the first, then 0.5, 1, 2, … up to 30 s."""
    if quick_deaths <= 1:
        return 0.0
    return float(min(MAX_DELAY, 0.5 * 2 ** (quick_deaths - 2)))


@dataclass
class Slot:
    """One worker position: its process, when it started, its crash history."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    due: float = 0.0  # when a dead worker may be started again
    exits: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        workers: int,
        argv: Sequence[str],
        *,
        stop_timeout: float = STOP_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = list(argv)
        self.stop_timeout = stop_timeout
        self.clock = clock
        self.slots = [Slot(i) for i in range(workers)]
        self.stopping = False
        self.restarts = 0
        # prometheus_client's multiprocess mode: every worker writes its values under one directory,
        # and a scrape that reaches any worker renders them all (metrics.instruments.exposition_registry)
        self.own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        self.metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
            prefix="smsgw-metrics-"
        )

    def _start(self, slot: Slot) -> None:
        env = dict(os.environ, SMSGW_WORKER=str(slot.index), PROMETHEUS_MULTIPROC_DIR=self.metrics_dir)
        slot.proc = subprocess.Popen(self.argv, env=env)
        slot.started = self.clock()
        log.info("worker started", extra={"worker": slot.index, "pid": slot.proc.pid})

    def _reap(self, slot: Slot) -> None:
        if slot.proc is None or slot.proc.poll() is None:
            return
        code, pid, now = slot.proc.returncode, slot.proc.pid, self.clock()
        slot.proc = None
        slot.exits.append(code)
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]
        if self.stopping:
            return
        slot.quick_deaths = slot.quick_deaths + 1 if now - slot.started < STABLE_AFTER else 1
        delay = restart_delay(slot.quick_deaths)
        slot.due = now + delay
        self.restarts += 1
        log.error(
            "worker died; starting it again",
            extra={"worker": slot.index, "pid": pid, "exit": code, "restart_in_s": delay},
        )

    def _signal_all(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(sig)

    def run(self) -> int:
        def on_stop(signum: int, _frame: object) -> None:
            self.stopping = True  # only a flag: the loop below logs and stops (no I/O in a handler)

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, lambda *_: self._signal_all(signal.SIGHUP))
        for slot in self.slots:
            self._start(slot)
        while not self.stopping:
            for slot in self.slots:
                self._reap(slot)
                if slot.proc is None and not self.stopping and self.clock() >= slot.due:
                    self._start(slot)
            time.sleep(0.1)
        return self._stop()

    def _stop(self) -> int:
        log.info("stopping workers", extra={"workers": sum(s.proc is not None for s in self.slots)})
        self._signal_all(signal.SIGTERM)
        end = self.clock() + self.stop_timeout
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(max(0.0, end - self.clock()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing it", extra={"pid": slot.proc.pid})
                slot.proc.kill()
                slot.proc.wait()
        log.info("all workers stopped", extra={"restarts": self.restarts})
        if self.own_metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 0


def worker_argv(config: str | None, host: str, port: int) -> list[str]:
    """The command line of one worker: a plain ``serve`` with the same interpreter (``python -m
    gateway``), told to bind with SO_REUSEPORT so its siblings share the port."""
    argv = [sys.executable, "-m", "gateway", "serve", "--host", host, "--port", str(port), "--reuse-port"]
    return [*argv, "--config", config] if config else argv
