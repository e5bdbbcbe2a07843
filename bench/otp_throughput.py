"""Full OTP path and POST /v1/messages vs a bare aiohttp handler, same load, same run.

Starts a sim-carrier, the gateway on its embedded default (SQLite, in-memory state, one process)
routed to it, and a bare aiohttp handler; drives each with wrk (50 connections, one thread, a fresh
number per request) for a bounded time over loopback; prints requests/s, p50 and p99 for each and the
server's CPU per request from /proc (user + system, all threads). The gateway's figure covers the
whole life of each message: after wrk stops, the bench waits (bounded) until the carrier holds every
accepted message and has posted every receipt back, so dispatch and receipts are counted too.
Everything it starts it stops, by PID.
Usage: python bench/otp_throughput.py [--seconds 10] [--connections 50] [--rounds 3] [--profile stacks.txt]
[--json]
(``--profile``: py-spy samples the gateway during the measured OTP run (``--profile-case msg``: the
messages run) and writes collapsed stacks,
one ``frame;frame;… count`` line each, for a flame graph or a per-function sum; ``--json``: the last
line is one JSON object with every figure.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

LUA = r"""
math.randomseed(os.time()); local n = math.random(0, 50000000)
local key = os.getenv("KEY")
request = function()
  n = n + 1
  local num = string.format("+49PREFIX%08d", (n * 7919 + math.random(0, 6)) %% 100000000)
  return wrk.format("POST", "PATH", {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. key}, 'BODY_HEAD' .. num .. 'BODY_TAIL')
end
"""


def lua_script(path: str, prefix: str, head: str, tail: str) -> str:
    """A wrk script posting to ``path`` with a fresh German mobile number (``+49<prefix>…``) per
    request: a thread-local counter makes each fresh; wrk's one thread keeps them unique."""
    return (
        LUA.replace("%%", "%")
        .replace("PATH", path)
        .replace("PREFIX", prefix)
        .replace("BODY_HEAD", head)
        .replace("BODY_TAIL", tail)
    )


OTP_LUA = lua_script("/v1/otp", "151", '{"to": "', '"}')
# DE needs no sender registration: a transactional SMS from an alphanumeric sender goes straight out
MSG_LUA = lua_script(
    "/v1/messages", "160", '{"to": "', '", "sender_id": "ACME", "body": "Your parcel is on its way"}'
)


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


def embedded_env(work: Path) -> dict[str, str]:
    """The environment for smsgw on its embedded default: SQLite in ``work``, in-memory state (no
    ``REDIS_URL``), a fixed bench master key, warnings only."""
    env = {
        **os.environ,
        "SMSGW_DB": str(work / "smsgw.db"),
        "SMSGW_MASTER_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "SMSGW_LOG_LEVEL": "warning",
    }
    env.pop("REDIS_URL", None)
    return env


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process, then wait for each (10 s), SIGKILL what is still there."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def parse_wrk(out: str) -> dict[str, float]:
    def ms(text: str) -> float:
        v, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "requests": total,
        "p50": p50,
        "p99": p99,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of a process's main thread (the event loop's)."""
    return cpu_seconds_of(Path(f"/proc/{pid}/task/{pid}/stat"))


def system_cpu(pid: int) -> float:
    """System (kernel) CPU seconds of a process, all threads: syscalls, e.g. writes and fsyncs."""
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"), user=False)


def cpu_seconds_of(stat: Path, user: bool = True) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return ((int(fields[11]) if user else 0) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(port: int, key: str, seconds: int, connections: int, lua: Path) -> dict[str, float]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(lua),
        f"http://127.0.0.1:{port}/",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 60, env={**os.environ, "KEY": key}
    ).stdout
    return parse_wrk(out)


def sim_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        stats: dict[str, Any] = json.loads(resp.read())
    return stats


def submitted_by_route(port: int) -> dict[str, float]:
    """The gateway's ``smsgw_messages_total{status="submitted"}`` per route, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(r"^smsgw_messages_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("status") == "submitted":
            out[labels["route"]] = out.get(labels["route"], 0.0) + float(m.group(2))
    return out


def settle(sim_port: int, gw_pid: int, expect_received: int, within: float) -> dict[str, Any]:
    """Until the carrier holds at least ``expect_received`` messages, has no HTTP receipt left to post,
    and in the last 0.3 s it got nothing new and the gateway was nearly idle (under 10 % of a core:
    SMPP receipts are done too), or ``within`` seconds pass; the carrier's stats then."""
    end = time.monotonic() + within
    last: dict[str, Any] = {}
    cpu = cpu_seconds(gw_pid)
    while True:
        stats = sim_stats(sim_port)
        busy = cpu_seconds(gw_pid) - cpu
        cpu += busy
        done = stats["received"] >= expect_received and not stats["receipts_held"]
        if (done and stats == last and busy < 0.03) or time.monotonic() > end:
            return stats
        last = stats
        time.sleep(0.3)


HEADLINE = (
    "full_rps",
    "full_p99_ms",
    "full_cpu_us",
    "full_x_bare",
    "msg_rps",
    "msg_p99_ms",
    "msg_cpu_us",
    "msg_x_bare",
    "bare_rps",
    "bare_cpu_us",
    "carrier_cpu_us",
)


def report(full: dict[str, Any], msg: dict[str, Any], bare: dict[str, Any]) -> None:
    """One round's table."""
    head = (
        f"{'case':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}{'server CPU µs/req':>19}"
        f"{'main thread':>13}{'kernel':>8}"
    )
    print(head)
    cases = (("bare aiohttp handler", bare), ("full OTP path (embedded)", full), ("POST /v1/messages", msg))
    for name, res in cases:
        print(
            f"{name:<28}{res['rps']:>10.0f}{res['p50']:>10.2f}{res['p99']:>10.2f}{res['non2xx']:>10.0f}"
            f"{res['cpu_server']:>19.0f}{res['cpu_server_main']:>13.0f}{res['cpu_server_sys']:>8.0f}"
        )
    for name, res in cases[1:]:
        print(
            f"{name}: carrier received {res['carrier_received']:.0f} of "
            f"{res['requests'] - res['non2xx']:.0f} accepted, "
            f"{res['receipts_posted']:.0f} HTTP receipts posted back; sim-carrier CPU "
            f"{res['cpu_carrier']:.0f} µs per message; submitted by route: "
            + ", ".join(f"{r} {n:.0f}" for r, n in sorted(res["routes"].items()))
        )
    full_x = full["cpu_server"] / bare["cpu_server"]
    msg_x = msg["cpu_server"] / bare["cpu_server"]
    print(
        f"server CPU per request, x bare: OTP {full_x:.1f} (target <= 6.0, aim 4.5) -> "
        f"{'met' if full_x <= 6.0 else 'NOT met'}; messages {msg_x:.1f} (target <= 3.5) -> "
        f"{'met' if msg_x <= 3.5 else 'NOT met'}"
    )


def summary(full: dict[str, Any], msg: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    """One round's figures, flat, as the JSON line carries them."""
    return {
        "full_rps": round(full["rps"], 1),
        "full_p50_ms": full["p50"],
        "full_p99_ms": full["p99"],
        "full_non2xx": int(full["non2xx"]),
        "full_cpu_us": round(full["cpu_server"], 1),
        "full_cpu_main_us": round(full["cpu_server_main"], 1),
        "full_cpu_sys_us": round(full["cpu_server_sys"], 1),
        "full_x_bare": round(full["cpu_server"] / bare["cpu_server"], 2),
        "carrier_cpu_us": round(full["cpu_carrier"], 1),
        "full_carrier_received": int(full["carrier_received"]),
        "full_receipts": int(full["receipts_posted"]),
        "full_routes": full["routes"],
        "msg_rps": round(msg["rps"], 1),
        "msg_p50_ms": msg["p50"],
        "msg_p99_ms": msg["p99"],
        "msg_non2xx": int(msg["non2xx"]),
        "msg_cpu_us": round(msg["cpu_server"], 1),
        "msg_cpu_main_us": round(msg["cpu_server_main"], 1),
        "msg_cpu_sys_us": round(msg["cpu_server_sys"], 1),
        "msg_x_bare": round(msg["cpu_server"] / bare["cpu_server"], 2),
        "msg_carrier_cpu_us": round(msg["cpu_carrier"], 1),
        "msg_carrier_received": int(msg["carrier_received"]),
        "msg_routes": msg["routes"],
        "bare_rps": round(bare["rps"], 1),
        "bare_p99_ms": bare["p99"],
        "bare_cpu_us": round(bare["cpu_server"], 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)  # wrk takes whole seconds
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=2, help="seconds of OTP load before the measured runs")
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="also sample the gateway with py-spy during one measured run, collapsed stacks to FILE",
    )
    ap.add_argument(
        "--profile-case",
        choices=["otp", "msg"],
        default="otp",
        help="which run --profile samples: the full OTP path (default) or POST /v1/messages",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the three cases this many times in turn; the summary is each figure's median",
    )
    ap.add_argument("--json", action="store_true", help="last line: one JSON object with every figure")
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
    env = embedded_env(work)

    def start(*cmd: str, port: int) -> int:
        log = open(work / f"{port}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(list(cmd), env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT))
        wait_port(port)
        return procs[-1].pid

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
        otp_lua, msg_lua = work / "otp.lua", work / "msg.lua"
        otp_lua.write_text(OTP_LUA)
        msg_lua.write_text(MSG_LUA)

        def measured(port: int, lua: Path, pids: dict[str, int], gateway: bool) -> dict[str, float]:
            """One wrk run, plus the CPU each process spent per accepted request (µs): unlike req/s,
            this does not depend on how the machine's cores are shared between wrk, the carrier and the
            server. For the gateway, until every accepted message reached the carrier and its receipt
            came back (bounded)."""
            start_stats = sim_stats(sim_port) if gateway else {}
            routes_before = submitted_by_route(port) if gateway else {}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            main_before = main_thread_cpu(pids["server"])
            sys_before = system_cpu(pids["server"])
            res = run_wrk(port, key, args.seconds, args.connections, lua)
            accepted = res["requests"] - res["non2xx"]
            if gateway:
                stats = settle(sim_port, pids["server"], start_stats["received"] + int(accepted), within=15)
                res["carrier_received"] = stats["received"] - start_stats["received"]
                res["receipts_posted"] = stats["receipts_sent"] - start_stats["receipts_sent"]
                routes = submitted_by_route(port)
                res["routes"] = {r: n - routes_before.get(r, 0.0) for r, n in routes.items()}  # type: ignore[assignment]
                if os.environ.get("BENCH_DEBUG"):
                    print(start_stats, stats, file=sys.stderr)
            done = max(accepted, 1.0)
            for name, pid in pids.items():
                res[f"cpu_{name}"] = (cpu_seconds(pid) - before[name]) / done * 1e6
            res["cpu_server_main"] = (main_thread_cpu(pids["server"]) - main_before) / done * 1e6
            res["cpu_server_sys"] = (system_cpu(pids["server"]) - sys_before) / done * 1e6
            return res

        run_wrk(gw_port, key, args.warmup, args.connections, otp_lua)  # warm-up (caches, sqlite pages)
        run_wrk(gw_port, key, max(args.warmup // 2, 1), args.connections, msg_lua)
        settle(sim_port, gw_pid, 0, within=15)
        spy_cmd = [
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
            str(args.profile),
            "--threads",
            "--nonblocking",  # no pause of the gateway per sample: its CPU figures stay close to a plain run
        ]

        def sample(case: str) -> subprocess.Popen[bytes] | None:
            if not args.profile or args.profile_case != case:
                return None
            return subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        gw = {"server": gw_pid, "carrier": sim_pid}
        print(
            f"cores: {os.cpu_count()} (wrk, the server and, for the gateway, the sim-carrier share them); "
            "gateway: embedded default, one process"
        )
        rounds: list[dict[str, Any]] = []
        for n in range(args.rounds):
            spy = sample("otp") if n == 0 else None
            full = measured(gw_port, otp_lua, gw, gateway=True)
            if spy is not None:
                spy.wait(30)
            spy = sample("msg") if n == 0 else None
            msg = measured(gw_port, msg_lua, gw, gateway=True)
            if spy is not None:
                spy.wait(30)
            bare = measured(bare_port, otp_lua, {"server": bare_pid}, gateway=False)
            if args.rounds > 1:
                print(f"round {n + 1} of {args.rounds}")
            report(full, msg, bare)
            rounds.append(summary(full, msg, bare))
        out = dict(rounds[0])
        if args.rounds > 1:
            print(f"over {args.rounds} rounds, median (range):")
            for k, v in rounds[0].items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    vals = sorted(r[k] for r in rounds)
                    out[k] = statistics.median(vals)
                    if k in HEADLINE:
                        print(f"  {k}: {out[k]:g} ({vals[0]:g}–{vals[-1]:g})")
            out["rounds"] = rounds
        if args.json:
            print(
                json.dumps(
                    {
                        "config": "embedded default, one gateway process",
                        "cores": os.cpu_count(),
                        "seconds": args.seconds,
                        "connections": args.connections,
                        **out,
                    }
                )
            )
        return 0
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
