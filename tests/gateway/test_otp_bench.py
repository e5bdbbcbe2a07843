"""bench/otp_throughput.py stays runnable: a very short run must drive all three cases, see every
accepted message reach the carrier and end with its JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "otp_throughput.py"

KEYS = {
    "full_rps",
    "full_p99_ms",
    "full_cpu_us",
    "bare_rps",
    "bare_cpu_us",
    "carrier_cpu_us",
    "msg_rps",
    "msg_p99_ms",
    "msg_cpu_us",
}


def test_bench_runs_every_case_and_ends_with_one_json_object() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "1", "--warmup", "1", "--connections", "10", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary.keys() >= KEYS
    for key in KEYS:
        assert summary[key] > 0, key
    assert summary["full_non2xx"] == 0 and summary["msg_non2xx"] == 0
    # every accepted message reached the carrier (the CPU figure covers its whole life)
    assert summary["full_carrier_received"] >= summary["full_rps"] * 0.5
    assert "full OTP path (embedded)" in run.stdout and "POST /v1/messages" in run.stdout
