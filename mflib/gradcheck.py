"""Gradient checking: compare hand-derived gradients with central finite differences.

Usage::

    from mflib.gradcheck import check_gradients

    def loss(p):      # p: dict name -> array; read the parameters from it, do not close over them
        residual = (p["P"] @ p["Q"].T - R)[mask]
        return 0.5 * (residual ** 2).sum() + 0.5 * lam * ((p["P"] ** 2).sum() + (p["Q"] ** 2).sum())

    def grads(p):     # the gradients you derived, same names and shapes
        ...
        return {"P": dP, "Q": dQ}

    result = check_gradients(loss, grads, {"P": P, "Q": Q})
    print(result)             # a table: one row per parameter, the worst coordinates of failures
    assert result.passed()    # every relative error below 1e-6

The numerical gradient
----------------------
For each checked coordinate ``j`` of a parameter ``x``::

    g_num[j] = (L(x + eps e_j) - L(x - eps e_j)) / (2 eps)

whose error is ``O(eps^2)`` (a one-sided difference would be ``O(eps)``). Everything runs in float64:
with ``eps = 1e-6`` the two losses differ in their 6th significant digit and float64 keeps 16, so
about 10 digits of the difference survive. float32 keeps only 7 -- the difference would be rounding
noise -- so float32 parameters are copied to float64 with a warning.

The relative error
------------------
Per parameter, over its checked coordinates ``J``::

    rel_error = max_{j in J} |g_num[j] - g_ana[j]|  /  max( max_{j in J} (|g_num[j]| + |g_ana[j]|), 1e-30 )

It is scale-free (multiplying the loss by 1000 does not change it) and, unlike the element-wise ratio
``|g_num - g_ana| / (|g_num| + |g_ana|)``, a coordinate whose true gradient is 0 cannot make a correct
gradient fail: its difference-quotient noise (~1e-10) is compared with the largest gradient entry.

How to read it (float64, ``eps = 1e-6``): a correct gradient gives < 1e-6, usually 1e-8 to 1e-11;
around 1e-4 to 1e-6 suspect a kink (``max``, ``abs``, hinge) near the point or a tiny bug;
> 1e-2 the gradient is wrong. A sign flip gives exactly 1, the largest possible value; a gradient twice
the correct one gives 1/3.

This is the course's one definition: the notebooks teach it, ``print(check_gradients(...))`` shows it,
and ``autograder.checks.check_gradient`` (which grades the notebooks) computes it with this module.

Every numpy function used here is bound when the module is imported (``_np``), so a notebook cell that
later replaces ``np.max`` or ``np.abs`` cannot change a verdict.
"""
from __future__ import annotations

import types
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

__all__ = ["check_gradients", "numerical_gradient", "relative_error", "GradientCheck", "ParameterCheck",
           "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 1e-6
_TINY = 1e-30

# numpy functions captured now: a notebook that later monkey-patches the numpy module cannot reach them
_np = types.SimpleNamespace(**{name: getattr(np, name) for name in (
    "abs", "all", "any", "arange", "argsort", "array", "asarray", "empty", "float16", "float32", "float64",
    "floating", "full", "int64", "integer", "isfinite", "issubdtype", "max", "nan", "prod", "sort",
    "unravel_index")})
_np.default_rng = np.random.default_rng
_LOW_PRECISION = (_np.float16, _np.float32)


def relative_error(numeric, analytic, floor: float = _TINY) -> float:
    """``max|numeric - analytic| / max(max(|numeric| + |analytic|), floor)`` (0.0 for empty arrays).

    ``floor`` (default 1e-30) only matters when every entry of both gradients is below it.
    """
    numeric = _np.asarray(numeric, dtype=_np.float64).ravel()
    analytic = _np.asarray(analytic, dtype=_np.float64).ravel()
    if numeric.size == 0:
        return 0.0
    if numeric.shape != analytic.shape:
        raise ValueError(f"relative_error: {numeric.size} numerical values but {analytic.size} analytic ones")
    scale = float(_np.max(_np.abs(numeric) + _np.abs(analytic)))
    return float(_np.max(_np.abs(numeric - analytic))) / max(scale, floor)


def _sci(x: float) -> str:
    """``3.2e-10``, ``1e-6``: scientific notation without the padded exponent."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _sci0(x: float) -> str:
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _loss_value(value, where: str) -> float:
    array = _np.asarray(value, dtype=_np.float64)
    if array.size != 1:
        raise ValueError(f"{where} must return a scalar loss, got an array of shape {array.shape}")
    result = float(array.reshape(()))
    if not _np.isfinite(result):
        raise FloatingPointError(f"{where} returned {result}; the gradient check needs a finite loss")
    return result


def _central_differences(loss_at: Callable[[], float], x: np.ndarray, flat_indices: np.ndarray,
                         eps: float) -> np.ndarray:
    """``(L(x + eps e_j) - L(x - eps e_j)) / (2 eps)`` for each ``j`` in ``flat_indices``.

    ``x`` (float64) is perturbed in place, one coordinate at a time, and always restored, even when the
    loss raises. Each coordinate costs two loss evaluations -- this loop is inherent to the method.
    """
    flat = x.reshape(-1)  # a view: writing to it perturbs x
    numeric = _np.empty(len(flat_indices), dtype=_np.float64)
    for n, j in enumerate(flat_indices):
        original = flat[j]
        try:
            flat[j] = original + eps
            loss_plus = loss_at()
            flat[j] = original - eps
            loss_minus = loss_at()
        finally:
            flat[j] = original
        numeric[n] = (loss_plus - loss_minus) / (2.0 * eps)
    return numeric


def _as_float64_copy(name: str, value) -> np.ndarray:
    array = _np.asarray(value)
    if array.dtype.type in _LOW_PRECISION:
        warnings.warn(
            f"parameter {name!r} is {array.dtype}: checking a float64 copy instead. In {array.dtype} the "
            "loss keeps ~7 significant digits, and a central difference with eps=1e-6 changes it in the "
            "6th-7th digit, so the numerical gradient would be rounding noise. Make sure your loss does "
            "not cast back to float32.", UserWarning, stacklevel=3)
    if not _np.issubdtype(array.dtype, _np.floating) and not _np.issubdtype(array.dtype, _np.integer):
        raise TypeError(f"parameter {name!r} has dtype {array.dtype}; gradients need real numbers")
    return _np.array(array, dtype=_np.float64, copy=True)


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6,
                       indices=None) -> np.ndarray:
    """Central-difference gradient of a scalar function of one array.

    ``g[j] = (f(x + eps e_j) - f(x - eps e_j)) / (2 eps)``, in float64. ``f`` receives a float64 copy
    of ``x`` that is perturbed in place; ``x`` itself is never modified. With ``indices`` (flat
    indices into ``x``) only those coordinates are computed and the others are NaN.
    """
    work = _as_float64_copy("x", x)
    flat_indices = (_np.arange(work.size) if indices is None
                    else _np.asarray(indices, dtype=_np.int64).ravel())
    gradient = _np.full(work.shape, _np.nan)
    gradient.reshape(-1)[flat_indices] = _central_differences(
        lambda: _loss_value(f(work), "f"), work, flat_indices, eps)
    return gradient


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class ParameterCheck:
    """The check of one named parameter array.

    ``indices`` are the checked coordinates (flat); ``numeric``/``analytic`` the gradients there.
    ``worst`` lists ``(index, analytic, numeric)`` for the coordinates with the largest
    ``|numeric - analytic|``, largest first; ``index`` is a tuple into the parameter's shape.
    """

    name: str
    shape: tuple
    indices: np.ndarray = field(repr=False)
    analytic: np.ndarray = field(repr=False)
    numeric: np.ndarray = field(repr=False)
    relative_error: float
    worst: list

    @property
    def n_checked(self) -> int:
        return len(self.indices)

    @property
    def n_total(self) -> int:
        return int(_np.prod(self.shape, dtype=_np.int64))

    @property
    def max_abs_error(self) -> float:
        return float(_np.max(_np.abs(self.numeric - self.analytic), initial=0.0))

    def passed(self, tol: float = DEFAULT_TOLERANCE) -> bool:
        return self.relative_error < tol

    def hint(self) -> str | None:
        """A guess at what went wrong when the analytic gradient is a multiple of the numerical one."""
        numeric, analytic = self.numeric, self.analytic
        if _np.all(numeric == 0) and _np.any(analytic != 0):
            return ("the numerical gradient is exactly 0: does the loss read this parameter from the dict "
                    "it receives (not from a variable captured outside)?")
        if _np.all(analytic == 0) and _np.any(numeric != 0):
            return "the analytic gradient is exactly 0: is this parameter's gradient missing?"
        norm = float(numeric @ numeric)
        if norm == 0:
            return None
        factor = float(analytic @ numeric) / norm
        if abs(factor - 1) > 1e-3 and relative_error(factor * numeric, analytic) < 1e-4:
            if abs(factor + 1) < 1e-3:
                return "analytic = -1 x numerical: the sign is flipped"
            return (f"analytic = {factor:.4g} x numerical: a constant factor is off "
                    "(a 2 from a square, a 1/n from a mean, the learning rate?)")
        return None


@dataclass
class GradientCheck:
    """Result of :func:`check_gradients`: one :class:`ParameterCheck` per parameter.

    ``print(result)`` shows the report; ``result.passed()`` is True when every relative error is below
    ``tol``; ``result.assert_passed()`` raises ``AssertionError`` carrying the report.
    """

    parameters: dict
    eps: float
    tol: float = DEFAULT_TOLERANCE

    def __getitem__(self, name: str) -> ParameterCheck:
        return self.parameters[name]

    @property
    def relative_errors(self) -> dict[str, float]:
        return {name: check.relative_error for name, check in self.parameters.items()}

    @property
    def max_relative_error(self) -> float:
        return max(self.relative_errors.values(), default=0.0)

    def failed(self, tol: float | None = None) -> list[str]:
        """Names of the parameters whose relative error is not below ``tol``."""
        tol = self.tol if tol is None else tol
        return [name for name, check in self.parameters.items() if not check.passed(tol)]

    def passed(self, tol: float | None = None) -> bool:
        return not self.failed(tol)

    def assert_passed(self, tol: float | None = None) -> None:
        if not self.passed(tol):
            raise AssertionError("gradient check failed\n" + self.report(tol))

    def to_frame(self):
        """One row per parameter: shape, checked coordinates, relative and absolute error."""
        import pandas as pd

        return pd.DataFrame([{"parameter": c.name, "shape": c.shape, "checked": c.n_checked,
                              "size": c.n_total, "relative_error": c.relative_error,
                              "max_abs_error": c.max_abs_error} for c in self.parameters.values()]
                            ).set_index("parameter")

    def report(self, tol: float | None = None) -> str:
        tol = self.tol if tol is None else tol
        checks = list(self.parameters.values())
        name_width = max([len("parameter")] + [len(c.name) for c in checks])
        shape_width = max([len("shape")] + [len(str(c.shape)) for c in checks])
        lines = [f"Gradient check: central differences, eps={self.eps:g}, float64",
                 f"{'parameter':<{name_width}}  {'shape':<{shape_width}}  {'checked':>13}  "
                 f"{'rel. error':>10}  result"]
        for c in checks:
            lines.append(f"{c.name:<{name_width}}  {str(c.shape):<{shape_width}}  "
                         f"{f'{c.n_checked}/{c.n_total}':>13}  {_sci(c.relative_error):>10}  "
                         f"{'ok' if c.passed(tol) else 'WRONG'}")
        for c in checks:
            if c.passed(tol):
                continue
            lines += ["", f"{c.name}: relative error {_sci(c.relative_error)} -- correct gradients give "
                          f"< {_sci0(tol)} in float64. Worst coordinates:",
                      f"    {'index':<16}{'analytic':>14}{'numerical':>14}"]
            lines += [f"    {str(index):<16}{analytic:>14.6g}{numeric:>14.6g}" for index, analytic, numeric in c.worst]
            hint = c.hint()
            if hint:
                lines.append(f"    hint: {hint}")
        verdict = ("all gradients correct" if self.passed(tol)
                   else f"WRONG gradient for {', '.join(self.failed(tol))}")
        lines += ["", f"{verdict} (tolerance {_sci0(tol)}; worst relative error {_sci(self.max_relative_error)})",
                  "relative error = max|numerical - analytic| / max(|numerical| + |analytic|); correct gradients "
                  f"give < {_sci0(tol)} in float64 (typically 1e-8 to 1e-11), > 1e-2 means a wrong formula."]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the report, not the dataclass
        printer.text(self.report())


# --------------------------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------------------------
def check_gradients(loss_fn: Callable[[dict], float],
                    gradients: Callable[[dict], Mapping[str, np.ndarray]] | Mapping[str, np.ndarray],
                    params: Mapping[str, np.ndarray], eps: float = 1e-6, n_coords: int | None = None,
                    random_state: int = 0, tol: float = DEFAULT_TOLERANCE, n_worst: int = 3) -> GradientCheck:
    """Check analytic gradients of ``loss_fn`` against central differences, parameter by parameter.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params) -> float``. It receives a dict of float64 *copies* of ``params`` that are
        perturbed one coordinate at a time, so it must read the parameters from that dict.
    gradients : callable or dict
        ``gradients(params) -> {name: gradient}`` (called once, at the unperturbed copies) or the
        dict of gradients itself. Every parameter needs a gradient of its shape.
    params : dict name -> array
        The point at which to check. Never modified; float32 arrays are checked in float64 (warning).
    eps : float
        The finite-difference step.
    n_coords : int or None
        Check at most this many coordinates of each parameter, drawn without replacement with
        ``numpy.random.default_rng(random_state)`` (same seed, same coordinates). None: all of them.
    tol : float
        The threshold used by ``passed()`` and the report when none is given.
    n_worst : int
        How many of the worst coordinates to keep per parameter.

    The relative error of a parameter is ``max_j |g_num[j] - g_ana[j]| / max(max_j (|g_num[j]| +
    |g_ana[j]|), 1e-30)`` over its checked coordinates ``j``; see the module docstring.
    """
    if not params:
        raise ValueError("params is empty: pass a dict name -> array")
    work = {}
    for name, value in params.items():  # a loop, not a comprehension: the float32 warning's stacklevel
        work[name] = _as_float64_copy(name, value)
    if callable(gradients):  # the gradient function gets its own copies: it cannot move the point
        gradients = gradients({name: x.copy() for name, x in work.items()})
    analytic_all = gradients
    missing = [name for name in work if name not in analytic_all]
    if missing:
        raise KeyError(f"no analytic gradient for parameter(s) {missing}; the gradients have keys "
                       f"{list(analytic_all)}")
    analytic_all = {name: _np.asarray(analytic_all[name], dtype=_np.float64) for name in work}
    for name, grad in analytic_all.items():
        if grad.shape != work[name].shape:
            raise ValueError(f"gradient of {name!r} has shape {grad.shape}, the parameter has {work[name].shape}")

    def loss_at() -> float:
        return _loss_value(loss_fn(work), "loss_fn")

    loss_at()  # fail early, with a clear message, on a loss that is not a finite scalar
    rng = _np.default_rng(random_state)
    checks = {}
    for name, x in work.items():
        size = x.size
        flat_indices = (_np.arange(size) if n_coords is None or n_coords >= size
                        else _np.sort(rng.choice(size, size=int(n_coords), replace=False)))
        numeric = _central_differences(loss_at, x, flat_indices, eps)
        analytic = analytic_all[name].reshape(-1)[flat_indices]
        order = _np.argsort(-_np.abs(numeric - analytic), kind="stable")[:n_worst]
        worst = [(tuple(int(i) for i in _np.unravel_index(flat_indices[j], x.shape)),
                  float(analytic[j]), float(numeric[j])) for j in order]
        checks[name] = ParameterCheck(name=name, shape=tuple(x.shape), indices=flat_indices, analytic=analytic,
                                      numeric=numeric, relative_error=relative_error(numeric, analytic),
                                      worst=worst)
    return GradientCheck(parameters=checks, eps=eps, tol=tol)
