"""The grading run's output folder ``OUT/`` (written only by the supervisor):

* ``results/<student>.json`` -- the student's :class:`~autograder.grading.types.Result`: its top level
  is the **newest graded version** (by submission time, then file name), and ``history`` lists every
  version ever graded for that student (oldest first), each a Result without ``history``, with its
  cache key (:func:`cache_key`), submission time (``version``) and its own feedback page (``feedback``).
  A later run adds versions and replaces a version only when it regrades those very bytes, so a
  soft-deadline grade survives the final one;
* ``feedback/<student>/<version>.html`` -- each graded version's page, and ``feedback/<student>.html``
  -- the newest version's page (:mod:`autograder.grading.render`);
* ``grades.csv`` -- one row per student, rebuilt from the result files after every student;
  with deadlines, the columns of :data:`~autograder.grading.deadlines.COLUMNS` follow;
* ``run.json`` -- the run's summary.

Every file is written with :func:`autograder.course.files.atomic_write`; a result file is changed under
a lock, so two versions of one student graded at the same time both land in its history.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import threading
from pathlib import Path

from ..course.files import atomic_write
from .deadlines import COLUMNS, Deadlines, summarize
from .render import fmt_score
from .types import Result

__all__ = ["cache_key", "result_path", "feedback_path", "version_feedback_path", "prepare_output", "reusable",
           "write_result", "read_result", "write_grades_csv", "count_statuses", "write_run_summary"]

_LOCK = threading.Lock()


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
    """``OUT/feedback/<student>.html`` (the newest graded version's page)."""
    return Path(out) / "feedback" / f"{student}.html"


def version_feedback_path(out: Path, student: str, version: str) -> Path:
    """``OUT/feedback/<student>/<version>.html``."""
    return Path(out) / "feedback" / student / f"{version}.html"


def prepare_output(out: Path, private: bool = False) -> None:
    """Create ``OUT/results`` and ``OUT/feedback`` (mode 0700 with ``private``)."""
    for name in ("results", "feedback"):
        (Path(out) / name).mkdir(parents=True, exist_ok=True)
        if private:
            (Path(out) / name).chmod(0o700)


def _read_json(out: Path, student: str) -> dict | None:
    path = result_path(out, student)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def reusable(out: Path, student: str, key: str) -> bool:
    """Has a version with this cache key been graded for ``student`` (result, its page and the student's
    page present)?  A rerun then skips it."""
    data = _read_json(out, student)
    if data is None or not feedback_path(out, student).exists():
        return False
    return any(e.get("key") == key and e.get("feedback") and (Path(out) / e["feedback"]).exists()
               for e in data.get("history") or [])


def _version_id(r: dict) -> str:
    """The version id of a result (as a dict): recorded by discovery, else from the file's or key's hash."""
    return (r.get("version") or {}).get("id") or (r.get("submission_sha256") or "")[:12] \
        or hashlib.sha256((r.get("key") or "").encode()).hexdigest()[:12]


def _order(entry: dict):
    return (entry.get("version", {}).get("submitted_at") or "", entry.get("submission") or "",
            entry.get("version", {}).get("id") or "")


def write_result(out: Path, result: Result, page: str) -> None:
    """Add ``result`` (one graded version) and its feedback ``page`` to the student's history; the newest
    version becomes the top level of ``results/<student>.json`` and ``feedback/<student>.html``."""
    out, student = Path(out), result.student
    entry = dataclasses.asdict(dataclasses.replace(result, history=[]))
    del entry["history"]
    version = _version_id(entry)
    vpath = version_feedback_path(out, student, version)
    entry["feedback"] = vpath.relative_to(out).as_posix()
    with _LOCK:
        vpath.parent.mkdir(exist_ok=True)
        atomic_write(vpath, page)
        old = _read_json(out, student) or {}
        history = [e for e in old.get("history") or [] if _version_id(e) != version]
        history = sorted(history + [entry], key=_order)
        newest = history[-1]
        if newest is entry or not feedback_path(out, student).exists():
            atomic_write(feedback_path(out, student), (out / newest["feedback"]).read_text(encoding="utf-8"))
        atomic_write(result_path(out, student), json.dumps({**newest, "history": history}, indent=1, sort_keys=True))


def read_result(out: Path, student: str) -> Result | None:
    """The student's result (top level = newest graded version, with ``history``), or None if there is none."""
    path = result_path(out, student)
    return Result.from_json(path.read_text()) if path.exists() else None


def write_grades_csv(out: Path, students, grade_ids: list[str], assignment: str,
                     deadlines: Deadlines | None = None) -> None:
    """``OUT/grades.csv``: student, assignment, one column per grade cell, total, max_total, status,
    reason (of the newest graded version); with ``deadlines`` also :data:`~.deadlines.COLUMNS` computed
    from the whole history (:func:`~.deadlines.summarize`).  One row per student (sorted) with a result."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", "assignment", *grade_ids, "total", "max_total", "status", "reason"]
               + (COLUMNS if deadlines else []))
    for s in sorted(set(students)):
        r = read_result(out, s)
        if r is None:
            continue
        row = [s, r.assignment or assignment, *[fmt_score(r.scores.get(c)) for c in grade_ids],
               fmt_score(r.total), fmt_score(r.max_total), r.status, r.reason]
        if deadlines:
            late = summarize(r.history or [dataclasses.asdict(r)], deadlines)
            row += [late[c] if c == "deadline_note" else fmt_score(late[c]) for c in COLUMNS]
        w.writerow(row)
    atomic_write(Path(out) / "grades.csv", buf.getvalue())


def count_statuses(out: Path, students) -> dict:
    """``{status: number of students}`` over the students' result files (newest graded version)."""
    counts: dict[str, int] = {}
    for s in set(students):
        r = read_result(out, s)
        if r is not None:
            counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def write_run_summary(out: Path, summary: dict) -> None:
    """``OUT/run.json``."""
    atomic_write(Path(out) / "run.json", json.dumps(summary, indent=1, sort_keys=True))
