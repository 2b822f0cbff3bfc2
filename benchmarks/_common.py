"""What ``benchmarks/bench.py`` and ``benchmarks/demo.py`` share: fitting a model on the course protocol and
scoring it, the models the registry lists, and a plain-text table.

The protocol is :mod:`mflib.evaluation`'s: implicit models learn from the positives (rating >= 4) of a seeded
80/20 split and are scored @10 over the users with a test positive (train items filtered out), plus the genre
Jaccard of similar items and the known pairs (Star Wars -> Empire + Jedi, Godfather -> Part II); explicit
models learn from a seeded 80/20 split of all ratings and are scored by test RMSE.
"""
from __future__ import annotations

import importlib
import os
import platform
import time
from pathlib import Path

from mflib import evaluation
from mflib.metrics import rmse
from mflib.models import registry

__all__ = ["installed_models", "score_implicit", "score_explicit", "score_features", "print_table", "markdown_table",
           "machine_lines", "surprise_trainset"]

#: Variables that change which OpenBLAS kernel runs (some virtual machines set them; they slow a current numpy).
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


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


def _cell(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and fmt else ("" if value is None else str(value))


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]], name_key: str | None = None,
                   name_header: str | None = None) -> str:
    """``rows`` as a markdown table: first the name column (``model`` or ``task``), then ``columns`` as in
    :func:`print_table`; a missing value is left blank."""
    name_key = name_key or ("model" if "model" in rows[0] else "task")
    headers = [name_header or name_key] + [head for _, head, _ in columns]
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * len(columns)]
    for row in rows:
        cells = [str(row[name_key])] + [_cell(row.get(key), fmt) for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    """What the figures depend on, as markdown bullet lines: CPU, cores, load average, versions, the BLAS
    and OpenMP libraries this process loaded with their kernel and thread counts (threadpoolctl, read under
    the current limits), and the environment variables that change them."""
    import numpy as np
    import scipy
    from threadpoolctl import threadpool_info

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [f"- CPU: {_cpu_model()}, {cores} cores available to this process (os.cpu_count() = {os.cpu_count()})",
             "- load average (1, 5, 15 min) at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
             f"- Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}"]
    versions = []
    for module in ("implicit", "lightfm", "surprise", "myfm", "faiss"):
        try:
            versions.append(f"{module} {getattr(importlib.import_module(module), '__version__', '?')}")
        except ImportError:
            versions.append(f"{module} not installed")
    lines.append("- " + ", ".join(versions))
    lines.append("- environment: " + ", ".join(f"{name}={os.environ[name]}" if name in os.environ else f"{name} unset"
                                              for name in BLAS_ENV))
    for pool in threadpool_info():
        lines.append(f"- {pool.get('user_api')}: {pool.get('internal_api')} {pool.get('version') or ''} "
                     f"({Path(pool.get('filepath', '')).name}), kernel {pool.get('architecture', 'n/a')}, "
                     f"{pool.get('num_threads')} threads")
    return lines


def surprise_trainset(train):
    """A Surprise trainset of a ratings frame (``user_idx``, ``item_idx``, ``rating``)."""
    import pandas as pd
    from surprise import Dataset, Reader

    frame = pd.DataFrame({"u": train["user_idx"], "i": train["item_idx"], "r": train["rating"]})
    return Dataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()
