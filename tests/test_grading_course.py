"""The real course through the real grading command: ``python -m autograder grade`` on 01-svd-sgd and 07-beyond.

The other grading tests use a tiny made-up course.  Here the sandbox, the recorded reference answers that
replace ``mflib``'s reference models in the kernel (:mod:`autograder.grading.record` / ``replay``), the
preflight and the feedback pages meet the course's own hidden tests: the instructor's key gets every automatic
point, and corpus bugs whose hidden tests compare with the (replayed) reference lose points with the message
that names them.
"""
from __future__ import annotations

import csv
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course_bugs import ROOT, course_env, load_corpus, normalise  # noqa: E402
from preconditions import require_sandbox  # noqa: E402

from autograder.course.notebooks import release_path, solution_path  # noqa: E402
from autograder.course.pretend import submission  # noqa: E402

pytestmark = [pytest.mark.course, pytest.mark.slow]
USER_PREFIX = "mfcrs-sbx"   # not the users of the other grading tests
CORPUS = load_corpus()
BUGS = {"01-svd-sgd": ["global mean missing from the prediction"],
        "07-beyond": ["fold-in without the regularization",
                      "items solved from the previous iteration's users (Jacobi instead of alternating)"]}


def _bug(name: str, label: str) -> dict:
    found = [b for b in CORPUS[name]["bugs"] if b["name"].startswith(label)]
    assert len(found) == 1, f"{name}: no single corpus bug named {label!r}"
    return found[0]


@pytest.mark.parametrize("name", sorted(BUGS))
def test_the_course_grades_right_through_the_sandbox(name, tmp_path):
    require_sandbox()
    solution = nbformat.read(solution_path(name), as_version=4)
    released = nbformat.read(release_path(name), as_version=4)
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(submission(released, solution), subs / f"key_{name}.ipynb")
    bugs = {f"bug{i}": _bug(name, label) for i, label in enumerate(BUGS[name])}
    for student, entry in bugs.items():
        nbformat.write(submission(released, solution, entry), subs / f"{student}_{name}.ipynb")
    out = tmp_path / "out"
    env = course_env()
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", name, str(subs), "--course-dir", str(ROOT),
                          "--out", str(out), "--jobs", "2", "--sandbox-user", USER_PREFIX, "--no-progress"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1500)
    assert run.returncode == 0, f"grade exited {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    with open(out / "grades.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"key", *bugs}
    key = rows["key"]
    assert key["status"] == "graded" and re.match(r"all \d+ tests passed", key["reason"]), key
    preflight = json.loads((out / "preflight.json").read_text())
    assert preflight["passed"] is True, preflight
    for student, entry in bugs.items():
        row = rows[student]
        assert row["status"] == "graded" and float(row["total"]) < float(key["total"]), (entry["name"], row)
        page = html.unescape(re.sub(r"<[^>]+>", " ", (out / "feedback" / f"{student}.html").read_text()))
        assert normalise(entry["feedback"]) in normalise(page), (
            f"{entry['name']}: the feedback page does not say {entry['feedback']!r}; the reason was {row['reason']}")
        assert "BEGIN HIDDEN TESTS" not in page
