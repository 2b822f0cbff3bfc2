"""mflib.teaching.LearnedFactors: the provided model the notebooks wrap around a student's fit output."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mflib.teaching import LearnedFactors


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    user_factors = rng.normal(size=(30, 4)).astype(np.float32)
    item_factors = rng.normal(size=(25, 4)).astype(np.float32)
    bias = rng.normal(size=25).astype(np.float32)
    seen = sp.random(30, 25, density=0.3, random_state=0, format="csr", dtype=np.float32)
    return user_factors, item_factors, bias, seen


def brute_force(user_factors, item_factors, bias, users, seen, N):
    scores = user_factors[users].astype(np.float64) @ item_factors.T.astype(np.float64) + bias
    scores[seen.toarray() != 0] = -np.inf
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :N]
    return ids, np.take_along_axis(scores, ids, axis=1)


def test_recommend_is_the_top_n_unseen_items_by_score_with_bias(arrays):
    user_factors, item_factors, bias, seen = arrays
    model = LearnedFactors(user_factors, item_factors, bias)
    users = np.arange(30)
    ids, scores = model.recommend(users, seen[users], N=7)
    expected_ids, expected_scores = brute_force(user_factors, item_factors, bias, users, seen, 7)
    assert ids.shape == scores.shape == (30, 7)
    assert np.array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    one_ids, one_scores = model.recommend(3, seen[3], N=7)
    assert one_ids.shape == (7,) and np.array_equal(one_ids, ids[3])
    unfiltered, _ = model.recommend(users, None, N=7, filter_already_liked_items=False)
    assert np.array_equal(unfiltered, brute_force(user_factors, item_factors, bias, users, 0 * seen, 7)[0])


def test_recommend_needs_one_row_of_user_items_per_user(arrays):
    user_factors, item_factors, bias, seen = arrays
    model = LearnedFactors(user_factors, item_factors, bias)
    with pytest.raises(ValueError, match="one row per requested user"):
        model.recommend(np.arange(3), seen, N=5)
    with pytest.raises(ValueError, match="user_items is required"):
        model.recommend(0, None)


def test_similar_items_by_cosine_without_the_query(arrays):
    user_factors, item_factors, bias, _ = arrays
    model = LearnedFactors(user_factors, item_factors, bias)
    unit = item_factors / np.linalg.norm(item_factors, axis=1, keepdims=True)
    cosine = unit @ unit[4]
    cosine[4] = -np.inf
    ids, scores = model.similar_items(4, N=5)
    assert np.array_equal(ids, np.argsort(-cosine)[:5]) and 4 not in ids
    np.testing.assert_allclose(scores, np.sort(cosine)[::-1][:5], rtol=1e-5)
    batch_ids, _ = model.similar_items(np.array([4, 7]), N=5)
    assert batch_ids.shape == (2, 5) and np.array_equal(batch_ids[0], ids)


def test_students_functions_plug_in(arrays):
    user_factors, item_factors, _, seen = arrays
    calls = []

    def recommend(user_factors, item_factors, users, seen, N=10):
        calls.append((user_factors.dtype, users.tolist(), seen.shape, N))
        return np.zeros((len(users), N), dtype=np.int64), np.zeros((len(users), N))

    def similar_items(item_factors, itemid, N=10):
        calls.append(itemid)
        return np.arange(N), np.zeros(N)

    model = LearnedFactors(user_factors.astype(np.longdouble), item_factors, recommend=recommend,
                           similar_items=similar_items)
    ids, _ = model.recommend(np.array([2, 5]), seen[[2, 5]], N=3)
    assert ids.shape == (2, 3) and calls[-1] == (np.dtype(np.longdouble), [2, 5], (2, 25), 3)
    ids, _ = model.similar_items(np.array([1, 9]), N=4)
    assert ids.shape == (2, 4) and calls[-2:] == [1, 9]
    assert model.user_factors.dtype == np.longdouble  # kept as given


def test_plugged_in_recommend_must_return_one_row_per_user(arrays):
    user_factors, item_factors, _, seen = arrays

    def one_dimensional(user_factors, item_factors, users, seen, N=10):
        return np.arange(N), np.zeros(N)

    model = LearnedFactors(user_factors, item_factors, recommend=one_dimensional)
    with pytest.raises(ValueError, match=r"must return two arrays of shape \(len\(users\), N\) = \(1, 5\)"):
        model.recommend(0, seen[0], N=5)


def test_bad_arrays_are_refused(arrays):
    user_factors, item_factors, bias, _ = arrays
    with pytest.raises(ValueError, match="one column per latent factor"):
        LearnedFactors(user_factors, item_factors[:, :3])
    with pytest.raises(ValueError, match="one bias per item"):
        LearnedFactors(user_factors, item_factors, bias[:-1])
    with pytest.raises(ValueError, match="only for a model without item_bias"):
        LearnedFactors(user_factors, item_factors, bias, recommend=lambda *args, **kwargs: None)
    assert "30 users, 25 items, 4 factors, float32, with item biases" in repr(
        LearnedFactors(user_factors, item_factors, bias))
