"""Side-by-side benchmark: mflib's models against implicit, LightFM, Surprise and myFM, in one run.

    make bench                       # installs the comparison libraries, then runs this
    python benchmarks/bench.py [--seeds 0 1 2] [--quick] [--no-svdpp]      (from the repository root)

Quality on ML-100K (the course protocol, :mod:`mflib.evaluation`), averaged over split seeds:
  implicit models: NDCG@10, P@10, R@10, genre Jaccard@10 of similar items, fit time;
  explicit models: RMSE, fit time.
Speed, each pair measured in this run on this machine with BLAS pinned to one thread
(OPENBLAS_NUM_THREADS=1, as implicit recommends; implicit and LightFM still use their own threads):
  ALS fit on an ML-1M-sized synthetic matrix (6,040 x 3,706, ~575k positives, power-law popularity),
  64 factors, 15 iterations, mflib vs implicit; the classic per-user ``spsolve`` loop on ML-100K;
  seconds per epoch of SVD vs Surprise, BPR vs implicit's BPR, WARP vs LightFM's WARP.

Libraries that are not installed are reported as missing, not silently skipped.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from collections import defaultdict

import numpy as np
import pandas as pd
import scipy.sparse as sp

from _common import print_table, score_explicit, score_features, score_implicit
from mflib import evaluation
from mflib.datasets import load_movielens
from mflib.metrics import rmse
from synthetic import naive_als_spsolve, synthetic_implicit


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
    }
    if _optional("implicit"):
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        candidates["implicit ALS (64, reg 20, alpha 2)"] = lambda seed: ImplicitAdapter(
            AlternatingLeastSquares(factors=64, regularization=20.0, alpha=2.0, iterations=15, random_state=seed))
        candidates["implicit BPR (defaults)"] = lambda seed: ImplicitAdapter(
            BayesianPersonalizedRanking(factors=64, random_state=seed))
    if _optional("lightfm"):
        candidates["LightFM WARP (64, lr .02, 60 ep)"] = lambda seed: LightFMAdapter(
            "warp", epochs=20 if quick else 60, random_state=seed)
        candidates["LightFM BPR (64, lr .02, 60 ep)"] = lambda seed: LightFMAdapter(
            "bpr", epochs=20 if quick else 60, random_state=seed)
    return candidates


def quality_implicit(ds, seeds, quick: bool) -> list[dict]:
    rows = defaultdict(lambda: defaultdict(list))
    for seed in seeds:
        train, test = evaluation.implicit_split(ds, seed)
        for name, make in implicit_candidates(quick).items():
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
                algo = surprise.SVD(random_state=seed, **params).fit(_surprise_trainset(train))
                record(name, _surprise_predict(algo, test), time.perf_counter() - start)
            if svdpp and not quick:
                start = time.perf_counter()
                algo = surprise.SVDpp(random_state=seed).fit(_surprise_trainset(train))
                record("Surprise SVD++ (defaults)", _surprise_predict(algo, test), time.perf_counter() - start)
        if myfm:
            start = time.perf_counter()
            predictions = _myfm_predict(myfm, ds, train, test, seed, n_iter=100 if quick else 300)
            record("myFM Bayesian FM (rank 10, side features)", predictions, time.perf_counter() - start)
    return [{"model": name, **{k: (float(np.mean(v)) if isinstance(v, list) else v) for k, v in row.items()}}
            for name, row in rows.items()]


def _surprise_trainset(train):
    import pandas as pd
    from surprise import Dataset, Reader

    frame = pd.DataFrame({"u": train["user_idx"], "i": train["item_idx"], "r": train["rating"]})
    return Dataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()


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


# ---- speed -------------------------------------------------------------------------------------------
def _time(function, repeat=1):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def speed(ds, quick: bool) -> list[dict]:
    import mflib

    rows = []
    matrix = synthetic_implicit(6040, 3706, 575_000, random_state=0)
    ours = _time(lambda: mflib.ALS(factors=64, iterations=15, random_state=0).fit(matrix), repeat=1 if quick else 2)
    row = {"task": f"ALS fit, synthetic ML-1M ({matrix.shape[0]}x{matrix.shape[1]}, {matrix.nnz:,} nnz), 64 f, 15 it",
           "mflib s": ours}
    if _optional("implicit"):
        from implicit.cpu.als import AlternatingLeastSquares

        theirs = _time(lambda: AlternatingLeastSquares(factors=64, iterations=15, random_state=0).fit(
            matrix, show_progress=False), repeat=1 if quick else 2)
        row.update({"anchor": "implicit ALS (cg)", "anchor s": theirs})
    rows.append(row)

    train, _ = evaluation.implicit_split(ds, 0)
    seconds = _time(lambda: naive_als_spsolve(train, factors=64, iterations=15 if not quick else 2))
    fast = _time(lambda: mflib.ALS(factors=64, iterations=15 if not quick else 2, random_state=0).fit(train))
    rows.append({"task": "ALS on ML-100K: classic per-user spsolve loop vs mflib", "mflib s": fast,
                 "anchor": "per-user spsolve loop", "anchor s": seconds})

    epochs = 5 if quick else 20
    svd_train, _ = evaluation.explicit_split(ds, 0)
    users, items, ratings = (svd_train[c].to_numpy() for c in ("user_idx", "item_idx", "rating"))
    ours = _time(lambda: mflib.SVD(factors=100, iterations=epochs, random_state=0).fit(
        users, items, ratings, n_users=ds.n_users, n_items=ds.n_items)) / epochs
    row = {"task": "SVD epoch, ML-100K 80k ratings, 100 factors", "mflib s": ours}
    if _optional("surprise"):
        import surprise

        trainset = _surprise_trainset(svd_train)
        row.update({"anchor": "Surprise SVD", "anchor s": _time(
            lambda: surprise.SVD(n_factors=100, n_epochs=epochs, random_state=0).fit(trainset)) / epochs})
    rows.append(row)

    ours = _time(lambda: mflib.BPR(factors=64, iterations=epochs, random_state=0).fit(train)) / epochs
    row = {"task": "BPR epoch, ML-100K positives, 64 factors", "mflib s": ours}
    if _optional("implicit"):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        row.update({"anchor": "implicit BPR", "anchor s": _time(lambda: BayesianPersonalizedRanking(
            factors=64, iterations=epochs, random_state=0).fit(train, show_progress=False)) / epochs})
    rows.append(row)

    ours = _time(lambda: mflib.WARP(factors=64, iterations=epochs, random_state=0).fit(train)) / epochs
    row = {"task": "WARP epoch, ML-100K positives, 64 factors", "mflib s": ours}
    if _optional("lightfm"):
        from lightfm import LightFM

        row.update({"anchor": "LightFM WARP (1 thread)", "anchor s": _time(lambda: LightFM(
            loss="warp", no_components=64, random_state=0).fit(sp.coo_matrix(train), epochs=epochs,
                                                               num_threads=1)) / epochs})
    rows.append(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="fewer epochs for the anchors, one repeat")
    parser.add_argument("--no-svdpp", action="store_true", help="skip Surprise SVD++ (minutes)")
    parser.add_argument("--only", choices=["implicit", "explicit", "speed"], nargs="+",
                        default=["implicit", "explicit", "speed"])
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    warnings.filterwarnings("ignore")
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")
    for name, module in [("implicit", "implicit"), ("LightFM", "lightfm"), ("Surprise", "surprise"),
                         ("myFM", "myfm")]:
        if not _optional(module):
            print(_missing(name, module))
    ds = load_movielens("100k")
    print(f"ML-100K protocol, split seeds {args.seeds}; numbers are means over seeds")
    if "implicit" in args.only:
        print_table("Implicit feedback (positives = rating >= 4, 80/20 split of positives)",
                    quality_implicit(ds, args.seeds, args.quick),
                    [("ndcg@10", "NDCG@10", ".3f"), ("precision@10", "P@10", ".3f"), ("recall@10", "R@10", ".3f"),
                     ("genre J", "genre J@10", ".3f"), ("pairs", "pairs/2", ".1f"), ("fit s", "fit s", ".2f")])
    if "explicit" in args.only:
        print_table("Explicit ratings (80/20 split of all ratings)",
                    quality_explicit(ds, args.seeds, args.quick, not args.no_svdpp),
                    [("rmse", "RMSE", ".4f"), ("fit s", "fit s", ".2f")])
    if "speed" in args.only:
        rows = speed(ds, args.quick)
        for row in rows:
            if row.get("anchor s") and row.get("mflib s"):
                row["ratio"] = row["mflib s"] / row["anchor s"]
        print_table("Speed (BLAS pinned to 1 thread; seconds, lower is better; ratio = mflib / anchor)", rows,
                    [("mflib s", "mflib s", ".3f"), ("anchor", "anchor", ""), ("anchor s", "anchor s", ".3f"),
                     ("ratio", "ratio", ".2f")])


if __name__ == "__main__":
    main()
