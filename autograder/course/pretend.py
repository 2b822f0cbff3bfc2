"""Pretend students: submissions built from the released notebook and the instructor's solutions.

A submission is the *released* notebook (``assignments/``) with every code answer cell filled with the
solution notebook's source of that cell; an optional entry ``{"cell": grade_id, "replace": [(old, new),
...]}`` then plants a bug (or an alternative solution) in one cell. Used by the course tests
(``tests/course_bugs``), the README's demo and the grading benchmark.
"""
from __future__ import annotations

import copy

__all__ = ["solution_sources", "submission", "blank_submission"]


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _is_answer(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("solution")) and cell.cell_type == "code"


def _label(entry: dict) -> str:
    return entry.get("name") or entry.get("cell") or "entry"


def solution_sources(solution_nb) -> dict[str, str]:
    """``{grade_id: source}`` of the code answer cells of a solution (source) notebook."""
    return {_grade_id(c): c.source for c in solution_nb.cells if _is_answer(c)}


def submission(release_nb, solution_nb, entry: dict | None = None):
    """The release notebook with the solution's answers filled in and ``entry``'s replacements applied.

    Raises ``ValueError`` if the entry names an unknown cell or an old text is not in that cell.
    """
    nb = copy.deepcopy(release_nb)
    answers = solution_sources(solution_nb)
    filled = set()
    for cell in nb.cells:
        grade_id = _grade_id(cell)
        if _is_answer(cell) and grade_id in answers:
            cell.source = answers[grade_id]
            filled.add(grade_id)
    missing = set(answers) - filled
    if missing:
        raise ValueError(f"the release notebook lacks the answer cell(s) {sorted(missing)}: assignments/ is stale")
    if entry is not None:
        target = entry.get("cell")
        cells = [c for c in nb.cells if _grade_id(c) == target and _is_answer(c)]
        if not cells:
            raise ValueError(f"{_label(entry)}: no [solution] cell with id {target!r}; answer cells are "
                             f"{sorted(answers)}")
        cell = cells[0]
        for old, new in entry.get("replace", []):
            if old not in cell.source:
                raise ValueError(f"{_label(entry)}: the text {old!r} is not in cell {target!r}:\n{cell.source}")
            cell.source = cell.source.replace(old, new)
    return nb


def blank_submission(release_nb):
    """The released notebook submitted as is (every answer still raises NotImplementedError)."""
    return copy.deepcopy(release_nb)
