"""The one list of mflib's models: which module holds each, and which are reference solutions.

Everything that needs to know "which models exist" or "which files are the solutions" reads this module:
``mflib/__init__.py`` (the lazy attributes ``mflib.ALS`` ...), the grading scan and kernel guard (what a
student may not import) and the student bundle (which files to leave out). Adding a model means adding one
line to :data:`MODELS` (and, if its implementation is split over private modules, listing those in
:data:`REFERENCE_HELPERS`).

This module imports no model: it is shipped in the student bundle, where the reference modules are absent.

API
---
``MODELS``                      tuple of :class:`ModelEntry` ``(name, module, reference, data)``
``REFERENCE_PACKAGE``           ``"mflib.models"``, the package that holds the models
``REFERENCE_HELPERS``           private modules that implement reference solutions (``mflib.models._optim`` ...)
``model_modules()``             ``{"ALS": "mflib.models.als", ...}``: every model, for ``mflib.__getattr__``
``lazy_attributes()``           ``{"mflib.ALS": "mflib.models.als", ...}``: the same with the ``mflib.`` prefix,
                                the form an import policy needs (accessing ``mflib.ALS`` imports that module)
``reference_modules()``         dotted names of every module that holds reference-solution code (the
                                reference models' modules and the helpers): forbidden to students, left out of
                                the student bundle
``provided_modules()``          dotted names of the model modules students *do* get (the baseline, the base
                                classes, this registry)
``reference_source_paths()``    ``("mflib/models/als.py", ...)``: :func:`reference_modules` as paths relative
                                to the repository root
``is_reference_module(name)``   is the dotted ``name`` (or a module inside it) reference-solution code?

A *reference solution* is a model the course asks students to implement (ALS, BPR, WARP, SVD, FM, explicit
ALS); :class:`~mflib.models.popularity.Popularity` is a provided baseline, not a solution.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelEntry", "MODELS", "REFERENCE_PACKAGE", "REFERENCE_HELPERS", "PROVIDED_MODULES", "model_modules",
           "lazy_attributes", "reference_modules", "provided_modules", "reference_source_paths",
           "is_reference_module"]

REFERENCE_PACKAGE = "mflib.models"


@dataclass(frozen=True)
class ModelEntry:
    """One model: ``mflib.<name>`` is the class ``<name>`` of ``module``; ``reference`` marks a solution.

    ``data`` says what ``fit`` takes: ``"implicit"`` a users x items CSR of positives (``fit(user_items)``),
    ``"explicit"`` ratings (``fit(users, items, ratings, n_users=, n_items=)``), ``"features"`` feature
    rows and targets (``fit(X, y, feature_space=)``).
    """

    name: str
    module: str
    reference: bool
    data: str


MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("ALS", "mflib.models.als", reference=True, data="implicit"),
    ModelEntry("BPR", "mflib.models.bpr", reference=True, data="implicit"),
    ModelEntry("WARP", "mflib.models.warp", reference=True, data="implicit"),
    ModelEntry("SVD", "mflib.models.svd", reference=True, data="explicit"),
    ModelEntry("ExplicitALS", "mflib.models.explicit_als", reference=True, data="explicit"),
    ModelEntry("FactorizationMachine", "mflib.models.fm", reference=True, data="features"),
    ModelEntry("Popularity", "mflib.models.popularity", reference=False, data="implicit"),
)

# Private modules that hold parts of the reference solutions (negative sampling, AdaGrad and Adam, the ALS
# solvers): students write these themselves, so they are treated exactly like the reference models.
# A test (tests/test_packaging.py) checks that every module file in mflib/models/ is listed somewhere here.
REFERENCE_HELPERS: tuple[str, ...] = (
    "mflib.models._als_solvers",
    "mflib.models._fm_train",
    "mflib.models._foldin",
    "mflib.models._optim",
    "mflib.models._rowsolve",
    "mflib.models._sampling",
    "mflib.two_stage",  # notebook 07's candidate recall and re-rank (exercises 5 and 6)
)

# Modules of mflib.models that students get (the package itself, base classes, the baseline, this list).
PROVIDED_MODULES: tuple[str, ...] = (
    "mflib.models",
    "mflib.models.base",
    "mflib.models.popularity",
    "mflib.models.registry",
)


def model_modules() -> dict[str, str]:
    """``{class name: module}`` for every model, e.g. ``{"ALS": "mflib.models.als", ...}``."""
    return {entry.name: entry.module for entry in MODELS}


def lazy_attributes() -> dict[str, str]:
    """``{"mflib.<name>": module}``: the lazy attributes of ``mflib`` and the module each one imports."""
    return {f"mflib.{entry.name}": entry.module for entry in MODELS}


def reference_modules() -> tuple[str, ...]:
    """Dotted names of every module holding reference-solution code: the reference models, then the helpers."""
    return tuple(entry.module for entry in MODELS if entry.reference) + REFERENCE_HELPERS


def provided_modules() -> tuple[str, ...]:
    """Dotted names of the ``mflib.models`` modules students get (baseline included)."""
    return PROVIDED_MODULES + tuple(entry.module for entry in MODELS
                                    if not entry.reference and entry.module not in PROVIDED_MODULES)


def reference_source_paths() -> tuple[str, ...]:
    """:func:`reference_modules` as source paths relative to the repository root (``mflib/models/als.py``)."""
    return tuple(module.replace(".", "/") + ".py" for module in reference_modules())


def is_reference_module(name: str) -> bool:
    """Is the dotted module ``name`` one of :func:`reference_modules` (or a submodule of one)?"""
    return any(name == module or name.startswith(module + ".") for module in reference_modules())
