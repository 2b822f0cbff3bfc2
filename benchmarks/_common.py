"""What ``benchmarks/bench.py`` and ``benchmarks/demo.py`` share: fitting a model on the course protocol and
scoring it, the models the registry lists, and a plain-text table.

The protocol is :mod:`mflib.evaluation`'s: implicit models learn from the positives (rating >= 4) of a seeded
80/20 split and are scored @10 over the users with a test positive (train items filtered out), plus the genre
Jaccard of similar items and the known pairs (Star Wars -> Empire + Jedi, Godfather -> Part II); explicit
models learn from a seeded 80/20 split of all ratings and are scored by test RMSE.
"""
from __future__ import annotations

import importlib
import time

from mflib import evaluation
from mflib.metrics import rmse
from mflib.models import registry

__all__ = ["installed_models", "score_implicit", "score_explicit", "score_features", "print_table"]


def installed_models(data: str | None = None) -> list[tuple[registry.ModelEntry, type]]:
    """``(entry, class)`` for every model of :mod:`mflib.models.registry` that this installation has (all of
    them in the repository; only the baseline in the student bundle), optionally only those whose ``fit``
    takes ``data``. A model whose module is missing is reported on stdout, not skipped silently."""
    found = []
    for entry in registry.MODELS:
        if data is not None and entry.data != data:
            continue
        try:
            found.append((entry, getattr(importlib.import_module(entry.module), entry.name)))
        except ModuleNotFoundError as error:
            if not registry.is_reference_module(error.name or ""):
                raise
            print(f"  ({entry.name} skipped: {entry.module} is not installed)")
    return found


def _timed_fit(fit):
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def score_implicit(make_model, ds, train, test, similar: bool = True) -> dict:
    """Fit ``make_model()`` on the implicit ``train`` matrix; NDCG / P / R @10, fit seconds and, with
    ``similar``, the genre Jaccard of similar items and how many known pairs it finds (of 2)."""
    model, seconds = _timed_fit(lambda: make_model().fit(train))
    result = evaluation.evaluate_ranking(model, train, test)
    row = {"ndcg@10": result["ndcg@10"], "precision@10": result["precision@10"],
           "recall@10": result["recall@10"], "fit s": seconds, "model_object": model}
    if similar:
        row["genre J"] = evaluation.evaluate_similar_items(model, ds, train)
        pairs = evaluation.known_pairs(model, ds)
        row["pairs"] = sum(all(found.values()) for found in pairs.values())
    return row


def score_explicit(make_model, ds, train, test) -> dict:
    """Fit ``make_model()`` on the ratings of ``train`` (a ratings frame); test RMSE and fit seconds."""
    model, seconds = _timed_fit(lambda: make_model().fit(
        train["user_idx"].to_numpy(), train["item_idx"].to_numpy(), train["rating"].to_numpy(),
        n_users=ds.n_users, n_items=ds.n_items))
    predictions = model.predict(test["user_idx"].to_numpy(), test["item_idx"].to_numpy())
    return {"rmse": rmse(test["rating"], predictions), "fit s": seconds, "model_object": model}


def score_features(make_model, ds, train, test) -> dict:
    """Fit ``make_model()`` on the side-feature rows of ``train`` (:func:`mflib.features.build_features`,
    every block); test RMSE and fit seconds (feature building included)."""
    from mflib.features import build_features

    def fit():
        X_train, space = build_features(ds, train)
        return make_model().fit(X_train, train["rating"].to_numpy(), feature_space=space)

    model, seconds = _timed_fit(fit)
    X_test, _ = build_features(ds, test)  # the column layout depends on the dataset only
    return {"rmse": rmse(test["rating"], model.predict(X_test)), "fit s": seconds, "model_object": model}


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` (dicts with a ``model`` or ``task`` name) as a table; ``columns`` are
    ``(key, header, format)``; a missing value is left blank, a row's ``error`` printed under it."""
    print(f"\n{title}")
    name_key = "model" if "model" in rows[0] else "task"
    width = max(len(str(r[name_key])) for r in rows) + 2
    widths = [max(len(head) + 2, 10) for _, head, _ in columns]
    header = f"{name_key:<{width}}" + "".join(f" {head:>{w}}" for (_, head, _), w in zip(columns, widths))
    print(header)
    print("-" * len(header))
    for row in rows:
        line = f"{row[name_key]:<{width}}"
        for (key, _, fmt), w in zip(columns, widths):
            value = row.get(key)
            cell = format(value, fmt) if isinstance(value, (int, float)) else (value or "")
            line += f" {cell:>{w}}"
        print(line)
        if row.get("error"):
            print(f"    error: {row['error']}")
