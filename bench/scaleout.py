"""Scale-out: 1, 2 and 4 gateway workers (`smsgw serve --workers N`) on Redis + PostgreSQL, same load.

Starts its own redis-server and PostgreSQL (initdb into a temporary directory, free ports, loopback
and a Unix socket only) and a sim-carrier; for each worker count starts `smsgw serve --workers N` on a
fresh database, creates a tenant, warms up, then drives `POST /v1/otp` with wrk (one thread, 50
connections, a fresh number per request) for a bounded time. Prints per run: accepted OTP/s, p50/p99,
gateway CPU per OTP (the supervisor and every worker, all threads, from /proc, counted until the
carrier holds every accepted message), Redis and PostgreSQL CPU per OTP (what saturates first), and
the ratios to one worker. Everything it starts it stops, by PID.
Usage: python bench/scaleout.py [--seconds 8] [--workers 1,2,4] [--connections 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from otp_throughput import cpu_seconds, free_port, run_wrk, wait_port  # noqa: E402

from tests.conftest import pg_process, redis_process  # noqa: E402

PY = sys.executable
MASTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
LUA = r"""
math.randomseed(os.time()); local n = math.random(0, 50000000)
local key = os.getenv("KEY")
request = function()
  n = n + 1
  local num = string.format("+49152%08d", (n * 7919 + math.random(0, 6)) % 100000000)
  return wrk.format("POST", "/v1/otp", {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. key}, '{"to": "' .. num .. '"}')
end
"""


def tree(pid: int) -> set[int]:
    """``pid`` and all its descendants alive now (from /proc)."""
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def cpu_of(pids: set[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            total += cpu_seconds(p)
        except OSError:
            pass  # gone (a postgres backend that ended): its CPU is lost to the figure, a small undercount
    return total


def sim_received(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return int(json.loads(r.read())["received"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object with every figure")
    args = ap.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    if shutil.which("wrk") is None:
        print("bench needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="smsgw-scaleout-"))
    results: dict[int, dict[str, float]] = {}
    started: list[subprocess.Popen[bytes]] = []
    try:
        with redis_process() as (redis, redis_port), pg_process(durable=True) as pg:
            env = {
                **os.environ,
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "SMSGW_MASTER_KEY": MASTER_KEY,
                "SMSGW_LOG_LEVEL": "warning",
                "SMSGW_DB": str(work / "unused.db"),
            }

            def start(name: str, *cmd: str, port: int, extra: dict[str, str] | None = None) -> int:
                log = open(work / f"{name}.log", "ab")  # noqa: SIM115  (closed with the process)
                p = subprocess.Popen(
                    list(cmd), env={**env, **(extra or {})}, cwd=work, stdout=log, stderr=subprocess.STDOUT
                )
                log.close()
                started.append(p)
                wait_port(port, 30)
                return p.pid

            sim_port = free_port()
            start("sim", PY, "-m", "gateway", "sim-carrier", "--http-port", str(sim_port), "--smpp-port", "0",
                  port=sim_port)  # fmt: skip
            lua = work / "otp.lua"
            lua.write_text(LUA)
            pg_master = int((pg.datadir / "postmaster.pid").read_text().split()[0])
            for n in counts:
                db = f"scale{n}"
                pg.psql(f"CREATE DATABASE {db}")
                subprocess.run(["redis-cli", "-p", str(redis_port), "FLUSHALL"], check=True,
                               capture_output=True)  # fmt: skip
                url = pg.url(db)
                port = free_port()
                cfg = work / f"w{n}.toml"
                cfg.write_text(
                    f'[server]\nport = {port}\nlog_level = "warning"\n[otp]\nmax_per_number_per_hour = 1000\n'
                    f'[[carriers]]\nname = "sim"\ntype = "http"\nbatch_max = 100\n'
                    f'url = "http://127.0.0.1:{sim_port}/messages"\n'
                    f'[[routes]]\nname = "sim-default"\ncarrier = "sim"\n'
                )
                extra = {"SMSGW_DATABASE_URL": url}
                sup = start(f"gw{n}", PY, "-m", "gateway", "serve", "--workers", str(n), "--config", str(cfg),
                            port=port, extra=extra)  # fmt: skip
                end = time.monotonic() + 30
                while len(tree(sup)) < n + 1 and time.monotonic() < end:
                    time.sleep(0.1)
                time.sleep(1.0)  # every worker bound and started (migrations done once, by the first)
                r = subprocess.run(
                    [PY, "-m", "gateway", "tenant", "create", f"bench{n}", "--countries", "ALL",
                     "--fraud-mode", "monitor"],
                    env={**env, **extra}, cwd=work, capture_output=True, text=True, check=True,
                )  # fmt: skip
                key = json.loads(r.stdout.strip().splitlines()[-1])["api_key"]
                run_wrk(port, key, args.warmup, args.connections, lua)
                gw_pids = tree(sup)
                settled, last = time.monotonic() + 20, -1
                while (now := sim_received(sim_port)) != last and time.monotonic() < settled:
                    last = now  # the warm-up's messages have all reached the carrier
                    time.sleep(0.5)
                before = (
                    cpu_of(gw_pids),
                    cpu_seconds(redis.pid),
                    cpu_of(tree(pg_master)),
                    sim_received(sim_port),
                )
                res = run_wrk(port, key, args.seconds, args.connections, lua)
                accepted = res["requests"] - res["non2xx"]
                want = before[3] + accepted
                deadline = time.monotonic() + 20
                while sim_received(sim_port) < want and time.monotonic() < deadline:
                    time.sleep(0.1)
                received = sim_received(sim_port) - before[3]
                done = max(accepted, 1.0)
                results[n] = {
                    "rps": res["rps"] * accepted / max(res["requests"], 1.0),
                    "p50_ms": res["p50"],
                    "p99_ms": res["p99"],
                    "accepted": accepted,
                    "non2xx": res["non2xx"],
                    "delivered": received,
                    "cpu_us": (cpu_of(gw_pids) - before[0]) / done * 1e6,
                    "redis_cpu_us": (cpu_seconds(redis.pid) - before[1]) / done * 1e6,
                    "pg_cpu_us": (cpu_of(tree(pg_master)) - before[2]) / done * 1e6,
                }
                p = started.pop()
                p.terminate()
                p.wait(40)
    finally:
        for p in started:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)

    one = results[counts[0]]
    print(f"cores: {os.cpu_count()} (wrk, the workers, Redis, PostgreSQL and the sim-carrier share them)")
    print(
        f"{'workers':>8}{'OTP/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'gw CPU µs/OTP':>15}{'Redis µs':>10}"
        f"{'PG µs':>8}{'OTP/s ratio':>13}{'CPU ratio':>11}{'delivered':>11}"
    )
    summary: dict[str, Any] = {"cores": os.cpu_count(), "seconds": args.seconds}
    for n, r in results.items():
        rps_ratio, cpu_ratio = r["rps"] / one["rps"], r["cpu_us"] / one["cpu_us"]
        print(
            f"{n:>8}{r['rps']:>9.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['cpu_us']:>15.0f}"
            f"{r['redis_cpu_us']:>10.0f}{r['pg_cpu_us']:>8.0f}{rps_ratio:>13.2f}{cpu_ratio:>11.2f}"
            f"{r['delivered']:>6.0f}/{r['accepted']:.0f}"
        )
        for k, v in r.items():
            summary[f"w{n}_{k}"] = round(v, 2)
        summary[f"w{n}_rps_ratio"] = round(rps_ratio, 3)
        summary[f"w{n}_cpu_ratio"] = round(cpu_ratio, 3)
    per_core = max(r["rps"] / min(n, os.cpu_count() or 1) for n, r in results.items())
    summary["otp_per_core"] = round(per_core, 1)
    print(f"best accepted OTP/s per core in use: {per_core:.0f}")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
