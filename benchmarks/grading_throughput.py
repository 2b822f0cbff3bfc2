"""Throughput of the class grader: grade N copies of a correct solution at --jobs 1 and --jobs 2.

    sudo .venv/bin/python benchmarks/grading_throughput.py                      # tiny test assignment
    sudo .venv/bin/python benchmarks/grading_throughput.py --copies 8 --jobs 1 2
    sudo .venv/bin/python benchmarks/grading_throughput.py --assignment 02-als  # a real course assignment

For a course assignment the "solution" submitted N times is the instructor's source notebook
(solutions/<a>/<a>.ipynb: its solution cells are complete; the grader puts the released test cells
back and nbgrader restores the hidden tests).  Prints, per --jobs, the wall time of the whole run,
the one-off set-up (template course + sandbox probe + worker fork server) and submissions per
minute with and without the set-up.  Every copy must pass every autograded test (manually graded
cells stay empty), else the run is reported as failed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from autograder.grading.options import Options, load_course_config  # noqa: E402
from autograder.grading.supervisor import grade  # noqa: E402


def make_test_submissions(work: Path, copies: int) -> tuple[Path, str]:
    from grading_fixtures.course import make_course, student_notebook, write

    course = make_course(work / "course")
    subs = work / "subs"
    for i in range(copies):
        write(student_notebook(), subs / f"student{i:03d}_ps1.ipynb")
    return course, "ps1"


def make_course_submissions(work: Path, course: Path, assignment: str, copies: int) -> Path:
    from nbgrader.coursedir import CourseDirectory

    cfg = load_course_config(course)
    source = course / CourseDirectory(config=cfg).source_directory / assignment
    notebooks = sorted(source.glob("*.ipynb"))
    if len(notebooks) != 1:
        raise SystemExit(f"{source}: expected one notebook, found {len(notebooks)}")
    subs = work / "subs"
    subs.mkdir(parents=True)
    for i in range(copies):
        shutil.copyfile(notebooks[0], subs / f"student{i:03d}_{assignment}.ipynb")
    return subs


def _all_tests_passed(r) -> bool:
    """graded, and every autograded cell has its full points (manually graded cells are empty)."""
    return r["status"] == "graded" and all(score == r["max_scores"][gid] for gid, score in r["scores"].items()
                                           if score is not None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assignment", help="a course assignment (default: the tiny test assignment)")
    ap.add_argument("--course-dir", default=str(REPO), help="course root for --assignment")
    ap.add_argument("--copies", type=int, default=6)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--timeout", type=int, help="seconds per cell (default: the course's)")
    ap.add_argument("--memory", type=int, default=2048)
    ap.add_argument("--isolation", default="auto")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="grading-bench-"))
    try:
        if args.assignment:
            course, assignment = Path(args.course_dir).resolve(), args.assignment
            subs = make_course_submissions(work, course, assignment, args.copies)
        else:
            course, assignment = make_test_submissions(work, args.copies)
            subs = work / "subs"
        print(f"assignment {assignment} ({course}), {args.copies} copies of a correct solution")
        rows = []
        for jobs in args.jobs:
            out = work / f"out-j{jobs}"
            opts = Options(assignment=assignment, submissions=str(subs), course_dir=str(course),
                           out_dir=str(out), jobs=jobs, timeout=args.timeout, memory_mb=args.memory,
                           isolation=args.isolation, force=True, verbose=False)
            t0 = time.monotonic()
            summary = grade(opts)
            wall = time.monotonic() - t0
            results = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
            full = sum(1 for r in results if _all_tests_passed(r))
            setup = summary.get("setup_seconds", 0.0)
            per_min = 60 * args.copies / wall
            steady = 60 * args.copies / max(wall - setup, 1e-9)
            rows.append((jobs, wall, setup, per_min, steady, full))
            print(f"--jobs {jobs}: {wall:6.1f} s wall ({setup:4.1f} s set-up, isolation {summary['isolation']}) "
                  f"-> {per_min:5.1f} submissions/min ({steady:5.1f}/min without set-up); "
                  f"{full}/{args.copies} passed every test")
            if full != args.copies:
                bad = [r for r in results if not _all_tests_passed(r)]
                print(f"  not full marks: {bad[0]['student']}: {bad[0]['status']} {bad[0]['reason'][:300]}")
        if len(rows) > 1:
            print(f"speed-up --jobs {rows[-1][0]} vs --jobs {rows[0][0]}: {rows[-1][4] / rows[0][4]:.2f}x (without set-up)")
        return 0 if all(r[5] == args.copies for r in rows) else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
