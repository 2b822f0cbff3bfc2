"""The speed rows of ``benchmarks/bench.py``: mflib against implicit, LightFM and Surprise in one process.

Every row times mflib and its anchor on the same data, **interleaved** (ours, anchor, ours, anchor, ...) and
keeps the best of ``repeats`` runs of each (the least disturbed by other processes). The whole set of rows
is then measured a second time (``passes=2``): the ratios of the two passes say how much the figures move
from run to run on this machine, and the generated report states it.

Per row: wall seconds (per epoch where the row says so), the ratio mflib / anchor, the same ratio from the
second pass, and the ratio of *CPU* seconds for the rows where both sides run one thread (CPU time is what
a loaded machine disturbs least; with several threads it also counts threads that spin or wait, so it is
left out there). ``threads`` says what each side ran with: implicit uses OpenMP threads, one per core by
default; mflib's ALS runs chunks of rows on Python threads (``num_threads``); mflib's BPR and WARP are
single-threaded numpy, so their epochs are compared with one-thread anchors and, for information, with the
anchors on all cores.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from mflib import evaluation
from synthetic import naive_als_spsolve, synthetic_implicit

__all__ = ["SpeedTask", "speed_tasks", "measure", "summarise", "als_profile", "TARGETS"]

#: The issue's targets: ratio mflib / anchor at most this (ALS against implicit; BPR, WARP epochs).
TARGETS = {"als": 1.5, "bpr": 2.0, "warp": 2.0}


@dataclass
class SpeedTask:
    """One row: ``ours()`` and ``anchor()`` each fit a model; ``per`` divides the times (epochs)."""

    name: str
    threads: str
    ours: Callable[[], object]
    anchor_name: str = ""
    anchor: Callable[[], object] | None = None
    per: int = 1
    unit: str = "s"
    anchor_repeats: int | None = None  # None: as many as ours
    rerun: bool = True                 # measured again in the second pass
    target: float | None = None
    one_thread: bool = False           # both sides single-threaded: the CPU-time ratio is meaningful
    runs: dict = field(default_factory=dict)  # pass -> {"ours": [(wall, cpu)], "anchor": [...]}


def _optional(module: str):
    try:
        return __import__(module)
    except ImportError:
        return None


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def speed_tasks(ds, quick: bool = False) -> list[SpeedTask]:
    """The rows, in the order they are measured (libraries that are not installed give rows without anchor)."""
    import mflib

    n = cores()
    tasks = []
    implicit = _optional("implicit")
    matrix = synthetic_implicit(6040, 3706, 575_000, random_state=0)
    shape = f"{matrix.shape[0]:,} x {matrix.shape[1]:,}, {matrix.nnz:,} positives"
    for threads in sorted({1, n}):
        task = SpeedTask(f"ALS fit, ML-1M-sized synthetic ({shape}, power law), 64 f, 15 it",
                         f"{threads} / {threads}", target=TARGETS["als"], one_thread=threads == 1,
                         ours=lambda t=threads: mflib.ALS(factors=64, iterations=15, random_state=0,
                                                          num_threads=t).fit(matrix))
        if implicit:
            from implicit.cpu.als import AlternatingLeastSquares

            task.anchor_name = "implicit ALS (CG)"
            task.anchor = lambda t=threads: AlternatingLeastSquares(
                factors=64, iterations=15, random_state=0, num_threads=t).fit(matrix, show_progress=False)
        tasks.append(task)

    train, _ = evaluation.implicit_split(ds, 0)
    loop_iterations = 2 if quick else 15
    tasks.append(SpeedTask(f"ALS fit on ML-100K, {loop_iterations} it: the classic per-user `spsolve` loop",
                           "1 / 1", ours=lambda: mflib.ALS(factors=64, iterations=loop_iterations, random_state=0,
                                                           num_threads=1).fit(train),
                           anchor_name="per-user spsolve loop", anchor_repeats=1, rerun=False, one_thread=True,
                           anchor=lambda: naive_als_spsolve(train, factors=64, iterations=loop_iterations)))

    epochs = 5 if quick else 20
    svd_train, _ = evaluation.explicit_split(ds, 0)
    users, items, ratings = (svd_train[c].to_numpy() for c in ("user_idx", "item_idx", "rating"))
    task = SpeedTask(f"SVD epoch, ML-100K ({len(ratings):,} ratings), 100 factors", "1 / 1", per=epochs,
                     unit="ms", one_thread=True,
                     ours=lambda: mflib.SVD(factors=100, iterations=epochs, random_state=0).fit(
                         users, items, ratings, n_users=ds.n_users, n_items=ds.n_items))
    if _optional("surprise"):
        import surprise

        from _common import surprise_trainset

        trainset = surprise_trainset(svd_train)
        task.anchor_name = "Surprise SVD"
        task.anchor = lambda: surprise.SVD(n_factors=100, n_epochs=epochs, random_state=0).fit(trainset)
    tasks.append(task)

    positives = f"ML-100K positives ({train.nnz:,})"
    for threads in sorted({1, n}):
        task = SpeedTask(f"BPR epoch, {positives}, 64 factors", f"1 / {threads}", per=epochs, unit="ms",
                         target=TARGETS["bpr"] if threads == 1 else None, one_thread=threads == 1,
                         ours=lambda: mflib.BPR(factors=64, iterations=epochs, random_state=0).fit(train))
        if implicit:
            from implicit.cpu.bpr import BayesianPersonalizedRanking

            task.anchor_name = "implicit BPR"
            task.anchor = lambda t=threads: BayesianPersonalizedRanking(
                factors=64, iterations=epochs, random_state=0, num_threads=t).fit(train, show_progress=False)
        tasks.append(task)
    for threads in sorted({1, n}):
        task = SpeedTask(f"WARP epoch, {positives}, 64 factors", f"1 / {threads}", per=epochs, unit="ms",
                         target=TARGETS["warp"] if threads == 1 else None, one_thread=threads == 1,
                         ours=lambda: mflib.WARP(factors=64, iterations=epochs, random_state=0).fit(train))
        if _optional("lightfm"):
            from lightfm import LightFM

            coo = sp.coo_matrix(train)
            task.anchor_name = "LightFM WARP"
            task.anchor = lambda t=threads: LightFM(loss="warp", no_components=64, random_state=0).fit(
                coo, epochs=epochs, num_threads=t)
        tasks.append(task)
    return tasks


#: What the functions of a profile of mflib's ALS fit do (the rest is listed by name).
_ALS_FUNCTIONS = {"_weighted_sums": "batched products: sum_i w_ui y_i per row",
                  "_entry_dots": "batched products: y_i . p_u per entry",
                  "take": "gathers (fixed factors of a chunk's entries; rows)",
                  "work": "element-wise CG updates on (rows, k) arrays, per chunk",
                  "_add_row_scaled": "score tracking (s += a y_i . p)",
                  "__init__": "set-up: the two SolverPlans",
                  "_matching_slots": "set-up: the same cell in both plans",
                  "_plan_loss": "loss of every iteration",
                  "c_einsum": "row dot products (einsum)",
                  "_gram": "Y^T Y (float64)"}


def als_profile(top: int = 8) -> str:
    """Where mflib's ALS fit spends its time: cProfile of one fit at ML-1M size on one thread (the profiler
    sees one thread only), functions by own time, as a markdown table."""
    import cProfile
    import pstats

    import mflib

    matrix = synthetic_implicit(6040, 3706, 575_000, random_state=0)
    profile = cProfile.Profile()
    profile.enable()
    mflib.ALS(factors=64, iterations=15, random_state=0, num_threads=1).fit(matrix)
    profile.disable()
    stats = pstats.Stats(profile).stats
    total = sum(own for _, _, own, _, _ in stats.values())
    rows = sorted(((name, own, calls) for (_, _, name), (calls, _, own, _, _) in stats.items()), key=lambda r: -r[1])
    lines = [f"Where mflib's ALS fit spends its time (cProfile, ML-1M size, 64 factors, 15 iterations, one thread; "
             f"{total:.2f} s under the profiler):", "", "| function | what it does | own s | share | calls |",
             "|---|---|---:|---:|---:|"]
    for name, own, calls in rows[:top]:
        lines.append(f"| `{name}` | {_ALS_FUNCTIONS.get(name, '')} | {own:.2f} | {100 * own / total:.0f} % | {calls} |")
    return "\n".join(lines)


def _run(function) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - start, time.process_time() - cpu


def measure(tasks: list[SpeedTask], repeats: int = 3, passes: int = 2, log=print) -> list[SpeedTask]:
    """Time every task ``repeats`` times per side, interleaved, in ``passes`` passes over all tasks."""
    for number in range(passes):
        for task in tasks:
            if number and not task.rerun:
                continue
            runs = task.runs.setdefault(number, {"ours": [], "anchor": []})
            anchor_repeats = repeats if task.anchor_repeats is None else task.anchor_repeats
            for repeat in range(repeats):
                runs["ours"].append(_run(task.ours))
                if task.anchor is not None and repeat < anchor_repeats:
                    runs["anchor"].append(_run(task.anchor))
            log(f"  pass {number + 1}: {task.name} [{task.threads}]: "
                + ", ".join(f"{side} {min(w for w, _ in times) / task.per:.3f}"
                            for side, times in runs.items() if times), flush=True)
    return tasks


def _best(runs, side: str, index: int) -> float | None:
    times = runs.get(side) or []
    return min(t[index] for t in times) if times else None


def summarise(tasks: list[SpeedTask]) -> tuple[list[dict], dict]:
    """Table rows (one per task) and the noise figures: ``ratio_change`` (per rerun row, relative change of
    the ratio between the passes) and ``spread`` (per side and pass, (slowest - fastest) / fastest repeat)."""
    rows, changes, spreads = [], [], []
    for task in tasks:
        first = task.runs[0]
        scale = 1e3 if task.unit == "ms" else 1.0
        ours, anchor = _best(first, "ours", 0), _best(first, "anchor", 0)
        row = {"task": task.name, "threads": task.threads, "unit": task.unit,
               "mflib": ours / task.per * scale, "anchor": task.anchor_name or "not installed"}
        if anchor is not None:
            row["anchor_time"] = anchor / task.per * scale
            row["ratio"] = ours / anchor
            if task.one_thread:
                row["cpu_ratio"] = _best(first, "ours", 1) / _best(first, "anchor", 1)
            if 1 in task.runs:
                second = task.runs[1]
                row["ratio_rerun"] = _best(second, "ours", 0) / _best(second, "anchor", 0)
                changes.append(abs(row["ratio_rerun"] / row["ratio"] - 1))
            if task.target is not None:
                row["target"] = task.target
                ratios = [row["ratio"], row.get("ratio_rerun", row["ratio"])]
                row["met"] = "yes" if max(ratios) <= task.target else "no"
        for runs in task.runs.values():
            for side in ("ours", "anchor"):
                walls = [w for w, _ in runs[side]]
                if len(walls) > 1:
                    spreads.append(max(walls) / min(walls) - 1)
        rows.append(row)
    noise = {"ratio_change_max": max(changes, default=float("nan")),
             "ratio_change_median": float(np.median(changes)) if changes else float("nan"),
             "spread_median": float(np.median(spreads)) if spreads else float("nan"),
             "spread_max": max(spreads, default=float("nan"))}
    return rows, noise
