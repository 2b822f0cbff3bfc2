"""autograder.checks.check_gradient: one relative error (mflib.gradcheck's), and diagnoses that name the
real bug — a λ·θ term missing once per occurrence of a row, or a wrong function the loss is built on.

(The basic gradient bugs — sign, factor 2, duplicates, shapes — are in tests/test_checks.py.)
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.special import expit

from autograder import checks
from autograder.checks import check_gradient
from mflib import gradcheck
from mflib.gradcheck import check_gradients, relative_error


def failure(fn, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# a BPR-like toy loss: the penalty counted once per occurrence of a row in the batch of triples
# ---------------------------------------------------------------------------------------------
N_USERS, N_ITEMS, K, LAM = 5, 8, 3, 0.1
_rng = np.random.default_rng(7)
USERS = _rng.integers(0, N_USERS, 30)
POSITIVES = _rng.integers(0, N_ITEMS, 30)
NEGATIVES = (POSITIVES + _rng.integers(1, N_ITEMS, 30)) % N_ITEMS


def bpr_params(seed):
    rng = np.random.default_rng(seed)
    return {"user_factors": rng.normal(size=(N_USERS, K)), "item_factors": rng.normal(size=(N_ITEMS, K)),
            "item_bias": rng.normal(size=N_ITEMS)}


def bpr_loss(p):
    """Σ -ln σ(x_uij) + λ/2 (|p_u|² + |q_i|² + |q_j|² + b_i² + b_j²), the penalty once per triple."""
    P, Q, b = p["user_factors"], p["item_factors"], p["item_bias"]
    x = np.sum(P[USERS] * (Q[POSITIVES] - Q[NEGATIVES]), axis=1) + b[POSITIVES] - b[NEGATIVES]
    penalty = (np.sum(P[USERS] ** 2) + np.sum(Q[POSITIVES] ** 2) + np.sum(Q[NEGATIVES] ** 2)
               + np.sum(b[POSITIVES] ** 2) + np.sum(b[NEGATIVES] ** 2))
    return float(np.sum(np.logaddexp(0.0, -x)) + 0.5 * LAM * penalty)


def bpr_grad(p, factor_reg=True, bias_reg=True, bias_data=True):
    P, Q, b = p["user_factors"], p["item_factors"], p["item_bias"]
    x = np.sum(P[USERS] * (Q[POSITIVES] - Q[NEGATIVES]), axis=1) + b[POSITIVES] - b[NEGATIVES]
    s = expit(-x)[:, None]
    lam_f, lam_b = (LAM if factor_reg else 0.0), (LAM if bias_reg else 0.0)
    gP, gQ, gb = np.zeros_like(P), np.zeros_like(Q), np.zeros_like(b)
    np.add.at(gP, USERS, -s * (Q[POSITIVES] - Q[NEGATIVES]) + lam_f * P[USERS])
    np.add.at(gQ, POSITIVES, -s * P[USERS] + lam_f * Q[POSITIVES])
    np.add.at(gQ, NEGATIVES, s * P[USERS] + lam_f * Q[NEGATIVES])
    data = 1.0 if bias_data else 0.0
    np.add.at(gb, POSITIVES, -data * s[:, 0] + lam_b * b[POSITIVES])
    np.add.at(gb, NEGATIVES, data * s[:, 0] + lam_b * b[NEGATIVES])
    return {"user_factors": gP, "item_factors": gQ, "item_bias": gb}


def test_the_toy_batch_repeats_rows_unevenly():
    """Otherwise the missing penalty would be one multiple of θ, which the old diagnosis already named."""
    assert len(set(np.bincount(USERS, minlength=N_USERS))) > 1
    assert len(set(np.bincount(np.concatenate([POSITIVES, NEGATIVES]), minlength=N_ITEMS))) > 1


def test_correct_per_occurrence_gradient_passes(capsys):
    check_gradient(bpr_loss, bpr_grad, bpr_params, name="bpr")
    assert capsys.readouterr().out.startswith("✓ bpr: gradients match finite differences")


def test_regularization_missing_per_occurrence_is_named():
    message = failure(check_gradient, bpr_loss, lambda p: bpr_grad(p, factor_reg=False), bpr_params)
    assert "the regularization term λ·θ is missing" in message, message
    assert "once per occurrence of the row" in message, message
    assert "a term missing" not in message and "np.add.at" not in message, message
    # the biases (still regularised) are reported correct
    assert "'item_bias' correct" in message, message


def test_regularization_missing_from_a_1d_parameter_per_occurrence_is_named():
    message = failure(check_gradient, bpr_loss, lambda p: bpr_grad(p, bias_reg=False), bpr_params)
    assert "for 'item_bias'" in message and "λ·θ is missing" in message, message


def test_a_missing_data_term_is_not_called_regularization():
    message = failure(check_gradient, bpr_loss, lambda p: bpr_grad(p, bias_data=False), bpr_params)
    assert "for 'item_bias'" in message and "regularization" not in message, message


def test_regularization_counted_twice_per_occurrence_is_named():
    def doubled(p):
        grads = bpr_grad(p)
        extra = bpr_grad(p, factor_reg=True)["user_factors"] - bpr_grad(p, factor_reg=False)["user_factors"]
        grads["user_factors"] = grads["user_factors"] + extra
        return grads

    message = failure(check_gradient, bpr_loss, doubled, bpr_params)
    assert "for 'user_factors'" in message and "counted too often" in message, message


def test_sign_flipped_in_the_data_part_only_is_named():
    def flipped_data(p):
        grads = bpr_grad(p)
        penalty = grads["user_factors"] - bpr_grad(p, factor_reg=False)["user_factors"]
        grads["user_factors"] = -(grads["user_factors"] - penalty) + penalty
        return grads

    message = failure(check_gradient, bpr_loss, flipped_data, bpr_params)
    assert "for 'user_factors'" in message and "sign flipped in the data part only" in message, message


# ---------------------------------------------------------------------------------------------
# per-feature penalties (the FM's λ_V,j): a different multiple of θ in every row
# ---------------------------------------------------------------------------------------------
REG_V = np.linspace(0.01, 0.1, 6)
TARGET = np.random.default_rng(3).normal(size=(6, 2))


def per_feature_loss(p):
    return float(np.sum((p["V"] - TARGET) ** 3) / 3 + np.sum(REG_V[:, None] * p["V"] ** 2))


def test_per_feature_regularization_missing_is_named():
    message = failure(check_gradient, per_feature_loss, lambda p: {"V": (p["V"] - TARGET) ** 2},
                      lambda seed: {"V": np.random.default_rng(seed).normal(size=(6, 2))})
    assert "the regularization term λ·θ is missing" in message and "−0.02 to −0.2 × θ" in message, message


# ---------------------------------------------------------------------------------------------
# a loss built on a wrong helper: name the helper, not "a term missing"
# ---------------------------------------------------------------------------------------------
def pairwise_reference(V, x):
    """Σ_{j<l} <v_j, v_l> x_j x_l by the boxed formula."""
    s = x @ V
    return 0.5 * float(np.sum(s * s - (x * x) @ (V * V)))


def pairwise_without_half(V, x):
    s = x @ V
    return float(np.sum(s * s - (x * x) @ (V * V)))


X_ROW = np.array([1.0, 0.5, 0.0, 2.0])


def fm_params(seed):
    return {"V": np.random.default_rng(seed).normal(size=(4, 3))}


def fm_gradient(p):
    """The correct gradient of pairwise_reference: x_j s_f - v_jf x_j²."""
    V = p["V"]
    return {"V": X_ROW[:, None] * (X_ROW @ V)[None, :] - (X_ROW ** 2)[:, None] * V}


def pairwise_inputs(seed):
    rng = np.random.default_rng(100 + seed)
    return rng.normal(size=(5, 3)), rng.uniform(0.2, 1.5, 5)


def test_gradient_of_a_loss_built_on_a_wrong_helper_names_the_helper():
    message = failure(check_gradient, lambda p: (pairwise_without_half(p["V"], X_ROW) - 1.0) ** 2 / 2,
                      lambda p: {"V": (pairwise_reference(p["V"], X_ROW) - 1.0) * fm_gradient(p)["V"]},
                      fm_params, name="fm_gradients",
                      depends_on={"fm_pairwise": (pairwise_without_half, pairwise_reference, pairwise_inputs)})
    assert "fm_pairwise" in message and "twice the correct one" in message and "½" in message, message
    assert "YOUR loss" in message and "a term missing" not in message, message


def test_a_correct_helper_is_not_blamed():
    def half_gradient(p):
        return {"V": 0.5 * fm_gradient(p)["V"]}

    message = failure(check_gradient, lambda p: pairwise_reference(p["V"], X_ROW), half_gradient, fm_params,
                      depends_on={"fm_pairwise": (pairwise_reference, pairwise_reference, pairwise_inputs)})
    assert "half the correct one" in message and "fm_pairwise" not in message, message


def test_dependencies_are_not_called_when_the_gradient_is_right(capsys):
    def explode(*args):
        raise RuntimeError("must not be called")

    check_gradient(lambda p: pairwise_reference(p["V"], X_ROW), fm_gradient, fm_params,
                   depends_on={"helper": (explode, explode, pairwise_inputs)})
    assert "✓" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# one relative error: the notebooks' table and check_gradient show the same number
# ---------------------------------------------------------------------------------------------
def _doubled_gradient(p):
    return {"V": 2 * fm_gradient(p)["V"]}


def test_check_gradient_reports_mflib_gradcheck_relative_error():
    loss = lambda p: pairwise_reference(p["V"], X_ROW)  # noqa: E731
    table = check_gradients(loss, _doubled_gradient, fm_params(0))
    message = failure(check_gradient, loss, _doubled_gradient, fm_params, seeds=(0,))
    reported = float(re.search(r"relative error ([0-9.e+-]+) for 'V'", message).group(1))
    assert reported == pytest.approx(table["V"].relative_error, rel=1e-2)
    assert reported == pytest.approx(1 / 3, rel=1e-2)  # twice the gradient: |2g - g| / (|2g| + |g|)
    assert "relative error 3.3e-1" in str(table)


def test_sign_flip_is_relative_error_one_in_both():
    loss = lambda p: pairwise_reference(p["V"], X_ROW)  # noqa: E731
    flipped = lambda p: {"V": -fm_gradient(p)["V"]}  # noqa: E731
    assert check_gradients(loss, flipped, fm_params(0))["V"].relative_error == pytest.approx(1.0)
    assert "relative error 1 for 'V'" in failure(check_gradient, loss, flipped, fm_params)


def test_checks_have_no_finite_differences_of_their_own():
    assert checks._relative_error is relative_error and checks._check_gradients is check_gradients
    assert not hasattr(checks, "_numerical_gradients")


def test_a_parameter_without_gradient_passes_at_round_off_level(capsys):
    """A loss of size 1e6 in which 'c' plays no part: its finite differences are pure round-off."""
    def loss(p):
        return 1e6 + float(np.sum(p["w"] ** 2)) + 0.0 * float(np.sum(p["c"]))

    check_gradient(loss, lambda p: {"w": 2 * p["w"], "c": np.zeros(3)},
                   lambda seed: {"w": np.random.default_rng(seed).normal(size=4),
                                 "c": np.random.default_rng(seed).normal(size=3)})
    assert "✓" in capsys.readouterr().out


def test_monkeypatched_numpy_does_not_change_gradcheck(monkeypatch):
    loss = lambda p: pairwise_reference(p["V"], X_ROW)  # noqa: E731
    before = check_gradients(loss, _doubled_gradient, fm_params(0))["V"].relative_error
    for name in ("max", "abs", "asarray", "isfinite", "all", "argsort"):
        monkeypatch.setattr(np, name, lambda *a, **k: 0.0)
    monkeypatch.setattr(np.random, "default_rng", lambda *a, **k: None)
    assert gradcheck.relative_error([1.0, 2.0], [1.0, 2.5]) == pytest.approx(0.5 / 4.5)
    with pytest.raises(AssertionError, match="relative error 0.333 for 'V'"):
        check_gradient(lambda p: 0.5 * float((p["V"] * p["V"]).sum()), lambda p: {"V": 2 * p["V"]},
                       lambda seed: {"V": np.arange(1.0, 7.0).reshape(2, 3)}, seeds=(0,))
    monkeypatch.undo()
    assert check_gradients(loss, _doubled_gradient, fm_params(0))["V"].relative_error == before
