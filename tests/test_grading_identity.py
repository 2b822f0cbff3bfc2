"""Every submitter gets exactly one row, and different people never merge (issue 9, item 3).

* Student ids keep the LMS ids (Moodle ``Ann Lee_111_...`` -> ``Ann_Lee-111``, Canvas ``login_12345_...`` ->
  ``login-12345``); names that reduce to the same id are told apart (:mod:`autograder.grading.identity`).
* A symbolic link, a folder named ``.ipynb``, a file that cannot be read and a submitter who handed in
  no notebook each get a row with status ``invalid`` and the reason.
* A regrade after one more file changes only that student's row and result file.

The root user reads every file, so "a file that cannot be read" is made in two ways that fail for root
too: a FIFO named ``*.ipynb`` (the grader never opens it: ``lstat`` says it is not a regular file; opening
it would block) and, in a .zip, a member whose bytes were changed after writing (reading it fails the
CRC-32 check).  The unit tests below use no root; the class runs go through the real CLI in the sandbox.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading_fixtures.course import make_course, student_notebook, write  # noqa: E402
from preconditions import require_sandbox  # noqa: E402

from autograder.grading.discovery import discover  # noqa: E402
from autograder.grading.identity import Person, assign_ids  # noqa: E402

PY = sys.executable
USER_PREFIX = "mfid-sbx"   # not the users of the other grading tests
NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
WRONG_MEAN = {"mean-solution": "def mean(xs):\n    return 0"}
ADD_WRONG = {"add-solution": "def add(a, b):\n    return a - b"}


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


def rows(out: Path) -> dict:
    with open(out / "grades.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


# --- unit: ids ------------------------------------------------------------------------------------------

def test_same_name_different_lms_ids_are_two_people(tmp_path):
    for name in ("Ann Lee_111_assignsubmission_file_ps1.ipynb", "Ann_Lee_222_assignsubmission_file_work.ipynb",
                 "annlee_12345_678_ps1.ipynb", "annlee_LATE_999_679_ps1.ipynb"):
        (tmp_path / name).write_bytes(NB)
    d = discover(tmp_path, "ps1")
    assert [s.student for s in d.submissions] == ["Ann_Lee-111", "Ann_Lee-222", "annlee-12345", "annlee-999"]
    late = d.submissions[3]
    assert (late.lms, late.lms_id, late.name, late.lms_late) == ("canvas", "999", "annlee", True)
    assert d.identities["Ann_Lee-111"]["files"] == ["Ann Lee_111_assignsubmission_file_ps1.ipynb"]
    assert d.collisions == []


def test_names_that_reduce_to_one_id_are_kept_apart(tmp_path):
    for name in ("ann lee.ipynb", "ann_lee.ipynb", "ann@lee.ipynb", "Dörte_ps1.ipynb", "Dõrte_ps1.ipynb"):
        (tmp_path / name).write_bytes(NB)
    d = discover(tmp_path, "ps1")
    ids = {s.name: s.student for s in d.submissions}
    assert len(set(ids.values())) == 5                         # five people, five ids
    assert ids["ann_lee"] == "ann_lee" and ids["ann@lee"] == "ann@lee"   # exact names keep theirs
    assert ids["ann lee"].startswith("ann_lee-") and ids["Dörte"] != ids["Dõrte"]
    assert {c["id"] for c in d.collisions} == {"ann_lee", "D_rte"}
    again = discover(tmp_path, "ps1")                          # the same ids every time
    assert {s.name: s.student for s in again.submissions} == ids


def test_a_suffixed_id_never_takes_someone_elses():
    a, b = Person(("name", "x y"), "x y"), Person(("name", "x_y"), "x_y")
    ids, _ = assign_ids([a, b])
    taken = Person(("name", ids[a.key]), ids[a.key])           # somebody really is called like that
    ids2, collisions = assign_ids([a, b, taken])
    assert len(set(ids2.values())) == 3 and ids2[taken.key] == ids[a.key] and ids2[a.key] != ids[a.key]
    assert len(collisions) == 1


# --- unit: files that are not notebooks ------------------------------------------------------------------

def _odd_folder(tmp: Path) -> Path:
    subs = tmp / "subs"
    subs.mkdir()
    (subs / "good_ps1.ipynb").write_bytes(NB)
    os.symlink(subs / "good_ps1.ipynb", subs / "sym_ps1.ipynb")
    os.symlink("/etc/shadow", subs / "shadow_ps1.ipynb")
    (subs / "dir_ps1.ipynb").mkdir()
    (subs / "dir_ps1.ipynb" / "inside.ipynb").write_bytes(NB)
    os.mkfifo(subs / "fifo_ps1.ipynb")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(subs / "sock_ps1.ipynb"))                       # open() of a socket fails (ENXIO), also for root
    s.close()
    (subs / "pdf_ps1.pdf").write_bytes(b"%PDF")                # handed in a PDF only
    (subs / "good_ps1.pdf").write_bytes(b"%PDF")               # an extra next to a notebook
    (subs / "readme.txt").write_text("a note by whoever downloaded the class")
    return subs


def test_every_odd_file_gives_its_submitter_a_row(tmp_path):
    d = discover(_odd_folder(tmp_path), "ps1")
    by = {s.student: s for s in d.submissions}
    assert sorted(by) == ["dir", "fifo", "good", "pdf", "shadow", "sock", "sym"]
    expected = {"sym": "symbolic link", "shadow": "symbolic link", "dir": "folder", "fifo": "FIFO",
                "sock": "socket", "pdf": "not an .ipynb file"}
    for student, text in expected.items():
        assert by[student].invalid and text in by[student].invalid, by[student].invalid
        assert by[student].data == b""                         # nothing was read through the link
    assert by["good"].invalid is None and by["good"].data == NB
    assert any("readme.txt" in n for n in d.ignored) and any("good_ps1.pdf" in n for n in d.ignored)


def test_unreadable_zip_member_and_zip_symlink(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("export/good_ps1.ipynb", NB)
        z.writestr("export/broken_ps1.ipynb", b"X" * 64 + NB)
        link = zipfile.ZipInfo("export/link_ps1.ipynb")
        link.create_system, link.external_attr = 3, (0o120777 << 16)
        z.writestr(link, "/etc/shadow")
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"X" * 64)] = ord("Y")                       # corrupt the member after its CRC was written
    archive.write_bytes(bytes(raw))
    d = discover(archive, "ps1")
    by = {s.student: s for s in d.submissions}
    assert sorted(by) == ["broken", "good", "link"]
    assert "could not be read" in by["broken"].invalid and "CRC" in by["broken"].invalid
    assert "symbolic link" in by["link"].invalid and by["good"].data == NB


def test_an_unreadable_newest_version_falls_back_to_the_previous_one(tmp_path):
    (tmp_path / "alice_ps1.ipynb").write_bytes(NB)
    os.utime(tmp_path / "alice_ps1.ipynb", (1e9, 1e9))
    os.mkfifo(tmp_path / "alice_ps1 (2).ipynb")               # newer, but not a file
    d = discover(tmp_path, "ps1")
    assert [(s.student, s.origin, s.invalid) for s in d.submissions] == [("alice", "alice_ps1.ipynb", None)]
    assert any("alice_ps1 (2).ipynb" in n and "FIFO" in n for n in d.ignored)


# --- the real CLI, in the sandbox ----------------------------------------------------------------------

GRADE_OPTS = ["--timeout", "5", "--memory", "1024", "--output-limit", "1", "--max-procs", "64",
              "--isolation", "namespace", "--sandbox-user", USER_PREFIX, "--jobs", "2", "-q"]


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    require_sandbox()
    root = tmp_path_factory.mktemp("identity")
    course = make_course(root / "course")
    subs = _odd_folder(root)
    write(student_notebook(), subs / "good_ps1.ipynb")
    write(student_notebook(), subs / "Ann Lee_111_assignsubmission_file_ps1.ipynb")
    write(student_notebook(WRONG_MEAN), subs / "Ann_Lee_222_assignsubmission_file_ps1.ipynb")
    write(student_notebook(ADD_WRONG), subs / "ann lee_ps1.ipynb")
    write(student_notebook(), subs / "ann_lee_ps1.ipynb")
    out = root / "out"
    r = cli("grade", "ps1", subs, "--course-dir", course, "--out", out, *GRADE_OPTS, "--json")
    return {"root": root, "course": course, "subs": subs, "out": out, "summary": json.loads(r.stdout)}


@needs_sandbox
def test_moodle_same_name_export_gives_two_rows(class_run):
    g = rows(class_run["out"])
    assert (g["Ann_Lee-111"]["total"], g["Ann_Lee-111"]["status"]) == ("5", "graded")
    assert (g["Ann_Lee-222"]["total"], g["Ann_Lee-222"]["test-mean"]) == ("3", "0")   # graded on its own
    ident = json.loads((class_run["out"] / "results" / "Ann_Lee-222.json").read_text())["identity"]
    assert ident == {"student": "Ann_Lee-222", "lms": "moodle", "lms_id": "222", "name": "Ann_Lee",
                     "source_file": "Ann_Lee_222_assignsubmission_file_ps1.ipynb",
                     "origin": "Ann_Lee_222_assignsubmission_file_ps1.ipynb"}
    run = json.loads((class_run["out"] / "run.json").read_text())
    assert run["identities"]["Ann_Lee-111"]["lms_id"] == "111" and run["identities"]["Ann_Lee-111"]["name"] == "Ann Lee"


@needs_sandbox
def test_a_collision_is_graded_under_two_ids_and_reported(class_run):
    g = rows(class_run["out"])
    spaced = next(s for s in g if s.startswith("ann_lee-"))
    assert (g["ann_lee"]["total"], g[spaced]["total"], g[spaced]["test-add"]) == ("5", "4", "0")
    run = json.loads((class_run["out"] / "run.json").read_text())
    (collision,) = run["collisions"]
    assert collision["id"] == "ann_lee"
    assert {p["name"]: p["student"] for p in collision["people"]} == {"ann_lee": "ann_lee", "ann lee": spaced}
    assert run["identities"][spaced]["source_file"] == "ann lee_ps1.ipynb"


@needs_sandbox
def test_symlink_folder_fifo_socket_and_pdf_each_give_an_invalid_row(class_run):
    g = rows(class_run["out"])
    for student, text in {"sym": "symbolic link", "shadow": "symbolic link", "dir": "a folder", "fifo": "FIFO",
                          "sock": "socket", "pdf": "pdf_ps1.pdf: not an .ipynb file"}.items():
        assert (g[student]["status"], g[student]["total"]) == ("invalid", "0"), student
        assert text in g[student]["reason"], g[student]["reason"]
        assert (class_run["out"] / "feedback" / f"{student}.html").is_file()
    assert "readme" not in g and g["good"]["status"] == "graded"
    assert len(g) == 11 and class_run["summary"]["statuses"]["invalid"] == 6
    page = (class_run["out"] / "feedback" / "shadow.html").read_text()
    assert "root:" not in page                                  # the link was never followed


@needs_sandbox
def test_corrupt_zip_member_gives_an_invalid_row(class_run, tmp_path):
    archive = tmp_path / "class.zip"
    good = (class_run["subs"] / "good_ps1.ipynb").read_bytes()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("export/good_ps1.ipynb", good)
        z.writestr("export/broken_ps1.ipynb", good)
    raw = bytearray(archive.read_bytes())
    second = raw.index(good, raw.index(good) + 1)
    raw[second + 10] ^= 1
    archive.write_bytes(bytes(raw))
    cli("grade", "ps1", archive, "--course-dir", class_run["course"], "--out", tmp_path / "out", *GRADE_OPTS)
    g = rows(tmp_path / "out")
    assert g["good"]["status"] == "graded" and g["good"]["total"] == "5"
    assert g["broken"]["status"] == "invalid" and "Bad CRC-32" in g["broken"]["reason"]


@needs_sandbox
def test_regrade_after_one_more_file_changes_only_that_row(class_run, tmp_path):
    out, subs = tmp_path / "out", tmp_path / "subs"
    shutil.copytree(class_run["out"], out, symlinks=True)
    shutil.copytree(class_run["subs"], subs, symlinks=True, ignore=lambda d, names: [n for n in names if n.startswith(
        ("fifo", "sock"))])
    os.mkfifo(subs / "fifo_ps1.ipynb")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(subs / "sock_ps1.ipynb"))
    s.close()
    before_csv = rows(out)
    before = {p.name: p.read_bytes() for p in (out / "results").iterdir()}
    newer = write(student_notebook(), subs / "Ann_Lee_222_assignsubmission_file_ps1-fixed.ipynb")
    os.utime(newer, (os.stat(newer).st_mtime + 60,) * 2)
    r = cli("grade", "ps1", subs, "--course-dir", class_run["course"], "--out", out, *GRADE_OPTS, "--json")
    summary = json.loads(r.stdout)
    assert summary["graded"] == 1 and summary["skipped"] == 10
    after_csv = rows(out)
    changed = {s for s in after_csv if after_csv[s] != before_csv.get(s)}
    assert changed == {"Ann_Lee-222"} and set(after_csv) == set(before_csv)
    assert after_csv["Ann_Lee-222"]["total"] == "5"
    after = {p.name: p.read_bytes() for p in (out / "results").iterdir()}
    assert {n for n in after if after[n] != before.get(n)} == {"Ann_Lee-222.json"}
    history = json.loads(after["Ann_Lee-222.json"])["history"]       # the first version is kept
    assert [e["total"] for e in history] == [3.0, 5.0]
    assert all((out / e["feedback"]).is_file() for e in history)
