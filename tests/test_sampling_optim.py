"""The pieces BPR and WARP share: positives and negative sampling (mflib.models._sampling), accumulation,
SGD, AdaGrad and the norm bound (mflib.models._optim)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mflib.models import _optim, _sampling


def messy_csr(seed=0, n_users=7, n_items=9, nnz=40):
    """A CSR whose rows hold unsorted and repeated column indices and explicit zeros, with its dense sums."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.integers(0, n_users, nnz))
    cols = rng.integers(0, n_items, nnz)
    data = rng.choice([0.0, 1.0, 2.0], nnz)
    indptr = np.searchsorted(rows, np.arange(n_users + 1))
    matrix = sp.csr_matrix((data, cols, indptr), shape=(n_users, n_items))  # kept as given: not canonical
    dense = np.zeros((n_users, n_items))
    np.add.at(dense, (rows, cols), data)
    return matrix, dense


# ---- positives ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dense_layout", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_lookup_on_unsorted_duplicated_csr_matches_the_dense_matrix(seed, dense_layout):
    matrix, dense = messy_csr(seed)
    assert not matrix.has_canonical_format
    before = (matrix.data.copy(), matrix.indices.copy(), matrix.indptr.copy())
    lookup = _sampling.PositiveLookup(matrix, max_dense_cells=1 << 30 if dense_layout else 0)
    users, items = np.meshgrid(np.arange(dense.shape[0]), np.arange(dense.shape[1]), indexing="ij")
    np.testing.assert_array_equal(lookup.contains(users, items), dense != 0)
    np.testing.assert_array_equal(_sampling.keys_contain(lookup.keys, users, items, dense.shape[1]), dense != 0)
    assert np.all(np.diff(lookup.keys) > 0)  # sorted and unique
    np.testing.assert_array_equal(lookup.counts, (dense != 0).sum(1))
    np.testing.assert_array_equal(dense[lookup.users, lookup.items] != 0, True)
    for kept, original in zip((matrix.data, matrix.indices, matrix.indptr), before):  # the input is untouched
        np.testing.assert_array_equal(kept, original)


def test_cancelling_duplicates_make_no_positive():
    matrix = sp.csr_matrix((np.array([1.0, -1.0, 1.0]), np.array([2, 2, 0]), np.array([0, 3])), shape=(1, 4))
    np.testing.assert_array_equal(_sampling.positive_keys(matrix), [0])


def test_negatives_are_never_positives_uniform_and_seeded():
    matrix, dense = messy_csr(1, n_users=5, n_items=12, nnz=30)
    lookup = _sampling.PositiveLookup(matrix)
    users = np.repeat(np.arange(5), 4000)
    negatives = _sampling.sample_negatives(None, users, np.random.default_rng(3), lookup)
    assert not (dense[users, negatives] != 0).any()
    for user in range(5):  # uniform over the user's non-positives
        allowed = np.flatnonzero(dense[user] == 0)
        counts = np.bincount(negatives[users == user], minlength=12)[allowed]
        np.testing.assert_allclose(counts / 4000, 1 / len(allowed), atol=0.03)
    again = _sampling.sample_negatives(matrix, users, np.random.default_rng(3))
    np.testing.assert_array_equal(negatives, again)
    with pytest.raises(ValueError, match="users must lie in"):
        _sampling.sample_negatives(matrix, [5], np.random.default_rng(0))


def test_positive_pairs_are_positives():
    matrix, dense = messy_csr(2)
    users, items = _sampling.sample_positive_pairs(_sampling.PositiveLookup(matrix), 500, np.random.default_rng(0))
    assert (dense[users, items] != 0).all()


# ---- accumulation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("per_row", [1, 2])
def test_scatter_add_accumulates_repeated_indices_like_add_at(per_row):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(30, 4))
    index = rng.integers(0, 6, 30 * per_row)  # many repeats
    weights = rng.normal(size=30 * per_row)
    expected = np.zeros((6, 4))
    np.add.at(expected, index, weights[:, None] * np.repeat(rows, per_row, axis=0))
    np.testing.assert_allclose(_optim.scatter_add(index, rows, 6, weights), expected, rtol=1e-12)
    vector = rows[:, 0]
    expected_vector = np.zeros(6)
    np.add.at(expected_vector, index, weights * np.repeat(vector, per_row))
    np.testing.assert_allclose(_optim.scatter_add(index, vector, 6, weights), expected_vector, rtol=1e-12)


@pytest.mark.parametrize("bad, shown", [([0, 6], "6"), ([-1, 2], "-1")])
def test_scatter_add_names_an_out_of_range_index(bad, shown):
    with pytest.raises(ValueError, match=rf"index holds {shown}, outside \[0, 6\)"):
        _optim.scatter_add(bad, np.ones((2, 3)), 6)
    with pytest.raises(ValueError, match="user_ids holds"):
        _optim.check_index(bad, 6, "user_ids")
    with pytest.raises(ValueError, match="integer"):
        _optim.check_index([0.5], 6)


def test_sum_rows_by_index_is_row_sparse_add_at():
    rng = np.random.default_rng(1)
    index = rng.integers(0, 9, 50)
    rows = rng.normal(size=(50, 3))
    unique, summed = _optim.sum_rows_by_index(index, rows)
    np.testing.assert_array_equal(unique, np.unique(index))
    expected = np.zeros((9, 3))
    np.add.at(expected, index, rows)
    np.testing.assert_allclose(summed, expected[unique], rtol=1e-12)


def test_triple_penalty_equals_the_sum_over_triples():
    rng = np.random.default_rng(2)
    P, Q, b = rng.normal(size=(5, 3)), rng.normal(size=(7, 3)), rng.normal(size=7)
    users, positives, negatives = rng.integers(0, 5, 20), rng.integers(0, 7, 20), rng.integers(0, 7, 20)
    expected = sum(P[u] @ P[u] + Q[i] @ Q[i] + Q[j] @ Q[j] + b[i] ** 2 + b[j] ** 2
                   for u, i, j in zip(users, positives, negatives))
    counts = (_optim.occurrence_counts(users, 5),
              _optim.occurrence_counts(positives, 7) + _optim.occurrence_counts(negatives, 7))
    assert _optim.triple_penalty(P, Q, b, *counts) == pytest.approx(expected, rel=1e-12)


# ---- updates ------------------------------------------------------------------------------------------------
def test_adagrad_convention_dense_and_row_sparse_agree():
    rng = np.random.default_rng(3)
    param, gradient = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    state = _optim.adagrad_accumulators({"w": param, "missing": None})
    assert set(state) == {"w"} and np.all(state["w"] == _optim.ADAGRAD_INITIAL_ACCUMULATOR)
    dense = param.copy()
    _optim.adagrad_update(dense, gradient, state["w"], 0.1)
    # the documented formula: G starts at 0, so the first step is lr * g / (|g| + eps) ~ lr * sign(g)
    G = _optim.ADAGRAD_INITIAL_ACCUMULATOR + gradient ** 2
    np.testing.assert_allclose(state["w"], G, rtol=1e-12)
    np.testing.assert_allclose(dense, param - 0.1 * gradient / (np.sqrt(G) + _optim.ADAGRAD_EPS), rtol=1e-12)
    rows = np.array([1, 4])
    sparse, accumulator = param.copy(), np.zeros_like(param)
    _optim.adagrad_update(sparse, gradient[rows], accumulator, 0.1, rows=rows)
    np.testing.assert_allclose(sparse[rows], dense[rows], rtol=1e-12)
    np.testing.assert_array_equal(np.delete(sparse, rows, 0), np.delete(param, rows, 0))
    np.testing.assert_array_equal(np.delete(accumulator, rows, 0), 0)


def test_sgd_update_and_norm_bound():
    param = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]])
    _optim.sgd_update(param, np.ones((3, 2)), 0.5, rows=None)
    np.testing.assert_allclose(param, [[2.5, 3.5], [-0.2, -0.1], [5.5, 7.5]])
    _optim.clip_row_norms(param, 1.0, rows=np.array([0, 1]))
    np.testing.assert_allclose(np.linalg.norm(param[0]), 1.0)
    np.testing.assert_allclose(param[1], [-0.2, -0.1])  # shorter rows are left alone
    np.testing.assert_allclose(param[2], [5.5, 7.5])    # rows not listed are left alone
    _optim.clip_row_norms(param, 1.0)
    np.testing.assert_allclose(np.linalg.norm(param, axis=1).max(), 1.0)
