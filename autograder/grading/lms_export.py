"""Grades for the LMS: ``python -m autograder export --lms canvas|moodle|csv OUT``.

Reads a grading output folder ``OUT`` (``grades.csv`` for the roster and the points, ``results/<student>.json``
and ``run.json`` for who each student is in the LMS) and writes ``OUT/lms/<lms>-<assignment>.csv``
(or ``--output FILE``) plus ``...-unmatched.csv``, the students the file could not place, which are
also printed to stderr.  Nobody is dropped silently.

Formats (the rules each LMS's importer applies, from their source code):

* **canvas** -- Canvas' Gradebook "Import" CSV (``GradebookImporter``): header
  ``Student, ID, SIS User ID, SIS Login ID, Section, <assignment>``; a second row whose first cell is
  ``Points Possible`` gives the assignment's points; one row per student.  Canvas finds the student
  by ``ID`` (the Canvas user id: the first number of a Canvas download's file name
  ``login[_LATE]_<user id>_<attachment id>_<file>``), then the SIS ids, then the name.  The assignment
  column ``Title (123)`` updates assignment 123; a bare title updates the assignment with that exact
  title or creates a new one with the points possible.  A student without a Canvas id keeps a row (ID
  empty, so Canvas asks you to match it by hand) and is listed as unmatched.
* **moodle** -- the assignment's offline grading worksheet ("Upload grading worksheet",
  ``assignfeedback_offline``): columns ``Identifier`` (``Participant <id>``, the id of Moodle's
  download file names ``Full Name_<id>_assignsubmission_file_...``), ``Full name``, ``Grade``,
  ``Maximum Grade``, ``Last modified (grade)`` (the export time: Moodle skips a row whose grade was
  changed in Moodle after that, unless "Ignore last modified date" is ticked) and, with
  ``--feedback-comments``, ``Feedback comments`` (the grader's reason).  Moodle silently skips an
  unknown identifier, an empty grade and a grade above the assignment's maximum grade, so students
  without a Moodle id are left out of the file and listed; pass ``--scale-to`` if the Moodle
  assignment's maximum grade is not the notebook's points.
* **csv** -- one row per student: student, lms, lms_id, name, source_file, assignment, points,
  max_points, status, reason.

Who a student is: the identity recorded by the grader in ``results/<student>.json`` (an object under
``identity`` or ``lms``, or the fields themselves at the top level) or in ``run.json`` (``identities`` /
``students``: ``{student: {...}}``), with the fields ``lms`` (``canvas``/``moodle``), ``lms_id`` (or
``id``), ``lms_name`` (or ``name``) and ``source_file`` (or ``source``); without
them, the LMS id is read from the submitted file's name (``submission`` in the result) with the Moodle
and Canvas rules above; without that, only the student id is known.

Points: the ``final`` column of grades.csv if there is one (late penalties applied), else ``total``;
``--column`` picks another.  A student whose status is ``error`` (the grader failed, not the student)
gets an empty grade (Canvas and Moodle then keep what they have) and is listed.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from ..course.files import atomic_write

__all__ = ["Identity", "identity_of", "identity_from_path", "export", "main", "FORMATS"]

FORMATS = ("canvas", "moodle", "csv")
CANVAS_STUDENT_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_PARTICIPANT = "Participant "
MOODLE_FILE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_", re.IGNORECASE)
MOODLE_DIR = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_?$", re.IGNORECASE)
CANVAS_FILE = re.compile(r"^(?P<name>[^_]+?)(?:_late)?_(?P<uid>\d+)_(?P<aid>\d+)_", re.IGNORECASE)
UNMATCHED_COLUMNS = ["student", "lms", "lms_id", "name", "source_file", "points", "status", "problem"]


@dataclass
class Identity:
    """Who a graded student is in the LMS (``lms``/``lms_id`` None when unknown)."""

    student: str
    lms: str | None = None
    lms_id: str | None = None
    name: str | None = None
    source_file: str | None = None
    found_in: str = "none"   # results | run.json | file name | none


def identity_from_path(origin: str) -> tuple[str | None, str | None, str | None]:
    """``(lms, lms_id, name)`` read from where a notebook came from (``Submission.origin``)."""
    parts = [p for p in re.split(r"[/\\:]", origin or "") if p]
    if not parts:
        return None, None, None
    m = MOODLE_FILE.match(parts[-1])
    if m:
        return "moodle", m["id"], m["name"]
    for folder in reversed(parts[:-1]):
        m = MOODLE_DIR.match(folder)
        if m:
            return "moodle", m["id"], m["name"]
    m = CANVAS_FILE.match(parts[-1])
    if m:
        return "canvas", m["uid"], m["name"]
    return None, None, None


def _as_identity(student: str, d: dict, found_in: str) -> Identity | None:
    lms = d.get("lms") or d.get("platform")
    lms_id = d.get("lms_id") or d.get("id")
    if not lms or lms_id in (None, ""):
        return None
    return Identity(student, str(lms).lower(), str(lms_id), d.get("lms_name") or d.get("name"),
                    d.get("source_file") or d.get("source"), found_in)


def identity_of(student: str, result: dict | None, run: dict | None) -> Identity:
    """The student's LMS identity (see the module docstring for where it is looked up)."""
    result, run = result or {}, run or {}
    candidates = [result.get("identity"), result.get("lms")]
    if isinstance(result.get("lms"), str):
        candidates.append(result)  # flat: "lms": "moodle", "lms_id": "111", ... at the top level
    for d in candidates:
        ident = _as_identity(student, d, "results") if isinstance(d, dict) else None
        if ident:
            return ident
    for key in ("identities", "students"):
        table = run.get(key)
        if isinstance(table, dict) and isinstance(table.get(student), dict):
            ident = _as_identity(student, table[student], "run.json")
            if ident:
                return ident
    origin = result.get("submission") or ""
    lms, lms_id, name = identity_from_path(origin)
    if lms:
        return Identity(student, lms, lms_id, name, PurePosixPath(origin.replace(":", "/")).name, "file name")
    return Identity(student, source_file=PurePosixPath(origin.replace(":", "/")).name or None)


def _safe(text) -> str:
    """A text cell that a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if text is None else str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.4f}".rstrip("0").rstrip(".")


def _read_out(out: Path, column: str | None):
    grades = out / "grades.csv"
    if not grades.is_file():
        raise FileNotFoundError(f"{grades} not found: run `python -m autograder grade` (or merge) first")
    with open(grades, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    column = column or ("final" if "final" in header else "total")
    if column not in header:
        raise ValueError(f"{grades} has no column {column!r} (columns: {', '.join(header)})")
    max_column = "max_total" if "max_total" in header else None
    run = {}
    if (out / "run.json").is_file():
        run = json.loads((out / "run.json").read_text())
    return rows, column, max_column, run


@dataclass
class _Entry:
    ident: Identity
    points: float | None      # None: no grade to export (grader error / no number)
    max_points: float | None
    status: str
    reason: str
    problem: str = ""


def _entries(out: Path, column: str | None, scale_to: float | None):
    rows, column, max_column, run = _read_out(out, column)
    entries = []
    for row in rows:
        student = row["student"]
        path = out / "results" / f"{student}.json"
        result = json.loads(path.read_text()) if path.is_file() else None
        ident = identity_of(student, result, run)
        points, max_points = _number(row.get(column)), _number(row.get(max_column)) if max_column else None
        e = _Entry(ident, points, max_points, row.get("status", ""), row.get("reason", ""))
        if e.status == "error":
            e.points, e.problem = None, "the grader failed for this student: no grade exported (regrade them)"
        elif points is None:
            e.problem = f"no number in column {column!r}: no grade exported"
        if scale_to is not None and e.points is not None:
            if not max_points:
                e.points, e.problem = None, "max_total is 0 or missing: cannot scale"
            else:
                e.points = round(e.points / max_points * scale_to, 2)
        if scale_to is not None:
            e.max_points = scale_to
        entries.append(e)
    assignments = {r.get("assignment") for r in rows if r.get("assignment")}
    assignment = run.get("assignment") or (assignments.pop() if len(assignments) == 1 else out.name)
    return entries, assignment


def _mark_duplicates(entries, lms: str):
    seen: dict[str, list] = {}
    for e in entries:
        if e.ident.lms == lms and e.ident.lms_id:
            seen.setdefault(e.ident.lms_id, []).append(e)
    for same in seen.values():
        if len(same) > 1:
            for e in same:
                others = ", ".join(o.ident.student for o in same if o is not e)
                e.problem = f"{lms} id {e.ident.lms_id} is also the id of {others}: resolve by hand"


def _csv_text(rows, lineterminator="\r\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerows(rows)
    return buf.getvalue()


def _canvas(entries, assignment: str, title: str | None, canvas_id: str | None, section: str | None):
    header = title or assignment
    if canvas_id:
        header = f"{header} ({canvas_id})"
    max_points = next((e.max_points for e in entries if e.max_points is not None), None)
    points = _fmt(max_points) if max_points else ""
    rows = [CANVAS_STUDENT_COLUMNS + [header], ["Points Possible", "", "", "", "", points]]
    for e in entries:
        matched = e.ident.lms == "canvas" and e.ident.lms_id and not e.problem.startswith("canvas id")
        if not matched and not e.problem:
            e.problem = ("no Canvas user id (the file name is not from Canvas' download): the row has an empty ID, "
                         "so Canvas asks you to match it by hand")
        rows.append([_safe(e.ident.name or e.ident.student), e.ident.lms_id if matched else "", "", "",
                     _safe(section or ""), "" if e.points is None else _fmt(e.points)])
    return rows


def _moodle(entries, graded_at: str, comments: bool):
    header = ["Identifier", "Full name", "Grade", "Maximum Grade", "Last modified (grade)"]
    rows = [header + (["Feedback comments"] if comments else [])]
    for e in entries:
        if e.ident.lms != "moodle" or not e.ident.lms_id:
            e.problem = e.problem or ("no Moodle participant id (the file name is not from Moodle's download): "
                                      "not in the file, enter the grade by hand")
            continue
        if e.problem.startswith("moodle id"):
            continue
        row = [MOODLE_PARTICIPANT + e.ident.lms_id, _safe(e.ident.name or e.ident.student),
               "" if e.points is None else _fmt(e.points), "" if e.max_points is None else _fmt(e.max_points),
               graded_at]
        rows.append(row + ([_safe(e.reason)] if comments else []))
    return rows


def _plain(entries, assignment: str):
    rows = [["student", "lms", "lms_id", "name", "source_file", "assignment", "points", "max_points", "status",
             "reason"]]
    for e in entries:
        i = e.ident
        rows.append([i.student, i.lms or "", i.lms_id or "", _safe(i.name), _safe(i.source_file), assignment,
                     "" if e.points is None else _fmt(e.points), "" if e.max_points is None else _fmt(e.max_points),
                     e.status, _safe(e.reason)])
    return rows


def export(out, lms: str, output=None, *, column: str | None = None, scale_to: float | None = None,
           title: str | None = None, canvas_id: str | None = None, section: str | None = None,
           graded_at: datetime | None = None, feedback_comments: bool = False) -> dict:
    """Write the LMS file for the grading output ``out``; returns ``{"file", "unmatched_file", "rows",
    "unmatched": [problem rows as dicts]}`` (see the module docstring for the formats)."""
    if lms not in FORMATS:
        raise ValueError(f"--lms {lms!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    entries, assignment = _entries(out, column, scale_to)
    if lms in ("canvas", "moodle"):
        _mark_duplicates(entries, lms)
    if lms == "canvas":
        rows = _canvas(entries, assignment, title, canvas_id, section)
    elif lms == "moodle":
        stamp = (graded_at or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
        rows = _moodle(entries, stamp.isoformat(), feedback_comments)
    else:
        rows = _plain(entries, assignment)
    target = Path(output) if output else out / "lms" / f"{lms}-{assignment}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, _csv_text(rows))
    unmatched = [{"student": e.ident.student, "lms": e.ident.lms or "", "lms_id": e.ident.lms_id or "",
                  "name": e.ident.name or "", "source_file": e.ident.source_file or "",
                  "points": "" if e.points is None else _fmt(e.points), "status": e.status, "problem": e.problem}
                 for e in entries if e.problem]
    unmatched_file = target.with_name(target.stem + "-unmatched.csv")
    atomic_write(unmatched_file, _csv_text([UNMATCHED_COLUMNS]
                                           + [[_safe(u[c]) for c in UNMATCHED_COLUMNS] for u in unmatched]))
    return {"file": str(target), "unmatched_file": str(unmatched_file), "rows": len(rows) - 1 - (lms == "canvas"),
            "students": len(entries), "unmatched": unmatched, "assignment": assignment}


def main(argv=None) -> int:
    """``python -m autograder export --lms canvas|moodle|csv OUT``; exit 0, 1 if a student needs attention,
    2 on errors."""
    p = argparse.ArgumentParser(prog="python -m autograder export",
                                description="Write the grades of a grading output folder as the CSV file that "
                                            "Canvas' or Moodle's grade import reads (or a plain CSV).")
    p.add_argument("out", metavar="OUT", help="grading output folder (with grades.csv and results/)")
    p.add_argument("--lms", required=True, choices=FORMATS)
    p.add_argument("--output", "-o", help="file to write (default OUT/lms/<lms>-<assignment>.csv)")
    p.add_argument("--column", help="grades.csv column with the points (default: final if present, else total)")
    p.add_argument("--scale-to", type=float, help="rescale the points to this maximum (e.g. 100)")
    p.add_argument("--assignment-name", dest="title", help="Canvas: assignment title (default: the assignment)")
    p.add_argument("--canvas-assignment-id", dest="canvas_id",
                   help="Canvas: id of the existing assignment (column 'Title (id)')")
    p.add_argument("--section", help="Canvas: value of the Section column")
    p.add_argument("--feedback-comments", action="store_true",
                   help="Moodle: also upload the grader's reason as the feedback comment")
    args = p.parse_args(argv)
    try:
        info = export(args.out, args.lms, args.output, column=args.column, scale_to=args.scale_to, title=args.title,
                      canvas_id=args.canvas_id, section=args.section, feedback_comments=args.feedback_comments)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{info['students']} students of {info['assignment']}: {info['rows']} row(s) -> {info['file']}")
    if info["unmatched"]:
        print(f"{len(info['unmatched'])} student(s) need attention (also in {info['unmatched_file']}):",
              file=sys.stderr)
        for u in info["unmatched"]:
            print(f"  {u['student']}: {u['problem']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
