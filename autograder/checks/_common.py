"""What every check shares: the ✓ line, failing with a message, calling student code, and comparing an
output with a reference's.

* Tampering: the numpy functions are :mod:`autograder.feedback`'s ``_np`` (bound when it is imported), and
  ``print`` and ``copy.deepcopy`` are bound here at import, so a notebook cell that later replaces
  ``np.allclose`` or ``print`` does not change a verdict.
* :func:`_call` runs a student function and turns whatever it raises into a :class:`CheckFailure` that
  says so (the original exception stays chained).
* :func:`_compare` is the recursive comparison behind :func:`~autograder.checks.check_matches_reference`
  (and the ``depends_on`` diagnosis of :func:`~autograder.checks.check_gradient`): integer arrays exactly,
  floats to a relative tolerance, with a message that names the likely bug.
"""
from __future__ import annotations

import copy
import math

from ..feedback import (CheckFailure, _np, as_float_array, explain_difference, fmt, max_relative_difference,
                        scale_hint)

_deepcopy = copy.deepcopy
_print = print


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


def _split_inputs(inputs):
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


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
