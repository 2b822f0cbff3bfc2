"""Benchmark data and baselines that are not part of the library.

* :func:`synthetic_implicit`: an ML-1M-shaped random 0/1 matrix (power-law items, log-normal users), for
  timing ALS at a size ML-100K does not reach;
* :func:`naive_als_spsolve`: the classic tutorial ALS loop, one ``scipy.sparse.linalg.spsolve`` per user
  and per item, the slow baseline of ``benchmarks/bench.py``.

Used by ``benchmarks/bench.py`` and by the ALS tests (``tests/test_als.py`` puts this folder on ``sys.path``).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mflib.models.base import check_user_items

__all__ = ["synthetic_implicit", "naive_als_spsolve"]


def synthetic_implicit(n_users: int = 6040, n_items: int = 3706, nnz: int = 575_000,
                       random_state=0) -> sp.csr_matrix:
    """A random 0/1 users x items CSR matrix with exactly ``nnz`` positives, shaped like MovieLens.

    Item popularity follows a power law (``weight_i ~ (rank_i + 20)^-1.1``, ranks shuffled over the item
    ids) and user activity is log-normal (``sigma = 0.9``); cells are drawn with probability
    ``~ activity_u * popularity_i`` and duplicates are dropped until ``nnz`` distinct cells remain. With
    the defaults it matches ML-1M's positives (ratings >= 4): 6,040 x 3,706, 575k cells, the busiest item
    has ~3,600 users and the median one ~60, median user ~70 items.
    """
    if nnz > n_users * n_items:
        raise ValueError(f"nnz={nnz} exceeds the {n_users * n_items} cells")
    rng = np.random.default_rng(random_state)
    item_weight = (np.arange(1, n_items + 1) + 20.0) ** -1.1
    item_weight = item_weight[rng.permutation(n_items)]
    user_weight = rng.lognormal(0.0, 0.9, n_users)
    keys = np.zeros(0, np.int64)
    while len(keys) < nnz:
        draw = int((nnz - len(keys)) * 1.3) + 1000
        users = rng.choice(n_users, draw, p=user_weight / user_weight.sum())
        items = rng.choice(n_items, draw, p=item_weight / item_weight.sum())
        keys = np.concatenate([keys, users.astype(np.int64) * n_items + items])
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)]  # distinct cells, in order of first draw
    keys = keys[:nnz]
    return sp.csr_matrix((np.ones(nnz, np.float32), (keys // n_items, keys % n_items)), shape=(n_users, n_items))


# ---- baseline for the benchmark: the classic per-user spsolve loop -------------------------------------
def naive_als_spsolve(user_items, factors: int = 64, regularization: float = 25.0, alpha: float = 2.0,
                      iterations: int = 15, random_state=0) -> tuple[np.ndarray, np.ndarray]:
    """BASELINE FOR THE BENCHMARK ONLY: implicit ALS the way many tutorials write it, one
    ``scipy.sparse.linalg.spsolve`` per user and per item, with sparse diagonal confidence matrices.

    Same model and convention as :class:`ALS` (``c = 1 + alpha r``); returns ``(user_factors,
    item_factors)``. Slow on purpose: it shows what mflib's vectorised solvers save. Do not use it.
    """
    from scipy.sparse.linalg import spsolve

    matrix = check_user_items(user_items).astype(np.float64)
    rng = np.random.default_rng(random_state)
    n_users, n_items = matrix.shape
    user_factors = rng.standard_normal((n_users, factors)) * 0.01
    item_factors = rng.standard_normal((n_items, factors)) * 0.01

    def half_step(fixed, rows_matrix, solved):
        n_columns = fixed.shape[0]
        fixed_sparse = sp.csr_matrix(fixed)
        gram = fixed_sparse.T @ fixed_sparse
        penalty = regularization * sp.eye(factors)
        for row in range(rows_matrix.shape[0]):
            ratings = rows_matrix[row].toarray().ravel()
            conf_minus_one = sp.diags(alpha * ratings, shape=(n_columns, n_columns))
            pref_conf = (1.0 + alpha * ratings) * (ratings > 0)
            lhs = gram + fixed_sparse.T @ conf_minus_one @ fixed_sparse + penalty
            rhs = fixed_sparse.T @ pref_conf
            solved[row] = spsolve(sp.csc_matrix(lhs), rhs)

    item_users = matrix.T.tocsr()
    for _ in range(iterations):
        half_step(item_factors, matrix, user_factors)
        half_step(user_factors, item_users, item_factors)
    return user_factors.astype(np.float32), item_factors.astype(np.float32)
