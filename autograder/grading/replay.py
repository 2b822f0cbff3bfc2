"""Inside the grading kernel: the reference modules answer from a recording, without their code.

The sandbox does not show the reference models' source (:func:`hidden_paths` lists what is covered);
instead :func:`install` puts a finder on ``sys.meta_path`` that resolves ``mflib.models.svd`` (and every
other module of :func:`mflib.models.registry.reference_modules`) to a generated stand-in module built
from the recording :mod:`.record` made when the template was built:

* each reference function becomes a function with the same name and signature whose body looks up
  ``codec.call_key(function, arguments)`` in the recording, applies the recorded in-place changes to
  the arguments and returns a fresh copy of the recorded answer;
* each reference class becomes a class with the same name, the same provided base classes
  (``FactorModel`` ...) and the same methods, replayed the same way with the instance's state as part
  of the key (``mflib.ALS(random_state=0).fit(train)`` works when the source notebook did exactly that);
* a call that was not recorded raises :class:`ReferenceNotRecorded`, which says so.

So the hidden tests (``from mflib.models import svd as reference`` ... ``check_matches_reference(...,
reference.sgd_step, make_inputs)``) run unchanged, on the same seeded inputs, and nothing in the
kernel's memory or on its disk is reference code -- only the arrays those calls returned.

Kernel entry point (the sandbox's kernel argv)::

    python -I -m autograder.grading.replay -f CONNECTION_FILE      # MF_REPLAY=<recording folder>

installs the finder, then starts :mod:`autograder.grading.kernel_guard` as before.
"""
from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import sys
import types
from pathlib import Path

from . import codec

__all__ = ["ReferenceNotRecorded", "Recording", "ReplayFinder", "install", "hidden_paths", "DOC"]

DOC = ("Stand-in for a reference-model function while grading: it returns the answers the reference gave "
       "to the hidden tests' inputs when the grading template was built (the reference code itself is not "
       "available here).")
MISSING = ("[autograder] the hidden test asked the reference {what} for inputs that were not recorded when "
           "the grading template was built ({why}). This is a problem of the grader, not of your code: "
           "the instructor must rebuild the template (regrade with --force), and a hidden test must not "
           "call the reference on values computed from the student's results.")


class ReferenceNotRecorded(RuntimeError):
    """A reference call whose answer is not in the recording (see :data:`MISSING`)."""


class Recording:
    """The recording of one template (``calls.json`` + ``arrays.npz``) and the stand-ins built from it."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        if self.path is not None:
            self.data = json.loads((self.path / "calls.json").read_text())
            import numpy as np

            self.arrays = np.load(self.path / "arrays.npz", allow_pickle=False)
        else:
            self.data = {"modules": {}, "functions": {}, "classes": {}, "calls": {}, "notes": {}}
            self.arrays = {}
        self.calls = self.data["calls"]
        self._functions: dict = {}
        self._classes: dict = {}

    # -- values ----------------------------------------------------------------------------------
    def decode(self, tree, refs=None):
        """A recorded value (reference classes and functions become the stand-ins)."""
        return codec.decode(tree, self.arrays, refs, classes=self.resolve)

    def resolve(self, path: str):
        """The stand-in for ``"module:qualname"`` (a function, a class or a class's method)."""
        if path in self.data["functions"]:
            return self.function(path)
        if path in self.data["classes"]:
            return self.cls(path)
        owner, _, attr = path.rpartition(".")
        if owner in self.data["classes"]:
            return getattr(self.cls(owner), attr)
        raise codec.Unrecordable(f"{path} is not in the recording")

    # -- stand-ins -------------------------------------------------------------------------------
    def function(self, key: str):
        """The stand-in of the recorded function ``key`` (``"mflib.models.svd:sgd_step"``)."""
        if key not in self._functions:
            info = self.data["functions"][key]
            self._functions[key] = self._replayed(key, info["signature"], info["name"], info["qualname"],
                                                  info["module"])
        return self._functions[key]

    def _replayed(self, key: str, signature, name: str, qualname: str, module: str):
        sig = self.signature(signature)
        recording = self

        def replayed(*args, **kwargs):
            return recording.call(key, sig, args, kwargs)

        replayed.__name__, replayed.__qualname__, replayed.__module__ = name, qualname, module
        replayed.__doc__ = DOC
        if sig is not None:
            replayed.__signature__ = sig
        return replayed

    def signature(self, spec) -> inspect.Signature | None:
        """The ``inspect.Signature`` recorded by :func:`.record.encode_signature`."""
        if spec is None:
            return None
        params = []
        for p in spec:
            default = inspect.Parameter.empty
            if "default" in p:
                default = self.decode(p["default"])
            elif "default_repr" in p:
                default = _Opaque(p["default_repr"])
            params.append(inspect.Parameter(p["name"], inspect._ParameterKind(p["kind"]), default=default))
        return inspect.Signature(params)

    def cls(self, path: str):
        """The stand-in class of the recorded reference class ``path`` (``"mflib.models.als:ALS"``)."""
        if path in self._classes:
            return self._classes[path]
        info = self.data["classes"][path]
        bases = [codec.decode({"__type__": b}, {}) for b in info["bases"]]
        bases = tuple(b for b in bases if not any(o is not b and issubclass(o, b) for o in bases)) or (object,)
        namespace = {"__module__": info["module"], "__qualname__": info["qualname"],
                     "__doc__": "Stand-in for a reference model while grading: " + DOC}
        for name, attr in info["attrs"].items():
            if "method" in attr:
                fn = self._replayed(attr["method"], attr["signature"], name, f"{info['qualname']}.{name}",
                                    info["module"])
                namespace[name] = {"staticmethod": staticmethod, "classmethod": classmethod}.get(
                    attr["kind"], lambda f: f)(fn)
            elif "property" in attr:
                getter = self._replayed(attr["property"] + ".fget", [{"name": "self", "kind": 1}], name,
                                        f"{info['qualname']}.{name}", info["module"]) if attr["getter"] else None
                setter = self._replayed(attr["property"] + ".fset", [{"name": "self", "kind": 1},
                                                                     {"name": "value", "kind": 1}], name,
                                        f"{info['qualname']}.{name}", info["module"]) if attr["setter"] else None
                namespace[name] = property(getter, setter)
            else:
                namespace[name] = self.decode(attr["value"])
        cls = types.new_class(info["name"], bases, exec_body=lambda ns: ns.update(namespace))
        self._classes[path] = cls
        return cls

    # -- one call ----------------------------------------------------------------------------------
    def call(self, key: str, sig, args, kwargs):
        """Replay one call of ``key`` (see the module docstring)."""
        what = key.replace(":", ".")
        if sig is None:
            raise ReferenceNotRecorded(MISSING.format(what=what, why="its signature is unknown"))
        bound = sig.bind(*args, **kwargs)  # a wrong call raises TypeError, as the reference would
        arguments = dict(bound.arguments)
        try:
            entry = self.calls.get(codec.call_key(key, arguments))
        except codec.Unrecordable as why:
            raise ReferenceNotRecorded(MISSING.format(what=what, why=f"an argument is not data: {why}")) from None
        if entry is None:
            raise ReferenceNotRecorded(MISSING.format(what=what, why="no recorded call had these arguments"))
        if "unrecordable" in entry:
            raise ReferenceNotRecorded(MISSING.format(what=what, why=entry["unrecordable"]))
        if "raise" in entry:
            raise _exception(*entry["raise"])
        try:
            for name, value in entry["mutated"].items():
                codec.apply_state(arguments[name], self.decode(value))
            return self.decode(entry["out"], refs=codec.resolve_refs(arguments))
        except codec.Unrecordable as why:
            raise ReferenceNotRecorded(MISSING.format(what=what, why=str(why))) from None

    # -- modules -----------------------------------------------------------------------------------
    def populate(self, module: types.ModuleType) -> None:
        """Fill the stand-in ``module`` with the recorded names of the reference module of that name."""
        info = self.data["modules"][module.__name__]
        for attr, entry in info["names"].items():
            if "function" in entry:
                value = self.function(entry["function"])
            elif "class" in entry:
                value = self.cls(entry["class"])
            elif "module" in entry:
                value = importlib.import_module(entry["module"])
            else:
                value = self.decode(entry["value"])
            setattr(module, attr, value)
        module.__doc__ = f"Stand-in for the reference module {module.__name__} while grading. " + DOC
        module.__getattr__ = _missing_attribute(module.__name__)


class _Opaque:
    """A default value that could not be recorded (shown by its repr in signatures)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def _missing_attribute(module: str):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{module}.{name} is not available while grading: the reference solutions are not "
                             "in the grading sandbox, only their recorded answers to the hidden tests")
    return __getattr__


def _exception(path: str, message: str) -> BaseException:
    module, _, qualname = path.partition(":")
    cls = None
    if module == "builtins":
        cls = getattr(builtins, qualname, None)
    elif not codec.is_reference_path(module):
        try:
            cls = codec.decode({"__type__": path}, {})
        except (ImportError, AttributeError):
            cls = None
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return RuntimeError(f"{qualname}: {message}")
    try:
        return cls(message)
    except TypeError:
        return RuntimeError(f"{qualname}: {message}")


class ReplayFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves every reference module to its stand-in; a reference module the recording does not know
    raises ``ModuleNotFoundError`` (so ``mflib.ALS`` says the reference model is unavailable)."""

    def __init__(self, recording: Recording):
        self.recording = recording

    def find_spec(self, fullname, path=None, target=None):
        if not codec.is_reference_path(fullname):
            return None
        info = self.recording.data["modules"].get(fullname)
        if info is None:
            raise ModuleNotFoundError(f"No module named {fullname!r} (the reference solutions are not in the "
                                      "grading sandbox)", name=fullname)
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=info.get("file") or f"<replay {fullname}>")
        spec.has_location = bool(info.get("file"))
        return spec

    def create_module(self, spec):
        """The default module object."""
        return None

    def exec_module(self, module):
        """Fill the stand-in module from the recording."""
        self.recording.populate(module)


_finder: ReplayFinder | None = None


def install(path=None) -> ReplayFinder:
    """Put the stand-ins for the reference modules first on ``sys.meta_path`` (``path``: the recording
    folder; None: no recording, every reference module is unavailable)."""
    global _finder
    _finder = ReplayFinder(Recording(path))
    sys.meta_path.insert(0, _finder)
    for name in [n for n in sys.modules if codec.is_reference_path(n)]:
        del sys.modules[name]  # never the real code, even if something imported it already
    return _finder


def hidden_paths(package_dirs=None) -> list[str]:
    """Host paths the sandbox covers (namespace isolation): every entry of each ``mflib/models`` folder
    that is not a provided module's source (the reference modules, their ``__pycache__``, stray copies)."""
    from mflib.models import registry

    provided = {m.rsplit(".", 1)[-1] + ".py" for m in registry.provided_modules() if m != registry.REFERENCE_PACKAGE}
    provided.add("__init__.py")
    if package_dirs is None:
        package_dirs = _mflib_dirs()
    out = []
    for pkg in package_dirs:
        models = Path(pkg) / "models"
        if not models.is_dir():
            continue
        for entry in sorted(models.iterdir()):
            if entry.name not in provided:
                out.append(os.path.realpath(entry))
    return out


def _mflib_dirs() -> list[str]:
    import importlib.util

    dirs = set()
    spec = importlib.util.find_spec("mflib")
    if spec is not None and spec.submodule_search_locations:
        dirs.update(os.path.realpath(p) for p in spec.submodule_search_locations)
    for entry in sys.path:  # other copies reachable from the interpreter (a non-editable install ...)
        if entry and os.path.isdir(os.path.join(entry, "mflib", "models")):
            dirs.add(os.path.realpath(os.path.join(entry, "mflib")))
    return sorted(dirs)


def main() -> None:
    """The sandbox kernel: install the stand-ins (``MF_REPLAY``), then run the kernel guard."""
    from autograder.grading import replay as this  # state must live in the importable module

    this.install(os.environ.pop("MF_REPLAY", "") or None)
    from autograder.grading import kernel_guard

    kernel_guard.run()


if __name__ == "__main__":
    main()
