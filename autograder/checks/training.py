"""Checks of a training run: the loss curve (``check_loss_decreases``), the learned arrays
(``check_factors``) and the rating error (``check_rmse``).

:func:`_factor_problem` (what is wrong with a model's ``user_factors`` / ``item_factors``: missing, wrong
shape or transposed, NaN, zeros, identical rows) is also what :mod:`.ranking` checks before ranking.
"""
from __future__ import annotations

import math

from ..feedback import _np, as_float_array, fmt
from ._common import _fail, _is_sparse, _ok, _to_plain

__all__ = ["check_loss_decreases", "check_factors", "check_rmse", "Measured"]

# What a failing loss curve suggests, by optimiser: a step size for gradient methods; for closed-form
# alternating solves (ALS), whose every half-step minimises the loss exactly, a solve that does not minimise
# the loss being recorded.
_HINTS = {
    False: {"nonfinite": "learning rate too large (the updates diverged), or a log/division of zero",
            "rise": "step too large (lower the learning rate) or gradient sign flipped",
            "up": "gradient sign flipped (you are climbing the loss) or learning rate too large",
            "climb": "learning rate too large (training diverges)",
            "flat": "learning rate too small, too few epochs, or the update is not applied to the parameters"},
    True: {"nonfinite": "a singular system (is the regularization λI added to the matrix you solve?), or a "
                        "log/division of zero",
           "rise": "an exact alternating solve never raises the loss, so the solve does not minimise the "
                   "loss you record (a term, e.g. the regularization λI or the confidence weights, in one "
                   "and not the other)",
           "up": "an exact alternating solve never raises the loss: the solve and the recorded loss disagree "
                 "(a term, e.g. the regularization λI, in one and not the other)",
           "climb": "an exact alternating solve never raises the loss: the solve and the recorded loss disagree",
           "flat": "too few iterations, or the solved factors are not stored back into the model"},
}


def check_loss_decreases(loss_history, min_relative_drop: float = 0.05, name=None, *, max_rise: float = 0.1,
                         closed_form: bool = False):
    """The training loss must fall by ``min_relative_drop`` (relative) from the first to the last epoch.

    Robust to SGD noise: small bumps are allowed; a single rise between consecutive epochs fails only
    when it exceeds ``max_rise`` (relative), and so does a climb back from the minimum. NaN/inf fail.
    ``loss_history`` is a sequence of per-epoch losses or a model with ``loss_history_``.
    ``closed_form=True`` for alternating exact solves (ALS): the messages then point at the solve and the
    loss disagreeing, not at a learning rate that such a model does not have.
    """
    __tracebackhide__ = True
    label = name or "loss"
    hints = _HINTS[bool(closed_form)]
    if hasattr(loss_history, "loss_history_"):
        loss_history = loss_history.loss_history_
    if loss_history is None:
        _fail(f"{label}: the loss history is None: append the loss of every epoch to a list "
              "(e.g. self.loss_history_.append(loss))")
    try:
        losses = as_float_array(list(loss_history)).ravel()
    except (TypeError, ValueError):
        _fail(f"{label}: the loss history must be a list of numbers, got {type(loss_history).__name__}")
    if len(losses) < 2:
        _fail(f"{label}: the loss history has {len(losses)} value(s): record the loss once per epoch "
              "and train for at least 2 epochs")
    finite = _np.isfinite(losses)
    if not bool(_np.all(finite)):
        epoch = int(_np.flatnonzero(~finite)[0])
        kind = "NaN" if math.isnan(float(losses[epoch])) else "inf"
        _fail(f"{label} is {kind} at epoch {epoch + 1}: {hints['nonfinite']}")
    first, last = float(losses[0]), float(losses[-1])
    scale = lambda value: max(abs(value), 1e-12)  # noqa: E731
    # a rise counts when it is large against both the current loss and the whole curve's range
    spread = float(_np.max(losses) - _np.min(losses))
    rises = (losses[1:] - losses[:-1]) / _np.maximum(_np.maximum(_np.abs(losses[:-1]), spread), 1e-12)
    if bool(_np.all(losses == losses[0])):
        _fail(f"{label} did not change at all ({fmt(first)} every epoch): the parameters are never "
              "updated (is the update applied in place / assigned back?)")
    big = _np.flatnonzero(rises > max_rise)
    if len(big):
        i = int(big[0])
        _fail(f"{label} rose between epochs {i + 1} and {i + 2} ({fmt(losses[i])} → {fmt(losses[i + 1])}): "
              f"{hints['rise']}")
    if last > first:
        _fail(f"{label} went up from {fmt(first)} (epoch 1) to {fmt(last)} (epoch {len(losses)}): {hints['up']}")
    lowest = int(_np.argmin(losses))
    if lowest < len(losses) - 1 and (last - float(losses[lowest])) / max(scale(float(losses[lowest])),
                                                                         spread) > max_rise:
        _fail(f"{label} fell to {fmt(losses[lowest])} at epoch {lowest + 1} then climbed back to {fmt(last)} "
              f"at epoch {len(losses)}: {hints['climb']}")
    drop = (first - last) / scale(first)
    if drop < min_relative_drop:
        _fail(f"{label} fell only {100 * drop:.1f}% ({fmt(first)} → {fmt(last)}); at least "
              f"{100 * min_relative_drop:.0f}% expected: {hints['flat']}")
    _ok(f"{label} decreases: {fmt(first)} → {fmt(last)} over {len(losses)} epochs ({100 * drop:.0f}% lower)")


def _factor_problem(model, n_users: int, n_items: int, dtype=None, factors=None) -> str | None:
    arrays = {}
    for attribute in ("user_factors", "item_factors"):
        value = getattr(model, attribute, None)
        if value is None:
            return (f"the model has no {attribute}: fit() must set self.{attribute} (an array of shape "
                    f"({'n_users' if attribute == 'user_factors' else 'n_items'}, factors))")
        if _is_sparse(value) or not hasattr(value, "shape"):
            return f"{attribute} must be a dense numpy array, got {type(value).__name__}"
        arrays[attribute] = _np.asarray(value)
        if arrays[attribute].ndim != 2:
            return f"{attribute} must be 2-D (rows × factors), got shape {arrays[attribute].shape}"
    users, items = arrays["user_factors"], arrays["item_factors"]
    if n_users != n_items and users.shape[0] == n_items and items.shape[0] == n_users:
        return (f"user_factors has {users.shape[0]:,} rows but there are {n_users:,} users: did you pass the "
                "items × users matrix (the transpose)? fit takes users × items (implicit ≥ 0.5 API), "
                "so pass X, not X.T")
    if users.shape[0] != n_users:
        return f"user_factors has {users.shape[0]:,} rows but there are {n_users:,} users"
    if items.shape[0] != n_items:
        return f"item_factors has {items.shape[0]:,} rows but there are {n_items:,} items"
    if users.shape[1] != items.shape[1]:
        return (f"user_factors has {users.shape[1]} columns but item_factors has {items.shape[1]}: both need "
                "one column per latent factor")
    if factors is not None and users.shape[1] != factors:
        return f"the factors have {users.shape[1]} columns, expected factors={factors}"
    for attribute, array in arrays.items():
        if not _np.issubdtype(array.dtype, _np.floating):
            return f"{attribute} has dtype {array.dtype}; use floats (np.float32)"
        if dtype is not None and array.dtype != dtype:
            return f"{attribute} has dtype {array.dtype}, expected {_np.asarray(0, dtype=dtype).dtype}"
        if not bool(_np.all(_np.isfinite(array))):
            return (f"{attribute} contains NaN or inf: training diverged (learning rate too large?) or "
                    "a division by zero")
        if array.size and array.shape[1] and float(_np.max(_np.abs(array))) == 0.0:
            return (f"{attribute} is all zeros: initialise the factors with small random values "
                    "(e.g. rng.normal(0, 0.01, size)) — zeros have zero gradient and never move")
        if array.shape[0] > 1 and array.shape[1] and float(_np.max(_np.abs(array - array[:1]))) == 0.0:
            return (f"all rows of {attribute} are identical: a constant initialisation keeps them identical "
                    "(symmetry); initialise with random values")
    return None


def check_factors(model, n_users: int, n_items: int, *, dtype=None, factors=None):
    """``user_factors`` is (n_users, k), ``item_factors`` (n_items, k), finite floats, not constant.

    Detects the transposed training matrix (items × users passed to ``fit``), NaN from divergence and
    zero/constant initialisation. ``dtype`` / ``factors`` optionally pin the dtype and k.
    """
    __tracebackhide__ = True
    problem = _factor_problem(model, int(n_users), int(n_items), dtype, factors)
    if problem:
        _fail(f"check_factors: {problem}")
    users, items = _np.asarray(model.user_factors), _np.asarray(model.item_factors)
    _ok(f"factors: user_factors {users.shape} and item_factors {items.shape}, {users.dtype}")


def check_rmse(y_true, y_pred, max_rmse: float):
    """RMSE of ``y_pred`` against ``y_true`` must be at most ``max_rmse``."""
    __tracebackhide__ = True
    try:
        truth = as_float_array(_to_plain(y_true)).ravel()
        predicted = as_float_array(_to_plain(y_pred)).ravel()
    except (TypeError, ValueError):
        _fail("check_rmse: predictions must be numbers (an array with one prediction per rating)")
    if predicted.shape != truth.shape:
        _fail(f"check_rmse: {predicted.size} predictions for {truth.size} ratings: predict one value per "
              "(user, item) pair, in the same order")
    if truth.size == 0:
        _fail("check_rmse: no ratings to compare")
    if not bool(_np.all(_np.isfinite(predicted))):
        bad = int(_np.count_nonzero(~_np.isfinite(predicted)))
        _fail(f"check_rmse: {bad} predictions are NaN/inf: training diverged (learning rate too large?)")
    rmse = float(_np.sqrt(_np.mean((truth - predicted) ** 2)))
    baseline = float(_np.sqrt(_np.mean((truth - _np.mean(truth)) ** 2)))
    if rmse > max_rmse:
        low, high = float(_np.min(truth)), float(_np.max(truth))
        outside = int(_np.count_nonzero((predicted < low - 1e-9) | (predicted > high + 1e-9)))
        hints = []
        if rmse >= baseline:
            hints.append(f"no better than predicting the mean rating for everyone (RMSE {fmt(baseline)})")
        if outside:
            hints.append(f"{outside} predictions fall outside the rating scale [{fmt(low)}, {fmt(high)}]: "
                         "clip them (np.clip)")
        hint = ("; ".join(hints) if hints else
                "train longer or revisit the learning rate / regularization")
        _fail(f"RMSE {fmt(rmse, 4)} is above the {fmt(max_rmse, 4)} required — {hint}")
    _ok(f"RMSE {fmt(rmse, 4)} ≤ {fmt(max_rmse, 4)} (predicting the mean gives {fmt(baseline, 4)})")
    return Measured(rmse, "RMSE")


class Measured(float):
    """A float that a notebook can compute with, but whose repr is not a bare number: nbgrader reads a
    test cell ending in a bare number as partial credit, so ``check_rmse(...)`` as the last line of a
    cell must not display ``0.91``."""

    def __new__(cls, value: float, label: str):
        self = super().__new__(cls, value)
        self.label = label
        return self

    def __repr__(self) -> str:
        return f"{self.label} {float(self):.4f}"

    __str__ = float.__repr__
