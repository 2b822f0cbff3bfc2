"""Seeded train/test splits of interaction tables.

Every function takes a DataFrame of interactions with ``user_idx`` and ``item_idx`` columns (as in
``Dataset.ratings`` or ``Dataset.positives()``) and returns ``(train, test)`` DataFrames: a partition of
the rows. Turn them into matrices with ``Dataset.to_csr(train, ...)``; matrices keep the full
``(n_users, n_items)`` shape, so indices agree across the two.

Users and items unseen in train
-------------------------------
A random holdout can put all of a user's (or an item's) interactions in test. Such users have an empty
row in the train matrix: a factor model learns nothing for them (their factors stay at the
regularised initial values) and ranks items by popularity at best. We keep such rows in test (the
metrics average over every user with a test positive, as the benchmark protocol says) and report how
many there are with :func:`cold_start_report`; on ML-100K's 80/20 split they are a handful.
An explicit model predicts a test rating of an item unseen in train from the global mean and the
user's bias. :func:`per_user_holdout` and
:func:`leave_last_k` never leave a user out of train when the user has more than ``k`` (resp. one)
interactions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["random_holdout", "per_user_holdout", "leave_last_k", "cold_start_report"]


def random_holdout(interactions: pd.DataFrame, test_fraction: float = 0.2,
                   random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each row goes to test with probability-free exactness: a seeded permutation puts exactly
    ``round(test_fraction * n)`` rows in test, the rest in train."""
    _check_fraction(test_fraction)
    rng = np.random.default_rng(random_state)
    n = len(interactions)
    n_test = int(round(test_fraction * n))
    is_test = np.zeros(n, dtype=bool)
    is_test[rng.permutation(n)[:n_test]] = True
    return interactions[~is_test], interactions[is_test]


def per_user_holdout(interactions: pd.DataFrame, test_fraction: float = 0.2, random_state: int = 0,
                     min_train: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each user, ``floor(test_fraction * n_u)`` random interactions go to test, keeping at least
    ``min_train`` in train. Vectorised: one seeded random key per row, ranked within its user."""
    _check_fraction(test_fraction)
    rng = np.random.default_rng(random_state)
    users = interactions["user_idx"].to_numpy()
    keys = rng.random(len(interactions))
    # rank of each row within its user by the random key: sort by (user, key)
    order = np.lexsort((keys, users))
    rank = _rank_within_groups(users[order])
    counts = np.bincount(users, minlength=users.max() + 1 if len(users) else 0)
    n_test = np.minimum(np.floor(test_fraction * counts).astype(np.int64), np.maximum(counts - min_train, 0))
    is_test = np.zeros(len(interactions), dtype=bool)
    is_test[order] = rank < n_test[users[order]]
    return interactions[~is_test], interactions[is_test]


def leave_last_k(interactions: pd.DataFrame, k: int = 1,
                 time_column: str = "timestamp") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's ``k`` most recent interactions go to test (ties broken by row order), as long as at
    least one interaction stays in train; deterministic, no seed needed."""
    users = interactions["user_idx"].to_numpy()
    times = interactions[time_column].to_numpy()
    order = np.lexsort((-np.arange(len(users)), -times, users))  # newest first within each user
    rank = _rank_within_groups(users[order])
    counts = np.bincount(users, minlength=users.max() + 1 if len(users) else 0)
    n_test = np.minimum(k, np.maximum(counts - 1, 0))
    is_test = np.zeros(len(interactions), dtype=bool)
    is_test[order] = rank < n_test[users[order]]
    return interactions[~is_test], interactions[is_test]


def cold_start_report(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, int]:
    """How many test users/items never appear in train (they get no learned factors)."""
    cold_users = np.setdiff1d(test["user_idx"].unique(), train["user_idx"].unique())
    cold_items = np.setdiff1d(test["item_idx"].unique(), train["item_idx"].unique())
    return {"test_users_unseen_in_train": int(len(cold_users)),
            "test_items_unseen_in_train": int(len(cold_items)),
            "test_rows_with_unseen_item": int(test["item_idx"].isin(cold_items).sum())}


def _rank_within_groups(sorted_groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... restarting at every new value of an already-sorted group array."""
    n = len(sorted_groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.arange(n) - group_start


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
