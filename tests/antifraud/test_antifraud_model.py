"""The model: exported arithmetic equals scikit-learn, files are verified at load, training runs, and
the shipped model meets its threshold on a seed it never saw."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from antifraud import LinearScorer, ModelError, load_scorer
from antifraud.evaluate import run
from antifraud.features import FEATURE_NAMES
from antifraud.model import Samples, fit, train
from antifraud.scorer import model_document, scorer_from_document


def test_the_shipped_model_loads_verified_with_the_engine_features() -> None:
    m = load_scorer()
    assert m.features == FEATURE_NAMES
    assert 0 < m.threshold < 1 and m.train_seeds
    assert not {101, 102, 201} & set(m.train_seeds), "evaluation seeds must stay held out"


def _doc() -> dict[str, object]:
    m = load_scorer()
    return json.loads(json.dumps(model_document(m, {"train_seeds": list(m.train_seeds)})))


def test_a_changed_file_is_refused() -> None:
    doc = _doc()
    doc["weights"][0] += 1.0  # type: ignore[index]
    with pytest.raises(ModelError, match="checksum"):
        scorer_from_document(doc)


def test_a_model_for_other_features_is_refused() -> None:
    m = load_scorer()
    other = LinearScorer("x", (*m.features[:-1], "something_else"), m.weights, m.bias, m.mean, 0.5)
    with pytest.raises(ModelError, match="something_else"):
        scorer_from_document(model_document(other, {}))


def test_not_json_and_bad_values_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("{not json", "utf-8")
    with pytest.raises(ModelError, match="not JSON"):
        load_scorer(bad)
    m = load_scorer()
    with pytest.raises(ModelError, match="threshold"):
        scorer_from_document(
            model_document(LinearScorer("x", m.features, m.weights, m.bias, m.mean, 1.5), {})
        )


def test_exported_arithmetic_equals_scikit_learn() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = random.Random(4)
    n = len(FEATURE_NAMES)
    s = Samples()
    for _ in range(600):
        y = rng.random() < 0.3
        s.x.append([rng.gauss(1.5 if (y and j % 3 == 0) else 0.0, 1.0 + j % 4) for j in range(n)])
        s.y.append(int(y))
    weights, bias, mean = fit(s, seed=0)
    ours = LinearScorer("t", FEATURE_NAMES, tuple(weights), bias, tuple(mean), 0.5)
    x = np.asarray(s.x)
    mu, sd = x.mean(axis=0), x.std(axis=0)
    clf = LogisticRegression(C=0.05, max_iter=5000, class_weight="balanced", random_state=0)
    clf.fit((x - mu) / sd, np.asarray(s.y))
    theirs = clf.predict_proba((x - mu) / sd)[:, 1]
    assert [ours.score(row) for row in s.x] == pytest.approx(list(theirs), abs=1e-9)
    top = ours.contributions(s.x[0])
    assert len(top) == n and top[0][1] >= top[-1][1]


def test_scoring_costs_microseconds() -> None:
    m = load_scorer()
    x = [0.5] * len(FEATURE_NAMES)
    t0 = time.perf_counter()
    for _ in range(2000):
        m.score(x)
    assert (time.perf_counter() - t0) / 2000 < 100e-6  # ≈ 3 µs here; predict_proba is ≈ 160 µs


def test_training_runs_end_to_end_and_saves_a_loadable_model(tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    trained = train(11, 8000, progress=False, out=out, rounds=1)
    m = load_scorer(out)
    assert m.version == trained.scorer.version and m.train_seeds == (11,)
    metrics = trained.metrics["metrics"]
    assert metrics["attack_samples"] > 500 and metrics["legit_requests"] > 3000
    assert metrics["legit_challenged_by_model"] <= 0.0045
    assert metrics["attack_caught_by_model"] > 0.8


async def test_the_shipped_model_meets_its_threshold_on_a_held_out_seed() -> None:
    """A small simulation (10 % of the evaluation's volume) on a seed training never saw."""
    (fig,) = await run([201], scale=0.1, baselines=False, progress=False)
    overall = fig.overall
    assert overall.requests > 3000 and fig.legit.requests > 10_000
    assert overall.blocked_cost >= 0.97
    assert fig.legit.blocked_rate <= 0.002
    assert fig.legit.challenged_rate <= 0.02
    assert max(overall.leaks) <= 50
