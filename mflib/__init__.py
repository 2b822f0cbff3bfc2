"""mflib: the reference library of the mf-course matrix-factorization course.

Data (:mod:`mflib.datasets`), splits (:mod:`mflib.split`), metrics (:mod:`mflib.metrics`), the evaluation
protocol (:mod:`mflib.evaluation`), retrieval (:mod:`mflib.retrieval`), gradient checking
(:mod:`mflib.gradcheck`), tables and plots (:mod:`mflib.display`) and the models ``ALS``, ``BPR``, ``WARP``,
``SVD``, ``FactorizationMachine``, ``ExplicitALS`` and the ``Popularity`` baseline.

The models are attributes imported lazily, from the one list in :mod:`mflib.models.registry`. The student
bundle ships mflib without the reference models, and ``import mflib`` must still work there: then
``mflib.BPR`` raises :class:`ReferenceModelUnavailable` (an ``AttributeError``, so ``hasattr(mflib, "BPR")``
is False) and ``from mflib import BPR`` an ``ImportError`` with the same explanation.
"""
from importlib import import_module
from importlib.util import find_spec
import sys

from .datasets import load_movielens
from .models import registry as _registry

__version__ = "0.1.0"

_MODELS = _registry.model_modules()


class ReferenceModelUnavailable(Exception):
    """A reference model's module is not installed (the student bundle leaves the solutions out).

    Raised as one of the two subclasses below (Python cannot make one exception both an ``AttributeError``
    and an ``ImportError``); ``except ReferenceModelUnavailable`` catches either."""


class ReferenceModelAttributeError(ReferenceModelUnavailable, AttributeError):
    """Raised by attribute access (``mflib.BPR``): an ``AttributeError``, so ``hasattr(mflib, "BPR")`` is
    False and ``getattr(mflib, "BPR", None)`` gives None."""


class ReferenceModelImportError(ReferenceModelUnavailable, ImportError):
    """Raised by ``from mflib import BPR``: an ``ImportError``, with the explanation Python would otherwise
    replace by "cannot import name"."""


def _installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:
        return False


__all__ = ["load_movielens", "ReferenceModelUnavailable", "ReferenceModelAttributeError",
           "ReferenceModelImportError",
           *(name for name, module in _MODELS.items() if _installed(module))]


def _called_by_from_import() -> bool:
    """Is ``mflib.__getattr__`` running for a ``from mflib import NAME`` statement? Python turns an
    ``AttributeError`` raised there into its own "cannot import name" message, dropping ours; so for that
    statement (CPython: the caller's current opcode is ``IMPORT_FROM``) we raise a plain ``ImportError``."""
    import dis

    frame = sys._getframe(2)  # 0: this function, 1: __getattr__, 2: the code that looked the name up
    try:
        return dis.opname[frame.f_code.co_code[frame.f_lasti]] == "IMPORT_FROM"
    except (IndexError, AttributeError):  # another interpreter: fall back to the AttributeError
        return False


def __getattr__(name):
    if name not in _MODELS:
        raise AttributeError(f"module 'mflib' has no attribute {name!r}")
    module = _MODELS[name]
    try:
        loaded = import_module(module)
    except ModuleNotFoundError as error:
        if not _registry.is_reference_module(module) or not _registry.is_reference_module(error.name or ""):
            raise  # a missing third-party dependency, not a missing reference model: say so as it is
        message = (f"mflib.{name} is a reference solution and its module {module} is not part of this "
                   "installation: the student bundle leaves the reference models out. Use your own "
                   "implementation from the notebook (or the full course repository).")
        if _called_by_from_import():
            raise ReferenceModelImportError(message, name=module) from error
        raise ReferenceModelAttributeError(message, name=name, obj=sys.modules[__name__]) from error
    return getattr(loaded, name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
