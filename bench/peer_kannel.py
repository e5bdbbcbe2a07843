"""smsgw beside Kannel: the same wrk load on each, both delivering over SMPP to the same kind of SMSC.

Kannel (Debian's ``kannel``: bearerbox + smsbox, installed with apt when missing) runs with a spool
store (``store-type = spool``), one SMPP transceiver bind with 50 submits in flight to a counting SMSC
(tests/peers/counting_smsc.js, on npm ``smpp``), and wrk drives its ``/cgi-bin/sendsms``. smsgw runs
``smsgw serve`` on its embedded default (SQLite, in-memory state, one process) with one SMPP route (one
transceiver bind, window 50) to a second counting SMSC of its own, and wrk drives ``POST /v1/otp`` and
``POST /v1/messages``. Every case: 50 connections, one wrk thread, a fresh number per request, bounded
time; then a bounded drain until the SMSC holds every accepted message (and, where asked, every receipt
was answered) and the system went idle.

Printed per case: accepted (2xx) req/s, p50/p99 (wrk, every response), non-2xx, messages at the SMSC
when the load stopped and after the drain, and the system's CPU per accepted message (user + system,
all threads, from /proc: bearerbox + smsbox for Kannel, the gateway process for smsgw) over load and
drain; then the ratios smsgw/Kannel.

``--workers 1,2`` adds, for each N > 1, the same two smsgw cases on ``smsgw serve --workers N`` (the
supervisor and N worker processes, one port shared with SO_REUSEPORT) on Redis + PostgreSQL: one
redis-server and one PostgreSQL for all of them (tests.conftest's redis_process / pg_process, as
bench/scaleout.py; PostgreSQL with its defaults, fsync on, as SQLite's ``synchronous=FULL``; its socket
in a temporary directory, no TCP), a database and a Redis logical database per N. Each worker opens the
carriers of the config itself, so the SMSC sees N transceiver binds, one per worker; each has window
ceil(50 / N) (25 for two workers), so at most 50 submits are in flight in all, as with Kannel and the
embedded default. Those cases are named ``smsgw_wN_otp`` / ``smsgw_wN_msg``; their CPU per message is
counted over the supervisor and every worker (all threads, from /proc, as bench/scaleout.py), with
Redis's and PostgreSQL's CPU per message beside it and their sum (``all_cpu_us``: gateway + Redis +
PostgreSQL); the drain waits for the gateway's processes to go idle. 1 in the list stands for the
embedded default, which always runs.

Usage: python bench/peer_kannel.py [--seconds 10] [--connections 50] [--warmup 2] [--drain 30]
[--rounds 1] [--kannel-dlr] [--workers 1] [--json]
(``--kannel-dlr``: Kannel asks for delivery receipts too, ``dlr-mask=1`` with a ``dlr-url`` on the
SMSC's HTTP side, as smsgw always does; off, Kannel's sendsms default: no receipts.)
Everything it starts it stops, by PID; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from otp_throughput import (  # noqa: E402
    MSG_LUA,
    OTP_LUA,
    cpu_seconds,
    embedded_env,
    free_port,
    run_wrk,
    stop,
    wait_port,
)
from scaleout import cpu_of, tree  # noqa: E402

from tests.conftest import pg_process, redis_process  # noqa: E402

PEERS = ROOT / "tests" / "peers"
TEXT = "Your parcel is on its way"
KANNEL_USER, KANNEL_PASS = "bench", "bench"
TENANT_ARGS = ["--countries", "ALL", "--fraud-mode", "monitor"]  # as bench/otp_throughput.py
WINDOW = 50  # SMPP submits in flight: Kannel's max-pending-submits, smsgw's window (over all its binds)

# the same shape of load as otp_throughput's scripts: a thread-local counter makes every number fresh
KANNEL_LUA = r"""
math.randomseed(os.time()); local n = math.random(0, 50000000)
request = function()
  n = n + 1
  local num = string.format("%%2B49170%08d", (n * 7919 + math.random(0, 6)) % 100000000)
  return wrk.format("GET", "/cgi-bin/sendsms?username=USER&password=PASS&from=ACME&text=TEXTDLR&to=" .. num)
end
"""


def kannel_lua(dlr_url: str) -> str:
    """The wrk script for Kannel's sendsms; with ``dlr_url`` each message asks for a receipt."""
    dlr = f"&dlr-mask=1&dlr-url={urllib.request.quote(dlr_url, safe='')}" if dlr_url else ""
    return (
        KANNEL_LUA.replace("USER", KANNEL_USER)
        .replace("PASS", KANNEL_PASS)
        .replace("TEXT", urllib.request.quote(TEXT, safe=""))
        .replace("DLR", dlr)
    )


def kannel_conf(work: Path, admin: int, box: int, sendsms: int, smsc: int) -> str:
    """A kannel.conf: spool store, one SMPP transceiver (window 50) to the SMSC, quiet logs in ``work``."""
    return f"""group = core
admin-port = {admin}
admin-interface = 127.0.0.1
admin-password = bench
admin-allow-ip = 127.0.0.1
smsbox-port = {box}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
store-type = spool
store-location = "{work / "spool"}"
dlr-storage = internal
log-file = "{work / "bearerbox.log"}"
log-level = 3

group = smsc
smsc = smpp
smsc-id = counting
host = 127.0.0.1
port = {smsc}
transceiver-mode = true
smsc-username = kannel
smsc-password = secret
system-type = ""
max-pending-submits = {WINDOW}
enquire-link-interval = 30
log-level = 3

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
log-file = "{work / "smsbox.log"}"
log-level = 3

group = sendsms-user
username = {KANNEL_USER}
password = {KANNEL_PASS}
user-allow-ip = 127.0.0.1
"""


def smsgw_conf(port: int, smsc: int, workers: int = 1) -> str:
    """One SMPP route to the SMSC: one transceiver bind per process, window 50 over all ``workers``."""
    return (
        f'[server]\nport = {port}\nlog_level = "warning"\n[otp]\nmax_per_number_per_hour = 1000\n'
        f'[[carriers]]\nname = "smsc"\ntype = "smpp"\nport = {smsc}\nsystem_id = "smsgw"\n'
        f'password = "secret"\nwindow = {-(-WINDOW // workers)}\n'
        f'[[routes]]\nname = "smsc"\ncarrier = "smsc"\n'
    )


def ensure_kannel() -> bool:
    """Install Debian's kannel (scripts/lib.sh apt_install) when bearerbox or smsbox is missing."""
    if shutil.which("bearerbox") and shutil.which("smsbox"):
        return True
    subprocess.run(["bash", "-c", ". scripts/lib.sh && apt_install kannel"], cwd=ROOT, timeout=600)
    return bool(shutil.which("bearerbox") and shutil.which("smsbox"))


def smsc_count(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as resp:
        counts: dict[str, int] = json.loads(resp.read())
    return counts


class System(NamedTuple):
    """What one case drives: its port and API key, its CPU so far (seconds, all its processes), its
    SMSC's HTTP port and PID, and the CPU so far of what it relies on beside itself (Redis, PostgreSQL)."""

    port: int
    key: str
    cpu: Callable[[], float]
    count_port: int
    smsc_pid: int
    beside: dict[str, Callable[[], float]]


def drain(
    count_port: int, cpu_now: Callable[[], float], expect: int, within: float
) -> tuple[dict[str, int], float]:
    """Wait until the SMSC holds ``expect`` submits, every receipt it sent was answered, nothing changed
    in the last poll and the system (``cpu_now``) used under 10 % of a core since it, or ``within``
    seconds pass; the SMSC's counts then and the seconds it took."""
    start = time.monotonic()
    last: dict[str, int] = {}
    cpu = cpu_now()
    while True:
        counts = smsc_count(count_port)
        now_cpu = cpu_now()
        idle = now_cpu - cpu < 0.03
        cpu = now_cpu
        caught_up = counts["submits"] >= expect and counts["receipts_answered"] >= counts["receipts_sent"]
        waited = time.monotonic() - start
        if (caught_up and counts == last and idle) or waited > within:
            return counts, waited
        last = counts
        time.sleep(0.3)


def measure(system: System, lua: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One wrk run on the system and its drain; the figures for one case."""
    before = smsc_count(system.count_port)
    cpu0 = system.cpu()
    beside0 = {name: cpu() for name, cpu in system.beside.items()}
    smsc_cpu0 = cpu_seconds(system.smsc_pid)
    res = run_wrk(system.port, system.key, args.seconds, args.connections, lua)
    during = smsc_count(system.count_port)
    accepted = int(res["requests"] - res["non2xx"])
    after, waited = drain(system.count_port, system.cpu, before["submits"] + accepted, args.drain)
    per = 1e6 / max(accepted, 1)
    cpu_us = round((system.cpu() - cpu0) * per, 1)
    beside = {
        f"{name}_cpu_us": round((cpu() - beside0[name]) * per, 1) for name, cpu in system.beside.items()
    }
    return {
        "rps": round(res["rps"] * accepted / max(res["requests"], 1.0), 1),
        "p50_ms": res["p50"],
        "p99_ms": res["p99"],
        "requests": int(res["requests"]),
        "accepted": accepted,
        "non2xx": int(res["non2xx"]),
        "at_smsc_load": during["submits"] - before["submits"],
        "at_smsc_drain": after["submits"] - before["submits"],
        "receipts": after["receipts_answered"] - before["receipts_answered"],
        "dlr_callbacks": after["dlr_callbacks"] - before["dlr_callbacks"],
        "drain_s": round(waited, 2),
        "cpu_us": cpu_us,
        "smsc_cpu_us": round((cpu_seconds(system.smsc_pid) - smsc_cpu0) * per, 1),
        **beside,
        **({"all_cpu_us": round(cpu_us + sum(beside.values()), 1)} if beside else {}),
    }


def flat(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"kannel": {"rps": …}}`` as ``{"kannel_rps": …}``, the JSON line's shape."""
    return {f"{case}_{k}": v for case, r in cases.items() for k, v in r.items()}


def median_cases(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each case's figures, each the median over the rounds on its own."""
    return {
        case: {k: statistics.median(r[case][k] for r in rounds) for k in figures}
        for case, figures in rounds[0].items()
    }


def label(case: str) -> str:
    """``smsgw_w2_otp`` as ``smsgw w2 POST /v1/otp``: the case's configuration and request."""
    names = {"kannel": "Kannel sendsms", "otp": "smsgw POST /v1/otp", "msg": "smsgw POST /v1/messages"}
    if case in names:
        return names[case]
    config, request = case.rsplit("_", 1)
    return names[request].replace("smsgw", config.replace("_", " "))


def report(cases: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The table, then the ratios smsgw/Kannel (returned, for the JSON line); a multi-worker case also
    against the embedded default's same request."""
    print(
        f"{'case':<30}{'2xx req/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}{'accepted':>9}"
        f"{'SMSC@load':>10}{'SMSC@drain':>11}{'drain s':>8}{'CPU µs/msg':>11}{'SMSC µs':>8}"
        f"{'Redis µs':>9}{'PG µs':>7}{'+R+PG µs':>9}"
    )
    for case, r in cases.items():
        beside = "".join(
            f"{r[k]:>{w}.0f}" if k in r else f"{'-':>{w}}"
            for k, w in (("redis_cpu_us", 9), ("pg_cpu_us", 7), ("all_cpu_us", 9))
        )
        print(
            f"{label(case):<30}{r['rps']:>10.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['non2xx']:>8.0f}"
            f"{r['accepted']:>9.0f}{r['at_smsc_load']:>10.0f}{r['at_smsc_drain']:>11.0f}{r['drain_s']:>8.1f}"
            f"{r['cpu_us']:>11.0f}{r['smsc_cpu_us']:>8.0f}{beside}"
        )
    k = cases["kannel"]
    ratios: dict[str, float] = {}
    for case, r in cases.items():
        if case == "kannel":
            continue
        ratios[f"{case}_x_kannel_rps"] = round(r["rps"] / max(k["rps"], 1e-9), 2)
        ratios[f"{case}_x_kannel_p99"] = round(r["p99_ms"] / max(k["p99_ms"], 1e-9), 2)
        ratios[f"{case}_x_kannel_cpu"] = round(r["cpu_us"] / max(k["cpu_us"], 1e-9), 2)
        line = (
            f"smsgw/Kannel, {label(case)}: req/s {ratios[f'{case}_x_kannel_rps']:.2f}, "
            f"p99 {ratios[f'{case}_x_kannel_p99']:.2f}, CPU per message {ratios[f'{case}_x_kannel_cpu']:.2f}"
        )
        if "all_cpu_us" in r:
            embedded = cases[case.rsplit("_", 1)[1]]
            ratios[f"{case}_x_kannel_all_cpu"] = round(r["all_cpu_us"] / max(k["cpu_us"], 1e-9), 2)
            ratios[f"{case}_x_embedded_rps"] = round(r["rps"] / max(embedded["rps"], 1e-9), 2)
            ratios[f"{case}_x_embedded_all_cpu"] = round(r["all_cpu_us"] / max(embedded["cpu_us"], 1e-9), 2)
            line += (
                f" (gateway only), {ratios[f'{case}_x_kannel_all_cpu']:.2f} (gateway + Redis + PostgreSQL);"
                f" against the embedded default: req/s {ratios[f'{case}_x_embedded_rps']:.2f}, CPU per"
                f" message (with Redis + PostgreSQL) {ratios[f'{case}_x_embedded_all_cpu']:.2f}"
            )
        print(line)
    return ratios


def worker_counts(text: str) -> list[int]:
    """``--workers 1,2,4`` as [2, 4]: the multi-worker configurations to measure (1 is the embedded
    default, always measured)."""
    counts = sorted({int(n) for n in text.split(",") if n.strip()})
    if not counts or counts[0] < 1 or counts[-1] > 15:  # one Redis logical database each, 1..15
        raise argparse.ArgumentTypeError("worker counts between 1 and 15, e.g. 1,2")
    return [n for n in counts if n > 1]


def tree_cpu(pid: int) -> float:
    """CPU seconds so far of ``pid`` and every process under it now (a supervisor and its workers)."""
    return cpu_of(tree(pid))


def tenant_key(env: dict[str, str], cwd: Path) -> str:
    """A bench tenant made with ``smsgw tenant create`` in the store ``env`` names; its API key."""
    made = subprocess.run(
        [sys.executable, "-m", "gateway", "tenant", "create", "bench", *TENANT_ARGS],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    key: str = json.loads(made.stdout.strip().splitlines()[-1])["api_key"]
    return key


def workers_config(n: int) -> str:
    return (
        f"smsgw serve --workers {n} (supervisor + {n} workers) on Redis + PostgreSQL (fsync on); "
        f"{n} SMPP binds (one per worker), window {-(-WINDOW // n)} each"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)  # wrk takes whole seconds
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=2, help="seconds of load on each system first")
    ap.add_argument("--drain", type=float, default=30, help="at most this long for the SMSC to catch up")
    ap.add_argument(
        "--rounds", type=int, default=1, help="measure every case this many times in turn; medians"
    )
    ap.add_argument("--kannel-dlr", action="store_true", help="Kannel asks for delivery receipts too")
    ap.add_argument(
        "--workers",
        type=worker_counts,
        default=[],
        help="comma-separated: 1 is the embedded default (always run); each N > 1 adds smsgw's cases on "
        "`serve --workers N` with Redis + PostgreSQL",
    )
    ap.add_argument("--json", action="store_true", help="last line: one JSON object with every figure")
    args = ap.parse_args()
    for tool, hint in (("wrk", "apt-get install wrk"), ("node", "apt-get install nodejs")):
        if shutil.which(tool) is None:
            print(f"bench needs {tool} ({hint})", file=sys.stderr)
            return 2
    if not (PEERS / "node_modules" / "smpp").is_dir():
        print("bench needs the npm smpp package: npm ci --prefix tests/peers", file=sys.stderr)
        return 2
    if not ensure_kannel():
        print("bench needs Debian's kannel (bearerbox, smsbox): apt-get install kannel", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="smsgw-kannel-"))
    (work / "spool").mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    supervisors: list[int] = []
    workers_binds: dict[int, int] = {}  # binds the SMSC saw while each multi-worker gateway started
    env = embedded_env(work)
    env.pop("SMSGW_CONFIG", None)

    def start(name: str, *cmd: str, port: int, more_env: dict[str, str] | None = None) -> int:
        log = open(work / f"{name}.out", "wb")  # noqa: SIM115  (closed below; the child keeps its copy)
        procs.append(
            subprocess.Popen(
                list(cmd), env={**env, **(more_env or {})}, cwd=work, stdout=log, stderr=subprocess.STDOUT
            )
        )
        log.close()
        try:
            wait_port(port)
        except RuntimeError:
            raise RuntimeError(
                f"{name}: {(work / f'{name}.out').read_text(errors='replace')[-2000:]}"
            ) from None
        return procs[-1].pid

    def smsc(name: str) -> tuple[int, int, int]:
        """A counting SMSC: its SMPP port, its HTTP port and its PID."""
        smpp_port, http_port = free_port(), free_port()
        pid = start(
            name,
            "node",
            str(PEERS / "counting_smsc.js"),
            "--port",
            str(smpp_port),
            "--http-port",
            str(http_port),
            "--receipts",
            port=http_port,
        )
        return smpp_port, http_port, pid

    def bound(http_port: int, binds: int = 1) -> None:
        end = time.monotonic() + 20
        while smsc_count(http_port)["binds"] < binds:
            if time.monotonic() > end:
                raise RuntimeError(f"{binds} binds to the SMSC not there within 20 s")
            time.sleep(0.1)

    def lua_of(case: str) -> Path:
        """The wrk script of a case: ``smsgw_w2_otp`` drives what ``otp`` does."""
        return work / f"{case.rsplit('_', 1)[-1]}.lua"

    stop_order: list[int] = []
    shared = contextlib.ExitStack()
    try:
        k_smpp, k_http, k_smsc_pid = smsc("kannel-smsc")
        g_smpp, g_http, g_smsc_pid = smsc("smsgw-smsc")
        admin, box, sendsms, gw_port = free_port(), free_port(), free_port(), free_port()
        conf = work / "kannel.conf"
        conf.write_text(kannel_conf(work, admin, box, sendsms, k_smpp))
        bb_pid = start("bearerbox", "bearerbox", "-v", "4", str(conf), port=box)
        bound(k_http)
        sb_pid = start("smsbox", "smsbox", "-v", "4", str(conf), port=sendsms)
        (work / "smsgw.toml").write_text(smsgw_conf(gw_port, g_smpp))
        gw_pid = start(
            "smsgw", sys.executable, "-m", "gateway", "serve", "--config", "smsgw.toml", port=gw_port
        )
        bound(g_http)
        stop_order = [sb_pid, bb_pid]
        key = tenant_key(env, work)
        dlr_url = f"http://127.0.0.1:{k_http}/dlr?type=%d" if args.kannel_dlr else ""
        luas = {"kannel": kannel_lua(dlr_url), "otp": OTP_LUA, "msg": MSG_LUA}
        for name, text in luas.items():
            (work / f"{name}.lua").write_text(text)
        embedded = System(gw_port, key, lambda: cpu_seconds(gw_pid), g_http, g_smsc_pid, {})
        systems = {
            "kannel": System(
                sendsms, key, lambda: cpu_seconds(bb_pid) + cpu_seconds(sb_pid), k_http, k_smsc_pid, {}
            ),
            "otp": embedded,
            "msg": embedded,
        }
        if args.workers:
            redis, redis_port = shared.enter_context(redis_process())
            pg = shared.enter_context(pg_process(durable=True))
            beside = {"redis": lambda: cpu_seconds(redis.pid), "pg": pg.cpu_seconds}
            for i, n in enumerate(args.workers, 1):
                pg.psql(f"CREATE DATABASE smsgw_w{n}")
                more_env = {
                    "REDIS_URL": f"redis://127.0.0.1:{redis_port}/{i}",
                    "SMSGW_DATABASE_URL": pg.url(f"smsgw_w{n}"),
                }
                port, binds = free_port(), smsc_count(g_http)["binds"]
                cfg = work / f"w{n}.toml"  # absolute: each worker's command line names the bench's dir
                cfg.write_text(smsgw_conf(port, g_smpp, n))
                sup = start(f"smsgw-w{n}", sys.executable, "-m", "gateway", "serve", "--workers", str(n),
                            "--config", str(cfg), port=port, more_env=more_env)  # fmt: skip
                supervisors.append(sup)
                bound(g_http, binds + n)  # every worker bound its own transceiver
                workers_binds[n] = smsc_count(g_http)["binds"] - binds
                time.sleep(1.0)  # ... and listens (it binds the SMSC just before it opens the port)
                gw_key = tenant_key({**env, **more_env}, work)
                workers = System(port, gw_key, functools.partial(tree_cpu, sup), g_http, g_smsc_pid, beside)
                systems |= {f"smsgw_w{n}_otp": workers, f"smsgw_w{n}_msg": workers}
        for name, system in systems.items():  # warm-up, then let it drain
            run_wrk(system.port, system.key, args.warmup, args.connections, lua_of(name))
            drain(system.count_port, system.cpu, smsc_count(system.count_port)["submits"], args.drain)
        load_before = round(os.getloadavg()[0], 2)
        print(
            f"cores: {os.cpu_count()} (wrk, the system under load, its SMSC, Redis and PostgreSQL share "
            "them); smsgw: embedded default, one process"
            + "".join(f"; smsgw w{n}: {workers_config(n)}" for n in args.workers)
            + f"; Kannel: bearerbox + smsbox, spool store; receipts asked for: smsgw yes, Kannel "
            f"{'yes' if args.kannel_dlr else 'no'}"
        )
        rounds: list[dict[str, dict[str, Any]]] = []
        for n in range(args.rounds):
            rounds.append({name: measure(system, lua_of(name), args) for name, system in systems.items()})
            if args.rounds > 1:
                print(f"round {n + 1} of {args.rounds}")
                report(rounds[-1])
        if args.rounds > 1:
            print(f"median of {args.rounds} rounds, each figure on its own:")
        cases = median_cases(rounds)
        ratios = report(cases)
        if args.json:
            print(
                json.dumps(
                    {
                        "config": "smsgw embedded default (one process, SQLite, in-memory state) vs "
                        "Kannel bearerbox+smsbox (spool store); one SMPP bind, window 50, each",
                        "cores": os.cpu_count(),
                        "loadavg_1m": [load_before, round(os.getloadavg()[0], 2)],
                        "seconds": args.seconds,
                        "connections": args.connections,
                        "kannel_dlr": args.kannel_dlr,
                        "workers": args.workers,
                        **{f"smsgw_w{n}_config": workers_config(n) for n in args.workers},
                        **{f"smsgw_w{n}_binds": b for n, b in workers_binds.items()},
                        **flat(cases),
                        **ratios,
                        **({"rounds": [flat(r) for r in rounds]} if args.rounds > 1 else {}),
                    }
                )
            )
        return 0
    finally:
        kannel = [p for pid in stop_order for p in procs if p.pid == pid]
        workers_left = [w for sup in supervisors for w in tree(sup) if w != sup]
        for p in kannel:  # smsbox first, then bearerbox, as Kannel's init script does
            stop([p])
        stop([p for p in procs if p not in kannel])  # a supervisor stops its workers itself
        for pid in workers_left:  # ... unless it was killed: then its workers, by PID
            with contextlib.suppress(OSError):
                if str(work) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
        shared.close()  # Redis and PostgreSQL last: the workers are gone
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
