"""Evaluation metrics, vectorised over all users at once.

Rating prediction: :func:`rmse`, :func:`mae`.

Ranking (``recommended`` is an ``(n_users, k)`` array of item ids, best first, ``-1`` for padding;
``test`` is the users x items CSR of held-out positives, one row per row of ``recommended``):

* ``hits[u, j] = 1`` if ``recommended[u, j]`` is a test positive of ``u``;
* precision@k (per user)   ``P_u = sum_j hits[u, j] / k``
* recall@k                 ``R_u = sum_j hits[u, j] / |T_u|``
* NDCG@k                   ``DCG_u / IDCG_u`` with ``DCG_u = sum_j hits[u, j] / log2(j + 2)`` and
  ``IDCG_u = sum_{j < min(k, |T_u|)} 1 / log2(j + 2)``
* AP@k                     ``sum_j hits[u, j] * P_u@(j+1) / min(k, |T_u|)``  (MAP@k is its mean)
* hit rate@k               ``1[sum_j hits[u, j] > 0]``

Each is averaged over the users with at least one test positive (users with ``|T_u| = 0`` are skipped:
their metrics are undefined). This is *per-user* (macro) averaging. implicit's
``precision_at_k`` is *micro*-averaged instead: ``sum_u hits_u / sum_u min(k, |T_u|)``; we provide it
as :func:`precision_at_k_micro` so the two can be compared.

Similar-item quality: :func:`genre_jaccard` (mean Jaccard overlap of genre sets between an item and its
top-k neighbours), with :func:`random_genre_jaccard` as the baseline of random vectors.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "rmse", "mae", "hits_matrix", "precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k",
    "hit_rate_at_k", "precision_at_k_micro", "ranking_metrics", "auc", "coverage",
    "genre_jaccard", "random_genre_jaccard",
]


# ---- rating prediction ---------------------------------------------------------------------------
def rmse(y_true, y_pred) -> float:
    """``sqrt(mean((y - y_hat)^2))``."""
    y_true, y_pred = _same_length(y_true, y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true, y_pred) -> float:
    """``mean(|y - y_hat|)``."""
    y_true, y_pred = _same_length(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def _same_length(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"y_true has {a.size} values but y_pred has {b.size}")
    if a.size == 0:
        raise ValueError("no values to compare")
    return a, b


# ---- ranking ------------------------------------------------------------------------------------
def hits_matrix(recommended: np.ndarray, test: sp.csr_matrix) -> np.ndarray:
    """``hits[u, j] = 1.0`` if ``recommended[u, j]`` is in row ``u`` of ``test`` (vectorised lookup)."""
    recommended = np.atleast_2d(np.asarray(recommended, dtype=np.int64))
    test = sp.csr_matrix(test)
    if test.shape[0] != recommended.shape[0]:
        raise ValueError(f"recommended has {recommended.shape[0]} rows but test has {test.shape[0]}: "
                         "pass one test row per recommended row")
    n_items = test.shape[1]
    valid = (recommended >= 0) & (recommended < n_items)
    rows = np.repeat(np.arange(recommended.shape[0]), recommended.shape[1])
    cols = np.where(valid, recommended, 0).ravel()
    found = np.asarray(test.astype(bool)[rows, cols]).ravel().reshape(recommended.shape)
    return (found & valid).astype(np.float64)


def _test_counts(test: sp.csr_matrix) -> np.ndarray:
    return np.diff(sp.csr_matrix(test).indptr)


def _per_user(recommended, test, k):
    recommended = np.atleast_2d(np.asarray(recommended))[:, :k]
    hits = hits_matrix(recommended, test)
    n_test = _test_counts(test)
    users = n_test > 0
    return hits[users], n_test[users], recommended.shape[1]


def precision_at_k(recommended, test, k: int = 10) -> float:
    """Mean over users with a test positive of ``hits@k / k``."""
    hits, _, k = _per_user(recommended, test, k)
    return float(hits.sum(1).mean() / k) if len(hits) else 0.0


def precision_at_k_micro(recommended, test, k: int = 10) -> float:
    """implicit's definition: ``sum_u hits_u / sum_u min(k, |T_u|)``."""
    hits, n_test, k = _per_user(recommended, test, k)
    denominator = np.minimum(k, n_test).sum()
    return float(hits.sum() / denominator) if denominator else 0.0


def recall_at_k(recommended, test, k: int = 10) -> float:
    """Mean over users with a test positive of ``hits@k / |T_u|``."""
    hits, n_test, _ = _per_user(recommended, test, k)
    return float((hits.sum(1) / n_test).mean()) if len(hits) else 0.0


def ndcg_at_k(recommended, test, k: int = 10) -> float:
    """Mean over users with a test positive of ``DCG@k / IDCG@k`` (binary relevance, log2 discount)."""
    hits, n_test, k = _per_user(recommended, test, k)
    if not len(hits):
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_test, k) - 1]
    return float((dcg / ideal).mean())


def map_at_k(recommended, test, k: int = 10) -> float:
    """Mean over users of ``sum_j hits_j * precision@(j+1) / min(k, |T_u|)``."""
    hits, n_test, k = _per_user(recommended, test, k)
    if not len(hits):
        return 0.0
    precision_at_each = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return float(((hits * precision_at_each).sum(1) / np.minimum(n_test, k)).mean())


def hit_rate_at_k(recommended, test, k: int = 10) -> float:
    """Share of users with a test positive that get at least one hit in their top ``k``."""
    hits, _, _ = _per_user(recommended, test, k)
    return float((hits.sum(1) > 0).mean()) if len(hits) else 0.0


def ranking_metrics(recommended, test, k: int = 10) -> dict[str, float]:
    """All ranking metrics at ``k`` in one dict."""
    return {f"precision@{k}": precision_at_k(recommended, test, k),
            f"recall@{k}": recall_at_k(recommended, test, k),
            f"ndcg@{k}": ndcg_at_k(recommended, test, k),
            f"map@{k}": map_at_k(recommended, test, k),
            f"hit_rate@{k}": hit_rate_at_k(recommended, test, k)}


def auc(scores: np.ndarray, test: sp.csr_matrix, exclude: sp.csr_matrix | None = None) -> float:
    """Mean per-user AUC: the probability that a test positive outscores a random non-positive item.

    ``scores`` is the dense ``(n_users, n_items)`` score matrix; items in ``exclude`` (e.g. train
    positives) count as neither positive nor negative. Ties count one half. Rank-based, vectorised.
    """
    scores = np.asarray(scores, dtype=np.float64).copy()
    test = sp.csr_matrix(test, dtype=bool)
    positive = test.toarray()
    eligible = np.ones_like(positive)
    if exclude is not None:
        eligible &= ~sp.csr_matrix(exclude, dtype=bool).toarray() | positive
    from scipy.stats import rankdata

    scores[~eligible] = -np.inf
    ranks = rankdata(scores, axis=1)  # average ranks handle ties
    n_pos = positive.sum(1)
    n_neg = eligible.sum(1) - n_pos
    n_excluded = (~eligible).sum(1)
    users = (n_pos > 0) & (n_neg > 0)
    # sum of positives' ranks among eligible items = raw rank sum minus the excluded items below them
    rank_sum = (ranks * positive).sum(1) - n_pos * n_excluded
    u_stat = rank_sum - n_pos * (n_pos + 1) / 2
    return float((u_stat[users] / (n_pos[users] * n_neg[users])).mean())


def coverage(recommended, n_items: int) -> float:
    """Catalogue coverage: share of all items that appear in at least one user's list."""
    recommended = np.asarray(recommended).ravel()
    return float(len(np.unique(recommended[recommended >= 0])) / n_items)


# ---- similar items ------------------------------------------------------------------------------
def genre_jaccard(neighbours: np.ndarray, genres: sp.csr_matrix, items=None) -> float:
    """Mean Jaccard overlap ``|G_i & G_j| / |G_i | G_j|`` between each query item ``i`` (rows of
    ``neighbours``, or ``items`` when given) and each of its neighbours ``j``; ``genres`` is the
    items x genres binary matrix (``Dataset.genre_matrix()``). Padding ids ``-1`` are skipped."""
    neighbours = np.atleast_2d(np.asarray(neighbours, dtype=np.int64))
    items = np.arange(len(neighbours)) if items is None else np.asarray(items, dtype=np.int64)
    dense = sp.csr_matrix(genres).toarray().astype(bool)
    valid = neighbours >= 0
    query = dense[items][:, None, :]
    other = dense[np.where(valid, neighbours, 0)]
    intersection = (query & other).sum(-1)
    union = (query | other).sum(-1)
    jaccard = np.where(union > 0, intersection / np.maximum(union, 1), 0.0)
    return float(jaccard[valid].mean())


def random_genre_jaccard(genres: sp.csr_matrix, items, k: int = 10, factors: int = 64,
                         random_state: int = 0) -> float:
    """The baseline: genre Jaccard of cosine neighbours from random Gaussian item vectors."""
    from .retrieval import similar_items

    rng = np.random.default_rng(random_state)
    vectors = rng.standard_normal((genres.shape[0], factors)).astype(np.float32)
    neighbours, _ = similar_items(vectors, items, N=k)
    return genre_jaccard(neighbours, genres, items)
