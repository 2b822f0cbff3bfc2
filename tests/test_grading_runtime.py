"""The grader's run time, through the real CLI in the real sandbox (needs root + namespaces, like
tests/test_grading.py; with CI=true or as root a missing sandbox fails these tests):

* ``--notebook-timeout``: a correct notebook with three ``time.sleep(100)`` cells stops at the budget,
  status ``timeout``, and keeps the points it earned before;
* two grading runs of one class at the same time, into two folders, both grade correctly, use their
  own sandbox users, cgroups and work folders, and leave nothing behind; a third run into a folder
  that is being written is refused;
* the progress bar goes to stderr only: stdout and grades.csv are the same with and without it;
* preflight: the instructor's solution is graded first and reused while nothing changed; a solution
  that fails, or a virtualenv that imports the course packages from another copy than the sandbox
  shows, stops the run before any student with a diagnosis, and no student gets a grade;
* every result records ``timing: {total_s, notebook_s, overhead_s}``.

The tiny course of :mod:`tests.grading_fixtures.course` is used (three tests, 1 + 2 + 2 points).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading_fixtures.course import leftover_sandbox_pids, make_course, student_notebook, write  # noqa: E402
from preconditions import require_sandbox  # noqa: E402

from autograder.grading.cgroups import grading_cgroups  # noqa: E402
from autograder.grading.runs import OutputLock  # noqa: E402

PY = sys.executable
REPO = Path(__file__).resolve().parent.parent
USER_PREFIX = "mfrt-sbx"   # not the users of the other sandbox tests, whose leftover checks must not see ours
BUDGET = 20
GRADE_OPTS = ["--timeout", "30", "--notebook-timeout", str(BUDGET), "--memory", "1024", "--output-limit", "1",
              "--max-procs", "64", "--isolation", "namespace", "--sandbox-user", USER_PREFIX, "--jobs", "2"]
SLEEP = "import time\ntime.sleep(100)"
EXPECTED = {  # student: (status, (test-add, test-scale, test-mean))
    "alice": ("graded", (1, 2, 2)),
    "bob": ("graded", (1, 2, 0)),
    "sleepy": ("timeout", (1, 0, 0)),
}


def cli(*args, cwd=None, popen=False):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1",
               PATH=os.pathsep.join([str(Path(PY).parent), os.environ.get("PATH", "")]))
    argv = [PY, "-m", "autograder", "grade", *map(str, args)]
    if popen:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def results(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}


def sandbox_user_pids() -> list:
    return leftover_sandbox_pids(USER_PREFIX)


def cgroups_of(run_id: str) -> list:
    return grading_cgroups(f"mfgrade-{run_id}")


def summary_line(stdout: str, out: Path) -> str:
    return re.sub(r" in [0-9.]+ s,", " in N s,", stdout.replace(str(out), "OUT"))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The class graded twice at the same time into two folders: A with the progress bar forced on and
    the preflight, B with --no-progress and --no-preflight; while A runs, C tries A's folder."""
    require_sandbox()
    root = tmp_path_factory.mktemp("runtime")
    course = make_course(root / "course")
    subs = root / "subs"
    write(student_notebook(), subs / "alice_ps1.ipynb")
    write(student_notebook({"mean-solution": "def mean(xs):\n    return 0"}), subs / "bob_ps1.ipynb")
    write(student_notebook(after={"test-add": [SLEEP], "test-scale": [SLEEP], "test-mean": [SLEEP]}),
          subs / "sleepy_ps1.ipynb")
    common = ["ps1", subs, "--course-dir", course, *GRADE_OPTS]
    t0 = time.monotonic()
    a = cli(*common, "--out", root / "A", "--progress", popen=True)
    b = cli(*common, "--out", root / "B", "--no-progress", "--no-preflight", popen=True)
    lock = OutputLock(root / "A", "test").path
    while a.poll() is None and time.monotonic() - t0 < 120 and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.1)
    c = cli(*common, "--out", root / "A")          # A is running: refused
    out_a, err_a = a.communicate(timeout=900)
    out_b, err_b = b.communicate(timeout=900)
    seconds = time.monotonic() - t0
    runs = {name: json.loads((root / name / "run.json").read_text()) for name in ("A", "B")}
    leftovers = {"pids": sandbox_user_pids(),
                 "cgroups": [p for r in runs.values() for p in cgroups_of(r["run_id"])],
                 "work": [p for r in runs.values() for p in Path("/tmp").glob(f"mfg-{r['run_id']}-*")]}
    return {"root": root, "course": course, "subs": subs, "a": (a.returncode, out_a, err_a),
            "b": (b.returncode, out_b, err_b), "c": c, "runs": runs, "leftovers": leftovers, "seconds": seconds}


def test_two_concurrent_runs_both_grade_correctly(two_runs):
    root = two_runs["root"]
    for name in ("a", "b"):
        code, out, err = two_runs[name]
        assert code == 0, out + err
    for folder in ("A", "B"):
        got = results(root / folder)
        assert set(got) == set(EXPECTED)
        for student, (status, scores) in EXPECTED.items():
            r = got[student]
            assert r["status"] == status, (folder, student, r["reason"])
            assert tuple(r["scores"][g] for g in ("test-add", "test-scale", "test-mean")) == scores, r["reason"]
    assert (root / "A" / "grades.csv").read_bytes() == (root / "B" / "grades.csv").read_bytes()
    rows = list(csv.DictReader(open(root / "A" / "grades.csv")))
    assert [r["student"] for r in rows] == ["alice", "bob", "sleepy"]


def test_two_concurrent_runs_have_their_own_users_cgroups_and_folders_and_leave_nothing(two_runs):
    a, b = two_runs["runs"]["A"], two_runs["runs"]["B"]
    assert a["run_id"] != b["run_id"]
    assert len(a["sandbox_users"]) == len(b["sandbox_users"]) == 4   # two per job slot
    assert not set(a["sandbox_users"]) & set(b["sandbox_users"]), (a["sandbox_users"], b["sandbox_users"])
    assert all(u.startswith(USER_PREFIX) for u in a["sandbox_users"] + b["sandbox_users"])
    assert two_runs["leftovers"] == {"pids": [], "cgroups": [], "work": []}


def test_a_second_run_into_the_same_folder_is_refused(two_runs):
    c = two_runs["c"]
    assert c.returncode == 2, c.stdout + c.stderr
    assert "another grading run (pid" in c.stderr and "is writing" in c.stderr and "--out" in c.stderr


def test_notebook_budget_stops_three_sleeps_and_keeps_earlier_points(two_runs):
    for folder in ("A", "B"):
        r = results(two_runs["root"] / folder)["sleepy"]
        assert r["status"] == "timeout" and r["total"] == 1 and r["scores"]["test-add"] == 1
        assert f"the notebook ran out of its {BUDGET} s budget (--notebook-timeout)" in r["reason"]
        assert "later cells not run, earlier points kept" in r["reason"]
        timing = r["details"]["timing"]
        assert BUDGET - 0.5 <= timing["notebook_s"] <= BUDGET + 10, timing   # not 3 x 100 s
        assert timing["total_s"] < BUDGET + 60, timing
        assert r["details"]["execution"]["budget_hit"] is True
    assert two_runs["seconds"] < 300 + 2 * 60  # the three sleeps alone would take 300 s


def test_every_result_records_its_timing(two_runs):
    for folder in ("A", "B"):
        for student, r in results(two_runs["root"] / folder).items():
            t = r["details"]["timing"]
            assert t["total_s"] > t["notebook_s"] > 0, (student, t)
            assert abs(t["total_s"] - t["notebook_s"] - t["overhead_s"]) < 0.01
            assert {"autograde_s", "feedback_s"} <= set(t["worker"]), t


def test_the_progress_bar_is_on_stderr_only(two_runs):
    root = two_runs["root"]
    _, out_a, err_a = two_runs["a"]
    _, out_b, err_b = two_runs["b"]
    bar = re.compile(r"ps1: \d/3 .*nb")
    assert bar.search(err_a) and re.search(r"ps1: 3/3 .*nb", err_a), err_a[-2000:]   # forced on, with its count
    assert not bar.search(err_b), err_b[-2000:]                                       # --no-progress
    assert summary_line(out_a, root / "A") == summary_line(out_b, root / "B")
    assert not bar.search(out_a) and "nb/s" not in out_a and "s/nb" not in out_a


def test_preflight_runs_first_and_is_reused_when_nothing_changed(two_runs, tmp_path):
    assert two_runs["runs"]["A"]["preflight"]["status"] == "passed"
    assert two_runs["runs"]["B"]["preflight"] == {"status": "skipped (--no-preflight)"}
    record = json.loads((two_runs["root"] / "A" / "preflight.json").read_text())
    assert record["passed"] and record["total"] == record["max_total"] == 5
    out = tmp_path / "again"
    shutil.copytree(two_runs["root"] / "A", out)
    subs = tmp_path / "subs"
    shutil.copytree(two_runs["subs"], subs)
    write(student_notebook(), subs / "carol_ps1.ipynb")
    r = cli("ps1", subs, "--course-dir", two_runs["course"], *GRADE_OPTS, "--out", out, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert summary["preflight"] == {"status": "reused", "seconds": 0.0}
    assert summary["graded"] == 1 and summary["skipped"] == 3
    assert "preflight: reused" in r.stderr and not re.search(r"ps1: \d/1 .*nb", r.stderr)  # no terminal: no bar


def _no_student_graded(out: Path):
    assert not (out / "grades.csv").exists()
    assert list((out / "results").glob("*.json")) == [] if (out / "results").is_dir() else True
    assert not json.loads((out / "preflight.json").read_text())["passed"]


def test_preflight_refuses_a_solution_that_fails_in_the_sandbox(tmp_path):
    """The instructor's solution reads a file of the course folder: fine on the host (where the template's
    reference answers are recorded), missing inside the sandbox -- so every student would lose the points."""
    require_sandbox()
    course = make_course(tmp_path / "course")
    data = course / "extra" / "weights.txt"
    data.parent.mkdir()
    data.write_text("1")
    source = course / "solutions" / "ps1" / "ps1.ipynb"
    nb = nbformat.read(source, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "add-solution")
    cell.source = cell.source.replace("return a + b", f"return a + b * int(open({str(data)!r}).read())")
    nbformat.write(nb, str(source))
    write(student_notebook(), tmp_path / "subs" / "alice_ps1.ipynb")
    r = cli("ps1", tmp_path / "subs", "--course-dir", course, *GRADE_OPTS, "--out", tmp_path / "out")
    assert r.returncode == 3, r.stdout + r.stderr
    message = " ".join(r.stderr.split())
    assert "preflight failed: the instructor's solution" in message and "got 4/5" in message
    assert "test-add 0/1" in message and "no student was graded" in message
    assert "diagnosis: the solution could not read a file inside the sandbox" in message
    assert "--allow-path" in message and "test-add (FileNotFoundError" in message
    _no_student_graded(tmp_path / "out")


def test_preflight_explains_a_virtualenv_that_imports_another_copy_of_the_course(tmp_path):
    """The grader runs from a copy of the course packages (the current folder comes first on sys.path), so
    the sandbox shows that copy; the kernel's interpreter (``python -I``) imports the virtualenv's editable
    install of this repository instead, which the sandbox does not show: no kernel can start."""
    require_sandbox()
    copy = tmp_path / "copy"
    for package in ("autograder", "mflib"):
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    course = make_course(tmp_path / "course")
    write(student_notebook(), tmp_path / "subs" / "alice_ps1.ipynb")
    r = cli("ps1", tmp_path / "subs", "--course-dir", course, *GRADE_OPTS, "--out", tmp_path / "out", cwd=copy)
    assert r.returncode == 3, r.stdout + r.stderr
    message = " ".join(r.stderr.split())
    assert "preflight failed" in message and "no student was graded" in message
    assert (f"inside the sandbox the kernel cannot import autograder: the virtualenv's install of autograder "
            f"points at {REPO}, not this course's copy at {copy}") in message, r.stderr
    assert "No module named 'autograder'" in r.stderr  # from the kernel log
    _no_student_graded(tmp_path / "out")


# --- without the sandbox ----------------------------------------------------------------------------

def test_an_output_folder_is_locked_by_one_run_at_a_time(tmp_path):
    from autograder.grading.runs import OutputBusy

    first = OutputLock(tmp_path / "out", "run-1")
    first.acquire()
    try:
        with pytest.raises(OutputBusy, match=rf"another grading run \(pid {os.getpid()}, run run-1\) is writing"):
            OutputLock(tmp_path / "out" / ".." / "out", "run-2").acquire()   # the same folder, spelled otherwise
        OutputLock(tmp_path / "other", "run-2").acquire()                  # another folder: fine
    finally:
        first.release()
    with OutputLock(tmp_path / "out", "run-3"):
        pass


def test_cached_feedback_templates_render_the_same_page():
    """The fork server's Jinja bytecode cache (autograder.grading.warmup) changes how fast nbgrader's feedback
    template loads, not what it renders."""
    from nbconvert.exporters import HTMLExporter
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor

    from autograder.grading import warmup

    nb = student_notebook()
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata["nbgrader"].update(score=1.0)
    resources = {"nbgrader": {"notebook": "ps1", "score": 4.0, "max_score": 5.0, "late_penalty": 0}}
    pages = []
    for exporter_class in (warmup.CachedHTMLExporter, HTMLExporter, warmup.CachedHTMLExporter):
        exporter = exporter_class(config=warmup.feedback_template_config())
        exporter.register_preprocessor(CSSHTMLHeaderPreprocessor, enabled=True)
        pages.append(exporter.from_notebook_node(nb, resources={k: dict(v) for k, v in resources.items()})[0])
    assert pages[0] == pages[1] == pages[2] and "Score: 4.0 / 5.0" in pages[0]
    assert warmup.TEMPLATE_BYTECODE.store   # filled (by the import's warm-up and these renders)
