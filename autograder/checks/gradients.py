"""``check_gradient``: a student's analytic gradient against central finite differences of their loss.

The finite differences and the relative error are :mod:`mflib.gradcheck`'s (the definition the notebooks
teach, shipped in the student bundle), so a notebook's ``print(check_gradients(...))`` table and
``check_gradient``'s message show the same number. A disagreement is explained by
:func:`autograder.feedback.explain_difference` (sign, factor 2, missing λ·θ term, duplicated indices, ...),
or blamed on a wrong function the loss is built on (``depends_on``).
"""
from __future__ import annotations

import math

from mflib.gradcheck import check_gradients as _check_gradients
from mflib.gradcheck import relative_error as _relative_error

from ..feedback import CheckFailure, _np, as_float_array, explain_difference, fmt
from ._common import _call, _compare, _deepcopy, _fail, _label, _ok, _split_inputs, _to_plain

__all__ = ["check_gradient"]

_EPS = 2.220446049250313e-16


def _float64_copy(value, label: str, key: str):
    try:
        return _np.array(value, dtype=_np.float64, copy=True)
    except (TypeError, ValueError):
        _fail(f"{label}: parameter {key!r} is not a numeric array ({type(value).__name__})")


def _finite_differences(loss_fn, grads: dict, params: dict, step: float, max_entries: int, seed: int,
                        label: str):
    """Central differences ``(L(θ + h e_j) - L(θ - h e_j)) / 2h`` of ``loss_fn`` at ``params``, by
    :func:`mflib.gradcheck.check_gradients` (float64, at most ``max_entries`` seeded coordinates per
    parameter). Returns ``(GradientCheck, largest |loss| seen)``."""
    seen = [0.0]

    def loss(p):
        value = _call(loss_fn, label, p)
        try:
            number = float(value)
        except (TypeError, ValueError):
            _fail(f"{label} must return one number (the loss), got {type(value).__name__}")
        seen[0] = max(seen[0], abs(number)) if math.isfinite(number) else seen[0]
        return number

    try:
        result = _check_gradients(loss, {key: grads[key] for key in params}, params, eps=step,
                                  n_coords=max_entries, random_state=seed)
    except FloatingPointError as error:
        raise CheckFailure(f"{label}: the loss is not finite near these parameters ({error})") from error
    return result, seen[0]


def _as_gradient_dict(grads, params: dict, label: str) -> dict:
    if isinstance(grads, dict):
        return grads
    if isinstance(grads, (tuple, list)) and len(grads) == len(params):
        return dict(zip(params, grads))
    if grads is None:
        _fail(f"{label} returned None: return the gradients (a dict {{name: array}}), "
              "do not only update them")
    _fail(f"{label} must return a dict {{parameter name: gradient array}} with keys {sorted(params)}; "
          f"got {type(grads).__name__}")


def _dependency_problem(depends_on, seeds) -> str | None:
    """The first function the loss relies on that differs from its reference, said in one sentence."""
    for name, (student_fn, reference_fn, make_inputs) in (depends_on or {}).items():
        for seed in seeds:
            args, kwargs = _split_inputs(make_inputs(seed))
            expected = reference_fn(*_deepcopy(args), **_deepcopy(kwargs))
            actual = _call(student_fn, str(name), *_deepcopy(args), **_deepcopy(kwargs))
            problem = _compare(actual, expected, str(name), 1e-8, {})
            if problem is not None:
                return problem[1]
    return None


def check_gradient(loss_fn, grad_fn, make_params, seeds=(0, 1, 2), tol: float = 1e-6, name=None, *,
                   h: float = 1e-6, max_entries: int = 400, depends_on=None):
    """Compare ``grad_fn(params)`` with central finite differences of ``loss_fn(params)``.

    ``loss_fn(params) -> float``, ``grad_fn(params) -> {name: array}`` (or a tuple in the parameters'
    order), ``make_params(seed) -> {name: float64 array}``. The relative error per parameter is
    :func:`mflib.gradcheck.relative_error`, the one the notebooks teach::

        max_j |g_j - g_num_j| / max_j (|g_j| + |g_num_j|)      (1 = opposite sign, 1/3 = twice too large)

    It must be below ``tol`` for every parameter and seed (differences at the round-off level of the
    finite differences, ``10 ε |L| / h``, also pass). At most ``max_entries`` entries per parameter are
    differenced (a seeded sample). On failure the message names the parameter and the likely bug (sign,
    factor 2, missing λ·θ term — also when it is counted once per occurrence of a row —, duplicated
    indices, zeros, NaN).

    ``depends_on``: ``{name: (student_fn, reference_fn, make_inputs)}``, functions the loss is built on.
    When the gradient disagrees, they are compared with their references (on ``make_inputs(seed)``) and
    a wrong one is named as the cause: the finite differences differentiate the student's own loss.
    """
    __tracebackhide__ = True
    label = f"check_gradient({_label(grad_fn, name)})"
    step = float(h)
    seeds = tuple(seeds)
    worst = 0.0
    round_off = []
    for seed in seeds:
        raw = make_params(seed)
        if not isinstance(raw, dict) or not raw:
            _fail(f"{label}: make_params(seed) must return a non-empty dict {{name: array}}")
        params = {key: _float64_copy(value, label, key) for key, value in raw.items()}
        loss = float(_call(loss_fn, _label(loss_fn, None), {k: v.copy() for k, v in params.items()}))
        if not math.isfinite(loss):
            _fail(f"{label}: the loss is {fmt(loss)} for seed {seed}: check for log(0), overflow or a "
                  "division by zero in the loss")
        grads = _as_gradient_dict(_call(grad_fn, _label(grad_fn, None),
                                        {k: v.copy() for k, v in params.items()}), params, label)
        for key, value in params.items():
            if key not in grads:
                _fail(f"{label}: no gradient for {key!r} (returned keys: {sorted(map(str, grads))}); "
                      "return one gradient per parameter, with the same names")
            grad = grads[key]
            try:
                grad = as_float_array(_to_plain(grad))
            except (TypeError, ValueError):
                _fail(f"{label}: the gradient for {key!r} is not a numeric array ({type(grad).__name__})")
            if grad.shape != value.shape:
                transposed = grad.ndim == 2 and grad.shape == value.shape[::-1]
                _fail(f"{label}: the gradient for {key!r} has shape {grad.shape} but the parameter has "
                      f"shape {value.shape}" + (" — transposed?" if transposed else
                                                " — a gradient has the shape of its parameter"))
            if not bool(_np.all(_np.isfinite(grad))):
                _fail(f"{label}: the gradient for {key!r} contains NaN or inf (seed {seed})")
            grads[key] = grad
        result, biggest = _finite_differences(loss_fn, grads, params, step, max_entries, seed,
                                              _label(loss_fn, None))
        # below this absolute difference, finite differences cannot tell (round-off of L(θ ± h) / 2h)
        noise = 10 * _EPS * max(biggest, abs(loss)) / step
        errors = {}
        for key, value in params.items():
            check = result.parameters[key]
            if value.size == 0:
                continue
            analytic, numeric = check.analytic, check.numeric
            error = _relative_error(numeric, analytic)
            if error >= tol and float(_np.max(_np.abs(numeric - analytic))) <= noise:
                round_off.append(key)
                continue
            worst = max(worst, error)
            if error >= tol:
                sampled = len(check.indices) < value.size
                shape_actual = analytic if sampled else analytic.reshape(value.shape)
                shape_numeric = numeric if sampled else numeric.reshape(value.shape)
                theta = value.reshape(-1)[check.indices] if sampled else value
                errors[key] = (error, explain_difference(shape_actual, shape_numeric, {key: theta},
                                                         what=f"gradient for {key!r}", tolerance=1e-4))
        if errors:
            key, (error, hint) = max(errors.items(), key=lambda item: float(f"{item[1][0]:.3g}"))
            others = [f"{k!r}" for k in params if k not in errors]
            fine = f" ({', '.join(others)} correct)" if others else ""
            more = (f"; also wrong: {', '.join(repr(k) for k in errors if k != key)}"
                    if len(errors) > 1 else "")
            headline = f"{label}: relative error {fmt(error)} for {key!r} (seed {seed}; must be < {fmt(tol)})"
            cause = _dependency_problem(depends_on, seeds)
            if cause is not None:
                _fail(f"{headline} — your gradient disagrees with the finite differences of YOUR loss, and "
                      f"the loss uses a function that is wrong: {cause}. Fix that first (its test above "
                      "says how), then run this cell again: the gradient formula itself may be right")
            _fail(f"{headline} — {hint}{more}{fine}")
    note = (f"; {', '.join(sorted(set(map(repr, round_off))))} within finite-difference round-off"
            if round_off else "")
    _ok(f"{_label(grad_fn, name)}: gradients match finite differences "
        f"(max relative error {fmt(worst)} over {len(seeds)} seeds, < {fmt(tol)}{note})")
