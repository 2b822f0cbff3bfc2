"""Side-by-side benchmark: mflib's models against implicit, LightFM, Surprise and myFM, in one run.

    make bench                                    # installs the comparison libraries, then runs this with --write
    python benchmarks/bench.py [--write] [--only implicit explicit speed seed-scale beyond] [--quick]

(from the repository root; ``make bench`` runs it with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset and
``OPENBLAS_NUM_THREADS=1``). One run measures everything and, with ``--write``, writes **docs/benchmarks.md**
(every table, with the machine, the BLAS kernel and thread counts above them) and rewrites the README's
tables between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` from the same numbers. Nothing measured
is ever copied by hand.

Sections:

* ``implicit`` / ``explicit``: quality on ML-100K, the course protocol (:mod:`mflib.evaluation`), means over
  split seeds. Implicit models: NDCG@10, P@10, R@10, genre Jaccard@10 of similar items, the known pairs,
  fit time; explicit models: RMSE, fit time.
* ``speed``: mflib against its anchors, interleaved best-of-3 in this process, every row measured twice
  (:mod:`speed`): the ratios of the two passes give the run-to-run noise stated in the report.
* ``seed-scale``: ``benchmarks/seed_scale.py`` (FM epoch at ml-latest size, ALS fit at ML-20M size next to
  implicit), each in a child process.
* ``beyond``: notebook 07's tables from ``benchmarks/beyond.py``.

BLAS is pinned to one thread in this process (threadpoolctl; implicit and LightFM use their own threads).
Libraries that are not installed are reported as missing, not silently skipped.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from _common import (machine_lines, markdown_table, print_table, score_explicit, score_features, score_implicit,
                     surprise_trainset)
from mflib import evaluation
from mflib.datasets import load_movielens
from mflib.metrics import rmse

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "docs" / "benchmarks.md"
README = REPO / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
#: Figures quoted from the issue and the seed projects (not measured here), printed as such.
QUOTED = ("The issue's anchors from the seed projects' grid searches (quoted, not measured here): LightFM BPR "
          "NDCG@10 0.243, myFM RMSE 0.899, Surprise SVD after a grid 0.920.")


# ---- adapters: every library behind the same two calls ---------------------------------------------
class ImplicitAdapter:
    """implicit's models with our conventions: similar_items without the query item."""

    def __init__(self, model):
        self.model = model

    def fit(self, train):
        self.model.fit(train, show_progress=False)
        return self

    def recommend(self, userid, user_items, N=10, filter_already_liked_items=True):
        return self.model.recommend(userid, user_items, N=N, filter_already_liked_items=filter_already_liked_items)

    def similar_items(self, itemid, N=10):
        ids, scores = self.model.similar_items(itemid, N=N + 1)
        ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
        query = np.atleast_1d(itemid)[:, None]
        order = np.argsort(ids == query, axis=1, kind="stable")[:, :N]
        ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
        return (ids[0], scores[0]) if np.ndim(itemid) == 0 else (ids, scores)


class LightFMAdapter:
    """LightFM's WARP/BPR scored like a factor model: p_u . q_i + b_i (its user bias is constant per user)."""

    def __init__(self, loss, components=64, learning_rate=0.02, epochs=60, random_state=0):
        from lightfm import LightFM

        self.model = LightFM(loss=loss, no_components=components, learning_rate=learning_rate,
                             random_state=random_state)
        self.epochs = epochs

    def fit(self, train):
        self.model.fit(sp.coo_matrix(train), epochs=self.epochs, num_threads=1)
        self._vectors()
        return self

    def _vectors(self):
        from mflib.models.base import FactorModel

        item_bias, item_factors = self.model.get_item_representations()
        user_bias, user_factors = self.model.get_user_representations()
        self.factor_model = FactorModel()
        self.factor_model.user_factors = user_factors.astype(np.float32)
        self.factor_model.item_factors = item_factors.astype(np.float32)
        self.factor_model.item_bias = item_bias.astype(np.float32)

    def recommend(self, *args, **kwargs):
        return self.factor_model.recommend(*args, **kwargs)

    def similar_items(self, *args, **kwargs):
        return self.factor_model.similar_items(*args, **kwargs)


class RandomVectors:
    """The chance level of the similar-items column: 64 Gaussian factors per item, nothing learned."""

    def __init__(self, seed):
        self.seed = seed

    def fit(self, train):
        from mflib.models.base import FactorModel

        rng = np.random.default_rng(self.seed)
        self.model = FactorModel()
        self.model.item_factors = rng.standard_normal((train.shape[1], 64)).astype(np.float32)
        self.model.user_factors = np.zeros((train.shape[0], 64), np.float32)
        return self

    def similar_items(self, *args, **kwargs):
        return self.model.similar_items(*args, **kwargs)


def _optional(module: str):
    try:
        return __import__(module)
    except ImportError:
        return None


def _missing(name: str, module: str) -> str:
    return f"{name}: not installed (`make bench` installs {module})"


# ---- quality on ML-100K ------------------------------------------------------------------------------
def implicit_candidates(quick: bool):
    """name -> factory of a fresh model; the anchors use the grids quoted in the issue."""
    import mflib

    candidates = {
        "mflib ALS": lambda seed: mflib.ALS(random_state=seed),
        "mflib BPR": lambda seed: mflib.BPR(random_state=seed),
        "mflib WARP": lambda seed: mflib.WARP(random_state=seed),
        "popularity": lambda seed: mflib.Popularity(),
        "random vectors (similar items only)": lambda seed: RandomVectors(seed),
    }
    if _optional("implicit"):
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        candidates["implicit ALS (64, reg 20, alpha 2)"] = lambda seed: ImplicitAdapter(
            AlternatingLeastSquares(factors=64, regularization=20.0, alpha=2.0, iterations=15, random_state=seed))
        candidates["implicit BPR (defaults)"] = lambda seed: ImplicitAdapter(
            BayesianPersonalizedRanking(factors=64, random_state=seed))
    if _optional("lightfm"):
        epochs = 20 if quick else 60
        candidates[f"LightFM WARP (64, lr .02, {epochs} ep)"] = lambda seed: LightFMAdapter(
            "warp", epochs=epochs, random_state=seed)
        candidates[f"LightFM BPR (64, lr .02, {epochs} ep)"] = lambda seed: LightFMAdapter(
            "bpr", epochs=epochs, random_state=seed)
    return candidates


def quality_implicit(ds, seeds, quick: bool) -> list[dict]:
    rows = defaultdict(lambda: defaultdict(list))
    for seed in seeds:
        train, test = evaluation.implicit_split(ds, seed)
        for name, make in implicit_candidates(quick).items():
            if name.startswith("random vectors"):
                rows[name]["genre J"].append(evaluation.evaluate_similar_items(make(seed).fit(train), ds, train))
                continue
            result = score_implicit(lambda: make(seed), ds, train, test,  # noqa: B023
                                    similar=name != "popularity")
            for key in ("ndcg@10", "precision@10", "recall@10", "fit s", "genre J", "pairs"):
                if key in result:
                    rows[name][key].append(result[key])
    return [{"model": name, **{k: float(np.mean(v)) for k, v in row.items()}} for name, row in rows.items()]


def quality_explicit(ds, seeds, quick: bool, svdpp: bool) -> list[dict]:
    import mflib

    rows = defaultdict(lambda: defaultdict(list))
    surprise = _optional("surprise")
    myfm = _optional("myfm")
    for seed in seeds:
        train, test = evaluation.explicit_split(ds, seed)

        def record(name, predictions, seconds):
            rows[name]["rmse"].append(rmse(test["rating"], predictions))
            rows[name]["fit s"].append(seconds)

        def record_score(name, score, make):
            result = score(make, ds, train, test)
            rows[name]["rmse"].append(result["rmse"])
            rows[name]["fit s"].append(result["fit s"])

        record_score("mflib SVD", score_explicit, lambda: mflib.SVD(random_state=seed))  # noqa: B023
        record_score("mflib explicit ALS", score_explicit, lambda: mflib.ExplicitALS(random_state=seed))  # noqa: B023
        record_score("mflib FM + side features", score_features,
                     lambda: mflib.FactorizationMachine(random_state=seed))  # noqa: B023
        if surprise:
            for name, params in {"Surprise SVD (defaults)": {},
                                 "Surprise SVD (200 f, 100 ep, lr .005, reg .1)": dict(
                                     n_factors=200, n_epochs=30 if quick else 100, lr_all=0.005, reg_all=0.1)}.items():
                start = time.perf_counter()
                algo = surprise.SVD(random_state=seed, **params).fit(surprise_trainset(train))
                record(name, _surprise_predict(algo, test), time.perf_counter() - start)
            if svdpp and not quick:
                start = time.perf_counter()
                algo = surprise.SVDpp(random_state=seed).fit(surprise_trainset(train))
                record("Surprise SVD++ (defaults)", _surprise_predict(algo, test), time.perf_counter() - start)
        if myfm:
            start = time.perf_counter()
            predictions = _myfm_predict(myfm, ds, train, test, seed, n_iter=100 if quick else 300)
            record("myFM Bayesian FM (rank 10, side features)", predictions, time.perf_counter() - start)
    return [{"model": name, **{k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in row.items()}}
            for name, row in rows.items()]


def _surprise_predict(algo, test):
    return np.array([algo.predict(u, i).est for u, i in zip(test["user_idx"], test["item_idx"])])


def _myfm_predict(myfm, ds, train, test, seed, n_iter):
    """myFM's Gibbs-sampled FM on one-hot user/item + demographics + genres (its documented usage)."""
    users = ds.users.assign(age_bucket=(ds.users["age"] // 10))
    columns = {"user": np.arange(ds.n_users), "gender": users["gender"], "occupation": users["occupation"],
               "age": users["age_bucket"]}

    def one_hot(df):
        blocks = [sp.csr_matrix((np.ones(len(df)), (np.arange(len(df)), df["item_idx"].to_numpy())),
                                shape=(len(df), ds.n_items))]
        for values in columns.values():
            categorical = pd.Categorical(np.asarray(values))
            codes = categorical.codes[df["user_idx"].to_numpy()]
            blocks.append(sp.csr_matrix((np.ones(len(df)), (np.arange(len(df)), codes)),
                                        shape=(len(df), len(categorical.categories))))
        return sp.hstack(blocks).tocsr()

    X_train, X_test = one_hot(train), one_hot(test)
    genres = ds.genre_matrix()
    X_train = sp.hstack([X_train, genres[train["item_idx"].to_numpy()]]).tocsr()
    X_test = sp.hstack([X_test, genres[test["item_idx"].to_numpy()]]).tocsr()
    model = myfm.MyFMRegressor(rank=10, random_seed=seed)
    model.fit(X_train, train["rating"].to_numpy(), n_iter=n_iter, n_kept_samples=n_iter - 5)
    return np.clip(model.predict(X_test), 1, 5)


# ---- the report -------------------------------------------------------------------------------------
IMPLICIT_COLUMNS = [("ndcg@10", "NDCG@10", ".3f"), ("precision@10", "P@10", ".3f"), ("recall@10", "R@10", ".3f"),
                    ("genre J", "genre J@10", ".3f"), ("pairs", "pairs/2", ".1f"), ("fit s", "fit s", ".2f")]
EXPLICIT_COLUMNS = [("rmse", "RMSE", ".4f"), ("fit s", "fit s", ".2f")]


def speed_markdown(rows: list[dict], noise: dict, repeats: int) -> str:
    """The speed table (times in each row's unit) and the sentence on noise."""
    def ratio(value):
        return "" if value is None else (f"{value:.2f}" if value >= 0.1 else f"{value:.2g}")

    cells = []
    for row in rows:
        unit = row["unit"]
        cells.append({**row, "mflib": f"{row['mflib']:.3g} {unit}",
                      "anchor": row["anchor"] + (f" {row['anchor_time']:.3g} {unit}" if "anchor_time" in row else ""),
                      "target": f"<= {row['target']:g}" if "target" in row else "",
                      **{key: ratio(row.get(key)) for key in ("ratio", "ratio_rerun", "cpu_ratio")}})
    table = markdown_table(cells, [("threads", "threads (mflib / anchor)", ""), ("mflib", "mflib", ""),
                                   ("anchor", "anchor", ""), ("ratio", "ratio", ""),
                                   ("ratio_rerun", "ratio, 2nd pass", ""), ("cpu_ratio", "CPU-time ratio", ""),
                                   ("target", "target", ""), ("met", "met", "")], name_header="task")
    spread = (f"the repeats of one side within a pass spread by {100 * noise['spread_median']:.0f} % (median, "
              f"slowest over fastest) and at most {100 * noise['spread_max']:.0f} %" if repeats > 1 else
              "one repeat per side, so no spread within a pass")
    note = (f"Best of {repeats} runs per side, interleaved; ratio = mflib / anchor (lower is better), from the "
            "first pass; every row except the `spsolve` loop was measured again in a second pass. **Noise**: "
            f"between the two passes the ratios moved by {100 * noise['ratio_change_median']:.0f} % (median) and "
            f"at most {100 * noise['ratio_change_max']:.0f} %; {spread}. CPU-time ratio: the same ratio in CPU "
            "seconds, shown where both sides run one thread (it moves least when other processes share the "
            "machine). `met` checks both passes against the issue's target. mflib's BPR and WARP are single-threaded numpy; the rows with "
            "the anchor on all cores are for information.")
    return table + "\n\n" + note


def _git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def replace_between_markers(text: str, block: str, where: str) -> str:
    """``text`` with everything between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{where} needs exactly one '{BEGIN}' line followed by one '{END}' line: the "
                         "benchmark rewrites the tables between them")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block.strip()}\n{END}{tail}"


def _sections(report: str, level: str) -> dict[str, str]:
    """``{heading: body}`` of the ``level`` ("## " or "### ") sections of a markdown text."""
    out, heading, lines = {}, None, []
    for line in report.splitlines():
        if line.startswith(level):
            if heading is not None:
                out[heading] = "\n".join(lines).strip()
            heading, lines = line[len(level):].strip(), []
        elif heading is not None:
            depth = len(line) - len(line.lstrip("#"))
            if line.startswith("#") and line[depth:depth + 1] == " " and depth < len(level.strip()):  # a higher level
                out[heading] = "\n".join(lines).strip()
                heading, lines = None, []
                continue
            lines.append(line)
    if heading is not None:
        out[heading] = "\n".join(lines).strip()
    return out


def readme_block(report: str) -> str:
    """The README's tables, cut from one ``docs/benchmarks.md`` report (never typed): the quality tables, the speed
    table with its noise note, the seed-scale tables and notebook 07's tables, with where and when they ran."""
    when = re.search(r"on (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", report)
    cpu = re.search(r"^- CPU: (.*)$", report, re.M)
    load_start = re.search(r"^- load average \(1, 5, 15 min\) at start: (.*)$", report, re.M)
    load_end = re.search(r"^- load average at the end: (.*)$", report, re.M)
    if not (when and cpu and load_start and load_end):
        raise ValueError("docs/benchmarks.md lacks its date, CPU or load lines: regenerate it with `make bench`")
    top = _sections(report, "## ")
    wanted = {key: next((body for heading, body in top.items() if heading.startswith(prefix)), None)
              for key, prefix in (("implicit", "Implicit feedback"), ("explicit", "Explicit ratings"),
                                  ("speed", "Speed against"), ("seed-scale", "Seed-scale speed"),
                                  ("beyond", "Notebook 07"))}
    absent = [key for key, body in wanted.items() if body is None]
    if absent:
        raise ValueError(f"docs/benchmarks.md lacks the section(s) {absent}: regenerate it with `make bench`")
    machine = top.get("Machine", "")
    block = [f"*Generated by `make bench` on {when[1]} (CPU: {cpu[1]}; load average {load_start[1]} at the start, "
             f"{load_end[1]} at the end). The profile of ALS and the notes under each table: "
             "[docs/benchmarks.md](docs/benchmarks.md).* The machine, libraries, BLAS kernels and threads of that "
             "run:", "", machine, "",
             wanted["implicit"], "", wanted["explicit"], "", wanted["speed"].split("\n\nWhere mflib's ALS")[0]]
    for key in ("seed-scale", "beyond"):
        for heading, body in _sections(wanted[key], "### ").items():
            table = "\n".join(line for line in body.splitlines() if line.startswith("|"))
            block += ["", f"**{heading}**", "", table]
    return "\n".join(block)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sections = ["implicit", "explicit", "speed", "seed-scale", "beyond"]
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="fewer epochs for the anchors, one repeat, quick "
                        "07-beyond tables (for trying the script, not for the report)")
    parser.add_argument("--no-svdpp", action="store_true", help="skip Surprise SVD++ (minutes)")
    parser.add_argument("--only", choices=sections, nargs="+", default=sections)
    parser.add_argument("--repeats", type=int, default=3, help="speed: best of this many runs per side")
    parser.add_argument("--write", action="store_true",
                        help="write docs/benchmarks.md and the README tables (needs every section)")
    parser.add_argument("--markdown", metavar="OUT", type=Path, help="write the report to OUT instead")
    parser.add_argument("--readme-from-report", action="store_true",
                        help="only rewrite the README's tables from the existing docs/benchmarks.md (no measuring)")
    args = parser.parse_args(argv)
    if args.readme_from_report:
        README.write_text(replace_between_markers(README.read_text(), readme_block(REPORT.read_text()), str(README)))
        print(f"wrote the tables of {README} from {REPORT}")
        return
    if args.write and (set(args.only) != set(sections) or args.quick):
        parser.error("--write needs the full run (all sections, no --quick); use --markdown OUT for a partial one")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    from threadpoolctl import threadpool_limits

    started = time.time()
    machine = machine_lines()  # before the limit: the thread counts the libraries start with
    threadpool_limits(1, "blas")
    machine.append("- this process then pins every BLAS library above to 1 thread (threadpoolctl); implicit's and "
                   "LightFM's OpenMP threads and mflib ALS's Python threads follow each row's `threads`")
    for name, module in [("implicit", "implicit"), ("LightFM", "lightfm"), ("Surprise", "surprise"),
                         ("myFM", "myfm")]:
        if not _optional(module):
            print(_missing(name, module))
    print("\n".join(machine), flush=True)
    ds = load_movielens("100k")
    seeds = args.seeds[:1] if args.quick else args.seeds
    parts = {}
    if "implicit" in args.only:
        rows = quality_implicit(ds, seeds, args.quick)
        print_table("Implicit feedback (positives = rating >= 4, 80/20 split of positives)", rows, IMPLICIT_COLUMNS)
        parts["implicit"] = markdown_table(rows, IMPLICIT_COLUMNS, name_header="implicit feedback")
    if "explicit" in args.only:
        rows = quality_explicit(ds, seeds, args.quick, not args.no_svdpp)
        print_table("Explicit ratings (80/20 split of all ratings)", rows, EXPLICIT_COLUMNS)
        parts["explicit"] = markdown_table(rows, EXPLICIT_COLUMNS, name_header="explicit ratings")
    if "speed" in args.only:
        import speed

        repeats = 1 if args.quick else args.repeats
        print(f"\nSpeed (interleaved, best of {repeats}, two passes)", flush=True)
        tasks = speed.measure(speed.speed_tasks(ds, args.quick), repeats=repeats, passes=2)
        rows, noise = speed.summarise(tasks)
        parts["speed"] = speed_markdown(rows, noise, repeats)
        parts["speed"] += "\n\n" + speed.als_profile()
        print(parts["speed"], flush=True)
    if "seed-scale" in args.only:
        import seed_scale

        extra = ["--sizes", "ml-20m", "--als-iterations", "2", "--als-repeats", "1"] if args.quick else []
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "seed_scale.md"
            seed_scale.main(["--only", "fm", "--only", "als", "--markdown", str(out), *extra])
            parts["seed-scale"] = out.read_text().replace("## Seed-scale speed", "", 1).strip()
    if "beyond" in args.only:
        import beyond

        tables = [beyond.new_users_table(ds, seeds), beyond.explicit_table(ds, seeds),
                  *beyond.two_stage_tables(ds, seeds[0], timed_users=50 if args.quick else 200,
                                           repeats=1 if args.quick else 3, with_fm=not args.quick)]
        for table in tables:
            print(table.text(), flush=True)
        parts["beyond"] = "\n".join(table.markdown() for table in tables)

    minutes = (time.time() - started) / 60
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_end = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    command = "make bench" if args.write else "python benchmarks/bench.py " + " ".join(argv or sys.argv[1:])
    titles = {"implicit": "Implicit feedback on ML-100K (positives = rating >= 4, seeded 80/20 split of the "
                          f"positives, means over split seeds {seeds})",
              "explicit": f"Explicit ratings on ML-100K (seeded 80/20 split of all ratings, means over seeds {seeds})",
              "speed": "Speed against implicit, LightFM and Surprise (one process, BLAS pinned to one thread)",
              "seed-scale": "Seed-scale speed (`benchmarks/seed_scale.py`, each measurement in a child process)",
              "beyond": "Notebook 07 (`benchmarks/beyond.py`)"}
    report = [f"# Benchmarks\n\nGenerated by `{command}` (`benchmarks/bench.py`) on {when}, revision "
              f"{_git_revision()}, in {minutes:.0f} min; do not edit by hand. Rerun on a quiet machine to "
              "update it (the README's tables come from the same run).", "", "## Machine", "", *machine,
              f"- load average at the end: {load_end}"]
    for key, text in parts.items():
        report += ["", f"## {titles[key]}", "", text]
        if key == "explicit":
            report += ["", QUOTED]
    text = "\n".join(report) + "\n"
    if args.markdown:
        args.markdown.write_text(text)
        print(f"\nwrote {args.markdown}")
    if args.write:
        REPORT.write_text(text)
        README.write_text(replace_between_markers(README.read_text(), readme_block(text), str(README)))
        print(f"\nwrote {REPORT} and the tables of {README}")


if __name__ == "__main__":
    main()
