"""Soak: steady mixed load on a real gateway for a bounded time, with faults injected at random.

Starts, on 127.0.0.1 only: the npm ``smpp`` SMSC (tests/peers/smsc.js) as the primary carrier, the
sim-carrier's HTTP side as the backup route, and ``smsgw serve``. ``--backend redis`` (default) runs
``--workers 2`` on a redis-server and a PostgreSQL of its own; ``--backend memory`` runs the embedded
default (one process, SQLite, in-memory state). A tenant is created with its countries declared (DE)
and anti-fraud enforced (``--fraud-mode``).

Load, open loop at ``--rate`` requests/s, seeded (``--seed``): OTP sends to fresh German mobile numbers
(spread like real users), verifies with the right code read at the carrier (as a user types it in),
``POST /v1/messages`` with a unique body, and reads (onboarding: whoami, sender IDs, countries, brand
classification; status of a recent OTP or message).

Faults, one every ``--fault-every`` seconds (0: none), kinds in a seeded shuffled cycle so each comes
round: ``redis_restart`` (SIGKILL redis-server, a new one on the same port and AOF folder 1–3 s
later; redis backend only), ``carrier_stall`` (SIGSTOP the SMSC for 2–6 s with its connection open,
then SIGCONT), ``worker_kill`` (SIGKILL one worker; the supervisor starts another; on the memory
backend the one process is killed and this script starts it again, as a service manager would).

Prints per minute: requests, req/s, error rate, p99, the gateway's RSS (master and workers, from
/proc). At the end, after a bounded drain: every 202 id must be at the carriers exactly once (counted
by its unique number); ``undelivered`` and ``duplicated`` must be 0. A send whose answer was lost (its
connection cut by a SIGKILL) is counted apart as ``unknown``. RSS growth is from the end of minute 2
(half-way in runs shorter than 4 min) to the end, for all processes and for those alive throughout.
Everything it starts it stops, by PID.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 50] [--fault-every 30] [--seed 1]
        [--backend redis|memory] [--workers 2] [--fraud-mode enforce|monitor] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.carriers.smpp_peers import NodeSmsc, start_node_smsc  # noqa: E402
from tests.conftest import free_port, pg_process, redis_process  # noqa: E402
from tests.e2e.procs import Procs  # noqa: E402

# German mobile ranges (each + 8 digits is a valid mobile number)
PREFIXES = ("150", "151", "152", "155", "157", "159", "160", "162", "163", *(f"17{d}" for d in range(10)))
CODE = re.compile(r"\b(\d{6})\b")
WORKER_WINDOW = 3.0  # seconds after a killed worker is replaced in which cut connections are expected


# ------------------------------------------------------------------------------------------ records
@dataclass(slots=True)
class Answer:
    t: float  # seconds since the load began, when the request was sent
    kind: str  # otp | verify | message | read
    status: int  # 0: no HTTP answer
    outcome: str  # ok | refusal | unexpected | refused (connection refused) | cut (answer lost)
    seconds: float
    code: str = ""


@dataclass
class Fault:
    kind: str
    at: float  # seconds since the load began
    seconds: float = 0.0  # how long the fault lasted (until the thing was back)
    happened: bool = False  # the fault's effect was seen (see ``detail``)
    detail: str = ""


@dataclass
class Minute:
    rss: dict[str, Any]  # at the end of the minute
    rss_max_kib: int = 0


def classify(status: int, body: Any, headers: Any) -> tuple[str, str]:
    """(outcome, error code): anything 2xx is ok; documented refusals are 503 unavailable / no_route
    with Retry-After and anti-fraud's 428 / 403 fraud_blocked / 429 rate_limited; all else unexpected."""
    code = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", ""))
    if 200 <= status < 300:
        return "ok", code
    retry = headers.get("Retry-After") if headers is not None else None
    documented = (
        (status == 503 and code in ("unavailable", "no_route") and retry is not None)
        or (status == 428 and code == "challenge_required")
        or (status == 403 and code == "fraud_blocked")
        or (status == 429 and code == "rate_limited" and retry is not None)
    )
    return ("refusal" if documented else "unexpected"), code


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


# ------------------------------------------------------------------------------------------ /proc
def tree(pid: int) -> list[int]:
    """``pid`` and its descendants alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ------------------------------------------------------------------------------------------ the rig
@dataclass
class Rig:
    """What the soak started, and the faults it can inject into it."""

    args: argparse.Namespace
    work: Path
    stack: contextlib.ExitStack
    procs: Procs
    smsc: NodeSmsc
    sim_port: int
    port: int
    config: Path
    gateway: subprocess.Popen[bytes]
    redis_port: int = 0
    redis: subprocess.Popen[bytes] | None = None
    redis_args: tuple[str, ...] = ()

    def workers(self) -> list[int]:
        if self.args.backend == "memory":
            return [self.gateway.pid] if self.gateway.poll() is None else []
        return [p for p in tree(self.gateway.pid) if p != self.gateway.pid]

    def rss(self) -> dict[str, Any]:
        if self.args.backend == "memory":
            pids = self.workers()
            return {"master_kib": 0, "workers_kib": {p: rss_kib(p) for p in pids}}
        return {
            "master_kib": rss_kib(self.gateway.pid),
            "workers_kib": {p: rss_kib(p) for p in self.workers()},
        }

    def sim_stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.sim_port}/stats", timeout=5) as r:
            stats: dict[str, Any] = json.loads(r.read())
        return stats

    # faults: blocking, run in a thread
    def redis_restart(self, rng: random.Random, fault: Fault) -> None:
        assert self.redis is not None
        old = self.redis.pid
        self.redis.kill()
        self.redis.wait(10)
        time.sleep(rng.uniform(1.0, 3.0))
        self.redis, _ = self.stack.enter_context(redis_process(*self.redis_args, port=self.redis_port))
        fault.happened = self.redis.pid != old and self.redis.poll() is None
        fault.detail = f"redis-server {old} killed, {self.redis.pid} listening on the same port"

    def carrier_stall(self, rng: random.Random, fault: Fault) -> None:
        before = len(self.smsc.of("submit"))
        backup_before = self.sim_stats()["received"]
        hold = rng.uniform(2.0, 6.0)
        os.kill(self.smsc.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(hold)
        finally:
            os.kill(self.smsc.proc.pid, signal.SIGCONT)
        time.sleep(0.5)
        late = len(self.smsc.of("submit")) - before  # answered after SIGCONT: they waited at the SMSC
        backup = self.sim_stats()["received"] - backup_before
        fault.happened = self.smsc.proc.poll() is None
        fault.detail = f"SMSC frozen {hold:.1f} s; {late} submits read after it woke; {backup} to the backup"

    def worker_kill(self, rng: random.Random, fault: Fault) -> None:
        if self.args.backend == "memory":
            victim = self.gateway.pid
            self.gateway.kill()
            self.gateway.wait(10)
            self.gateway = self.procs.start("gw", "serve", "--config", str(self.config), port=self.port)
            fault.happened = self.gateway.pid != victim
            fault.detail = f"gateway {victim} killed, restarted as {self.gateway.pid}"
            return
        before = self.workers()
        victim = rng.choice(before)
        os.kill(victim, signal.SIGKILL)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            now = self.workers()
            if victim not in now and len(now) == len(before):
                fault.happened = True
                fault.detail = f"worker {victim} killed, replaced by {sorted(set(now) - set(before))}"
                return
            time.sleep(0.1)
        fault.detail = f"worker {victim} killed, not replaced within 30 s"


def gateway_config(port: int, smsc_port: int, sim_port: int) -> str:
    return (
        f'[server]\nport = {port}\nlog_level = "warning"\n\n'
        "[dispatch]\nclaim_lease_seconds = 10.0\nsweep_interval_seconds = 0.5\n\n"
        f'[[carriers]]\nname = "smsc"\ntype = "smpp"\nhost = "127.0.0.1"\nport = {smsc_port}\n'
        'system_id = "smsgw"\npassword = "secret"\nwindow = 20\ntimeout_seconds = 2.0\n'
        "stall_grace_seconds = 5.0\n\n"
        f'[[carriers]]\nname = "sim"\ntype = "http"\nurl = "http://127.0.0.1:{sim_port}/messages"\n\n'
        '[[routes]]\nname = "primary"\ncarrier = "smsc"\nprice = 0.005\n\n'
        '[[routes]]\nname = "backup"\ncarrier = "sim"\nprice = 0.010\n'
    )


@contextlib.contextmanager
def rig(args: argparse.Namespace) -> Iterator[Rig]:
    work = Path(tempfile.mkdtemp(prefix="smsgw-soak-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        env: dict[str, str] = {"SMSGW_LOG_LEVEL": "warning"}
        redis_port, redis_args = 0, ()
        redis: subprocess.Popen[bytes] | None = None
        if args.backend == "redis":
            (work / "redis").mkdir()
            redis_args = ("--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(work / "redis"))
            redis, redis_port = stack.enter_context(redis_process(*redis_args))
            pg = stack.enter_context(pg_process())
            pg.psql("CREATE DATABASE smsgw_soak")
            env |= {
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "SMSGW_DATABASE_URL": pg.url("smsgw_soak"),
            }
        procs = Procs(work, env=env)
        stack.callback(procs.stop_all)
        smsc = start_node_smsc("--mode", "normal", "--receipt-delay-ms", "20")

        def stop_smsc() -> None:
            if smsc.proc.poll() is None:
                os.kill(smsc.proc.pid, signal.SIGCONT)  # never leave it frozen
            smsc.stop()

        stack.callback(stop_smsc)
        sim_port = procs.sim_carrier("--receipt-delay-ms", "20")
        port = free_port()
        config = work / "smsgw.toml"
        config.write_text(gateway_config(port, smsc.port, sim_port))
        serve = ["serve", "--config", str(config)]
        if args.backend == "redis":
            serve += ["--workers", str(args.workers)]
        gateway = procs.start("gw", *serve, port=port)
        yield Rig(
            args, work, stack, procs, smsc, sim_port, port, config, gateway, redis_port, redis, redis_args
        )


# ------------------------------------------------------------------------------------------ the load
@dataclass
class Load:
    rig: Rig
    key: str
    rng: random.Random
    t0: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, tuple[str, str]] = field(default_factory=dict)  # number -> (kind, id) (202)
    unknown: set[str] = field(default_factory=set)  # numbers whose send's answer was lost
    refused_sends: set[str] = field(default_factory=set)
    codes: list[tuple[str, str]] = field(default_factory=list)  # (otp id, code) a user could type in
    recent: list[tuple[str, str]] = field(default_factory=list)  # (kind, id) for status reads
    verified: int = 0
    skipped: int = 0  # ticks dropped because too many requests were in flight
    used: set[str] = field(default_factory=set)
    serial: int = 0
    smsc_seen: int = 0
    smsc_texts: dict[str, str] = field(default_factory=dict)  # number (no +) -> text at the SMSC
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def fresh_number(self) -> str:
        while True:
            n = f"+49{self.rng.choice(PREFIXES)}{self.rng.randrange(10**8):08d}"
            if n not in self.used:
                self.used.add(n)
                return n

    async def call(
        self, s: aiohttp.ClientSession, kind: str, method: str, path: str, body: Any = None
    ) -> tuple[str, int, Any]:
        t, start = self.now(), time.monotonic()
        try:
            async with s.request(method, f"http://127.0.0.1:{self.rig.port}{path}", json=body) as r:
                data = await r.json(content_type=None)
                outcome, code = classify(r.status, data, r.headers)
                self.answers.append(Answer(t, kind, r.status, outcome, time.monotonic() - start, code))
                return outcome, r.status, data
        except aiohttp.ClientConnectorError:
            self.answers.append(Answer(t, kind, 0, "refused", time.monotonic() - start))
            return "refused", 0, None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            self.answers.append(Answer(t, kind, 0, "cut", time.monotonic() - start))
            return "cut", 0, None

    def smsc_text(self, number: str) -> str | None:
        events = self.rig.smsc.events
        for e in events[self.smsc_seen : len(events)]:
            if e.get("event") == "submit":
                self.smsc_texts[str(e.get("dest", "")).lstrip("+")] = str(e.get("text", ""))
        self.smsc_seen = len(events)
        return self.smsc_texts.get(number.lstrip("+"))

    async def code_of(self, s: aiohttp.ClientSession, otp_id: str, number: str) -> None:
        """The user reads the SMS (at whichever carrier got it) and types the code in."""
        end = time.monotonic() + 60
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        while time.monotonic() < end:
            text = self.smsc_text(number)
            if text is None:
                url = f"http://127.0.0.1:{self.rig.sim_port}/inbox"
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with s.get(url, params={"to": number}) as r:
                        got = await r.json()
                        text = got[0]["text"] if got else None
            if text is not None and (m := CODE.search(text)):
                self.codes.append((otp_id, m.group(1)))
                return
            await asyncio.sleep(0.5)

    async def otp(self, s: aiohttp.ClientSession) -> None:
        number = self.fresh_number()
        outcome, status, body = await self.call(s, "otp", "POST", "/v1/otp", {"to": number})
        if status == 202:
            self.accepted[number] = ("otp", body["id"])
            self.recent.append(("otp", body["id"]))
            self.spawn(self.code_of(s, body["id"], number))
        elif outcome == "cut":
            self.unknown.add(number)
        elif outcome == "refused":
            self.refused_sends.add(number)

    async def message(self, s: aiohttp.ClientSession) -> None:
        number = self.fresh_number()
        self.serial += 1
        body = {
            "to": number,
            "sender_id": "ACME",
            "body": f"Your parcel {self.serial:06d} is on its way",
            "category": "transactional",
        }
        outcome, status, reply = await self.call(s, "message", "POST", "/v1/messages", body)
        if status == 202:
            self.accepted[number] = ("message", reply["id"])
            self.recent.append(("message", reply["id"]))
        elif outcome == "cut":
            self.unknown.add(number)
        elif outcome == "refused":
            self.refused_sends.add(number)

    async def verify(self, s: aiohttp.ClientSession, otp_id: str, code: str) -> None:
        for _ in range(4):
            outcome, status, _ = await self.call(
                s, "verify", "POST", f"/v1/otp/{otp_id}/verify", {"code": code}
            )
            if status == 200:
                self.verified += 1
                return
            if outcome not in ("refusal", "refused", "cut"):
                return
            await asyncio.sleep(5.0)  # Retry-After, or the gateway is being restarted: the user tries again

    async def read(self, s: aiohttp.ClientSession) -> None:
        choice = self.rng.random()
        if choice < 0.5 and self.recent:
            kind, rid = self.recent[-self.rng.randint(1, min(50, len(self.recent)))]
            path = f"/v1/otp/{rid}" if kind == "otp" else f"/v1/messages/{rid}"
        else:
            path = self.rng.choice(
                (
                    "/v1/whoami",
                    "/v1/sender-ids",
                    "/v1/senderid/countries",
                    "/v1/brand/classification?country=DE",
                )
            )
        await self.call(s, "read", "GET", path)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, s: aiohttp.ClientSession, seconds: float, rate: float) -> None:
        """Open loop: one request every 1/rate s; the kind drawn by weight (verifies when a code waits)."""
        inflight = 0
        tick = 1.0 / rate

        async def one(kind: str, pair: tuple[str, str] | None = None) -> None:
            nonlocal inflight
            inflight += 1
            try:
                if kind == "otp":
                    await self.otp(s)
                elif kind == "message":
                    await self.message(s)
                elif kind == "verify" and pair is not None:
                    await self.verify(s, *pair)
                else:
                    await self.read(s)
            finally:
                inflight -= 1

        n = 0
        while (due := n * tick) < seconds:
            n += 1
            wait = due - self.now()
            if wait > 0:
                await asyncio.sleep(wait)
            if inflight >= 256:
                self.skipped += 1
                continue
            r = self.rng.random()
            kind = "otp" if r < 0.35 else "message" if r < 0.6 else "read"
            if kind == "read" and self.codes and self.rng.random() < 0.9:
                self.spawn(one("verify", self.codes.pop(0)))
                continue
            self.spawn(one(kind))


# ------------------------------------------------------------------------------------------ faults
async def inject(rig_: Rig, load: Load, seconds: float, every: float, rng: random.Random) -> list[Fault]:
    kinds = ["carrier_stall", "worker_kill"] + (["redis_restart"] if rig_.args.backend == "redis" else [])
    faults: list[Fault] = []
    cycle: list[str] = []
    k = 1
    while every > 0 and k * every < seconds - 2:
        await asyncio.sleep(max(0.0, k * every - load.now()))
        k += 1
        if not cycle:
            cycle = rng.sample(kinds, len(kinds))
        fault = Fault(cycle.pop(0), round(load.now(), 1))
        faults.append(fault)
        started = time.monotonic()
        await asyncio.to_thread(getattr(rig_, fault.kind), rng, fault)
        fault.seconds = round(time.monotonic() - started, 1)
        print(f"  fault at {fault.at:6.1f} s: {fault.kind:<14} {fault.detail}", flush=True)
    return faults


async def sample_rss(rig_: Rig, load: Load, seconds: float, minutes: list[Minute]) -> None:
    """The gateway's RSS every second; at each minute's end (and at the end) a row of figures."""
    peak = 0
    mark = 60.0
    while True:
        snap = await asyncio.to_thread(rig_.rss)
        total = snap["master_kib"] + sum(snap["workers_kib"].values())
        peak = max(peak, total)
        t = load.now()
        if t >= mark or t >= seconds:
            minutes.append(Minute(snap, peak))
            print_minute(load, len(minutes), minutes[-1], mark if t < seconds else seconds)
            peak, mark = 0, mark + 60.0
            if t >= seconds:
                return
        await asyncio.sleep(min(1.0, max(0.05, min(mark, seconds) - t)))


def print_minute(load: Load, n: int, row: Minute, until: float) -> None:
    start = (n - 1) * 60.0
    got = [a for a in load.answers if start <= a.t < until]
    bad = sum(a.outcome == "unexpected" for a in got)
    total = row.rss["master_kib"] + sum(row.rss["workers_kib"].values())
    workers = "+".join(f"{v / 1024:.0f}" for v in row.rss["workers_kib"].values())
    print(
        f"  min {n:>2}: {len(got):6d} req {len(got) / max(until - start, 1e-9):7.1f}/s  "
        f"errors {bad / max(len(got), 1):6.2%}  p99 {p99([a.seconds for a in got]) * 1e3:7.1f} ms  "
        f"RSS {total / 1024:6.1f} MiB (master {row.rss['master_kib'] / 1024:.0f}, workers {workers})",
        flush=True,
    )


# ------------------------------------------------------------------------------------------ the end
async def tally(rig_: Rig, load: Load, drain: float) -> dict[str, Any]:
    """After a bounded drain: how often each accepted (and each unknown) number reached a carrier, and
    each message's final status."""
    expect = len(load.accepted)
    end = time.monotonic() + drain
    while time.monotonic() < end:
        at = len(rig_.smsc.of("submit")) + (await asyncio.to_thread(rig_.sim_stats))["received"]
        if at >= expect:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)  # anything sent twice would arrive now
    at_smsc = Counter(str(e.get("dest", "")).lstrip("+") for e in rig_.smsc.of("submit"))
    sem = asyncio.Semaphore(16)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as s:

        async def at_sim(number: str) -> int:
            async with sem, s.get(f"http://127.0.0.1:{rig_.sim_port}/inbox", params={"to": number}) as r:
                return len(await r.json())

        async def status(mid: str) -> str:
            headers = {"Authorization": f"Bearer {load.key}"}
            async with sem, s.get(f"http://127.0.0.1:{rig_.port}/v1/messages/{mid}", headers=headers) as r:
                return str((await r.json()).get("status", f"http {r.status}"))

        numbers = [*load.accepted, *load.unknown]
        sim = await asyncio.gather(*(at_sim(n) for n in numbers))
        copies = {n: at_smsc.get(n.lstrip("+"), 0) + c for n, c in zip(numbers, sim, strict=True)}
        msgs = [(n, mid) for n, (kind, mid) in load.accepted.items() if kind == "message"]
        statuses = await asyncio.gather(*(status(mid) for _, mid in msgs))
    final = Counter(statuses)
    return {
        "accepted": expect,
        "undelivered": sum(copies[n] == 0 for n in load.accepted),
        "duplicated": sum(copies[n] > 1 for n in load.accepted),
        "unknown": len(load.unknown),
        "unknown_delivered": sum(copies[n] >= 1 for n in load.unknown),
        "unknown_duplicated": sum(copies[n] > 1 for n in load.unknown),
        "at_smsc": sum(at_smsc.values()),
        "at_backup": sum(sim),
        "message_status": dict(final),
        "failed_but_delivered": sum(
            st == "failed" and copies[n] >= 1 for (n, _), st in zip(msgs, statuses, strict=True)
        ),
    }


def growth(minutes: list[Minute]) -> dict[str, Any]:
    """RSS from the end of minute 2 (half-way in a run under 4 min) to the end: all processes (a killed
    worker comes back small, so this understates), and only those alive at both points."""
    if len(minutes) < 2:
        return {"rss_base_minute": None, "rss_growth_pct": None, "rss_growth_survivors_pct": None}
    base_i = 1 if len(minutes) >= 4 else max(0, len(minutes) // 2 - 1)
    base, last = minutes[base_i].rss, minutes[-1].rss

    def total(snap: dict[str, Any], keep: set[int] | None = None) -> int:
        w = sum(v for p, v in snap["workers_kib"].items() if keep is None or p in keep)
        return int(snap["master_kib"]) + int(w)

    both = set(base["workers_kib"]) & set(last["workers_kib"])
    survivors: float | None = None
    if both or base["master_kib"]:
        survivors = round((total(last, both) / max(total(base, both), 1) - 1) * 100, 2)
    return {
        "rss_base_minute": base_i + 1,
        "rss_base_kib": total(base),
        "rss_end_kib": total(last),
        "rss_growth_pct": round((total(last) / max(total(base), 1) - 1) * 100, 2),
        "rss_growth_survivors_pct": survivors,
        "rss_survivors": len(both),
    }


def figures(
    args: argparse.Namespace, load: Load, faults: list[Fault], minutes: list[Minute], end: dict[str, Any]
) -> dict[str, Any]:
    a = load.answers
    outcomes = Counter(x.outcome for x in a)
    windows = [(f.at, f.at + f.seconds + WORKER_WINDOW) for f in faults if f.kind == "worker_kill"]
    stray = [x for x in a if x.outcome in ("cut", "refused") and not any(s <= x.t <= e for s, e in windows)]
    per_minute = []
    for i, row in enumerate(minutes):
        got = [x for x in a if i * 60 <= x.t < (i + 1) * 60]
        span = min(60.0, args.minutes * 60 - i * 60)
        per_minute.append(
            {
                "minute": i + 1,
                "requests": len(got),
                "rps": round(len(got) / span, 1),
                "error_rate": round(sum(x.outcome == "unexpected" for x in got) / max(len(got), 1), 5),
                "refusals": sum(x.outcome == "refusal" for x in got),
                "p99_ms": round(p99([x.seconds for x in got]) * 1e3, 1),
                "rss_kib": row.rss["master_kib"] + sum(row.rss["workers_kib"].values()),
                "rss_master_kib": row.rss["master_kib"],
                "rss_workers_kib": list(row.rss["workers_kib"].values()),
                "rss_max_kib": row.rss_max_kib,
            }
        )
    otps = sum(1 for k, _ in load.accepted.values() if k == "otp")
    rss = growth(minutes)
    return {
        "backend": args.backend,
        "workers": args.workers if args.backend == "redis" else 1,
        "minutes": args.minutes,
        "rate": args.rate,
        "seed": args.seed,
        "fault_every": args.fault_every,
        "fraud_mode": args.fraud_mode,
        "cores": os.cpu_count(),
        "requests": len(a),
        "rps": round(len(a) / (args.minutes * 60), 1),
        "by_kind": dict(Counter(x.kind for x in a)),
        "ok": outcomes["ok"],
        "refusals": outcomes["refusal"],
        "refusal_codes": dict(Counter(f"{x.status} {x.code}" for x in a if x.outcome == "refusal")),
        "unexpected": outcomes["unexpected"],
        "unexpected_codes": dict(
            Counter(f"{x.kind} {x.status} {x.code}" for x in a if x.outcome == "unexpected")
        ),
        "error_rate": round(outcomes["unexpected"] / max(len(a), 1), 5),
        "connections_refused": outcomes["refused"],
        "answers_lost": outcomes["cut"],
        "transport_errors_outside_faults": len(stray),
        "skipped": load.skipped,
        "p50_ms": round(sorted(x.seconds for x in a)[len(a) // 2] * 1e3, 1) if a else 0.0,
        "p99_ms": round(p99([x.seconds for x in a]) * 1e3, 1),
        **end,
        "otp_accepted": otps,
        "verified": load.verified,
        "fill_back": round(load.verified / max(otps, 1), 3),
        "faults": [vars(f) for f in faults],
        "fault_counts": dict(Counter(f.kind for f in faults if f.happened)),
        "per_minute": per_minute,
        **rss,
        "rss_target_met": None if rss["rss_growth_pct"] is None else rss["rss_growth_pct"] <= 5.0,
    }


async def soak(args: argparse.Namespace, r: Rig, key: str) -> dict[str, Any]:
    rng = random.Random(args.seed)
    fault_rng = random.Random(args.seed + 1)
    seconds = args.minutes * 60
    minutes: list[Minute] = []
    timeout = aiohttp.ClientTimeout(total=15)
    connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=5.0)  # under the gateway's idle timeout
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as s:
        load = Load(r, key, rng)
        sampler = asyncio.ensure_future(sample_rss(r, load, seconds, minutes))
        faulter = asyncio.ensure_future(inject(r, load, seconds, args.fault_every, fault_rng))
        await load.run(s, seconds, args.rate)
        await sampler
        faults = await faulter
        in_flight = [t for t in load.tasks if not t.done()]
        if in_flight:  # code look-ups and verifies still going: bounded, then dropped
            _, pending = await asyncio.wait(in_flight, timeout=15)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        end = await tally(r, load, args.drain)
    return figures(args, load, faults, minutes, end)


def report(f: dict[str, Any]) -> None:
    print(
        f"{f['requests']} requests in {f['minutes']:g} min ({f['rps']} req/s; {f['by_kind']}); "
        f"unexpected {f['unexpected']} ({f['error_rate']:.3%}) {f['unexpected_codes'] or ''}; "
        f"documented refusals {f['refusals']} {f['refusal_codes'] or ''}; p50 {f['p50_ms']} ms, "
        f"p99 {f['p99_ms']} ms"
    )
    print(
        f"faults: {f['fault_counts'] or 'none'}; connections refused {f['connections_refused']}, "
        f"answers lost {f['answers_lost']} ({f['transport_errors_outside_faults']} outside a worker kill)"
    )
    print(
        f"accepted {f['accepted']}: undelivered {f['undelivered']}, duplicated {f['duplicated']} "
        f"(must be 0); {f['at_smsc']} at the SMSC, {f['at_backup']} at the backup; unknown {f['unknown']} "
        f"({f['unknown_delivered']} delivered); messages by status {f['message_status']}, "
        f"failed but delivered {f['failed_but_delivered']}; OTPs verified {f['verified']} of "
        f"{f['otp_accepted']} (fill-back {f['fill_back']:.1%})"
    )
    if f["rss_growth_pct"] is not None:
        print(
            f"gateway RSS from the end of minute {f['rss_base_minute']} to the end: "
            f"{f['rss_base_kib'] / 1024:.1f} -> {f['rss_end_kib'] / 1024:.1f} MiB "
            f"({f['rss_growth_pct']:+.2f} %, target <= 5 %: {'met' if f['rss_target_met'] else 'NOT met'}); "
            f"processes alive throughout ({f['rss_survivors']} workers): {f['rss_growth_survivors_pct']} %"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second, all kinds together")
    ap.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults; 0 = none")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", choices=("redis", "memory"), default="redis")
    ap.add_argument("--workers", type=int, default=2, help="gateway workers (redis backend)")
    ap.add_argument("--fraud-mode", choices=("enforce", "monitor"), default="enforce")
    ap.add_argument(
        "--drain", type=float, default=60.0, help="at most this long for the carriers to catch up"
    )
    ap.add_argument("--json", action="store_true", help="last line: one JSON object of the figures")
    args = ap.parse_args()
    if args.minutes <= 0 or args.rate <= 0:
        ap.error("--minutes and --rate must be positive")
    with rig(args) as r:
        key = r.procs.tenant("soak", "send,verify,onboarding", "DE", args.fraud_mode)
        print(
            f"soak: {args.minutes:g} min at {args.rate:g} req/s, {args.backend} backend "
            f"({args.workers if args.backend == 'redis' else 1} worker(s)), a fault every "
            f"{args.fault_every:g} s (0 = none), seed {args.seed}",
            flush=True,
        )
        out = asyncio.run(soak(args, r, key))
    report(out)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
