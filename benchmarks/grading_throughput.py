"""Throughput of the class grader: grade N copies of a correct solution at each --jobs, and say where the time goes.

    sudo .venv/bin/python benchmarks/grading_throughput.py                      # tiny test assignment
    sudo .venv/bin/python benchmarks/grading_throughput.py --copies 8 --jobs 1 2
    sudo .venv/bin/python benchmarks/grading_throughput.py --assignment 02-als --jobs 2 --markdown out.md

For a course assignment the "solution" submitted N times is the instructor's source notebook
(solutions/<a>/<a>.ipynb: its solution cells are complete; the grader puts the released test cells
back and nbgrader restores the hidden tests).  Every copy must pass every autograded test (manually
graded cells stay empty), else the run is reported as failed (exit status 1).

Per --jobs it prints one row: the run's wall time, its one-off costs (set-up = template course +
sandbox probe + worker fork server; preflight = grading the instructor's solution once), notebooks per
minute with and without them, and per notebook (medians over the copies, from each result's
``details.timing``): the notebook's own execution time (its cells), the supervisor's wall time for
that student, and the difference -- the grader's overhead per submission.  The machine (CPU model,
cores) and the load average before and after are printed with the table, since the machine may be
shared: figures taken under load are slower than on an idle machine.  ``--markdown OUT`` writes the
same as a Markdown file (docs/grading.md quotes it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from autograder.grading.options import load_course_config  # noqa: E402


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


def machine() -> str:
    """CPU model, logical CPUs, Python and OS, e.g. for the table's caption."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, Linux {platform.release()}, Python {platform.python_version()}"


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(argv: list, out: Path, jobs: int, copies: int) -> dict:
    """One grading run through the real command line (``python -m autograder grade ARGV --out OUT --jobs
    JOBS``, as an instructor runs it); the row of the table."""
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", *map(str, argv), "--out", str(out),
                          "--jobs", str(jobs), "--force", "--json", "-q"], capture_output=True, text=True, cwd=REPO)
    wall = time.monotonic() - t0
    if run.returncode not in (0, 1):
        raise SystemExit(f"the grading run failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    summary = json.loads(run.stdout)
    results = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    timing = [r["details"]["timing"] for r in results]
    one_off = summary.get("setup_seconds", 0.0) + (summary.get("preflight") or {}).get("seconds", 0.0)
    med = lambda key: statistics.median(t[key] for t in timing)  # noqa: E731
    return {"jobs": jobs, "wall": wall, "setup": summary.get("setup_seconds", 0.0),
            "preflight": (summary.get("preflight") or {}).get("seconds", 0.0),
            "per_min": 60 * copies / wall, "steady_per_min": 60 * copies / max(wall - one_off, 1e-9),
            "notebook_s": med("notebook_s"), "total_s": med("total_s"), "overhead_s": med("overhead_s"),
            "worker": {k: statistics.median(t["worker"].get(k, 0.0) for t in timing) for k in timing[0]["worker"]},
            "kernel_wait_s": statistics.median((r["details"].get("execution") or {}).get("kernel_wait_s") or 0.0
                                               for r in results),
            "passed": sum(1 for r in results if _all_tests_passed(r)), "isolation": summary["isolation"],
            "bad": next((f"{r['student']}: {r['status']} {r['reason'][:300]}" for r in results
                         if not _all_tests_passed(r)), None)}


def breakdown(rows: list[dict]) -> str:
    """Where the overhead goes: the worker's laps (medians) and how long nbgrader waited for the kernel."""
    keys = sorted({k for r in rows for k in r["worker"]})
    lines = ["| `--jobs` | " + " | ".join(keys) + " | of which waiting for the kernel |",
             "|---" * (len(keys) + 2) + "|"]
    for r in rows:
        lines.append(f"| {r['jobs']} | " + " | ".join(f"{r['worker'].get(k, 0.0):.2f}" for k in keys)
                     + f" | {r['kernel_wait_s']:.2f} |")
    return "\n".join(lines)


def table(rows: list[dict], copies: int) -> str:
    lines = ["| `--jobs` | wall s | set-up s | preflight s | notebooks/min | notebooks/min after set-up | "
             "notebook's own s | grader total s | overhead s | all tests passed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['jobs']} | {r['wall']:.1f} | {r['setup']:.1f} | {r['preflight']:.1f} | {r['per_min']:.1f} | "
                     f"{r['steady_per_min']:.1f} | {r['notebook_s']:.2f} | {r['total_s']:.2f} | {r['overhead_s']:.2f} | "
                     f"{r['passed']}/{copies} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assignment", help="a course assignment (default: the tiny test assignment)")
    ap.add_argument("--course-dir", default=str(REPO), help="course root for --assignment")
    ap.add_argument("--copies", type=int, default=6)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--timeout", type=int, help="seconds per cell (default: the course's)")
    ap.add_argument("--memory", type=int, default=2048)
    ap.add_argument("--isolation", default="auto")
    ap.add_argument("--markdown", metavar="OUT", help="also write the table (with machine and load) to OUT")
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
        load_before = load()
        print(f"assignment {assignment} ({course}), {args.copies} copies of a correct solution")
        print(f"machine: {machine()}; load average (1/5/15 min) {load_before}", flush=True)
        rows = []
        grade_argv = [assignment, subs, "--course-dir", course, "--memory", args.memory, "--isolation", args.isolation]
        if args.timeout:
            grade_argv += ["--timeout", args.timeout]
        for jobs in args.jobs:
            row = measure(grade_argv, work / f"out-j{jobs}", jobs, args.copies)
            rows.append(row)
            print(f"--jobs {jobs}: {row['wall']:.1f} s, isolation {row['isolation']}, worker medians "
                  + ", ".join(f"{k} {v:.2f}" for k, v in row["worker"].items()), flush=True)
            if row["bad"]:
                print(f"  not full marks: {row['bad']}")
        load_after = load()
        command = " ".join(["benchmarks/grading_throughput.py", *(argv if argv is not None else sys.argv[1:])])
        text = (f"Grading throughput, `{assignment}`, {args.copies} copies of the solution, written by "
                f"`{command}`.\n\n"
                f"Machine: {machine()}. Load average (1/5/15 min) {load_before} before, {load_after} after.\n\n"
                + table(rows, args.copies) + "\n\n"
                "notebook's own s = the cells' execution time; grader total s = the supervisor's wall time for one "
                "student; overhead s = the difference (medians over the copies). Set-up and preflight are paid "
                "once per run.\n\nThe worker's laps (seconds, medians; autograde_s includes the notebook's own "
                "time):\n\n" + breakdown(rows) + "\n")
        print()
        print(text)
        if args.markdown:
            Path(args.markdown).write_text(text)
            print(f"-> {args.markdown}")
        return 0 if all(r["passed"] == args.copies for r in rows) else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
