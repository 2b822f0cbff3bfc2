"""Gradient checker: exact gradients pass, wrong ones are caught and named, parameters are never changed."""
import warnings

import numpy as np
import pytest

from mflib.gradcheck import GradientCheck, check_gradients, numerical_gradient, relative_error


# ---- numerical_gradient and relative_error by hand ---------------------------------------------
def test_numerical_gradient_of_a_quadratic_by_hand():
    # f(x) = x0^2 + 2 x1^2 + x0 - x1  ->  grad = (2 x0 + 1, 4 x1 - 1) = (3, 7) at (1, 2)
    x = np.array([1.0, 2.0])
    gradient = numerical_gradient(lambda v: v[0] ** 2 + 2 * v[1] ** 2 + v[0] - v[1], x)
    np.testing.assert_allclose(gradient, [3.0, 7.0], atol=1e-8)
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_numerical_gradient_subset_leaves_nan_elsewhere():
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    gradient = numerical_gradient(lambda v: 0.5 * np.sum(v ** 2), x, indices=[1, 4])
    np.testing.assert_allclose(gradient.ravel()[[1, 4]], [1.0, 4.0], atol=1e-8)
    assert np.isnan(gradient.ravel()[[0, 2, 3, 5]]).all()


def test_relative_error_by_hand():
    # max|diff| = 0.5; max(|num| + |ana|) = 2 + 2.5 = 4.5
    assert relative_error([1.0, 2.0], [1.0, 2.5]) == pytest.approx(0.5 / 4.5)
    assert relative_error([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert relative_error([1.0], [-1.0]) == pytest.approx(1.0)  # a sign flip gives the maximum, 1


# ---- losses used below -------------------------------------------------------------------------
@pytest.fixture
def quadratic():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 4))
    target = rng.standard_normal((6, 3))
    params = {"W": rng.standard_normal((4, 3)), "c": rng.standard_normal(3)}

    def loss(p):  # 0.5 ||A W + 1 c^T - T||^2
        return 0.5 * np.sum((A @ p["W"] + p["c"] - target) ** 2)

    def grads(p):
        residual = A @ p["W"] + p["c"] - target
        return {"W": A.T @ residual, "c": residual.sum(0)}
    return loss, grads, params


@pytest.fixture
def logistic():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 5))
    y = np.where(rng.random(50) < 0.5, -1.0, 1.0)
    lam = 0.3
    params = {"w": rng.standard_normal(5), "b": np.array(0.2)}

    def loss(p):  # sum_n log(1 + exp(-y_n (x_n . w + b))) + lam/2 ||w||^2
        margins = y * (X @ p["w"] + p["b"])
        return np.sum(np.logaddexp(0.0, -margins)) + 0.5 * lam * np.sum(p["w"] ** 2)

    def grads(p):
        margins = y * (X @ p["w"] + p["b"])
        coef = -y / (1.0 + np.exp(margins))  # d/dm log(1 + e^-m) = -sigmoid(-m)
        return {"w": X.T @ coef + lam * p["w"], "b": coef.sum()}
    return loss, grads, params, lam


# ---- correct gradients pass --------------------------------------------------------------------
def test_quadratic_exact_gradients_pass(quadratic):
    loss, grads, params = quadratic
    result = check_gradients(loss, grads, params)
    assert isinstance(result, GradientCheck) and result.passed()
    assert all(error < 1e-8 for error in result.relative_errors.values())
    assert result["W"].n_checked == 12 and result["c"].n_checked == 3
    # the gradients may also be given as a dict
    assert check_gradients(loss, grads(params), params).max_relative_error < 1e-8


def test_logistic_exact_gradients_pass(logistic):
    loss, grads, params, _ = logistic
    result = check_gradients(loss, grads, params)
    assert result.max_relative_error < 1e-8
    assert result.failed() == []
    result.assert_passed()
    assert "all gradients correct" in str(result)


# ---- wrong gradients fail and are named --------------------------------------------------------
def test_sign_flip_is_flagged_and_named(logistic):
    loss, grads, params, _ = logistic

    def flipped(p):
        g = grads(p)
        return {"w": g["w"], "b": -g["b"]}
    result = check_gradients(loss, flipped, params)
    assert not result.passed()
    assert result.failed() == ["b"]
    assert result["b"].relative_error == pytest.approx(1.0)
    report = str(result)
    assert "WRONG gradient for b" in report and "sign is flipped" in report
    with pytest.raises(AssertionError, match="WRONG gradient for b"):
        result.assert_passed()


def test_missing_regularisation_is_flagged(logistic):
    loss, grads, params, lam = logistic

    def no_reg(p):
        g = grads(p)
        return {"w": g["w"] - lam * p["w"], "b": g["b"]}
    result = check_gradients(loss, no_reg, params)
    assert result.failed() == ["w"]
    assert result["w"].relative_error > 1e-3
    report = result.report()
    assert "WRONG gradient for w" in report
    row_w = next(line for line in report.splitlines() if line.startswith("w "))
    row_b = next(line for line in report.splitlines() if line.startswith("b "))
    assert row_w.endswith("WRONG") and row_b.endswith("ok")


def test_factor_of_two_is_flagged_with_a_hint(quadratic):
    loss, grads, params = quadratic

    def doubled(p):
        g = grads(p)
        return {"W": 2 * g["W"], "c": g["c"]}
    result = check_gradients(loss, doubled, params)
    assert result.failed() == ["W"]
    # |2g - g| / (|2g| + |g|) = 1/3 at the largest entry
    assert result["W"].relative_error == pytest.approx(1 / 3, rel=1e-6)
    assert "analytic = 2 x numerical" in str(result)
    index, analytic, numeric = result["W"].worst[0]
    assert len(index) == 2 and analytic == pytest.approx(2 * numeric, rel=1e-6)


# ---- the parameters are never changed ----------------------------------------------------------
def test_params_are_restored(quadratic):
    loss, grads, params = quadratic
    originals = {name: value.copy() for name, value in params.items()}
    objects = {name: id(value) for name, value in params.items()}
    check_gradients(loss, grads, params)
    for name in params:
        assert id(params[name]) == objects[name]
        np.testing.assert_array_equal(params[name], originals[name])


def test_params_restored_even_when_the_loss_raises(quadratic):
    loss, grads, params = quadratic
    originals = {name: value.copy() for name, value in params.items()}
    calls = {"n": 0}

    def flaky(p):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("boom")
        return loss(p)
    with pytest.raises(RuntimeError, match="boom"):
        check_gradients(flaky, grads, params)
    for name in params:
        np.testing.assert_array_equal(params[name], originals[name])


def test_loss_sees_unperturbed_values_between_coordinates():
    # every evaluation differs from the base point in at most one coordinate, by exactly +-eps
    base = np.array([1.0, 2.0, 3.0])
    seen = []

    def loss(p):
        seen.append(p["x"].copy())
        return float(np.sum(p["x"] ** 3))
    check_gradients(loss, lambda p: {"x": 3 * p["x"] ** 2}, {"x": base}, eps=1e-4)
    moves = np.array(seen) - base
    assert np.all((moves != 0).sum(1) <= 1)
    assert np.allclose(np.abs(moves[moves != 0]), 1e-4)


# ---- sampling ----------------------------------------------------------------------------------
def test_coordinate_sampling_is_seeded(quadratic):
    loss, grads, _ = quadratic
    rng = np.random.default_rng(5)
    big = {"W": rng.standard_normal((4, 3)), "c": rng.standard_normal(3)}
    first = check_gradients(loss, grads, big, n_coords=5, random_state=7)
    again = check_gradients(loss, grads, big, n_coords=5, random_state=7)
    other = check_gradients(loss, grads, big, n_coords=5, random_state=8)
    assert first["W"].n_checked == 5 and first["c"].n_checked == 3  # c has only 3 coordinates
    np.testing.assert_array_equal(first["W"].indices, again["W"].indices)
    assert not np.array_equal(first["W"].indices, other["W"].indices)
    assert len(np.unique(first["W"].indices)) == 5 and first["W"].indices.max() < 12
    assert first.passed() and "5/12" in str(first)


# ---- a realistic case: biased matrix factorisation ---------------------------------------------
@pytest.fixture
def biased_mf():
    """L = 1/2 sum_{(u,i) in Omega} (mu + b_u + c_i + p_u.q_i - r_ui)^2
           + lam/2 (||P||^2 + ||Q||^2 + ||b||^2 + ||c||^2)."""
    rng = np.random.default_rng(2)
    n_users, n_items, k, lam = 7, 9, 3, 0.1
    mask = rng.random((n_users, n_items)) < 0.4
    mask[6] = False  # a user with no ratings: only regularisation pulls on p_6 and b_6
    users, items = np.nonzero(mask)
    ratings = rng.integers(1, 6, size=len(users)).astype(np.float64)
    params = {"P": 0.3 * rng.standard_normal((n_users, k)), "Q": 0.3 * rng.standard_normal((n_items, k)),
              "b_user": 0.1 * rng.standard_normal(n_users), "b_item": 0.1 * rng.standard_normal(n_items),
              "mu": np.array(3.5)}

    def residuals(p):
        return (p["mu"] + p["b_user"][users] + p["b_item"][items]
                + np.sum(p["P"][users] * p["Q"][items], axis=1) - ratings)

    def loss(p):
        reg = sum(np.sum(p[name] ** 2) for name in ("P", "Q", "b_user", "b_item"))
        return 0.5 * np.sum(residuals(p) ** 2) + 0.5 * lam * reg

    def grads(p):
        e = residuals(p)
        dP = np.zeros_like(p["P"])
        dQ = np.zeros_like(p["Q"])
        np.add.at(dP, users, e[:, None] * p["Q"][items])
        np.add.at(dQ, items, e[:, None] * p["P"][users])
        return {"P": dP + lam * p["P"], "Q": dQ + lam * p["Q"],
                "b_user": np.bincount(users, e, n_users) + lam * p["b_user"],
                "b_item": np.bincount(items, e, n_items) + lam * p["b_item"],
                "mu": e.sum()}
    return loss, grads, params, lam


def test_biased_mf_exact_gradients_pass(biased_mf):
    loss, grads, params, _ = biased_mf
    result = check_gradients(loss, grads, params)
    assert result.max_relative_error < 1e-8, str(result)
    assert set(result.relative_errors) == {"P", "Q", "b_user", "b_item", "mu"}


def test_biased_mf_forgotten_bias_regularisation_is_named(biased_mf):
    loss, grads, params, lam = biased_mf

    def forgot(p):
        g = grads(p)
        g["b_item"] = g["b_item"] - lam * p["b_item"]
        return g
    result = check_gradients(loss, forgot, params)
    assert result.failed() == ["b_item"]
    assert "WRONG gradient for b_item" in str(result)


# ---- the student's mistakes get clear messages -------------------------------------------------
def test_float32_params_warn_and_are_checked_in_float64(quadratic):
    loss, grads, params = quadratic
    params32 = {name: value.astype(np.float32) for name, value in params.items()}
    with pytest.warns(UserWarning, match="float64"):
        result = check_gradients(loss, grads, params32)
    assert result.passed()
    assert params32["W"].dtype == np.float32


def test_float64_params_do_not_warn(quadratic):
    loss, grads, params = quadratic
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_gradients(loss, grads, params)


def test_loss_that_ignores_its_argument_gets_a_hint():
    x = np.array([1.0, -2.0])
    result = check_gradients(lambda p: float(np.sum(x ** 2)), lambda p: {"x": 2 * p["x"]}, {"x": x})
    assert result.failed() == ["x"]
    assert "read this parameter from the dict" in str(result)


def test_bad_inputs_raise_clear_errors(quadratic):
    loss, grads, params = quadratic
    with pytest.raises(KeyError, match="'c'"):
        check_gradients(loss, lambda p: {"W": grads(p)["W"]}, params)
    with pytest.raises(ValueError, match="shape"):
        check_gradients(loss, lambda p: {"W": grads(p)["W"].T, "c": grads(p)["c"]}, params)
    with pytest.raises(ValueError, match="scalar"):
        check_gradients(lambda p: p["c"], grads, params)
