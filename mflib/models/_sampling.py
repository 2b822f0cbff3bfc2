"""The positives of an implicit-feedback matrix and uniform negative sampling, shared by BPR and WARP.

Positives
---------
A *positive* is a cell ``(u, i)`` of the users x items matrix whose stored value is non-zero, after summing
duplicate entries. The matrix is normalised on a **copy** (the caller's CSR is never touched): duplicates
summed, explicit zeros dropped, column indices sorted. So a CSR with unsorted or repeated indices gives the
same positives as its canonical form.

Each positive has the key ``u * n_items + i`` (int64); the keys of the canonical CSR, read row by row, are
sorted and unique (:func:`positive_keys`). "Is ``(u, i)`` a positive?" is then one vectorised test
(:func:`keys_contain`)::

    key in keys  <=>  keys[searchsorted(keys, key)] == key            O(log nnz) per query

:class:`PositiveLookup` answers the same question and, when the ``n_users * n_items`` cells fit in
``max_dense_cells`` bytes, from a flat boolean mask ``mask[u * n_items + i]`` instead (one gather per query;
ML-100K needs 1.6 MB, ML-1M 22 MB). Both layouts give the same answers.

Negatives
---------
:func:`sample_negatives` draws, for each given user, an item uniformly among the user's **non**-positives,
by vectorised rejection sampling: draw ``j ~ U{0, ..., n_items - 1}`` for every user at once, then redraw
only the draws that hit a positive of their user, until none does. Every accepted draw is uniform over the
user's non-positives; the expected number of rounds is small unless a user likes almost every item. A user
whose row is full (no non-positive exists) raises ``ValueError``. All randomness comes from the numpy
``Generator`` passed in, so a seeded generator gives the same negatives.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["canonical_positives", "positive_keys", "keys_contain", "PositiveLookup", "sample_negatives",
           "sample_positive_pairs"]


def canonical_positives(user_items) -> sp.csr_matrix:
    """A canonical **copy** of ``user_items`` as CSR: duplicates summed, explicit zeros dropped, indices sorted."""
    if not sp.issparse(user_items):
        raise TypeError(f"user_items must be a scipy.sparse users x items matrix, got {type(user_items).__name__}")
    matrix = sp.csr_matrix(user_items, copy=True)
    matrix.sum_duplicates()   # sums repeated (row, column) entries and sorts each row's indices
    matrix.eliminate_zeros()  # after summing: +1 and -1 stored for one cell make no positive
    return matrix


def _keys_of(matrix: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * matrix.shape[1] + matrix.indices.astype(np.int64)


def positive_keys(user_items) -> np.ndarray:
    """The sorted, unique int64 keys ``u * n_items + i`` of the positives of a users x items matrix."""
    return _keys_of(canonical_positives(user_items))


def keys_contain(keys, users, items, n_items: int) -> np.ndarray:
    """Is ``(users[...], items[...])`` a positive? Boolean, of the broadcast shape; a binary search of the
    keys ``u * n_items + i`` in the sorted array ``keys`` (:func:`positive_keys`)."""
    query = np.asarray(users, dtype=np.int64) * n_items + np.asarray(items, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=bool)
    position = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return keys[position] == query


class PositiveLookup:
    """The positives of a users x items matrix, with a vectorised membership test (module docstring).

    Attributes
    ----------
    n_users, n_items : int
    keys : int64 array
        The sorted keys ``u * n_items + i`` of the positives (:func:`positive_keys`).
    counts : int64 array ``(n_users,)``
        Positives per user.
    full_users : int64 array
        Users whose every item is a positive (they have no negative).
    dense : bool
        Whether :meth:`contains` reads a boolean mask (else it binary-searches ``keys``).
    """

    def __init__(self, user_items, max_dense_cells: int = 1 << 26):
        matrix = canonical_positives(user_items)
        self.n_users, self.n_items = matrix.shape
        self.counts = np.diff(matrix.indptr).astype(np.int64)
        self.full_users = np.flatnonzero(self.counts >= self.n_items)
        self.keys = _keys_of(matrix)
        self.dense = self.n_users * self.n_items <= max_dense_cells
        self._mask = None
        if self.dense:
            self._mask = np.zeros(self.n_users * self.n_items, dtype=bool)
            self._mask[self.keys] = True

    @property
    def users(self) -> np.ndarray:
        """The user of each positive, in key order (int64)."""
        return self.keys // self.n_items

    @property
    def items(self) -> np.ndarray:
        """The item of each positive, in key order (int64)."""
        return self.keys % self.n_items

    def contains(self, users, items) -> np.ndarray:
        """``True`` where ``items[...]`` is a positive of ``users[...]`` (broadcast shape)."""
        if not self.dense:
            return keys_contain(self.keys, users, items, self.n_items)
        return self._mask[np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)]


def sample_negatives(user_items, users, rng, lookup: PositiveLookup | None = None, dtype=np.int64) -> np.ndarray:
    """One uniformly random non-positive item per entry of ``users`` (an integer array of ``dtype``).

    Vectorised rejection sampling (module docstring). ``lookup`` (a :class:`PositiveLookup` of
    ``user_items``) saves rebuilding it on every call; ``user_items`` may then be None. A user whose row is
    full (no negative exists) raises ``ValueError``.
    """
    if lookup is None:
        lookup = PositiveLookup(user_items)
    users = np.asarray(users)
    if users.size and (users.min() < 0 or users.max() >= lookup.n_users):
        raise ValueError(f"users must lie in [0, {lookup.n_users}), got values from {users.min()} to {users.max()}")
    if len(lookup.full_users) and users.size and np.any(lookup.counts[users] >= lookup.n_items):
        full = np.unique(users[lookup.counts[users] >= lookup.n_items])
        raise ValueError(f"user(s) {full[:5].tolist()} have every item as a positive: no negative to sample")
    negatives = rng.integers(0, lookup.n_items, size=users.shape, dtype=dtype)
    redraw = np.flatnonzero(lookup.contains(users, negatives))
    while redraw.size:
        negatives[redraw] = rng.integers(0, lookup.n_items, size=redraw.size, dtype=dtype)
        redraw = redraw[lookup.contains(users[redraw], negatives[redraw])]
    return negatives


def sample_positive_pairs(lookup: PositiveLookup, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positives ``(users, items)`` drawn uniformly with replacement (int64 arrays)."""
    if len(lookup.keys) == 0:
        raise ValueError("the matrix has no positive to sample")
    keys = lookup.keys[rng.integers(0, len(lookup.keys), size=n, dtype=np.int64)]
    return keys // lookup.n_items, keys % lookup.n_items
