"""bench/smpp_throughput.py stays runnable: a very short run must bind, submit and print its summary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "smpp_throughput.py"


def test_bench_runs_and_reports_every_case() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--seconds",
            "0.2",
            "--rounds",
            "2",
            "--warmup",
            "0.1",
            "--e2e-seconds",
            "1",
            "--e2e-rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    rows = [line for line in lines if line.startswith("  ") and "submit_sm/s" in line]
    assert len(rows) == 6
    for row in rows:
        rate = float(row.split("submit_sm/s")[0].split()[-1])
        assert rate > 0, row
        assert "not accepted 0" in row, row
    assert re.match(
        r"summary: 1 bind w50 \d+/s \(target ≥2000: (met|NOT met)\); 4 binds w50 \d+/s", lines[-1]
    )
    assert run.stderr == ""
