"""The course's evaluation protocol on MovieLens (the same in tests, notebooks, autograder and benchmark).

Implicit models
    positives = ratings >= 4; a seeded random 80/20 split of the positive (user, item) pairs;
    precision/recall/NDCG@10 averaged over users with a test positive, train items filtered out;
    similar-item quality = mean genre Jaccard@10 over items with >= 50 train positives.
Explicit models
    a seeded random 80/20 split of all ratings -> RMSE on test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import metrics
from .datasets import Dataset
from .split import random_holdout

__all__ = ["implicit_split", "explicit_split", "evaluate_ranking", "evaluate_similar_items",
           "frequent_items", "known_pairs", "KNOWN_PAIRS"]

# Query title -> titles that a good model puts among its 10 most similar items.
KNOWN_PAIRS = {
    "Star Wars (1977)": ["Empire Strikes Back, The (1980)", "Return of the Jedi (1983)"],
    "Godfather, The (1972)": ["Godfather: Part II, The (1974)"],
}


def implicit_split(dataset: Dataset, random_state: int = 0, threshold: float = 4.0,
                   test_fraction: float = 0.2) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(train, test)`` users x items CSR matrices of positives (1.0), a seeded 80/20 split."""
    train, test = random_holdout(dataset.positives(threshold), test_fraction, random_state)
    return dataset.to_csr(train, 1.0), dataset.to_csr(test, 1.0)


def explicit_split(dataset: Dataset, random_state: int = 0,
                   test_fraction: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, test)`` rating tables (``user_idx, item_idx, rating, ...``), a seeded 80/20 split."""
    return random_holdout(dataset.ratings, test_fraction, random_state)


def evaluate_ranking(model, train: sp.csr_matrix, test: sp.csr_matrix, k: int = 10,
                     batch_size: int = 4096) -> dict[str, float]:
    """Ranking metrics at ``k`` for a fitted model with the implicit-style ``recommend`` API.

    Users with at least one test positive are scored; their train items are filtered out.
    Also reports catalogue coverage of the recommended lists.
    """
    users = np.flatnonzero(np.diff(sp.csr_matrix(test).indptr) > 0)
    recommended = np.concatenate([
        model.recommend(users[start:start + batch_size], train[users[start:start + batch_size]], N=k,
                        filter_already_liked_items=True)[0]
        for start in range(0, len(users), batch_size)]) if len(users) else np.zeros((0, k), np.int64)
    seen = train[users].multiply(sp.csr_matrix((np.ones(recommended.size),
                                               (np.repeat(np.arange(len(users)), recommended.shape[1]),
                                                np.maximum(recommended.ravel(), 0))),
                                              shape=(len(users), train.shape[1])))
    if seen.nnz:
        raise AssertionError(f"recommend returned {seen.nnz} items the users already have in train "
                             "although filter_already_liked_items=True")
    result = metrics.ranking_metrics(recommended, test[users], k)
    result["coverage"] = metrics.coverage(recommended, train.shape[1])
    return result


def frequent_items(train: sp.csr_matrix, min_positives: int = 50) -> np.ndarray:
    """Items with at least ``min_positives`` users in train (enough data to judge their neighbours)."""
    return np.flatnonzero(np.asarray((train > 0).sum(0)).ravel() >= min_positives)


def evaluate_similar_items(model, dataset: Dataset, train: sp.csr_matrix, k: int = 10,
                           min_positives: int = 50) -> float:
    """Mean genre Jaccard@k between each frequent item and its ``k`` most similar items."""
    items = frequent_items(train, min_positives)
    neighbours, _ = model.similar_items(items, N=k)
    return metrics.genre_jaccard(neighbours, dataset.genre_matrix(), items)


def known_pairs(model, dataset: Dataset, k: int = 10,
                pairs: dict[str, list[str]] | None = None) -> dict[str, dict[str, bool]]:
    """For each query title, which of its expected neighbours are among the model's top ``k``."""
    result = {}
    for query, expected in (pairs or KNOWN_PAIRS).items():
        ids, _ = model.similar_items(dataset.find_item(query), N=k)
        found = set(dataset.title(ids))
        result[query] = {title: title in found for title in expected}
    return result
