"""A tiny nbgrader course used by the grading tests and the throughput benchmark.

``make_course(root)`` writes ``root/nbgrader_config.py`` and two assignments:

* ``ps1``: a locked setup cell, three solution cells (``add``, ``scale``, ``mean``) and three
  autograded test cells (1 + 2 + 2 points), each with hidden tests;
* ``ps2``: an unrelated one-test notebook (to submit to the wrong assignment).

``student_notebook(...)`` builds what a student would hand in for ps1: the released notebook
(hidden tests removed) with the solution cells filled in, optionally changed.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CONFIG = '''\
import os
c = get_config()  # noqa: F821
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.course_id = "grading-test"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.py", "*.log", "*.db"]
c.Execute.timeout = 30
'''

SOLUTIONS = {
    "add-solution": "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
    "scale-solution": "def scale(xs, k):\n    ### BEGIN SOLUTION\n    return [x * k for x in xs]\n    ### END SOLUTION",
    "mean-solution": "def mean(xs):\n    ### BEGIN SOLUTION\n    return sum(xs) / len(xs)\n    ### END SOLUTION",
}
TESTS = {
    "test-add": ("assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-1, 1) == 0\n"
                 "assert add(10, 5) == 15\n### END HIDDEN TESTS", 1),
    "test-scale": ("assert np.allclose(scale([1, 2], 2), [2, 4])\n### BEGIN HIDDEN TESTS\n"
                   "assert np.allclose(scale([1.5], 3), [4.5])\nassert not np.allclose(scale([1], 2), [3])\n"
                   "### END HIDDEN TESTS", 2),
    "test-mean": ("assert mean([1, 2, 3]) == 2\n### BEGIN HIDDEN TESTS\nassert np.isclose(mean([2, 5]), 3.5)\n"
                  "from xml.dom import minidom  # forbidden for students (notebook metadata), fine for tests\n"
                  "assert minidom.parseString('<a/>').documentElement.tagName == 'a'\n"
                  "### END HIDDEN TESTS", 2),
}
MAX_TOTAL = 5.0
GRADE_IDS = ["test-add", "test-scale", "test-mean"]
HIDDEN_MARKER = "assert add(10, 5) == 15"  # appears only in the hidden tests


def _meta(grade_id, *, grade=False, solution=False, locked=False, points=None):
    m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
         "solution": solution, "task": False}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


def source_notebook():
    cells = [new_markdown_cell("# PS1: three small functions"),
             new_code_cell("import numpy as np\nfrom autograder import feedback", metadata=_meta("setup", locked=True))]
    for sol, test in zip(SOLUTIONS, TESTS):
        cells.append(new_code_cell(SOLUTIONS[sol], metadata=_meta(sol, solution=True)))
        src, pts = TESTS[test]
        cells.append(new_code_cell(src, metadata=_meta(test, grade=True, locked=True, points=pts)))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["autograder"] = {"forbidden_imports": ["xml.dom"]}  # per-assignment policy
    return nb


def ps2_notebook():
    cells = [new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                           metadata=_meta("double-solution", solution=True)),
             new_code_cell("assert double(2) == 4", metadata=_meta("test-double", grade=True, locked=True, points=1))]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def make_course(root) -> Path:
    root = Path(root)
    (root / "solutions" / "ps1").mkdir(parents=True, exist_ok=True)
    (root / "solutions" / "ps2").mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG)
    nbformat.write(source_notebook(), str(root / "solutions" / "ps1" / "ps1.ipynb"))
    nbformat.write(ps2_notebook(), str(root / "solutions" / "ps2" / "ps2.ipynb"))
    return root


def _strip_solution(src):
    return re.sub(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", lambda m: m.group(1), src, flags=re.S)


def _strip_hidden(src):
    return re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", "", src, flags=re.S).rstrip()


def student_notebook(solutions=None, *, drop=(), tests=None, before=None, after=None, nb=None):
    """ps1 as a student hands it in.

    solutions: {solution grade_id: new source}; drop: grade ids of cells the student deleted;
    tests: {test grade_id: edited source}; before/after: {grade_id: [code sources]} extra cells.
    """
    if nb is None:
        nb = source_notebook()
    solutions, tests, before, after = solutions or {}, tests or {}, before or {}, after or {}
    cells = []
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        for src in before.get(gid, []):
            cells.append(new_code_cell(src))
        if gid in drop:
            continue
        if gid in SOLUTIONS:
            cell.source = solutions.get(gid, _strip_solution(SOLUTIONS[gid]))
        elif gid in TESTS:
            cell.source = tests.get(gid, _strip_hidden(TESTS[gid][0]))
        cells.append(cell)
        for src in after.get(gid, []):
            cells.append(new_code_cell(src))
    nb.cells = cells
    return nb


def write(nb, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def leftover_sandbox_pids(user_prefix: str, slots: int = 8) -> list[int]:
    """Processes of the sandbox users ``<user_prefix>0..`` that no running grading run has reserved: what a
    finished run left behind (a reserved user is another test session's run, busy now)."""
    import pwd

    from autograder.grading.users import user_pids, user_reserved
    pids = []
    for i in range(slots):
        try:
            uid = pwd.getpwnam(f"{user_prefix}{i}").pw_uid
        except KeyError:
            continue
        if not user_reserved(f"{user_prefix}{i}"):
            pids += user_pids(uid)
    return pids
