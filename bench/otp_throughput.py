"""Full OTP path vs a bare aiohttp handler, same load, same run.

Starts a sim-carrier, the gateway on its embedded default (SQLite, in-memory state; with
``SMSGW_DATABASE_URL`` set, on that PostgreSQL instead) routed to it, and a bare aiohttp handler;
drives each with wrk (50 connections, one thread, a fresh number per request) for a bounded time over
loopback; prints requests/s, p50 and p99 for each and the ratio. Everything it starts it stops, by PID.
Usage: python bench/otp_throughput.py [--seconds 10] [--connections 50] [--pg] [--profile stacks.txt]
(``--pg``: the gateway's store on a throwaway PostgreSQL, ``initdb`` into a temporary directory with
fsync on, as ``tests/conftest.py`` starts it; its server processes' CPU per OTP is printed too.)
(``--profile``: py-spy samples the gateway during the measured run and writes collapsed stacks, one
``frame;frame;… count`` line each, for a flame graph or a per-function sum.)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

LUA = r"""
math.randomseed(os.time()); local n = math.random(0, 50000000)
local key = os.getenv("KEY")
request = function()
  n = n + 1
  local num = string.format("+49151%08d", (n * 7919 + math.random(0, 6)) %% 100000000)
  return wrk.format("POST", "/v1/otp", {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. key}, '{"to": "' .. num .. '"}')
end
"""

# A thread-local counter makes each request's number fresh; wrk's 1 thread keeps them unique.
LUA = LUA.replace("%%", "%")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, seconds: float = 20) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        v, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(port: int, key: str, seconds: int, connections: int, lua: Path) -> dict[str, float]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(lua),
        f"http://127.0.0.1:{port}/v1/otp",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 60, env={**os.environ, "KEY": key}
    ).stdout
    return parse_wrk(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--pg", action="store_true", help="store on a throwaway PostgreSQL (fsync on)")
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="also sample the gateway with py-spy during the full-path run, collapsed stacks to FILE",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("bench needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    spy_bin = Path(PY).with_name("py-spy")
    if args.profile and not spy_bin.exists():
        print("--profile needs py-spy: .venv/bin/pip install -e '.[profile]'", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="smsgw-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "SMSGW_DB": str(work / "smsgw.db"),
        "SMSGW_MASTER_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "SMSGW_LOG_LEVEL": "warning",
    }
    env.pop("REDIS_URL", None)
    cluster = contextlib.ExitStack()
    meters: dict[str, Callable[[], float]] = {}
    if args.pg:
        sys.path.insert(0, str(ROOT))
        from tests.conftest import pg_process

        pg = cluster.enter_context(pg_process(durable=True))
        pg.psql("CREATE DATABASE bench")
        env["SMSGW_DATABASE_URL"] = pg.url("bench")
        meters["database"] = pg.cpu_seconds

    def start(*cmd: str, port: int) -> int:
        log = open(work / f"{port}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(list(cmd), env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT))
        wait_port(port)
        return procs[-1].pid

    def measured(port: int, pids: dict[str, int]) -> dict[str, float]:
        """One wrk run, plus the CPU each process spent per request (µs): unlike req/s, this does not
        depend on how the machine's cores are shared between wrk, the carrier and the server."""
        meter = {name: functools.partial(cpu_seconds, pid) for name, pid in pids.items()}
        if "carrier" in pids:  # the full path: the database works for it too
            meter.update(meters)
        before = {name: m() for name, m in meter.items()}
        res = run_wrk(port, key, args.seconds, args.connections, lua)
        done = max(res["rps"] * args.seconds, 1.0)
        for name, m in meter.items():
            res[f"cpu_{name}"] = (m() - before[name]) / done * 1e6
        return res

    try:
        sim_port, smpp_port, gw_port, bare_port = free_port(), free_port(), free_port(), free_port()
        sim_pid = start(
            PY,
            "-m",
            "gateway",
            "sim-carrier",
            "--http-port",
            str(sim_port),
            "--smpp-port",
            str(smpp_port),
            port=sim_port,
        )
        wait_port(smpp_port)
        # the embedded default's carriers (HTTP bulk first, SMPP as fallback), on this run's free ports
        (work / "smsgw.toml").write_text(
            f'[server]\nport = {gw_port}\nlog_level = "warning"\n[otp]\nmax_per_number_per_hour = 1000\n'
            f'[[carriers]]\nname = "sim"\ntype = "smpp"\nport = {smpp_port}\nsystem_id = "smsgw"\n'
            f'password = "secret"\nwindow = 50\n'
            f'[[carriers]]\nname = "sim-http"\ntype = "http"\nbatch_max = 100\n'
            f'url = "http://127.0.0.1:{sim_port}/messages"\n'
            f'[[routes]]\nname = "sim-default"\ncarrier = "sim-http"\npriority = 10\n'
            f'[[routes]]\nname = "sim-smpp"\ncarrier = "sim"\nprice = 0.012\npriority = 20\n'
        )
        gw_pid = start(PY, "-m", "gateway", "serve", "--config", str(work / "smsgw.toml"), port=gw_port)
        bare_pid = start(PY, str(ROOT / "bench" / "bare_handler.py"), str(bare_port), port=bare_port)
        r = subprocess.run(
            [
                PY,
                "-m",
                "gateway",
                "tenant",
                "create",
                "bench",
                "--countries",
                "ALL",
                "--fraud-mode",
                "monitor",
            ],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        )
        key = json.loads(r.stdout)["api_key"]
        lua = work / "otp.lua"
        lua.write_text(LUA)
        run_wrk(gw_port, key, 2, args.connections, lua)  # warm-up (pattern cache, sqlite pages)
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    str(spy_bin),
                    "record",
                    "--pid",
                    str(gw_pid),
                    "--format",
                    "raw",
                    "--rate",
                    "500",
                    "--duration",
                    str(args.seconds),
                    "--output",
                    args.profile,
                    "--threads",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        full = measured(gw_port, {"server": gw_pid, "carrier": sim_pid})
        if spy is not None:
            spy.wait(30)
        bare = measured(bare_port, {"server": bare_pid})
        time.sleep(1.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{sim_port}/stats") as resp:
            sim_stats = json.loads(resp.read())
        print(f"cores: {os.cpu_count()} (wrk, the server and, for the full path, the sim-carrier share them)")
        head = (
            f"{'case':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}{'server CPU µs/req':>19}"
        )
        print(head)
        store = "postgresql" if env.get("SMSGW_DATABASE_URL") else "embedded"
        for name, res in (("bare aiohttp handler", bare), (f"full OTP path ({store})", full)):
            print(
                f"{name:<28}{res['rps']:>10.0f}{res['p50']:>10.2f}{res['p99']:>10.2f}{res['non2xx']:>10.0f}"
                f"{res['cpu_server']:>19.0f}"
            )
        print(f"sim-carrier CPU per OTP: {full['cpu_carrier']:.0f} µs (the full path's receiving end)")
        if "cpu_database" in full:
            print(f"PostgreSQL CPU per OTP: {full['cpu_database']:.0f} µs (its server processes)")
        ratio = full["rps"] / bare["rps"]
        print(f"carrier inbox after the run: {sim_stats['received']} messages")
        print(f"CPU per request, bare/full: {bare['cpu_server'] / full['cpu_server']:.2f}")
        print(
            f"ratio full/bare: {ratio:.2f} (target >= 0.30) -> {'PASS' if ratio >= 0.30 else 'BELOW TARGET'}"
        )
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
        cluster.close()


if __name__ == "__main__":
    raise SystemExit(main())
