"""Normalised tokens of notebook code cells, for :mod:`autograder.grading.similarity` (see its docstring
for the rules): :func:`normalise` maps a cell's source to tokens in which names, literals, comments
and layout no longer matter, :func:`student_cells` picks the cells a student wrote, and
:func:`doc_from_notebook` reads a submission.
"""
from __future__ import annotations

import builtins
import io
import json
import keyword
import re
import tokenize
from dataclasses import dataclass, field

__all__ = ["KEPT_MODULES", "API_NAMES", "Cell", "Doc", "normalise", "student_cells", "code_cells",
           "doc_from_notebook"]

KEPT_MODULES = frozenset({"np", "numpy", "sp", "scipy", "sparse", "math", "pd", "pandas", "random", "itertools",
                          "functools", "collections", "mflib", "autograder"})
_BUILTINS = frozenset(dir(builtins))
_KEYWORDS = frozenset(keyword.kwlist)
_MAGIC = re.compile(r"^\s*[%!]")
_REGEX_TOKEN = re.compile(r"""(?P<name>[^\W\d]\w*)|(?P<num>\d[\w.]*)|(?P<str>[rbuf]*("[^"\n]*"|'[^'\n]*'))"""
                          r"""|(?P<comment>\#[^\n]*)|(?P<op>\*\*=?|//=?|->|[-+*/%@&|^<>!=]=|<<|>>|:=|\S)""", re.I)


def _api_names() -> frozenset:
    import math

    import numpy as np
    import scipy.linalg
    import scipy.sparse

    names = set()
    for obj in (np, np.linalg, np.random, np.random.Generator, np.ndarray, scipy.sparse, scipy.sparse.csr_matrix,
                scipy.sparse.coo_matrix, scipy.linalg, math, list, dict, set, str):
        names.update(n for n in dir(obj) if not n.startswith("_"))
    return frozenset(names)


API_NAMES = _api_names()


@dataclass
class Cell:
    """One code cell of a submission: its label (the nbgrader grade id, or "added cell N") and source."""

    label: str
    source: str


@dataclass
class Doc:
    """One submission: its student cells and what went wrong reading it."""

    name: str
    cells: list = field(default_factory=list)
    notes: list = field(default_factory=list)


# --- normalisation --------------------------------------------------------------------------------

def _raw_tokens(source: str) -> tuple[list[tuple[int, str, int]], bool]:
    """[(kind, text, line)] with kind in {NAME, NUMBER, STRING, OP, NEWLINE, INDENT, DEDENT}; and
    whether the regex fallback was used."""
    lines = source.splitlines(keepends=True)
    source = "".join("\n" if _MAGIC.match(line) else line for line in lines)
    wanted = {tokenize.NAME, tokenize.NUMBER, tokenize.STRING, tokenize.OP, tokenize.NEWLINE, tokenize.INDENT,
              tokenize.DEDENT, tokenize.ERRORTOKEN}
    try:
        out = [(t.type, t.string, t.start[0]) for t in tokenize.generate_tokens(io.StringIO(source).readline)
               if t.type in wanted and not (t.type == tokenize.ERRORTOKEN and t.string.isspace())]
        return out, False
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    out = []
    for lineno, line in enumerate(source.splitlines(), 1):
        for m in _REGEX_TOKEN.finditer(line):
            kind = m.lastgroup
            if kind == "comment":
                continue
            out.append(({"name": tokenize.NAME, "num": tokenize.NUMBER, "str": tokenize.STRING}.get(kind, tokenize.OP),
                        m.group(), lineno))
        if out and out[-1][0] != tokenize.NEWLINE:
            out.append((tokenize.NEWLINE, "\n", lineno))
    return out, True


def normalise(source: str) -> tuple[list[str], list[int], bool]:
    """The normalised tokens of a cell, the line (1-based) of each, and whether the regex fallback was used."""
    raw, fallback = _raw_tokens(source)
    tokens, lines, depth = [], [], 0
    for i, (kind, text, line) in enumerate(raw):
        if kind == tokenize.NAME:
            prev = raw[i - 1][1] if i else ""
            nxt = raw[i + 1][1] if i + 1 < len(raw) else ""
            if text in _KEYWORDS or text in _BUILTINS or text in KEPT_MODULES:
                tok = text
            elif text in API_NAMES and (prev == "." or (nxt == "=" and depth > 0)):
                tok = text
            else:
                tok = "V"
        elif kind == tokenize.NUMBER:
            tok = "N"
        elif kind == tokenize.STRING:
            tok = "S"
        elif kind == tokenize.NEWLINE or (kind == tokenize.OP and text == ";"):
            if tokens and tokens[-1] == ";":
                continue
            tok = ";"
        elif kind == tokenize.INDENT:
            tok = "{"
        elif kind == tokenize.DEDENT:
            tok = "}"
        else:
            if text in "([{":
                depth += 1
            elif text in ")]}":
                depth = max(0, depth - 1)
            tok = text
        tokens.append(tok)
        lines.append(line)
    return tokens, lines, fallback


# --- notebooks -------------------------------------------------------------------------------------

def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def student_cells(nb: dict) -> list[Cell]:
    """The code cells a student wrote: nbgrader ``solution`` cells and cells without nbgrader metadata."""
    cells, added = [], 0
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        nbg = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
        nbg = nbg if isinstance(nbg, dict) else {}
        if nbg.get("grade_id") and not nbg.get("solution"):
            continue  # an instructor cell (test, read-only): not the student's code
        if nbg.get("grade_id"):
            label = str(nbg["grade_id"])
        else:
            added += 1
            label = f"added cell {added}"
        cells.append(Cell(label, _source(cell)))
    return cells


def code_cells(nb: dict) -> list[str]:
    """Every code cell's source (for the base code of a released notebook)."""
    return [_source(c) for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]


def doc_from_notebook(name: str, data: bytes) -> Doc:
    """A :class:`Doc` from a notebook file's bytes (an unreadable file gives no cells and a note)."""
    doc = Doc(name)
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        doc.notes.append(f"not a readable notebook ({type(e).__name__}): skipped")
        return doc
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        doc.notes.append("not an nbformat 4 notebook: skipped")
        return doc
    doc.cells = student_cells(nb)
    return doc
