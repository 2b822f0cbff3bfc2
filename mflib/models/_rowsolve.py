"""Batched per-row normal equations over a sparse matrix: no Python loop over users or items.

Both :mod:`mflib.models._foldin` (ALS fold-in) and :mod:`mflib.models.explicit_als` solve, for every row
``u`` of a sparse ``rows x columns`` matrix, a small ridge regression on the fixed vectors ``f_j`` of the
row's stored columns ``N(u)``::

    A_u = base + sum_{j in N(u)} w_uj f_j f_j^T + ridge_u I        b_u = sum_{j in N(u)} t_uj f_j

``base`` (a ``d x d`` matrix shared by every row, e.g. ``Y^T Y + lambda I``), the per-entry weights ``w``
and targets ``t`` and the per-row ``ridge_u`` are the caller's. :func:`solve_rows` returns every ``x_u =
A_u^{-1} b_u``.

How: rows are sorted by their number of entries ``n_u`` and grouped by ``n_u`` rounded up (at most 12.5%
padding, as :class:`mflib.models.als.SolverPlan` does). A group of ``n`` rows of padded length ``L`` is one
``(n, L, d)`` block ``G`` of gathered ``f_j`` (padding slots have weight and target 0), so the group's
systems are two batched products, ``A = G^T diag(w) G`` and ``b = G^T t``, and one batched
``np.linalg.solve``. The Python loop runs over groups and memory-bounded chunks of them (a few dozen on
MovieLens), never over rows. Everything is float64: the systems are small and the solve is the exact
least-squares answer the tests compare against ``np.linalg.lstsq``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["padded_lengths", "row_groups", "solve_rows"]

# Elements per chunk of gathered vectors (n * L * d) and of systems (n * d * d): a few MB each.
_CHUNK_ELEMENTS = 1 << 19


def padded_lengths(counts: np.ndarray) -> np.ndarray:
    """Each count rounded up to a multiple of ``2**floor(log2 count) / 8`` (at most 12.5% padding); 0 stays 0."""
    counts = np.asarray(counts, dtype=np.int64)
    step = np.maximum(1, (1 << np.floor(np.log2(np.maximum(counts, 1))).astype(np.int64)) // 8)
    return np.where(counts > 0, -(-counts // step) * step, 0)


def row_groups(indptr: np.ndarray, dim: int):
    """``(rows, length)`` chunks: row indices whose entries fit in ``length`` slots, bounded in memory.

    Every row with at least one entry appears in exactly one chunk; rows without entries in none.
    """
    counts = np.diff(indptr)
    lengths = padded_lengths(counts)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    sorted_lengths = lengths[order]
    bounds = np.flatnonzero(np.diff(sorted_lengths)) + 1
    for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(order)]])):
        if hi <= lo:
            continue
        length = int(sorted_lengths[lo])
        per_chunk = max(1, _CHUNK_ELEMENTS // max(length * dim, dim * dim))
        for start in range(int(lo), int(hi), per_chunk):
            yield order[start:min(int(hi), start + per_chunk)], length


def solve_rows(matrix: sp.csr_matrix, fixed: np.ndarray, weights: np.ndarray, targets: np.ndarray,
               base: np.ndarray | None = None, ridge: np.ndarray | float = 0.0) -> np.ndarray:
    """``x_u = (base + sum_j w_uj f_j f_j^T + ridge_u I)^{-1} sum_j t_uj f_j`` for every row ``u``.

    Parameters
    ----------
    matrix : CSR ``(n_rows, n_columns)``
        Its sparsity pattern says which columns ``j`` belong to row ``u`` (indices must be sorted or not,
        it does not matter; duplicates count twice).
    fixed : ``(n_columns, d)``
        ``f_j``, the fixed vectors.
    weights, targets : arrays aligned with ``matrix.data`` (one value per stored entry).
    base : ``(d, d)`` or None
        Added to every row's system.
    ridge : float or ``(n_rows,)``
        ``ridge_u``, added to the diagonal.

    Returns ``(n_rows, d)`` float64. A row without entries has ``b_u = 0`` and gets ``x_u = 0`` (the
    solution whenever its system is regular; with ``base = 0, ridge_u = 0`` it is the minimum-norm one).
    """
    matrix = sp.csr_matrix(matrix)
    fixed = np.asarray(fixed, dtype=np.float64)
    n_rows, d = matrix.shape[0], fixed.shape[1]
    weights = np.asarray(weights, dtype=np.float64).ravel()
    targets = np.asarray(targets, dtype=np.float64).ravel()
    if len(weights) != matrix.nnz or len(targets) != matrix.nnz:
        raise ValueError(f"weights and targets need one value per stored entry ({matrix.nnz}), got "
                         f"{len(weights)} and {len(targets)}")
    if fixed.shape[0] != matrix.shape[1]:
        raise ValueError(f"fixed has {fixed.shape[0]} rows but the matrix has {matrix.shape[1]} columns: "
                         "one fixed vector per column (was the matrix transposed?)")
    ridge = np.broadcast_to(np.asarray(ridge, dtype=np.float64), (n_rows,))
    base = np.zeros((d, d)) if base is None else np.asarray(base, dtype=np.float64)
    solution = np.zeros((n_rows, d))
    indptr, indices = matrix.indptr, matrix.indices
    eye = np.eye(d)
    for rows, length in row_groups(indptr, d):
        n = len(rows)
        starts, counts = indptr[rows], indptr[rows + 1] - indptr[rows]
        slot = np.arange(length)
        valid = slot[None, :] < counts[:, None]                       # (n, L): real entry or padding
        entry = np.where(valid, starts[:, None] + slot[None, :], 0)
        gathered = fixed[indices[entry]]                              # (n, L, d)
        w = np.where(valid, weights[entry], 0.0)
        t = np.where(valid, targets[entry], 0.0)
        systems = np.matmul(gathered.transpose(0, 2, 1) * w[:, None, :], gathered)   # G^T diag(w) G
        systems += base
        systems += ridge[rows, None, None] * eye
        rhs = np.matmul(t[:, None, :], gathered)[:, 0, :]              # G^T t
        try:
            solution[rows] = np.linalg.solve(systems, rhs[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError as error:
            raise np.linalg.LinAlgError(
                f"a row's normal equations are singular (rows with {length} padded entries): use "
                "regularization > 0, or fewer factors than the rows have entries") from error
    return solution
