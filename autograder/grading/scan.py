"""Static checks of a submission, done by the grading parent before anything is executed.

:func:`scan` finds forbidden imports and tampering in the student's code cells of a sanitized
notebook (:func:`autograder.grading.notebook.sanitize`): every code cell that is not an instructor
cell, i.e. solution cells and cells the student added.  Which imports are forbidden is an
:class:`~autograder.grading.policy.ImportPolicy` (:func:`default_policy`: other recommender
libraries and mflib's reference models, read from :mod:`mflib.models.registry`).

Tampering rules (each finding names the cell):

1. assigning/deleting an attribute or item of a protected module -- ``numpy``/``np``, ``scipy``,
   ``pandas`` (``pd.options`` allowed), ``math``, ``builtins``, ``autograder``, ``mflib``,
   ``unittest``, ``pytest``, ``IPython``, ``ipykernel``, ``importlib`` -- or of a name the
   instructor's cells import (``check_als.__code__ = ...``), also via ``setattr``/``delattr``,
   ``vars(m)``/``m.__dict__`` or ``__import__('numpy')``;
2. rebinding a name the instructor's cells import (``np = ...``, ``def check_als(...)``,
   ``import fake as np``);
3. ``__builtins__``, ``globals()[...] =``/``globals().update``, ``sys.modules``/``sys.meta_path``/
   ``sys.path_hooks`` mutation, ``sys.settrace``/``sys.setprofile``/``threading.settrace``,
   ``sys.displayhook``/``sys.excepthook``;
4. IPython internals that run cells or report errors: ``get_ipython().events``,
   ``.input_transformers_*``, ``.ast_transformers``, ``.set_custom_exc``, ``.run_cell``,
   ``.showtraceback``, ``.kernel``, ... and the ``%load_ext``/``%reload_ext`` magics;
5. importing ``ctypes``.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from .notebook import Reference, grade_id, nbg, student_cells
from .policy import ImportPolicy

# --- defaults ------------------------------------------------------------------------------------

OTHER_LIBRARIES = ["implicit", "lightfm", "surprise", "torch"]  # recommenders students must not call
PROTECTED_MODULES = ("numpy", "scipy", "pandas", "math", "cmath", "builtins", "autograder", "mflib",
                     "unittest", "pytest", "IPython", "ipykernel", "importlib", "operator")
ALLOWED_STORES = ("pandas.options", "pandas.io.formats", "numpy.random.seed")
SYS_SENSITIVE = ("modules", "meta_path", "path_hooks", "path_importer_cache", "settrace",
                 "setprofile", "displayhook", "excepthook", "addaudithook", "__import__")
SHELL_SENSITIVE = ("events", "input_transformers_cleanup", "input_transformers_post",
                   "input_transformer_manager", "ast_transformers", "set_custom_exc",
                   "custom_exceptions", "CustomTB", "run_cell", "run_cell_async", "run_ast_nodes",
                   "run_code", "transform_cell", "showtraceback", "_showtraceback", "showsyntaxerror",
                   "kernel", "displayhook", "display_pub", "user_ns_hidden", "compile",
                   "user_expressions", "_format_user_obj", "ex", "ev", "builtin_trap")
MUTATORS = ("update", "pop", "setdefault", "clear", "popitem", "__setitem__", "__delitem__",
            "insert", "append", "extend", "remove")


# --- parsing --------------------------------------------------------------------------------------

_transformer = None


def to_python(src: str) -> str:
    """IPython cell syntax (magics, ``!cmd``, ``x?``) -> plain Python."""
    global _transformer
    if _transformer is None:
        from IPython.core.inputtransformer2 import TransformerManager
        _transformer = TransformerManager()
    try:
        return _transformer.transform_cell(src)
    except Exception:  # noqa: BLE001
        return src


def parse_cell(src: str):
    """The AST of a cell (IPython syntax allowed), or None if it does not parse."""
    try:
        return ast.parse(to_python(src))
    except (SyntaxError, ValueError):
        return None


def default_policy() -> ImportPolicy:
    """Other recommender libraries and mflib's reference-solution modules are forbidden, with the lazy
    attributes that import them (``mflib.ALS``); both lists come from :mod:`mflib.models.registry`.
    The modules students get (``mflib.models.base``, the popularity baseline) stay importable."""
    from mflib.models import registry

    return ImportPolicy(forbid=OTHER_LIBRARIES + list(registry.reference_modules()),
                        allow=[], lazy=registry.lazy_attributes())


def imported_modules(sources) -> tuple[set, dict]:
    """Modules imported by *sources*, and the names they bind ({name: 'module' or 'module:attr'})."""
    mods, names = set(), {}
    for src in sources:
        tree = parse_cell(src)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    mods.add(a.name)
                    if a.asname:
                        names[a.asname] = a.name
                    else:
                        names[a.name.split(".")[0]] = a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods.add(node.module)
                for a in node.names:
                    if a.name == "*":
                        continue
                    mods.add(f"{node.module}.{a.name}")
                    names[a.asname or a.name] = f"{node.module}:{a.name}"
    return mods, names


# --- the scan -------------------------------------------------------------------------------------

@dataclass
class Finding:
    """One problem the scan found in one cell."""

    kind: str        # "forbidden_import" | "tampering"
    cell: int        # index in the (sanitized) notebook
    label: str       # grade id or "cell N"
    what: str

    def text(self):
        """'<label>: <what>', as the reason shows it."""
        return f"{self.label}: {self.what}"


class _Scanner(ast.NodeVisitor):
    def __init__(self, policy: ImportPolicy, protected_names: dict, aliases: dict):
        self.policy = policy
        self.protected_names = protected_names  # instructor-bound names
        self.aliases = aliases                  # name -> dotted module path (grows while scanning)
        self.shell_names = set()
        self.found: list[tuple[str, str]] = []

    # helpers
    def dotted(self, node):
        """Resolve ``np.testing.x`` -> 'numpy.testing.x' when the root is an imported module (or
        ``__import__('m')``, ``vars(m)``, ``__builtins__``); None for anything else."""
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                base = self.aliases[node.id]
            elif node.id in self.protected_names:
                base = self.protected_names[node.id].replace(":", ".")
            elif node.id == "__builtins__":
                base = "builtins"
            elif node.id in ("sys", "builtins", "importlib", "threading"):
                base = node.id  # commonly used without an explicit import in the same cell
            else:
                return None
        elif isinstance(node, ast.Call) and _call_name(node) in ("__import__", "importlib.import_module",
                                                                   "import_module") \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            base = node.args[0].value
        elif isinstance(node, ast.Call) and _call_name(node) == "vars" and node.args:
            base = self.dotted(node.args[0])
            if base is None:
                return None
        else:
            return None
        return ".".join([base] + parts[::-1])

    def protected(self, dotted: str | None) -> bool:
        if not dotted:
            return False
        if any(dotted == a or dotted.startswith(a + ".") for a in ALLOWED_STORES):
            return False
        parts = dotted.split(".")
        if parts[0] == "sys":
            return len(parts) > 1 and parts[1] in SYS_SENSITIVE
        roots = {v.split(":")[0].split(".")[0] for v in self.protected_names.values()}
        return parts[0] in PROTECTED_MODULES or parts[0] in roots

    def flag(self, kind, what):
        self.found.append((kind, what))

    def check_import(self, name):
        if self.policy.forbidden(name):
            self.flag("forbidden_import", f"imports {name}")

    # imports
    def visit_Import(self, node):
        for a in node.names:
            self.check_import(a.name)
            if a.name.split(".")[0] == "ctypes":
                self.flag("tampering", "imports ctypes")
            bound = a.asname or a.name.split(".")[0]
            target = a.name if a.asname else a.name.split(".")[0]
            self.check_rebind(bound, target)
            self.aliases[bound] = target

    def visit_ImportFrom(self, node):
        if node.level or not node.module:
            return
        self.check_import(node.module)
        if node.module.split(".")[0] == "ctypes":
            self.flag("tampering", "imports ctypes")
        for a in node.names:
            if a.name == "*":
                hits = [k for k in self.policy.lazy if k.startswith(node.module + ".")
                        and self.policy.forbidden(k)]
                if hits:
                    self.flag("forbidden_import", f"from {node.module} import * (includes {hits[0]})")
                continue
            full = f"{node.module}.{a.name}"
            self.check_import(full)
            bound = a.asname or a.name
            self.check_rebind(bound, f"{node.module}:{a.name}")
            self.aliases[bound] = full

    def check_rebind(self, name, new_target=None):
        if name in self.protected_names:
            old = self.protected_names[name]
            if new_target is not None and new_target.replace(":", ".") == old.replace(":", "."):
                return
            self.flag("tampering", f"rebinds {name!r}, which the assignment imports ({old.replace(':', '.')})")

    # stores
    def store_target(self, t):
        if isinstance(t, ast.Name):
            if t.id == "__builtins__":
                self.flag("tampering", "assigns __builtins__")
            else:
                self.check_rebind(t.id)
            if t.id in self.aliases:
                del self.aliases[t.id]
        elif isinstance(t, (ast.Attribute, ast.Subscript)):
            base = t.value if isinstance(t, ast.Subscript) else t
            if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Call) \
                    and _call_name(t.value) in ("globals", "locals", "vars") and not t.value.args:
                self.flag("tampering", f"writes {_call_name(t.value)}()[...]")
                return
            d = self.dotted(base)
            if self.protected(d):
                self.flag("tampering", f"modifies {d}")
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self.store_target(e)
        elif isinstance(t, ast.Starred):
            self.store_target(t.value)

    def visit_Assign(self, node):
        for t in node.targets:
            self.store_target(t)
        self.visit(node.value)
        if isinstance(node.value, ast.Call) and _call_name(node.value) == "get_ipython":
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.shell_names.add(t.id)

    def visit_AugAssign(self, node):
        self.store_target(node.target)
        self.visit(node.value)

    def visit_AnnAssign(self, node):
        self.store_target(node.target)
        if node.value:
            self.visit(node.value)

    def visit_Delete(self, node):
        for t in node.targets:
            self.store_target(t)

    def visit_For(self, node):
        self.store_target(node.target)
        self.generic_visit(node)

    def visit_withitem(self, node):
        if node.optional_vars is not None:
            self.store_target(node.optional_vars)
        self.visit(node.context_expr)

    def visit_NamedExpr(self, node):
        self.store_target(node.target)
        self.visit(node.value)

    def visit_FunctionDef(self, node):
        self.check_rebind(node.name)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.check_rebind(node.name)
        self.generic_visit(node)

    # calls and attribute access
    def visit_Call(self, node):
        name = _call_name(node)
        if name in ("__import__", "importlib.import_module", "import_module") and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self.check_import(node.args[0].value)
        if name in ("setattr", "delattr") and node.args:
            d = self.dotted(node.args[0])
            if self.protected(d):
                self.flag("tampering", f"{name}() on {d}")
        if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str):
            d = self.dotted(node.args[0])
            if d:
                self.check_import(f"{d}.{node.args[1].value}")
        if isinstance(node.func, ast.Attribute):
            owner = node.func.value
            d = self.dotted(owner)
            method = node.func.attr
            if d and method in MUTATORS:
                if d in ("sys.modules", "sys.meta_path", "sys.path_hooks", "sys.path_importer_cache") \
                        or d.endswith(".__dict__") and self.protected(d[:-9]):
                    self.flag("tampering", f"{d}.{method}()")
            if isinstance(owner, ast.Call) and _call_name(owner) in ("globals", "locals", "vars") \
                    and not owner.args and method in MUTATORS:
                self.flag("tampering", f"{_call_name(owner)}().{method}()")
            if isinstance(owner, ast.Call) and _call_name(owner) == "vars" and owner.args and method in MUTATORS:
                dd = self.dotted(owner.args[0])
                if dd and self.protected(dd):
                    self.flag("tampering", f"vars({dd}).{method}()")
        if name in ("sys.settrace", "sys.setprofile", "threading.settrace", "threading.setprofile",
                    "sys.addaudithook"):
            self.flag("tampering", f"calls {name}()")
        if name and name.endswith(("run_line_magic", "run_cell_magic", "magic")) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and node.args[0].value.split()[0:1] and node.args[0].value.split()[0].lstrip("%") in (
                    "load_ext", "reload_ext"):
            self.flag("tampering", f"%{node.args[0].value.split()[0].lstrip('%')}")
        self.generic_visit(node)

    def visit_Attribute(self, node):
        v = node.value
        is_shell = (isinstance(v, ast.Call) and _call_name(v) == "get_ipython") or \
                   (isinstance(v, ast.Name) and v.id in self.shell_names)
        if is_shell and node.attr in SHELL_SENSITIVE:
            self.flag("tampering", f"get_ipython().{node.attr}")
        d = self.dotted(node)
        if d and self.policy.forbidden(d) and d.split(".")[0] in ("mflib",) + tuple(
                f.split(".")[0] for f in self.policy.forbid):
            self.flag("forbidden_import", f"uses {d}")
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            self.visit(root)  # not the inner attributes again
            return
        self.generic_visit(node)

    def visit_Constant(self, node):
        v = node.value
        if isinstance(v, str) and len(v) < 300:
            folder = next((f for f in _source_folders(self.policy) if f in v), None)
            if folder is not None:
                self.flag("forbidden_import", f"reads the reference models' source ({folder})")
            elif "." in v and " " not in v and self.policy.forbidden(v):
                self.flag("forbidden_import", f"refers to {v}")

    def visit_Name(self, node):
        if node.id == "__builtins__" and not isinstance(node.ctx, ast.Load):
            self.flag("tampering", "assigns __builtins__")


def _source_folders(policy: ImportPolicy) -> set:
    """Folders (``mflib/models/``) holding a forbidden mflib module: a string naming one is an attempt
    to read the reference solutions' source."""
    return {f.rpartition(".")[0].replace(".", "/") + "/" for f in policy.forbid
            if f.startswith("mflib.") and "." in f[len("mflib."):]}


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
        return ".".join(parts[::-1])
    if isinstance(f, ast.Call) and _call_name(f) == "get_ipython":
        return ".".join(["get_ipython()"] + parts[::-1])
    return None


def solution_names(ref: Reference) -> set:
    """Names the reference solution cells define: the student's to (re)define, never "protected"."""
    names = set()
    for cell in ref.source.cells:
        if cell.cell_type != "code" or not nbg(cell).get("solution"):
            continue
        tree = parse_cell(cell.source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    names.add((a.asname or a.name).split(".")[0])
    return names


def protected_names(ref: Reference) -> dict:
    """``{name: 'module' or 'module:attr'}`` the instructor's cells import and the solution does not
    define: a student's cell may not rebind them."""
    _, names = imported_modules(ref.instructor_code())
    mine = solution_names(ref)
    return {k: v for k, v in names.items() if k not in mine}


def scan(nb, ref: Reference, policy: ImportPolicy) -> list[Finding]:
    """Forbidden imports and tampering in the student's cells of the sanitized notebook *nb*."""
    protected = protected_names(ref)
    # aliases known from the instructor's visible cells (e.g. ``import numpy as np`` in a setup cell)
    aliases = {k: v.replace(":", ".") for k, v in protected.items()}
    findings = []
    for i, cell in student_cells(nb, ref):
        tree = parse_cell(cell.source)
        if tree is None:
            continue
        s = _Scanner(policy, protected, dict(aliases))
        s.visit(tree)
        label = grade_id(cell) or f"cell {i + 1}"
        seen = set()
        for kind, what in s.found:
            if (kind, what) not in seen:
                seen.add((kind, what))
                findings.append(Finding(kind, i, label, what))
    return findings


def runtime_policy(ref: Reference, policy: ImportPolicy) -> dict:
    """Settings for :mod:`autograder.kernel_guard`.

    The kernel cannot tell a hidden test cell from a student's cell, so modules the instructor's
    cells import themselves (e.g. a hidden test comparing with ``mflib.models.als``) are exempted
    at run time -- the static scan still refuses them in the student's cells."""
    code = ref.instructor_code()
    used, _ = imported_modules(code)
    for src in code:  # lazy attributes such as ``mflib.ALS(...)`` import mflib.models.als too
        used |= {name for name in policy.lazy if re.search(r"\b" + re.escape(name) + r"\b", src)}
    exempt = sorted({policy.lazy.get(u, u) for u in used if policy.forbidden(u)})
    return {"forbid": list(policy.forbid), "allow": list(policy.allow) + exempt, "lazy": dict(policy.lazy),
            "protected_names": protected_names(ref)}
