"""The 60 s form of the soak (bench/soak.py, docs/reliability.md "Soak"), run as users run it.

A fault every 15 s, kinds in a shuffled cycle: on the redis backend (two workers on Redis and
PostgreSQL) each of Redis restart, SMSC stall and worker SIGKILL once; on the memory backend (one
process, SQLite) the stall and the kill. What must hold: every 202 at the carriers exactly once, no
unexpected status, no cut connection except right after a killed worker, each fault seen to happen,
and the last line one JSON object with the documented keys.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
KINDS = {
    "memory": {"carrier_stall", "worker_kill"},
    "redis": {"carrier_stall", "worker_kill", "redis_restart"},
}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_minute_of_mixed_load_with_faults_loses_and_duplicates_nothing(backend: str) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "1", "--rate", "20"]
    cmd += ["--fault-every", "15", "--seed", "7", "--backend", backend, "--drain", "30", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=140, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(done.stdout[:-1].rsplit("\n", 1)[0])  # the human-readable part, for the record
    out = json.loads(done.stdout.strip().splitlines()[-1])
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
