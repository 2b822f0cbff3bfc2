"""Retrieval: exact numpy top-k, faiss flat/HNSW indexes, exact exclusion, recall, and why not L2."""
import doctest

import numpy as np
import pytest
import scipy.sparse as sp

import mflib.retrieval
from mflib.retrieval import (FaissIndex, compare_l2_and_inner_product, normalize_rows, recall_at_k, recommend,
                             similar_items, topk_inner_product)

# query (1, 1) scores these items 1, 3, 2, 0 -> order 1, 2, 0, 3
TINY_ITEMS = np.array([[1, 0], [3, 0], [0, 2], [-1, 1]], dtype=np.float32)
TINY_QUERY = np.array([1, 1], dtype=np.float32)


def brute_force(queries, items, k, exclude=None):
    """Reference: full stable argsort of the dense masked score matrix (float64)."""
    scores = np.atleast_2d(queries).astype(np.float64) @ np.asarray(items, dtype=np.float64).T
    if exclude is not None:
        scores[sp.csr_matrix(exclude).toarray() != 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    return np.where(np.isfinite(top), order, -1), top


def random_exclusion(rng, n_queries, n_items):
    """Mostly sparse rows, plus an empty row, a heavy row and a row leaving only 3 items allowed."""
    matrix = sp.random(n_queries, n_items, density=0.05, random_state=np.random.default_rng(rng.integers(1 << 31)),
                       format="lil", dtype=np.float32)
    matrix[0, :] = 0
    matrix[1, rng.choice(n_items, n_items // 2, replace=False)] = 1
    matrix[2, :] = 1
    matrix[2, [5, 17, 42]] = 0
    matrix = sp.csr_matrix(matrix)
    matrix.eliminate_zeros()
    return matrix


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    return items, queries, random_exclusion(rng, len(queries), len(items))


# ---- hand-computed tiny cases ------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["numpy", "faiss"])
def test_tiny_top3_by_inner_product(engine):
    if engine == "numpy":
        ids, scores = topk_inner_product(TINY_QUERY, TINY_ITEMS, 3)
        ids, scores = ids[0], scores[0]
    else:
        ids, scores = FaissIndex(TINY_ITEMS, metric="ip").search(TINY_QUERY, 3)
    np.testing.assert_array_equal(ids, [1, 2, 0])
    np.testing.assert_allclose(scores, [3, 2, 1])


@pytest.mark.parametrize("engine", ["numpy", "faiss"])
def test_tiny_exclusion_and_padding(engine):
    exclude_one = sp.csr_matrix(([1.0], ([0], [1])), shape=(1, 4))
    exclude_three = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 0], [0, 1, 2])), shape=(1, 4))
    if engine == "numpy":
        search = lambda k, ex: [a[0] for a in topk_inner_product(TINY_QUERY, TINY_ITEMS, k, ex)]  # noqa: E731
    else:
        index = FaissIndex(TINY_ITEMS, metric="ip")
        search = lambda k, ex: index.search(TINY_QUERY, k, exclude=ex)  # noqa: E731
    ids, scores = search(3, exclude_one)
    np.testing.assert_array_equal(ids, [2, 0, 3])
    np.testing.assert_allclose(scores, [2, 1, 0])
    ids, scores = search(3, exclude_three)  # only item 3 is allowed
    np.testing.assert_array_equal(ids, [3, -1, -1])
    assert scores[0] == 0 and np.all(np.isneginf(scores[1:]))


@pytest.mark.parametrize("engine", ["numpy", "faiss"])
def test_k_larger_than_catalogue_is_capped(engine):
    if engine == "numpy":
        ids = topk_inner_product(TINY_QUERY, TINY_ITEMS, 10)[0][0]
    else:
        ids = FaissIndex(TINY_ITEMS).search(TINY_QUERY, 10)[0]
    np.testing.assert_array_equal(ids, [1, 2, 0, 3])


def test_l2_padding_is_plus_infinity():
    exclude = [np.array([0, 1, 2])]
    ids, scores = FaissIndex(TINY_ITEMS, metric="l2").search(TINY_QUERY[None], 2, exclude=exclude)
    # ||(1,1) - (-1,1)||^2 = 4
    np.testing.assert_array_equal(ids, [[3, -1]])
    assert scores[0, 0] == pytest.approx(4.0) and np.isposinf(scores[0, 1])


# ---- equality with brute force -----------------------------------------------------------------
@pytest.mark.parametrize("with_exclusion", [False, True])
def test_numpy_and_faiss_flat_equal_brute_force(vectors, with_exclusion):
    items, queries, exclusion = vectors
    exclude = exclusion if with_exclusion else None
    expected_ids, expected_scores = brute_force(queries, items, 10, exclude)
    numpy_ids, numpy_scores = topk_inner_product(queries, items, 10, exclude)
    faiss_ids, faiss_scores = FaissIndex(items, metric="ip", kind="flat").search(queries, 10, exclude=exclude)
    for ids, scores in [(numpy_ids, numpy_scores), (faiss_ids, faiss_scores)]:
        assert ids.shape == (len(queries), 10) and scores.dtype == np.float32
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_allclose(scores, expected_scores.astype(np.float32), rtol=1e-5, atol=1e-5)
    if with_exclusion:  # row 2 allows only 3 items: 7 padding slots
        assert (faiss_ids[2] == -1).sum() == 7 and set(faiss_ids[2, :3]) == {5, 17, 42}


def test_scalar_query_gives_the_batch_row(vectors):
    items, queries, exclusion = vectors
    index = FaissIndex(items)
    batch_ids, batch_scores = index.search(queries, 5, exclude=exclusion)
    ids, scores = index.search(queries[3], 5, exclude=exclusion[3])
    assert ids.shape == (5,)
    np.testing.assert_array_equal(ids, batch_ids[3])
    np.testing.assert_array_equal(scores, batch_scores[3])


def test_recommend_matches_brute_force_scalar_and_batch(vectors):
    items, queries, exclusion = vectors
    ids, _ = recommend(queries, items, exclusion, N=10)
    np.testing.assert_array_equal(ids, brute_force(queries, items, 10, exclusion)[0])
    single, _ = recommend(queries[[7]], items, exclusion[[7]], N=10)
    np.testing.assert_array_equal(single[0], ids[7])
    unfiltered, _ = recommend(queries, items, exclusion, N=10, filter_already_liked_items=False)
    np.testing.assert_array_equal(unfiltered, brute_force(queries, items, 10)[0])
    with pytest.raises(ValueError, match="one row per"):
        recommend(queries[:2], items, exclusion, N=10)


def test_exclusion_accepts_id_lists_and_rejects_wrong_shapes(vectors):
    items, queries, exclusion = vectors
    index = FaissIndex(items)
    as_lists = [exclusion[r].indices for r in range(exclusion.shape[0])]
    np.testing.assert_array_equal(index.search(queries, 10, exclude=as_lists)[0],
                                  index.search(queries, 10, exclude=exclusion)[0])
    with pytest.raises(ValueError, match="one row per query"):
        index.search(queries[:5], 10, exclude=exclusion)


def seen_mask(ids, exclusion):
    """True where a returned id is one of that row's excluded items."""
    dense = exclusion.toarray() != 0
    return np.take_along_axis(dense, np.maximum(ids, 0), axis=1) & (ids >= 0)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_exclusion_never_returns_a_seen_item(kind):
    rng = np.random.default_rng(1)
    items = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((200, 8)).astype(np.float32)
    exclusion = sp.csr_matrix(sp.random(200, 500, density=0.3, random_state=np.random.default_rng(2)))
    index = FaissIndex(items, metric="ip", kind=kind)
    ids, scores = index.search(queries, 20, exclude=exclusion)
    assert not seen_mask(ids, exclusion).any()
    # the unfiltered search does return seen items, so the check above can fail
    assert seen_mask(index.search(queries, 20)[0], exclusion).any()
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first


# ---- HNSW --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_vectors():
    rng = np.random.default_rng(42)
    items = rng.standard_normal((2000, 32)).astype(np.float32)
    queries = rng.standard_normal((300, 32)).astype(np.float32)
    return items, queries


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_hnsw_recall_against_exact(big_vectors, metric):
    items, queries = big_vectors
    exact_index = FaissIndex(items, metric=metric, kind="flat")
    hnsw = FaissIndex(items, metric=metric, kind="hnsw", M=16, ef_construction=100, ef_search=64)
    exact_ids, _ = exact_index.search(queries, 10)
    approx_ids, approx_scores = hnsw.search(queries, 10)
    recall = recall_at_k(approx_ids, exact_ids)
    assert 0.9 <= recall <= 1.0
    if metric == "cosine":
        expected, _ = topk_inner_product(normalize_rows(queries), normalize_rows(items), 10)
        assert recall_at_k(exact_ids, expected) == 1.0
        assert np.all(approx_scores <= 1 + 1e-5)


def test_hnsw_is_deterministic_and_ef_search_is_settable(big_vectors):
    items, queries = big_vectors
    first = FaissIndex(items, kind="hnsw", M=8, ef_search=16)
    second = FaissIndex(items, kind="hnsw", M=8, ef_search=16)
    np.testing.assert_array_equal(first.search(queries, 10)[0], second.search(queries, 10)[0])
    first.ef_search = 200
    assert first.ef_search == 200 and FaissIndex(items).ef_search is None


def test_recall_at_k_by_hand():
    assert recall_at_k([[0, 1, 2], [3, 4, 5]], [[0, 1, 9], [3, 7, 8]]) == pytest.approx(3 / 6)
    assert recall_at_k([[2, 1, 0]], [[0, 1, 2]]) == 1.0  # order does not matter
    assert recall_at_k([[0, 5]], [[0, -1]]) == 1.0       # padding ignored
    assert recall_at_k([[-1, -1]], [[4, 6]]) == 0.0


# ---- similar items -----------------------------------------------------------------------------
def test_cosine_similar_items_by_hand():
    # cosines to item 0 (1, 0): item 1 (2, 0) -> 1, item 2 (1, 1) -> 0.707, item 3 (0, 5) -> 0
    items = np.array([[1, 0], [2, 0], [1, 1], [0, 5]], dtype=np.float32)
    ids, scores = similar_items(items, [0], N=2)
    np.testing.assert_array_equal(ids, [[1, 2]])
    np.testing.assert_allclose(scores, [[1, np.sqrt(0.5)]], rtol=1e-6)
    ids, _ = similar_items(items, [0], N=2, include_self=True)
    assert set(ids[0]) == {0, 1}  # item 0 and 1 tie at cosine 1


@pytest.mark.parametrize("engine", ["numpy", "faiss-flat", "faiss-hnsw"])
def test_similar_items_excludes_the_query(vectors, engine):
    items, _, _ = vectors
    queries = np.arange(0, 300, 7)
    if engine == "numpy":
        ids, scores = similar_items(items, queries, N=10)
    else:
        ids, scores = FaissIndex(items, metric="cosine", kind=engine.split("-")[1]).similar_items(queries, N=10)
    assert ids.shape == (len(queries), 10)
    assert not np.any(ids == queries[:, None])
    unit = normalize_rows(items)
    expected, _ = brute_force(unit[queries], unit, 11)
    expected = np.array([row[row != q][:10] for row, q in zip(expected, queries)])
    if engine == "faiss-hnsw":
        assert recall_at_k(ids, expected) >= 0.9
    else:
        np.testing.assert_array_equal(ids, expected)
        np.testing.assert_allclose(scores, np.sum(unit[queries][:, None] * unit[ids], -1), rtol=1e-5, atol=1e-6)


def test_faiss_similar_items_scalar_and_include_self(vectors):
    items, _, _ = vectors
    index = FaissIndex(items, metric="cosine")
    ids, scores = index.similar_items(4, N=5)
    assert ids.shape == (5,) and 4 not in ids
    with_self, self_scores = index.similar_items(4, N=5, include_self=True)
    assert with_self[0] == 4 and self_scores[0] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(with_self[1:], ids[:4])


# ---- why not L2 --------------------------------------------------------------------------------
def test_l2_disagrees_with_inner_product_by_hand():
    # p = (1, 0); q_a = (1, 0) scores 1, q_b = (3, 0) scores 3. L2: ||p - q_a||^2 = 0 < ||p - q_b||^2 = 4
    items = np.array([[1, 0], [3, 0]], dtype=np.float32)
    ids, scores = FaissIndex(items, metric="ip").search([1, 0], 2)
    np.testing.assert_array_equal(ids, [1, 0])
    np.testing.assert_allclose(scores, [3, 1])
    ids, distances = FaissIndex(items, metric="l2").search([1, 0], 2)
    np.testing.assert_array_equal(ids, [0, 1])
    np.testing.assert_allclose(distances, [0, 4])


def test_l2_over_raw_vectors_misses_the_inner_product_top_k():
    rng = np.random.default_rng(3)
    directions = rng.standard_normal((1000, 16)).astype(np.float32)
    norms = rng.lognormal(0.0, 0.6, size=(1000, 1)).astype(np.float32)  # unequal norms, as in MF
    queries = rng.standard_normal((100, 16)).astype(np.float32)
    raw = compare_l2_and_inner_product(queries, directions * norms, k=10)
    assert raw["ip"] == 1.0 and raw["l2"] < 0.5
    # on unit vectors ||q - v||^2 = ||q||^2 + 1 - 2 q.v: L2 and inner product agree
    unit = compare_l2_and_inner_product(queries, normalize_rows(directions), k=10)
    assert unit == {"l2": 1.0, "ip": 1.0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="metric"):
        FaissIndex(TINY_ITEMS, metric="dot")
    with pytest.raises(ValueError, match="kind"):
        FaissIndex(TINY_ITEMS, kind="ivf")
    with pytest.raises(ValueError, match="dimension"):
        FaissIndex(TINY_ITEMS).search(np.ones((1, 3)), 2)
    with pytest.raises(AttributeError):
        FaissIndex(TINY_ITEMS).ef_search = 10


def test_module_docstring_example_runs():
    outcome = doctest.testmod(mflib.retrieval)
    assert outcome.attempted >= 3 and outcome.failed == 0
