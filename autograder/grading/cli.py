"""Command line of the course autograder: ``python -m autograder COMMAND``.

``python -m autograder grade ASSIGNMENT SUBMISSIONS [options]`` grades a whole class: see
``--help`` and docs/grading.md.  ``python -m autograder demo`` is dispatched by
:mod:`autograder.__main__` to :mod:`autograder.course.demo`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from .deadlines import from_options
from .options import DEFAULT_NOTEBOOK_TIMEOUT, Options
from .shard import parse_spec
from .supervisor import OutputBusy, PreflightFailed, grade
from .types import STATUSES

TERM_COMMANDS = {  # command -> (module with main(argv), help)
    "merge": ("autograder.grading.merge", "merge the outputs of `grade --shard K/N` into one run's output"),
    "export": ("autograder.grading.lms_export", "write grades.csv as Canvas / Moodle / plain CSV for the LMS"),
    "similarity": ("autograder.grading.similarity", "report submissions that look alike (for a human, never a grade)"),
}
STATUS_HELP = "statuses in grades.csv:\n" + "".join(
    f"  {status:<18}" + text.replace("\n", "\n" + " " * 20) + "\n" for status, text in STATUSES.items())


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m autograder`` (``demo`` is listed for --help; see autograder.__main__)."""
    p = argparse.ArgumentParser(prog="python -m autograder", description="mf-course autograder")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="release the course and grade pretend students (see autograder/course/demo.py)",
                   add_help=False)
    g = sub.add_parser("grade", help="grade a whole class in parallel, in a sandbox",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=STATUS_HELP,
                       description="Runs nbgrader autograde + generate_feedback for every submission, each "
                                   "in a sandbox, and writes OUT/grades.csv, OUT/feedback/<student>.html and "
                                   "OUT/results/<student>.json. Reruns skip students already graded.")
    g.add_argument("assignment", help="assignment name, e.g. 02-als")
    g.add_argument("submissions", help="folder (nbgrader submitted/ layout or LMS export) or .zip")
    g.add_argument("--course-dir", help="course root (default: nearest folder with nbgrader_config.py, "
                                        "else the repository)")
    g.add_argument("--out", dest="out_dir", help="output folder (default: COURSE/grading/ASSIGNMENT)")
    g.add_argument("--jobs", "-j", type=int, default=1, help="students graded in parallel (default 1)")
    g.add_argument("--timeout", type=int, help="seconds per cell (default: the course config's, else 120)")
    g.add_argument("--notebook-timeout", type=int, default=DEFAULT_NOTEBOOK_TIMEOUT,
                   help=f"seconds for a whole notebook (default {DEFAULT_NOTEBOOK_TIMEOUT}); past it the notebook "
                        "is stopped, status timeout, the points earned so far stand")
    g.add_argument("--memory", dest="memory_mb", type=int, default=2048, help="kernel memory cap, MB (default 2048)")
    g.add_argument("--output-limit", dest="output_limit_mb", type=float, default=5.0,
                   help="output kept per notebook, MB (default 5)")
    g.add_argument("--max-procs", type=int, default=128, help="processes+threads of one kernel (default 128)")
    g.add_argument("--max-file", dest="fsize_mb", type=int, default=64, help="largest file a kernel may write, MB")
    g.add_argument("--disk", dest="disk_mb", type=int, default=256, help="kernel working directory size, MB")
    g.add_argument("--cpus", type=float, default=1.0, help="CPU quota of one kernel in cores (cgroup; default 1)")
    g.add_argument("--isolation", choices=["auto", "namespace", "user", "none"], default="auto",
                   help="sandbox strength (default auto = the strongest that works here)")
    g.add_argument("--sandbox-user", dest="user_prefix", default="mfgrade-sbx",
                   help="prefix of the sandbox users (created if missing; one per job)")
    g.add_argument("--allow-path", dest="allow_paths", action="append", default=[],
                   help="extra host path the kernel may read (repeatable)")
    g.add_argument("--forbid-import", dest="forbid_imports", action="append", default=[],
                   help="module students may not import (repeatable; adds to the defaults)")
    g.add_argument("--allow-import", dest="allow_imports", action="append", default=[],
                   help="module exempted from the forbidden list (repeatable)")
    g.add_argument("--student", dest="students", action="append", default=[], help="grade only this student")
    g.add_argument("--force", action="store_true", help="regrade everybody, ignoring earlier results")
    g.add_argument("--keep-work", action="store_true", help="keep the private work folders (debugging)")
    g.add_argument("--no-preflight", dest="preflight", action="store_false",
                   help="do not grade the instructor's solution first (experts: a broken set-up then gives "
                        "every student 0)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar with ETA on stderr (default: only when stderr is a terminal)")
    g.add_argument("--quiet", "-q", action="store_true")
    g.add_argument("--json", action="store_true", help="print the run summary as JSON")
    g.add_argument("--shard", metavar="K/N", help="grade only shard K (0-based) of N into --out; join the N "
                                                  "outputs with `merge` (deploy/README.md)")
    g.add_argument("--deadline", help="soft deadline, e.g. 2026-09-28T23:59: grade each student's newest version "
                                      "before it and their newest after it (docs/grading.md, Deadlines)")
    g.add_argument("--hard-deadline", help="versions after it count 0 (default: none)")
    g.add_argument("--late-policy", help="penalty of the late version: RATE%%/day or RATE%%/hour[,max=CAP%%], "
                                         "e.g. 10%%/day,max=50%% (default: none)")
    g.add_argument("--timezone", default="UTC", help="zone of times written without one: deadlines, zip entries, "
                                                     "timestamp.txt (IANA name, default UTC)")
    for name, (_, text) in TERM_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return p


def main(argv=None) -> int:
    """Run ``python -m autograder grade ...``; returns the exit status: 0, 1 if a student got ``error``, 2 on
    usage errors or when another run writes the same output folder, 3 if the preflight failed."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in TERM_COMMANDS:
        return importlib.import_module(TERM_COMMANDS[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "grade" and args.shard:
        try:
            k, _ = parse_spec(args.shard)
            if not args.out_dir:
                raise ValueError(f"--shard needs --out: every shard writes its own folder (e.g. --out out/shard-{k})")
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.command == "grade":
        try:
            from_options(args.deadline, args.hard_deadline, args.late_policy, args.timezone)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.jobs < 1 or args.notebook_timeout < 1:
            print("error: --jobs and --notebook-timeout must be >= 1", file=sys.stderr)
            return 2
        opts = Options(
            assignment=args.assignment, submissions=args.submissions, course_dir=args.course_dir,
            out_dir=args.out_dir, jobs=args.jobs, timeout=args.timeout, notebook_timeout=args.notebook_timeout,
            memory_mb=args.memory_mb, preflight=args.preflight, progress=args.progress,
            output_limit_mb=args.output_limit_mb, max_procs=args.max_procs, fsize_mb=args.fsize_mb,
            disk_mb=args.disk_mb, cpus=args.cpus, isolation=args.isolation, user_prefix=args.user_prefix,
            allow_paths=args.allow_paths, forbid_imports=args.forbid_imports,
            allow_imports=args.allow_imports, students=args.students, force=args.force,
            keep_work=args.keep_work, verbose=not args.quiet, shard=args.shard, deadline=args.deadline,
            hard_deadline=args.hard_deadline, late_policy=args.late_policy, timezone=args.timezone)
        try:
            summary = grade(opts)
        except KeyboardInterrupt:
            print("interrupted; finished grades are saved, rerun to continue", file=sys.stderr)
            return 130
        except (FileNotFoundError, OutputBusy) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except PreflightFailed as e:
            print(f"error: {e}", file=sys.stderr)
            return 3
        if args.json:
            print(json.dumps(summary, indent=1, sort_keys=True))
        else:
            print(f"{summary['submissions']} submissions ({summary['graded']} graded now, {summary['skipped']} "
                  f"unchanged) in {summary['seconds']} s, isolation {summary['isolation']}: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(summary["statuses"].items())))
            print(f"-> {summary['out_dir']}/grades.csv")
        return 1 if summary["statuses"].get("error") else 0
    print(f"error: run `python -m autograder {args.command}` (not through autograder.grading.cli)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
