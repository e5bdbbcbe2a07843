"""bench/peer_kannel.py stays runnable: a short run drives Kannel's sendsms and smsgw's /v1/otp and
/v1/messages, on the embedded default and on ``serve --workers 2`` (Redis + PostgreSQL), every accepted
smsgw message reaches the counting SMSC after the drain, the figures are there and positive, and nothing
it started outlives it. Needs Debian's kannel (scripts/test installs it), redis-server and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "peer_kannel.py"

pytestmark = pytest.mark.skipif(
    shutil.which("bearerbox") is None or shutil.which("smsbox") is None or shutil.which("wrk") is None,
    reason="needs Debian's kannel and wrk (scripts/test installs both)",
)

ARGS = ("--seconds", "2", "--warmup", "1", "--connections", "20", "--workers", "1,2", "--json")
FIGURES = ("rps", "p50_ms", "p99_ms", "accepted", "at_smsc_drain", "cpu_us", "smsc_cpu_us")


def left_behind() -> list[str]:
    """Command lines of live processes that name the bench's temp dirs (its Kannel, SMSCs, smsgw)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(mark in text for mark in ("smsgw-kannel-", "counting_smsc.js", "smsgw-redis-", "smsgw-pg-")):
            found.append(text)
    return found


def test_bench_drives_both_systems_and_every_accepted_message_reaches_the_smsc() -> None:
    before = left_behind()
    run = subprocess.run(
        [sys.executable, str(BENCH), *ARGS],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    cases = ("kannel", "otp", "msg", "smsgw_w2_otp", "smsgw_w2_msg")
    for case in cases:
        for figure in FIGURES:
            assert summary[f"{case}_{figure}"] > 0, f"{case}_{figure}"
        assert summary[f"{case}_non2xx"] == 0, case
        # every accepted message reached the SMSC once the drain was over (wrk's last in-flight
        # requests are accepted too but not counted by wrk, so the SMSC may hold a few more)
        assert summary[f"{case}_at_smsc_drain"] >= summary[f"{case}_accepted"], case
    # smsgw asks for a receipt for every message and takes every one the SMSC sends
    for case in cases[1:]:
        assert summary[f"{case}_receipts"] >= summary[f"{case}_accepted"], case
        for ratio in ("x_kannel_rps", "x_kannel_cpu"):
            assert summary[f"{case}_{ratio}"] > 0, f"{case}_{ratio}"
    # two workers: each bound the SMSC itself; Redis's and PostgreSQL's share is counted beside the gateway's
    assert summary["workers"] == [2] and summary["smsgw_w2_binds"] == 2
    for case in ("smsgw_w2_otp", "smsgw_w2_msg"):
        assert summary[f"{case}_redis_cpu_us"] > 0 and summary[f"{case}_pg_cpu_us"] > 0, case
        assert summary[f"{case}_all_cpu_us"] > summary[f"{case}_cpu_us"], case
        assert summary[f"{case}_x_kannel_all_cpu"] > summary[f"{case}_x_kannel_cpu"], case
    assert "Kannel sendsms" in run.stdout and "smsgw POST /v1/messages" in run.stdout
    assert "smsgw w2 POST /v1/otp" in run.stdout
    assert left_behind() == before
