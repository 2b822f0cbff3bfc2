"""Preflight: grade the instructor's own solution before any student, in the same sandbox, same options.

A grading set-up can be broken in ways that give every student 0 (the virtualenv imports the course
packages from another copy than the one the sandbox shows, a data folder the kernel cannot see, a
limit too tight for the reference solution, a hidden test that fails).  So before the first student
the supervisor grades the assignment's source notebook -- solutions and hidden tests included, exactly
as nbgrader's template has it -- like a submission (:func:`run_preflight`).  Unless every autograded
test gets its full points with status ``graded``, the run stops before any student is graded
(:class:`PreflightFailed`, exit status 3) with a :func:`diagnosis` read from the kernel log, the
worker's log and the failing tests' messages.

The result is kept in ``OUT/preflight.json``; a passed preflight is reused while its key -- the
students' cache key of the source notebook (assignment source, course config, grader version,
grading options) plus where this interpreter and the kernel's interpreter import the course packages
from -- is unchanged, so an unchanged rerun does not pay for it again.  ``--no-preflight`` skips it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from ..course.files import atomic_write
from .discovery import Submission
from .render import fmt_score
from .types import Result

__all__ = ["PreflightFailed", "PREFLIGHT_STUDENT", "preflight_path", "run_preflight", "full_marks_problems",
           "diagnosis", "import_origins"]

PREFLIGHT_STUDENT = "__preflight__"   # never a student id (discovery strips leading underscores)
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_VIEW_CODE = ("import importlib.util, json, sys\nout = {}\nfor name in sys.argv[1:]:\n"
              "    try:\n        spec = importlib.util.find_spec(name)\n"
              "    except (ImportError, ValueError) as e:\n        spec = None\n"
              "    out[name] = None if spec is None else (list(spec.submodule_search_locations or []) or "
              "[spec.origin])[0]\nprint(json.dumps(out))")


class PreflightFailed(RuntimeError):
    """The instructor's solution did not get full marks in the sandbox; the message says why."""


def preflight_path(out: Path) -> Path:
    """``OUT/preflight.json``."""
    return Path(out) / "preflight.json"


def import_origins(modules, isolated_interpreter: bool) -> dict:
    """Where each of ``modules`` is imported from: by this process, or (``isolated_interpreter``) by
    ``python -I`` -- the kernel's view, which ignores the current folder and PYTHONPATH."""
    if not isolated_interpreter:
        out = {}
        for name in modules:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            out[name] = None if spec is None else (list(spec.submodule_search_locations or []) or [spec.origin])[0]
        return out
    r = subprocess.run([sys.executable, "-I", "-c", _VIEW_CODE, *modules], capture_output=True, text=True,
                       timeout=120, cwd="/")
    if r.returncode != 0:
        return {name: None for name in modules}
    return json.loads(r.stdout)


def full_marks_problems(result: Result) -> list[str]:
    """Why ``result`` is not full automatic marks (empty list: it is)."""
    problems = []
    if result.status != "graded":
        problems.append(f"status {result.status}")
    for gid, points in result.scores.items():
        if points is not None and points < result.max_scores.get(gid, 0):
            problems.append(f"{gid} {fmt_score(points)}/{fmt_score(result.max_scores[gid])}")
    if not result.max_scores:
        problems.append("no grade cells were scored")
    return problems


def _texts(result: Result) -> str:
    d = result.details
    parts = [result.reason, str(d.get("kernel_log_tail", "")), str(d.get("worker_log", "")), str(d.get("log", "")),
             str(d.get("traceback", ""))]
    return "\n".join(parts)


def diagnosis(result: Result, opts, assignment) -> str:
    """A sentence or two on why the solution failed in the sandbox, and what to do."""
    text = _texts(result)
    missing = _NO_MODULE.search(text)
    if missing:
        module = missing.group(1)
        top = module.split(".")[0]
        if top in opts.expose_modules:
            grader = import_origins([top], isolated_interpreter=False)[top]
            kernel = import_origins([top], isolated_interpreter=True)[top]
            if kernel and grader and Path(kernel).resolve() != Path(grader).resolve():
                return (f"inside the sandbox the kernel cannot import {top}: the virtualenv's install of {top} "
                        f"points at {Path(kernel).parent}, not this course's copy at {Path(grader).parent} "
                        f"(the grader runs and shows the sandbox that one). Install this course into the "
                        f"virtualenv (`{sys.executable} -m pip install -e {Path(grader).parent}`) or run the "
                        f"grader from {Path(kernel).parent}.")
            if kernel is None:
                return (f"inside the sandbox the kernel cannot import {top}: `{sys.executable} -I` does not find "
                        f"it at all (it is not installed in the virtualenv; the grader itself found it at "
                        f"{grader} through the current folder or PYTHONPATH). Install the course into the "
                        f"virtualenv: `{sys.executable} -m pip install -e <course>`.")
        return (f"inside the sandbox the kernel cannot import {module}: install it into the virtualenv "
                f"({sys.prefix}), or if it lives outside it, let the kernel read it with --allow-path.")
    if re.search(r"(No such file or directory|Permission denied|FileNotFoundError|PermissionError)", text):
        return ("the solution could not read a file inside the sandbox (see what failed); the kernel "
                "sees only the Python installation, the virtualenv, the course packages, data/ and the files "
                "released with the assignment: add what it needs with --allow-path.")
    if result.status == "timeout":
        return (f"the solution needs more time than the limits give it ({result.reason}); raise --timeout "
                f"(now {opts.timeout} s per cell) or --notebook-timeout (now {opts.notebook_timeout} s).")
    if result.status == "memory_limit":
        return f"the solution needs more memory than --memory {opts.memory_mb} MB; raise it."
    if result.status == "forbidden_import":
        return ("the solution itself imports a module students may not ({}); exempt it with --allow-import or "
                "the notebook's metadata.autograder.allowed_imports.".format(result.reason))
    if result.status == "tampering":
        return f"the static scan or the kernel guard flags the instructor's own solution: {result.reason}"
    if result.status in ("wrong_assignment", "invalid_notebook"):
        return f"the source notebook is not a valid notebook of {assignment.name}: {result.reason}"
    if result.status == "graded":
        return (f"the instructor's solution loses points inside the sandbox: {result.reason}. Fix the solution "
                "or the hidden tests (run the course test for this assignment), or the environment they need.")
    return f"the grader failed on the instructor's solution: {result.reason}"


def _without_restore_notes(reason: str) -> str:
    """The reason without the notes that the source notebook's test cells were "restored" (they hold the
    hidden tests, so for the instructor's own notebook these notes are expected, not news)."""
    return re.sub(r"(; )?instructor cell '[^']*' was edited \(restored\)", "", reason).strip("; ")


def _kernel_log_lines(result: Result, n: int = 6) -> str:
    log = str(result.details.get("kernel_log_tail", "")).strip().splitlines()
    return "\n".join("    " + line for line in log[-n:])


def _key(grader, sub: Submission) -> str:
    modules = list(grader.opts.expose_modules)
    env = json.dumps([sys.executable, import_origins(modules, False), import_origins(modules, True)])
    return hashlib.sha256((grader.key_for(sub) + "\0" + env).encode()).hexdigest()


def _cached(out: Path, key: str) -> bool:
    try:
        data = json.loads(preflight_path(out).read_text())
    except (OSError, ValueError):
        return False
    return data.get("key") == key and data.get("passed") is True


def run_preflight(grader, slot: int = 0) -> dict:
    """Grade the instructor's solution with ``grader`` (a :class:`~autograder.grading.supervisor.Grader`
    whose runtime is set up) in job slot ``slot``.  Returns ``{"status": "passed"|"reused", "seconds"}``;
    raises :class:`PreflightFailed` (after writing ``OUT/preflight.json``) when it is not full marks."""
    a = grader.assignment
    source = a.src / f"{a.notebook}.ipynb"
    sub = Submission(student=PREFLIGHT_STUDENT, origin=f"{source} (the instructor's solution)",
                     data=source.read_bytes(), filename=source.name)
    key = _key(grader, sub)
    if _cached(grader.out, key):
        return {"status": "reused", "seconds": 0.0}
    started = time.monotonic()
    result, _page = grader.grade_one(sub, slot)
    seconds = round(time.monotonic() - started, 2)
    problems = full_marks_problems(result)
    record = {"key": key, "passed": not problems, "seconds": seconds, "status": result.status,
              "total": result.total, "max_total": result.max_total, "scores": result.scores,
              "reason": result.reason, "problems": problems, "notebook": str(source),
              "diagnosis": diagnosis(result, grader.opts, a) if problems else "", "details": result.details}
    atomic_write(preflight_path(grader.out), json.dumps(record, indent=1, sort_keys=True, default=str))
    if problems:
        log = _kernel_log_lines(result)
        raise PreflightFailed(
            f"preflight failed: the instructor's solution ({source}) got {fmt_score(result.total)}/"
            f"{fmt_score(result.max_total)} with status {result.status} inside the sandbox ({'; '.join(problems)}), "
            "so no student was graded.\n"
            f"  what failed: {_without_restore_notes(result.reason)}\n"
            f"  diagnosis: {record['diagnosis']}\n"
            + (f"  kernel log (last lines):\n{log}\n" if log else "")
            + f"  details: {preflight_path(grader.out)}; --no-preflight grades anyway (every student may get 0)")
    return {"status": "passed", "seconds": seconds}
