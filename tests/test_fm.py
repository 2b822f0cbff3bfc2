"""Factorization machine (mflib.models.fm) and the ML-100K feature builder (mflib.features)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mflib
from mflib.features import (AGE_LABELS, YEAR_LABELS, FeatureSpace, age_bucket, build_features,
                            cold_start_rows, item_rows, user_row, year_bucket)
from mflib.gradcheck import check_gradients
from mflib.models import _fm_train
from mflib.models._fm_train import RowSparseTrainer, compact_batch
from mflib.models._optim import adam_update_rows
from mflib.models.fm import (DEFAULT_BLOCK_REGULARIZATION, FactorizationMachine, adam_update, fm_gradients,
                             fm_loss, fm_loss_and_gradients, fm_pairwise, fm_predict)

ALL_FIELDS = ("user", "item", "age", "gender", "occupation", "genres", "year")


# ---- helpers ----------------------------------------------------------------------------------------
def random_problem(seed, n_rows=12, n_features=9, k=4, density=0.4):
    """Random float64 parameters and a sparse batch with non-binary values (like normalised genres)."""
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_features, density=density, format="csr", random_state=rng,
                  data_rvs=lambda size: rng.uniform(0.2, 1.5, size))
    X = (X + sp.csr_matrix(([1.0], ([0], [0])), shape=X.shape)).tocsr()  # row 0 is never empty
    w0 = np.asarray(rng.normal())
    w = rng.normal(size=n_features)
    V = rng.normal(scale=0.5, size=(n_features, k))
    y = rng.uniform(1, 5, size=n_rows)
    return w0, w, V, X, y


def naive_pairwise(V, X):
    """The O(k n^2) definition: sum over pairs j < l of <v_j, v_l> x_j x_l, row by row."""
    dense = X.toarray()
    out = np.zeros(len(dense))
    for row, x in enumerate(dense):
        for j in range(len(x)):
            for l in range(j + 1, len(x)):
                out[row] += (V[j] @ V[l]) * x[j] * x[l]
    return out


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-30))


def synthetic_ratings(seed=0, n_users=60, n_items=40, n_ratings=1500, k=3):
    """Ratings from a planted biased-MF model, as one-hot (user, item) FM rows."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_ratings)
    items = rng.integers(0, n_items, n_ratings)
    P, Q = rng.normal(0, 0.6, (n_users, k)), rng.normal(0, 0.6, (n_items, k))
    y = np.clip(3.5 + rng.normal(0, 0.3, n_users)[users] + rng.normal(0, 0.3, n_items)[items]
                + np.einsum("ij,ij->i", P[users], Q[items]) + rng.normal(0, 0.1, n_ratings), 1, 5)
    rows = np.repeat(np.arange(n_ratings), 2)
    cols = np.column_stack([users, n_users + items]).ravel()
    X = sp.csr_matrix((np.ones(2 * n_ratings), (rows, cols)), shape=(n_ratings, n_users + n_items))
    return X, y


# ---- the formula -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_pairwise_equals_naive_sum(seed):
    _, _, V, X, _ = random_problem(seed)
    assert rel_err(fm_pairwise(V, X), naive_pairwise(V, X)) < 1e-12


def test_predict_is_bias_plus_linear_plus_pairwise():
    w0, w, V, X, _ = random_problem(3)
    expected = float(w0) + X.toarray() @ w + naive_pairwise(V, X)
    assert rel_err(fm_predict(w0, w, V, X), expected) < 1e-12


def test_fm_on_two_one_hots_is_biased_mf():
    """x = (one-hot user u, one-hot item i): y_hat = w0 + w_u + w_i + <v_u, v_i>."""
    rng = np.random.default_rng(0)
    n_users, n_items, k = 5, 7, 3
    w0, w, V = 3.1, rng.normal(size=n_users + n_items), rng.normal(size=(n_users + n_items, k))
    users, items = rng.integers(0, n_users, 20), rng.integers(0, n_items, 20)
    X = sp.csr_matrix((np.ones(40), (np.repeat(np.arange(20), 2),
                                     np.column_stack([users, n_users + items]).ravel())), shape=(20, 12))
    mf = w0 + w[users] + w[n_users + items] + np.einsum("ij,ij->i", V[users], V[n_users + items])
    assert rel_err(fm_predict(w0, w, V, X), mf) < 1e-12


def test_loss_is_mse_plus_penalty():
    w0, w, V, X, y = random_problem(4)
    reg_w, reg_V = 0.03, np.linspace(0.01, 0.1, V.shape[0])
    expected = (np.mean((fm_predict(w0, w, V, X) - y) ** 2) + reg_w * np.sum(w ** 2)
                + np.sum(reg_V[:, None] * V ** 2))
    assert fm_loss(w0, w, V, X, y, reg_w, reg_V) == pytest.approx(expected, rel=1e-12)
    assert fm_loss(w0, w, V, X, y) == pytest.approx(np.mean((fm_predict(w0, w, V, X) - y) ** 2), rel=1e-12)


# ---- gradients ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_feature", [False, True])
def test_gradients_match_finite_differences(seed, per_feature):
    w0, w, V, X, y = random_problem(seed)
    rng = np.random.default_rng(100 + seed)
    reg_w = rng.uniform(0.01, 0.1, len(w)) if per_feature else 0.05
    reg_V = rng.uniform(0.01, 0.1, len(w)) if per_feature else 0.02

    def loss(p):
        return fm_loss(p["w0"], p["w"], p["V"], X, y, reg_w, reg_V)

    def grads(p):
        return fm_gradients(p["w0"], p["w"], p["V"], X, y, reg_w, reg_V)

    result = check_gradients(loss, grads, {"w0": w0, "w": w, "V": V}, tol=1e-6)
    assert set(result.relative_errors) == {"w0", "w", "V"}
    result.assert_passed(1e-6)


def test_gradient_of_v_has_the_self_pair_correction():
    """d y_hat / d v_jf = x_j sum_l v_lf x_l - v_jf x_j^2: drop the second term and the check fails."""
    w0, w, V, X, y = random_problem(5)
    g = fm_gradients(w0, w, V, X, y)
    residual = fm_predict(w0, w, V, X) - y
    d = 2 * residual / len(y)
    without_correction = X.T @ (d[:, None] * (X @ V))
    assert rel_err(g["V"], without_correction) > 1e-3
    assert rel_err(g["V"], without_correction - (X.power(2).T @ d)[:, None] * V) < 1e-12


def test_loss_and_gradients_agree_with_the_separate_functions():
    w0, w, V, X, y = random_problem(6)
    loss, grads = fm_loss_and_gradients(w0, w, V, X, y, 0.01, 0.02)
    assert loss == pytest.approx(fm_loss(w0, w, V, X, y, 0.01, 0.02), rel=1e-12)
    for name, value in fm_gradients(w0, w, V, X, y, 0.01, 0.02).items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-12)


def test_adam_update_matches_the_formula():
    rng = np.random.default_rng(0)
    param, grad, m, v = rng.normal(size=(4, 6))
    v = np.abs(v)
    new, new_m, new_v = adam_update(param, grad, m, v, step=3, learning_rate=0.01)
    exp_m = 0.9 * m + 0.1 * grad
    exp_v = 0.999 * v + 0.001 * grad ** 2
    expected = param - 0.01 * (exp_m / (1 - 0.9 ** 3)) / (np.sqrt(exp_v / (1 - 0.999 ** 3)) + 1e-8)
    np.testing.assert_allclose(new_m, exp_m)
    np.testing.assert_allclose(new_v, exp_v)
    np.testing.assert_allclose(new, expected)
    assert not np.shares_memory(new, param)


# ---- row-sparse (lazy) training ---------------------------------------------------------------------
def float32_problem(seed, n_rows=12, n_features=9, k=4, density=0.4):
    w0, w, V, X, y = random_problem(seed, n_rows, n_features, k, density)
    return (np.float32(w0), w.astype(np.float32), V.astype(np.float32), X.astype(np.float32).tocsr(),
            y.astype(np.float32))


def trainer_for(w0, w, V, reg_w, reg_V, optimizer="adam", num_threads=1, steps_done=0, moments=None):
    trainer = RowSparseTrainer(w0, w.copy(), V.copy(), reg_w, reg_V, optimizer, max_batch_rows=1000,
                               max_batch_nnz=10_000, num_threads=num_threads)
    trainer.steps = steps_done
    if moments is not None:
        for name, (m, v) in moments.items():
            trainer.moments[name] = (m.copy(), v.copy())
    return trainer


class OptimizerSpy:
    """Stands in for adam_update_rows in mflib.models._fm_train: records every call, then does the update."""

    def __init__(self):
        self.calls = []

    def __call__(self, param, m, v, rows, gradient, *args, **kwargs):
        self.calls.append((param.ndim, np.array(rows), np.array(gradient)))
        adam_update_rows(param, m, v, rows, gradient, *args, **kwargs)

    def rows(self, ndim=2):
        return [rows for n, rows, _ in self.calls if n == ndim]


class CallRecorder:
    """Wraps a function and keeps the positional arguments of every call in ``.calls``."""

    def __init__(self, function):
        self.function, self.calls = function, []

    def __call__(self, *args):
        self.calls.append(args)
        return self.function(*args)


def test_adam_update_rows_is_adam_update_on_the_listed_rows():
    rng = np.random.default_rng(0)
    param, m = rng.normal(size=(2, 30, 5)).astype(np.float32)
    v = rng.uniform(0.1, 1.0, (30, 5)).astype(np.float32)
    rows = np.array([2, 3, 11, 29])
    grad = rng.normal(size=(4, 5)).astype(np.float32)
    expected = adam_update(param[rows], grad, m[rows], v[rows], step=7, learning_rate=0.05)
    new_param, new_m, new_v = param.copy(), m.copy(), v.copy()
    adam_update_rows(new_param, new_m, new_v, rows, grad, step=7, learning_rate=0.05)
    for new, old, exp in zip((new_param, new_m, new_v), (param, m, v), expected):
        np.testing.assert_allclose(new[rows], exp, rtol=1e-5, atol=1e-7)
        untouched = np.setdiff1d(np.arange(30), rows)
        np.testing.assert_array_equal(new[untouched], old[untouched])
    with pytest.raises(ValueError, match="sorted, unique"):
        adam_update_rows(new_param, new_m, new_v, np.array([3, 2, 11, 29]), grad, step=8, learning_rate=0.05)
    with pytest.raises(ValueError, match="sorted, unique"):
        adam_update_rows(new_param, new_m, new_v, np.array([2, 3, 11, 30]), grad, step=8, learning_rate=0.05)


@pytest.mark.parametrize("seed", [0, 1])
def test_lazy_step_is_dense_adam_restricted_to_the_touched_rows(seed):
    """One step of the trainer = fm_gradients + adam_update on the touched rows; other rows do not move."""
    w0, w, V, X, y = float32_problem(seed, n_rows=6, n_features=14, density=0.2)
    rng = np.random.default_rng(seed)
    reg_w, reg_V = rng.uniform(0.01, 0.1, 14).astype(np.float32), rng.uniform(0.01, 0.1, 14).astype(np.float32)
    moments = {"w0": (np.asarray(np.float32(0.3)), np.asarray(np.float32(0.2))),
               "w": (rng.normal(size=14).astype(np.float32), rng.uniform(0.1, 1, 14).astype(np.float32)),
               "V": (rng.normal(size=V.shape).astype(np.float32), rng.uniform(0.1, 1, V.shape).astype(np.float32))}
    trainer = trainer_for(w0, w, V, reg_w, reg_V, steps_done=4, moments=moments)
    touched = np.unique(X.indices)
    untouched = np.setdiff1d(np.arange(14), touched)
    assert len(touched) >= 3 and len(untouched) >= 3, "the problem must have touched and untouched features"
    squared_error = trainer.step(compact_batch(X, y), learning_rate=0.01)

    grads = fm_gradients(np.float64(w0), w.astype(np.float64), V.astype(np.float64), X.astype(np.float64),
                         y.astype(np.float64), reg_w.astype(np.float64), reg_V.astype(np.float64))
    residual = fm_predict(np.float64(w0), w.astype(np.float64), V.astype(np.float64), X.astype(np.float64)) - y
    assert squared_error == pytest.approx(float(residual @ residual), rel=1e-5)
    for name, old, new in (("w", w, trainer.w), ("V", V, trainer.V)):
        m, v = moments[name]
        expected, exp_m, exp_v = adam_update(old[touched].astype(np.float64), grads[name][touched], m[touched],
                                             v[touched], step=5, learning_rate=0.01)
        np.testing.assert_allclose(new[touched], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(trainer.moments[name][0][touched], exp_m, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(trainer.moments[name][1][touched], exp_v, rtol=1e-4, atol=1e-7)
        np.testing.assert_array_equal(new[untouched], old[untouched])
        np.testing.assert_array_equal(trainer.moments[name][0][untouched], m[untouched])
        np.testing.assert_array_equal(trainer.moments[name][1][untouched], v[untouched])
    expected_w0 = adam_update(np.float64(w0), grads["w0"], 0.3, 0.2, step=5, learning_rate=0.01)[0]
    assert float(trainer.w0) == pytest.approx(float(expected_w0), rel=1e-6)


def test_duplicate_features_in_a_batch_accumulate_every_occurrence():
    """Features shared by many rows of a batch: the gradient sums one term per row, like a loop over examples."""
    rng = np.random.default_rng(3)
    n_features, k = 7, 3
    rows = [[0, 2, 5], [0, 2], [0, 3, 5], [0, 2, 6], [1, 2, 5], [0, 2]]      # 0, 2, 5 repeat
    values = [[1.0, 0.5, 1.0], [1.0, 1.0], [1.0, 0.25, 0.5], [1.0, 1.0, 2.0], [1.0, 0.5, 1.0], [1.0, 1.0]]
    X = sp.csr_matrix((np.concatenate(values), np.concatenate(rows), np.cumsum([0] + [len(r) for r in rows])),
                      shape=(len(rows), n_features), dtype=np.float32)
    y = rng.uniform(1, 5, len(rows)).astype(np.float32)
    w0, w, V = np.float32(3.0), rng.normal(size=n_features).astype(np.float32), \
        rng.normal(scale=0.5, size=(n_features, k)).astype(np.float32)
    reg = np.full(n_features, 0.05, np.float32)
    # the loop: one example at a time, one feature at a time
    grad_V, grad_w = np.zeros((n_features, k)), np.zeros(n_features)
    for i in range(len(rows)):
        x = dict(zip(rows[i], values[i]))
        s = sum(x[j] * V[j].astype(np.float64) for j in x)
        prediction = w0 + sum(w[j] * x[j] for j in x) + 0.5 * (s @ s - sum(x[j] ** 2 * V[j] @ V[j] for j in x))
        g = 2 * (prediction - y[i]) / len(rows)
        for j, x_j in x.items():
            grad_w[j] += g * x_j
            grad_V[j] += g * (x_j * s - x_j ** 2 * V[j])
    touched = np.unique(X.indices)
    grad_w[touched] += 2 * reg[touched] * w[touched]
    grad_V[touched] += 2 * reg[touched, None] * V[touched]

    trainer = trainer_for(w0, w, V, reg, reg, optimizer="sgd")
    trainer.step(compact_batch(X, y), learning_rate=1.0)                  # SGD, step 1: theta - grad
    np.testing.assert_allclose(V - trainer.V, grad_V, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w - trainer.w, grad_w, rtol=1e-5, atol=1e-6)
    assert np.all(trainer.V[4] == V[4]) and trainer.w[4] == w[4]          # feature 4 is in no row


def test_a_step_only_updates_the_rows_the_batch_touches(monkeypatch):
    """A million features, batches of 32 rows: the optimiser only ever sees the batch's features.

    (A correctness test of the O(nnz(batch) x k) claim: the optimiser and the work arrays never get a
    row count that grows with n_features.)"""
    rng = np.random.default_rng(0)
    n_features, n_rows, batch_size = 1_000_000, 256, 32
    columns = np.sort(rng.choice(n_features, (n_rows, 3), replace=True), axis=1)
    X = sp.csr_matrix((np.ones(3 * n_rows, np.float32), columns.ravel(), np.arange(0, 3 * n_rows + 1, 3)),
                      shape=(n_rows, n_features))
    y = rng.uniform(1, 5, n_rows)
    spy = OptimizerSpy()
    monkeypatch.setattr(_fm_train, "adam_update_rows", spy)
    recorder = CallRecorder(compact_batch)
    monkeypatch.setattr(_fm_train, "compact_batch", recorder)
    fm = FactorizationMachine(factors=2, iterations=1, batch_size=batch_size, random_state=0).fit(X, y)
    batches = [batch_rows for batch_rows, _ in recorder.calls]
    assert len(batches) == n_rows // batch_size
    factor_calls, linear_calls = spy.rows(2), spy.rows(1)
    assert len(factor_calls) == len(linear_calls) == len(batches)
    for batch, factor_rows, linear_rows in zip(batches, factor_calls, linear_calls):
        features = np.unique(batch.indices)
        np.testing.assert_array_equal(factor_rows, features)
        np.testing.assert_array_equal(linear_rows, features)
        assert len(features) <= 3 * batch_size
    # rows no batch touched keep their initial values and zero linear weight
    never = np.setdiff1d(np.arange(n_features), X.indices)
    assert np.all(fm.weights[never] == 0)
    initial = np.random.default_rng(0).standard_normal((n_features, 2), dtype=np.float32) * np.float32(0.1)
    np.testing.assert_array_equal(fm.feature_factors[never[:1000]], initial[never[:1000]])


def test_the_model_does_not_depend_on_the_number_of_threads(monkeypatch):
    """Forward and update blocks (made small here, so a batch has several) give the same model on 1 or 3 threads."""
    monkeypatch.setattr(_fm_train, "ROW_BLOCK", 16)
    monkeypatch.setattr(_fm_train, "FEATURE_BLOCK", 8)
    X, y = synthetic_ratings(8)
    kwargs = dict(factors=4, iterations=2, batch_size=100, random_state=3)
    one = FactorizationMachine(num_threads=1, **kwargs).fit(X, y)
    three = FactorizationMachine(num_threads=3, **kwargs).fit(X, y)
    np.testing.assert_array_equal(one.feature_factors, three.feature_factors)
    np.testing.assert_array_equal(one.weights, three.weights)
    assert one.global_bias == three.global_bias and one.loss_history_ == three.loss_history_


# ---- the estimator -----------------------------------------------------------------------------------
def test_lazy_export():
    assert mflib.FactorizationMachine is FactorizationMachine


def test_loss_decreases_and_fits_planted_model():
    X, y = synthetic_ratings()
    fm = FactorizationMachine(factors=3, iterations=15, batch_size=64, random_state=0,
                              regularization=1e-4).fit(X, y)
    history = np.array(fm.loss_history_)
    assert len(history) == 15
    assert history[-1] < 0.5 * history[0]
    assert np.all(np.diff(history[:5]) < 0)
    baseline = np.sqrt(np.mean((y - y.mean()) ** 2))
    assert np.sqrt(np.mean((fm.predict(X) - y) ** 2)) < 0.6 * baseline


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_same_seed_same_model(optimizer):
    X, y = synthetic_ratings(1)
    kwargs = dict(factors=4, iterations=3, batch_size=100, optimizer=optimizer,
                  learning_rate=0.01 if optimizer == "adam" else 0.5)
    a = FactorizationMachine(random_state=7, **kwargs).fit(X, y)
    b = FactorizationMachine(random_state=7, **kwargs).fit(X, y)
    c = FactorizationMachine(random_state=8, **kwargs).fit(X, y)
    np.testing.assert_array_equal(a.feature_factors, b.feature_factors)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.global_bias == b.global_bias and a.loss_history_ == b.loss_history_
    assert not np.array_equal(a.feature_factors, c.feature_factors)


def test_attributes_shapes_and_aliases():
    X, y = synthetic_ratings(2)
    fm = FactorizationMachine(factors=5, iterations=2, random_state=0).fit(X, y)
    assert fm.feature_factors.shape == (X.shape[1], 5) and fm.feature_factors.dtype == np.float32
    assert fm.weights.shape == (X.shape[1],) and fm.weights.dtype == np.float32
    assert isinstance(fm.global_bias, float)
    assert fm.w0_ == fm.global_bias and fm.w_ is fm.weights and fm.V_ is fm.feature_factors
    assert fm.n_features_in_ == X.shape[1] and fm.best_iteration_ == 2
    assert fm.get_params()["factors"] == 5


def test_predict_clips_to_the_rating_scale_and_matches_fm_predict():
    X, y = synthetic_ratings(3)
    fm = FactorizationMachine(factors=4, iterations=3, random_state=0).fit(X, y)
    raw = fm_predict(fm.global_bias, fm.weights, fm.feature_factors, X)
    np.testing.assert_allclose(fm.predict(X), np.clip(raw, 1, 5), rtol=1e-5, atol=1e-5)
    fm.global_bias += 10  # every prediction far above the scale
    assert np.all(fm.predict(X) == 5.0)
    fm.rating_scale = None
    assert np.all(fm.predict(X) > 5.0)


def test_batch_and_single_row_predictions_agree():
    X, y = synthetic_ratings(4)
    fm = FactorizationMachine(factors=4, iterations=2, random_state=0).fit(X, y)
    batch = fm.predict(X[:20])
    single = np.array([fm.predict(X[i])[0] for i in range(20)])
    np.testing.assert_allclose(batch, single, rtol=1e-6)


def test_early_stopping_keeps_the_best_epoch():
    X, y = synthetic_ratings(5)
    fm = FactorizationMachine(factors=4, iterations=30, learning_rate=0.05, regularization=0.0,
                              linear_regularization=0.0, learning_rate_decay=1.0, early_stopping=True,
                              n_iter_no_change=2, random_state=0).fit(X, y)
    history = fm.validation_history_
    assert len(history) == len(fm.loss_history_) >= 1
    assert fm.best_iteration_ == int(np.argmin(history)) + 1
    if len(history) < 30:  # stopped early: the last n_iter_no_change epochs did not improve
        assert min(history[-2:]) >= min(history)


def test_save_load_roundtrip(tmp_path):
    X, y = synthetic_ratings(6)
    fm = FactorizationMachine(factors=3, iterations=2, random_state=0).fit(X, y)
    fm.save(tmp_path / "fm.pkl")
    loaded = FactorizationMachine.load(tmp_path / "fm.pkl")
    np.testing.assert_array_equal(loaded.predict(X), fm.predict(X))


def test_input_errors():
    X, y = synthetic_ratings(7)
    with pytest.raises(TypeError, match="sparse"):
        FactorizationMachine().fit(X.toarray(), y)
    with pytest.raises(ValueError, match="rows"):
        FactorizationMachine().fit(X, y[:-1])
    with pytest.raises(RuntimeError, match="not fitted"):
        FactorizationMachine().predict(X)
    fm = FactorizationMachine(factors=2, iterations=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fm.predict(sp.csr_matrix((3, X.shape[1] + 1)))


# ---- features ----------------------------------------------------------------------------------------
def test_buckets():
    assert list(age_bucket([7, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73])) == \
        [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert [YEAR_LABELS[b] for b in year_bucket([1922, 1960, 1979, 1994, 1995, 1996, 1997, 1998])] == \
        ["<1960", "1960-69", "1970-79", "1990-94", "1995-96", "1995-96", "1997+", "1997+"]
    import pandas as pd
    assert YEAR_LABELS[year_bucket(pd.array([pd.NA], dtype="Int64"))[0]] == "unknown"


def test_feature_blocks_on_ml100k(ml100k):
    X, space = build_features(ml100k)
    sizes = {block.name: block.size for block in space.blocks}
    assert sizes == {"user": 943, "item": 1682, "age": 7, "gender": 2, "occupation": 21, "genres": 19,
                     "year": 8}
    assert isinstance(space, FeatureSpace) and space.fields == ALL_FIELDS
    assert X.shape == (100_000, space.n_features) == (100_000, 2682)
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32
    assert len(space.names) == space.n_features and space.names[0] == "user=1"
    assert space.names[space.column("occupation", "student")] == "occupation=student"
    assert list(space.block("age").labels) == list(AGE_LABELS)
    # every row: exactly one column in each one-hot block, genre weights summing to one
    for name in ("user", "item", "age", "gender", "occupation", "year"):
        block = X[:, space.slice(name)]
        assert np.all(block.getnnz(axis=1) == 1), name
        assert np.all(block.data == 1.0), name
    genres = X[:, space.slice("genres")]
    np.testing.assert_allclose(np.asarray(genres.sum(axis=1)).ravel(), 1.0, rtol=1e-6)
    # the one-hots point at the right user and item, the side blocks at their attributes
    r = ml100k.ratings
    np.testing.assert_array_equal(X[:, space.slice("user")].indices, r["user_idx"].to_numpy())
    np.testing.assert_array_equal(X[:, space.slice("item")].indices, r["item_idx"].to_numpy())
    user0 = int(r["user_idx"].iloc[0])
    occupation = ml100k.users["occupation"].iloc[user0]
    assert X[0, space.column("occupation", occupation)] == 1.0
    toy_story = X[np.flatnonzero(r["item_idx"].to_numpy() == 0)[0]]
    for genre in ("Animation", "Children's", "Comedy"):
        assert toy_story[0, space.column("genres", genre)] == pytest.approx(1 / 3)
    assert toy_story[0, space.column("year", "1995-96")] == 1.0


def test_feature_subsets_and_binary_genres(ml100k):
    df = ml100k.ratings.iloc[:500]
    X, space = build_features(ml100k, df, fields=("item", "user"))
    assert space.fields == ("user", "item") and X.shape == (500, 943 + 1682)
    assert np.all(X.getnnz(axis=1) == 2)
    Xb, sb = build_features(ml100k, df, fields=("item", "genres"), genre_weights="binary")
    assert set(np.unique(Xb.data)) == {1.0}
    counts = ml100k.items["genres"].map(len).to_numpy()[df["item_idx"].to_numpy()]
    np.testing.assert_array_equal(Xb[:, sb.slice("genres")].getnnz(axis=1), counts)
    with pytest.raises(ValueError, match="unknown field"):
        build_features(ml100k, df, fields=("user", "zip"))


def test_cold_start_rows(ml100k):
    _, space = build_features(ml100k, ml100k.ratings.iloc[:10])
    X = cold_start_rows(space, ml100k, age=25, gender="M", occupation="student")
    assert X.shape == (ml100k.n_items, space.n_features)
    assert X[:, space.slice("user")].nnz == 0  # a brand-new user has no one-hot column
    for name, label in (("age", "25-34"), ("gender", "M"), ("occupation", "student")):
        block = X[:, space.slice(name)]
        assert np.all(block.getnnz(axis=1) == 1)
        np.testing.assert_array_equal(block.indices, space.column(name, label) - space.block(name).start)
    # the item side is the same as in training rows: item one-hot in index order, genres, year
    item_block = X[:, space.slice("item")]
    np.testing.assert_array_equal(item_block.indices, np.arange(ml100k.n_items))
    np.testing.assert_allclose(X[:, space.slice("genres")].toarray(),
                               item_rows(space, ml100k)[:, space.slice("genres")].toarray())
    row = user_row(space, 60, "F", "retired")
    assert row.shape == (1, space.n_features)
    assert {space.names[c] for c in row.indices} == {"age=56+", "gender=F", "occupation=retired"}
    subset = cold_start_rows(space, ml100k, 60, "F", "retired", items=[0, 49])
    assert subset.shape == (2, space.n_features)
    assert list(subset[:, space.slice("item")].indices) == [0, 49]
    with pytest.raises(ValueError, match="occupation"):
        cold_start_rows(space, ml100k, 30, "M", "astronaut")


def test_block_regularization_follows_the_feature_space(ml100k):
    df = ml100k.ratings.iloc[:2000]
    X, space = build_features(ml100k, df)
    fm = FactorizationMachine(iterations=1, random_state=0).fit(X, df["rating"], feature_space=space)
    for block in space.blocks:
        assert np.all(fm.regularization_V_[block.slice()] == np.float32(DEFAULT_BLOCK_REGULARIZATION[block.name]))
    plain = FactorizationMachine(iterations=1, random_state=0, regularization=0.003).fit(X, df["rating"])
    assert np.all(plain.regularization_V_ == np.float32(0.003))
    with pytest.raises(ValueError, match="describes"):
        FactorizationMachine(iterations=1).fit(X[:, :100], df["rating"], feature_space=space)


# ---- real data ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_ml100k(ml100k):
    """Default FM with all side features on the protocol split, seed 0 (a few seconds)."""
    from mflib.evaluation import explicit_split

    train, test = explicit_split(ml100k, 0)
    X_train, space = build_features(ml100k, train)
    fm = FactorizationMachine(random_state=0).fit(X_train, train["rating"], feature_space=space)
    return fm, space, train, test


@pytest.mark.slow
def test_ml100k_rmse_with_side_features(ml100k, fitted_ml100k):
    from mflib.metrics import rmse

    fm, space, _, test = fitted_ml100k
    X_test, test_space = build_features(ml100k, test)
    assert test_space.names == space.names
    score = rmse(test["rating"], fm.predict(X_test))
    assert score <= 0.92, (f"FM RMSE {score:.4f} on ML-100K seed 0; benchmarks/bench.py reports the mean of "
                           "seeds 0, 1, 2 at the defaults")
    assert fm.loss_history_[-1] < fm.loss_history_[0]


@pytest.mark.slow
def test_cold_start_recommendations_depend_on_demographics(ml100k, fitted_ml100k):
    fm, space, train, _ = fitted_ml100k
    tops = {}
    for who in [(25, "M", "student"), (60, "F", "retired")]:
        scores = fm.predict(cold_start_rows(space, ml100k, *who))
        assert scores.shape == (ml100k.n_items,)
        tops[who] = np.argsort(-scores)[:10]
    a, b = tops.values()
    assert len(set(a) & set(b)) <= 7, "a student and a retiree got (almost) the same top-10"
    # well-liked films: the top-10 average train rating is far above the mean film's
    counts = np.bincount(train["item_idx"], minlength=ml100k.n_items)
    sums = np.bincount(train["item_idx"], weights=train["rating"], minlength=ml100k.n_items)
    mean_rating = sums / np.maximum(counts, 1)
    for top in tops.values():
        assert mean_rating[top].mean() >= 4.0
    # and one of the most-loved, much-rated films is there for the student (Star Wars, Shawshank, ...)
    loved = np.flatnonzero((counts >= 100) & (mean_rating >= 4.2))
    assert len(set(tops[(25, "M", "student")]) & set(loved)) >= 2


def test_block_regularization_rejects_unknown_blocks(ml100k):
    df = ml100k.ratings.iloc[:500]
    X, space = build_features(ml100k, df)
    with pytest.raises(ValueError, match="unknown block"):
        FactorizationMachine(iterations=1, block_regularization={"users": 1e-4}).fit(X, df["rating"],
                                                                                     feature_space=space)
    fm = FactorizationMachine(iterations=1, block_regularization={"user": 0.5}, regularization=0.25)
    fm.fit(X, df["rating"], feature_space=space)
    assert np.all(fm.regularization_V_[space.slice("user")] == 0.5)
    assert np.all(fm.regularization_V_[space.slice("item")] == 0.25)
