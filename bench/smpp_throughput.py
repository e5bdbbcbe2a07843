#!/usr/bin/env python3
"""SMPP throughput: submit_sm/s through SmppCarrier against the sim-carrier's SMPP side on loopback.

    .venv/bin/python bench/smpp_throughput.py [--seconds 1] [--rounds 3] [--only smpp] [--strict]

Section ``smpp``: 1 bind and 4 binds × window 1, 10 and 50, each measured over ``--rounds`` rounds
of ``--seconds`` after a short warm-up; the median round is reported, with the spread. The SMSC
(carriers.sim.smpp_server with the sim-carrier's Inbox, a delivery receipt for every message after
50 ms, i.e. four PDUs per message) runs in a child process — this script with ``--serve-sim`` — so
the client and the SMSC each have a core of their own, as a gateway and a carrier would. Enough
submitters run to keep every window full; a submit counts when it is ACCEPTED.
Prints one line per case and a final summary line. Target (issue 4): 1 bind, window 50 ≥ 2,000/s.

Sections are listed in SECTIONS; a further one (the end-to-end POST /v1/otp → SMSC p99 the gateway
adds) is an ``async def section(args) -> list[str]`` returning its summary parts.
Exit status 0, or 1 with ``--strict`` when a target is missed. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

from carriers.base import DeliveryReceipt, Submission, SubmitOutcome  # noqa: E402
from carriers.smpp.client import SmppCarrier  # noqa: E402

TARGET_ONE_BIND_W50 = 2000.0


# --------------------------------------------------------------------------- the SMSC child


async def serve_sim(port: int, receipt_delay_ms: float) -> None:
    from carriers.sim.http_server import Inbox
    from carriers.sim.smpp_server import SmppSim, SmppSimOptions

    inbox = Inbox(limit=50_000)
    sim = SmppSim(
        lambda sender, to, text: inbox.add(sender, to, text)[0],
        SmppSimOptions(receipt_rate=1.0, receipt_delay_ms=receipt_delay_ms, seed=1),
    )
    server = await sim.start("127.0.0.1", port)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.to_thread(sys.stdin.read)  # the parent closes our stdin (or dies): stop
    await sim.close()


class SimProcess:
    def __init__(self, receipt_delay_ms: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-sim", "--receipt-delay-ms", str(receipt_delay_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.stop()
            raise RuntimeError(f"the sim SMSC did not start: {line}")
        self.port = int(line[1])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --------------------------------------------------------------------------- the SMPP section


@dataclass
class Case:
    binds: int
    window: int
    rate: float = 0.0
    accepted: int = 0
    other: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    receipts: int = 0
    rates: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.binds} bind{'s' if self.binds > 1 else ''} × window {self.window}"


async def run_case(port: int, case: Case, seconds: float, rounds: int, warmup: float) -> None:
    """Submit flat out for warm-up + rounds × seconds; the rate is the median over the rounds (a
    neighbour's burst of CPU on a shared machine then spoils one round, not the figure)."""
    received = 0

    async def on_receipt(carrier: str, receipt: DeliveryReceipt) -> None:
        nonlocal received
        received += 1

    carrier = SmppCarrier(
        "bench",
        "127.0.0.1",
        port,
        "smsgw",
        "secret",
        binds=case.binds,
        window=case.window,
        response_timeout=10.0,
    )
    await carrier.start(on_receipt)
    if not carrier.is_up():
        raise RuntimeError(f"could not bind to the sim SMSC: {carrier.status()}")
    sub = Submission(ref="bench", sender="SMSGW", to="+4915123456789", text="Your code is 123456")
    latencies: list[float] = []
    per_round = [0] * rounds
    other = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds * rounds

    async def submitter() -> None:
        nonlocal other
        while loop.time() < stop:
            t0 = time.perf_counter()
            result = await carrier.submit(sub)
            done = loop.time()
            if start <= done < stop:
                latencies.append(time.perf_counter() - t0)
                if result.outcome is SubmitOutcome.ACCEPTED:
                    per_round[int((done - start) // seconds)] += 1
                else:
                    other += 1

    await asyncio.gather(*(submitter() for _ in range(case.binds * case.window * 2)))
    await carrier.close()
    case.accepted, case.other = sum(per_round), other
    case.rates = [n / seconds for n in per_round]
    case.rate = statistics.median(case.rates)
    if len(latencies) >= 2:
        q = statistics.quantiles(latencies, n=100)
        case.p50_ms, case.p99_ms = q[49] * 1000, q[98] * 1000
    case.receipts = received


async def section_smpp(args: argparse.Namespace) -> list[str]:
    sim = SimProcess(args.receipt_delay_ms)
    cases = [Case(b, w) for b in (1, 4) for w in (1, 10, 50)]
    try:
        print(
            f"SMPP submit_sm/s against the sim SMSC (child process) on 127.0.0.1:{sim.port}, "
            f"median of {args.rounds} × {args.seconds:g}s per case"
        )
        for case in cases:
            await run_case(sim.port, case, args.seconds, args.rounds, args.warmup)
            spread = f"{min(case.rates):.0f}–{max(case.rates):.0f}"
            print(
                f"  {case.label:<20} {case.rate:8.0f} submit_sm/s ({spread})   p50 {case.p50_ms:6.2f} ms   "
                f"p99 {case.p99_ms:6.2f} ms   accepted {case.accepted}, not accepted {case.other}, "
                f"receipts {case.receipts} (with warm-up)",
                flush=True,
            )
    finally:
        sim.stop()
    one = next(c for c in cases if c.binds == 1 and c.window == 50)
    four = next(c for c in cases if c.binds == 4 and c.window == 50)
    met = one.rate >= TARGET_ONE_BIND_W50
    args.missed += 0 if met else 1
    verdict = "met" if met else "NOT met"
    return [
        f"1 bind w50 {one.rate:.0f}/s (target ≥{TARGET_ONE_BIND_W50:.0f}: {verdict})",
        f"4 binds w50 {four.rate:.0f}/s",
        f"1 bind w1 {cases[0].rate:.0f}/s",
    ]


Section = Callable[[argparse.Namespace], Awaitable[list[str]]]
SECTIONS: dict[str, Section] = {"smpp": section_smpp}


async def main(args: argparse.Namespace) -> int:
    summary: list[str] = []
    t0 = time.perf_counter()
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        summary += await section(args)
    print(f"summary: {'; '.join(summary)} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return 1 if args.strict and args.missed else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=1.0, help="length of one measured round")
    p.add_argument("--rounds", type=int, default=3, help="measured rounds per case (the median is reported)")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured time per case before it")
    p.add_argument("--receipt-delay-ms", type=float, default=50.0)
    p.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--serve-sim", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.missed = 0
    return args


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    if arguments.serve_sim:
        asyncio.run(serve_sim(arguments.port, arguments.receipt_delay_ms))
        sys.exit(0)
    sys.exit(asyncio.run(main(arguments)))
