"""Notebook 07's quality figures: new users by fold-in, explicit ALS against SGD, two-stage retrieval.

    python benchmarks/beyond.py [--seeds 0 1 2] [--markdown OUT.md] [--quick]     (from the repository root)

1. **A new user from k positives** (:mod:`mflib.newusers`): 200 held-out users of ML-100K (>= 15 positives,
   seeded), each known by only k in {1, 3, 5, 10} of their positives; NDCG@10 against the rest of their
   positives, given items excluded. Methods: ALS fold-in (:meth:`mflib.ALS.recalculate_user`, item factors of
   a model trained without those users), the summed embedding of the given items' factors, popularity, and
   a full retrain with the users' k positives in the training matrix. mflib.ALS at its defaults; means over
   split seeds.
2. **Explicit ALS vs SGD** on the course's explicit split (:func:`mflib.evaluation.explicit_split`): test RMSE,
   fit time, time per ALS iteration and per SGD epoch; defaults of both models; means over split seeds.
3. **Two-stage retrieval** on the course's implicit split (seed = the first seed): stage 1 = a faiss HNSW
   index (inner product, M=16) over the item factors of an 8-factor ALS, stage 2 = re-ranking the pool with
   the 64-factor ALS (MF scores) or with the factorization machine on side-feature rows (predicted rating,
   unclipped). Per pool size: candidate recall (test positives in the pool), the share of the stage-2
   model's exact top 10 in the pool, NDCG@10 after re-ranking against exact full scoring, and latency per
   user (one request at a time: index search + re-rank). A second table times full scoring against the
   two-stage pipeline on larger synthetic catalogues (Gaussian vectors: latency only).

Timings are wall-clock on whatever machine runs this, BLAS pinned to one thread; on a shared machine they
move by tens of percent between runs.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import mflib  # noqa: E402
from mflib import two_stage  # noqa: E402
from mflib.datasets import load_movielens  # noqa: E402
from mflib.evaluation import explicit_split, implicit_split  # noqa: E402
from mflib.metrics import rmse  # noqa: E402
from mflib.models._foldin import summed_embedding  # noqa: E402
from mflib.newusers import ndcg_for_vectors, new_user_split, popularity_vectors  # noqa: E402
from mflib.retrieval import FaissIndex  # noqa: E402

KS = (1, 3, 5, 10)
POOLS = (10, 20, 50, 100, 200)


class Table:
    """A titled table of already formatted cells, printed as text or written as markdown."""

    def __init__(self, title: str, headers: list[str], note: str = ""):
        self.title, self.headers, self.note, self.rows = title, headers, note, []

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) for i, h in enumerate(self.headers)]
        line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        out = [f"\n{self.title}", line(self.headers), "-" * (sum(widths) + 2 * len(widths))]
        out += [line(r) for r in self.rows]
        return "\n".join(out + ([self.note] if self.note else []))

    def markdown(self) -> str:
        out = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |",
               "|" + "|".join("---" for _ in self.headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(out + ([f"\n{self.note}"] if self.note else []) + [""])


def _mean(values) -> float:
    return float(np.mean(values))


# ---- 1. new users ---------------------------------------------------------------------------------------
def new_users_table(ds, seeds, n_users: int = 200) -> Table:
    positives = ds.implicit()
    scores = {name: {k: [] for k in KS} for name in ("fold-in", "retrain", "summed", "popularity")}
    fold_ms, retrain_s = [], []
    for seed in seeds:
        split = new_user_split(positives, n_users=n_users, random_state=seed)
        base = mflib.ALS(random_state=seed).fit(split.training_matrix(0))
        pop_users, pop_items = popularity_vectors(split.training_matrix(0), n_users)
        for k in KS:
            given, rest = split.given(k), split.rest(k)
            start = time.perf_counter()
            folded = base.recalculate_user(split.users, given)
            fold_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            retrained = mflib.ALS(random_state=seed).fit(split.training_matrix(k))
            retrain_s.append(time.perf_counter() - start)
            scores["fold-in"][k].append(ndcg_for_vectors(folded, base.item_factors, given, rest))
            scores["retrain"][k].append(ndcg_for_vectors(retrained.user_factors[split.users],
                                                         retrained.item_factors, given, rest))
            scores["summed"][k].append(ndcg_for_vectors(summed_embedding(base.item_factors, given),
                                                        base.item_factors, given, rest))
            scores["popularity"][k].append(ndcg_for_vectors(pop_users, pop_items, given, rest))
    table = Table(f"New users from k positives: NDCG@10 on the rest of their positives ({n_users} held-out "
                  f"ML-100K users, mean over seeds {list(seeds)})",
                  ["k", "fold-in", "full retrain", "summed embedding", "popularity", "fold-in / retrain",
                   "fold-in vs summed"],
                  note=f"fold-in of all {n_users} users: {_mean(fold_ms):.1f} ms per k; a full retrain: "
                       f"{_mean(retrain_s):.2f} s (mflib.ALS defaults).")
    for k in KS:
        fold, retrain, summed = (_mean(scores[n][k]) for n in ("fold-in", "retrain", "summed"))
        table.add(k, f"{fold:.4f}", f"{retrain:.4f}", f"{summed:.4f}", f"{_mean(scores['popularity'][k]):.4f}",
                  f"{fold / retrain:.3f}", f"{100 * (fold / summed - 1):+.1f} %")
    return table


# ---- 2. explicit ALS vs SGD -----------------------------------------------------------------------------
def explicit_table(ds, seeds) -> Table:
    rows = {"ExplicitALS": [], "SVD (SGD)": []}
    for seed in seeds:
        train, test = explicit_split(ds, random_state=seed)
        arrays = (train["user_idx"].to_numpy(), train["item_idx"].to_numpy(), train["rating"].to_numpy())
        for name, model in (("ExplicitALS", mflib.ExplicitALS(random_state=seed)),
                            ("SVD (SGD)", mflib.SVD(random_state=seed))):
            start = time.perf_counter()
            model.fit(*arrays, n_users=ds.n_users, n_items=ds.n_items)
            seconds = time.perf_counter() - start
            error = rmse(test["rating"].to_numpy(), model.predict(test["user_idx"].to_numpy(), test["item_idx"].to_numpy()))
            rows[name].append((error, seconds, model.iterations, model.factors))
    table = Table(f"Explicit ratings: ALS against SGD (ML-100K, explicit split, mean over seeds {list(seeds)}, "
                  "default hyper-parameters)",
                  ["model", "RMSE", "fit s", "iterations / epochs", "s per iteration / epoch", "factors"])
    for name, results in rows.items():
        errors, seconds, iterations, factors = zip(*results)
        table.add(name, f"{_mean(errors):.4f}", f"{_mean(seconds):.2f}", iterations[0],
                  f"{_mean(seconds) / iterations[0]:.3f}", factors[0])
    return table


# ---- 3. two-stage retrieval -----------------------------------------------------------------------------
def _fm_scorer(ds, seed):
    """A factorization machine on side features, trained on the explicit split of the same seed, and a
    ``score(users, items)`` of predicted (unclipped) ratings from feature rows."""
    from mflib.features import build_features, item_rows, user_rows

    train_df, _ = explicit_split(ds, random_state=seed)
    X, space = build_features(ds, train_df)
    fm = mflib.FactorizationMachine(random_state=seed, rating_scale=None).fit(
        X, train_df["rating"].to_numpy(), feature_space=space)
    users = ds.users
    U = user_rows(space, users["age"], users["gender"], users["occupation"], user=np.arange(ds.n_users))
    I = item_rows(space, ds)
    return lambda u, i: fm.predict((U[u] + I[i]).tocsr())


def two_stage_tables(ds, seed, timed_users: int, repeats: int, with_fm: bool) -> list[Table]:
    train, test = implicit_split(ds, random_state=seed)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    seen, wanted = train[users], test[users]
    stage1 = mflib.ALS(factors=8, random_state=seed).fit(train)
    stage2 = mflib.ALS(random_state=seed).fit(train)
    index = FaissIndex(stage1.item_factors, metric="ip", kind="hnsw", M=16, ef_search=16)
    measured = {"MF": two_stage.measure_two_stage(index, stage1.user_factors[users], stage2.user_factors[users],
                                                  stage2.item_factors, seen, wanted, POOLS,
                                                  timed_users=timed_users, repeats=repeats)}
    if with_fm:
        score = _fm_scorer(ds, seed)
        measured["FM"] = two_stage.measure_two_stage(index, stage1.user_factors[users], None, None, seen, wanted,
                                                     POOLS, score=lambda u, i: score(users[u], i),
                                                     timed_users=timed_users, repeats=repeats)
    mf = measured["MF"]
    headers = ["pool", "candidate recall", "MF top-10 in pool", "NDCG@10 MF re-rank", "ms/user MF"]
    if with_fm:
        headers += ["NDCG@10 FM re-rank", "ms/user FM"]
    table = Table(f"Two-stage retrieval (ML-100K implicit split, seed {seed}, {len(users)} users): stage 1 = HNSW "
                  "over 8-factor ALS item factors, stage 2 = 64-factor ALS (MF) or FM on side features", headers)
    for j, pool in enumerate(POOLS):
        cells = [pool, f"{mf.candidate_recall[j]:.3f}", f"{mf.exact_top_recall[j]:.3f}", f"{mf.ndcg[j]:.4f}",
                 f"{mf.latency_ms[j]:.2f}"]
        if with_fm:
            cells += [f"{measured['FM'].ndcg[j]:.4f}", f"{measured['FM'].latency_ms[j]:.2f}"]
        table.add(*cells)
    full = ["full scoring", "1", "1", f"{mf.full_ndcg:.4f}", f"{mf.full_latency_ms:.2f}"]
    if with_fm:
        full += [f"{measured['FM'].full_ndcg:.4f}", f"{measured['FM'].full_latency_ms:.2f}"]
    table.add(*full)
    table.note = (f"Stage 1 alone (8-factor ALS, HNSW top 10): NDCG@10 {mf.stage1_ndcg:.4f}. Latency: one user per "
                  f"request, mean of {min(timed_users, len(users))} users, median of {repeats} runs.")
    return [table, scaling_table(timed_users, repeats)]


def scaling_table(timed_users: int, repeats: int, sizes=(1_682, 20_000, 100_000), pool: int = 100) -> Table:
    """Latency per user of full scoring vs two-stage (pool 100) on synthetic catalogues of growing size."""
    rng = np.random.default_rng(0)
    n_users = min(timed_users, 200)
    table = Table(f"Latency per user against catalogue size (synthetic Gaussian vectors, {n_users} users, "
                  f"64-d stage 2, 8-d HNSW stage 1, pool {pool})",
                  ["items", "full scoring ms/user", "two-stage ms/user", "HNSW build s"])
    for n_items in sizes:
        items2 = rng.standard_normal((n_items, 64)).astype(np.float32)
        users2 = rng.standard_normal((n_users, 64)).astype(np.float32)
        items1, users1 = items2[:, :8].copy(), users2[:, :8].copy()
        start = time.perf_counter()
        index = FaissIndex(items1, metric="ip", kind="hnsw", M=16, ef_construction=64, ef_search=16)
        build = time.perf_counter() - start
        seen = sp.csr_matrix((n_users, n_items), dtype=np.float32)
        result = two_stage.measure_two_stage(index, users1, users2, items2, seen, seen, (pool,),
                                             timed_users=n_users, repeats=repeats)
        table.add(f"{n_items:,}", f"{result.full_latency_ms:.2f}", f"{result.latency_ms[0]:.2f}", f"{build:.1f}")
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/beyond.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--markdown", metavar="OUT", help="also write the tables as markdown to OUT")
    parser.add_argument("--quick", action="store_true", help="one seed, fewer timed users, no FM")
    parser.add_argument("--only", choices=["new-users", "explicit", "two-stage"], nargs="+",
                        default=["new-users", "explicit", "two-stage"])
    args = parser.parse_args(argv)
    seeds = args.seeds[:1] if args.quick else args.seeds
    ds = load_movielens("100k")
    tables = []
    if "new-users" in args.only:
        tables.append(new_users_table(ds, seeds))
        print(tables[-1].text(), flush=True)
    if "explicit" in args.only:
        tables.append(explicit_table(ds, seeds))
        print(tables[-1].text(), flush=True)
    if "two-stage" in args.only:
        for table in two_stage_tables(ds, seeds[0], timed_users=50 if args.quick else 200,
                                      repeats=1 if args.quick else 3, with_fm=not args.quick):
            tables.append(table)
            print(table.text(), flush=True)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("\n".join(t.markdown() for t in tables))
        print(f"\nwrote {args.markdown}")


if __name__ == "__main__":
    main()
