"""Training the fraud model on the project's own traffic simulator (kept apart from serving).

``train(seed, n)`` simulates about ``n`` OTP requests per round through the engine, collects the
feature vector of every request that reaches the model together with its ground truth (attack or
real user, known to the simulator only), fits a scikit-learn logistic regression, and exports it as
plain arithmetic (``scorer.LinearScorer``: weights with the standardisation folded in). Round 1 runs
the engine on rules alone; round 2 runs it with the round-1 model in the loop, so features that depend
on earlier decisions (challenges failing, fill-back after blocks) look as they will in service.

The threshold is chosen on the training data: the lowest score that challenges at most
``max_challenge`` of *all* real users' requests (0.4 % by default, inside the issue's 1 % budget for
all challenges), i.e. the best catch rate the false-positive budget allows. Evaluate on other seeds
(``evaluate.py`` refuses the training seeds).

    .venv/bin/python -m antifraud.model --seed 1 --n 400000
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antifraud.features import FEATURE_NAMES
from antifraud.scorer import DEFAULT_MODEL, LinearScorer, RulesOnlyScorer, Scorer, save_scorer
from antifraud.simulate import SimConfig

REQUESTS_PER_SCALE = 190_000  # requests one simulation makes at scale 1 (legit + attacks)
MODEL_VERSION_PREFIX = "lr"


@dataclass(slots=True)
class Samples:
    x: list[list[float]] = field(default_factory=list)
    y: list[int] = field(default_factory=list)
    legit_requests: int = 0  # every real user's request, whether or not it reached the model

    def extend(self, rows: Sequence[tuple[str, list[float]]], legit_requests: int) -> None:
        for who, vec in rows:
            if who == "typo":
                continue
            self.x.append(vec)
            self.y.append(0 if who in ("legit", "collateral") else 1)
        self.legit_requests += legit_requests


@dataclass(frozen=True, slots=True)
class TrainedModel:
    scorer: LinearScorer
    path: Path | None
    metrics: dict[str, Any]


async def collect(config: SimConfig, model: Scorer, progress: bool) -> Samples:
    from antifraud.evaluate import EngineDriver, make_engine, simulate

    driver = EngineDriver(make_engine(model), collect_features=True)
    res = await simulate(config, driver, progress=progress, collect_features=True)
    out = Samples()
    legit = sum(1 for r in res.rows if r.who in ("legit", "collateral"))
    out.extend(res.samples, legit)
    return out


def fit(samples: Samples, *, c: float = 0.05, seed: int = 0) -> tuple[list[float], float, list[float]]:
    """Logistic regression on standardised features; returns raw-feature weights, bias, means."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(samples.x, dtype=float)
    y = np.asarray(samples.y, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ValueError("training data needs both real users and attacks")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=seed)
    clf.fit(z, y)
    w = clf.coef_[0] / scale
    bias = float(clf.intercept_[0] - float(np.dot(clf.coef_[0], mean / scale)))
    return [float(v) for v in w], bias, [float(v) for v in mean]


def choose_threshold(
    scorer: LinearScorer, samples: Samples, max_challenge: float
) -> tuple[float, dict[str, float]]:
    legit = sorted(
        (scorer.score(x) for x, y in zip(samples.x, samples.y, strict=True) if y == 0), reverse=True
    )
    attack = [scorer.score(x) for x, y in zip(samples.x, samples.y, strict=True) if y == 1]
    budget = int(max_challenge * max(samples.legit_requests, 1))
    # the lowest threshold that challenges at most `budget` real requests
    t = legit[budget] + 1e-9 if budget < len(legit) else 0.5
    t = min(max(t, 0.05), 0.995)
    caught = sum(1 for s in attack if s >= t) / max(len(attack), 1)
    fp = sum(1 for s in legit if s >= t) / max(samples.legit_requests, 1)
    return t, {"threshold": t, "attack_caught_by_model": caught, "legit_challenged_by_model": fp}


def train(
    seed: int,
    n: int,
    progress: bool = True,
    *,
    out: Path | None = None,
    rounds: int = 2,
    max_challenge: float = 0.004,
) -> TrainedModel:
    """Simulate ≈ ``n`` requests per round (seeds ``seed``, ``seed+1``, …), fit, pick the threshold,
    save the JSON model (to ``out``, or nowhere when ``out`` is None) and return it."""
    scale = min(max(n / REQUESTS_PER_SCALE, 0.02), 4.0)
    model: Scorer = RulesOnlyScorer()
    scorer: LinearScorer | None = None
    metrics: dict[str, Any] = {}
    seeds = [seed + r for r in range(rounds)]
    t0 = time.perf_counter()
    samples = Samples()
    for r, s in enumerate(seeds):
        cfg = SimConfig(seed=s, scale=scale, attack_scale=scale)
        samples = asyncio.run(collect(cfg, model, progress))
        weights, bias, mean = fit(samples, seed=s)
        version = f"{MODEL_VERSION_PREFIX}-seed{seed}-n{n}-r{r + 1}"
        scorer = LinearScorer(version, FEATURE_NAMES, tuple(weights), bias, tuple(mean), 0.5, tuple(seeds))
        threshold, metrics = choose_threshold(scorer, samples, max_challenge)
        scorer = LinearScorer(
            version, FEATURE_NAMES, tuple(weights), bias, tuple(mean), threshold, tuple(seeds)
        )
        model = scorer
    assert scorer is not None
    metrics.update(
        {
            "samples": len(samples.y),
            "attack_samples": sum(samples.y),
            "legit_requests": samples.legit_requests,
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
    )
    meta = {
        "train_seeds": seeds,
        "requests_per_round": n,
        "scale": scale,
        "rounds": rounds,
        "max_challenge": max_challenge,
        "algorithm": "sklearn LogisticRegression(C=0.05, class_weight=balanced) on standardised features",
        "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()},
    }
    if out is not None:
        save_scorer(scorer, out, meta)
    return TrainedModel(scorer, out, meta)


def default_model_path() -> Path:
    return Path(__file__).resolve().parent / DEFAULT_MODEL


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m antifraud.model", description="Train the fraud model.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=400_000, help="requests simulated per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=default_model_path())
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    trained = train(args.seed, args.n, progress=not args.quiet, out=args.out, rounds=args.rounds)
    m = trained.metrics["metrics"]
    print(
        f"saved {trained.path}: version {trained.scorer.version}, threshold {trained.scorer.threshold:.4f}, "
        f"{m['samples']} samples ({m['attack_samples']} attack), model catches "
        f"{100 * m['attack_caught_by_model']:.1f}% of attack requests it sees at "
        f"{100 * m['legit_challenged_by_model']:.2f}% of real requests challenged"
    )
    top = sorted(zip(trained.scorer.features, trained.scorer.weights, strict=True), key=lambda p: -abs(p[1]))
    print("largest weights (raw features): " + ", ".join(f"{f} {w:+.3g}" for f, w in top[:8]))
    if not math.isfinite(trained.scorer.bias):
        raise SystemExit("training produced a non-finite model")


if __name__ == "__main__":
    main()
