"""The course's main job, part 1: fetch ML-100K, summarise it, and evaluate the models on the protocol.

    python -m mflib.demo [--seed 0] [--skip-models]

Prints the data summary, the popularity baseline and every reference model (fit with its default
hyper-parameters) on the course protocol (:mod:`mflib.evaluation`), with the films most similar to
Star Wars. Part 2 (``python -m autograder demo``) releases the course and grades pretend students.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from . import evaluation
from .datasets import load_movielens
from .metrics import rmse
from .models.popularity import Popularity


def summarise(ds) -> None:
    ratings = ds.ratings
    density = len(ratings) / (ds.n_users * ds.n_items)
    print(f"MovieLens {ds.name} (from {ds.source}): {len(ratings):,} ratings by {ds.n_users:,} users "
          f"of {ds.n_items:,} films; density {density:.2%}")
    counts = ratings["rating"].value_counts().sort_index()
    print("ratings:   " + "  ".join(f"{int(r)}★ {n / len(ratings):.0%}" for r, n in counts.items()))
    per_user = ratings.groupby("user_idx").size()
    print(f"per user:  median {per_user.median():.0f}, min {per_user.min()}, max {per_user.max()}")
    positives = ds.implicit()
    print(f"implicit positives (rating >= 4): {positives.nnz:,}")
    popular = np.argsort(-np.asarray(positives.sum(0)).ravel())[:5]
    print("most liked: " + "; ".join(ds.title(popular)))


def _models():
    """(name, factory, kind) for every reference model that this installation has."""
    import importlib

    specs = [("ALS", "mflib.models.als", "ALS", "implicit"), ("BPR", "mflib.models.bpr", "BPR", "implicit"),
             ("WARP", "mflib.models.warp", "WARP", "implicit"), ("SVD", "mflib.models.svd", "SVD", "explicit")]
    found = []
    for name, module, attr, kind in specs:
        try:
            found.append((name, getattr(importlib.import_module(module), attr), kind))
        except (ImportError, AttributeError) as error:
            print(f"  ({name} skipped: {error})")
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--skip-models", action="store_true", help="only the data summary and popularity")
    args = parser.parse_args(argv)

    ds = load_movielens("100k")
    summarise(ds)
    train, test = evaluation.implicit_split(ds, args.seed)
    print(f"\nProtocol: positives split 80/20 (seed {args.seed}); metrics @10 over users with a test positive")
    header = f"{'model':<12}{'NDCG@10':>9}{'P@10':>8}{'R@10':>8}{'genre J':>9}{'RMSE':>8}{'fit s':>8}"
    print(header + "\n" + "-" * len(header))
    result = evaluation.evaluate_ranking(Popularity().fit(train), train, test)
    print(f"{'popularity':<12}{result['ndcg@10']:>9.3f}{result['precision@10']:>8.3f}"
          f"{result['recall@10']:>8.3f}{'':>9}{'':>8}{'':>8}")
    if args.skip_models:
        return
    star_wars = ds.find_item("Star Wars")
    explicit_train, explicit_test = evaluation.explicit_split(ds, args.seed)
    for name, model_class, kind in _models():
        start = time.perf_counter()
        if kind == "implicit":
            model = model_class().fit(train)
            seconds = time.perf_counter() - start
            result = evaluation.evaluate_ranking(model, train, test)
            jaccard = evaluation.evaluate_similar_items(model, ds, train)
            print(f"{name:<12}{result['ndcg@10']:>9.3f}{result['precision@10']:>8.3f}"
                  f"{result['recall@10']:>8.3f}{jaccard:>9.3f}{'':>8}{seconds:>8.1f}")
        else:
            model = model_class().fit(explicit_train["user_idx"].to_numpy(), explicit_train["item_idx"].to_numpy(),
                                      explicit_train["rating"].to_numpy(), n_users=ds.n_users,
                                      n_items=ds.n_items)
            seconds = time.perf_counter() - start
            error = rmse(explicit_test["rating"], model.predict(explicit_test["user_idx"].to_numpy(),
                                                                explicit_test["item_idx"].to_numpy()))
            print(f"{name:<12}{'':>9}{'':>8}{'':>8}{'':>9}{error:>8.3f}{seconds:>8.1f}")
        if name == "ALS":
            ids, _ = model.similar_items(star_wars, N=5)
            als_similar = ds.title(ids)
    try:
        from .features import build_features
        from .models.fm import FactorizationMachine

        start = time.perf_counter()
        X_train, space = build_features(ds, explicit_train)
        X_test, _ = build_features(ds, explicit_test)
        fm = FactorizationMachine(random_state=args.seed).fit(X_train, explicit_train["rating"].to_numpy(),
                                                             feature_space=space)
        seconds = time.perf_counter() - start
        error = rmse(explicit_test["rating"], fm.predict(X_test))
        print(f"{'FM + side':<12}{'':>9}{'':>8}{'':>8}{'':>9}{error:>8.3f}{seconds:>8.1f}")
    except ImportError as error:
        print(f"  (FM skipped: {error})")
    if "als_similar" in locals():
        print("\nMost similar to Star Wars (1977) by ALS: " + "; ".join(als_similar))


if __name__ == "__main__":
    main()
