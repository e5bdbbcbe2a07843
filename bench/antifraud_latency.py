"""Decision latency of the whole fraud check (limits + features + model), in process.

Traffic comes from the project's simulator (real users in many countries with their verifications,
resends and delivery failures, and the attack families): it is recorded once through an engine,
then replayed on a fresh engine while every ``FraudEngine.evaluate`` call is timed with
``perf_counter_ns``. Prints p50 / p99 / p99.9 in µs for the memory backend, and for the Redis
backend (one EVALSHA per check, against a throwaway ``redis-server`` on a free loopback port, or
``--redis URL``). Also the share of first-seen numbers (they pay the ``phonenumbers`` parse) and the
CPU time per check. Stops by itself (bounded by ``--n`` and ``--redis-n`` checks).

    .venv/bin/python bench/antifraud_latency.py [--n 40000] [--repeat 3] [--redis-n 8000] [--no-redis]

Run it on a quiet machine: other processes on the same 2 cores inflate the tail.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from antifraud import FraudEngine, FraudRequest, RedisFraudBackend, load_scorer
from antifraud.evaluate import EngineDriver, make_engine, sim_settings
from antifraud.numbers import number_info
from antifraud.simulate import Answer, Sent, SimConfig, Simulation
from gateway.app import freeze_gc


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "r" request, "v" verified, "f" delivery failed
    req: FraudRequest
    at: float = 0.0
    sent: Sent | None = None  # for "v" and "f": what was sent


class Recorder(EngineDriver):
    """Records the simulated traffic while an engine answers it (so it reacts as in service)."""

    def __init__(self, engine: FraudEngine) -> None:
        super().__init__(engine)
        self.events: list[Event] = []

    async def request(self, req: FraudRequest) -> Answer:
        self.events.append(Event("r", req))
        return await super().request(req)

    async def verified(self, sent: Sent, at: float) -> None:
        self.events.append(Event("v", sent.req, at, sent))
        await super().verified(sent, at)

    async def delivery_failed(self, sent: Sent, at: float) -> None:
        self.events.append(Event("f", sent.req, at, sent))
        await super().delivery_failed(sent, at)

    async def probe(self, req: FraudRequest) -> str:
        return "allow"


def percentiles(xs: list[int]) -> str:
    s = sorted(xs)

    def pick(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] / 1e3

    return f"p50 {pick(0.5):6.0f} µs   p99 {pick(0.99):6.0f} µs   p99.9 {pick(0.999):6.0f} µs   (n={len(s)})"


async def replay(
    engine: FraudEngine, events: list[Event], limit: int
) -> tuple[list[int], list[int], list[int]]:
    """Times every evaluate; returns (wall ns, cpu ns, wall ns of first-seen numbers)."""
    await engine.start()
    wall: list[int] = []
    cpu: list[int] = []
    fresh: list[int] = []
    n = 0
    warm = min(2000, limit // 10)
    threshold = gc.get_threshold()
    feedback = EngineDriver(engine)
    for ev in events:
        if ev.kind == "r":
            n += 1
            if n > limit:
                break
            if n == warm:  # what a serving gateway does once started (gateway.app.settle_gc)
                freeze_gc()
            misses = number_info.cache_info().misses
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            await engine.evaluate(ev.req)
            dt, dc = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
            if n > warm:
                wall.append(dt)
                cpu.append(dc)
                if number_info.cache_info().misses > misses:
                    fresh.append(dt)
        elif ev.kind == "v":
            assert ev.sent is not None
            await feedback.verified(ev.sent, ev.at)
        else:
            assert ev.sent is not None
            await feedback.delivery_failed(ev.sent, ev.at)
    gc.unfreeze()
    gc.set_threshold(*threshold)
    return wall, cpu, fresh


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str] | None:
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    port = free_port()
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    return None


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40_000, help="checks timed on the memory backend")
    ap.add_argument("--redis-n", type=int, default=8_000, help="checks timed on the Redis backend")
    ap.add_argument("--redis", default="", help="redis URL (default: start a throwaway redis-server)")
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="replays on the memory backend (best, worst shown)")
    args = ap.parse_args()

    model = load_scorer()
    scale = min(1.0, max(0.05, args.n / 130_000))
    t0 = time.perf_counter()
    rec = Recorder(make_engine(model))
    cfg = SimConfig(seed=args.seed, days=2.0, attack_from=1.0, scale=scale, attack_scale=scale)
    await Simulation(cfg, rec).run()
    requests = sum(1 for e in rec.events if e.kind == "r")
    print(
        f"traffic: {requests} checks recorded from the simulator (seed {args.seed}, scale {scale:.2f}) "
        f"in {time.perf_counter() - t0:.0f} s; model {model.version}"
    )

    runs = []
    for _ in range(max(1, args.repeat)):
        number_info.cache_clear()
        runs.append(await replay(make_engine(model), rec.events, args.n))
    runs.sort(key=lambda r: sorted(r[0])[int(0.99 * len(r[0]))])
    shown = [("best", runs[0])] + ([("worst", runs[-1])] if len(runs) > 1 else [])
    for label, (wall, cpu, fresh) in shown:
        share = 100 * len(fresh) / max(len(wall), 1)
        print(f"memory backend  {percentiles(wall)}   {label} of {len(runs)} replays by p99")
        print(f"  cpu time      {percentiles(cpu)}")
        print(f"  first-seen numbers ({share:.0f} % of checks): {percentiles(fresh)}")
    if args.no_redis:
        return

    import redis.asyncio as aioredis

    workdir = tempfile.mkdtemp(prefix="af-bench-redis-")
    started = None
    url = args.redis
    try:
        if not url:
            started = start_redis(workdir)
            if started is None:
                print("redis backend   skipped: no redis-server installed")
                return
            url = started[1]
        client = aioredis.Redis.from_url(url)
        await client.flushdb()
        await client.config_resetstat()
        number_info.cache_clear()
        engine = FraudEngine(sim_settings(), RedisFraudBackend(client), model)
        wall, cpu, fresh = await replay(engine, rec.events, args.redis_n)
        print(f"redis backend   {percentiles(wall)}   one EVALSHA per check, loopback")
        print(f"  cpu time      {percentiles(cpu)}   (this process)")
        stats = await client.info("commandstats")
        ev = stats.get("cmdstat_evalsha", {})
        if ev:
            print(f"  redis-server  {ev.get('usec_per_call')} µs per EVALSHA inside the server")
        await client.aclose()
    finally:
        if started is not None:
            started[0].terminate()
            started[0].wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
