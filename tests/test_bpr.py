"""Tests of mflib.models.bpr: gradients, sampling, accumulation, training, retrieval, real-data quality."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mflib
from mflib.gradcheck import check_gradients
from mflib.models.bpr import (BPR, PositiveLookup, Workspace, bpr_difference, bpr_gradients, bpr_loss,
                              bpr_loss_and_gradients, sample_negatives, sample_triples, sgd_step)


# ---- helpers ---------------------------------------------------------------------------------------------
def random_problem(seed, n_users=6, n_items=9, k=4, batch=25, bias=True, dtype=np.float64):
    """Random parameters and a batch of triples with plenty of repeated users and items."""
    rng = np.random.default_rng(seed)
    params = {"user_factors": rng.normal(0, 1, (n_users, k)).astype(dtype),
              "item_factors": rng.normal(0, 1, (n_items, k)).astype(dtype)}
    if bias:
        params["item_bias"] = rng.normal(0, 1, n_items).astype(dtype)
    users = rng.integers(0, n_users, batch)
    positives = rng.integers(0, n_items, batch)
    negatives = (positives + rng.integers(1, n_items, batch)) % n_items  # j != i
    return params, users, positives, negatives


def random_user_items(seed, n_users=40, n_items=30, density=0.5):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user has a positive
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = False  # ... and a negative
    return sp.csr_matrix(dense.astype(np.float32))


def one_triple_gradients(P, Q, b, u, i, j, lam):
    """The per-triple formulas of the module docstring, written out for a single triple."""
    x = P[u] @ (Q[i] - Q[j]) + (0.0 if b is None else b[i] - b[j])
    s = 1.0 / (1.0 + np.exp(x))  # sigma(-x)
    grads = {"user_factors": np.zeros_like(P), "item_factors": np.zeros_like(Q)}
    grads["user_factors"][u] += -s * (Q[i] - Q[j]) + lam * P[u]
    grads["item_factors"][i] += -s * P[u] + lam * Q[i]
    grads["item_factors"][j] += s * P[u] + lam * Q[j]
    if b is not None:
        grads["item_bias"] = np.zeros_like(b)
        grads["item_bias"][i] += -s + lam * b[i]
        grads["item_bias"][j] += s + lam * b[j]
    return grads


def small_fit_data():
    rng = np.random.default_rng(0)
    # two taste groups: users 0..29 like items 0..19, users 30..59 like items 20..39 (with noise)
    n_users, n_items = 60, 40
    dense = np.zeros((n_users, n_items), dtype=bool)
    for u in range(n_users):
        group = np.arange(20) if u < 30 else np.arange(20, 40)
        dense[u, rng.choice(group, 8, replace=False)] = True
        dense[u, rng.integers(0, n_items)] = True
    return sp.csr_matrix(dense.astype(np.float32))


# ---- gradients -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("regularization", [0.0, 0.3])
def test_gradients_match_finite_differences(seed, bias, regularization):
    params, users, positives, negatives = random_problem(seed, bias=bias)

    def loss(p):
        return bpr_loss(p["user_factors"], p["item_factors"], p.get("item_bias"), users, positives, negatives,
                        regularization)

    def grads(p):
        return bpr_gradients(p["user_factors"], p["item_factors"], p.get("item_bias"), users, positives,
                             negatives, regularization)

    result = check_gradients(loss, grads, params)
    assert set(grads(params)) == set(params)
    assert result.max_relative_error < 1e-6, result.report()


def test_loss_and_gradients_kernel_agrees_with_pure_functions():
    params, users, positives, negatives = random_problem(3)
    args = (params["user_factors"], params["item_factors"], params["item_bias"], users, positives, negatives, 0.2)
    loss, grads = bpr_loss_and_gradients(*args)
    assert loss == pytest.approx(bpr_loss(*args), rel=1e-12)
    for name, value in bpr_gradients(*args).items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-12)
    # the workspace path (training: int32 indices, preallocated buffers) gives the same numbers
    ws = Workspace(len(users) + 5, params["user_factors"].shape[1], dtype=np.float64)
    for index_dtype in (np.int64, np.int32):
        loss_ws, grads_ws = bpr_loss_and_gradients(*args[:3], users.astype(index_dtype),
                                                   positives.astype(index_dtype), negatives.astype(index_dtype),
                                                   0.2, workspace=ws)
        assert loss_ws == pytest.approx(loss, rel=1e-12)
        for name in grads:
            np.testing.assert_allclose(grads_ws[name], grads[name], rtol=1e-12)


def test_loss_is_stable_for_large_scores():
    params, users, positives, negatives = random_problem(4, bias=False)
    big = {name: 100 * value for name, value in params.items()}
    loss = bpr_loss(big["user_factors"], big["item_factors"], None, users, positives, negatives, 0.0)
    assert np.isfinite(loss)
    x = bpr_difference(big["user_factors"], big["item_factors"], None, users, positives, negatives)
    np.testing.assert_allclose(loss, np.sum(np.logaddexp(0, -x)), rtol=1e-10)


@pytest.mark.parametrize("bias", [True, False])
def test_duplicates_in_a_batch_accumulate(bias):
    """The batch gradient equals the sum of per-triple gradients computed one by one (a Python loop)."""
    params, users, positives, negatives = random_problem(5, n_users=3, n_items=4, batch=30, bias=bias)
    users[:10], positives[:10], negatives[:10] = 1, 2, 0  # the same triple ten times
    P, Q, b = params["user_factors"], params["item_factors"], params.get("item_bias")
    expected = {name: np.zeros_like(value) for name, value in params.items()}
    for u, i, j in zip(users, positives, negatives):
        for name, value in one_triple_gradients(P, Q, b, u, i, j, 0.1).items():
            expected[name] += value
    got = bpr_gradients(P, Q, b, users, positives, negatives, 0.1)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-10, atol=1e-12)


def test_batch_and_scalar_agree():
    params, users, positives, negatives = random_problem(6)
    P, Q, b = params["user_factors"], params["item_factors"], params["item_bias"]
    batch = bpr_difference(P, Q, b, users, positives, negatives)
    single = [bpr_difference(P, Q, b, [u], [i], [j])[0] for u, i, j in zip(users, positives, negatives)]
    np.testing.assert_allclose(batch, single, rtol=1e-12)
    np.testing.assert_allclose(batch, np.einsum("bk,bk->b", P[users], Q[positives] - Q[negatives])
                               + b[positives] - b[negatives], rtol=1e-12)
    # a batch of one triple gives the scalar formulas
    u, i, j = users[0], positives[0], negatives[0]
    got = bpr_gradients(P, Q, b, [u], [i], [j], 0.05)
    for name, value in one_triple_gradients(P, Q, b, u, i, j, 0.05).items():
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-15)


# ---- the step ---------------------------------------------------------------------------------------------
def test_sgd_step_is_gradient_descent_in_place():
    params, users, positives, negatives = random_problem(7)
    before = {name: value.copy() for name, value in params.items()}
    args = (users, positives, negatives)
    grads = bpr_gradients(before["user_factors"], before["item_factors"], before["item_bias"], *args, 0.1)
    loss = sgd_step(params["user_factors"], params["item_factors"], params["item_bias"], *args, 0.05, 0.1)
    assert loss == pytest.approx(bpr_loss(before["user_factors"], before["item_factors"], before["item_bias"],
                                          *args, 0.1), rel=1e-12)
    for name in params:
        np.testing.assert_allclose(params[name], before[name] - 0.05 * grads[name], rtol=1e-12)


def test_adagrad_step():
    params, users, positives, negatives = random_problem(8)
    before = {name: value.copy() for name, value in params.items()}
    accumulators = {name: np.full_like(value, 0.5) for name, value in params.items()}
    grads = bpr_gradients(before["user_factors"], before["item_factors"], before["item_bias"], users, positives,
                          negatives, 0.1)
    sgd_step(params["user_factors"], params["item_factors"], params["item_bias"], users, positives, negatives,
             0.05, 0.1, accumulators=accumulators)
    for name in params:
        G = 0.5 + grads[name] ** 2
        np.testing.assert_allclose(accumulators[name], G, rtol=1e-12)
        np.testing.assert_allclose(params[name], before[name] - 0.05 * grads[name] / (np.sqrt(G) + 1e-8),
                                   rtol=1e-10)


def test_a_step_lowers_the_batch_loss():
    params, users, positives, negatives = random_problem(9, batch=5)
    args = (users, positives, negatives)
    first = sgd_step(params["user_factors"], params["item_factors"], params["item_bias"], *args, 0.01, 0.01)
    after = bpr_loss(params["user_factors"], params["item_factors"], params["item_bias"], *args, 0.01)
    assert after < first


# ---- sampling ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dense", [True, False])
def test_positive_lookup_matches_the_matrix(dense):
    user_items = random_user_items(0)
    lookup = PositiveLookup(user_items, max_dense_cells=1 << 30 if dense else 0)
    assert lookup.dense is dense
    users, items = np.meshgrid(np.arange(user_items.shape[0]), np.arange(user_items.shape[1]), indexing="ij")
    np.testing.assert_array_equal(lookup.contains(users.ravel(), items.ravel()),
                                  user_items.toarray().ravel() > 0)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_sampled_negatives_are_never_positives(dense, seed):
    user_items = random_user_items(seed, density=0.9)  # most candidates are rejected
    lookup = PositiveLookup(user_items, max_dense_cells=1 << 30 if dense else 0)
    rng = np.random.default_rng(seed)
    positives_dense = user_items.toarray() > 0
    for _ in range(20):
        users = rng.integers(0, user_items.shape[0], 5000)
        negatives = sample_negatives(user_items, users, rng, lookup)
        assert negatives.dtype == np.int64 and negatives.shape == users.shape
        assert negatives.min() >= 0 and negatives.max() < user_items.shape[1]
        assert not positives_dense[users, negatives].any()
    # without a prebuilt lookup too, and with int32 indices (what training uses)
    users = np.repeat(np.arange(user_items.shape[0]), 50)
    assert not positives_dense[users, sample_negatives(user_items, users, rng)].any()
    negatives = sample_negatives(user_items, users.astype(np.int32), rng, lookup, dtype=np.int32)
    assert negatives.dtype == np.int32 and not positives_dense[users, negatives].any()


def test_sampled_negatives_are_uniform_over_non_positives():
    user_items = sp.csr_matrix(np.array([[1, 1, 0, 0, 1, 0]], dtype=np.float32))
    negatives = sample_negatives(user_items, np.zeros(30000, dtype=np.int64), np.random.default_rng(0))
    counts = np.bincount(negatives, minlength=6)
    assert counts[[0, 1, 4]].sum() == 0
    np.testing.assert_allclose(counts[[2, 3, 5]] / 30000, 1 / 3, atol=0.015)


def test_user_without_negatives_raises():
    user_items = sp.csr_matrix(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="every item"):
        sample_negatives(user_items, [0, 1], np.random.default_rng(0))


def test_sample_triples():
    user_items = random_user_items(1)
    users, positives, negatives = sample_triples(user_items, 4000, np.random.default_rng(1))
    dense = user_items.toarray() > 0
    assert dense[users, positives].all()
    assert not dense[users, negatives].any()


# ---- the estimator ----------------------------------------------------------------------------------------
def test_lazy_export():
    assert mflib.BPR is BPR


def test_fit_shapes_dtypes_and_loss_decreases():
    user_items = small_fit_data()
    model = BPR(factors=8, iterations=30, batch_size=64, random_state=0).fit(user_items)
    assert model.user_factors.shape == (60, 8) and model.user_factors.dtype == np.float32
    assert model.item_factors.shape == (40, 8) and model.item_factors.dtype == np.float32
    assert model.item_bias.shape == (40,) and model.item_bias.dtype == np.float32
    assert len(model.loss_history_) == 30
    assert model.loss_history_[-1] < 0.5 * model.loss_history_[0]
    # a user of group 0 ranks group-0 items she has not seen above group-1 items
    scores = model.score(0)
    unseen = np.setdiff1d(np.arange(20), user_items[0].indices)
    assert scores[unseen].mean() > scores[20:].mean()


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_every_variant_learns(optimizer, use_bias):
    model = BPR(factors=8, iterations=20, batch_size=32, optimizer=optimizer, use_bias=use_bias,
                learning_rate=0.05, random_state=1).fit(small_fit_data())
    assert (model.item_bias is not None) == use_bias
    assert model.loss_history_[-1] < 0.8 * model.loss_history_[0]


def test_same_seed_same_factors():
    user_items = small_fit_data()
    a = BPR(factors=8, iterations=5, batch_size=50, random_state=42).fit(user_items)
    b = BPR(factors=8, iterations=5, batch_size=50, random_state=42).fit(user_items)
    c = BPR(factors=8, iterations=5, batch_size=50, random_state=43).fit(user_items)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    np.testing.assert_array_equal(a.item_bias, b.item_bias)
    assert a.loss_history_ == b.loss_history_
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_recommend_excludes_liked_items_and_scalar_matches_batch():
    user_items = small_fit_data()
    model = BPR(factors=8, iterations=10, batch_size=64, random_state=0).fit(user_items)
    users = np.arange(user_items.shape[0])
    ids, scores = model.recommend(users, user_items[users], N=10)
    assert ids.shape == (60, 10)
    assert not (user_items.toarray()[users[:, None], ids] > 0).any()
    assert np.all(np.diff(scores, axis=1) <= 0)
    for u in (0, 17, 59):
        ids_u, scores_u = model.recommend(u, user_items[u], N=10)
        np.testing.assert_array_equal(ids_u, ids[u])
        np.testing.assert_allclose(scores_u, scores[u], rtol=1e-6)
    # scores are p_u . q_i + b_i
    np.testing.assert_allclose(model.score(3), model.user_factors[3] @ model.item_factors.T + model.item_bias,
                               rtol=1e-5)


def test_explicit_zeros_and_full_users_are_ignored():
    dense = small_fit_data().toarray()
    dense[5] = 1.0                                # a user who liked everything: no negative exists
    matrix = sp.csr_matrix(dense)
    matrix.data[matrix.indices == 3] = 0.0       # explicit zeros are not positives
    model = BPR(factors=4, iterations=3, batch_size=64, random_state=0).fit(matrix)
    assert np.all(np.isfinite(model.user_factors))


def test_progress_bar_and_loss_history_scale(capsys):
    model = BPR(factors=4, iterations=2, batch_size=64, random_state=0, show_progress=True).fit(small_fit_data())
    assert "BPR" in capsys.readouterr().err
    # the first epoch's mean loss per triple starts near ln 2 (tiny random factors: coin flips)
    assert model.loss_history_[0] == pytest.approx(np.log(2), abs=0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        BPR(optimizer="adam").fit(small_fit_data())
    with pytest.raises(TypeError):
        BPR().fit(np.ones((3, 3)))
    assert BPR(factors=3).get_params()["factors"] == 3


def test_save_load_roundtrip(tmp_path):
    model = BPR(factors=4, iterations=2, batch_size=64, random_state=0).fit(small_fit_data())
    model.save(tmp_path / "bpr.pkl")
    loaded = BPR.load(tmp_path / "bpr.pkl")
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)


# ---- real data --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_movielens_quality_at_default_parameters(ml100k, implicit_split_0):
    """Default hyper-parameters on the protocol's split 0 (target over seeds 0-2: NDCG@10 >= 0.243,
    genre Jaccard >= 0.30; measured on split 0: NDCG@10 0.299, Jaccard 0.309). A few seconds."""
    from threadpoolctl import threadpool_limits

    from mflib.evaluation import evaluate_ranking, evaluate_similar_items, known_pairs

    train, test = implicit_split_0
    with threadpool_limits(1):
        model = BPR(random_state=0).fit(train)
    ranking = evaluate_ranking(model, train, test)
    assert ranking["ndcg@10"] >= 0.26, ranking
    assert ranking["precision@10"] >= 0.19, ranking
    assert evaluate_similar_items(model, ml100k, train) >= 0.28
    star_wars = known_pairs(model, ml100k)["Star Wars (1977)"]
    assert all(star_wars.values()), star_wars


@pytest.mark.parametrize("model_class", [BPR, mflib.WARP])
def test_fit_on_a_messy_csr_leaves_it_alone_and_equals_the_canonical_fit(model_class):
    """Unsorted and repeated column indices and explicit zeros: the fit sees the positives of the summed
    matrix, and the caller's arrays are not touched."""
    canonical = random_user_items(3, n_users=20, n_items=15, density=0.3)
    rows = np.repeat(np.arange(20), np.diff(canonical.indptr))
    rng = np.random.default_rng(0)
    order = rng.permutation(canonical.nnz)
    extra_rows = rng.integers(0, 20, 10)
    messy_rows = np.r_[rows[order], rows[:5], extra_rows]
    messy_cols = np.r_[canonical.indices[order], canonical.indices[:5], rng.integers(0, 15, 10)]
    messy_data = np.r_[np.ones(canonical.nnz), np.zeros(5), np.zeros(10)].astype(np.float32)
    by_row = np.argsort(messy_rows, kind="stable")
    messy = sp.csr_matrix((messy_data[by_row], messy_cols[by_row], np.searchsorted(messy_rows[by_row],
                                                                                    np.arange(21))), shape=(20, 15))
    assert not messy.has_canonical_format
    before = [messy.data.copy(), messy.indices.copy(), messy.indptr.copy()]
    fitted = model_class(factors=4, iterations=3, random_state=0).fit(messy)
    reference = model_class(factors=4, iterations=3, random_state=0).fit(canonical)
    for array, original in zip((messy.data, messy.indices, messy.indptr), before):
        np.testing.assert_array_equal(array, original)
    np.testing.assert_allclose(fitted.user_factors, reference.user_factors, rtol=1e-6)
    np.testing.assert_allclose(fitted.item_factors, reference.item_factors, rtol=1e-6)
