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
drain; then the ratios smsgw/Kannel. ``--workers`` is not measured: it needs Redis and PostgreSQL, and
Kannel's single bearerbox is compared with the embedded single process.

Usage: python bench/peer_kannel.py [--seconds 10] [--connections 50] [--warmup 2] [--drain 30]
[--rounds 1] [--kannel-dlr] [--json]
(``--kannel-dlr``: Kannel asks for delivery receipts too, ``dlr-mask=1`` with a ``dlr-url`` on the
SMSC's HTTP side, as smsgw always does; off, Kannel's sendsms default: no receipts.)
Everything it starts it stops, by PID; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

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

PEERS = ROOT / "tests" / "peers"
TEXT = "Your parcel is on its way"
KANNEL_USER, KANNEL_PASS = "bench", "bench"
TENANT_ARGS = ["--countries", "ALL", "--fraud-mode", "monitor"]  # as bench/otp_throughput.py

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
max-pending-submits = 50
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


def smsgw_conf(port: int, smsc: int) -> str:
    """The embedded default with one SMPP route (one transceiver bind, window 50) to the SMSC."""
    return (
        f'[server]\nport = {port}\nlog_level = "warning"\n[otp]\nmax_per_number_per_hour = 1000\n'
        f'[[carriers]]\nname = "smsc"\ntype = "smpp"\nport = {smsc}\nsystem_id = "smsgw"\n'
        f'password = "secret"\nwindow = 50\n'
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


def drain(count_port: int, pids: list[int], expect: int, within: float) -> tuple[dict[str, int], float]:
    """Wait until the SMSC holds ``expect`` submits, every receipt it sent was answered, nothing changed
    in the last poll and ``pids`` used under 10 % of a core since it, or ``within`` seconds pass; the
    SMSC's counts then and the seconds it took."""
    start = time.monotonic()
    last: dict[str, int] = {}
    cpu = sum(cpu_seconds(p) for p in pids)
    while True:
        counts = smsc_count(count_port)
        now_cpu = sum(cpu_seconds(p) for p in pids)
        idle = now_cpu - cpu < 0.03
        cpu = now_cpu
        caught_up = counts["submits"] >= expect and counts["receipts_answered"] >= counts["receipts_sent"]
        waited = time.monotonic() - start
        if (caught_up and counts == last and idle) or waited > within:
            return counts, waited
        last = counts
        time.sleep(0.3)


def measure(
    port: int, lua: Path, key: str, pids: list[int], smsc: tuple[int, int], args: argparse.Namespace
) -> dict[str, Any]:
    """One wrk run on ``port`` and its drain; the figures for one case."""
    count_port, smsc_pid = smsc
    before = smsc_count(count_port)
    cpu0 = sum(cpu_seconds(p) for p in pids)
    smsc_cpu0 = cpu_seconds(smsc_pid)
    res = run_wrk(port, key, args.seconds, args.connections, lua)
    during = smsc_count(count_port)
    accepted = int(res["requests"] - res["non2xx"])
    after, waited = drain(count_port, pids, before["submits"] + accepted, args.drain)
    per = 1e6 / max(accepted, 1)
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
        "cpu_us": round((sum(cpu_seconds(p) for p in pids) - cpu0) * per, 1),
        "smsc_cpu_us": round((cpu_seconds(smsc_pid) - smsc_cpu0) * per, 1),
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


def report(cases: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The table, then the ratios smsgw/Kannel (returned, for the JSON line)."""
    print(
        f"{'case':<30}{'2xx req/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}{'accepted':>9}"
        f"{'SMSC@load':>10}{'SMSC@drain':>11}{'drain s':>8}{'CPU µs/msg':>11}{'SMSC µs':>8}"
    )
    names = {"kannel": "Kannel sendsms", "otp": "smsgw POST /v1/otp", "msg": "smsgw POST /v1/messages"}
    for case, r in cases.items():
        print(
            f"{names[case]:<30}{r['rps']:>10.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['non2xx']:>8.0f}"
            f"{r['accepted']:>9.0f}{r['at_smsc_load']:>10.0f}{r['at_smsc_drain']:>11.0f}{r['drain_s']:>8.1f}"
            f"{r['cpu_us']:>11.0f}{r['smsc_cpu_us']:>8.0f}"
        )
    k = cases["kannel"]
    ratios: dict[str, float] = {}
    for case in ("otp", "msg"):
        r = cases[case]
        ratios[f"{case}_x_kannel_rps"] = round(r["rps"] / max(k["rps"], 1e-9), 2)
        ratios[f"{case}_x_kannel_p99"] = round(r["p99_ms"] / max(k["p99_ms"], 1e-9), 2)
        ratios[f"{case}_x_kannel_cpu"] = round(r["cpu_us"] / max(k["cpu_us"], 1e-9), 2)
        print(
            f"smsgw/Kannel, {names[case]}: req/s {ratios[f'{case}_x_kannel_rps']:.2f}, "
            f"p99 {ratios[f'{case}_x_kannel_p99']:.2f}, CPU per message {ratios[f'{case}_x_kannel_cpu']:.2f}"
        )
    return ratios


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10)  # wrk takes whole seconds
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=2, help="seconds of load on each system first")
    ap.add_argument("--drain", type=float, default=30, help="at most this long for the SMSC to catch up")
    ap.add_argument(
        "--rounds", type=int, default=1, help="measure the three cases this many times in turn; medians"
    )
    ap.add_argument("--kannel-dlr", action="store_true", help="Kannel asks for delivery receipts too")
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
    env = embedded_env(work)
    env.pop("SMSGW_CONFIG", None)

    def start(name: str, *cmd: str, port: int) -> int:
        log = open(work / f"{name}.out", "wb")  # noqa: SIM115  (closed below; the child keeps its copy)
        procs.append(subprocess.Popen(list(cmd), env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT))
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

    def bound(http_port: int) -> None:
        end = time.monotonic() + 20
        while smsc_count(http_port)["binds"] < 1:
            if time.monotonic() > end:
                raise RuntimeError("nothing bound to the SMSC within 20 s")
            time.sleep(0.1)

    stop_order: list[int] = []
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
        made = subprocess.run(
            [sys.executable, "-m", "gateway", "tenant", "create", "bench", *TENANT_ARGS],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        key = json.loads(made.stdout)["api_key"]
        dlr_url = f"http://127.0.0.1:{k_http}/dlr?type=%d" if args.kannel_dlr else ""
        luas = {"kannel": kannel_lua(dlr_url), "otp": OTP_LUA, "msg": MSG_LUA}
        for name, text in luas.items():
            (work / f"{name}.lua").write_text(text)
        systems = {
            "kannel": (sendsms, [bb_pid, sb_pid], (k_http, k_smsc_pid)),
            "otp": (gw_port, [gw_pid], (g_http, g_smsc_pid)),
            "msg": (gw_port, [gw_pid], (g_http, g_smsc_pid)),
        }
        for name, (port, pids, (count_port, _)) in systems.items():  # warm-up, then let it drain
            run_wrk(port, key, args.warmup, args.connections, work / f"{name}.lua")
            drain(count_port, pids, smsc_count(count_port)["submits"], args.drain)
        load_before = round(os.getloadavg()[0], 2)
        print(
            f"cores: {os.cpu_count()} (wrk, the system under load and its SMSC share them); smsgw: embedded "
            "default, one process (--workers needs Redis and PostgreSQL: not measured); Kannel: bearerbox + "
            f"smsbox, spool store; receipts asked for: smsgw yes, Kannel {'yes' if args.kannel_dlr else 'no'}"
        )
        rounds: list[dict[str, dict[str, Any]]] = []
        for n in range(args.rounds):
            rounds.append(
                {
                    name: measure(port, work / f"{name}.lua", key, pids, smsc_, args)
                    for name, (port, pids, smsc_) in systems.items()
                }
            )
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
                        **flat(cases),
                        **ratios,
                        **({"rounds": [flat(r) for r in rounds]} if args.rounds > 1 else {}),
                    }
                )
            )
        return 0
    finally:
        kannel = [p for pid in stop_order for p in procs if p.pid == pid]
        for p in kannel:  # smsbox first, then bearerbox, as Kannel's init script does
            stop([p])
        stop([p for p in procs if p not in kannel])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
