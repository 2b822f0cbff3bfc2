"""Two-stage retrieval: an approximate candidate pool from a faiss HNSW index, then an exact re-rank.

A production recommender rarely scores every item with its best model for every request. It splits
the work:

1. **Candidate generation** (stage 1): a cheap model whose score is an inner product ``u . v_i`` of small
   vectors, searched with an approximate nearest-neighbour index (faiss HNSW, :class:`mflib.retrieval.
   FaissIndex`), returns a *pool* of ``P`` candidates per user (her already-seen items excluded). Its
   quality is the **candidate recall**: the share of the items we want (held-out positives) that made it
   into the pool (:func:`candidate_recall`). Nothing outside the pool can ever be recommended.
2. **Re-ranking** (stage 2): the expensive model scores only the ``P`` candidates (:func:`rerank` for a
   factor model, :func:`rerank_with` for any ``score(users, items)`` function, e.g. a factorization
   machine on feature rows) and the best ``N`` are shown.

The cost of a request falls from ``n_items`` expensive scores to ``P``, plus an index search; the price is
that stage 2 can only fix the *order* of what stage 1 found. :func:`measure_two_stage` measures both
sides per pool size: candidate recall, NDCG@10 after re-ranking against scoring every item with the
stage-2 model ("exact full scoring"), and the latency per user (one request at a time).

A faiss detail: an HNSW search returns at most ``efSearch`` results (faiss 1.15 does not raise it to ``k``),
so :func:`candidate_pool` raises the index's ``ef_search`` to the number of results it fetches.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import metrics
from .retrieval import FaissIndex, recall_at_k, topk_inner_product

__all__ = ["candidate_pool", "candidate_recall", "rerank", "rerank_with", "full_scoring", "measure_two_stage",
           "TwoStageResult"]


@contextmanager
def _wide_enough(index: FaissIndex, n_results: int):
    """Temporarily raise an HNSW index's ``ef_search`` to at least ``n_results``."""
    if index.kind != "hnsw" or index.ef_search >= n_results:
        yield
        return
    previous = index.ef_search
    index.ef_search = n_results
    try:
        yield
    finally:
        index.ef_search = previous


def candidate_pool(index: FaissIndex, query_vectors, seen, pool_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: ``pool_size`` candidates per query from ``index``, the items of ``seen`` (CSR, one row per
    query) excluded; ``(ids, stage-1 scores)`` of shape ``(n_queries, pool_size)``, padded with ``-1``
    where the index finds fewer."""
    seen = sp.csr_matrix(seen)
    most_seen = int(np.diff(seen.indptr).max(initial=0))
    # FaissIndex.search fetches pool_size + 2^b - 1 results for a query with < 2^b excluded items
    fetched = pool_size + (1 << int(np.ceil(np.log2(most_seen + 1)))) - 1
    with _wide_enough(index, fetched):
        return index.search(np.asarray(query_vectors, np.float32), pool_size, exclude=seen)


def candidate_recall(candidates, test) -> float:
    """Mean over users with at least one test positive of ``|pool_u ∩ test_u| / |test_u|`` (padding ``-1``
    ignored): how much of what we want stage 1 lets through. ``candidates``: ``(n_users, P)`` ids, one
    row per row of ``test`` (CSR)."""
    return metrics.recall_at_k(np.asarray(candidates), test, np.shape(candidates)[1])


def rerank(candidates, user_vectors, item_vectors, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2 for a factor model: score each candidate exactly, ``s = user_vectors[u] . item_vectors[i]``,
    and keep the best ``N`` per user (``(ids, scores)``, best first). ``candidates`` is ``(n_users, P)``
    with ``-1`` padding (never returned: where fewer than ``N`` candidates are valid the tail is ``-1``
    with score ``-inf``); ``user_vectors`` has one row per row of ``candidates``."""
    candidates = np.asarray(candidates, dtype=np.int64)
    dtype = np.result_type(np.asarray(user_vectors).dtype, np.asarray(item_vectors).dtype, np.float32)
    users = np.asarray(user_vectors, dtype=dtype)                     # float32 factors stay float32
    items = np.asarray(item_vectors, dtype=dtype)
    gathered = items[np.maximum(candidates, 0)]                      # (n_users, P, k)
    scores = np.matmul(gathered, users[:, :, None])[:, :, 0]         # s_ui for every candidate
    return _top(candidates, scores, N)


def rerank_with(candidates, score, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2 for any model: ``score(rows, items)`` gets the flat arrays of (row of ``candidates``, item)
    pairs of every valid candidate and returns one score per pair (e.g. a factorization machine on the
    feature rows of those pairs). Returns the best ``N`` per row, as :func:`rerank`."""
    candidates = np.asarray(candidates, dtype=np.int64)
    valid = candidates >= 0
    rows = np.broadcast_to(np.arange(len(candidates))[:, None], candidates.shape)
    scores = np.full(candidates.shape, -np.inf, dtype=np.float64)
    scores[valid] = np.asarray(score(rows[valid], candidates[valid]), dtype=np.float64)
    return _top(candidates, scores, N)


def _top(candidates, scores, N):
    scores = np.where(candidates >= 0, scores, -np.inf)
    N = min(N, candidates.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :N]
    top_scores = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isfinite(top_scores), np.take_along_axis(candidates, order, axis=1), -1)
    return ids, top_scores


def full_scoring(user_vectors, item_vectors, seen, N: int = 10) -> np.ndarray:
    """Exact top-``N`` ids of the stage-2 factor model over *every* item (``seen`` excluded)."""
    return topk_inner_product(user_vectors, item_vectors, N, exclude=sp.csr_matrix(seen))[0]


@dataclass
class TwoStageResult:
    """What :func:`measure_two_stage` measured: one row per pool size and the full-scoring reference."""

    pool_sizes: list = field(default_factory=list)
    candidate_recall: list = field(default_factory=list)   # test positives in the pool
    exact_top_recall: list = field(default_factory=list)   # stage-2 model's exact top-N in the pool
    ndcg: list = field(default_factory=list)               # NDCG@N after re-ranking
    latency_ms: list = field(default_factory=list)         # per user: index search + re-rank
    full_ndcg: float = float("nan")                         # NDCG@N of exact full scoring
    full_latency_ms: float = float("nan")                   # per user: score every item, top-N
    stage1_ndcg: float = float("nan")                       # stage 1 alone (its own top-N)

    def rows(self) -> list[dict]:
        return [{"pool": p, "candidate recall": r, "exact top-N in pool": e, "NDCG@10": n, "ms/user": t}
                for p, r, e, n, t in zip(self.pool_sizes, self.candidate_recall, self.exact_top_recall,
                                         self.ndcg, self.latency_ms)]


def _per_user_ms(function, n_users: int, repeats: int) -> float:
    """Median over ``repeats`` runs of the mean time per user of ``function(u)`` for every user, in ms."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for u in range(n_users):
            function(u)
        runs.append((time.perf_counter() - start) / max(n_users, 1) * 1e3)
    return float(np.median(runs))


def measure_two_stage(index: FaissIndex, stage1_vectors, stage2_users, stage2_items, seen, test,
                      pool_sizes=(10, 20, 50, 100, 200), N: int = 10, score=None, timed_users: int = 200,
                      repeats: int = 3) -> TwoStageResult:
    """Candidate recall, NDCG@N after re-ranking and latency per user, for every pool size.

    ``index`` holds the stage-1 item vectors, ``stage1_vectors`` the users' stage-1 vectors,
    ``stage2_users`` / ``stage2_items`` the stage-2 factor model (or pass ``score``, a
    ``score(users, items)`` function over flat pairs of *user ids*, and ``stage2_users=None``); every
    user array has one row per row of ``seen`` and ``test`` (CSR). Latency: one user per request, the
    first ``timed_users`` users, median of ``repeats`` runs (one core, noisy on a shared machine).
    """
    seen, test = sp.csr_matrix(seen), sp.csr_matrix(test)
    n_users = seen.shape[0]
    timed = min(timed_users, n_users)

    def stage2(candidates, rows):
        if score is None:
            return rerank(candidates, stage2_users[rows], stage2_items, N)
        return rerank_with(candidates, lambda r, items: score(rows[r], items), N)

    result = TwoStageResult()
    everyone = np.arange(n_users)
    if score is None:
        exact = full_scoring(stage2_users, stage2_items, seen, N)
        full_one = lambda u: full_scoring(stage2_users[u:u + 1], stage2_items, seen[u], N)  # noqa: E731
    else:  # every unseen item is a candidate; blocks of users bound the number of scored pairs
        all_items = np.arange(seen.shape[1])
        every_item = lambda rows: np.where(seen[rows].toarray() > 0, -1, all_items)  # noqa: E731
        block = max(1, (1 << 18) // max(len(all_items), 1))
        exact = np.vstack([stage2(every_item(everyone[s:s + block]), everyone[s:s + block])[0]
                           for s in range(0, n_users, block)])
        full_one = lambda u: stage2(every_item(everyone[u:u + 1]), everyone[u:u + 1])  # noqa: E731
    result.full_ndcg = metrics.ndcg_at_k(exact, test, N)
    result.full_latency_ms = _per_user_ms(full_one, timed, repeats)
    stage1_top = candidate_pool(index, stage1_vectors, seen, N)[0]
    result.stage1_ndcg = metrics.ndcg_at_k(stage1_top, test, N)
    for pool in pool_sizes:
        candidates, _ = candidate_pool(index, stage1_vectors, seen, pool)
        top, _ = stage2(candidates, everyone)
        result.pool_sizes.append(int(pool))
        result.candidate_recall.append(candidate_recall(candidates, test))
        result.exact_top_recall.append(_overlap(candidates, exact))
        result.ndcg.append(metrics.ndcg_at_k(top, test, N))
        result.latency_ms.append(_per_user_ms(
            lambda u: stage2(candidate_pool(index, stage1_vectors[u:u + 1], seen[u], pool)[0], everyone[u:u + 1]),
            timed, repeats))
    return result


def _overlap(candidates, exact) -> float:
    """Share of the ``exact`` ids (padding ignored) found in the same row of ``candidates``."""
    return recall_at_k(candidates, exact)
