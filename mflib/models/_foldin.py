"""A new user from a few interactions, without retraining: ALS fold-in, and the summed-embedding shortcut.

Fold-in
-------
An implicit ALS model (:mod:`mflib.models.als`) scores ``s_ui = x_u . y_i``. A user who arrives after
training has no ``x_u``. With the item factors ``Y`` fixed, the ALS loss restricted to that user is the
weighted ridge regression that every ALS user half-step solves::

    min_x  sum_i c_ui (p_ui - x . y_i)^2 + lambda ||x||^2,      c_ui = 1 + alpha r_ui,  p_ui = [r_ui > 0]

so her best vector is the exact solution of the normal equations (the **Y^T Y trick**: missing cells
weigh 1, so only her own items ``N(u)`` add to ``Y^T Y``)::

    x_u = (Y^T Y + sum_{i in N(u)} alpha r_ui y_i y_i^T + lambda I)^{-1}  sum_{i in N(u)} (1 + alpha r_ui) y_i

``Y^T Y + lambda I`` is the same for every new user (computed once); each fold-in then costs
``O(|N(u)| k^2 + k^3)``, microseconds, against seconds for a retrain. This is what implicit 0.7's
``ALS.recalculate_user(userid, user_items)`` computes (with its convention ``c = alpha r``: our
``alpha`` is implicit's minus one on 0/1 data); :meth:`mflib.ALS.recalculate_user` calls
:func:`fold_in`.

The summed embedding ("mega-embedding")
---------------------------------------
A common shortcut represents the newcomer by the sum of the item vectors she rated,
``x_u = sum_{i in N(u)} y_i``, and scores ``x_u . y_j``. It ignores ``Y^T Y``: items are not
decorrelated, so the direction shared by all popular items dominates. The benchmark
``benchmarks/beyond.py`` measures both against a full retrain.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._rowsolve import solve_rows
from .base import check_user_items

__all__ = ["fold_in", "summed_embedding"]


def _rows(user_items, n_items: int) -> sp.csr_matrix:
    matrix = check_user_items(user_items)
    if matrix.shape[1] != n_items:
        raise ValueError(f"user_items has {matrix.shape[1]} columns but the model has {n_items} items: pass "
                         "one row per new user over the model's items (shape (n_users, n_items))")
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError("user_items has negative entries: ALS expects r_ui >= 0 (interaction counts or 1.0)")
    matrix.eliminate_zeros()
    return matrix


def fold_in(item_factors, user_items, regularization: float, alpha: float, gram=None) -> np.ndarray:
    """The exact ALS user factors of every row of ``user_items`` against fixed ``item_factors``::

        x_u = (Y^T Y + sum_{i in N(u)} alpha r_ui y_i y_i^T + lambda I)^{-1} sum_{i in N(u)} (1 + alpha r_ui) y_i

    ``user_items``: CSR ``(n_new_users, n_items)``, one row per user (``r_ui >= 0``; 0/1 for positives).
    ``gram``: ``Y^T Y`` if already computed. Returns ``(n_new_users, k)`` in ``item_factors``' dtype
    (float32 for a fitted model); a row without items gets the zero vector. Solved in float64, all rows
    at once (:func:`mflib.models._rowsolve.solve_rows`).
    """
    factors = np.asarray(item_factors)
    if factors.ndim != 2:
        raise ValueError(f"item_factors must be (n_items, k), got shape {factors.shape}")
    if regularization < 0 or alpha < 0:
        raise ValueError("regularization and alpha must be >= 0")
    matrix = _rows(user_items, factors.shape[0])
    fixed = factors.astype(np.float64)
    gram = fixed.T @ fixed if gram is None else np.asarray(gram, dtype=np.float64)
    ratings = matrix.data.astype(np.float64)
    solution = solve_rows(matrix, fixed, alpha * ratings, 1.0 + alpha * ratings, base=gram,
                          ridge=float(regularization))
    dtype = factors.dtype if np.issubdtype(factors.dtype, np.floating) else np.float64
    return solution.astype(dtype)


def summed_embedding(item_factors, user_items) -> np.ndarray:
    """``x_u = sum_{i in N(u)} y_i``: the sum of the factors of the items in each row of ``user_items``.

    Every stored item counts once, whatever its value (a 0/1 row and a row of counts give the same sum).
    Returns ``(n_rows, k)`` in ``item_factors``' dtype.
    """
    factors = np.asarray(item_factors)
    matrix = _rows(user_items, factors.shape[0])
    pattern = sp.csr_matrix((np.ones(matrix.nnz, np.float64), matrix.indices, matrix.indptr), shape=matrix.shape)
    return np.asarray(pattern @ factors.astype(np.float64)).astype(factors.dtype)
