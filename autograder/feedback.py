"""Helpers that turn a numerical mismatch into a sentence a student can act on.

Used by :mod:`autograder.checks`. Everything numerical goes through functions bound at import time
(``_np``), so a notebook that later replaces ``np.allclose`` or ``np.linalg.norm`` cannot change a
verdict.
"""
from __future__ import annotations

import math
import types

import numpy as np

__all__ = ["fmt", "scale_hint", "proportional_to", "rowwise_proportional", "row_support", "explain_difference",
           "CheckFailure"]


def _bind(module, names):
    return types.SimpleNamespace(**{name: getattr(module, name) for name in names})


# numpy functions captured now: later monkey-patching of the numpy module does not reach them
_np = _bind(np, ["asarray", "array", "zeros", "ones", "abs", "max", "min", "sum", "sqrt", "isfinite",
                 "isnan", "all", "any", "flatnonzero", "argmax", "argmin", "argsort", "unravel_index", "vdot",
                 "float64", "int64", "issubdtype", "floating", "integer", "bool_", "ndim", "shape", "where",
                 "diff", "mean", "median", "arange", "unique", "nonzero", "isin", "sort", "array_equal",
                 "minimum", "maximum", "atleast_1d", "atleast_2d", "full", "round", "count_nonzero",
                 "ascontiguousarray", "copy", "inf", "nan", "isscalar", "ndarray", "log10", "concatenate",
                 "clip", "cumsum", "stack", "repeat", "lexsort"])
_np.norm = np.linalg.norm
_np.default_rng = np.random.default_rng


class CheckFailure(AssertionError):
    """An autograder check failed; the message says what is wrong and how to fix it."""


def fmt(x, digits: int = 3) -> str:
    """A short human number: 0.512, 1.2e-07, 1,682, nan."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return repr(x)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e7 and not isinstance(x, (float, np.floating)):
        return f"{int(value):,}"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def as_float_array(x) -> np.ndarray:
    return _np.asarray(x, dtype=_np.float64)


def max_relative_difference(actual, expected) -> float:
    """``max |a - e| / max |e|`` (elementwise, scaled by the reference's largest entry)."""
    actual, expected = as_float_array(actual), as_float_array(expected)
    if actual.size == 0:
        return 0.0
    diff = float(_np.max(_np.abs(actual - expected)))
    scale = float(_np.max(_np.abs(expected)))
    if scale == 0.0:
        return diff if diff == 0.0 else (math.inf if diff > 1e-12 else diff)
    return diff / scale


def best_scale(actual, expected) -> tuple[float, float]:
    """``c`` minimising ``||a - c e||`` and the residual ``||a - c e|| / ||a||`` (0 = exactly c times)."""
    actual, expected = as_float_array(actual).ravel(), as_float_array(expected).ravel()
    ee = float(_np.vdot(expected, expected))
    aa = float(_np.norm(actual))
    if ee == 0.0 or aa == 0.0:
        return math.nan, math.inf
    c = float(_np.vdot(actual, expected)) / ee
    return c, float(_np.norm(actual - c * expected)) / aa


def scale_hint(c: float, what: str = "value") -> str | None:
    """The classic constant-factor bugs: sign flipped, factor 2, a missing 1/n..."""
    if not math.isfinite(c):
        return None
    if abs(c + 1) < 0.02:
        return f"sign flipped: your {what} is the negative of the correct one (gradient of -loss, or a minus where a plus belongs)"
    if abs(c - 2) < 0.02:
        return f"off by a factor of 2: your {what} is twice the correct one — did you forget the ½ or double count a term?"
    if abs(c - 0.5) < 0.01:
        return f"off by a factor of 2: your {what} is half the correct one — did you drop the factor 2 from the derivative of a square?"
    if abs(c + 2) < 0.04 or abs(c + 0.5) < 0.01:
        return f"sign flipped and off by a factor of 2 ({fmt(c)} × the correct {what})"
    if abs(c) < 1e-12:
        return f"your {what} is zero"
    if abs(c - 1) > 0.02:
        return (f"off by a constant factor: your {what} is {fmt(c)} × the correct one "
                "(a missing or extra 1/n, batch size, learning rate or weight?)")
    return None


def proportional_to(difference, base, support_only: bool = True) -> tuple[float, float, np.ndarray]:
    """Is ``difference ≈ c · base`` (on the entries where the difference is not negligible)?

    Returns ``(c, residual, mask)``; residual is ``||d - c b|| / ||d||`` over the mask.
    """
    d, b = as_float_array(difference), as_float_array(base)
    if d.shape != b.shape or d.size == 0:
        return math.nan, math.inf, _np.zeros(d.shape, dtype=bool)
    magnitude = _np.abs(d)
    peak = float(_np.max(magnitude))
    if peak == 0.0:
        return math.nan, math.inf, _np.zeros(d.shape, dtype=bool)
    if support_only and d.ndim >= 1:
        # rows where the difference is not negligible (row = user or item)
        rows = d.reshape(len(d), -1) if d.ndim > 1 else d.reshape(-1, 1)
        row_mask = _np.max(_np.abs(rows), axis=1) > 1e-6 * peak
        mask = _np.repeat(row_mask, rows.shape[1]).reshape(d.shape) if d.ndim > 1 else row_mask
    else:
        mask = _np.ones(d.shape, dtype=bool)
    c, residual = best_scale(d[mask], b[mask])
    return c, residual, mask


def rowwise_proportional(difference, base) -> np.ndarray | None:
    """The coefficients ``c_r`` if every row of ``difference`` that is not negligible is ``c_r`` times the
    same row of ``base``, all ``c_r`` of one sign; else None.

    That is the signature of a regularization term ``λ·θ`` counted once per occurrence of a row in a batch
    (a user with three ratings gets ``3λ·p_u``) or with one ``λ`` per row (per-feature penalties): the
    difference is not one multiple of ``θ`` but a different multiple in every row. For a 2-D array each row
    must be parallel to its row of ``base`` (a strong test with ≥ 2 columns); for a 1-D array, where every
    entry is trivially a multiple, the coefficients must be integer multiples of the smallest one
    (occurrence counts) on at least 3 entries.
    """
    d, b = as_float_array(difference), as_float_array(base)
    if d.shape != b.shape or d.ndim not in (1, 2) or d.size == 0:
        return None
    peak = float(_np.max(_np.abs(d)))
    if peak == 0.0:
        return None
    rows_d = d.reshape(len(d), -1)
    rows_b = b.reshape(len(b), -1)
    active = _np.flatnonzero(_np.max(_np.abs(rows_d), axis=1) > 1e-6 * peak)
    if len(active) < 2:
        return None
    coefficients = []
    for r in active:
        dr, br = rows_d[r], rows_b[r]
        bb = float(_np.vdot(br, br))
        if bb == 0.0:
            return None
        c = float(_np.vdot(dr, br)) / bb
        if float(_np.norm(dr - c * br)) > 1e-3 * float(_np.norm(dr)):
            return None
        coefficients.append(c)
    coefficients = _np.array(coefficients)
    if not (bool(_np.all(coefficients > 0)) or bool(_np.all(coefficients < 0))):
        return None
    if d.ndim == 1 and (len(active) < 3 or common_unit(coefficients) is None):
        return None
    return coefficients


def common_unit(coefficients, max_multiple: int = 12, max_count: int = 100) -> float | None:
    """The largest ``λ`` such that every ``|c|`` is a small whole multiple ``n λ`` (``n`` ≤ ``max_count``),
    trying ``λ = min|c| / m`` for ``m = 1 … max_multiple`` (the rarest row occurs at most that often);
    None if there is none. Occurrence counts of rows in a batch give one."""
    magnitudes = _np.abs(as_float_array(coefficients)).ravel()
    low = float(_np.min(magnitudes)) if magnitudes.size else 0.0
    if low == 0.0:
        return None
    for m in range(1, max_multiple + 1):
        unit = low / m
        multiples = magnitudes / unit
        if float(_np.max(multiples)) <= max_count and bool(
                _np.all(_np.abs(multiples - _np.round(multiples)) < 1e-4 * multiples)):
            return unit
    return None


def row_support(difference, tolerance: float) -> tuple[int, int]:
    """``(rows with a real difference, all rows)`` for a 1-D or 2-D array difference."""
    d = as_float_array(difference)
    if d.ndim == 0:
        return (int(abs(float(d)) > tolerance), 1)
    rows = d.reshape(len(d), -1)
    bad = _np.max(_np.abs(rows), axis=1) > tolerance
    return int(_np.count_nonzero(bad)), len(rows)


def regularization_hint(c: float, parameter: str, subset: str = "") -> str:
    where = f" {subset}" if subset else ""
    if c < 0:
        return (f"the error is proportional to '{parameter}' itself{where} (≈ {fmt(c)}·θ): the "
                "regularization term λ·θ is missing from this gradient (or has the wrong factor) — "
                "wrong only where regularization matters")
    return (f"the error is proportional to '{parameter}' itself{where} (≈ +{fmt(c)}·θ): the "
            "regularization term λ·θ is counted twice, has the wrong sign or the wrong factor")


def rowwise_regularization_hint(coefficients, parameter: str) -> str:
    """The message for :func:`rowwise_proportional`: a λ·θ term per row, missing or extra."""
    sign = "−" if float(coefficients[0]) < 0 else "+"
    low, high = float(_np.min(_np.abs(coefficients))), float(_np.max(_np.abs(coefficients)))
    span = (f"{sign}{fmt(low)}" if abs(high - low) <= 1e-3 * high
            else f"{sign}{fmt(low)} to {sign}{fmt(high)}")
    where = f"in every row the error is a multiple of that row of '{parameter}' ({span} × θ)"
    how = ("as the loss counts it: once per occurrence of the row in the batch (a row used by 3 ratings or "
           "triples gets 3 λ·θ), or with the row's own λ")
    if sign == "−":
        return f"{where}: the regularization term λ·θ is missing from this gradient ({how})"
    return (f"{where}: the regularization term λ·θ is counted too often, or has the wrong sign or factor "
            f"({how})")


def explain_difference(actual, expected, candidates: dict | None = None, what: str = "value",
                       tolerance: float = 1e-6) -> str:
    """One sentence on how ``actual`` differs from ``expected`` (arrays of the same shape).

    ``candidates``: named arrays (e.g. the parameters) the difference might be proportional to, which
    points at a regularization term.
    """
    actual, expected = as_float_array(actual), as_float_array(expected)
    if not bool(_np.all(_np.isfinite(actual))):
        bad = int(_np.count_nonzero(~_np.isfinite(actual)))
        return f"your {what} contains {bad} NaN/inf entries (overflow? division by zero? learning rate too large?)"
    if actual.size and float(_np.max(_np.abs(actual))) == 0.0 and float(_np.max(_np.abs(expected))) > 0.0:
        return f"your {what} is all zeros: is it computed and returned (not just initialised)?"
    c, residual = best_scale(actual, expected)
    if residual < 1e-3:
        hint = scale_hint(c, what)
        if hint:
            return hint
    difference = actual - expected
    for parameter, base in (candidates or {}).items():
        base = as_float_array(base)
        if base.shape != difference.shape or not float(_np.max(_np.abs(base))) > 0:
            continue
        k, residual, mask = proportional_to(difference, base)
        if residual < 1e-3 and math.isfinite(k):
            bad_rows, rows = row_support(difference, 1e-6 * float(_np.max(_np.abs(difference))))
            subset = f"(on {bad_rows} of {rows} rows)" if difference.ndim and bad_rows < rows else ""
            return regularization_hint(k, parameter, subset)
        coefficients = rowwise_proportional(difference, base)
        if coefficients is not None:
            return rowwise_regularization_hint(coefficients, parameter)
        # yours = -data + λθ where the correct one is data + λθ: the sum is the penalty term alone
        total = actual + expected
        if float(_np.max(_np.abs(total))) > 1e-6 * float(_np.max(_np.abs(expected))):
            k, residual, _ = proportional_to(total, base, support_only=False)
            if (residual < 1e-3 and math.isfinite(k) and k > 0) or rowwise_proportional(total, base) is not None:
                return (f"sign flipped in the data part only: your {what} = -(data term) + (regularization "
                        f"term), the correct one = data term + regularization term — the λ·θ part is right; "
                        "check the sign of the error / residual in the data part")
    scale = max(float(_np.max(_np.abs(expected))) if expected.size else 0.0, 1e-300)
    if difference.ndim >= 1 and len(difference) > 1:
        bad_rows, rows = row_support(difference, tolerance * scale)
        if 0 < bad_rows < rows:
            rows_diff = difference.reshape(len(difference), -1)
            first = int(_np.flatnonzero(_np.max(_np.abs(rows_diff), axis=1) > tolerance * scale)[0])
            return (f"wrong in {bad_rows} of {rows} rows only (first: row {first}); if an index occurs "
                    "several times in the batch, `g[idx] += x` keeps only one of the duplicates — use "
                    "np.add.at(g, idx, x)")
    flat = int(_np.argmax(_np.abs(difference).ravel())) if difference.size else 0
    index = tuple(int(i) for i in _np.unravel_index(flat, difference.shape)) if difference.ndim else ()
    where = f" at index {index if len(index) != 1 else index[0]}" if index else ""
    message = (f"largest difference{where}: yours {fmt(actual.ravel()[flat])} vs correct "
               f"{fmt(expected.ravel()[flat])}")
    if actual.ndim >= 1 and float(_np.norm(actual.ravel())) < 0.95 * float(_np.norm(expected.ravel())):
        message += ("; yours is smaller overall — a term missing, or an index that repeats in the batch "
                    "counted once (`g[idx] += x` keeps one of the duplicates: use np.add.at(g, idx, x))")
    return message
