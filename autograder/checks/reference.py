"""``check_matches_reference``: a student function against the reference implementation, on seeded inputs.

Student and reference are each called on their own deep copy of the inputs, so a function that mutates its
arguments cannot corrupt the reference's inputs; an argument the reference updates in place must be
updated the same way (and its change, not only its final value, is explained on failure).
"""
from __future__ import annotations

import inspect
import math

from ..feedback import _np, as_float_array, explain_difference, fmt, max_relative_difference
from ._common import _call, _compare, _deepcopy, _fail, _is_sparse, _label, _ok, _split_inputs, _to_plain

__all__ = ["check_matches_reference"]

def _is_float_array(value) -> bool:
    return hasattr(value, "dtype") and hasattr(value, "shape") and _np.issubdtype(value.dtype, _np.floating)


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
