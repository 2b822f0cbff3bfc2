"""The course is valid: sources, solutions and released notebooks agree, and real nbgrader grades it right.

Per assignment (skipped while its files do not exist yet -- but failed with CI=true or as root, see
tests/preconditions.py):

* ``solutions/NN/NN.ipynb`` is what ``course_src/NN.py`` builds (cell sources + nbgrader metadata);
* in a temporary course directory, ``nbgrader generate_assignment`` regenerates exactly the committed
  ``assignments/NN/NN.ipynb`` (not stale);
* ONE ``nbgrader autograde`` call grades pretend students: the solution (twice: same score), the blank
  released notebook (0 automatic points, and the run does not abort), every BUG of
  ``tests/course_bugs/aNN_*.py`` (loses points; the failing test cell's output names the bug) and every
  ALTERNATIVE (full marks).

And the student bundle (``python -m autograder.course.bundle``) holds no solutions, no hidden tests and no
reference model, and ``import mflib, autograder.checks`` works from it.

Scores come from ``nbgrader.api.Gradebook`` (``nbgrader validate`` exits 0 even on failure).
Run just this with ``pytest tests/test_course.py -n 2``; deselect it with ``-m "not course"``.
"""
from __future__ import annotations

import subprocess
import sys
import zipfile

import nbformat
import pytest

from autograder.course.notebooks import ASSIGNMENTS, SOURCES, build_notebook, release_path, solution_path
from course_bugs import (ROOT, CourseDir, blank_submission, course_env, entry_label, load_corpus, normalise,
                         submission)
from preconditions import missing

pytestmark = pytest.mark.course

CORPUS = load_corpus()


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
    reason = _missing(name)
    if reason:
        missing(reason)
    corpus = CORPUS.get(name, {"bugs": [], "alternatives": [], "modules": []})
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

    # 2. pretend students
    solution_nb = course.solution_notebook()
    students = {"solution": submission(regenerated, solution_nb),
                "solution_again": submission(regenerated, solution_nb),
                "blank": blank_submission(regenerated)}
    roles = {}
    for kind, entries in (("bug", corpus["bugs"]), ("alt", corpus["alternatives"])):
        for index, entry in enumerate(entries):
            student = f"{kind}_{index:02d}"
            try:
                students[student] = submission(regenerated, solution_nb, entry)
            except ValueError as error:
                problems.append(f"corpus entry {entry_label(entry)} cannot be applied: {error}")
                continue
            roles[student] = (kind, entry)
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
    again = results["solution_again"]
    if again.cells != solution.cells:
        problems.append(f"grading the same submission twice gives different scores: {solution.cells} vs "
                        f"{again.cells}")
    blank = results["blank"]
    if blank.auto_score != 0:
        scored = [gid for gid, (score, _, code) in blank.cells.items() if code and score]
        problems.append(f"the blank released notebook gets {blank.auto_score} automatic points (cells {scored}): "
                        "every test cell should fail on an unanswered notebook")
    if len(blank.cells) != len(solution.cells):
        problems.append(f"the blank notebook was graded on {len(blank.cells)} cells instead of "
                        f"{len(solution.cells)}: did the autograde run abort?")

    for student, (kind, entry) in roles.items():
        graded = results[student]
        if kind == "alt":
            if graded.auto_score != graded.auto_max:
                lost = graded.lost()
                problems.append(f"ALTERNATIVE {entry_label(entry)} loses points in {lost} "
                                f"({graded.auto_score}/{graded.auto_max}):\n{_short(_messages(graded, lost))}")
            continue
        if graded.auto_score >= graded.auto_max:
            problems.append(f"BUG {entry_label(entry)} keeps full marks ({graded.auto_score}/{graded.auto_max})")
            continue
        expected = entry.get("feedback")
        said = _messages(graded, graded.lost())
        if expected and normalise(expected) not in normalise(said):
            problems.append(f"BUG {entry_label(entry)} loses points in {graded.lost()} but no failing cell says "
                            f"{expected!r}; they said:\n{_short(said)}")

    assert not problems, (f"{name}: {len(problems)} problem(s) (corpus: {corpus['modules'] or 'none'}; "
                          f"{len(corpus['bugs'])} bugs, {len(corpus['alternatives'])} alternatives)\n\n"
                          + "\n\n".join(problems))


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
