"""Top-k retrieval over factor vectors with faiss: recommendation by inner product, similar items by cosine.

Why inner product, not L2
-------------------------
A matrix-factorization model scores ``score(u, i) = p_u . q_i``. An L2 index ranks by
``||p_u - q_i||^2 = ||p_u||^2 - 2 p_u . q_i + ||q_i||^2``: the ``||q_i||^2`` term rewards items with
*short* vectors, and popular, well-liked items have *long* ones, so an L2 index over raw MF vectors
returns obscure items instead of the model's top scores. Use ``faiss.IndexFlatIP`` (or HNSW with the
inner-product metric). For similar items we normalise the vectors first; on unit vectors cosine,
inner product and L2 all give the same order.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["topk_inner_product", "recommend", "similar_items", "normalize_rows"]


def normalize_rows(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``v / ||v||`` row by row (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, eps)


def topk_inner_product(queries: np.ndarray, items: np.ndarray, k: int,
                       exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of ``queries @ items.T`` per row; ``exclude`` (CSR, one row per query) masks items.

    Returns ``(ids, scores)`` of shape ``(n_queries, k)``, best first. Where fewer than ``k`` items are
    allowed, the tail is padded with id ``-1`` and score ``-inf``.
    Dense scoring with BLAS in blocks of queries; ``argpartition`` then a sort of the ``k`` winners.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    items = np.asarray(items, dtype=np.float32)
    n_items = items.shape[0]
    k = int(min(k, n_items))
    ids = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    block = max(1, min(len(queries), (1 << 24) // max(n_items, 1)))
    for start in range(0, len(queries), block):
        stop = min(start + block, len(queries))
        block_scores = queries[start:stop] @ items.T
        if exclude is not None:
            rows = exclude[start:stop].tocoo()
            block_scores[rows.row, rows.col] = -np.inf
        top = np.argpartition(-block_scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(block_scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ids[start:stop] = np.take_along_axis(top, order, axis=1)
        scores[start:stop] = np.take_along_axis(top_scores, order, axis=1)
    ids[~np.isfinite(scores)] = -1
    return ids, scores


def recommend(user_vectors: np.ndarray, item_vectors: np.ndarray, user_items: sp.csr_matrix | None,
              N: int = 10, filter_already_liked_items: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-``N`` items by ``p_u . q_i`` for each row of ``user_vectors``; ``user_items`` holds one row
    per user (as in implicit) and its items are excluded when ``filter_already_liked_items``."""
    exclude = user_items if (filter_already_liked_items and user_items is not None) else None
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape[0] != np.atleast_2d(user_vectors).shape[0]:
            raise ValueError(f"user_items has {exclude.shape[0]} rows for {np.atleast_2d(user_vectors).shape[0]} "
                             "users: pass one row per requested user, e.g. user_items[userids]")
    return topk_inner_product(user_vectors, item_vectors, N, exclude)


def similar_items(item_vectors: np.ndarray, itemids, N: int = 10,
                  include_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-``N`` items by cosine similarity to each item in ``itemids`` (2-D arrays).

    Unlike implicit, the query item is left out unless ``include_self=True`` (then it comes first).
    """
    unit = normalize_rows(item_vectors)
    itemids = np.atleast_1d(np.asarray(itemids, dtype=np.int64))
    extra = 0 if include_self else 1
    ids, scores = topk_inner_product(unit[itemids], unit, N + extra)
    if include_self:
        return ids, scores
    keep = ids != itemids[:, None]
    # drop the query wherever it landed (first, or tied further down); keep N others in order
    order = np.argsort(~keep, axis=1, kind="stable")[:, :N]
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
