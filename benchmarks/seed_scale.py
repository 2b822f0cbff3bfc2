"""Seed-scale speed: the reference models on synthetic data the size of ml-latest and ML-20M.

    .venv/bin/python benchmarks/seed_scale.py                          # every section
    .venv/bin/python benchmarks/seed_scale.py --only fm --markdown seed_scale.md
    .venv/bin/python benchmarks/seed_scale.py --only fm --sizes ml-20m --batch-size 16384

Prints the machine (CPU model, cores, load average), Python / numpy / scipy versions and the BLAS library
with its thread counts (``threadpoolctl``), then one table per section:

* ``fm``: one epoch of :class:`mflib.FactorizationMachine` (user + item one-hot, k = 120, lazy Adam, float32,
  all cores) next to the seed's figure (an FM with k = 120 on ml-latest: 590 s per epoch on a GPU), with the
  peak memory of the process that trained it.
* ``als``: :class:`mflib.ALS` fit (64 factors, 15 iterations, CG, all cores) on an ML-20M-sized synthetic
  matrix of positives (138,493 x 26,744, 10M positives, power-law popularity: ``benchmarks/synthetic.py``),
  interleaved with implicit's ``AlternatingLeastSquares`` (CG, all cores) in the same child, best of 3 each.

Add a section by writing a function ``section_<name>(args) -> str`` (it returns its markdown and measures
in a child process, see :func:`run_child`) and listing it in :data:`SECTIONS`.

The data are synthetic, built in seconds by :func:`synthetic_ratings`: the numbers of users, items and
ratings of the real set, user activity and item popularity with long tails (Zipf-Mandelbrot laws), rows
grouped by user as in the GroupLens ``ratings.csv`` files. Every measurement runs in a fresh child process
(``--child``), so its peak memory (``ru_maxrss``) is its own; the child runs with ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` unset (they slow a current numpy on some virtual machines) and reports which BLAS
kernel it loaded. Timings on a shared machine are noisy: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

REPO = Path(__file__).resolve().parent.parent

#: (users, items, ratings) of the real data sets.
SIZES = {"ml-latest": (283_228, 53_889, 27_753_444), "ml-20m": (138_493, 26_744, 20_000_263)}
#: The seed project's figure this benchmark answers.
SEED_FM_FIGURE = "590 s per epoch on a GPU (k = 120, ml-latest)"
#: Zipf-Mandelbrot laws ``weight(rank) ~ (rank + q)^-a`` (rank from 1): users (a, q), items (a, q).
USER_LAW, ITEM_LAW = (0.9, 100.0), (2.1, 300.0)
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ---- data -----------------------------------------------------------------------------------------------
def _zipf_mandelbrot_ranks(rng, n: int, size: int, exponent: float, shift: float) -> np.ndarray:
    """``size`` ranks in ``[0, n)`` with ``P(rank = r) ~ (r + 1 + shift)^-exponent``, by inverting the CDF
    of the continuous law on ``[0, n)`` (vectorised float32: ``x^p`` as ``exp(p log x)``; exponent != 1)."""
    low, high = (1 + shift) ** (1 - exponent), (n + 1 + shift) ** (1 - exponent)
    base = rng.random(size, dtype=np.float32)
    base *= np.float32(high - low)
    base += np.float32(low)
    np.log(base, out=base)
    base *= np.float32(1 / (1 - exponent))
    np.exp(base, out=base)
    return np.clip(base - np.float32(1 + shift), 0, n - 1).astype(np.int32)


def synthetic_ratings(n_users: int, n_items: int, n_ratings: int, random_state=0):
    """``(users, items, ratings)``: int32, int32, float32 arrays of ``n_ratings`` synthetic ratings.

    User activity and item popularity follow Zipf-Mandelbrot laws (:data:`USER_LAW`, :data:`ITEM_LAW`, ranks
    shuffled over the ids); users' counts are one multinomial draw, and the rows are grouped by user (as in
    ``ratings.csv``). Ratings are half stars in [0.5, 5] from ``3.5 + user bias + item bias + noise``.
    A (user, item) pair may repeat (it does not matter for timing).
    """
    rng = np.random.default_rng(random_state)
    user_weight = (np.arange(1, n_users + 1) + USER_LAW[1]) ** -USER_LAW[0]
    counts = rng.multinomial(n_ratings, user_weight / user_weight.sum())
    users = np.repeat(rng.permutation(n_users).astype(np.int32), counts)
    items = rng.permutation(n_items).astype(np.int32)[_zipf_mandelbrot_ranks(rng, n_items, n_ratings, *ITEM_LAW)]
    ratings = rng.standard_normal(n_ratings, dtype=np.float32)
    ratings *= np.float32(0.9)
    ratings += np.float32(3.5)
    ratings += rng.normal(0.0, 0.4, n_users).astype(np.float32)[users]
    ratings += rng.normal(0.0, 0.4, n_items).astype(np.float32)[items]
    ratings *= 2
    np.round(ratings, out=ratings)
    ratings /= 2
    np.clip(ratings, 0.5, 5.0, out=ratings)
    return users, items, ratings


def one_hot_rows(users, items, n_users: int, n_items: int) -> sp.csr_matrix:
    """The FM feature rows ``[user one-hot | item one-hot]`` (CSR float32, two stored values per row)."""
    n = len(users)
    indices = np.empty(2 * n, dtype=np.int32)
    indices[0::2], indices[1::2] = users, n_users + items
    indptr = np.arange(0, 2 * n + 1, 2, dtype=np.int64 if 2 * n >= 2 ** 31 else np.int32)
    return sp.csr_matrix((np.ones(2 * n, np.float32), indices, indptr), shape=(n, n_users + n_items))


# ---- machine ------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> list[dict]:
    """threadpoolctl's view of the loaded BLAS / OpenMP libraries: library, kernel, version, threads."""
    from threadpoolctl import threadpool_info

    return [{key: pool.get(key) for key in ("user_api", "internal_api", "architecture", "version", "num_threads",
                                           "threading_layer")} for pool in threadpool_info()]


def machine_markdown(blas: list[dict]) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [f"- CPU: {_cpu_model()}, {cores} cores available (os.cpu_count() = {os.cpu_count()})",
             f"- load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
             f"- Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}",
             f"- environment of the measuring processes: {', '.join(BLAS_ENV)} unset"]
    for pool in blas:
        lines.append(f"- {pool['user_api']}: {pool['internal_api']} {pool['version']}, kernel "
                     f"{pool['architecture']}, {pool['num_threads']} threads ({pool['threading_layer']})")
    return "\n".join(lines)


# ---- measuring in a child process ---------------------------------------------------------------------------
def run_child(section: str, **arguments) -> dict:
    """Run ``measure_<section>(**arguments)`` in a fresh interpreter (BLAS variables unset) and return the
    dict it prints as JSON. A failing child raises ``RuntimeError`` with its stderr."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", section, json.dumps(arguments)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{section} measurement {arguments} failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure_blas() -> dict:
    """The BLAS libraries a measuring process loads (numpy imported)."""
    return {"blas": blas_info()}


def _top_functions(profile, n: int) -> list[list]:
    """The ``n`` functions with the most own time in a ``cProfile.Profile``: ``[name, seconds, calls]``."""
    import pstats

    stats = pstats.Stats(profile).stats
    rows = sorted(((f"{Path(file).name}:{line}({name})" if line else name, tottime, calls)
                   for (file, line, name), (calls, _, tottime, _, _) in stats.items()), key=lambda r: -r[1])
    return [list(row) for row in rows[:n]]


def measure_fm(size: str, factors: int, batch_size: int, num_threads: int, random_state: int = 0,
               profile: int = 0, repeats: int = 1) -> dict:
    """Generate ``size`` (a key of :data:`SIZES`), fit one FM epoch ``repeats`` times (a fresh model each
    time, same data); wall and CPU seconds of every fit, peak memory, BLAS info. With ``profile`` > 0 the
    fits run under cProfile (slower; only the main thread is seen, so use one thread) and the result lists
    the ``profile`` functions with the most own CPU time."""
    from mflib.models.fm import FactorizationMachine

    n_users, n_items, n_ratings = SIZES[size]
    start = time.perf_counter()
    users, items, ratings = synthetic_ratings(n_users, n_items, n_ratings, random_state)
    X = one_hot_rows(users, items, n_users, n_items)
    del users, items
    generate_s = time.perf_counter() - start
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU seconds: robust to other load on the machine
    tracemalloc.start()
    fits = []
    for _ in range(repeats):
        model = FactorizationMachine(factors=factors, iterations=1, batch_size=batch_size,
                                     num_threads=num_threads, random_state=random_state)
        load_before = os.getloadavg()[0]
        if profiler is not None:
            profiler.enable()
        start, cpu_start = time.perf_counter(), time.process_time()
        model.fit(X, ratings)
        fits.append({"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu_start,
                     "load_before": load_before, "load_after": os.getloadavg()[0]})
        if profiler is not None:
            profiler.disable()
        del model
    traced_peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    best = min(fits, key=lambda fit: fit["wall_s"])
    return {"size": size, "users": n_users, "items": n_items, "ratings": n_ratings, "generate_s": generate_s,
            "fits": fits, "epoch_s": best["wall_s"], "cpu_s": best["cpu_s"], "load_1min": best["load_before"],
            "load_after": best["load_after"], "peak_rss_mib": _peak_rss_mib(), "fit_traced_peak_mib": traced_peak,
            "threads": num_threads, "blas": blas_info(),
            "profile": _top_functions(profiler, profile) if profiler is not None else []}


# ---- sections ---------------------------------------------------------------------------------------------------
def section_fm(args) -> str:
    rows = [run_child("fm", size=size, factors=args.factors, batch_size=args.batch_size,
                      num_threads=args.num_threads, repeats=args.fm_repeats) for size in args.sizes]
    lines = [f"### Factorization machine, one epoch (user + item one-hot, k = {args.factors}, lazy Adam, "
             f"batch {args.batch_size}, float32, num_threads = {args.num_threads or 'all cores'})", "",
             f"| data (synthetic, real sizes) | users | items | ratings | epoch (wall, best of {args.fm_repeats}) "
             "| its CPU time | all epochs (wall) | peak RSS | numpy peak in fit | load avg (before, after) "
             "| seed's figure |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for row in rows:
        seed = SEED_FM_FIGURE if row["size"] == "ml-latest" else ""
        walls = ", ".join(f"{fit['wall_s']:.0f}" for fit in row["fits"])
        lines.append(f"| {row['size']} | {row['users']:,} | {row['items']:,} | {row['ratings']:,} | "
                     f"**{row['epoch_s']:.1f} s** | {row['cpu_s']:.1f} s | {walls} s | "
                     f"{row['peak_rss_mib'] / 1024:.2f} GiB | {row['fit_traced_peak_mib'] / 1024:.2f} GiB | "
                     f"{row['load_1min']:.2f}, {row['load_after']:.2f} | {seed} |")
    lines += ["", "Epoch = wall time of `FactorizationMachine(iterations=1).fit(X, y)` (initialisation "
              "included); CPU time = the process's CPU seconds during that fit, all threads (on a busy machine "
              "the wall time is the larger: compare it with the load average); peak RSS = the measuring "
              "process's maximum resident memory (data included: the feature rows take 12 bytes per stored "
              "value); numpy peak in fit = tracemalloc's peak during `fit`. Data generated in "
              + ", ".join(f"{row['generate_s']:.1f} s ({row['size']})" for row in rows) + "."]
    if args.profile:
        row = run_child("fm", size=args.sizes[0], factors=args.factors, batch_size=args.batch_size,
                        num_threads=1, profile=args.profile)
        lines += ["", f"Where the time goes: cProfile (CPU time) of one epoch on {row['size']}, one thread "
                  f"({row['cpu_s']:.1f} CPU s, {row['epoch_s']:.1f} s wall under the profiler, load average "
                  f"{row['load_1min']:.2f}), functions by own CPU time:", "", "| function | own CPU s | calls |",
                  "|---|---:|---:|"]
        lines += [f"| `{name}` | {seconds:.2f} | {calls} |" for name, seconds, calls in row["profile"]]
    return "\n".join(lines)


# ---- ALS at ML-20M size, next to implicit (helper H11) ------------------------------------------------------
#: (users, items, positives) of the ALS matrix: ML-20M's users and films, ~ its ratings >= 4.
ALS_SIZES = {"ml-20m": (138_493, 26_744, 10_000_000)}


def measure_als(size: str, factors: int, iterations: int, repeats: int, num_threads: int,
                random_state: int = 0) -> dict:
    """Generate the ``size`` matrix of positives, then fit mflib's ALS and implicit's ALS ``repeats`` times
    each, interleaved; wall and CPU seconds of every fit, peak memory, BLAS info."""
    from implicit.cpu.als import AlternatingLeastSquares
    from synthetic import synthetic_implicit
    from threadpoolctl import threadpool_limits

    from mflib.models.als import ALS

    n_users, n_items, nnz = ALS_SIZES[size]
    start = time.perf_counter()
    matrix = synthetic_implicit(n_users, n_items, nnz, random_state=random_state)
    generate_s = time.perf_counter() - start
    threadpool_limits(1, "blas")  # implicit's OpenMP threads call BLAS; numpy's calls are small per chunk
    load_before = os.getloadavg()[0]
    fits = {"mflib": [], "implicit": []}
    for _ in range(repeats):
        for name, fit in (("mflib", lambda: ALS(factors=factors, iterations=iterations, random_state=random_state,
                                                 num_threads=num_threads).fit(matrix)),
                          ("implicit", lambda: AlternatingLeastSquares(
                              factors=factors, iterations=iterations, random_state=random_state,
                              num_threads=num_threads).fit(matrix, show_progress=False))):
            start, cpu_start = time.perf_counter(), time.process_time()
            fit()
            fits[name].append((time.perf_counter() - start, time.process_time() - cpu_start))
    return {"size": size, "users": n_users, "items": n_items, "positives": matrix.nnz, "generate_s": generate_s,
            "fits": fits, "peak_rss_mib": _peak_rss_mib(), "load_1min": load_before,
            "load_after": os.getloadavg()[0], "threads": num_threads or os.cpu_count(), "blas": blas_info()}


def section_als(args) -> str:
    row = run_child("als", size="ml-20m", factors=64, iterations=args.als_iterations, repeats=args.als_repeats,
                    num_threads=args.num_threads)
    best = {name: min(fits, key=lambda f: f[0]) for name, fits in row["fits"].items()}
    lines = [f"### ALS fit at ML-20M size (64 factors, {args.als_iterations} iterations, CG with 3 steps, "
             f"{row['threads']} threads each)", "",
             "| library | users | items | positives | fit (wall, best of "
             f"{args.als_repeats}) | all fits (wall) | CPU time of the best | ratio mflib / implicit |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for name in ("mflib", "implicit"):
        walls = ", ".join(f"{wall:.1f}" for wall, _ in row["fits"][name])
        ratio = f"**{best['mflib'][0] / best['implicit'][0]:.2f}**" if name == "mflib" else ""
        lines.append(f"| {name} ALS | {row['users']:,} | {row['items']:,} | {row['positives']:,} | "
                     f"**{best[name][0]:.1f} s** | {walls} s | {best[name][1]:.1f} s | {ratio} |")
    lines += ["", "Synthetic 0/1 matrix (`benchmarks/synthetic.py`: power-law item popularity, log-normal user "
              f"activity), generated in {row['generate_s']:.0f} s; mflib's and implicit's fits interleaved in one "
              f"child process (peak RSS {row['peak_rss_mib'] / 1024:.2f} GiB, both libraries); load average "
              f"{row['load_1min']:.2f} before, {row['load_after']:.2f} after. implicit computes no training loss "
              "by default; mflib records the loss of every iteration (`loss_history_`), which is included."]
    return "\n".join(lines)


#: ``--only`` choices, in the order they run.
SECTIONS = {"fm": section_fm, "als": section_als}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append",
                        help="run only this section (repeatable); default: all")
    parser.add_argument("--markdown", metavar="OUT", type=Path, help="also write the report to this file")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["ml-latest", "ml-20m"])
    parser.add_argument("--factors", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=65536)
    parser.add_argument("--num-threads", type=int, default=0, help="0: all cores")
    parser.add_argument("--als-iterations", type=int, default=15, help="als: ALS iterations per fit")
    parser.add_argument("--als-repeats", type=int, default=3, help="als: fits per library (best counts)")
    parser.add_argument("--fm-repeats", type=int, default=1, help="fm: epochs timed per size (best counts)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile one single-thread epoch (first size) and list the top N functions")
    parser.add_argument("--child", nargs=2, metavar=("SECTION", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        measure = globals()[f"measure_{args.child[0]}"]
        print(json.dumps(measure(**json.loads(args.child[1]))))
        return 0
    parts = ["## Seed-scale speed", "", machine_markdown(run_child("blas")["blas"])]
    print("\n".join(parts), flush=True)
    for name in args.only or list(SECTIONS):
        text = SECTIONS[name](args)
        print("\n" + text, flush=True)
        parts += ["", text]
    if args.markdown:
        args.markdown.write_text("\n".join(parts) + "\n")
        print(f"\n(written to {args.markdown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
