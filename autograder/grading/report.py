"""The grading run's output folder ``OUT/`` (written only by the supervisor):

* ``results/<student>.json`` -- the student's :class:`~autograder.grading.types.Result`, with the cache
  key that lets a rerun reuse it (:func:`cache_key`, :func:`reusable`);
* ``feedback/<student>.html`` -- the feedback page (:mod:`autograder.grading.render`);
* ``grades.csv`` -- one row per student, rebuilt from the result files after every student;
* ``run.json`` -- the run's summary.

Every file is written with :func:`autograder.course.files.atomic_write`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from ..course.files import atomic_write
from .render import fmt_score
from .types import Result

__all__ = ["cache_key", "result_path", "feedback_path", "prepare_output", "reusable", "write_result",
           "read_result", "write_grades_csv", "count_statuses", "write_run_summary"]


def cache_key(source_hash: str, student: str, named_assignment: str | None, notes, data: bytes) -> str:
    """Hash of everything a student's grade depends on: the assignment source, course config, grader
    version and grading options (``source_hash``), the student id, the discovery notes and the file."""
    h = hashlib.sha256()
    for part in (source_hash, student, named_assignment or "", "\n".join(notes)):
        h.update(part.encode() + b"\0")
    h.update(data)
    return h.hexdigest()


def result_path(out: Path, student: str) -> Path:
    """``OUT/results/<student>.json``."""
    return Path(out) / "results" / f"{student}.json"


def feedback_path(out: Path, student: str) -> Path:
    """``OUT/feedback/<student>.html``."""
    return Path(out) / "feedback" / f"{student}.html"


def prepare_output(out: Path, private: bool = False) -> None:
    """Create ``OUT/results`` and ``OUT/feedback`` (mode 0700 with ``private``)."""
    for name in ("results", "feedback"):
        (Path(out) / name).mkdir(parents=True, exist_ok=True)
        if private:
            (Path(out) / name).chmod(0o700)


def reusable(out: Path, student: str, key: str) -> bool:
    """Do ``student``'s result and feedback exist, with this cache key?  (A rerun then skips them.)"""
    path = result_path(out, student)
    if not path.exists() or not feedback_path(out, student).exists():
        return False
    try:
        return json.loads(path.read_text()).get("key") == key
    except ValueError:
        return False


def write_result(out: Path, result: Result, page: str) -> None:
    """Write the student's feedback page, then their result file."""
    atomic_write(feedback_path(out, result.student), page)
    atomic_write(result_path(out, result.student), result.to_json(indent=1, sort_keys=True))


def read_result(out: Path, student: str) -> Result | None:
    """The student's result, or None if there is no result file."""
    path = result_path(out, student)
    return Result.from_json(path.read_text()) if path.exists() else None


def write_grades_csv(out: Path, students, grade_ids: list[str], assignment: str) -> None:
    """``OUT/grades.csv``: student, assignment, one column per grade cell, total, max_total, status,
    reason; one row per student (sorted) that has a result file."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "assignment", *grade_ids, "total", "max_total", "status", "reason"])
    for s in sorted(students):
        r = read_result(out, s)
        if r is None:
            continue
        w.writerow([s, r.assignment or assignment, *[fmt_score(r.scores.get(c)) for c in grade_ids],
                    fmt_score(r.total), fmt_score(r.max_total), r.status, r.reason])
    atomic_write(Path(out) / "grades.csv", buf.getvalue())


def count_statuses(out: Path, students) -> dict:
    """``{status: number of students}`` over the students' result files."""
    counts: dict[str, int] = {}
    for s in students:
        r = read_result(out, s)
        if r is not None:
            counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def write_run_summary(out: Path, summary: dict) -> None:
    """``OUT/run.json``."""
    atomic_write(Path(out) / "run.json", json.dumps(summary, indent=1, sort_keys=True))
