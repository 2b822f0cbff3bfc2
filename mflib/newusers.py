"""The new-user protocol: users the model never saw, each known by only ``k`` of their positives.

How well can a model recommend to someone who just signed up and liked ``k`` films? The protocol
(used by notebook 07 and ``benchmarks/beyond.py``):

1. :func:`new_user_split` picks ``n_users`` users (seeded) among those with at least ``k_max + min_rest``
   positives and draws, per user, a random order of their positives;
2. for each ``k`` in e.g. ``(1, 3, 5, 10)``, :meth:`NewUserSplit.given` holds the first ``k`` positives of
   that order (what the user tells us) and :meth:`NewUserSplit.rest` the others (what we try to find);
3. the model is trained without those users (:meth:`NewUserSplit.training_matrix` with ``k=0``: their rows
   are empty), or, for the "full retrain" reference, with their ``k`` given positives in
   (``training_matrix(k)``);
4. a method turns the given rows into user vectors, and :func:`ndcg_for_vectors` scores the top 10
   (given items excluded) against the rest.

Nested given sets (the first 1, 3, 5, 10 positives of one order) make the ``k`` comparable: a user's 3
given films include her 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import metrics
from .retrieval import topk_inner_product

__all__ = ["NewUserSplit", "new_user_split", "ndcg_for_vectors", "popularity_vectors"]


@dataclass
class NewUserSplit:
    """Held-out users and a random order of each one's positives.

    ``users``: their row indices in ``user_items`` (sorted). ``rank``: CSR ``(len(users), n_items)`` whose
    stored value for each positive is its 1-based position in the user's random order.
    """

    user_items: sp.csr_matrix
    users: np.ndarray
    rank: sp.csr_matrix

    def _select(self, keep) -> sp.csr_matrix:
        rank = self.rank.tocoo()
        mask = keep(rank.data)
        return sp.csr_matrix((np.ones(int(mask.sum()), np.float32), (rank.row[mask], rank.col[mask])),
                             shape=self.rank.shape)

    def given(self, k: int) -> sp.csr_matrix:
        """The first ``k`` positives of every held-out user (one row per user, 0/1 float32 CSR)."""
        return self._select(lambda r: r <= k)

    def rest(self, k: int) -> sp.csr_matrix:
        """Every positive after the first ``k``: the items to recover."""
        return self._select(lambda r: r > k)

    def training_matrix(self, k: int = 0) -> sp.csr_matrix:
        """``user_items`` with each held-out user's row replaced by her ``k`` given positives
        (``k=0``: an empty row, the user is unknown to the model)."""
        matrix = sp.csr_matrix(self.user_items, dtype=np.float32, copy=True)
        keep = np.ones(matrix.shape[0], dtype=bool)
        keep[self.users] = False
        others = sp.diags(keep.astype(np.float32)) @ matrix
        if k <= 0:
            return sp.csr_matrix(others)
        placed = sp.csr_matrix((np.ones(len(self.users), np.float32), (self.users, np.arange(len(self.users)))),
                               shape=(matrix.shape[0], len(self.users)))
        return sp.csr_matrix(others + placed @ self.given(k))


def new_user_split(user_items, n_users: int = 200, k_max: int = 10, min_rest: int = 5,
                   random_state=0) -> NewUserSplit:
    """Hold out ``n_users`` users with at least ``k_max + min_rest`` positives in ``user_items`` (a users x
    items CSR of positives), and draw a random order of each one's positives. Seeded; vectorised."""
    matrix = sp.csr_matrix(user_items, dtype=np.float32)
    matrix.sum_duplicates()
    counts = np.diff(matrix.indptr)
    eligible = np.flatnonzero(counts >= k_max + min_rest)
    if len(eligible) < n_users:
        raise ValueError(f"only {len(eligible)} users have >= {k_max + min_rest} positives; ask for fewer "
                         f"than {n_users} new users or lower k_max / min_rest")
    rng = np.random.default_rng(random_state)
    users = np.sort(rng.choice(eligible, n_users, replace=False))
    rows = matrix[users]
    row_of_entry = np.repeat(np.arange(n_users), np.diff(rows.indptr))
    # a random key per entry, sorted within each row: the position of each positive in its user's order
    order = np.lexsort((rng.random(rows.nnz), row_of_entry))
    position = np.empty(rows.nnz, np.int64)
    position[order] = np.arange(rows.nnz) - rows.indptr[row_of_entry[order]]
    rank = sp.csr_matrix((position + 1.0, rows.indices.copy(), rows.indptr.copy()), shape=rows.shape)
    return NewUserSplit(matrix, users, rank)


def ndcg_for_vectors(user_vectors, item_vectors, given, rest, N: int = 10) -> float:
    """NDCG@``N`` of ranking items by ``user_vectors @ item_vectors.T``, the ``given`` items excluded,
    against the ``rest`` (one row per user in all three)."""
    ids, _ = topk_inner_product(np.asarray(user_vectors, np.float32), np.asarray(item_vectors, np.float32), N,
                                exclude=sp.csr_matrix(given))
    return metrics.ndcg_at_k(ids, rest, N)


def popularity_vectors(training_matrix, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """``(user_vectors, item_vectors)`` that rank by popularity: every user ``(1,)``, item ``i`` ``(n_i,)``,
    the number of users with ``i`` in ``training_matrix``."""
    counts = np.asarray((sp.csr_matrix(training_matrix) > 0).sum(0), dtype=np.float32).reshape(-1, 1)
    return np.ones((n_users, 1), np.float32), counts
