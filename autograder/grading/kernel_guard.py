"""Kernel-side guard: started as ``python -I -m autograder.grading.kernel_guard -f CONNECTION_FILE``.

It runs inside the sandboxed kernel process, i.e. in the same process as the student's code, so
everything here is *best effort* -- it raises the bar and catches the common ways of cheating, but a
determined student who reads this (open-source) file can defeat it.  The real isolation lives in
:mod:`autograder.grading.sandbox` (separate user, namespaces, rlimits); the static scan of the
submission (:mod:`autograder.grading.scan`) runs before the kernel starts.

What it does, before the IPython kernel starts:

* **No shadowing of installed modules.**  A meta-path finder placed first on ``sys.meta_path``
  resolves every module that exists in a trusted location (the Python installation, the virtualenv,
  the course packages) from there, so a ``numpy.py`` or ``autograder/checks.py`` written into the
  working directory (which is on ``sys.path``) is never imported in its place.
* **Forbidden imports.**  ``import``/``from ... import`` statements and ``importlib`` imports of the
  forbidden modules (e.g. ``implicit``, ``mflib.models``, ``from mflib import ALS``) raise
  ``ImportError("[autograder] forbidden import ...")`` when they come from notebook code; the same
  modules may still be imported by the course's own packages (``autograder.checks`` may use the
  reference models).  The grader turns these errors into status ``forbidden_import``.  Which names
  are forbidden is decided by :class:`autograder.grading.policy.ImportPolicy`, the matcher the
  static scan uses too (this module and that one import only the standard library).
* **Tamper detection.**  Identities of the check functions (``numpy.allclose``, ``numpy.testing``,
  ``math.isclose``, builtins, everything in ``autograder.*``/``mflib.*``), of the IPython
  machinery that runs cells and reports errors, and of the names the instructor's cells import are
  recorded when first seen; :func:`status` (evaluated by the grader as a ``user_expression`` after
  every cell) reports anything that was replaced.
"""
from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import json
import os
import sys

from autograder.grading.policy import ImportPolicy

MARK = "[autograder] forbidden import"

_cfg: dict = {}
_trusted_roots: tuple[str, ...] = ()
_transparent_functions: frozenset = frozenset()  # {(file, function name)}
_policy = ImportPolicy()
_watch: list[str] = []
_snap: dict[str, tuple] = {}        # module name -> (module, {attr: (obj, code)})
_classes: dict[str, tuple] = {}     # "module.Class" -> (cls, {attr: obj})
_shell_snap: dict = {}
_real_import = builtins.__import__
_seen_modules = 0
_unwatched: set = set()        # module names that _watched() rejected
_finder = None
_problems: list[str] = []


# --- who is importing? -------------------------------------------------------------------------

def _trusted_file(filename: str) -> bool:
    if not filename or filename.startswith("<frozen"):
        return filename.startswith("<frozen")
    if not filename.startswith("/"):
        return False  # <string>, <ipython-input-...>: notebook code
    return filename.startswith(_trusted_roots)


def _importer_is_notebook(depth: int = 2) -> bool:
    """True if the first frame outside the import machinery is notebook (or student-written) code."""
    f = sys._getframe(depth)
    while f is not None:
        fn = f.f_code.co_filename
        if fn.startswith("<frozen importlib") or fn.endswith(("/importlib/__init__.py",)) \
                or (fn, f.f_code.co_name) in _transparent_functions or fn == __file__:
            f = f.f_back
            continue
        return not _trusted_file(fn)
    return False


def _trusted_dir(path) -> bool:
    return isinstance(path, str) and os.path.isabs(path) and (path.rstrip("/") + "/").startswith(_trusted_roots)


def is_forbidden(name: str) -> bool:
    """Is the dotted ``name`` (a module or a lazy attribute such as ``mflib.ALS``) forbidden?"""
    return _policy.forbidden(name)


def _refuse(names):
    raise ImportError(f"{MARK}: {', '.join(sorted(set(names)))} may not be used in this assignment "
                      "(write the code yourself)")


def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    """``builtins.__import__`` in the kernel: refuses forbidden names imported by notebook code."""
    if level == 0 and _policy.forbid:
        caller = sys._getframe(1).f_code.co_filename
        if not _trusted_file(caller):
            hits = _policy.forbidden_names(name, fromlist)
            if hits:
                _refuse(hits)
    module = _real_import(name, globals, locals, fromlist, level)
    if len(sys.modules) != _seen_modules:
        _snapshot_new_modules()
    return module


class TrustedFinder(importlib.abc.MetaPathFinder):
    """First on sys.meta_path: trusted locations win; forbidden modules refused for notebook code."""

    def find_spec(self, fullname, path=None, target=None):
        if _policy.forbid and is_forbidden(fullname) and _importer_is_notebook(2):
            _refuse([fullname])
        if path is None:  # top-level module: the normal finders, minus untrusted sys.path entries
            trusted = [p for p in sys.path if _trusted_dir(p)]
            for finder in list(sys.meta_path):
                if finder is self:
                    continue
                try:
                    if finder is importlib.machinery.PathFinder:
                        spec = finder.find_spec(fullname, trusted, target)
                    else:
                        find = getattr(finder, "find_spec", None)
                        spec = find(fullname, None, target) if find is not None else None
                except (ImportError, ValueError, OSError):  # this finder cannot say: ask the next one
                    spec = None
                if spec is not None:
                    return spec
            return None  # not installed anywhere trusted: the student's own module, if any
        # submodule: only from the trusted part of the parent's __path__
        entries = list(path)
        trusted = [p for p in entries if _trusted_dir(p)]
        if len(trusted) == len(entries):
            return None  # nothing untrusted in the way: normal import
        spec = importlib.machinery.PathFinder.find_spec(fullname, trusted)
        if spec is not None:
            return spec
        parent = fullname.rpartition(".")[0]
        if _trusted_file(getattr(sys.modules.get(parent), "__file__", None) or "") or parent in _snap:
            raise ImportError(f"[autograder] refusing to import {fullname} from outside the course "
                              "packages")
        return None


# --- snapshots -----------------------------------------------------------------------------------

def _watched(name: str) -> bool:
    return any(name == w or (w.endswith(".*") and (name == w[:-2] or name.startswith(w[:-1])))
               for w in _watch)


BUILTINS = ("__import__", "abs", "all", "any", "bool", "callable", "dict", "enumerate", "filter",
            "float", "getattr", "hasattr", "int", "isinstance", "issubclass", "iter", "len", "list",
            "map", "max", "min", "next", "object", "range", "repr", "round", "set", "setattr",
            "sorted", "str", "sum", "tuple", "type", "zip", "compile", "exec", "eval", "open")


def _snapshot_module(name, module):
    attrs = {}
    items = ([(k, getattr(module, k)) for k in BUILTINS if hasattr(module, k)]
             if name == "builtins" else list(vars(module).items()))
    for attr, obj in items:
        if attr.startswith("__") and attr != "__import__":
            continue
        if callable(obj):
            attrs[attr] = (obj, getattr(obj, "__code__", None))
            if isinstance(obj, type) and getattr(obj, "__module__", None) == name:
                _classes[f"{name}.{attr}"] = (obj, {k: v for k, v in vars(obj).items()
                                                     if callable(v) or isinstance(v, (staticmethod,
                                                                                      classmethod))})
    _snap[name] = (module, attrs)


def _snapshot_new_modules():
    global _seen_modules
    # called after every import that grew sys.modules: look only at names not seen before (set
    # operations in C), else importing a big package costs a Python loop over sys.modules per module
    for name in sys.modules.keys() - _unwatched - _snap.keys():
        if not _watched(name):
            _unwatched.add(name)
            continue
        module = sys.modules.get(name)
        if module is None:
            continue
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            continue  # still being imported: snapshot it when it is complete
        if not _trusted_file(getattr(module, "__file__", None) or "") and name != "builtins" \
                and getattr(module, "__file__", None) is not None:
            _problems.append(f"module {name} was loaded from {module.__file__}")
            continue
        _snapshot_module(name, module)
    _seen_modules = len(sys.modules)


SHELL_METHODS = ("run_cell", "run_cell_async", "run_ast_nodes", "run_code", "transform_cell",
                 "showtraceback", "_showtraceback", "showsyntaxerror", "user_expressions",
                 "_format_user_obj", "_user_obj_error", "ex", "ev")
KERNEL_METHODS = ("do_execute", "execute_request", "dispatch_shell", "send_response")


def _snapshot_shell(app):
    shell = getattr(app, "shell", None)
    kernel = getattr(app, "kernel", None)
    if shell is None:
        return
    _shell_snap.update(
        shell=shell, kernel=kernel,
        shell_cls={m: getattr(type(shell), m, None) for m in SHELL_METHODS},
        kernel_cls={m: getattr(type(kernel), m, None) for m in KERNEL_METHODS},
        shell_inst={m: vars(shell)[m] for m in SHELL_METHODS if m in vars(shell)},
        kernel_inst={m: vars(kernel)[m] for m in KERNEL_METHODS if m in vars(kernel)},
        handlers=dict(getattr(kernel, "shell_handlers", {}) or {}),
        cleanup=list(shell.input_transformers_cleanup),
        post=list(shell.input_transformers_post),
        ast=list(shell.ast_transformers),
        events={k: list(v) for k, v in shell.events.callbacks.items()},
        custom_exc=shell.custom_exceptions,
        displayhook=sys.displayhook, excepthook=sys.excepthook,
    )


def _defined_in(obj) -> str:
    for candidate in (obj, getattr(obj, "__func__", None), type(obj)):
        code = getattr(candidate, "__code__", None)
        if code is not None:
            return code.co_filename
        module = sys.modules.get(getattr(candidate, "__module__", None) or "")
        if module is not None and getattr(module, "__file__", None):
            return module.__file__
    return ""


def _foreign(now, before) -> list:
    """Entries added since the snapshot that were not defined by trusted (installed) code."""
    return [o for o in now if not any(o is b or o == b for b in before)
            and not _trusted_file(_defined_in(o))]


def status() -> str:
    """'ok', or what was tampered with (evaluated by the grader after every cell)."""
    problems = list(_problems)
    if len(sys.modules) != _seen_modules:
        _snapshot_new_modules()
    if builtins.__import__ is not guarded_import:
        problems.append("builtins.__import__ replaced")
    if not sys.meta_path or sys.meta_path[0] is not _finder:
        problems.append("sys.meta_path changed")
    if sys.gettrace() is not None or sys.getprofile() is not None:
        problems.append("trace/profile hook installed")
    for name, (module, attrs) in _snap.items():
        if sys.modules.get(name) is not module:
            problems.append(f"sys.modules[{name!r}] replaced")
            continue
        d = vars(module)
        for attr, (obj, code) in attrs.items():
            cur = d.get(attr, _MISSING)
            if cur is _MISSING:
                problems.append(f"{name}.{attr} deleted")
            elif cur is not obj:
                problems.append(f"{name}.{attr} replaced")
            elif code is not None and getattr(cur, "__code__", None) is not code:
                problems.append(f"{name}.{attr}.__code__ replaced")
    for qual, (cls, attrs) in _classes.items():
        d = vars(cls)
        for attr, obj in attrs.items():
            if d.get(attr, _MISSING) is not obj:
                problems.append(f"{qual}.{attr} replaced")
    s = _shell_snap
    if s:
        shell, kernel = s["shell"], s["kernel"]
        for m, orig in s["shell_cls"].items():
            if getattr(type(shell), m, None) is not orig \
                    or vars(shell).get(m, _MISSING) is not s["shell_inst"].get(m, _MISSING):
                problems.append(f"IPython shell.{m} replaced")
        for m, orig in s["kernel_cls"].items():
            if getattr(type(kernel), m, None) is not orig \
                    or vars(kernel).get(m, _MISSING) is not s["kernel_inst"].get(m, _MISSING):
                problems.append(f"kernel.{m} replaced")
        if getattr(kernel, "shell_handlers", None) != s["handlers"]:
            problems.append("kernel message handlers changed")
        for label, now, before in (("input transformer", shell.input_transformers_cleanup, s["cleanup"]),
                                   ("input transformer", shell.input_transformers_post, s["post"]),
                                   ("AST transformer", shell.ast_transformers, s["ast"])):
            if _foreign(now, before):
                problems.append(f"IPython {label} installed")
        for event, callbacks in shell.events.callbacks.items():
            if _foreign(callbacks, s["events"].get(event, [])):
                problems.append(f"IPython {event!r} event callback registered")
        if shell.custom_exceptions != s["custom_exc"]:
            problems.append("IPython custom exception handler installed")
        ns = shell.user_ns
        for name, target in _cfg.get("protected_names", {}).items():
            if name not in ns:
                continue
            modname, _, attr = target.partition(":")
            module = sys.modules.get(modname)
            if module is None:
                continue
            expected = getattr(module, attr, _MISSING) if attr else module
            if expected is _MISSING:
                continue
            if ns[name] is not expected:
                problems.append(f"name {name!r} (imported by the assignment) was rebound")
    if not problems:
        return "ok"
    return "; ".join(sorted(set(problems))[:20])


_MISSING = object()


# --- output cap (cooperative; the grader enforces its own cap on what it receives) --------------

TRUNCATED = "[autograder: output truncated"


def _limit_output(app, limit: int):
    """Stop forwarding stdout/stderr after *limit* characters per notebook, with a notice.

    After the cap a cell that writes to stderr still gets one (short) stderr line, so nbgrader's
    "a test cell that writes to stderr scores 0" rule is unchanged by the truncation.
    """
    state = {"used": 0, "noticed": set()}
    shell = getattr(app, "shell", None)

    def wrap(stream, name):
        original = stream.write

        def write(text):
            if not isinstance(text, str):
                return original(text)
            room = limit - state["used"]
            if room > 0:
                piece = text[:room]
                state["used"] += len(piece)
                original(piece)
                if len(piece) == len(text):
                    return len(text)
            key = (name, getattr(shell, "execution_count", None))
            if key not in state["noticed"]:
                state["noticed"].add(key)
                original(f"\n{TRUNCATED}: more than {limit // 1024} KiB of output]\n")
            return len(text)

        stream.write = write

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        if stream is not None and type(stream).__module__.startswith("ipykernel"):
            wrap(stream, name)


# --- set up and start the kernel -----------------------------------------------------------------

def install(cfg: dict):
    """Install the import guard and take the first snapshots (``cfg``: see the module docstring)."""
    global _cfg, _trusted_roots, _transparent_functions, _policy, _watch, _finder
    _cfg = cfg
    roots = set()
    for p in cfg.get("trusted_roots", []) + [sys.prefix, sys.base_prefix, sys.exec_prefix]:
        if p:
            roots.add(p.rstrip("/") + "/")
            roots.add(os.path.realpath(p).rstrip("/") + "/")
    _trusted_roots = tuple(sorted(roots))
    _transparent_functions = frozenset((file, name) for file, name in cfg.get("transparent_functions", []))
    _policy = ImportPolicy(forbid=list(cfg.get("forbid", [])), allow=list(cfg.get("allow", [])),
                           lazy=dict(cfg.get("lazy", {})))
    _watch = list(cfg.get("watch", []))
    sys.dont_write_bytecode = True
    _finder = TrustedFinder()
    sys.meta_path.insert(0, _finder)
    builtins.__import__ = guarded_import
    for name in cfg.get("preload", []):
        try:
            importlib.import_module(name)
        except ImportError:  # not installed: nothing of it to snapshot
            pass
    _snapshot_new_modules()


def run(argv=None):
    """Read the guard's settings from ``MF_GUARD``, install the guard, then start the IPython kernel."""
    cfg = json.loads(os.environ.pop("MF_GUARD", "{}") or "{}")
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", cwd)]  # added back by IPython
    install(cfg)
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(sys.argv[1:] if argv is None else argv)
    if cfg.get("output_limit"):
        _limit_output(app, int(cfg["output_limit"]))
    _snapshot_shell(app)
    _snapshot_new_modules()
    app.start()


if __name__ == "__main__":
    from autograder.grading import kernel_guard as _guard  # state must live in the importable module

    _guard.run()
