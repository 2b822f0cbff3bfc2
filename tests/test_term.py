"""A real term's tools: sharded grading + merge, LMS export, similarity report, the cluster deploy files.

* Sharding: ``grade --shard K/N`` as separate processes, then ``merge``, must give the single run's
  ``grades.csv`` byte for byte, and its feedback and results (real CLI, real sandbox, the tiny test
  course of ``grading_fixtures``; needs root + namespaces like tests/test_grading.py).
* LMS export: the files are read back with parsers written from each LMS's documented import rules
  (Canvas' ``GradebookImporter``, Moodle's ``assignfeedback_offline`` grade importer), not with the
  exporter's code.
* Similarity: copies (renamed variables, reordered functions, changed comments) of the course's real
  solutions score high; the corpus's independent alternative solutions (tests/course_bugs) score low.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course_bugs import ROOT, load_corpus  # noqa: E402
from grading_fixtures.course import make_course, student_notebook, write  # noqa: E402

from autograder.grading import lms_export, merge as mergemod, report, shard  # noqa: E402
from autograder.grading.discovery import Submission  # noqa: E402
from autograder.grading.similarity import kgram_hashes, winnow  # noqa: E402
from autograder.grading.types import Result  # noqa: E402

PY = sys.executable
USER_PREFIX = "mfterm-sbx"   # not the users of tests/test_grading.py, whose leftover checks must not see ours


def _namespaces_work() -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "true"], capture_output=True).returncode == 0


needs_sandbox = pytest.mark.skipif(not _namespaces_work(), reason="needs root and Linux namespaces")


def cli(*args, check=True, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PATH=os.pathsep.join([str(Path(PY).parent),
                                                                          os.environ.get("PATH", "")]))
    r = subprocess.run([PY, "-m", "autograder", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError(f"autograder {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


# --- sharding --------------------------------------------------------------------------------------

def test_parse_spec():
    assert shard.parse_spec("0/4") == (0, 4) and shard.parse_spec(" 3 / 4 ") == (3, 4)
    for bad in ("4/4", "-1/4", "1/0", "1", "a/b", "1/2/3"):
        with pytest.raises(ValueError, match="K"):
            shard.parse_spec(bad)


def test_shards_partition_the_class_the_same_in_every_process():
    ids = [f"student{i}" for i in range(400)] + ["Ann_Lee-111", "Dörte", "x@y.org"]
    parts = [shard.select(ids, k, 4) for k in range(4)]
    assert sorted(sum(parts, [])) == sorted(ids)                       # disjoint and complete
    assert all(70 <= len(p) <= 135 for p in parts), [len(p) for p in parts]  # roughly balanced
    code = "import sys; from autograder.grading.shard import shard_of; print([shard_of(s, 7) for s in sys.argv[1:]])"
    runs = {subprocess.run([PY, "-c", code, *ids], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONHASHSEED=seed)).stdout for seed in ("0", "1", "random")}
    assert len(runs) == 1  # not Python's salted hash()
    assert json.loads(runs.pop()) == [shard.shard_of(s, 7) for s in ids]


def _fake_result(student, status="graded", reason="all 3 tests passed", total=5.0) -> Result:
    scores = {"test-add": 1.0, "test-scale": 2.0, "test-mean": total - 3.0}
    return Result(status=status, reason=reason, scores=scores, max_scores={"test-add": 1, "test-scale": 2, "test-mean": 2},
                  total=total, max_total=5.0, student=student, assignment="ps1", key="k-" + student,
                  submission=f"{student}_ps1.ipynb")


FAKE_CLASS = ["alice", "bob", "carla", "dora", "erin", "frank", "gus", "hana", "ivan", "jo"]
REASONS = {"bob": 'test-mean (AssertionError: "quoted", with commas)', "dora": "line one\nline two"}


def _subs(names=FAKE_CLASS, data=b"{}"):
    return [Submission(s, f"{s}_ps1.ipynb", data + s.encode(), f"{s}_ps1.ipynb") for s in names]


def _fake_shard(folder: Path, k: int, n: int, subs, *, fingerprint="fp", assignment="ps1", complete=True):
    chosen = shard.begin(folder, f"{k}/{n}", subs, assignment, fingerprint)
    report.prepare_output(folder)
    for s in chosen:
        r = _fake_result(s.student, reason=REASONS.get(s.student, "all 3 tests passed"))
        report.write_result(folder, r, f"<html>feedback of {s.student}</html>")
    report.write_grades_csv(folder, [s.student for s in chosen], ["test-add", "test-scale", "test-mean"], assignment)
    (folder / "run.json").write_text(json.dumps({"isolation": "namespace" if k else "user", "ignored": ["x.txt"]}))
    if complete:
        shard.finish(folder)
    return folder


def test_merge_gives_the_single_run_files(tmp_path):
    subs = _subs()
    shards = [_fake_shard(tmp_path / f"s{k}", k, 3, subs) for k in range(3)]
    single = tmp_path / "single"
    report.prepare_output(single)
    for s in subs:
        report.write_result(single, _fake_result(s.student, reason=REASONS.get(s.student, "all 3 tests passed")),
                            f"<html>feedback of {s.student}</html>")
    report.write_grades_csv(single, FAKE_CLASS, ["test-add", "test-scale", "test-mean"], "ps1")
    r = cli("merge", *reversed(shards), "--out", tmp_path / "merged")
    merged = tmp_path / "merged"
    assert (merged / "grades.csv").read_bytes() == (single / "grades.csv").read_bytes()
    for sub in ("results", "feedback"):
        assert {p.name: p.read_bytes() for p in (merged / sub).iterdir()} == \
               {p.name: p.read_bytes() for p in (single / sub).iterdir()}
    run = json.loads((merged / "run.json").read_text())
    assert run["submissions"] == 10 and run["statuses"] == {"graded": 10} and run["isolation"] == "user"
    assert [m["shard"] for m in run["merged_from"]] == [0, 1, 2] and "10 students" in r.stdout


@pytest.mark.parametrize("case, message", [
    ("missing", "shard(s) 2/3 missing"),
    ("twice", "shard 1/3 given twice"),
    ("incomplete", "did not finish"),
    ("fingerprint", "different grading options"),
    ("submissions", "different set of submissions"),
    ("assignment", "another assignment"),
    ("other_n", "different number of shards"),
    ("lost_result", "results/"),
    ("not_a_shard", "no shard.json"),
    ("out_exists", "not empty"),
])
def test_merge_refuses(tmp_path, case, message):
    subs = _subs()
    dirs = [_fake_shard(tmp_path / f"s{k}", k, 3, subs, complete=not (case == "incomplete" and k == 1),
                        fingerprint="other" if case == "fingerprint" and k == 2 else "fp",
                        assignment="ps2" if case == "assignment" and k == 2 else "ps1")
            for k in range(3)]
    out = tmp_path / "merged"
    if case == "missing":
        dirs = dirs[:2]
    elif case == "twice":
        dirs = [dirs[0], dirs[1], dirs[1]]
    elif case == "submissions":
        changed = _subs(data=b"{ }")
        dirs[2] = _fake_shard(tmp_path / "s2b", 2, 3, changed)
    elif case == "other_n":
        dirs.append(_fake_shard(tmp_path / "s4", 3, 4, subs))
    elif case == "lost_result":
        victim = shard.read_manifest(dirs[1])["students"][0]
        (dirs[1] / "results" / f"{victim}.json").unlink()
    elif case == "not_a_shard":
        (dirs[0] / "shard.json").unlink()
    elif case == "out_exists":
        out.mkdir()
        (out / "grades.csv").write_text("old")
    r = cli("merge", *dirs, "--out", out, check=False)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    if case != "out_exists":
        assert not out.exists()


# --- LMS export: the importers' rules -----------------------------------------------------------------

CANVAS_NON_ASSIGNMENT = re.compile("Current Score|Current Points|Current Grade|Final Score|Final Points|Final Grade|"
                                   "Override Score|Override Grade|Override Status")


def canvas_import(text: str) -> dict:
    """What Canvas' Gradebook import (GradebookImporter) reads from a CSV: the header must start with
    Student, ID (and SIS User ID + SIS Login ID, optional Integration ID), Section; the other columns are
    assignments ("Title (id)" names an existing one), minus Canvas' read-only score columns; a row whose first
    cell contains "Points Possible" sets points; a student is found by ID, then SIS ids, then name."""
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert len(header) > 3 and "Student" in header[0] and "ID" in header[1], "Canvas: invalid header row"
    columns, sis_user, sis_login = 3, None, None
    if re.search(r"SIS\s+Login\s+ID", header[2]):
        sis_login, columns = 2, 4
    elif re.search(r"SIS\s+User\s+ID", header[2]) and re.search(r"SIS\s+Login\s+ID", header[3]):
        sis_user, sis_login = 2, 3
        columns = 5 + (1 if re.search(r"Integration\s+ID", header[4]) else 0)
    assert "Section" in header[columns - 1], "Canvas: invalid header row (no Section)"
    assignments = {}
    for i, name in enumerate(header[columns:], columns):
        if CANVAS_NON_ASSIGNMENT.search(name):
            continue
        m = re.match(r"\A(.*)\s\((\d+)\)\Z", name)
        assignments[i] = {"title": m[1] if m else name, "id": m[2] if m else None, "points": None}
    students = []
    for row in rows[1:]:
        if "Points Possible" in row[0]:
            for i, a in assignments.items():
                a["points"] = row[i]
            continue
        if all(re.match(r"^\s*(Muted|Manual Posting.*)?\s*$", c, re.I) for c in row):
            continue
        students.append({"name": row[0], "id": int(row[1]) if row[1].strip() else None,
                         "sis_user": row[sis_user] if sis_user is not None else None,
                         "sis_login": row[sis_login] if sis_login is not None else None,
                         "grades": {a["title"]: row[i].strip() for i, a in assignments.items()}})
    return {"assignments": list(assignments.values()), "students": students}


def moodle_worksheet_import(text: str, max_grade: float, existing_modified: float = 0) -> dict:
    """What Moodle's "Upload grading worksheet" (assignfeedback_offline) imports: the columns named exactly
    "Identifier", "Grade" and "Last modified (grade)" must exist ("Feedback comments" is optional); the
    participant id is the identifier without its "Participant " prefix; a row is skipped when the grade is
    empty or negative, above the assignment's maximum grade, or older than the grade in Moodle (+60 s)."""
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    for needed in ("Identifier", "Grade", "Last modified (grade)"):
        assert needed in header, f"Moodle: column {needed!r} missing, the import is refused"
    idx = {name: header.index(name) for name in header}
    imported, skipped = {}, []
    for row in rows[1:]:
        participant = row[idx["Identifier"]][len("Participant "):]
        raw = row[idx["Grade"]].strip()
        modified = datetime.fromisoformat(row[idx["Last modified (grade)"]]).timestamp()
        grade = float(raw) if raw else None
        if grade is None or grade < 0 or grade > max_grade or existing_modified > modified + 60:
            skipped.append(participant)
            continue
        imported[participant] = {"grade": grade, "comment": row[idx["Feedback comments"]]
                                 if "Feedback comments" in idx else None}
    return {"imported": imported, "skipped": skipped}


def _export_out(tmp_path) -> Path:
    """A grading output with every way of knowing (or not) who a student is."""
    out = tmp_path / "out"
    report.prepare_output(out)
    people = {  # student: (submission origin, extra result fields, total, status)
        "Ann_Lee": ("Ann Lee_111_assignsubmission_file_ps1.ipynb", {}, 5.0, "graded"),
        "Carla_Diaz": ("export.zip:sub/Carla Diaz_555_assignsubmission_file_/work.ipynb", {}, 3.5, "graded"),
        "bob": ("bob_12345_67890_ps1.ipynb", {}, 4.0, "graded"),
        "dora": ("dora_LATE_222_333_ps1-1.ipynb", {}, 1.0, "graded"),
        "eve": ("eve_ps1.ipynb", {"identity": {"lms": "moodle", "lms_id": "777", "lms_name": "=Eve, \"E\" Ng",
                                               "source_file": "x.ipynb"}}, 2.0, "graded"),
        "fay": ("fay_ps1.ipynb", {}, 5.0, "graded"),
        "gil": ("gil_999_888_ps1.ipynb", {}, 0.0, "error"),
        "hal": ("hal_12345_1_ps1.ipynb", {}, 3.0, "graded"),  # same Canvas id as bob
        "ivy": ("ivy_ps1.ipynb", {}, 4.5, "graded"),           # identity from run.json
    }
    for student, (origin, extra, total, status) in people.items():
        r = _fake_result(student, status=status, total=total)
        r.submission = origin
        data = json.loads(r.to_json())
        data.update(extra)
        (out / "results" / f"{student}.json").write_text(json.dumps(data))
        (out / "feedback" / f"{student}.html").write_text("<html></html>")
    rows = [["student", "assignment", "test-add", "test-scale", "test-mean", "total", "max_total", "status", "reason"]]
    for student, (_, _, total, status) in sorted(people.items()):
        rows.append([student, "ps1", "1", "2", str(total - 3), str(total).rstrip("0").rstrip("."), "5", status,
                     "all 3 tests passed"])
    (out / "grades.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    (out / "run.json").write_text(json.dumps({"assignment": "ps1", "identities": {
        "ivy": {"lms": "canvas", "lms_id": "4242", "lms_name": "Ivy Ito", "source_file": "ivy_ps1.ipynb"}}}))
    return out


def test_canvas_export_is_read_by_canvas_rules(tmp_path):
    out = _export_out(tmp_path)
    r = cli("export", "--lms", "canvas", out, "--assignment-name", "PS 1", "--canvas-assignment-id", "98765",
            check=False)
    assert r.returncode == 1  # somebody needs attention
    text = (out / "lms" / "canvas-ps1.csv").read_text()
    parsed = canvas_import(text)
    assert parsed["assignments"] == [{"title": "PS 1", "id": "98765", "points": "5"}]
    by_id = {s["id"]: s for s in parsed["students"]}
    assert by_id[4242]["grades"] == {"PS 1": "4.5"}                 # from run.json
    assert by_id[222]["grades"] == {"PS 1": "1"}                     # dora_LATE_222_...
    assert by_id[999]["grades"] == {"PS 1": ""}                      # grader error: no change in Canvas
    assert 12345 not in by_id                                        # bob and hal share it: neither row keeps it
    assert len(parsed["students"]) == 9                              # nobody dropped
    unmatched = {row["student"]: row for row in csv.DictReader(open(out / "lms" / "canvas-ps1-unmatched.csv"))}
    assert set(unmatched) == {"Ann_Lee", "Carla_Diaz", "eve", "fay", "gil", "bob", "hal"}
    assert "also the id of hal" in unmatched["bob"]["problem"] and "grader failed" in unmatched["gil"]["problem"]
    for student in unmatched:
        assert student in r.stderr
    assert "'=Eve" in text  # a name that a spreadsheet would run as a formula is neutralised


def test_moodle_export_is_read_by_moodle_rules(tmp_path):
    out = _export_out(tmp_path)
    before = datetime.now(timezone.utc).timestamp()
    r = cli("export", "--lms", "moodle", out, "--feedback-comments", "-o", tmp_path / "m.csv", check=False)
    assert r.returncode == 1
    parsed = moodle_worksheet_import((tmp_path / "m.csv").read_text(), max_grade=5, existing_modified=before - 30)
    assert parsed["imported"] == {"111": {"grade": 5.0, "comment": "all 3 tests passed"},
                                  "555": {"grade": 3.5, "comment": "all 3 tests passed"},
                                  "777": {"grade": 2.0, "comment": "all 3 tests passed"}}
    assert parsed["skipped"] == []
    unmatched = {row["student"] for row in csv.DictReader(open(tmp_path / "m-unmatched.csv"))}
    assert unmatched == {"bob", "dora", "fay", "gil", "hal", "ivy"}
    # a Moodle assignment out of 100 skips raw points above... nothing here; scaled points import as percentages
    cli("export", "--lms", "moodle", out, "--scale-to", "100", "-o", tmp_path / "m100.csv", check=False)
    scaled = moodle_worksheet_import((tmp_path / "m100.csv").read_text(), max_grade=100)
    assert scaled["imported"]["555"]["grade"] == 70.0 and scaled["imported"]["111"]["grade"] == 100.0


def test_plain_export_lists_everybody(tmp_path):
    out = _export_out(tmp_path)
    cli("export", "--lms", "csv", out, check=False)
    rows = {r["student"]: r for r in csv.DictReader(open(out / "lms" / "csv-ps1.csv"))}
    assert len(rows) == 9
    assert (rows["Carla_Diaz"]["lms"], rows["Carla_Diaz"]["lms_id"], rows["Carla_Diaz"]["name"]) == ("moodle", "555",
                                                                                                       "Carla Diaz")
    assert (rows["dora"]["lms"], rows["dora"]["lms_id"], rows["dora"]["points"]) == ("canvas", "222", "1")
    assert rows["fay"]["lms"] == "" and rows["fay"]["points"] == "5" and rows["gil"]["points"] == ""


def test_export_prefers_a_final_column_and_reports_missing_output(tmp_path):
    out = _export_out(tmp_path)
    text = (out / "grades.csv").read_text().splitlines()
    text = [text[0] + ",final"] + [line + ",2.5" for line in text[1:]]
    (out / "grades.csv").write_text("\n".join(text) + "\n")
    cli("export", "--lms", "csv", out, check=False)
    assert {r["points"] for r in csv.DictReader(open(out / "lms" / "csv-ps1.csv"))} == {"2.5", ""}
    r = cli("export", "--lms", "canvas", tmp_path / "nothing", check=False)
    assert r.returncode == 2 and "grades.csv" in r.stderr
