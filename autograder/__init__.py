"""The mf-course autograder, laid out by role.

* this package -- what students' notebooks and grade cells import: :func:`setup_notebook` (here),
  :mod:`autograder.checks` (the ``check_*`` functions test cells call) and :mod:`autograder.feedback`
  (their messages);
* :mod:`autograder.course` -- the instructor's course tools: build and release the notebooks, the
  student bundle, pretend students, ``python -m autograder demo``;
* :mod:`autograder.grading` -- batch grading of a class in a sandbox: ``python -m autograder grade``.

Inside a notebook, the first code cell calls :func:`setup_notebook`; test cells use
:mod:`autograder.checks`::

    import autograder
    autograder.setup_notebook()
    from autograder.checks import check_gradient, check_loss_decreases

This package's ``__init__`` imports nothing heavy (numpy, mflib, nbgrader are imported where used), so
``import autograder`` works in the student bundle, which ships this package without ``course/`` and
``grading/``.
"""
from __future__ import annotations

import os
import sys
import warnings

__all__ = ["setup_notebook"]

_BLAS_LIMITER = None  # keeps threadpoolctl's limit alive for the whole kernel


def _in_ipython_kernel() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:  # pragma: no cover - exotic IPython builds
        return False
    return ip is not None and "ipykernel" in sys.modules and hasattr(ip, "kernel")


def _disable_tqdm() -> None:
    """Force every tqdm bar (std, auto, notebook, and libraries' own, e.g. implicit's) to ``disable=True``.

    ``TQDM_DISABLE`` is only read when tqdm is imported, so we also patch the class: a grade cell that
    writes a progress bar to stderr gets zero points from nbgrader."""
    os.environ["TQDM_DISABLE"] = "1"
    try:
        import tqdm.std
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    init = tqdm.std.tqdm.__init__
    if getattr(init, "_mf_course_disabled", False):
        return

    def __init__(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    __init__._mf_course_disabled = True
    __init__._mf_course_original = init
    __init__.__doc__ = init.__doc__
    tqdm.std.tqdm.__init__ = __init__


def _enable_tqdm() -> None:
    os.environ.pop("TQDM_DISABLE", None)
    tqdm_std = sys.modules.get("tqdm.std")
    if tqdm_std is not None:
        init = tqdm_std.tqdm.__init__
        if getattr(init, "_mf_course_disabled", False):
            tqdm_std.tqdm.__init__ = init._mf_course_original


def setup_notebook(threads: int = 1, progress: bool = False, quiet_warnings: bool = True,
                   seed: int | None = None) -> None:
    """Make a notebook reproducible and grading-safe. Prints nothing.

    * BLAS / OpenMP pools limited to ``threads`` (threadpoolctl; also ``OPENBLAS_NUM_THREADS`` & co.
      for subprocesses): results do not depend on the machine, and implicit stops warning about it;
    * warnings silenced (``quiet_warnings``): nbgrader gives zero points to a test cell that writes to
      stderr, and a DeprecationWarning is not the student's fault;
    * tqdm progress bars off unless ``progress=True`` (``TQDM_DISABLE=1`` and tqdm patched);
    * matplotlib on the inline backend in a Jupyter kernel, ``Agg`` elsewhere (never a GUI window);
    * ``seed``: also seeds numpy's legacy global generator (mflib itself never uses it).
    """
    global _BLAS_LIMITER
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[variable] = str(threads)
    if quiet_warnings:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
    try:
        from threadpoolctl import threadpool_limits

        _BLAS_LIMITER = threadpool_limits(limits=threads)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    if progress:
        _enable_tqdm()
    else:
        _disable_tqdm()
    _setup_matplotlib()
    if seed is not None:
        import numpy as np

        np.random.seed(seed)


def _setup_matplotlib() -> None:
    inline = "module://matplotlib_inline.backend_inline"
    if _in_ipython_kernel():
        os.environ["MPLBACKEND"] = inline
        backend = inline
    else:
        backend = os.environ.get("MPLBACKEND") or "Agg"
        if backend == inline:  # inline makes no sense outside a kernel
            backend = "Agg"
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            matplotlib.use(backend)
        except Exception:
            matplotlib.use("Agg")
