"""Validation RMSE of FactorizationMachine settings on ML-100K, never touching the test ratings.

    .venv/bin/python benchmarks/fm_validation.py                      # the current defaults
    .venv/bin/python benchmarks/fm_validation.py '{"batch_size": 1024, "learning_rate": 0.02}' '{}'

How the defaults of :class:`mflib.FactorizationMachine` were chosen: for each protocol split (seeds 0, 1, 2 of
:func:`mflib.evaluation.explicit_split`) a validation fold of 10 % is carved from the *training* ratings
(``random_holdout`` with seed ``100 + split``); the model is fitted on the rest with all side features and
scored on that fold. Each argument is a JSON object of hyper-parameters (overriding the defaults); the
script prints the mean validation RMSE over the three folds, the per-fold values and the fit seconds.
The test ratings of the splits are what ``benchmarks/bench.py`` scores, once, with the chosen defaults.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from mflib import load_movielens
from mflib.evaluation import explicit_split, random_holdout
from mflib.features import build_features
from mflib.metrics import rmse
from mflib.models.fm import FactorizationMachine

SPLITS = (0, 1, 2)


def validation_folds(dataset):
    """``(X_fit, y_fit, X_val, y_val, space, split)`` per protocol split: 90 / 10 of its training ratings."""
    folds = []
    for split in SPLITS:
        train, _ = explicit_split(dataset, split)
        fit, validation = random_holdout(train, 0.1, 100 + split)
        X_fit, space = build_features(dataset, fit)
        X_val, _ = build_features(dataset, validation)
        folds.append((X_fit, fit["rating"].to_numpy(), X_val, validation["rating"].to_numpy(), space, split))
    return folds


def score(settings: dict, folds) -> tuple[float, list[float], float]:
    """Mean and per-fold validation RMSE of ``FactorizationMachine(**settings)``, and the fit seconds."""
    scores, start = [], time.perf_counter()
    for X_fit, y_fit, X_val, y_val, space, split in folds:
        model = FactorizationMachine(random_state=split, **settings).fit(X_fit, y_fit, feature_space=space)
        scores.append(rmse(y_val, model.predict(X_val)))
    return float(np.mean(scores)), scores, time.perf_counter() - start


def main(argv=None) -> int:
    candidates = [json.loads(arg) for arg in (sys.argv[1:] if argv is None else argv)] or [{}]
    folds = validation_folds(load_movielens("100k"))
    for settings in candidates:
        mean, scores, seconds = score(settings, folds)
        print(f"validation RMSE {mean:.4f}  folds {' '.join(f'{s:.4f}' for s in scores)}  "
              f"{seconds:5.1f} s  {json.dumps(settings) if settings else '(defaults)'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
