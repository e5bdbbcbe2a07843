"""The 60 s form of the soak (bench/soak.py, docs/reliability.md "Soak"), run as users run it.

Both backends at once, a fault every 15 s, kinds in a shuffled cycle: on the redis backend (two
workers on Redis and PostgreSQL) each of Redis restart, SMSC stall and worker SIGKILL once; on the
memory backend (one process, SQLite) the stall and the kill. What must hold: every 202 at the
carriers exactly once, no unexpected status, no cut connection except right after a killed worker,
each fault seen to happen, and the last line one JSON object with the documented keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "backend",
    "minutes",
    "rate",
    "seed",
    "fault_every",
    "requests",
    "rps",
    "error_rate",
    "unexpected",
    "refusals",
    "p99_ms",
    "accepted",
    "undelivered",
    "duplicated",
    "unknown",
    "unknown_delivered",
    "failed_but_delivered",
    "message_status",
    "verified",
    "faults",
    "fault_counts",
    "per_minute",
    "rss_growth_pct",
    "rss_growth_survivors_pct",
    "rss_target_met",
    "transport_errors_outside_faults",
}


@dataclass
class RunningSoak:
    proc: subprocess.Popen[str]
    out: Path
    err: Path


KINDS = {
    "memory": {"carrier_stall", "worker_kill"},
    "redis": {"carrier_stall", "worker_kill", "redis_restart"},
}


BACKENDS = ("memory", "redis")


@pytest.fixture(scope="module")
def soak_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningSoak]]:
    """Both backends' soaks run at once (each is mostly waiting at 20 req/s): the suite pays one minute."""
    folder = tmp_path_factory.mktemp("soak")
    runs: dict[str, RunningSoak] = {}
    for backend in BACKENDS:
        cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "1", "--rate", "20"]
        cmd += ["--fault-every", "15", "--seed", "7", "--backend", backend, "--drain", "30", "--json"]
        out, err = folder / f"{backend}.out", folder / f"{backend}.err"
        with out.open("w") as o, err.open("w") as e:
            proc = subprocess.Popen(cmd, stdout=o, stderr=e, text=True, cwd=ROOT)
        runs[backend] = RunningSoak(proc, out, err)
    yield runs
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_minute_of_mixed_load_with_faults_loses_and_duplicates_nothing(
    backend: str, soak_runs: dict[str, RunningSoak]
) -> None:
    run = soak_runs[backend]
    returncode = run.proc.wait(timeout=140)
    stdout, stderr = run.out.read_text(), run.err.read_text()
    assert returncode == 0, stdout[-3000:] + stderr[-3000:]
    print(stdout[:-1].rsplit("\n", 1)[0])  # the human-readable part, for the record
    out = json.loads(stdout.strip().splitlines()[-1])
    assert set(out) >= KEYS, KEYS - set(out)

    assert out["backend"] == backend
    assert out["accepted"] >= 300, out["accepted"]
    assert (out["undelivered"], out["duplicated"]) == (0, 0), out
    assert out.get("unknown_duplicated", 0) == 0
    assert out["unexpected"] == 0, out["unexpected_codes"]
    assert out["transport_errors_outside_faults"] == 0
    assert out["skipped"] == 0  # the load kept its rate
    assert out["verified"] > 0 and sum(out["message_status"].values()) > 0
    assert set(out["fault_counts"]) == KINDS[backend], out["faults"]
    assert all(f["happened"] for f in out["faults"]), out["faults"]
    assert [m["minute"] for m in out["per_minute"]] == [1] and out["per_minute"][0]["requests"] > 0
