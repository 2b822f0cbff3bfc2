"""Record what the reference models answer, so that the grading kernel never needs their code.

When the trusted grader builds the template (:func:`autograder.grading.template.build_template`, as
root, outside any sandbox) it runs the assignment's SOURCE notebook -- the instructor's solutions and
hidden tests -- once, in a kernel where every function and class method of mflib's reference modules
(:func:`mflib.models.registry.reference_modules`) is wrapped by a recorder (:func:`install`).  Each call
that notebook code makes into them (not the calls the reference code makes to itself) is stored as

    key = sha256(function, every argument bit for bit)  ->  answer, and the arguments it changed in place

(:mod:`.codec`: arrays, numbers, sparse matrices, RNG states, model state -- data only, never code).  The
recording (``calls.json`` + ``arrays.npz``) goes into the private work folder; inside the sandbox
:mod:`.replay` stands in for the reference modules and answers from it.

A call whose arguments or answer cannot be stored as data is listed under ``unrecordable`` (its replay
raises with that reason); a function whose answer differs between two identical calls is listed under
``nondeterministic``.

Command line (what :func:`run` starts)::

    python -I -m autograder.grading.record SOURCE.ipynb OUT_DIR --cwd DIR --timeout S
"""
from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import sys
import tempfile
import threading
import types
from pathlib import Path

from . import codec

__all__ = ["install", "save", "run", "encode_signature", "FORMAT_VERSION"]

FORMAT_VERSION = 1

_local = threading.local()
_store = codec.ArrayStore()
_calls: dict[str, dict] = {}
_out_digests: dict[str, str] = {}
_modules: dict[str, dict] = {}
_functions: dict[str, dict] = {}
_classes: dict[str, dict] = {}
_notes = {"unrecordable": {}, "nondeterministic": []}
_wrapped: dict[int, object] = {}   # id(original) -> wrapper


def encode_signature(fn) -> list | None:
    """``fn``'s parameters as data: ``[{"name", "kind", "default"?}]`` (None if it has no signature)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        entry = {"name": p.name, "kind": int(p.kind)}
        if p.default is not inspect.Parameter.empty:
            try:
                entry["default"] = codec.encode(p.default, _store)
            except codec.Unrecordable:
                entry["default_repr"] = repr(p.default)[:200]
        out.append(entry)
    return out


# --- recording one call ----------------------------------------------------------------------------

def _record_call(fn, sig, key_name: str, args, kwargs):
    try:
        bound = sig.bind(*args, **kwargs) if sig is not None else None
    except TypeError:
        bound = None
    if bound is None:  # the real call raises (or the signature is unknown): nothing to replay
        return _passthrough(fn, args, kwargs)
    arguments = dict(bound.arguments)
    try:
        before = {name: codec.digest(value) for name, value in arguments.items()}
        key = codec.call_key(key_name, arguments, before)
    except codec.Unrecordable as why:
        _notes["unrecordable"].setdefault(key_name, f"an argument is not data: {why}")
        return _passthrough(fn, args, kwargs)
    try:
        out = _passthrough(fn, args, kwargs)
    except Exception as error:  # the reference raised: replay raises the same
        _calls[key] = {"raise": [f"{type(error).__module__}:{type(error).__qualname__}", str(error)[:2000]]}
        raise
    try:
        refs = codec.identity_refs(arguments)
        entry = {"out": codec.encode(out, _store, refs), "mutated": {}}
        for name, value in arguments.items():
            if codec.digest(value) != before[name]:
                entry["mutated"][name] = codec.encode(value, _store)
        out_digest = codec.digest([entry["out"], entry["mutated"]])
    except codec.Unrecordable as why:
        entry = {"unrecordable": f"{key_name}: {why}"}
        _notes["unrecordable"].setdefault(key_name, str(why))
        out_digest = "?"
    if key in _out_digests and _out_digests[key] != out_digest and key_name not in _notes["nondeterministic"]:
        _notes["nondeterministic"].append(key_name)
    _out_digests[key] = out_digest
    _calls[key] = entry
    return out


def _passthrough(fn, args, kwargs):
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        return fn(*args, **kwargs)
    finally:
        _local.depth -= 1


def _wrap(fn, key_name: str):
    """A recording wrapper of the plain function ``fn`` (records only calls from outside the reference code)."""
    if id(fn) in _wrapped:
        return _wrapped[id(fn)]
    sig = _signature(fn)

    @functools.wraps(fn)
    def recording(*args, **kwargs):
        if getattr(_local, "depth", 0):
            return fn(*args, **kwargs)
        return _record_call(fn, sig, key_name, args, kwargs)

    _wrapped[id(fn)] = recording
    _wrapped[id(recording)] = recording
    return recording


def _signature(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


# --- patching the reference modules ---------------------------------------------------------------

def _wrap_class(cls) -> str:
    path = f"{cls.__module__}:{cls.__qualname__}"
    if path in _classes:
        return path
    bases = [f"{b.__module__}:{b.__qualname__}" for b in cls.__mro__[1:]
             if not codec.is_reference_path(b.__module__) and b is not object]
    attrs: dict[str, dict] = {}
    # every class of the MRO that is reference code, base first so that subclasses override
    for klass in reversed([k for k in cls.__mro__ if codec.is_reference_path(k.__module__)]):
        for name, raw in list(vars(klass).items()):
            if name in ("__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "__annotations__",
                        "__slots__", "__init_subclass__", "__class_getitem__", "__abstractmethods__",
                        "_abc_impl", "__firstlineno__", "__static_attributes__"):
                continue
            key = f"{path}.{name}"
            if isinstance(raw, (staticmethod, classmethod)):
                wrapped = _wrap(raw.__func__, key)
                attrs[name] = {"method": key, "kind": type(raw).__name__, "signature": encode_signature(raw.__func__)}
                setattr(klass, name, type(raw)(wrapped))
            elif isinstance(raw, types.FunctionType):
                attrs[name] = {"method": key, "kind": "function", "signature": encode_signature(raw)}
                setattr(klass, name, _wrap(raw, key))
            elif isinstance(raw, property):
                getter = _wrap(raw.fget, key + ".fget") if raw.fget else None
                setter = _wrap(raw.fset, key + ".fset") if raw.fset else None
                attrs[name] = {"property": key, "getter": getter is not None, "setter": setter is not None}
                setattr(klass, name, property(getter, setter, raw.fdel, raw.__doc__))
            elif not name.startswith("__"):
                try:
                    attrs[name] = {"value": codec.encode(raw, _store)}
                except codec.Unrecordable:
                    _notes["unrecordable"].setdefault(key, "class attribute is not data")
    _classes[path] = {"name": cls.__name__, "qualname": cls.__qualname__, "module": cls.__module__,
                      "bases": bases, "attrs": attrs}
    return path


def install(modules=None) -> None:
    """Import every reference module (``modules``, default: the registry's) and wrap its functions and
    classes in place, so that notebook calls into them are recorded."""
    from mflib.models import registry

    names = list(modules) if modules is not None else list(registry.reference_modules())
    loaded = {}
    for name in names:
        try:
            loaded[name] = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name == name:
                continue  # not part of this installation
            raise
    for name, module in loaded.items():
        entries: dict[str, dict] = {}
        for attr, obj in list(vars(module).items()):
            if attr.startswith("_") and attr != "__all__":
                continue  # private helpers: called by the reference code only (not even their names are kept)
            if isinstance(obj, types.ModuleType):
                entries[attr] = {"module": obj.__name__}
            elif isinstance(obj, types.FunctionType) and codec.is_reference_path(obj.__module__):
                key = f"{obj.__module__}:{obj.__qualname__}"
                _functions.setdefault(key, {"name": obj.__name__, "qualname": obj.__qualname__,
                                            "module": obj.__module__, "signature": encode_signature(obj)})
                entries[attr] = {"function": key}
                setattr(module, attr, _wrap(obj, key))
            elif isinstance(obj, type) and codec.is_reference_path(obj.__module__):
                entries[attr] = {"class": _wrap_class(obj)}
            else:
                try:
                    entries[attr] = {"value": codec.encode(obj, _store)}
                except codec.Unrecordable:
                    pass  # a helper object the notebook cannot need by name (typing aliases, ...)
        _modules[name] = {"file": getattr(module, "__file__", None), "names": entries}


def save(out_dir) -> dict:
    """Write ``calls.json`` and ``arrays.npz`` to ``out_dir``; returns the summary (counts, notes)."""
    import numpy as np

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {"version": FORMAT_VERSION, "modules": _modules, "functions": _functions, "classes": _classes,
            "calls": _calls, "notes": _notes}
    np.savez(out / "arrays.npz", **_store.arrays)
    (out / "calls.json").write_text(json.dumps(data))
    summary = {"calls": len(_calls), "arrays": len(_store.arrays), "notes": _notes}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


# --- running the source notebook in record mode (a separate process) --------------------------------

INSTALL_CELL = "import autograder.grading.record as __mf_record\n__mf_record.install()"
SAVE_CELL = "__mf_record.save({out!r})"


def _execute(source: Path, out_dir: Path, cwd: Path, timeout: int) -> list[str]:
    """Run ``source`` with the recorder installed; returns the errors of cells that raised."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell

    nb = nbformat.read(str(source), as_version=4)
    nb.cells.insert(0, new_code_cell(INSTALL_CELL))
    nb.cells.append(new_code_cell(SAVE_CELL.format(out=str(out_dir))))
    with tempfile.TemporaryDirectory(prefix="mf-record-") as tmp:
        kdir = Path(tmp) / "kernels" / "mf-record"
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "mf-course record", "language": "python"}))
        os.environ["JUPYTER_PATH"] = tmp
        client = NotebookClient(nb, timeout=timeout, kernel_name="mf-record", allow_errors=True,
                                resources={"metadata": {"path": str(cwd)}})
        client.execute()
    errors = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {i}"
                errors.append(f"{gid}: {output.get('ename')}: {str(output.get('evalue'))[:300]}")
    return errors


def run(source: Path, out_dir: Path, cwd: Path, timeout: int, env: dict, budget: float) -> dict:
    """Record the reference calls of the source notebook ``source`` into ``out_dir`` (a child process
    with environment ``env``, at most ``budget`` seconds).  Returns the summary; raises ``RuntimeError``
    with what went wrong if the notebook did not run cleanly."""
    import subprocess

    cmd = [sys.executable, "-I", "-m", "autograder.grading.record", str(source), str(out_dir), "--cwd", str(cwd),
           "--timeout", str(int(timeout))]
    try:
        r = subprocess.run(cmd, env=env, cwd=str(cwd), capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"recording the reference answers took longer than {budget:.0f} s") from None
    summary_file = Path(out_dir) / "summary.json"
    if r.returncode != 0 or not summary_file.exists():
        raise RuntimeError(f"recording the reference answers failed (exit {r.returncode}):\n"
                           + (r.stderr or r.stdout)[-3000:])
    return json.loads(summary_file.read_text())


def main(argv=None) -> int:
    """``python -I -m autograder.grading.record SOURCE OUT_DIR --cwd DIR --timeout S``."""
    p = argparse.ArgumentParser(prog="python -m autograder.grading.record")
    p.add_argument("source")
    p.add_argument("out_dir")
    p.add_argument("--cwd", default=".")
    p.add_argument("--timeout", type=int, default=120)
    a = p.parse_args(argv)
    out = Path(a.out_dir)
    errors = _execute(Path(a.source), out, Path(a.cwd), a.timeout)
    summary_file = out / "summary.json"
    if errors or not summary_file.exists():
        if summary_file.exists():
            summary_file.unlink()
        print("the source notebook raised while its reference calls were recorded (it must run cleanly, as "
              "`python -m autograder.course.notebooks build` requires):\n  " + "\n  ".join(errors[:10]),
              file=sys.stderr)
        return 1
    summary = json.loads(summary_file.read_text())
    summary["errors"] = errors
    summary_file.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
