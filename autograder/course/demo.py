"""The course's main job, part 2: release the course and grade a few pretend students.

    python -m autograder demo [--jobs 2] [--out grading/demo]

1. Releases every assignment with ``nbgrader generate_assignment`` into a scratch copy of the course
   and checks the result equals the committed ``assignments/``.
2. Builds pretend submissions from the released notebooks (:mod:`autograder.course.pretend`): the instructor's
   answers for every assignment (student ``key``), plus two students
   of 02-als with a classic bug each (regularisation missing from the normal equations; ``recommend``
   returning films the user already rated).
3. Grades them with the class grader (sandboxed, in parallel, :mod:`autograder.grading`) and prints the
   gradebook: points per assignment, and the feedback that names each bug.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from ..grading.options import Options
from ..grading.supervisor import grade
from .files import ROOT
from .notebooks import ASSIGNMENTS, release, release_path, solution_path
from .pretend import submission

# Two classic 02-als mistakes; the same entries are in tests/course_bugs/a02_als.py.
PRETEND_BUGS = {
    "bob": {"name": "regularisation missing from the normal equations", "cell": "solve_exact", "replace": [
        ("A = (W @ outer).reshape(n_rows, k, k) + Y.T @ Y + regularization * np.eye(k)",
         "A = (W @ outer).reshape(n_rows, k, k) + Y.T @ Y")]},
    "carol": {"name": "recommend returns items the user already has", "cell": "recommend",
              "replace": [("    scores[rows, cols] = -np.inf\n", "")]},
}
BUGGY_ASSIGNMENT = "02-als"


def _cells_equal(a, b) -> bool:
    def key(nb):
        return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]

    return key(a) == key(b)


def release_course(scratch: Path, names: list[str]) -> None:
    """Release every assignment into a scratch course and compare with the committed release."""
    shutil.copy(ROOT / "nbgrader_config.py", scratch / "nbgrader_config.py")
    shutil.copytree(ROOT / "solutions", scratch / "solutions")
    release(names, root=scratch)
    stale = [n for n in names if not _cells_equal(nbformat.read(release_path(n, scratch), 4),
                                                  nbformat.read(release_path(n), 4))]
    if stale:
        raise SystemExit(f"assignments/ is stale for {stale}: run `make release` and commit")
    print(f"released {len(names)} assignments; the committed assignments/ is up to date")


def main(argv=None) -> int:
    """``python -m autograder demo [--jobs N] [--out DIR] [--assignments ...]``: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m autograder demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "grading" / "demo"), help="where grades.csv etc. go")
    parser.add_argument("--assignments", nargs="+", default=ASSIGNMENTS)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mf-course-release-") as scratch:
        release_course(Path(scratch), args.assignments)

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    rows = []
    for name in args.assignments:
        submissions = out / "submissions" / name
        submissions.mkdir(parents=True)
        solution = nbformat.read(solution_path(name), as_version=4)
        released = nbformat.read(release_path(name), as_version=4)
        nbformat.write(submission(released, solution), submissions / f"key_{name}.ipynb")
        if name == BUGGY_ASSIGNMENT:
            for student, entry in PRETEND_BUGS.items():
                nbformat.write(submission(released, solution, entry), submissions / f"{student}_{name}.ipynb")
        options = Options(assignment=name, submissions=str(submissions), course_dir=str(ROOT),
                                   out_dir=str(out / name), jobs=args.jobs, verbose=False)
        summary = grade(options)
        with open(out / name / "grades.csv", newline="") as fh:
            rows += list(csv.DictReader(fh))
        print(f"graded {name}: {summary['submissions']} submission(s), isolation {summary['isolation']}")

    print(f"\nGradebook ({time.perf_counter() - start:.0f} s). Points out of the assignment's total; the "
          "written answers are graded by hand later, so even the key lacks their points here.")
    print(f"{'student':<8}{'assignment':<13}{'points':>12}  {'status':<10}reason")
    print("-" * 100)
    for row in rows:
        points = f"{float(row['total']):g} / {float(row['max_total']):g}"
        print(f"{row['student']:<8}{row['assignment']:<13}{points:>12}  {row['status']:<10}{row['reason'][:60]}")
    for row in rows:
        if row["student"] in PRETEND_BUGS:
            print(f"\nwhy {row['student']} lost points in {row['assignment']}: {row['reason'][:400]}")
    print(f"\ngrades.csv and one feedback HTML per student: {out}/<assignment>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
