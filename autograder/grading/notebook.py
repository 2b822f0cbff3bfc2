"""What the grader knows about notebooks, before anything runs.

* :func:`load_notebook` -- is a submitted file a notebook at all (empty / not UTF-8 / not JSON /
  wrong schema)?  :class:`NotebookError` says why not.
* :class:`Reference` -- the assignment's released and source notebooks: its grade cells, ids and the
  instructor's code.
* :func:`sanitize` -- put the instructor's cells back: nbgrader metadata of known cells is reset to
  the released one, deleted test/read-only cells are re-inserted (nbgrader then restores their
  source, including hidden tests, from the gradebook), unknown or duplicated nbgrader ids are
  dropped.  A student can therefore not delete, edit, duplicate or re-label a test cell.
* :func:`student_cells` -- the code cells whose content comes from the student (what
  :mod:`autograder.grading.scan` checks).
"""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field

import nbformat

MAX_BYTES = 50 * 1024 * 1024


class NotebookError(Exception):
    """The file is not a usable notebook; ``str(e)`` is the human-readable reason."""


def load_notebook(data: bytes, max_bytes: int = MAX_BYTES) -> nbformat.NotebookNode:
    """The notebook in ``data`` (a submitted file), validated; :class:`NotebookError` if it is none."""
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
    except (nbformat.ValidationError, nbformat.reader.NotJSONError,
            ValueError, KeyError, TypeError, AttributeError) as e:  # what nbformat raises on a malformed notebook
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NotebookError(f"not a valid Jupyter notebook: {msg[:300]}") from None
    return nb


# --- instructor cells ----------------------------------------------------------------------------

def nbg(cell) -> dict:
    """The cell's nbgrader metadata (empty dict if none)."""
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id(cell):
    """The cell's nbgrader ``grade_id``, or None."""
    return nbg(cell).get("grade_id")


def is_test_cell(meta: dict) -> bool:
    """An autograded test cell: graded and not an answer cell (``meta`` is nbgrader metadata)."""
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
        """The reference of assignment ``name`` from its released and source (nbgrader) notebooks."""
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
    """How many of ``nb``'s nbgrader ids belong to the assignment (0: another assignment's notebook)."""
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
