"""Tests of mflib.models.warp: the pure functions (rank weight, sampling, loss, gradients, step) and WARP."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mflib
from mflib.gradcheck import check_gradients
from mflib.models import warp
from mflib.models.warp import WARP


# ---- helpers -----------------------------------------------------------------------------------------
def make_problem(seed, n_users=5, n_items=8, k=3, batch=30, bias=True):
    """float64 parameters and a batch of triples with many repeated users and items."""
    rng = np.random.default_rng(seed)
    params = {"user_factors": rng.normal(0, 1, (n_users, k)), "item_factors": rng.normal(0, 1, (n_items, k))}
    if bias:
        params["item_bias"] = rng.normal(0, 1, n_items)
    users = rng.integers(0, n_users, batch)
    positives = rng.integers(0, n_items, batch)
    negatives = (positives + rng.integers(1, n_items, batch)) % n_items
    weights = warp.warp_rank_weight(rng.integers(1, 10, batch), n_items)
    return params, users, positives, negatives, weights


def random_matrix(seed, n_users=40, n_items=60, density=0.15):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[0, :] = True                      # a user who liked everything: no negative at all
    dense[1, :] = False                     # a user with no positive
    return sp.csr_matrix(dense.astype(np.float32))


def loop_gradients(params, users, positives, negatives, weights, lam):
    """Reference: one triple at a time, accumulated with +=."""
    P, Q = params["user_factors"], params["item_factors"]
    b = params.get("item_bias")
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    for u, i, j, w in zip(users, positives, negatives, weights):
        x_ui = P[u] @ Q[i] + (b[i] if b is not None else 0.0)
        x_uj = P[u] @ Q[j] + (b[j] if b is not None else 0.0)
        a = w if 1.0 - x_ui + x_uj > 0 else 0.0
        grads["user_factors"][u] += a * (Q[j] - Q[i]) + lam * P[u]
        grads["item_factors"][i] += -a * P[u] + lam * Q[i]
        grads["item_factors"][j] += a * P[u] + lam * Q[j]
        if b is not None:
            grads["item_bias"][i] += -a + lam * b[i]
            grads["item_bias"][j] += a + lam * b[j]
    return grads


def call(fn, params, users, positives, negatives, weights, *extra):
    return fn(params["user_factors"], params["item_factors"], params.get("item_bias"), users, positives, negatives,
              weights, *extra)


# ---- rank weight ---------------------------------------------------------------------------------------
def test_rank_weight_hand_computed():
    # 11 items: 10 possible negatives. 1 draw -> rank 10; 3 draws -> rank 3; 10 or more draws -> rank 1
    weights = warp.warp_rank_weight(np.array([1, 2, 3, 10, 25]), 11)
    h10 = sum(1 / r for r in range(1, 11))
    np.testing.assert_allclose(weights, [h10, 1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5, 1 + 1 / 2 + 1 / 3, 1.0, 1.0],
                               rtol=1e-12)
    assert h10 == pytest.approx(7381 / 2520, rel=1e-14)
    # ML-100K size, first draw violates: H_1681
    assert warp.warp_rank_weight(1, 1682) == pytest.approx(np.sum(1.0 / np.arange(1, 1682)), rel=1e-12)
    # monotone: more draws -> better rank -> smaller weight
    assert np.all(np.diff(warp.warp_rank_weight(np.arange(1, 50), 1682)) <= 0)
    with pytest.raises(ValueError):
        warp.warp_rank_weight(0, 10)


# ---- positives lookup and sampling ---------------------------------------------------------------------
def test_positive_keys_and_lookup():
    matrix = random_matrix(0)
    keys = warp.positive_keys(matrix)
    assert np.all(np.diff(keys) > 0)
    users, items = np.meshgrid(np.arange(matrix.shape[0]), np.arange(matrix.shape[1]), indexing="ij")
    np.testing.assert_array_equal(warp.is_positive(keys, users, items, matrix.shape[1]), matrix.toarray() > 0)
    assert not warp.is_positive(np.zeros(0, np.int64), [0, 1], [2, 3], 5).any()


def loop_sample(params, users, positives, keys, n_items, candidates, margin=1.0):
    """Reference sampler: walk every row's candidates in order."""
    P, Q, b = params["user_factors"], params["item_factors"], params.get("item_bias")
    bias = b if b is not None else np.zeros(len(Q))
    negatives, n_draws = np.full(len(users), -1), np.full(len(users), candidates.shape[1])
    for row, (u, i) in enumerate(zip(users, positives)):
        for draw, j in enumerate(candidates[row]):
            liked = warp.is_positive(keys, u, j, n_items)
            if not liked and P[u] @ Q[j] + bias[j] > P[u] @ Q[i] + bias[i] - margin:
                negatives[row], n_draws[row] = j, draw + 1
                break
    return negatives, n_draws, negatives >= 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [0.0, 0.7, 3.0])
def test_sample_violators_matches_loop_and_never_returns_positives(seed, scale):
    matrix = random_matrix(seed)
    n_users, n_items = matrix.shape
    keys = warp.positive_keys(matrix)
    rng = np.random.default_rng(seed)
    params = {"user_factors": scale * rng.normal(0, 1, (n_users, 4)),
              "item_factors": scale * rng.normal(0, 1, (n_items, 4)), "item_bias": scale * rng.normal(0, 1, n_items)}
    pair_users, pair_items = keys // n_items, keys % n_items
    max_sampled = 7
    negatives, n_draws, found = warp.sample_violators(params["user_factors"], params["item_factors"],
                                                      params["item_bias"], pair_users, pair_items, keys,
                                                      max_sampled, np.random.default_rng(42))
    candidates = np.random.default_rng(42).integers(0, n_items, size=(len(pair_users), max_sampled))
    expected = loop_sample(params, pair_users, pair_items, keys, n_items, candidates)
    np.testing.assert_array_equal(negatives, expected[0])
    np.testing.assert_array_equal(n_draws, expected[1])
    np.testing.assert_array_equal(found, expected[2])
    assert not warp.is_positive(keys, pair_users[found], negatives[found], n_items).any()
    assert not found[pair_users == 0].any(), "a user who liked every item has no negative"
    if scale == 0.0:   # all scores 0: every non-positive candidate violates, so found iff one was drawn
        assert found.mean() > 0.5
    # violators really violate
    x_ui = warp.warp_scores(params["user_factors"], params["item_factors"], params["item_bias"],
                            pair_users[found], pair_items[found])
    x_uj = warp.warp_scores(params["user_factors"], params["item_factors"], params["item_bias"],
                            pair_users[found], negatives[found])
    assert np.all(x_uj > x_ui - 1)


def test_sample_violators_dense_user_and_no_bias():
    """A user who liked 90% of the catalogue: the sampler must still skip every one of her positives."""
    n_items = 50
    dense = np.zeros((2, n_items), bool)
    dense[0, :45] = True
    dense[1, [3, 7]] = True
    keys = warp.positive_keys(sp.csr_matrix(dense))
    users = np.repeat([0, 1], 200)
    positives = np.where(users == 0, 0, 3)
    zeros_u, zeros_i = np.zeros((2, 3)), np.zeros((n_items, 3))
    negatives, n_draws, found = warp.sample_violators(zeros_u, zeros_i, None, users, positives, keys, 10,
                                                      np.random.default_rng(0))
    assert found[users == 1].all() and found[users == 0].any()
    assert not dense[users[found], negatives[found]].any()
    assert np.all(negatives[found & (users == 0)] >= 45)
    assert np.all((n_draws >= 1) & (n_draws <= 10))


# ---- loss and gradients ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_gradients_match_finite_differences(seed, bias, lam):
    params, users, positives, negatives, weights = make_problem(seed, bias=bias)

    def loss(p):
        return call(warp.warp_loss, p, users, positives, negatives, weights, lam)

    def grads(p):
        return call(warp.warp_gradients, p, users, positives, negatives, weights, lam)

    result = check_gradients(loss, grads, params)
    assert result.passed(1e-6), result.report()
    assert set(grads(params)) == set(params)


def test_hinge_both_active_and_inactive_in_the_check():
    """The gradient tests are meaningful only if some triples have an active hinge and some do not."""
    params, users, positives, negatives, weights = make_problem(0)
    hinge = call(warp.warp_row_gradients, params, users, positives, negatives, weights, 0.0)["hinge"]
    assert (hinge > 0).any() and (hinge == 0).any()


@pytest.mark.parametrize("bias", [True, False])
def test_duplicates_accumulate_like_a_loop(bias):
    params, users, positives, negatives, weights = make_problem(3, n_users=3, n_items=4, batch=40, bias=bias)
    assert len(np.unique(users)) < len(users) and len(np.unique(positives)) < len(positives)
    got = call(warp.warp_gradients, params, users, positives, negatives, weights, 0.2)
    expected = loop_gradients(params, users, positives, negatives, weights, 0.2)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-12)


def test_loss_by_hand():
    P = np.array([[1.0, 0.0]])
    Q = np.array([[0.5, 0.0], [0.2, 0.0], [-3.0, 0.0]])
    b = np.array([0.0, 0.1, 0.0])
    # x_u0 = 0.5, x_u1 = 0.3, x_u2 = -3: hinge(0, 1) = 1 - 0.5 + 0.3 = 0.8; hinge(0, 2) = max(0, 1 - 0.5 - 3) = 0
    value = warp.warp_loss(P, Q, b, [0, 0], [0, 0], [1, 2], [2.0, 5.0], 0.0)
    assert value == pytest.approx(1.6)
    value = warp.warp_loss(P, Q, b, [0], [0], [1], [2.0], 1.0)
    assert value == pytest.approx(1.6 + 0.5 * (1.0 + 0.25 + 0.04 + 0.0 + 0.01))


def test_sgd_step_is_gradient_step_and_returns_loss():
    params, users, positives, negatives, weights = make_problem(4)
    before = call(warp.warp_loss, params, users, positives, negatives, weights, 0.1)
    grads = call(warp.warp_gradients, params, users, positives, negatives, weights, 0.1)
    updated = {name: value.copy() for name, value in params.items()}
    returned = call(warp.warp_step, updated, users, positives, negatives, weights, 0.01, 0.1)
    assert returned == pytest.approx(before, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(updated[name], params[name] - 0.01 * grads[name], rtol=1e-12, atol=1e-14)
    after = call(warp.warp_loss, updated, users, positives, negatives, weights, 0.1)
    assert after < before


def test_adagrad_step_and_max_norm():
    params, users, positives, negatives, weights = make_problem(5)
    grads = call(warp.warp_gradients, params, users, positives, negatives, weights, 0.0)
    accumulators = {name: np.ones_like(value) for name, value in params.items()}
    updated = {name: value.copy() for name, value in params.items()}
    call(warp.warp_step, updated, users, positives, negatives, weights, 0.1, 0.0, 1.2, accumulators)
    touched_items = np.unique(np.r_[positives, negatives])
    for name, rows in [("user_factors", np.unique(users)), ("item_factors", touched_items),
                       ("item_bias", touched_items)]:
        G = 1.0 + grads[name] ** 2
        np.testing.assert_allclose(accumulators[name], G, rtol=1e-12)
        expected = params[name] - 0.1 * grads[name] / (np.sqrt(G) + 1e-8)  # mflib.models._optim convention
        if name != "item_bias":
            norms = np.linalg.norm(expected, axis=1, keepdims=True)
            scale = np.where(np.isin(np.arange(len(expected)), rows)[:, None], np.minimum(1.0, 1.2 / norms), 1.0)
            expected = expected * scale
        np.testing.assert_allclose(updated[name], expected, rtol=1e-12, atol=1e-14)
    assert np.linalg.norm(updated["user_factors"][np.unique(users)], axis=1).max() <= 1.2 + 1e-12


# ---- the estimator -------------------------------------------------------------------------------------
def test_lazy_export_and_params():
    assert mflib.WARP is WARP
    model = WARP(factors=8, max_sampled=5)
    params = model.get_params()
    for name in ("factors", "learning_rate", "regularization", "iterations", "max_sampled", "random_state",
                 "show_progress", "batch_size", "max_norm"):
        assert name in params
    assert "WARP(factors=8" in repr(model)
    with pytest.raises(ValueError):
        WARP(optimizer="adam").fit(random_matrix(0))


def test_fit_small_loss_decreases_and_reproducible():
    matrix = random_matrix(1, n_users=80, n_items=120, density=0.1)
    kwargs = dict(factors=8, iterations=15, batch_size=64, random_state=3)
    model = WARP(**kwargs).fit(matrix)
    again = WARP(**kwargs).fit(matrix)
    other = WARP(**{**kwargs, "random_state": 4}).fit(matrix)
    assert model.user_factors.dtype == np.float32 and model.item_factors.dtype == np.float32
    assert model.user_factors.shape == (80, 8) and model.item_factors.shape == (120, 8)
    assert model.item_bias.shape == (120,)
    assert len(model.loss_history_) == 15 and len(model.violator_rate_) == 15
    assert model.loss_history_[-1] < 0.7 * model.loss_history_[0]
    assert model.violator_rate_[-1] < model.violator_rate_[0]
    np.testing.assert_array_equal(model.user_factors, again.user_factors)
    np.testing.assert_array_equal(model.item_factors, again.item_factors)
    np.testing.assert_array_equal(model.item_bias, again.item_bias)
    assert not np.array_equal(model.item_factors, other.item_factors)
    norms = np.linalg.norm(np.vstack([model.user_factors, model.item_factors]), axis=1)
    assert norms.max() <= model.max_norm * (1 + 1e-5)


def test_fit_options():
    matrix = random_matrix(2)
    no_bias = WARP(factors=4, iterations=3, use_bias=False, random_state=0).fit(matrix)
    assert no_bias.item_bias is None
    sgd = WARP(factors=4, iterations=3, optimizer="sgd", max_norm=None, learning_rate=0.01, random_state=0).fit(matrix)
    assert np.isfinite(sgd.item_factors).all()
    nothing = WARP(factors=4, iterations=2, random_state=0).fit(sp.csr_matrix((5, 7), dtype=np.float32))
    assert nothing.loss_history_ == [0.0, 0.0]


def test_recommend_excludes_liked_and_batch_matches_scalar():
    matrix = random_matrix(3, n_users=60, n_items=80, density=0.2)
    model = WARP(factors=6, iterations=5, random_state=0).fit(matrix)
    users = np.arange(2, 60)
    ids, scores = model.recommend(users, matrix[users], N=10)
    liked = matrix[users].toarray() > 0
    assert not liked[np.arange(len(users))[:, None], ids].any()
    assert np.all(np.diff(scores, axis=1) <= 0)
    for row, user in enumerate(users[:10]):
        one_ids, one_scores = model.recommend(user, matrix[user], N=10)
        np.testing.assert_array_equal(one_ids, ids[row])
        np.testing.assert_allclose(one_scores, scores[row], rtol=1e-6)
    # the scores are p_u . q_i + b_i
    expected = model.user_factors[users[0]] @ model.item_factors.T + model.item_bias
    np.testing.assert_allclose(scores[0], expected[ids[0]], rtol=1e-5)


# ---- real data -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_movielens_quality_at_default_parameters(ml100k, implicit_split_0):
    """Default WARP on split 0 (about 3 s): NDCG@10 well above popularity (0.15) and near LightFM (0.30)."""
    from mflib.evaluation import evaluate_ranking, evaluate_similar_items, known_pairs

    train, test = implicit_split_0
    model = WARP(random_state=0).fit(train)
    ranking = evaluate_ranking(model, train, test)
    assert ranking["ndcg@10"] >= 0.29, ranking
    assert ranking["precision@10"] >= 0.21, ranking
    assert evaluate_similar_items(model, ml100k, train) >= 0.30
    pairs = known_pairs(model, ml100k)
    assert all(all(found.values()) for found in pairs.values()), pairs
    assert model.loss_history_[-1] < 0.5 * model.loss_history_[0]
