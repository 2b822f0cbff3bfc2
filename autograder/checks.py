"""The checks the course notebooks' test cells call.

Each check either prints one short line with the figure it measured (stdout) or raises
:class:`AssertionError` (:class:`~autograder.feedback.CheckFailure`) whose message names the bug and the
fix, e.g.::

    AssertionError: check_gradient(bpr_gradient): relative error 1 for 'item_factors' (seed 0; must be < 1e-06)
    — sign flipped: your gradient is the negative of the correct one ...

API (the notebooks are written against it)::

    check_gradient(loss_fn, grad_fn, make_params, seeds=(0, 1, 2), tol=1e-6, name=None, depends_on=None)
    check_matches_reference(student_fn, reference_fn, make_inputs, seeds=(0, 1, 2), rtol=1e-6, name=None)
    check_loss_decreases(loss_history, min_relative_drop=0.05, name=None)
    check_similar_items(model, dataset, train=None, k=10, min_genre_jaccard=0.25, pairs=None)
    check_recommend(model, user_items, n_users=None, N=10, n_ranked=100)
    check_ranking(model, train, test, k=10, reference_ndcg=None, fraction=0.8, min_ndcg=None)
    check_rmse(y_true, y_pred, max_rmse)
    check_factors(model, n_users, n_items)

Design notes
------------
* The checks never import mflib's reference models (``mflib.models.als`` ...) — the student bundle ships
  without them. Popularity (the baseline) and mflib's evaluation code are imported inside functions.
* Gradients: the finite differences and the relative error are :mod:`mflib.gradcheck`'s (the definition
  the notebooks teach, shipped in the student bundle), so a notebook's ``print(check_gradients(...))``
  table and ``check_gradient``'s message show the same number.
* Tampering: every numpy function used here is bound when this module is imported (see
  ``autograder.feedback._np``; :mod:`mflib.gradcheck` does the same), so ``np.allclose = lambda *a, **k:
  True`` in a notebook cell run afterwards does not change a verdict.
* Student functions are called on private deep copies of the inputs, so a function that mutates its
  arguments cannot corrupt the reference's inputs (and a function that must update in place is
  compared on the mutated arguments).
"""
from __future__ import annotations

import copy
import inspect
import math

from mflib.gradcheck import check_gradients as _check_gradients
from mflib.gradcheck import relative_error as _relative_error

from .feedback import (CheckFailure, _np, as_float_array, explain_difference, fmt, max_relative_difference,
                       scale_hint)

__all__ = ["check_gradient", "check_matches_reference", "check_loss_decreases", "check_similar_items",
           "check_recommend", "check_ranking", "check_rmse", "check_factors", "CheckFailure"]

_EPS = 2.220446049250313e-16
_deepcopy = copy.deepcopy
_print = print


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def _ok(message: str) -> None:
    _print(f"✓ {message}", flush=True)


def _fail(message: str):
    raise CheckFailure(message)


def _label(fn, name) -> str:
    if name:
        return str(name)
    return getattr(fn, "__name__", None) or type(fn).__name__


def _call(fn, label: str, *args, **kwargs):
    """Call a student function; turn its exceptions into a message (the traceback stays chained)."""
    __tracebackhide__ = True
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as error:
        raise CheckFailure(f"{label} is not implemented yet (it raises NotImplementedError): "
                           "write your code between the solution markers and run the cell") from error
    except CheckFailure:
        raise
    except Exception as error:  # whatever the student's code raises fails the check, with its message
        raise CheckFailure(f"{label} raised {type(error).__name__}: {error}") from error


def _is_sparse(x) -> bool:
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


def _to_plain(x):
    """numpy for pandas/sparse/scalars; containers unchanged."""
    if _is_sparse(x):
        return x.toarray()
    if hasattr(x, "to_numpy") and not isinstance(x, dict):
        return x.to_numpy()
    return x


def _is_number(x) -> bool:
    return isinstance(x, (int, float, complex)) or (hasattr(x, "dtype") and _np.ndim(x) == 0)


def _float64_copy(value, label: str, key: str):
    try:
        return _np.array(value, dtype=_np.float64, copy=True)
    except (TypeError, ValueError):
        _fail(f"{label}: parameter {key!r} is not a numeric array ({type(value).__name__})")


# --------------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# comparison with a reference implementation
# --------------------------------------------------------------------------------------------------
def _is_float_array(value) -> bool:
    return hasattr(value, "dtype") and hasattr(value, "shape") and _np.issubdtype(value.dtype, _np.floating)


def _split_inputs(inputs):
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def _argument_names(fn, args, kwargs) -> list[tuple[str, object]]:
    try:
        names = [p for p in inspect.signature(fn).parameters]
    except (TypeError, ValueError):
        names = []
    named = [(names[i] if i < len(names) else f"argument {i + 1}", a) for i, a in enumerate(args)]
    return named + list(kwargs.items())


def _array_candidates(named_inputs) -> dict:
    out = {}
    for key, value in named_inputs:
        if hasattr(value, "shape") and hasattr(value, "dtype") and not _is_sparse(value):
            try:
                array = as_float_array(value)
            except (TypeError, ValueError):
                continue
            if array.ndim >= 1 and array.size > 1:
                out[key] = array
    return out


def _compare(actual, expected, path: str, rtol: float, candidates: dict):
    """None if ``actual`` matches ``expected``, else ``(relative difference, message)``."""
    expected, actual = _to_plain(expected), _to_plain(actual)
    if expected is None:
        return None
    if actual is None:
        return math.inf, f"{path} is None: did you forget `return`?"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return math.inf, f"{path} should be a dict with keys {sorted(map(str, expected))}, got {type(actual).__name__}"
        missing = [k for k in expected if k not in actual]
        if missing:
            return math.inf, f"{path} has no key(s) {missing}"
        results = [_compare(actual[k], expected[k], f"{path}[{k!r}]", rtol, candidates) for k in expected]
        results = [r for r in results if r is not None]
        return max(results, key=lambda r: r[0]) if results else None
    if isinstance(expected, (tuple, list)) and not all(_is_number(e) for e in expected):
        if not isinstance(actual, (tuple, list)):
            return math.inf, (f"{path} should be a tuple of {len(expected)} values, got "
                              f"{type(actual).__name__}")
        if len(actual) != len(expected):
            return math.inf, f"{path} has {len(actual)} values, expected {len(expected)}"
        results = [_compare(a, e, f"{path}[{i}]", rtol, candidates)
                   for i, (a, e) in enumerate(zip(actual, expected))]
        results = [r for r in results if r is not None]
        return max(results, key=lambda r: r[0]) if results else None
    if isinstance(expected, (str, bytes)):
        return None if actual == expected else (math.inf, f"{path} is {actual!r}, expected {expected!r}")
    try:
        expected_array = _np.asarray(expected)
        actual_array = _np.asarray(actual)
    except (TypeError, ValueError):  # not array-like (ragged, odd objects): compare with ==
        return None if actual == expected else (math.inf, f"{path} is {actual!r}, expected {expected!r}")
    if expected_array.dtype == object or actual_array.dtype == object:
        try:
            same = bool(actual == expected)
        except (TypeError, ValueError):  # == gave no single truth value: not the same
            same = False
        return None if same else (math.inf, f"{path} is {actual!r}, expected {expected!r}")
    if actual_array.shape != expected_array.shape:
        if actual_array.size == 1 and expected_array.size == 1:
            actual_array = actual_array.reshape(expected_array.shape)
        else:
            hint = ""
            if actual_array.ndim == 2 and actual_array.shape == expected_array.shape[::-1]:
                hint = " — transposed?"
            elif actual_array.size == expected_array.size:
                hint = " — same number of entries: reshape/ravel, or an axis mix-up?"
            elif expected_array.ndim == 0:
                hint = " — expected a single number (sum or mean over the batch?)"
            return math.inf, f"{path} has shape {actual_array.shape}, expected {expected_array.shape}{hint}"
    exact = (_np.issubdtype(expected_array.dtype, _np.integer) or expected_array.dtype == _np.bool_)
    if exact:
        if not _np.issubdtype(actual_array.dtype, _np.integer) and actual_array.dtype != _np.bool_:
            if not bool(_np.all(_np.isfinite(as_float_array(actual_array)))):
                return math.inf, f"{path} contains NaN or inf, expected integers"
        if bool(_np.array_equal(actual_array, expected_array)):
            return None
        if actual_array.ndim >= 1 and bool(_np.array_equal(_np.sort(actual_array, axis=-1),
                                                          _np.sort(expected_array, axis=-1))):
            return math.inf, (f"{path} has the right entries in the wrong order (best first: sort by "
                              "descending score, e.g. np.argsort(-scores))")
        wrong = _np.flatnonzero((actual_array != expected_array).ravel())
        first = tuple(int(i) for i in _np.unravel_index(int(wrong[0]), expected_array.shape))
        first = first[0] if len(first) == 1 else first
        return math.inf, (f"{path}: {len(wrong)} of {expected_array.size} entries differ (first at index "
                          f"{first}: yours {actual_array.ravel()[wrong[0]].item()!r}, expected "
                          f"{expected_array.ravel()[wrong[0]].item()!r})")
    try:
        actual_float = as_float_array(actual_array)
        expected_float = as_float_array(expected_array)
    except (TypeError, ValueError):
        return math.inf, f"{path} is not numeric ({actual_array.dtype})"
    if not bool(_np.all(_np.isfinite(actual_float))) and bool(_np.all(_np.isfinite(expected_float))):
        bad = int(_np.count_nonzero(~_np.isfinite(actual_float)))
        return math.inf, (f"{path} contains {bad} NaN/inf value(s) where the reference is finite "
                          "(overflow, log(0) or division by zero?)")
    if expected_float.size == 0:
        return None
    finite = _np.isfinite(expected_float)
    if not bool(_np.all(finite)):  # compare the non-finite entries exactly, the rest numerically
        if not bool(_np.array_equal(_np.isfinite(actual_float), finite)) or not bool(
                _np.all(actual_float[~finite] == expected_float[~finite])):
            return math.inf, f"{path}: inf/NaN entries are not where the reference has them"
        actual_float, expected_float = actual_float[finite], expected_float[finite]
        if expected_float.size == 0:
            return None
    difference = max_relative_difference(actual_float, expected_float)
    if difference <= rtol or float(_np.max(_np.abs(actual_float - expected_float))) <= 1e-12:
        return None
    if expected_float.ndim == 0 or expected_float.size == 1:
        a, e = float(actual_float.ravel()[0]), float(expected_float.ravel()[0])
        hint = scale_hint(a / e, "value") if e != 0 else None
        tail = f" — {hint}" if hint else ""
        return difference, f"{path} is {fmt(a, 6)}, expected {fmt(e, 6)}{tail}"
    same_shape = {k: v for k, v in candidates.items() if v.shape == expected_float.shape}
    hint = explain_difference(actual_float, expected_float, same_shape, what=path,
                              tolerance=max(rtol, 1e-9))
    return difference, f"{path} differs from the reference (max relative difference {fmt(difference)}) — {hint}"


def check_matches_reference(student_fn, reference_fn, make_inputs, seeds=(0, 1, 2), rtol: float = 1e-6,
                            name=None):
    """``student_fn(*inputs)`` must equal ``reference_fn(*inputs)`` on ``make_inputs(seed)`` for every seed.

    ``make_inputs(seed)`` returns a tuple of positional arguments (or a dict of keyword arguments).
    Outputs may be arrays, numbers, tuples, lists or dicts of these (compared recursively; integer arrays
    exactly, floats to ``rtol`` relative to the largest reference entry). If the reference updates an
    argument in place, the student's function must update it the same way.
    """
    __tracebackhide__ = True
    label = _label(student_fn, name)
    worst = 0.0
    seeds = tuple(seeds)
    for seed in seeds:
        args, kwargs = _split_inputs(make_inputs(seed))
        original = _deepcopy((args, kwargs))
        ref_args, ref_kwargs = _deepcopy((args, kwargs))
        stu_args, stu_kwargs = _deepcopy((args, kwargs))
        expected = reference_fn(*ref_args, **ref_kwargs)
        actual = _call(student_fn, label, *stu_args, **stu_kwargs)
        named = _argument_names(reference_fn, original[0], original[1])
        candidates = _array_candidates(named)
        problem = _compare(actual, expected, "output", rtol, candidates)
        if problem is None:
            # arguments the reference changes in place must be changed the same way
            ref_named = _argument_names(reference_fn, ref_args, ref_kwargs)
            stu_named = _argument_names(reference_fn, stu_args, stu_kwargs)
            for (arg_name, before), (_, after_ref), (_, after_stu) in zip(named, ref_named, stu_named):
                if _compare(after_ref, before, "", 0.0, {}) is None:
                    continue  # the reference leaves it alone
                problem = _compare(after_stu, after_ref, f"argument {arg_name!r} after the call", rtol,
                                   candidates)
                if problem is not None and _is_float_array(before):
                    # explain the change the call made, not the final values: a step in the wrong
                    # direction then reads "sign flipped"
                    change_ref = as_float_array(after_ref) - as_float_array(before)
                    change_stu = as_float_array(after_stu) - as_float_array(before)
                    if change_stu.shape == change_ref.shape:
                        hint = explain_difference(change_stu, change_ref, candidates,
                                                  what=f"change to {arg_name!r}", tolerance=max(rtol, 1e-9))
                        problem = (problem[0], f"{arg_name!r} is not updated like the reference — {hint}")
                if problem is not None:
                    if _compare(after_stu, before, "", 0.0, {}) is None:
                        problem = (math.inf, f"{arg_name!r} must be updated in place (the reference "
                                             f"modifies it; yours leaves it unchanged): write into it, "
                                             f"e.g. {arg_name}[...] = ..., or use -=")
                    break
        if problem is not None:
            _fail(f"{label} (inputs of seed {seed}): {problem[1]}")
        worst = max(worst, _max_difference(actual, expected))
    _ok(f"{label} matches the reference on {len(seeds)} random input(s) "
        f"(max relative difference {fmt(worst)})")


def _max_difference(actual, expected) -> float:
    expected, actual = _to_plain(expected), _to_plain(actual)
    if isinstance(expected, dict) and isinstance(actual, dict):
        return max([_max_difference(actual.get(k), v) for k, v in expected.items()] or [0.0])
    if isinstance(expected, (tuple, list)) and isinstance(actual, (tuple, list)):
        return max([_max_difference(a, e) for a, e in zip(actual, expected)] or [0.0])
    try:
        a, e = as_float_array(actual), as_float_array(expected)
        if a.shape != e.shape or e.size == 0:
            return 0.0
        finite = _np.isfinite(e)
        return max_relative_difference(a[finite], e[finite]) if bool(_np.any(finite)) else 0.0
    except (TypeError, ValueError):
        return 0.0


# --------------------------------------------------------------------------------------------------
# training curves
# --------------------------------------------------------------------------------------------------
def check_loss_decreases(loss_history, min_relative_drop: float = 0.05, name=None, *, max_rise: float = 0.1):
    """The training loss must fall by ``min_relative_drop`` (relative) from the first to the last epoch.

    Robust to SGD noise: small bumps are allowed; a single rise between consecutive epochs fails only
    when it exceeds ``max_rise`` (relative), and so does a climb back from the minimum. NaN/inf fail.
    ``loss_history`` is a sequence of per-epoch losses or a model with ``loss_history_``.
    """
    __tracebackhide__ = True
    label = name or "loss"
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
        _fail(f"{label} is {kind} at epoch {epoch + 1}: learning rate too large (the updates diverged), "
              "or a log/division of zero")
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
              "step too large (lower the learning rate) or gradient sign flipped")
    if last > first:
        _fail(f"{label} went up from {fmt(first)} (epoch 1) to {fmt(last)} (epoch {len(losses)}): gradient "
              "sign flipped (you are climbing the loss) or learning rate too large")
    lowest = int(_np.argmin(losses))
    if lowest < len(losses) - 1 and (last - float(losses[lowest])) / max(scale(float(losses[lowest])),
                                                                         spread) > max_rise:
        _fail(f"{label} fell to {fmt(losses[lowest])} at epoch {lowest + 1} then climbed back to {fmt(last)} "
              f"at epoch {len(losses)}: learning rate too large (training diverges)")
    drop = (first - last) / scale(first)
    if drop < min_relative_drop:
        _fail(f"{label} fell only {100 * drop:.1f}% ({fmt(first)} → {fmt(last)}); at least "
              f"{100 * min_relative_drop:.0f}% expected: learning rate too small, too few epochs, or the "
              "update is not applied to the parameters")
    _ok(f"{label} decreases: {fmt(first)} → {fmt(last)} over {len(losses)} epochs ({100 * drop:.0f}% lower)")



# --------------------------------------------------------------------------------------------------
# factors, recommend, similar items
# --------------------------------------------------------------------------------------------------
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


def _user_row_items(user_items, user) -> set:
    row = user_items[user]
    if _is_sparse(row):
        return set(int(i) for i in row.tocsr().indices)
    return set(int(i) for i in _np.flatnonzero(_np.asarray(row).ravel()))


def _validate_list(ids, scores, n_items: int, N: int, what: str):
    """Common checks of one (ids, scores) list; returns (ids int64, scores float64) or fails."""
    ids_array = _np.asarray(ids)
    scores_array = as_float_array(scores)
    if ids_array.ndim != 1:
        _fail(f"{what}: for a single id, return 1-D arrays (got ids of shape {ids_array.shape}): "
              "e.g. return ids[0], scores[0]")
    if scores_array.shape != ids_array.shape:
        _fail(f"{what}: ids has shape {ids_array.shape} but scores {scores_array.shape}; one score per id")
    if len(ids_array) != N:
        _fail(f"{what} returned {len(ids_array)} items, expected N={N}")
    if not (_np.issubdtype(ids_array.dtype, _np.integer)):
        if bool(_np.all(_np.isfinite(as_float_array(ids_array)))) and bool(
                _np.all(as_float_array(ids_array) == _np.round(as_float_array(ids_array)))):
            ids_array = ids_array.astype(_np.int64)
        else:
            _fail(f"{what}: ids must be integer item indices, got dtype {ids_array.dtype} (did you return "
                  "the scores in place of the ids?)")
    ids_array = ids_array.astype(_np.int64)
    if len(ids_array) and (int(_np.min(ids_array)) < 0 or int(_np.max(ids_array)) >= n_items):
        _fail(f"{what}: ids must be item indices in [0, {n_items}), got {int(_np.min(ids_array))}.."
              f"{int(_np.max(ids_array))}")
    unique, counts = _np.unique(ids_array, return_counts=True)
    if len(unique) < len(ids_array):
        _fail(f"{what} returned item {int(unique[_np.argmax(counts)])} {int(_np.max(counts))} times: each "
              "item at most once")
    if not bool(_np.all(_np.isfinite(scores_array))):
        _fail(f"{what}: scores contain NaN/inf (a filtered item set to -inf got into the top N? fewer "
              "candidates than N?)")
    steps = _np.diff(scores_array)
    if len(steps) and bool(_np.any(steps > 1e-6 * max(1.0, float(_np.max(_np.abs(scores_array)))))):
        if bool(_np.all(steps >= 0)):
            _fail(f"{what}: scores are sorted worst first: sort descending (np.argsort(-scores)) and take "
                  "the first N")
        _fail(f"{what}: scores are not sorted best first: sort by descending score (np.argsort(-scores))")
    return ids_array, scores_array


def _pick_users(user_items, n_users: int, count: int = 5) -> list[int]:
    counts = _np.diff(user_items.tocsr().indptr) if _is_sparse(user_items) else _np.sum(
        _np.asarray(user_items) != 0, axis=1)
    picks = [0, int(_np.argmax(counts))]
    active = _np.flatnonzero(counts > 0)
    if len(active):
        picks.append(int(active[_np.argsort(counts[active], kind="stable")[0]]))  # lightest active user
    picks += [n_users // 2, n_users - 1]
    out = []
    for u in picks:
        if 0 <= u < n_users and u not in out:
            out.append(u)
    return out[:count]


def _model_scores(model, users, what: str):
    """``p_u · q_i (+ b_i)`` for every user in ``users`` and every item, an array of shape
    ``(len(users), n_items)``, from the model's ``user_factors``, ``item_factors`` and ``item_bias`` (when
    it has one). Fails the check, never returns None: without these scores the top-N test cannot run."""
    users = _np.asarray(users, dtype=_np.int64)
    try:
        scores = as_float_array(model.user_factors)[users] @ as_float_array(model.item_factors).T
        bias = getattr(model, "item_bias", None)
        if bias is not None:
            scores = scores + as_float_array(bias).reshape(1, -1)
    except (AttributeError, TypeError, ValueError, IndexError) as error:
        shapes = ", ".join(f"{name} {_np.shape(getattr(model, name, None))}"
                           for name in ("user_factors", "item_factors", "item_bias"))
        raise CheckFailure(f"{what}: cannot check that recommend returns the highest-scoring items: the "
                           f"model's scores p_u · q_i (+ b_i) cannot be computed from its arrays ({shapes}): "
                           f"{type(error).__name__}: {error}") from error
    return scores


def _ranked_users(n_users: int, picks: list[int], count: int) -> list[int]:
    """``picks`` plus about ``count`` users spread evenly over all ids, sorted."""
    count = max(1, min(count, n_users))
    spread = (_np.arange(count, dtype=_np.int64) * (n_users - 1)) // max(count - 1, 1)
    return sorted(set(int(u) for u in spread) | set(picks))


def _top_n_problem(users, ids, scores, full, seen, N: int, has_bias: bool) -> str | None:
    """How the lists ``ids`` / ``scores`` (one row per user) differ from the ``N`` highest-scoring unseen
    items by the model's scores ``full``, or None. ``seen``: boolean (users × items) mask of user_items."""
    rows = _np.arange(len(users))[:, None]
    own = full[rows, ids]
    bias = " + b_i" if has_bias else ""
    off = _np.abs(own - scores) > 1e-3 * (1 + _np.abs(own))
    if bool(_np.any(off)):
        row, col = (int(i[0]) for i in _np.nonzero(off))
        return (f"recommend(userid={users[row]}) returned scores that are not the model's scores "
                f"p_u · q_i{bias} of the returned items: item {int(ids[row, col])} has score "
                f"{fmt(scores[row, col])}, but user_factors and item_factors give {fmt(own[row, col])} — "
                "return, for each item, the score you ranked it by")
    candidates = ~seen
    candidates[rows, ids] = False
    left = _np.where(candidates, full, -_np.inf)
    best_left = _np.argmax(left, axis=1)
    best_score = left[rows[:, 0], best_left]
    worst = _np.argmin(own, axis=1)
    worst_score = own[rows[:, 0], worst]
    beaten = _np.flatnonzero(best_score > worst_score + 1e-4 * (1 + _np.abs(worst_score)))
    if not len(beaten):
        return None
    row = int(beaten[0])
    better, dropped = int(best_left[row]), int(ids[row, worst[row]])
    message = (f"recommend(userid={users[row]}) returned items that are not the {N} highest-scoring unseen "
               f"items: item {better} (score {fmt(full[row, better])}) was left out while item {dropped} "
               f"(score {fmt(worst_score[row])}) was returned")
    unseen = _np.where(seen[row], -_np.inf, full[row])
    top = set(int(i) for i in _np.argsort(-unseen, kind="stable")[:N + 1])
    if set(int(i) for i in ids[row]) <= top:
        return (message + f" — your list is {N} items out of the top {N + 1}: np.argpartition(-scores, kth) "
                "puts the item of rank kth (from 0) at position kth and better ones before it, in no particular "
                f"order, so the first {N} positions hold the top {N} only with kth = N - 1")
    return (message + " — set the scores of the items in user_items to -inf, then take the N largest "
            "(np.argpartition(-scores, N - 1)[:N]) and sort them, best first")


def check_recommend(model, user_items, n_users=None, *, N: int = 10, n_ranked: int = 100):
    """``model.recommend(userid, user_items[userid], N)`` follows the implicit 0.7 API and returns the top N.

    * For a few users, one scalar call each: 1-D ``(ids, scores)``, ``N`` distinct valid items, best first,
      none already in ``user_items`` (the user's training row).
    * One batch call with an array of about ``n_ranked`` user ids (those users included): ``(n, N)``
      arrays, the same lists as the scalar calls, and on every row the ``N`` highest-scoring unseen items
      by the model's own scores ``p_u · q_i (+ b_i)`` (``user_factors``, ``item_factors``, ``item_bias``),
      with those scores.

    The model must expose ``user_factors`` and ``item_factors``: without them the top-N test cannot run,
    and the check fails rather than pass untested.
    """
    __tracebackhide__ = True
    if not _is_sparse(user_items):
        _fail("check_recommend: user_items must be the users × items training matrix (scipy CSR)")
    user_items = user_items.tocsr()
    n_rows, n_items = user_items.shape
    n_users = int(n_users) if n_users is not None else n_rows
    if n_rows != n_users:
        _fail(f"check_recommend: user_items has {n_rows} rows but there are {n_users} users")
    problem = _factor_problem(model, n_users, n_items)
    if problem:
        _fail(f"check_recommend: {problem} (the check needs the factors to verify the top {N})")
    picks = _pick_users(user_items, n_users)
    scalar_results = {}
    for user in picks:
        result = _call(model.recommend, "recommend", user, user_items[user], N=N)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            _fail(f"recommend must return a tuple (ids, scores), got {type(result).__name__}")
        what = f"recommend(userid={user})"
        ids, scores = _validate_list(result[0], result[1], n_items, N, what)
        seen = _user_row_items(user_items, user)
        already = [int(i) for i in ids if int(i) in seen]
        if already:
            _fail(f"{what} returned {len(already)} items the user already rated — filter user_items "
                  f"(set the scores of the user's items to -inf before taking the top N); e.g. item "
                  f"{already[0]}")
        scalar_results[user] = (ids, scores)
    users = _ranked_users(n_users, picks, n_ranked)
    batch = _np.asarray(users, dtype=_np.int64)
    result = _call(model.recommend, "recommend", batch, user_items[batch], N=N)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        _fail(f"recommend(array of {len(batch)} ids) must return a tuple (ids, scores)")
    ids_batch, scores_batch = _np.asarray(result[0]), _np.asarray(result[1])
    if ids_batch.shape != (len(batch), N) or scores_batch.shape != (len(batch), N):
        _fail(f"recommend with an array of {len(batch)} user ids must return arrays of shape "
              f"({len(batch)}, {N}); got ids {ids_batch.shape}, scores {scores_batch.shape} (one row per "
              "user, user_items holding one row per requested user)")
    rows_ids, rows_scores = [], []
    seen_mask = _np.asarray(user_items[batch].toarray() != 0)
    for row, user in enumerate(users):
        what = f"recommend(userids) row {row} (user {user})"
        ids, scores = _validate_list(ids_batch[row], scores_batch[row], n_items, N, what)
        if bool(_np.any(seen_mask[row, ids])):
            _fail(f"{what} holds items the user already rated (e.g. item {int(ids[seen_mask[row, ids]][0])}): "
                  "filter user_items[r], the row of the r-th requested user")
        rows_ids.append(ids)
        rows_scores.append(scores)
        if user in scalar_results:
            ids_one, scores_one = scalar_results[user]
            same_scores = bool(_np.all(_np.abs(scores - scores_one) <= 1e-4 * (1 + _np.abs(scores_one))))
            if not (same_scores and set(int(i) for i in ids) == set(int(i) for i in ids_one)):
                _fail(f"recommend: the batch call and the scalar call disagree for user {user} (batch ids "
                      f"{[int(i) for i in ids[:5]]}..., scalar ids {[int(i) for i in ids_one[:5]]}...): "
                      "row r of the batch must be the recommendations of userid[r] given user_items[r]")
    full = _model_scores(model, batch, "check_recommend")
    problem = _top_n_problem(users, _np.stack(rows_ids), _np.stack(rows_scores), full, seen_mask, N,
                             getattr(model, "item_bias", None) is not None)
    if problem:
        _fail(problem)
    _ok(f"recommend: the {N} highest-scoring unseen items, best first, for each of {len(users)} users; "
        f"batch and scalar calls agree ({len(picks)} users)")


def _neighbours(model, items, k: int, n_items: int):
    """``(len(items), k)`` neighbour ids, each row checked like a single list (k distinct valid ids, best
    first, the query left out): one call with the array of ids (implicit 0.7), or, for a
    ``similar_items`` that takes one id at a time, one call per id.

    An array call that raises ``TypeError``/``ValueError``/``IndexError`` (what code written for one id
    does with an array) or returns something else than ``(len(items), k)`` ids is retried id by id; any
    other error, and any error of the id-by-id calls, fails the check with its message.
    """
    batch = _np.asarray(items, dtype=_np.int64)
    try:
        result = _call(model.similar_items, "similar_items", batch, N=k)
    except CheckFailure as failure:
        if not isinstance(failure.__cause__, (TypeError, ValueError, IndexError)):
            raise
        result = None  # written for one id at a time: asked id by id below
    if not (isinstance(result, (tuple, list)) and len(result) == 2
            and _np.shape(result[0]) == (len(batch), k) and _np.shape(result[1]) == (len(batch), k)):
        result = None
    rows = []
    for row, item in enumerate(batch):
        if result is None:
            one = _call(model.similar_items, "similar_items", int(item), N=k)
            if not isinstance(one, (tuple, list)) or len(one) != 2:
                _fail(f"similar_items must return a tuple (ids, scores), got {type(one).__name__}")
            ids, scores = one
        else:
            ids, scores = result[0][row], result[1][row]
        ids, _ = _validate_list(ids, scores, n_items, k, f"similar_items({int(item)})")
        if bool(_np.any(ids == item)):
            _fail(f"similar_items({int(item)}) returned the query item itself: leave it out")
        rows.append(ids)
    return _np.stack(rows)


def _titles(dataset, ids) -> str:
    return "; ".join(f"{rank}. {dataset.title(int(i))}" for rank, i in enumerate(ids, 1))


def check_similar_items(model, dataset, train=None, k: int = 10, min_genre_jaccard: float = 0.25,
                        pairs=None, *, check_cosine: bool = True):
    """``model.similar_items(itemid, N=k)`` returns sensible neighbours.

    * well-formed output (k distinct valid ids, scores best first, the query itself left out);
    * with ``check_cosine`` and a model exposing ``item_factors``: the neighbours are the items of
      highest *cosine* similarity (the raw inner product is a classic bug);
    * famous pairs (``mflib.evaluation.KNOWN_PAIRS`` unless ``pairs`` is given, ``{}`` to skip): Star
      Wars → The Empire Strikes Back / Return of the Jedi, The Godfather → Part II. Titles are found with
      ``dataset.find_item`` (exact title, else the most-rated title containing it), so parts of titles
      such as ``{"Star Wars": ["Empire Strikes Back"]}`` work on every MovieLens variant;
    * mean genre Jaccard@k over items with ≥ 50 train positives ≥ ``min_genre_jaccard``.
    """
    __tracebackhide__ = True
    from mflib import metrics
    from mflib.evaluation import KNOWN_PAIRS, frequent_items

    n_items = dataset.n_items
    pairs = KNOWN_PAIRS if pairs is None else pairs
    if train is None:
        train = dataset.implicit()
    item_factors = getattr(model, "item_factors", None) if check_cosine else None
    if item_factors is not None:
        vectors = as_float_array(item_factors)
        if vectors.ndim != 2 or vectors.shape[0] != n_items:
            _fail(f"check_similar_items: item_factors has shape {vectors.shape}; expected (n_items, factors) "
                  f"with n_items = {n_items}, so the cosine similarities cannot be checked")
        norms = _np.sqrt(_np.sum(vectors * vectors, axis=1))
        unit = vectors / _np.maximum(norms, 1e-12)[:, None]
    # 1. shape of the output, on the pairs' queries (or the most popular item)
    queries = [dataset.find_item(query) for query in pairs] or [int(frequent_items(train)[0])]
    neighbours = {}
    for query in queries:
        result = _call(model.similar_items, "similar_items", query, N=k)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            _fail(f"similar_items must return a tuple (ids, scores), got {type(result).__name__}")
        what = f"similar_items({query}) ('{dataset.title(query)}')"
        ids, scores = _validate_list(result[0], result[1], n_items, k, what)
        if query in set(int(i) for i in ids):
            _fail(f"{what} returned the query item itself: leave it out (its cosine with itself is 1, it "
                  "is not a recommendation)")
        neighbours[query] = ids
        # 2. cosine, not the raw inner product
        if item_factors is not None:
            cosine = unit @ unit[query]
            cosine[query] = -_np.inf
            kth = float(_np.sort(cosine)[-k])
            if float(_np.min(cosine[ids])) < kth - 1e-4:
                dots = vectors @ vectors[query]
                dots[query] = -_np.inf
                by_dot = set(int(i) for i in _np.argsort(-dots)[:k])
                if len(by_dot & set(int(i) for i in ids)) >= 0.7 * k:
                    _fail(f"{what} ranks by the raw inner product q_i · q_j; use cosine similarity "
                          "(divide item_factors by their norms first): with raw inner products, items "
                          "with long vectors (popular ones) are everybody's neighbours")
                best = int(_np.argmax(_np.where(_np.isin(_np.arange(n_items), ids), -_np.inf, cosine)))
                _fail(f"{what} does not return the items with the highest cosine similarity of "
                      f"item_factors: '{dataset.title(best)}' (cosine {fmt(cosine[best])}) is missing")
    # 3. famous pairs
    for query_title, expected in pairs.items():
        query = dataset.find_item(query_title)
        found = set(int(i) for i in neighbours[query])
        missing = [dataset.title(dataset.find_item(title)) for title in expected
                   if dataset.find_item(title) not in found]
        if missing:
            _fail(f"'{missing[0]}' is not among the {k} items most similar to '{dataset.title(query)}'. "
                  f"Your top {k}: {_titles(dataset, neighbours[query])}")
    # 4. genre overlap over frequent items (what mflib.evaluation.evaluate_similar_items measures)
    items = frequent_items(train)
    genres = dataset.genre_matrix()
    jaccard = metrics.genre_jaccard(_neighbours(model, items, k, n_items), genres, items)
    random = metrics.random_genre_jaccard(genres, items, k)
    if not jaccard >= min_genre_jaccard:
        _fail(f"similar items share few genres: mean genre Jaccard@{k} = {fmt(jaccard)} over {len(items)} "
              f"frequent items (random vectors give {fmt(random)}; at least {fmt(min_genre_jaccard)} "
              "expected): the item factors have not learned much — train longer or check the updates")
    n_pairs = sum(len(v) for v in pairs.values())
    found = f"; {n_pairs}/{n_pairs} known pairs found" if n_pairs else ""
    _ok(f"similar items: genre Jaccard@{k} = {fmt(jaccard)} (random {fmt(random)}, needed "
        f"{fmt(min_genre_jaccard)}){found}")


# --------------------------------------------------------------------------------------------------
# quality
# --------------------------------------------------------------------------------------------------
_POPULARITY_CACHE: dict = {}


def _popularity_metrics(train, test, k: int) -> dict:
    from mflib.evaluation import evaluate_ranking
    from mflib.models.popularity import Popularity

    key = (id(train), id(test), train.shape, train.nnz, test.nnz, k)
    if key not in _POPULARITY_CACHE:
        _POPULARITY_CACHE.clear()
        _POPULARITY_CACHE[key] = (train, test, evaluate_ranking(Popularity().fit(train), train, test, k=k))
    return _POPULARITY_CACHE[key][2]


def check_ranking(model, train, test, k: int = 10, reference_ndcg=None, fraction: float = 0.8,
                  min_ndcg=None):
    """Ranking quality with the course protocol (``mflib.evaluation.evaluate_ranking``).

    NDCG@k must beat the popularity baseline on the same split; with ``reference_ndcg`` it must reach
    ``fraction × reference_ndcg``; with ``min_ndcg`` it must reach that absolute value.
    """
    __tracebackhide__ = True
    from mflib.evaluation import evaluate_ranking

    key = f"ndcg@{k}"
    n_users, n_items = train.shape
    if getattr(model, "user_factors", None) is not None:
        problem = _factor_problem(model, n_users, n_items)
        if problem:
            _fail(f"check_ranking: {problem}")
    try:  # evaluate_ranking calls the model's recommend: its errors become messages (_call)
        result = _call(evaluate_ranking, "check_ranking: evaluating the model's recommend", model, train, test,
                       k=k)
    except CheckFailure as failure:
        if type(failure.__cause__) is AssertionError:  # evaluate_ranking found already-seen items
            raise CheckFailure(f"check_ranking: {failure.__cause__} — filter user_items") from failure.__cause__
        raise
    ndcg = float(result[key])
    popularity = float(_popularity_metrics(train, test, k)[key])
    label = f"NDCG@{k} {fmt(ndcg)}"
    if not math.isfinite(ndcg) or not ndcg > popularity:
        _fail(f"{label} is below popularity's {fmt(popularity)}: the model ranks no better than recommending "
              "the most popular items to everyone — train longer, check the loss and its gradient, and that "
              "you fit on the users × items training matrix")
    if reference_ndcg is not None:
        needed = fraction * float(reference_ndcg)
        if ndcg < needed:
            _fail(f"{label} is below {100 * fraction:.0f}% of the reference's {fmt(reference_ndcg)} "
                  f"({fmt(needed)} needed; popularity gets {fmt(popularity)}): train longer or revisit the "
                  "hyper-parameters (regularization, learning rate, factors)")
    if min_ndcg is not None and ndcg < float(min_ndcg):
        _fail(f"{label} is below the {fmt(min_ndcg)} required (popularity gets {fmt(popularity)})")
    extra = f", reference {fmt(reference_ndcg)}" if reference_ndcg is not None else ""
    _ok(f"{label} (precision@{k} {fmt(result[f'precision@{k}'])}) beats popularity's {fmt(popularity)}{extra}")
    return result


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
