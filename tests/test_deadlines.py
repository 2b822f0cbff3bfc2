"""Deadlines and resubmissions (issue 12, item 1): ``grade ... --deadline --hard-deadline --late-policy``.

Unit tests of the time rules and the late policy (:mod:`autograder.grading.deadlines`), then one term
through the real CLI in the sandbox: a soft-deadline run, students resubmit, a hard-deadline run.  The
soft-deadline grade and its feedback page survive the final run byte for byte; penalties follow the policy.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading_fixtures.course import make_course, student_notebook, write  # noqa: E402
from preconditions import require_sandbox  # noqa: E402

from autograder.grading import deadlines as dl  # noqa: E402
from autograder.grading.discovery import Submission, discover  # noqa: E402

PY = sys.executable
USER_PREFIX = "mfdl-sbx"   # not the users of the other grading tests
UTC = timezone.utc
NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


@pytest.fixture
def sandbox():
    """Skips -- or with CI=true / as root fails -- unless root and Linux namespaces work here."""
    require_sandbox()


needs_sandbox = pytest.mark.usefixtures("sandbox")


def cli(*args, check=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PATH=os.pathsep.join([str(Path(PY).parent), os.environ["PATH"]]))
    r = subprocess.run([PY, "-m", "autograder", *map(str, args)], capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"autograder {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- times -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, tz, utc", [
    ("2026-09-28T23:59", "UTC", "2026-09-28T23:59:00"),
    ("2026-09-28T23:59", "Europe/Berlin", "2026-09-28T21:59:00"),          # CEST, +2
    ("2026-12-28 23:59", "Europe/Berlin", "2026-12-28T22:59:00"),          # CET, +1
    ("2026-09-28T23:59+05:30", "Europe/Berlin", "2026-09-28T18:29:00"),    # an offset wins over --timezone
    ("2026-09-28T23:59:30Z", "America/New_York", "2026-09-28T23:59:30"),
])
def test_times_without_a_zone_are_local_to_timezone(text, tz, utc):
    assert dl.parse_time(text, tz) == t(utc)


@pytest.mark.parametrize("text, utc", [
    ("2026-09-28 21:59:00.123456 UTC", "2026-09-28T21:59:00.123456"),     # nbgrader's default format
    ("2026-09-28 23:59:00.000000 Europe/Berlin", "2026-09-28T21:59:00"),
    ("2026-09-28 23:59:00 +0200", "2026-09-28T21:59:00"),
    ("2026-09-28 23:59:00", "2026-09-28T20:59:00"),                        # no zone: --timezone (here +3)
])
def test_nbgrader_timestamps(text, utc):
    assert dl.parse_timestamp_txt(text, "Europe/Moscow") == t(utc)


@pytest.mark.parametrize("deadline, hard, policy, tz, message", [
    ("28 Sept", None, None, "UTC", "not a time"),
    ("2026-09-28T23:59", "2026-09-27T00:00", None, "UTC", "before --deadline"),
    ("2026-09-28T23:59", None, "10 per day", "UTC", "RATE%/day"),
    ("2026-09-28T23:59", None, "10%/day,max=150%", "UTC", "at most 100%"),
    (None, "2026-09-28T23:59", None, "UTC", "need --deadline"),
    ("2026-09-28T23:59", None, None, "Mars/Olympus", "unknown time zone"),
])
def test_bad_deadline_options_say_what_to_write(deadline, hard, policy, tz, message):
    with pytest.raises(ValueError, match=message):
        dl.from_options(deadline, hard, policy, tz)


def test_zip_entry_times_are_local_to_timezone(tmp_path):
    archive = tmp_path / "moodle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(zipfile.ZipInfo("Ann Lee_111_assignsubmission_file_ps1.ipynb", (2026, 9, 28, 23, 30, 0)), NB)
    (sub,) = discover(archive, "ps1", tz="Europe/Berlin").submissions
    assert sub.submitted_at == t("2026-09-28T21:30:00") and sub.time_source == "Moodle file time (zip entry time)"
    (sub,) = discover(archive, "ps1").submissions
    assert sub.submitted_at == t("2026-09-28T23:30:00")


def test_timestamp_txt_comes_before_the_file_time(tmp_path):
    folder = tmp_path / "submitted" / "alice" / "ps1"
    folder.mkdir(parents=True)
    (folder / "ps1.ipynb").write_bytes(NB)
    (folder / "timestamp.txt").write_text("2026-09-28 20:00:00.000000 UTC")
    (bob := tmp_path / "submitted" / "bob" / "ps1").mkdir(parents=True)
    (bob / "ps1.ipynb").write_bytes(NB)
    os.utime(bob / "ps1.ipynb", (t("2026-09-27T10:00:00").timestamp(),) * 2)
    alice, b = discover(tmp_path / "submitted", "ps1").submissions
    assert (alice.submitted_at, alice.time_source) == (t("2026-09-28T20:00:00"), "nbgrader timestamp.txt")
    assert (b.submitted_at, b.time_source) == (t("2026-09-27T10:00:00"), "file mtime")


# --- the policy --------------------------------------------------------------------------------------------

def test_late_policy():
    p = dl.LatePolicy.parse("10%/day,max=50%")
    assert (p.rate, p.unit, p.cap, p.text()) == (0.1, "day", 0.5, "10%/day,max=50%")
    assert p.fraction(timedelta(seconds=1)) == (1, 0.1)              # a started day counts
    assert p.fraction(timedelta(days=2, hours=1)) == (3, pytest.approx(0.3))
    assert p.fraction(timedelta(days=30)) == (30, 0.5)               # capped
    assert dl.LatePolicy.parse("2%/hour").fraction(timedelta(hours=5, minutes=1)) == (6, pytest.approx(0.12))
    assert dl.LatePolicy.parse(None).fraction(timedelta(days=3)) == (3, 0.0)
    assert dl.LatePolicy.parse("none").text() == "none"


def _entry(total, when, status="graded"):
    return {"total": total, "status": status, "version": {"submitted_at": when}}


RULES = dl.from_options("2026-09-28T23:59", "2026-10-05T23:59", "10%/day,max=50%")


@pytest.mark.parametrize("history, on_time, late, days, penalty, final, note", [
    ([_entry(3.0, "2026-09-28T20:00:00Z")], 3.0, None, None, None, 3.0, ""),
    ([_entry(3.0, "2026-09-28T20:00:00Z"), _entry(5.0, "2026-09-30T12:00:00Z")], 3.0, 5.0, 1.5, 1.0, 4.0,
     "late by 2 day(s): -20%"),
    ([_entry(4.5, "2026-09-28T20:00:00Z"), _entry(5.0, "2026-10-03T00:00:01Z")], 4.5, 5.0, 4.0, 2.5, 4.5,
     "-50%"),                                                            # resubmitting never lowers a grade
    ([_entry(5.0, "2026-10-06T00:00:00Z")], None, 5.0, 7.0, 5.0, 0.0, "after the hard deadline"),
    ([_entry(2.0, "2026-09-27T00:00:00Z"), _entry(5.0, "2026-10-07T00:00:00Z")], 2.0, None, None, None, 2.0,
     "after the hard deadline is not counted"),
    ([_entry(0.0, "2026-09-28T20:00:00Z", "error")], 0.0, None, None, None, None, "grader failed"),
    ([_entry(0.0, None, "invalid")], None, None, None, None, 0.0, "no version with a submission time"),
])
def test_summarize(history, on_time, late, days, penalty, final, note):
    row = dl.summarize(history, RULES)
    assert (row["on_time"], row["late"], row["days_late"], row["penalty"], row["final"]) == \
        (on_time, late, days, penalty, final)
    assert note in row["deadline_note"]


def _version(origin, when, data, lms=None, late=False):
    return Submission("s", origin, data, origin, 0.0, lms=lms, lms_late=late, submitted_at=t(when),
                      time_source="file mtime")


def test_to_grade_picks_the_newest_on_time_and_the_newest_late_version():
    vs = [_version("a1", "2026-09-27T00:00:00", b"1"), _version("a2", "2026-09-28T10:00:00", b"2"),
          _version("a3", "2026-09-30T00:00:00", b"3"), _version("a4", "2026-10-01T00:00:00", b"4"),
          _version("a5", "2026-10-09T00:00:00", b"5")]
    vs[-1].versions = vs
    chosen, notes = dl.to_grade([vs[-1]], RULES)
    assert [v.origin for v in chosen] == ["a2", "a4"]
    assert any(n.startswith("a5: after the hard deadline") for n in notes)
    assert sum("a newer version" in n for n in notes) == 2            # a1, a3
    chosen, notes = dl.to_grade([vs[-1]], None)                         # no deadline: the newest only
    assert [v.origin for v in chosen] == ["a5"] and len(notes) == 4


def test_canvas_late_marker_decides_the_side_of_the_deadline():
    marked = _version("x_LATE_1_2_ps1.ipynb", "2026-09-28T12:00:00", b"late", lms="canvas", late=True)
    unmarked = _version("y_3_4_ps1.ipynb", "2026-10-02T12:00:00", b"ok", lms="canvas")
    for v in (marked, unmarked):
        v.versions = [v]
    (m,), _ = dl.to_grade([marked], RULES)
    (u,), _ = dl.to_grade([unmarked], RULES)
    assert m.submitted_at == RULES.deadline + timedelta(seconds=1) and "LATE_ marker" in m.time_source
    assert u.submitted_at == RULES.deadline and "no LATE_ marker" in u.time_source


def test_cli_refuses_bad_deadlines(tmp_path):
    r = cli("grade", "ps1", tmp_path, "--deadline", "2026-09-28T23:59", "--late-policy", "lots", check=False)
    assert r.returncode == 2 and "RATE%/day" in r.stderr
    r = cli("grade", "ps1", tmp_path, "--hard-deadline", "2026-09-28T23:59", check=False)
    assert r.returncode == 2 and "need --deadline" in r.stderr


# --- a term through the real CLI ---------------------------------------------------------------------------

GRADE_OPTS = ["--timeout", "5", "--memory", "1024", "--output-limit", "1", "--max-procs", "64",
              "--isolation", "namespace", "--sandbox-user", USER_PREFIX, "--jobs", "2", "-q",
              "--deadline", "2026-09-28T23:59", "--timezone", "Europe/Berlin", "--late-policy", "10%/day,max=50%"]
HARD = ["--hard-deadline", "2026-10-05T23:59"]
WRONG_MEAN = {"mean-solution": "def mean(xs):\n    return 0"}   # 3 of 5 points


def _nbgrader(subs: Path, student: str, nb, stamp: str) -> None:
    write(nb, subs / student / "ps1" / "ps1.ipynb")
    (subs / student / "ps1" / "timestamp.txt").write_text(stamp)


def _flat(subs: Path, name: str, nb, when: str) -> None:
    path = write(nb, subs / name)
    os.utime(path, (t(when).timestamp(),) * 2)


def rows(out: Path) -> dict:
    with open(out / "grades.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    require_sandbox()
    root = tmp_path_factory.mktemp("deadlines")
    course = make_course(root / "course")
    soft, out = root / "soft" / "submitted", root / "out"
    # the deadline is 2026-09-28T23:59 Europe/Berlin = 21:59Z
    _nbgrader(soft, "alice", student_notebook(WRONG_MEAN), "2026-09-28 20:00:00.000000 UTC")   # on time, 3/5
    _nbgrader(soft, "bob", student_notebook(), "2026-09-27 10:00:00.000000 UTC")              # on time, 5/5
    _nbgrader(soft, "carl", student_notebook(), "2026-09-29 08:00:00.000000 UTC")             # 10 h late
    first = json.loads(cli("grade", "ps1", soft, "--course-dir", course, "--out", out, *GRADE_OPTS, "--json").stdout)
    soft_rows = rows(out)
    soft_pages = {s: (out / "feedback" / f"{s}.html").read_bytes() for s in soft_rows}
    # after the feedback: alice fixes her work, dave hands in after the hard deadline; a Canvas download
    # for erin (LATE_ marker, although the file time is before the deadline) and fay (plain, on time)
    hard = root / "hard" / "submitted"
    shutil.copytree(soft, hard)
    _nbgrader(hard, "alice", student_notebook(), "2026-09-30 12:00:00.000000 UTC")
    _nbgrader(hard, "dave", student_notebook(), "2026-10-06 12:00:00.000000 UTC")
    _flat(hard, "erin_LATE_77_88_ps1.ipynb", student_notebook(), "2026-09-28T12:00:00")
    _flat(hard, "fay_ps1.ipynb", student_notebook(WRONG_MEAN), "2026-09-28T12:00:00")
    second = json.loads(cli("grade", "ps1", hard, "--course-dir", course, "--out", out, *GRADE_OPTS, *HARD,
                            "--json").stdout)
    return {"root": root, "course": course, "out": out, "first": first, "second": second, "soft_rows": soft_rows,
            "soft_pages": soft_pages, "hard": hard}


@needs_sandbox
def test_soft_deadline_run(term):
    g = term["soft_rows"]
    assert (g["alice"]["on_time"], g["alice"]["late"], g["alice"]["final"]) == ("3", "", "3")
    assert (g["carl"]["on_time"], g["carl"]["late"], g["carl"]["penalty"], g["carl"]["final"]) == ("", "5", "0.5",
                                                                                                      "4.5")
    assert g["carl"]["days_late"] == "0.42" and "late by 1 day(s): -10%" in g["carl"]["deadline_note"]
    assert term["first"]["deadlines"] == {"deadline": "2026-09-28T21:59:00Z", "hard_deadline": None,
                                          "late_policy": "10%/day,max=50%", "timezone": "Europe/Berlin"}


@needs_sandbox
def test_hard_deadline_run_grades_only_what_changed(term):
    assert term["second"]["graded"] == 4 and term["second"]["skipped"] == 2     # alice v2, dave, erin, fay
    header = list(rows(term["out"])["bob"])
    assert header[:9] == ["student", "assignment", "test-add", "test-scale", "test-mean", "total", "max_total",
                          "status", "reason"]                                      # the existing columns first
    assert header[9:] == dl.COLUMNS


@needs_sandbox
def test_resubmission_keeps_the_soft_deadline_grade_and_feedback(term):
    out = term["out"]
    result = json.loads((out / "results" / "alice.json").read_text())
    v1, v2 = result["history"]
    assert (v1["total"], v1["version"]["submitted_at"], v1["version"]["time_source"]) == \
        (3.0, "2026-09-28T20:00:00Z", "nbgrader timestamp.txt")
    assert (v2["total"], v2["version"]["submitted_at"]) == (5.0, "2026-09-30T12:00:00Z")
    assert result["total"] == 5.0 and result["feedback"] == v2["feedback"]        # top level: the newest
    assert (out / v1["feedback"]).read_bytes() == term["soft_pages"]["alice"]      # never overwritten
    assert (out / "feedback" / "alice.html").read_bytes() == (out / v2["feedback"]).read_bytes()
    assert (out / "feedback" / "bob.html").read_bytes() == term["soft_pages"]["bob"]


@needs_sandbox
def test_penalties_and_final_grades(term):
    g = rows(term["out"])
    got = {s: (g[s]["on_time"], g[s]["late"], g[s]["penalty"], g[s]["final"]) for s in g}
    assert got == {
        "alice": ("3", "5", "1", "4"),          # 1 d 14 h late: 2 started days, -20% of 5
        "bob": ("5", "", "", "5"),
        "carl": ("", "5", "0.5", "4.5"),
        "dave": ("", "5", "5", "0"),            # after the hard deadline: counts 0 (but has feedback)
        "erin-77": ("", "5", "0.5", "4.5"),     # Canvas LATE_ marker: late, whatever the file time says
        "fay": ("3", "", "", "3"),
    }
    assert "after the hard deadline" in g["dave"]["deadline_note"]
    erin = json.loads((term["out"] / "results" / "erin-77.json").read_text())
    assert "LATE_ marker" in erin["version"]["time_source"] and erin["version"]["lms_late"] is True
    assert (term["out"] / "feedback" / "dave.html").is_file()


@needs_sandbox
def test_lms_export_uses_the_final_column(term, tmp_path):
    cli("export", "--lms", "csv", term["out"], "-o", tmp_path / "grades.csv", check=False)
    with open(tmp_path / "grades.csv", newline="") as f:
        points = {r["student"]: r["points"] for r in csv.DictReader(f)}
    assert points == {"alice": "4", "bob": "5", "carl": "4.5", "dave": "0", "erin-77": "4.5", "fay": "3"}


@needs_sandbox
def test_rerun_without_changes_is_identical(term, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(term["out"], out)
    before = (out / "grades.csv").read_bytes()
    r = cli("grade", "ps1", term["hard"], "--course-dir", term["course"], "--out", out, *GRADE_OPTS, *HARD, "--json")
    assert json.loads(r.stdout)["graded"] == 0 and (out / "grades.csv").read_bytes() == before
