"""The anti-fraud evaluation report: the engine beside the re-implemented commercial baselines.

Runs the simulator in process on held-out seeds (the shipped model's training seeds are refused) and
prints, per attack family, the pumping refused by count and by cost, SMS leaked per campaign, time to
stop and to release, and for real users the blocked and challenged shares (overall, worst country,
surge, outage, inside attacked ranges, cold start), plus decision latency. Bounded: each seed is three
simulated days (≈ 190 000 requests at ``--scale 1``), about a minute per detector per seed here.

    .venv/bin/python bench/antifraud_eval.py --seeds 101 102 [--scale 1.0] [--out report.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from antifraud.evaluate import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies traffic volumes")
    ap.add_argument("--model", type=Path, default=None, help="model JSON (default: the shipped one)")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    args = ap.parse_args()
    t0 = time.perf_counter()
    text = evaluate(
        args.seeds, model_path=args.model, baselines=not args.no_baselines, scale=args.scale, progress=True
    )
    text += f"\n\n(evaluated in {time.perf_counter() - t0:.0f} s)"
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", "utf-8")


if __name__ == "__main__":
    main()
