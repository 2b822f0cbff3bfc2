"""The course is valid: sources, solutions and released notebooks agree, and real nbgrader grades it right.

Per assignment (skipped while its files do not exist yet -- but failed with CI=true or as root, see
tests/preconditions.py):

* ``solutions/NN/NN.ipynb`` is what ``course_src/NN.py`` builds (cell sources + nbgrader metadata);
* in a temporary course directory, ``nbgrader generate_assignment`` regenerates exactly the committed
  ``assignments/NN/NN.ipynb`` (not stale);
* ONE real ``nbgrader autograde`` call grades the solution (full marks, and its test cells print what the
  committed executed solution shows: grading is reproducible) and the blank released notebook (0 automatic
  points, and the run does not abort);
* every BUG of ``tests/course_bugs/aNN_*.py`` loses points and a failing test cell's output names the bug,
  and every ALTERNATIVE keeps full marks -- executed as nbgrader executes a student (solution notebook's test
  cells with hidden tests, the pretend student's answers, nbgrader's rule for a lost test cell) by
  ``tests/course_bugs/forkrun.py``, which runs the notebook once and forks at each entry's cell.

And the student bundle (``python -m autograder.course.bundle``) holds no solutions, no hidden tests and no
reference model, and ``import mflib, autograder.checks`` works from it.

Scores come from ``nbgrader.api.Gradebook`` (``nbgrader validate`` exits 0 even on failure).
Run just this with ``pytest tests/test_course.py -n 2``; deselect it with ``-m "not course"``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.course.notebooks import ASSIGNMENTS, SOURCES, build_notebook, release_path, solution_path
from course_bugs import (ROOT, CourseDir, blank_submission, course_env, entry_label, load_corpus,
                         submission)
from preconditions import missing

pytestmark = pytest.mark.course

CORPUS = load_corpus()
FORKRUN = Path(__file__).resolve().parent / "course_bugs" / "forkrun.py"


def _nbgrader_meta(cell) -> dict:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def _cell_name(cell, index: int) -> str:
    grade_id = _nbgrader_meta(cell).get("grade_id")
    return f"cell {index}" + (f" ({grade_id})" if grade_id else "")


def _compare_cells(expected, actual, what: str, ignore_meta=()) -> list[str]:
    """Differences in cell count, type, source and nbgrader metadata between two notebooks."""
    problems = []
    if len(expected.cells) != len(actual.cells):
        problems.append(f"{what}: {len(actual.cells)} cells, expected {len(expected.cells)}")
    for index, (want, got) in enumerate(zip(expected.cells, actual.cells)):
        name = _cell_name(want, index)
        if want.cell_type != got.cell_type:
            problems.append(f"{what}: {name} is {got.cell_type}, expected {want.cell_type}")
        if want.source != got.source:
            problems.append(f"{what}: {name} source differs:\n--- expected\n{want.source[:600]}\n--- found\n"
                            f"{got.source[:600]}")
        meta_want = {k: v for k, v in _nbgrader_meta(want).items() if k not in ignore_meta}
        meta_got = {k: v for k, v in _nbgrader_meta(got).items() if k not in ignore_meta}
        if meta_want != meta_got:
            problems.append(f"{what}: {name} nbgrader metadata differs: {meta_got} != {meta_want}")
        if len(problems) > 8:
            problems.append("...")
            break
    return problems


def _missing(name: str, need_release: bool = True) -> str | None:
    if not (SOURCES / f"{name}.py").exists():
        return f"course_src/{name}.py does not exist yet"
    if not solution_path(name).exists():
        return f"solutions/{name}/{name}.ipynb is not built yet (python -m autograder.course.notebooks build {name})"
    if need_release and not release_path(name).exists():
        return f"assignments/{name}/{name}.ipynb is not released yet (python -m autograder.course.notebooks release {name})"
    return None


# --------------------------------------------------------------------------------------------------
# sources -> solutions (cheap, no nbgrader)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_notebook_matches_its_source(name):
    reason = _missing(name, need_release=False)
    if reason:
        missing(reason)
    built = build_notebook(SOURCES / f"{name}.py")
    committed = nbformat.read(solution_path(name), as_version=4)
    problems = _compare_cells(built, committed, f"solutions/{name}")
    assert not problems, (f"solutions/{name} is stale: rebuild with `python -m autograder.course.notebooks build "
                          f"{name}` (and release it)\n" + "\n".join(problems))


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_solution_notebook_is_executed_and_clean(name):
    """The committed solution carries its outputs (for self-learners) and no error or stderr output."""
    reason = _missing(name, need_release=False)
    if reason:
        missing(reason)
    notebook = nbformat.read(solution_path(name), as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert any(c.get("outputs") for c in code), f"solutions/{name} has no outputs: build it with execution"
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"solutions/{name} {_cell_name(cell, index)} raised {output.ename}"
            if _nbgrader_meta(cell).get("grade"):
                assert not (output.output_type == "stream" and output.name == "stderr"), (
                    f"solutions/{name} test {_cell_name(cell, index)} writes to stderr (nbgrader gives it 0 "
                    f"points): {output.text[:300]}")


# --------------------------------------------------------------------------------------------------
# nbgrader: release not stale, solution / blank / bugs / alternatives autograded
# --------------------------------------------------------------------------------------------------
def _short(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _messages(graded, cells) -> str:
    """What the failing test cells said: stdout/stderr and the exception line (not the traceback)."""
    parts = []
    for grade_id in cells:
        notebook = graded.notebook
        if notebook is None:
            continue
        for cell in notebook.cells:
            if _nbgrader_meta(cell).get("grade_id") != grade_id or cell.cell_type != "code":
                continue
            for output in cell.get("outputs", []):
                if output.output_type == "stream":
                    parts.append(output.text)
                elif output.output_type == "error":
                    parts.append(f"{output.ename}: {output.evalue}")
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_assignment_autogrades(name, tmp_path):
    """Real nbgrader: the committed release is what generate_assignment makes today; ONE autograde call gives the
    solution full marks, the blank release 0 automatic points (without aborting), and the solution's test cells
    print what the committed (executed) solution notebook shows -- a check that grading is reproducible."""
    reason = _missing(name)
    if reason:
        missing(reason)
    committed_release = nbformat.read(release_path(name), as_version=4)
    course = CourseDir(tmp_path / "course", name)
    course.generate()
    problems = []

    # 1. assignments/ is what nbgrader generates from solutions/ today
    regenerated = course.release_notebook()
    stale = _compare_cells(regenerated, committed_release, f"assignments/{name}")
    if stale:
        problems.append(f"assignments/{name} is stale: run `python -m autograder.course.notebooks release {name}`\n"
                        + "\n".join(stale))

    # 2. pretend students: the solution and the blank release
    solution_nb = course.solution_notebook()
    students = {"solution": submission(regenerated, solution_nb), "blank": blank_submission(regenerated)}
    for student, notebook in students.items():
        course.submit(student, notebook)
    course.autograde()  # one nbgrader call for every student
    results = course.results(students)

    solution = results["solution"]
    if solution.auto_max <= 0:
        problems.append(f"{name} has no autograded test cells with points")
    if solution.auto_score != solution.auto_max:
        lost = solution.lost()
        problems.append(f"the solution notebook gets {solution.auto_score}/{solution.auto_max} automatic points; "
                        f"it loses points in {lost}:\n{_short(_messages(solution, lost))}")
    changed = _test_outputs_differ(nbformat.read(solution_path(name), as_version=4), solution.notebook)
    if changed:
        problems.append("grading the solution again prints other test output than the committed solution notebook "
                        "(unseeded randomness, or solutions/ is stale):\n" + "\n".join(changed[:5]))
    blank = results["blank"]
    if blank.auto_score != 0:
        scored = [gid for gid, (score, _, code) in blank.cells.items() if code and score]
        problems.append(f"the blank released notebook gets {blank.auto_score} automatic points (cells {scored}): "
                        "every test cell should fail on an unanswered notebook")
    if len(blank.cells) != len(solution.cells):
        problems.append(f"the blank notebook was graded on {len(blank.cells)} cells instead of "
                        f"{len(solution.cells)}: did the autograde run abort?")
    assert not problems, f"{name}: {len(problems)} problem(s)\n\n" + "\n\n".join(problems)


def _stream_text(cell) -> str:
    return "".join(o.text for o in cell.get("outputs", []) if o.output_type == "stream")


def _test_outputs_differ(committed, graded) -> list[str]:
    """Graded test cells whose printed text differs between two executions of the solution."""
    if graded is None:
        return ["the autograded solution notebook was not written"]
    printed = {_nbgrader_meta(c).get("grade_id"): _stream_text(c) for c in graded.cells
               if _nbgrader_meta(c).get("grade") and c.cell_type == "code"}
    changed = []
    for cell in committed.cells:
        grade_id = _nbgrader_meta(cell).get("grade_id")
        if grade_id in printed and printed[grade_id] != _stream_text(cell):
            changed.append(f"{grade_id}: {printed[grade_id][:300]!r} != {_stream_text(cell)[:300]!r}")
    return changed


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ASSIGNMENTS if n in CORPUS])
def test_corpus_bugs_lose_points_and_alternatives_keep_them(name, tmp_path):
    """Every BUG of ``tests/course_bugs/aNN_*.py`` loses points and a failing test cell names it; every
    ALTERNATIVE keeps full marks.  They run as nbgrader autograde runs a student (the solution notebook's test
    cells, hidden tests included, around the pretend student's answer cells, a test cell losing its points when
    it raises or writes to stderr), in one process that forks at each entry's cell (``course_bugs/forkrun.py``):
    the cells before it run once for all entries."""
    reason = _missing(name)
    if reason:
        missing(reason)
    corpus = CORPUS[name]
    entries, labels = [], {}
    for kind, listed in (("bug", corpus["bugs"]), ("alt", corpus["alternatives"])):
        for index, entry in enumerate(listed):
            key = f"{kind}_{index:02d}"
            labels[key] = (kind, entry)
            entries.append({"key": key, "kind": kind, "cell": entry.get("cell"), "feedback": entry.get("feedback"),
                            "replace": [list(pair) for pair in entry.get("replace", [])]})
    workdir = tmp_path / "work"
    workdir.mkdir()
    spec = {"notebook": str(solution_path(name)), "workdir": str(workdir), "cell_timeout": 120,
            "entry_timeout": 900, "entries": entries}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run([sys.executable, str(FORKRUN), str(tmp_path / "spec.json"), str(tmp_path / "out.json")],
                         capture_output=True, text=True, env=course_env(), cwd=workdir, timeout=3600)
    assert run.returncode == 0, f"forkrun failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    out = json.loads((tmp_path / "out.json").read_text())

    problems = []
    solution = out["solution"]
    if solution["lost"]:
        problems.append(f"the solution loses points in {solution['lost']} when run by forkrun:\n"
                        + _short("\n".join(solution["said"].values())))
    for key, (kind, entry) in labels.items():
        result = out["entries"].get(key, {"error": "no result"})
        label = f"{'BUG' if kind == 'bug' else 'ALTERNATIVE'} {entry_label(entry)}"
        if result.get("error"):
            problems.append(f"{label}: {result['error']}")
        elif kind == "alt":
            if result["lost"]:
                problems.append(f"{label} loses points in {result['lost']}:\n"
                                + _short("\n".join(result["said"].values())))
        elif not result["lost"]:
            problems.append(f"{label} keeps full marks")
        elif not result["stopped_early"]:
            problems.append(f"{label} loses points in {result['lost']} but no failing cell says "
                            f"{entry.get('feedback')!r}; they said:\n{_short(chr(10).join(result['said'].values()))}")
    assert not problems, (f"{name}: {len(problems)} problem(s) (corpus: {corpus['modules']}; {len(corpus['bugs'])} "
                          f"bugs, {len(corpus['alternatives'])} alternatives)\n\n" + "\n\n".join(problems))


# --------------------------------------------------------------------------------------------------
# the student bundle
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from autograder.course.bundle import build_bundle

    out = tmp_path_factory.mktemp("bundle")
    folder = build_bundle(out / "mf-course-student", make_zip=True)
    return folder


def test_bundle_has_no_solutions(bundle):
    from autograder.course.bundle import REFERENCE_MODULES

    files = [p for p in bundle.rglob("*") if p.is_file()]
    names = {p.relative_to(bundle).as_posix() for p in files}
    for required in ("mflib/__init__.py", "mflib/models/base.py", "mflib/models/popularity.py",
                     "autograder/__init__.py", "autograder/checks/__init__.py", "autograder/feedback.py",
                     "environment.yml", "pyproject.toml", "README.md"):
        assert required in names, f"the bundle lacks {required}"
    for module in REFERENCE_MODULES:
        assert module not in names, f"the bundle ships the reference model {module}"
    assert not any(n.startswith("solutions/") for n in names), "the bundle ships solution notebooks"
    assert not any(n.startswith(("tests/", "course_src/")) for n in names), "the bundle ships tests or sources"
    released = [n for n in names if n.startswith("assignments/") and n.endswith(".ipynb")]
    expected = sorted(f"assignments/{a}/{a}.ipynb" for a in ASSIGNMENTS if release_path(a).exists())
    assert sorted(released) == expected
    for path in files:
        data = path.read_bytes()
        for secret in (b"BEGIN HIDDEN TESTS", b"BEGIN SOLUTION", b"END HIDDEN TESTS"):
            assert secret not in data, f"{path.relative_to(bundle)} contains {secret.decode()!r}"
    archive = bundle.with_suffix(".zip")
    with zipfile.ZipFile(archive) as zf:
        assert sorted(n for n in zf.namelist() if not n.endswith("/")) == sorted(
            f"{bundle.name}/{n}" for n in names)


def test_bundle_imports_without_reference_models(bundle):
    code = (
        "import mflib, autograder, autograder.checks, mflib.evaluation, mflib.models.popularity\n"
        "from pathlib import Path\n"
        "assert Path(mflib.__file__).resolve().is_relative_to(Path.cwd().resolve()), mflib.__file__\n"
        "assert Path(autograder.checks.__file__).resolve().is_relative_to(Path.cwd().resolve())\n"
        "autograder.setup_notebook()\n"
        "assert not hasattr(mflib, 'BPR'), 'hasattr(mflib, \"BPR\") must be False in the bundle'\n"
        "try:\n"
        "    mflib.ALS\n"
        "except AttributeError as error:\n"
        "    print('no reference:', error)\n"
        "else:\n"
        "    raise SystemExit('mflib.ALS is importable from the bundle')\n"
        "try:\n"
        "    from mflib import WARP\n"
        "except ImportError as error:\n"
        "    assert 'reference model' in str(error), error\n"
        "else:\n"
        "    raise SystemExit('from mflib import WARP works in the bundle')\n"
        "import pkgutil, importlib\n"
        "for info in pkgutil.walk_packages(mflib.__path__, 'mflib.'):\n"
        "    importlib.import_module(info.name)\n"
        "print('ok')\n")
    env = course_env()
    env["PYTHONPATH"] = str(bundle)
    result = subprocess.run([sys.executable, "-c", code], cwd=bundle, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    assert "reference model" in result.stdout


def test_repository_root_is_the_course():
    assert (ROOT / "nbgrader_config.py").exists() and (ROOT / "autograder").is_dir()
