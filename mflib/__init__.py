"""mflib: the reference library of the mf-course matrix-factorization course.

Data (:mod:`mflib.datasets`), splits (:mod:`mflib.split`), metrics (:mod:`mflib.metrics`), the evaluation
protocol (:mod:`mflib.evaluation`), retrieval (:mod:`mflib.retrieval`), gradient checking
(:mod:`mflib.gradcheck`), tables and plots (:mod:`mflib.display`) and the reference models
``ALS``, ``BPR``, ``WARP``, ``SVD``, ``FactorizationMachine``.

The models are imported lazily: the student bundle ships mflib without them, and ``import mflib``
must still work there.
"""
from importlib import import_module

from .datasets import load_movielens

__version__ = "0.1.0"

_MODELS = {
    "ALS": "mflib.models.als",
    "BPR": "mflib.models.bpr",
    "WARP": "mflib.models.warp",
    "SVD": "mflib.models.svd",
    "FactorizationMachine": "mflib.models.fm",
    "Popularity": "mflib.models.popularity",
}

__all__ = ["load_movielens", *_MODELS]


def __getattr__(name):
    if name in _MODELS:
        try:
            module = import_module(_MODELS[name])
        except ModuleNotFoundError as error:
            raise ImportError(f"mflib.{name} is a reference model and is not part of this installation "
                              "(the student bundle leaves the reference solutions out)") from error
        return getattr(module, name)
    raise AttributeError(f"module 'mflib' has no attribute {name!r}")
