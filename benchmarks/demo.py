"""The course's main job, part 1: fetch ML-100K, summarise it, and evaluate every model on the protocol.

    python benchmarks/demo.py [--seed 0] [--skip-models]          (from the repository root; `make demo`)

Prints the data summary, then every model of :mod:`mflib.models.registry` (the popularity baseline and the
reference models, each fit with its default hyper-parameters) on the course protocol
(:mod:`mflib.evaluation`; see ``benchmarks/_common.py``), and the films most similar to Star Wars by ALS.
Part 2 (``python -m autograder demo``) releases the course and grades pretend students.
"""
from __future__ import annotations

import argparse

import numpy as np

from _common import installed_models, score_explicit, score_features, score_implicit
from mflib import evaluation
from mflib.datasets import load_movielens


def summarise(ds) -> None:
    """Size, density, the rating histogram, ratings per user, the positives and the most liked films."""
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--skip-models", action="store_true", help="only the data summary and popularity")
    args = parser.parse_args(argv)

    ds = load_movielens("100k")
    summarise(ds)
    train, test = evaluation.implicit_split(ds, args.seed)
    explicit_train, explicit_test = evaluation.explicit_split(ds, args.seed)
    print(f"\nProtocol: positives split 80/20 (seed {args.seed}); metrics @10 over users with a test positive; "
          "explicit models: 80/20 split of all ratings")
    header = f"{'model':<30}{'NDCG@10':>9}{'P@10':>8}{'R@10':>8}{'genre J':>9}{'RMSE':>8}{'fit s':>8}"
    print(header + "\n" + "-" * len(header))
    similar_to_star_wars = None
    models = sorted(installed_models(), key=lambda found: found[0].reference)  # the baseline first
    for entry, model_class in models:
        baseline = not entry.reference
        if args.skip_models and not baseline:
            continue
        seeded = model_class if baseline else (lambda: model_class(random_state=args.seed))  # noqa: B023
        if entry.data == "implicit":
            row = score_implicit(seeded, ds, train, test, similar=not baseline)
            jaccard = f"{row['genre J']:>9.3f}" if "genre J" in row else f"{'':>9}"
            print(f"{entry.name:<30}{row['ndcg@10']:>9.3f}{row['precision@10']:>8.3f}{row['recall@10']:>8.3f}"
                  f"{jaccard}{'':>8}{row['fit s']:>8.1f}")
            if entry.name == "ALS":
                ids, _ = row["model_object"].similar_items(ds.find_item("Star Wars"), N=5)
                similar_to_star_wars = ds.title(ids)
        else:
            score = score_explicit if entry.data == "explicit" else score_features
            row = score(seeded, ds, explicit_train, explicit_test)
            label = entry.name + (" + side features" if entry.data == "features" else "")
            print(f"{label:<30}{'':>9}{'':>8}{'':>8}{'':>9}{row['rmse']:>8.3f}{row['fit s']:>8.1f}")
    if similar_to_star_wars is not None:
        print("\nMost similar to Star Wars (1977) by ALS: " + "; ".join(similar_to_star_wars))


if __name__ == "__main__":
    main()
