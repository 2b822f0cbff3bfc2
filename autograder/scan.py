"""Static checks of a submission, done by the grading parent before anything is executed.

* :func:`load_notebook` -- is it a notebook at all (empty / not UTF-8 / not JSON / wrong schema)?
* :func:`sanitize` -- put the instructor's cells back: nbgrader metadata of known cells is reset to
  the released one, deleted test/read-only cells are re-inserted (nbgrader then restores their
  source, including hidden tests, from the gradebook), unknown or duplicated nbgrader ids are
  dropped.  A student can therefore not delete, edit, duplicate or re-label a test cell.
* :func:`scan` -- forbidden imports and tampering in the student's code cells (every code cell that
  is not an instructor cell: solution cells and cells the student added).

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
import copy
import json
import re
import warnings
from dataclasses import dataclass, field

import nbformat

# --- defaults ------------------------------------------------------------------------------------

DEFAULT_FORBIDDEN = ["implicit", "lightfm", "surprise", "torch", "mflib.models"]
# mflib's lazily imported reference models: ``from mflib import ALS`` imports mflib.models.als
DEFAULT_LAZY = {
    "mflib.ALS": "mflib.models.als",
    "mflib.BPR": "mflib.models.bpr",
    "mflib.WARP": "mflib.models.warp",
    "mflib.SVD": "mflib.models.svd",
    "mflib.FactorizationMachine": "mflib.models.fm",
    "mflib.Popularity": "mflib.models.popularity",
}
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

MAX_BYTES = 50 * 1024 * 1024


class NotebookError(Exception):
    """The file is not a usable notebook; ``str(e)`` is the human-readable reason."""


def load_notebook(data: bytes, max_bytes: int = MAX_BYTES) -> nbformat.NotebookNode:
    if len(data) == 0:
        raise NotebookError("empty file")
    if len(data) > max_bytes:
        raise NotebookError(f"file is {len(data) / 2**20:.0f} MB, the limit is {max_bytes / 2**20:.0f} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NotebookError(f"not a text file (not UTF-8: {e.reason} at byte {e.start})") from None
    if not text.strip():
        raise NotebookError("empty file (only whitespace)")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotebookError(f"not JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                            "was the notebook saved correctly?") from None
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw \
            or "nbformat" not in raw:
        keys = ", ".join(sorted(raw)[:5]) if isinstance(raw, dict) else type(raw).__name__
        raise NotebookError(f"valid JSON but not a Jupyter notebook (no 'cells'/'nbformat'; found: {keys})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. MissingIDFieldWarning for older notebooks
            nb = nbformat.reads(text, as_version=4)
            nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - nbformat raises several kinds
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NotebookError(f"not a valid Jupyter notebook: {msg[:300]}") from None
    return nb


# --- instructor cells ----------------------------------------------------------------------------

def nbg(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell):
    return nbg(cell).get("grade_id")


def is_test_cell(meta: dict) -> bool:
    return bool(meta.get("grade")) and not meta.get("solution")


def is_instructor_cell(meta: dict) -> bool:
    """Cells whose content nbgrader restores from the source (tests, read-only cells)."""
    return bool(meta.get("locked")) or is_test_cell(meta)


@dataclass
class Reference:
    """What the grader knows about the assignment notebook (from the released + source versions)."""

    name: str
    release: nbformat.NotebookNode
    source: nbformat.NotebookNode
    grade_cells: list = field(default_factory=list)      # [(grade_id, points)] in notebook order
    ids: set = field(default_factory=set)
    instructor_sources: set = field(default_factory=set)  # code the student received as is

    @classmethod
    def from_notebooks(cls, name, release, source):
        ref = cls(name=name, release=release, source=source)
        for cell in source.cells:
            meta = nbg(cell)
            gid = meta.get("grade_id")
            if gid:
                ref.ids.add(gid)
                if meta.get("grade"):
                    ref.grade_cells.append((gid, float(meta.get("points", 0) or 0)))
        for cell in release.cells:
            meta = nbg(cell)
            if cell.cell_type == "code" and not meta.get("solution"):
                ref.instructor_sources.add(_norm(cell.source))
        return ref

    def instructor_code(self) -> list[str]:
        """Source of the instructor's code cells, hidden tests included (never sent to students)."""
        return [c.source for c in self.source.cells
                if c.cell_type == "code" and not nbg(c).get("solution")]


def _norm(src: str) -> str:
    return "\n".join(line.rstrip() for line in src.strip().splitlines())


def matching_ids(nb, ref: Reference) -> int:
    return len({grade_id(c) for c in nb.cells if grade_id(c)} & ref.ids)


def sanitize(nb, ref: Reference) -> tuple[nbformat.NotebookNode, list[str]]:
    """Make the instructor's cells of *nb* exactly the released ones (see module docstring)."""
    nb = copy.deepcopy(nb)
    notes = []
    release_cells = {grade_id(c): c for c in ref.release.cells if grade_id(c)}
    # last occurrence of each known id wins (like nbgrader's DeduplicateIds)
    last = {}
    for i, cell in enumerate(nb.cells):
        gid = grade_id(cell)
        if gid:
            last[gid] = i
    for i, cell in enumerate(nb.cells):
        meta = nbg(cell)
        gid = meta.get("grade_id")
        if not meta:
            continue
        if gid not in release_cells or last.get(gid) != i:
            cell.metadata.pop("nbgrader", None)
            if gid in release_cells:
                notes.append(f"duplicate of cell {gid!r} ignored")
            continue
        rel = release_cells[gid]
        rel_meta = nbg(rel)
        if _essential(meta) != _essential(rel_meta):
            if is_instructor_cell(rel_meta) or is_instructor_cell(meta):
                notes.append(f"metadata of cell {gid!r} was modified (restored)")
            cell.metadata["nbgrader"] = copy.deepcopy(rel_meta)
        if is_instructor_cell(rel_meta):
            if cell.cell_type != rel.cell_type or _norm(cell.source) != _norm(rel.source):
                notes.append(f"instructor cell {gid!r} was edited (restored)")
            _replace_cell(nb, i, rel)
    # re-insert deleted instructor cells after their predecessor
    present = {grade_id(c) for c in nb.cells if grade_id(c)}
    order = [grade_id(c) for c in ref.release.cells if grade_id(c)]
    for k, gid in enumerate(order):
        if gid in present:
            continue
        rel = release_cells[gid]
        if not is_instructor_cell(nbg(rel)):
            continue  # a deleted solution cell stays deleted: nbgrader scores it as missing
        pos = 0
        for prev in reversed(order[:k]):
            idx = next((j for j, c in enumerate(nb.cells) if grade_id(c) == prev), None)
            if idx is not None:
                pos = idx + 1
                break
        nb.cells.insert(pos, _fresh_copy(rel))
        present.add(gid)
        notes.append(f"deleted instructor cell {gid!r} restored")
    return ensure_cell_ids(nb), notes


def _essential(meta: dict) -> dict:
    keys = ("grade", "grade_id", "locked", "solution", "task", "points")
    return {k: (float(meta[k]) if k == "points" else bool(meta[k]) if k != "grade_id" else meta[k])
            for k in keys if k in meta and meta[k] not in (None, False)}


def _fresh_copy(cell):
    new = copy.deepcopy(cell)
    if new.cell_type == "code":
        new.outputs = []
        new.execution_count = None
    new.pop("id", None)
    return new


def ensure_cell_ids(nb):
    """nbformat >= 4.5 wants a unique id on every cell (restored cells have none)."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        return nb
    from nbformat.corpus.words import generate_corpus_id
    seen = set()
    for cell in nb.cells:
        if not cell.get("id") or cell["id"] in seen:
            cell["id"] = generate_corpus_id()
        seen.add(cell["id"])
    return nb


def _replace_cell(nb, i, rel):
    new = _fresh_copy(rel)
    if "id" in nb.cells[i]:
        new["id"] = nb.cells[i]["id"]
    nb.cells[i] = new


def student_cells(nb, ref: Reference):
    """(index, cell) of the code cells whose content comes from the student."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = nbg(cell)
        if is_instructor_cell(meta):
            continue
        if not meta.get("solution") and _norm(cell.source) in ref.instructor_sources:
            continue
        yield i, cell


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
    try:
        return ast.parse(to_python(src))
    except (SyntaxError, ValueError):
        return None


def _match(name, entries):
    best = None
    for e in entries:
        if name == e or name.startswith(e + "."):
            if best is None or len(e) > len(best):
                best = e
    return best


@dataclass
class Policy:
    forbid: list = field(default_factory=lambda: list(DEFAULT_FORBIDDEN))
    allow: list = field(default_factory=list)
    lazy: dict = field(default_factory=lambda: dict(DEFAULT_LAZY))

    def forbidden(self, name: str) -> bool:
        name = self.lazy.get(name, name)
        f = _match(name, self.forbid)
        if f is None:
            return False
        a = _match(name, self.allow)
        return a is None or len(a) < len(f)


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
    kind: str        # "forbidden_import" | "tampering"
    cell: int        # index in the (sanitized) notebook
    label: str       # grade id or "cell N"
    what: str

    def text(self):
        return f"{self.label}: {self.what}"


class _Scanner(ast.NodeVisitor):
    def __init__(self, policy: Policy, protected_names: dict, aliases: dict):
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
            if "mflib/models/" in v and self.policy.forbidden("mflib.models"):
                self.flag("forbidden_import", "reads the reference models' source (mflib/models/)")
            elif "." in v and " " not in v and self.policy.forbidden(v):
                self.flag("forbidden_import", f"refers to {v}")

    def visit_Name(self, node):
        if node.id == "__builtins__" and not isinstance(node.ctx, ast.Load):
            self.flag("tampering", "assigns __builtins__")


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
    _, names = imported_modules(ref.instructor_code())
    mine = solution_names(ref)
    return {k: v for k, v in names.items() if k not in mine}


def scan(nb, ref: Reference, policy: Policy) -> list[Finding]:
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


def runtime_policy(ref: Reference, policy: Policy) -> dict:
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
