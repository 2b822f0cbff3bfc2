"""autograder.checks: every check passes correct inputs and names each typical bug.

Tiny synthetic problems for the gradient / reference / loss / RMSE checks; the real ML-100K with
implicit's ALS (wrapped in mflib's FactorModel) and mflib's Popularity for the ranking and similar-item
checks.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

import autograder
from autograder import checks
from autograder.checks import (check_factors, check_gradient, check_loss_decreases, check_matches_reference,
                               check_ranking, check_recommend, check_rmse, check_similar_items)
from mflib.models.base import FactorModel


# ---------------------------------------------------------------------------------------------
# a tiny regularised matrix-factorisation problem
# ---------------------------------------------------------------------------------------------
N_USERS, N_ITEMS, K, LAM = 8, 11, 3, 0.1
_rng = np.random.default_rng(42)
USERS = _rng.integers(0, N_USERS, 40)
ITEMS = _rng.integers(0, N_ITEMS - 3, 40)  # items 8..10 are not in the batch
RATINGS = _rng.normal(size=40)


def mf_loss(params):
    """½ Σ (r - p_u·q_i)² + ½ λ (||P||² + ||Q||²) + ½ λ ||b||²"""
    P, Q, b = params["user_factors"], params["item_factors"], params["item_bias"]
    error = RATINGS - np.sum(P[USERS] * Q[ITEMS], axis=1) - b[ITEMS]
    return 0.5 * np.sum(error ** 2) + 0.5 * LAM * (np.sum(P ** 2) + np.sum(Q ** 2) + np.sum(b ** 2))


def mf_grad(params, sign=1.0, reg=True, factor=1.0, duplicates_lost=False, bias=True, transpose=False):
    P, Q, b = params["user_factors"], params["item_factors"], params["item_bias"]
    error = np.sum(P[USERS] * Q[ITEMS], axis=1) + b[ITEMS] - RATINGS
    gP, gQ, gb = np.zeros_like(P), np.zeros_like(Q), np.zeros_like(b)
    if duplicates_lost:
        gP[USERS] += error[:, None] * Q[ITEMS]
    else:
        np.add.at(gP, USERS, error[:, None] * Q[ITEMS])
    np.add.at(gQ, ITEMS, error[:, None] * P[USERS])
    if bias:
        np.add.at(gb, ITEMS, error)
    if reg:
        gP += LAM * P
        gQ += LAM * Q
        gb += LAM * b
    out = {"user_factors": sign * factor * gP, "item_factors": sign * gQ, "item_bias": gb}
    if transpose:
        out["user_factors"] = out["user_factors"].T
    return out


def make_params(seed):
    rng = np.random.default_rng(seed)
    return {"user_factors": rng.normal(size=(N_USERS, K)), "item_factors": rng.normal(size=(N_ITEMS, K)),
            "item_bias": rng.normal(size=N_ITEMS)}


def failure(fn, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# check_gradient
# ---------------------------------------------------------------------------------------------
def test_gradient_correct_passes_and_prints_figure(capsys):
    check_gradient(mf_loss, mf_grad, make_params, name="mf")
    out = capsys.readouterr()
    assert out.out.startswith("✓ mf: gradients match") and "relative error" in out.out
    assert out.out.count("\n") == 1 and out.err == ""


@pytest.mark.parametrize("bug, expected", [
    (dict(sign=-1.0), ["relative error 1 for 'user_factors'", "sign flipped"]),
    (dict(factor=2.0), ["'user_factors'", "factor of 2", "forget the ½"]),
    (dict(factor=0.5), ["'user_factors'", "factor of 2", "half"]),
    (dict(reg=False), ["regularization", "λ·θ", "missing"]),
    (dict(duplicates_lost=True), ["'user_factors'", "np.add.at"]),
    (dict(bias=False), ["'item_bias'"]),
    (dict(transpose=True), ["shape (3, 8)", "transposed"]),
])
def test_gradient_bugs_are_named(bug, expected):
    message = failure(check_gradient, mf_loss, lambda p: mf_grad(p, **bug), make_params, name="mf")
    for text in expected:
        assert text in message, message


def test_gradient_regularization_only_on_touched_rows():
    """Lazy regularisation (only rows in the batch) is wrong where the other rows' λ·θ matters."""
    def lazy(params):
        grads = mf_grad(params, reg=False)
        for key, rows in (("user_factors", USERS), ("item_factors", ITEMS), ("item_bias", ITEMS)):
            touched = np.zeros(len(params[key]), dtype=bool)
            touched[rows] = True
            grads[key][touched] += LAM * params[key][touched]
        return grads

    assert (~np.isin(np.arange(N_ITEMS), ITEMS)).any(), "the toy batch must leave an item out"
    message = failure(check_gradient, mf_loss, lazy, make_params)
    assert "regularization" in message and "rows" in message, message


def test_gradient_missing_key_zero_nan_and_not_implemented():
    assert "no gradient for 'item_bias'" in failure(
        check_gradient, mf_loss, lambda p: {k: v for k, v in mf_grad(p).items() if k != "item_bias"},
        make_params)
    assert "all zeros" in failure(
        check_gradient, mf_loss, lambda p: {**mf_grad(p), "item_bias": np.zeros(N_ITEMS)}, make_params)
    assert "NaN" in failure(
        check_gradient, mf_loss, lambda p: {**mf_grad(p), "item_bias": np.full(N_ITEMS, np.nan)}, make_params)

    def blank(params):
        raise NotImplementedError()

    assert "not implemented yet" in failure(check_gradient, mf_loss, blank, make_params)
    assert "returned None" in failure(check_gradient, mf_loss, lambda p: None, make_params)


def test_gradient_accepts_tuple_and_float32_output():
    check_gradient(mf_loss, lambda p: tuple(v.astype(np.float32) for v in mf_grad(p).values()), make_params,
                   tol=1e-5)


def test_gradient_samples_large_parameters(capsys):
    weights = np.random.default_rng(0).normal(size=3000)
    check_gradient(lambda p: 0.5 * np.sum(weights * p["w"] ** 2), lambda p: {"w": weights * p["w"]},
                   lambda seed: {"w": np.random.default_rng(seed).normal(size=3000)}, max_entries=50)
    assert "✓" in capsys.readouterr().out


def test_gradient_check_uses_float64_even_for_float32_params():
    check_gradient(mf_loss, mf_grad,
                   lambda seed: {k: v.astype(np.float32) for k, v in make_params(seed).items()})


# ---------------------------------------------------------------------------------------------
# check_matches_reference
# ---------------------------------------------------------------------------------------------
def reference_predict(user_factors, item_factors, users, items):
    return np.sum(user_factors[users] * item_factors[items], axis=1)


def predict_inputs(seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(5, 3)), rng.normal(size=(7, 3)), rng.integers(0, 5, 9), rng.integers(0, 7, 9))


def reference_topk(scores, k):
    return np.argsort(-scores, kind="stable")[:k]


def reference_step(user_factors, gradient, learning_rate):
    user_factors -= learning_rate * gradient


def step_inputs(seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(4, 2)), rng.normal(size=(4, 2)), 0.1)


def reference_grads(user_factors, item_factors, regularization):
    return {"user_factors": user_factors @ item_factors.T @ item_factors + regularization * user_factors,
            "item_factors": 2 * item_factors}


def grads_inputs(seed):
    rng = np.random.default_rng(seed)
    return {"user_factors": rng.normal(size=(4, 3)), "item_factors": rng.normal(size=(6, 3)),
            "regularization": 0.1}


def test_matches_reference_passes(capsys):
    def loop_predict(user_factors, item_factors, users, items):  # an alternative correct solution
        return np.array([user_factors[u] @ item_factors[i] for u, i in zip(users, items)])

    check_matches_reference(loop_predict, reference_predict, predict_inputs, name="predict")
    check_matches_reference(lambda s, k: np.argsort(-s)[:k], reference_topk,
                            lambda seed: (np.random.default_rng(seed).normal(size=30), 5))
    check_matches_reference(lambda P, g, lr: P.__isub__(lr * g), reference_step, step_inputs)
    check_matches_reference(lambda **kw: reference_grads(**kw), reference_grads, grads_inputs)
    out = capsys.readouterr().out
    assert "✓ predict matches the reference on 3 random input(s)" in out


@pytest.mark.parametrize("student, reference, inputs, expected", [
    (lambda P, Q, u, i: -reference_predict(P, Q, u, i), reference_predict, predict_inputs, "sign flipped"),
    (lambda P, Q, u, i: 2 * reference_predict(P, Q, u, i), reference_predict, predict_inputs, "factor of 2"),
    (lambda P, Q, u, i: np.sum(P[u] * Q[i]), reference_predict, predict_inputs, "expected (9,)"),
    (lambda P, Q, u, i: None, reference_predict, predict_inputs, "forget `return`"),
    (lambda P, Q, u, i: np.sum(P[u] * Q[i], axis=1) * np.nan, reference_predict, predict_inputs, "NaN"),
    (lambda s, k: np.argsort(-s)[:k][::-1], reference_topk,
     lambda seed: (np.random.default_rng(seed).normal(size=30), 5), "wrong order"),
    (lambda s, k: np.argsort(s)[:k], reference_topk,
     lambda seed: (np.random.default_rng(seed).normal(size=30), 5), "entries differ"),
    (lambda P, g, lr: P - lr * g, reference_step, step_inputs, "updated in place"),
    (lambda P, g, lr: P.__iadd__(lr * g), reference_step, step_inputs, "sign flipped"),
    (lambda user_factors, item_factors, regularization: {
        "user_factors": user_factors @ item_factors.T @ item_factors, "item_factors": 2 * item_factors},
     reference_grads, grads_inputs, "regularization"),
    (lambda **kw: {"user_factors": kw["user_factors"]}, reference_grads, grads_inputs, "no key(s)"),
    (lambda P, Q, u, i: reference_predict(P, Q, u, i).reshape(3, 3), reference_predict, predict_inputs,
     "shape (3, 3)"),
])
def test_matches_reference_bugs(student, reference, inputs, expected):
    assert expected in failure(check_matches_reference, student, reference, inputs)


def test_matches_reference_scalars_and_tuples():
    def reference(x):
        return float(np.sum(x)), np.cumsum(x)

    inputs = lambda seed: (np.arange(1.0, 5.0) + seed,)  # noqa: E731
    check_matches_reference(lambda x: (np.sum(x), np.cumsum(x)), reference, inputs)
    message = failure(check_matches_reference, lambda x: (0.5 * np.sum(x), np.cumsum(x)), reference, inputs)
    assert "output[0]" in message and "factor of 2" in message


def test_student_cannot_corrupt_reference_inputs():
    def vandal(P, Q, u, i):
        P[:] = 0.0
        return reference_predict(P, Q, u, i)

    assert "differs" in failure(check_matches_reference, vandal, reference_predict, predict_inputs)


def test_monkeypatched_numpy_does_not_change_verdicts():
    saved = (np.allclose, np.linalg.norm, np.isfinite, np.max, np.abs)
    try:
        np.allclose = lambda *a, **k: True
        np.linalg.norm = lambda *a, **k: 0.0
        np.max = lambda *a, **k: 0.0
        np.abs = lambda x, *a, **k: x * 0
        with pytest.raises(AssertionError, match="sign flipped"):
            check_gradient(mf_loss, lambda p: mf_grad(p, sign=-1.0), make_params)
        with pytest.raises(AssertionError, match="sign flipped"):
            check_matches_reference(lambda *a: -reference_predict(*a), reference_predict, predict_inputs)
    finally:
        np.allclose, np.linalg.norm, np.isfinite, np.max, np.abs = saved


# ---------------------------------------------------------------------------------------------
# check_loss_decreases
# ---------------------------------------------------------------------------------------------
def test_loss_decreases_passes_with_sgd_noise(capsys):
    rng = np.random.default_rng(0)
    history = 1.0 / np.arange(1, 21) + rng.normal(0, 0.01, 20)  # noisy but clearly falling
    check_loss_decreases(list(history))
    check_loss_decreases([0.9, 0.8, 0.81, 0.7, 0.705, 0.6])
    model = type("M", (), {"loss_history_": [2.0, 1.5, 1.2]})()
    check_loss_decreases(model, name="SVD loss")
    out = capsys.readouterr().out
    assert "✓ SVD loss decreases: 2 → 1.2 over 3 epochs" in out


@pytest.mark.parametrize("history, expected", [
    ([1.0, 0.9, float("nan"), 0.5], "loss is NaN at epoch 3: learning rate too large"),
    ([1.0, float("inf")], "loss is inf at epoch 2"),
    ([0.7, 0.6, 0.512, 0.631, 0.4], "loss rose between epochs 3 and 4 (0.512 → 0.631): step too large or"
                                    " gradient sign flipped".replace("step too large or",
                                                                     "step too large (lower the learning rate) or")),
    ([1.0, 1.01, 1.02, 1.03, 1.04], "went up"),
    ([1.0, 0.99, 0.985, 0.98], "fell only 2.0%"),
    ([1.0, 0.5, 0.52, 0.54, 0.56, 0.58, 0.6], "climbed back"),
    ([0.5, 0.5, 0.5], "did not change at all"),
    ([0.5], "at least 2 epochs"),
    (None, "None"),
])
def test_loss_bugs(history, expected):
    assert expected in failure(check_loss_decreases, history)


@pytest.mark.parametrize("history, expected", [
    ([1.0, 0.9, float("nan"), 0.5], "singular system"),
    ([0.7, 0.6, 0.512, 0.631, 0.4], "the solve does not minimise the loss you record"),
    ([1.0, 1.01, 1.02, 1.03, 1.04], "the solve and the recorded loss disagree"),
    ([1.0, 0.99, 0.985, 0.98], "too few iterations"),
])
def test_loss_bugs_of_closed_form_solves_never_blame_a_learning_rate(history, expected):
    message = failure(check_loss_decreases, history, name="ALS training loss", closed_form=True)
    assert expected in message and "learning rate" not in message


# ---------------------------------------------------------------------------------------------
# check_rmse
# ---------------------------------------------------------------------------------------------
def test_rmse():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, 1000).astype(float)
    value = check_rmse(truth, truth + rng.normal(0, 0.5, 1000), 0.6)
    assert value < 0.6 and f"{value:.2f}".startswith("0.")
    with pytest.raises(ValueError):  # a cell ending in check_rmse(...) must not read as partial credit
        float(repr(value))
    assert "no better than predicting the mean" in failure(check_rmse, truth, np.full(1000, 3.0) + 0.5, 0.9)
    assert "clip them" in failure(check_rmse, truth, truth * 1.5, 0.9)
    assert "NaN" in failure(check_rmse, truth, truth * np.nan, 0.9)
    assert "999 predictions for 1000 ratings" in failure(check_rmse, truth, truth[:-1], 0.9)


# ---------------------------------------------------------------------------------------------
# real ML-100K: factors, recommend, similar items, ranking
# ---------------------------------------------------------------------------------------------
def _as_factor_model(cls, user_factors, item_factors):
    model = cls()
    model.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    return model


@pytest.fixture(scope="module")
def als_factors(implicit_split_0):
    """implicit's ALS on the protocol split (a stand-in for a student's model)."""
    from threadpoolctl import threadpool_limits
    from implicit.als import AlternatingLeastSquares

    train, _ = implicit_split_0
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, random_state=0)
        als.fit(train, show_progress=False)
        transposed = AlternatingLeastSquares(factors=16, iterations=3, random_state=0)
        transposed.fit(sp.csr_matrix(train.T), show_progress=False)
    return (np.asarray(als.user_factors), np.asarray(als.item_factors),
            np.asarray(transposed.user_factors), np.asarray(transposed.item_factors))


@pytest.fixture(scope="module")
def als_model(als_factors):
    return _as_factor_model(FactorModel, *als_factors[:2])


class InnerProductSimilar(FactorModel):
    """Bug: similar items by raw inner product (popular items everywhere)."""

    def similar_items(self, itemid, N=10):
        scores = self.item_factors @ self.item_factors[itemid]
        scores[itemid] = -np.inf
        ids = np.argsort(-scores)[:N]
        return ids, scores[ids]


class IncludesSelf(FactorModel):
    def similar_items(self, itemid, N=10):
        return super().similar_items(itemid, N=N, include_self=True)


class NoFilter(FactorModel):
    def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True):
        return super().recommend(userid, user_items, N=N, filter_already_liked_items=False)


class Ascending(FactorModel):
    def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True):
        ids, scores = super().recommend(userid, user_items, N, filter_already_liked_items)
        return ids[..., ::-1], scores[..., ::-1]


class WrongTopN(FactorModel):
    """Returns N unseen items sorted by score, but not the best ones (e.g. the tail of the ranking)."""

    def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True):
        ids, scores = super().recommend(userid, user_items, 3 * N, filter_already_liked_items)
        return ids[..., 2 * N:], scores[..., 2 * N:]


class ScalarOnly(FactorModel):
    def recommend(self, userid, user_items=None, N=10, filter_already_liked_items=True):
        ids, scores = super().recommend(np.atleast_1d(userid)[:1], user_items[:1], N, filter_already_liked_items)
        return ids[0], scores[0]


@pytest.mark.slow
def test_real_model_passes_all_checks(ml100k, implicit_split_0, als_model, capsys):
    train, test = implicit_split_0
    check_factors(als_model, ml100k.n_users, ml100k.n_items)
    check_recommend(als_model, train)
    check_similar_items(als_model, ml100k, train)
    result = check_ranking(als_model, train, test, reference_ndcg=0.22)
    assert result["ndcg@10"] > 0.18
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("✓") for line in lines), lines


@pytest.mark.slow
def test_transposed_matrix_is_detected(ml100k, implicit_split_0, als_factors):
    train, test = implicit_split_0
    model = _as_factor_model(FactorModel, *als_factors[2:])
    expected = "user_factors has 1,682 rows but there are 943 users: did you pass the items × users matrix"
    assert expected in failure(check_factors, model, 943, 1682)
    assert expected in failure(check_recommend, model, train)
    assert expected in failure(check_ranking, model, train, test)


def test_factor_problems():
    rng = np.random.default_rng(0)
    good = _as_factor_model(FactorModel, rng.normal(size=(5, 2)), rng.normal(size=(7, 2)))
    check_factors(good, 5, 7)
    assert "no user_factors" in failure(check_factors, FactorModel(), 5, 7)
    assert "NaN" in failure(check_factors, _as_factor_model(FactorModel, np.full((5, 2), np.nan),
                                                            rng.normal(size=(7, 2))), 5, 7)
    assert "all zeros" in failure(check_factors, _as_factor_model(FactorModel, np.zeros((5, 2)),
                                                                  rng.normal(size=(7, 2))), 5, 7)
    assert "identical" in failure(check_factors, _as_factor_model(FactorModel, np.ones((5, 2)),
                                                                  rng.normal(size=(7, 2))), 5, 7)
    assert "item_factors has 6 rows but there are 7 items" in failure(
        check_factors, _as_factor_model(FactorModel, rng.normal(size=(5, 2)), rng.normal(size=(6, 2))), 5, 7)
    assert "float64" in failure(check_factors, good, 5, 7, dtype=np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("cls, expected", [
    (NoFilter, "items the user already rated — filter user_items"),
    (Ascending, "sorted worst first"),
    (WrongTopN, "highest-scoring unseen items"),
    (ScalarOnly, "user ids must return arrays of shape ("),
])
def test_recommend_bugs(implicit_split_0, als_factors, cls, expected):
    train, _ = implicit_split_0
    assert expected in failure(check_recommend, _as_factor_model(cls, *als_factors[:2]), train)


@pytest.mark.slow
def test_popularity_passes_recommend_and_fails_ranking_bar(implicit_split_0, capsys):
    from mflib.models.popularity import Popularity

    train, test = implicit_split_0
    popularity = Popularity().fit(train)
    check_recommend(popularity, train)
    assert "below popularity's" in failure(check_ranking, popularity, train, test)


@pytest.mark.slow
@pytest.mark.parametrize("cls, kwargs, expected", [
    (InnerProductSimilar, {}, "raw inner product"),
    (IncludesSelf, {}, "query item itself"),
    (FactorModel, {"pairs": {"Star Wars (1977)": ["Toy Story (1995)"]}},
     "'Toy Story (1995)' is not among the 10 items most similar to 'Star Wars (1977)'. Your top 10: 1. "),
    (FactorModel, {"min_genre_jaccard": 0.9}, "genre Jaccard@10"),
])
def test_similar_items_bugs(ml100k, implicit_split_0, als_factors, cls, kwargs, expected):
    train, _ = implicit_split_0
    model = _as_factor_model(cls, *als_factors[:2])
    assert expected in failure(check_similar_items, model, ml100k, train, **kwargs)


@pytest.mark.slow
def test_similar_items_random_vectors_fail(ml100k, implicit_split_0):
    train, _ = implicit_split_0
    rng = np.random.default_rng(0)
    model = _as_factor_model(FactorModel, rng.normal(size=(943, 8)), rng.normal(size=(1682, 8)))
    assert "is not among the 10 items most similar to 'Star Wars (1977)'" in failure(
        check_similar_items, model, ml100k, train)
    message = failure(check_similar_items, model, ml100k, train, pairs={})
    assert "random vectors give" in message


@pytest.mark.slow
def test_ranking_reference_fraction_and_filter(ml100k, implicit_split_0, als_factors):
    train, test = implicit_split_0
    model = _as_factor_model(FactorModel, *als_factors[:2])
    assert "below 80% of the reference's 0.5" in failure(check_ranking, model, train, test, reference_ndcg=0.5)
    assert "below the 0.5 required" in failure(check_ranking, model, train, test, min_ndcg=0.5)
    assert "already" in failure(check_ranking, _as_factor_model(NoFilter, *als_factors[:2]), train, test)


# ---------------------------------------------------------------------------------------------
# setup_notebook and the import-time contract
# ---------------------------------------------------------------------------------------------
def test_setup_notebook_is_silent_and_disables_progress_bars():
    code = textwrap.dedent("""
        import warnings
        import autograder
        autograder.setup_notebook()
        from tqdm.auto import tqdm
        for _ in tqdm(range(3)):
            pass
        from tqdm import tqdm as plain
        list(plain(range(3), disable=False))
        warnings.warn("should be filtered", DeprecationWarning)
        warnings.warn("should be filtered too")
        from threadpoolctl import threadpool_info
        assert all(pool["num_threads"] == 1 for pool in threadpool_info()), threadpool_info()
        import os
        assert os.environ["TQDM_DISABLE"] == "1"
        import matplotlib
        assert matplotlib.get_backend().lower() == "agg", matplotlib.get_backend()
        print("done")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert result.stderr == ""


def test_checks_do_not_import_reference_models():
    code = ("import sys, autograder, autograder.checks; "
            "from mflib.models.registry import is_reference_module; "
            "bad = [m for m in sys.modules if is_reference_module(m) or m == 'implicit']; "
            "print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_api():
    assert set(checks.__all__) >= {"check_gradient", "check_matches_reference", "check_loss_decreases",
                                   "check_similar_items", "check_recommend", "check_ranking", "check_rmse",
                                   "check_factors"}
    assert callable(autograder.setup_notebook)
    assert issubclass(checks.CheckFailure, AssertionError)


class ScalarSimilar(FactorModel):
    """An alternative correct similar_items that only accepts one item id."""

    def similar_items(self, itemid, N=10):
        unit = self.item_factors / np.maximum(np.linalg.norm(self.item_factors, axis=1, keepdims=True), 1e-12)
        cosine = unit @ unit[int(itemid)]
        cosine[int(itemid)] = -np.inf
        ids = np.argsort(-cosine)[:N]
        return ids, cosine[ids]


@pytest.mark.slow
def test_similar_items_accepts_a_scalar_only_implementation(ml100k, implicit_split_0, als_factors, capsys):
    train, _ = implicit_split_0
    check_similar_items(_as_factor_model(ScalarSimilar, *als_factors[:2]), ml100k, train)
    assert "✓ similar items" in capsys.readouterr().out
