"""Healthy clients beside hostile ones: a quiet run, then the same load while a crowd of idle
connections (reopened as the gateway closes them) and slowloris senders hold sockets open.

Prints the healthy clients' p50/p99 in both runs, their ratio (target: attacked p99 <= 2x quiet), the
gateway's RSS growth and the idle connections held; with --json the last line is one JSON object.
Starts a sim-carrier and `smsgw serve` (embedded default, server settings at their defaults) on
127.0.0.1 and stops both by PID.

    .venv/bin/python bench/hostile_clients.py --seconds 10 --idle 2000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.conftest import free_port  # noqa: E402
from tests.e2e import hostile  # noqa: E402
from tests.e2e.procs import Procs, sim_config  # noqa: E402


async def measure(args: argparse.Namespace, port: int, key: str, pid: int) -> dict[str, Any]:
    await hostile.healthy_load(port, key, seconds=2, concurrency=args.concurrency, first=1)
    quiet, quiet_st = await hostile.healthy_load(
        port, key, seconds=args.seconds, concurrency=args.concurrency, first=1_000_000
    )
    before = hostile.rss_kib(pid)
    crowd = hostile.IdleCrowd(port, args.idle)
    await crowd.start()
    loris = [
        asyncio.ensure_future(hostile.slow_headers(port, every=1.0, seconds=args.seconds + 5))
        for _ in range(args.slowloris)
    ]
    try:
        await asyncio.sleep(1.0)
        held = crowd.held
        attacked, attacked_st = await hostile.healthy_load(
            port, key, seconds=args.seconds, concurrency=args.concurrency, first=20_000_000
        )
        after = hostile.rss_kib(pid)
    finally:
        await crowd.stop()
        for t in loris:
            t.cancel()
        await asyncio.gather(*loris, return_exceptions=True)
    q99, a99 = hostile.p99(quiet), hostile.p99(attacked)
    return {
        "quiet_rps": round(len(quiet) / args.seconds, 1),
        "quiet_p50_ms": round(statistics.median(quiet) * 1e3, 2),
        "quiet_p99_ms": round(q99 * 1e3, 2),
        "attack_rps": round(len(attacked) / args.seconds, 1),
        "attack_p50_ms": round(statistics.median(attacked) * 1e3, 2),
        "attack_p99_ms": round(a99 * 1e3, 2),
        "p99_ratio": round(a99 / q99, 2),
        "quiet_non_2xx": sum(n for s, n in quiet_st.items() if not 200 <= s < 300),
        "attack_non_2xx": sum(n for s, n in attacked_st.items() if not 200 <= s < 300),
        "idle_held": held,
        "idle_opened": crowd.opened,
        "idle_closed_by_gateway": crowd.closed_by_server,
        "slowloris": args.slowloris,
        "rss_growth_kib": after - before,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each run (quiet, attacked)")
    ap.add_argument("--idle", type=int, default=2000, help="idle connections held during the attack")
    ap.add_argument("--slowloris", type=int, default=100, help="slowloris senders during the attack")
    ap.add_argument("--concurrency", type=int, default=8, help="healthy clients")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object of the figures")
    args = ap.parse_args()
    limit = hostile.raise_fd_limit(args.idle * 2 + args.slowloris * 2 + 1000)
    if limit < args.idle * 2 + 500:
        print(f"open-files limit {limit} is too low for {args.idle} idle connections", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="smsgw-hostile-") as tmp:
        procs = Procs(Path(tmp))
        try:
            sim = procs.sim_carrier()
            port = free_port()
            gw = procs.gateway(port, sim_config(port, sim))
            key = procs.tenant()
            figures = asyncio.run(measure(args, port, key, gw.pid))
        finally:
            procs.stop_all()
    print(
        f"healthy clients ({args.concurrency}), {args.seconds:g} s each:\n"
        f"  quiet     {figures['quiet_rps']:8.1f} req/s  p50 {figures['quiet_p50_ms']:6.1f} ms"
        f"  p99 {figures['quiet_p99_ms']:6.1f} ms  non-2xx {figures['quiet_non_2xx']}\n"
        f"  attacked  {figures['attack_rps']:8.1f} req/s  p50 {figures['attack_p50_ms']:6.1f} ms"
        f"  p99 {figures['attack_p99_ms']:6.1f} ms  non-2xx {figures['attack_non_2xx']}\n"
        f"  p99 attacked / quiet = {figures['p99_ratio']:.2f} (target <= 2)\n"
        f"attack: {figures['idle_held']} idle connections held ({figures['idle_opened']} opened,"
        f" {figures['idle_closed_by_gateway']} closed by the gateway), {args.slowloris} slowloris;"
        f" gateway RSS {figures['rss_growth_kib'] / 1024:+.1f} MiB"
    )
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
