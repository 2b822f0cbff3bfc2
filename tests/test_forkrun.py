"""``tests/course_bugs/forkrun.py``, which runs the course's bug corpus, judges like nbgrader and can say no.

On the tiny ps1 notebook of the grading tests (add / scale / mean, hidden tests included): a caught bug stops
where its feedback appears, a bug that keeps full marks or names something else is reported as such, a test
cell that writes to stderr or runs past the cell limit loses its points, hidden tests run, a child never
changes the solution's run, and an entry that cannot be applied or never ends is an error.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course_bugs import course_env  # noqa: E402
from grading_fixtures.course import source_notebook  # noqa: E402

FORKRUN = Path(__file__).resolve().parent / "course_bugs" / "forkrun.py"
ADD = "return a + b"


def run(tmp_path, entries, cell_timeout=5, entry_timeout=60) -> dict:
    notebook = tmp_path / "ps1.ipynb"
    nbformat.write(source_notebook(), str(notebook))
    spec = {"notebook": str(notebook), "workdir": str(tmp_path), "cell_timeout": cell_timeout,
            "entry_timeout": entry_timeout, "entries": entries}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = subprocess.run([sys.executable, str(FORKRUN), str(tmp_path / "spec.json"), str(tmp_path / "out.json")],
                            capture_output=True, text=True, env=course_env(), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads((tmp_path / "out.json").read_text())


def entry(key, cell, old, new, kind="bug", feedback=None):
    return {"key": key, "kind": kind, "cell": cell, "replace": [[old, new]], "feedback": feedback}


def test_outcomes_follow_nbgrader(tmp_path):
    out = run(tmp_path, [
        entry("caught", "add-solution", ADD, "assert a != 1, 'add is wrong: it subtracts'\n    return a - b",
              feedback="It Subtracts"),
        entry("hidden_only", "add-solution", ADD, "return a + b if a > 0 else 99", feedback="AssertionError"),
        entry("other_message", "add-solution", ADD, "return a - b", feedback="regularization"),
        entry("not_a_bug", "mean-solution", "return sum(xs) / len(xs)", "return sum(xs) / len(xs)  # same"),
        entry("stderr", "scale-solution", "return [x * k for x in xs]",
              "import sys\n    print('careful', file=sys.stderr)\n    return [x * k for x in xs]"),
        entry("hangs", "scale-solution", "return [x * k for x in xs]", "while True:\n        pass"),
        entry("alternative", "mean-solution", "return sum(xs) / len(xs)",
              "import statistics\n    return statistics.fmean(xs)", kind="alt"),
        entry("broken_alternative", "scale-solution", "return [x * k for x in xs]", "return xs", kind="alt"),
        entry("no_such_cell", "nope", "x", "y"),
        entry("no_such_text", "add-solution", "return a * b", "return 0"),
    ], cell_timeout=2)
    solution, got = out["solution"], out["entries"]
    assert solution["lost"] == [] and solution["graded"] == ["test-add", "test-scale", "test-mean"]

    assert got["caught"]["lost"] == ["test-add"] and got["caught"]["stopped_early"]
    assert got["caught"]["graded"] == ["test-add"]  # stopped there: scale and mean never ran
    assert "add is wrong: it subtracts" in got["caught"]["said"]["test-add"]
    assert got["hidden_only"]["lost"] == ["test-add"] and got["hidden_only"]["stopped_early"]
    other = got["other_message"]
    assert other["lost"] == ["test-add"] and not other["stopped_early"] and len(other["graded"]) == 3
    assert got["not_a_bug"]["lost"] == [] and not got["not_a_bug"]["stopped_early"]
    assert got["stderr"]["lost"] == ["test-scale"] and "careful" in got["stderr"]["said"]["test-scale"]
    assert got["hangs"]["lost"] == ["test-scale"] and "timed out" in got["hangs"]["said"]["test-scale"]
    assert got["alternative"]["lost"] == [] and got["alternative"]["graded"] == ["test-mean"]  # from its cell on
    assert got["broken_alternative"]["lost"] == ["test-scale"]
    assert "no answer cell 'nope'" in got["no_such_cell"]["error"]
    assert "is not in cell 'add-solution'" in got["no_such_text"]["error"]


def test_an_entry_that_never_ends_is_killed_and_reported(tmp_path):
    out = run(tmp_path, [entry("forever", "mean-solution", "return sum(xs) / len(xs)",
                               "return sum(xs) / len(xs)\nimport time\ntime.sleep(600)")],
              cell_timeout=600, entry_timeout=3)
    assert "longer than 3 s" in out["entries"]["forever"]["error"]
    assert out["solution"]["lost"] == []


def test_an_error_in_the_harness_fails_that_entry_only(tmp_path):
    out = run(tmp_path, [entry("bad_feedback", "add-solution", ADD, "return a - b", feedback=5),
                         entry("fine", "add-solution", ADD, "return a - b", feedback="AssertionError")])
    assert out["entries"]["bad_feedback"]["error"].startswith("the harness failed: TypeError")
    assert out["entries"]["fine"]["lost"] == ["test-add"] and out["solution"]["lost"] == []
