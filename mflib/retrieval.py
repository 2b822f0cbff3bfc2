"""Top-k retrieval over factor vectors: recommendation by inner product, similar items by cosine.

Two engines give the same answers:

* :func:`recommend`, :func:`similar_items`, :func:`topk_inner_product` -- exact, numpy + BLAS. The
  models use these; they are fast enough for every MovieLens variant.
* :class:`FaissIndex` -- faiss-cpu, ``kind="flat"`` (exact) or ``kind="hnsw"`` (approximate, a graph
  index that answers in far less than a full scan); for big catalogues and the HNSW demo.
  :func:`recall_at_k` measures how much of the exact top-k an approximate search finds.

Why inner product, not L2
-------------------------
A matrix-factorization model scores ``score(u, i) = p_u . q_i``. An L2 index ranks by
``||p_u - q_i||^2 = ||p_u||^2 - 2 p_u . q_i + ||q_i||^2``: the ``||q_i||^2`` term rewards items with
*short* vectors, and popular, well-liked items have *long* ones, so an L2 index over raw MF vectors
returns obscure items instead of the model's top scores. Use ``faiss.IndexFlatIP`` (or HNSW with the
inner-product metric). For similar items we normalise the vectors first; on unit vectors cosine,
inner product and L2 all give the same order.

A two-item example: ``p = (1, 0)``, ``q_a = (1, 0)``, ``q_b = (3, 0)``. By inner product ``b`` wins
(3 > 1); by L2 ``a`` wins (``||p - q_a||^2 = 0 < ||p - q_b||^2 = 4``)::

    >>> items = np.array([[1, 0], [3, 0]], dtype=np.float32)
    >>> FaissIndex(items, metric="ip").search([1, 0], k=2)[0]
    array([1, 0])
    >>> FaissIndex(items, metric="l2").search([1, 0], k=2)[0]
    array([0, 1])

:func:`compare_l2_and_inner_product` measures the damage on a whole set of vectors.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

__all__ = ["topk_inner_product", "recommend", "similar_items", "normalize_rows", "FaissIndex",
           "recall_at_k", "compare_l2_and_inner_product"]


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


# --------------------------------------------------------------------------------------------
# faiss indexes
# --------------------------------------------------------------------------------------------
_METRICS = ("ip", "cosine", "l2")
_KINDS = ("flat", "hnsw")


@contextmanager
def _faiss_threads(n_threads: int | None):
    """Run faiss with ``n_threads`` OpenMP threads (``None``: leave faiss' setting alone)."""
    import faiss

    if n_threads is None:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(n_threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _exclusion_matrix(exclude, n_queries: int, n_items: int) -> sp.csr_matrix | None:
    """``exclude`` as a canonical CSR (sorted, no duplicates) with one row per query, or None.

    Accepts a sparse matrix (one row per query: its stored entries are the excluded items) or, for
    convenience, a sequence of item-id arrays, one per query.
    """
    if exclude is None:
        return None
    if sp.issparse(exclude):
        matrix = sp.csr_matrix(exclude, dtype=np.float32, copy=True)
    else:
        rows = [np.asarray(r, dtype=np.int64).ravel() for r in exclude]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        cols = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32),
                                (np.repeat(np.arange(len(rows)), lengths), cols)),
                               shape=(len(rows), n_items))
    if matrix.shape != (n_queries, n_items):
        raise ValueError(f"exclude has shape {matrix.shape}; expected one row per query and one column "
                         f"per item: ({n_queries}, {n_items}). Pass user_items[userids], not the full matrix")
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def _is_excluded(ids: np.ndarray, rows: np.ndarray, exclusion: sp.csr_matrix) -> np.ndarray:
    """``mask[r, j] = ids[r, j] in exclusion[rows[r]]``, vectorised.

    Each (query, item) pair becomes the key ``query * n_items + item``; a canonical CSR lists its keys in
    increasing order, so one ``searchsorted`` answers every membership question.
    """
    n_items = exclusion.shape[1]
    excluded_keys = (np.repeat(np.arange(exclusion.shape[0], dtype=np.int64), np.diff(exclusion.indptr))
                     * n_items + exclusion.indices)
    if len(excluded_keys) == 0:
        return np.zeros(ids.shape, dtype=bool)
    candidate_keys = rows[:, None].astype(np.int64) * n_items + np.maximum(ids, 0)
    position = np.minimum(np.searchsorted(excluded_keys, candidate_keys), len(excluded_keys) - 1)
    return excluded_keys[position] == candidate_keys


class FaissIndex:
    """A faiss index over item vectors, searched with ``search(queries, k, exclude)``.

    Parameters
    ----------
    item_vectors : (n_items, dim) array
        Stored as float32; row ``i`` gets id ``i``.
    metric : ``"ip"``, ``"cosine"`` or ``"l2"``
        ``"ip"`` ranks by ``q . v_i`` (recommendation with MF vectors); ``"cosine"`` normalises items and
        queries and then ranks by inner product, ``q . v_i / (||q|| ||v_i||)`` (similar items); ``"l2"``
        ranks by the squared distance ``||q - v_i||^2``, smallest first -- only here to show why it is
        the wrong choice for raw MF vectors (see the module docstring).
    kind : ``"flat"`` or ``"hnsw"``
        ``"flat"``: exact brute force. ``"hnsw"``: a Hierarchical Navigable Small World graph,
        approximate; measure its quality with :func:`recall_at_k`.
    M : int
        HNSW: neighbours per node in the graph (more = better recall, more memory, slower build).
    ef_construction : int
        HNSW: candidate list size while building (more = better graph, slower build).
    ef_search : int
        HNSW: candidate list size while searching (more = better recall, slower queries); can be
        changed after building through the ``ef_search`` attribute. Keep ``ef_search >= k``: faiss 1.15
        returns at most ``ef_search`` results (``mflib.two_stage`` raises it to the pool size for that reason).
    deterministic : bool
        Build the HNSW graph with one thread. faiss draws node levels from a fixed seed, but a parallel
        build inserts nodes in a timing-dependent order; one thread makes the graph reproducible.

    Scores are float32: inner products, cosine similarities, or squared L2 distances.
    """

    def __init__(self, item_vectors: np.ndarray, metric: str = "ip", kind: str = "flat", M: int = 32,
                 ef_construction: int = 200, ef_search: int = 128, deterministic: bool = True):
        import faiss

        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        vectors = np.asarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"item_vectors must be 2-D (n_items, dim), got shape {vectors.shape}")
        if metric == "cosine":
            vectors = normalize_rows(vectors)
        vectors = np.ascontiguousarray(vectors)
        self.metric, self.kind = metric, kind
        self.n_items, self.dim = vectors.shape
        faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            self.index = faiss.IndexFlat(self.dim, faiss_metric)
        else:
            self.index = faiss.IndexHNSWFlat(self.dim, int(M), faiss_metric)
            self.index.hnsw.efConstruction = int(ef_construction)
            self.ef_search = ef_search
        self.M, self.ef_construction = M, ef_construction
        with _faiss_threads(1 if (deterministic and kind == "hnsw") else None):
            self.index.add(vectors)

    # ---- parameters ----------------------------------------------------------------------------
    @property
    def ef_search(self) -> int | None:
        """HNSW search breadth (``None`` for a flat index)."""
        return int(self.index.hnsw.efSearch) if self.kind == "hnsw" else None

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if self.kind != "hnsw":
            raise AttributeError("ef_search only applies to kind='hnsw'")
        self.index.hnsw.efSearch = int(value)

    @property
    def higher_is_better(self) -> bool:
        """True for ``ip``/``cosine`` (similarities), False for ``l2`` (distances)."""
        return self.metric != "l2"

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        extra = f", M={self.M}, ef_search={self.ef_search}" if self.kind == "hnsw" else ""
        return f"FaissIndex(n_items={self.n_items}, dim={self.dim}, metric={self.metric!r}, kind={self.kind!r}{extra})"

    # ---- search --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items for each query, best first, as ``(ids, scores)``.

        ``queries`` is ``(n_queries, dim)`` (or one ``(dim,)`` vector: then 1-D arrays come back).
        ``exclude`` holds items never to return: a sparse matrix with one row per query (a user's row of
        the training matrix) or a list of item-id arrays. Exclusion is exact: each query asks faiss
        for ``k + 2^b - 1`` results, where ``2^b - 1`` is the smallest such bound on its number of excluded
        items (queries are searched in groups of equal ``b``, so one heavy user does not slow all the
        others), and the excluded items are then dropped. On a flat index the result therefore equals
        the exact top-k of the allowed items; on HNSW it is as good as the graph search.

        ``k`` is capped at the number of items. Where fewer than ``k`` items are allowed (or HNSW finds
        fewer), the tail is padded with id ``-1`` and score ``-inf`` (``+inf`` for ``l2``), as
        :func:`topk_inner_product` does.
        """
        single = np.ndim(queries) == 1
        queries = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {queries.shape[1]}, the index holds {self.dim}-d vectors")
        if self.metric == "cosine":
            queries = normalize_rows(queries)
        n_queries = len(queries)
        k = int(min(k, self.n_items))
        exclusion = _exclusion_matrix(exclude, n_queries, self.n_items)

        ids = np.full((n_queries, k), -1, dtype=np.int64)
        scores = np.full((n_queries, k), np.inf if self.metric == "l2" else -np.inf, dtype=np.float32)
        if k == 0 or n_queries == 0:
            return (ids[0], scores[0]) if single else (ids, scores)
        if exclusion is None:
            groups = [(np.arange(n_queries), k)]
        else:
            # bucket b holds queries with 2^(b-1) <= n_excluded < 2^b; it needs k + 2^b - 1 candidates.
            n_excluded = np.diff(exclusion.indptr)
            bucket = np.ceil(np.log2(n_excluded + 1)).astype(np.int64)
            groups = [(np.flatnonzero(bucket == b), min(self.n_items, k + (1 << int(b)) - 1))
                      for b in np.unique(bucket)]
        for rows, n_fetch in groups:
            found_scores, found_ids = self.index.search(queries[rows], n_fetch)
            invalid = found_ids < 0
            if exclusion is not None:
                invalid |= _is_excluded(found_ids, rows, exclusion)
            keep = np.argsort(invalid, axis=1, kind="stable")[:, :k]  # valid first, faiss order kept
            valid = ~np.take_along_axis(invalid, keep, axis=1)
            ids[rows] = np.where(valid, np.take_along_axis(found_ids, keep, axis=1), -1)
            scores[rows] = np.where(valid, np.take_along_axis(found_scores, keep, axis=1), scores[rows])
        return (ids[0], scores[0]) if single else (ids, scores)

    def similar_items(self, itemids, N: int = 10, include_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``N`` nearest stored items to stored item(s) ``itemids`` (use ``metric="cosine"``).

        The query item is excluded unless ``include_self``. A scalar id gives 1-D arrays.
        """
        scalar = np.ndim(itemids) == 0
        itemids = np.atleast_1d(np.asarray(itemids, dtype=np.int64))
        queries = self.index.reconstruct_batch(itemids)
        exclude = None if include_self else sp.csr_matrix(
            (np.ones(len(itemids), dtype=np.float32), (np.arange(len(itemids)), itemids)),
            shape=(len(itemids), self.n_items))
        ids, scores = self.search(queries, N, exclude=exclude)
        return (ids[0], scores[0]) if scalar else (ids, scores)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Recall of an approximate search against the exact one:

    ``sum_q |approx_q ∩ exact_q| / sum_q |exact_q|``, with padding ids (``-1``) ignored on both sides.
    With ``k`` results per query that is the mean over queries of the fraction of the true top-k found.
    (Not :func:`mflib.metrics.recall_at_k`, which scores recommendations against held-out test items.)
    """
    approx_ids = np.atleast_2d(np.asarray(approx_ids, dtype=np.int64))
    exact_ids = np.atleast_2d(np.asarray(exact_ids, dtype=np.int64))
    if len(approx_ids) != len(exact_ids):
        raise ValueError(f"{len(approx_ids)} approximate rows vs {len(exact_ids)} exact rows")
    width = int(max(approx_ids.max(initial=0), exact_ids.max(initial=0))) + 1
    rows = np.arange(len(exact_ids), dtype=np.int64)[:, None] * width
    approx_keys = np.unique((rows + approx_ids)[approx_ids >= 0])
    exact_keys = (rows + exact_ids)[exact_ids >= 0]
    if len(exact_keys) == 0:
        return float("nan")
    return float(np.isin(exact_keys, approx_keys, assume_unique=False).mean())


def compare_l2_and_inner_product(queries: np.ndarray, item_vectors: np.ndarray, k: int = 10) -> dict[str, float]:
    """How much of the exact inner-product top-``k`` a faiss L2 index and a faiss IP index recover.

    Both indexes hold the same raw vectors. Returns ``{"l2": recall, "ip": recall}``
    (:func:`recall_at_k` against :func:`topk_inner_product`). On MF vectors, whose norms differ, ``"l2"``
    is far below 1 -- ``||q - v||^2`` penalises long item vectors -- while ``"ip"`` is 1.
    """
    exact_ids, _ = topk_inner_product(queries, item_vectors, k)
    return {metric: recall_at_k(FaissIndex(item_vectors, metric=metric).search(queries, k)[0], exact_ids)
            for metric in ("l2", "ip")}
