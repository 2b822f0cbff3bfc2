"""From what happened to a grade: the pure :func:`verdict` (no files, no processes, no nbgrader).

Inputs are what the worker read after nbgrader's autograde: the executor's events (JSON lines, see
:mod:`autograder.grading.executor`, parsed by :func:`parse_events`), the gradebook's scores and the
autograded notebook (its test cells' outputs).  The grader fails closed on its own evidence: a record
that is missing, unreadable, corrupt, or lacks the executor's ``started``/``finished`` events gives
status ``error`` with every test at 0, never ``graded``.  Otherwise the status is the first that
applies of

=================  =====================================================================
tampering          a tampering event; every test scores 0
forbidden_import   a static or run-time forbidden import; tests from that cell on score 0
memory_limit       MemoryError, or the kernel died while the memory cgroup counted an OOM kill
timeout            a cell timed out, the notebook ran out of its budget (``notebook_timeout``:
                   later cells not run, earlier points stand), or the kernel died of the CPU
                   limit (SIGXCPU)
crashed            the kernel died otherwise (later cells were not run: they scored 0)
output_limit       the output was truncated (scores unchanged)
graded             none of the above
=================  =====================================================================

and the reason lists every problem, then the failed tests (error, stderr written, partial credit),
cells left for manual grading, and the supervisor's notes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .notebook import grade_id, is_test_cell, nbg
from .types import Job, Result

__all__ = ["GradebookScore", "EventsError", "EVENT_KINDS", "parse_events", "check_record", "verdict"]

# what the executor writes; "started" and "finished" frame every complete record
EVENT_KINDS = frozenset({"started", "finished", "timeout", "notebook_timeout", "kernel_died", "memory_error",
                         "output_truncated", "forbidden_import", "tampering"})
BOOKKEEPING = ("started", "finished")


class EventsError(ValueError):
    """The executor's record of the execution cannot be read or trusted (the message says why)."""


def parse_events(text: str) -> list[dict]:
    """The events of an events file's ``text`` (JSON lines).  Every non-blank line must be a JSON object
    with a known ``event``; anything else raises :class:`EventsError` naming the line (a grader that
    cannot read its own evidence must not guess)."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as e:
            raise EventsError(f"line {number} of the events file is not JSON ({e})") from None
        if not isinstance(event, dict) or event.get("event") not in EVENT_KINDS:
            raise EventsError(f"line {number} of the events file is not an event: {line[:120]!r}")
        events.append(event)
    return events


def check_record(events: list[dict]) -> str | None:
    """What is wrong with a parsed record (None if nothing): it must start with the executor's
    ``started`` event and end with its one ``finished`` event."""
    if not events:
        return "the events file is empty"
    if events[0]["event"] != "started" or sum(1 for e in events if e["event"] == "started") != 1:
        return "the events file does not begin with the executor's start"
    if events[-1]["event"] != "finished" or sum(1 for e in events if e["event"] == "finished") != 1:
        return "the execution did not finish (no final event)"
    return None


@dataclass(frozen=True)
class GradebookScore:
    """One grade cell's score as nbgrader's gradebook holds it after autograde."""

    name: str                      # grade_id
    score: float | None            # the manual score if set, else the automatic one (None: ungraded)
    extra_credit: float | None
    max_score: float


def _label(i, cell) -> str:
    gid = grade_id(cell) if cell is not None else None
    return gid or f"cell {i + 1}"


def _error_text(out) -> str:
    ename = out.get("ename", "Error")
    evalue = " ".join(str(out.get("evalue", "")).split())
    return f"{ename}: {evalue}"[:160] if evalue else ename


def _untrusted(problem: str, events: list[dict], scores: list[GradebookScore], oom_kills: int) -> Result:
    points = {g.name: 0.0 for g in scores}
    max_points = {g.name: float(g.max_score) for g in scores}
    return Result(status="error", reason=f"the grader cannot trust its record of the execution ({problem}); "
                                         "all tests scored 0 -- rerun this student",
                  scores=points, max_scores=max_points, total=0.0, max_total=sum(max_points.values()),
                  details={"events": events, "oom_kills": oom_kills, "record_error": problem,
                           "zeroed": [g.name for g in scores]})


def verdict(events: list[dict], scores: list[GradebookScore], nb, job: Job, oom_kills: int = 0,
            record_error: str | None = None) -> Result:
    """The student's :class:`Result` (status, reason, scores after zeroing, totals; ``details`` holds
    the events other than the ``started``/``finished`` frame, the ``execution`` figures of the
    ``finished`` event, ``oom_kills`` and, if any, the grade ids the grader set to 0 in ``zeroed``).

    ``events`` is the parsed record (:func:`parse_events`); ``record_error`` says why it could not be
    read (then, or when :func:`check_record` finds a problem, the status is ``error``, all 0).
    ``nb`` is the autograded notebook; from ``job`` only ``memory_mb``, ``timeout``,
    ``notebook_timeout``, ``output_limit``, ``forbidden`` (static findings) and ``notes`` are used."""
    problem = record_error or check_record(events)
    if problem:
        return _untrusted(problem, events, scores, oom_kills)
    execution = {k: v for k, v in events[-1].items() if k not in ("event", "cell", "grade_id")}
    events = [e for e in events if e["event"] not in BOOKKEEPING]
    index = {grade_id(c): i for i, c in enumerate(nb.cells) if grade_id(c)}
    reasons, status = [], "graded"
    zero_from, zero_all = None, False
    tamper = [e for e in events if e["event"] == "tampering"]
    forbidden_rt = [e for e in events if e["event"] == "forbidden_import"]
    static_forbidden = job.forbidden
    died = [e for e in events if e["event"] == "kernel_died"]
    timeouts = [e for e in events if e["event"] == "timeout"]
    budget = [e for e in events if e["event"] == "notebook_timeout"]
    memory = [e for e in events if e["event"] == "memory_error"]
    truncated = [e for e in events if e["event"] == "output_truncated"]

    def lab(e):
        i = e.get("cell")
        return _label(i, nb.cells[i]) if isinstance(i, int) and i < len(nb.cells) else "?"

    if tamper:
        status, zero_all = "tampering", True
        reasons.append(f"tampering detected after {lab(tamper[0])}: {tamper[0].get('what')}; all tests scored 0")
    if static_forbidden or forbidden_rt:
        if status == "graded":
            status = "forbidden_import"
        cells = [f["cell"] for f in static_forbidden] + [e["cell"] for e in forbidden_rt if e.get("cell") is not None]
        zero_from = min(cells) if cells else 0
        static_cells = {f["cell"] for f in static_forbidden}
        what = [f"{f['label']}: {f['what']}" for f in static_forbidden] + \
               [f"{lab(e)}: imports {e.get('what', '')}" for e in forbidden_rt if e.get("cell") not in static_cells]
        reasons.append("forbidden import (" + "; ".join(what[:5]) + "); tests from that cell on scored 0")
    died_oom = died and oom_kills > 0
    if memory or died_oom:
        if status == "graded":
            status = "memory_limit"
        where = lab(memory[0]) if memory else lab(died[0])
        how = "MemoryError" if memory else "the kernel was killed"
        reasons.append(f"memory limit ({job.memory_mb} MB) exceeded in {where} ({how})")
    cpu_killed = [e for e in died if "SIGXCPU" in str(e.get("how"))]
    if timeouts or cpu_killed or budget:
        if status == "graded":
            status = "timeout"
        if timeouts:
            t = timeouts[0]
            msg = f"{lab(t)} exceeded the {job.timeout} s time limit"
            if any(e.get("unresponsive") for e in timeouts):
                msg += " and the kernel could not be interrupted (killed; later cells not run)"
            reasons.append(msg)
        if budget:
            msg = (f"the notebook ran out of its {job.notebook_timeout} s budget (--notebook-timeout) in "
                   f"{lab(budget[0])}; later cells not run, earlier points kept")
            if any(e.get("unresponsive") for e in budget):
                msg += " (the kernel could not be interrupted and was killed)"
            reasons.append(msg)
        if cpu_killed and not timeouts:
            reasons.append(f"CPU time limit exceeded in {lab(cpu_killed[0])} (kernel killed; later cells not run)")
    if died and not died_oom and not cpu_killed:
        if status == "graded":
            status = "crashed"
        d = died[0]
        reasons.append(f"the kernel died in {lab(d)} ({d.get('how')}); later cells not run")
    if truncated:
        if status == "graded":
            status = "output_limit"
        reasons.append(f"output truncated after {job.output_limit // 1024} KiB")

    # scores (zeroed where the status says so; the worker writes the zeros back to the gradebook)
    points, max_points, manual, zeroed = {}, {}, [], []
    for g in scores:
        pos = index.get(g.name)
        base = g.score
        is_test = pos is not None and is_test_cell(nbg(nb.cells[pos]))
        extra = g.extra_credit
        if zero_all or (zero_from is not None and is_test and pos >= zero_from):
            if base is None or base > 0 or extra:
                base, extra = 0.0, None
                zeroed.append(g.name)
        score = None if base is None else base + (extra or 0.0)
        points[g.name] = None if score is None else float(score)
        max_points[g.name] = float(g.max_score)
        if score is None:
            manual.append(g.name)

    # which tests failed, and why
    failures = []
    for gid, i in index.items():
        cell = nb.cells[i]
        meta = nbg(cell)
        if not (meta.get("grade") and not meta.get("solution") and cell.cell_type == "code"):
            continue
        errs = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        stderr = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        if errs:
            failures.append(f"{gid} ({_error_text(errs[-1])})")
        elif stderr and points.get(gid) == 0:
            failures.append(f"{gid} (wrote to stderr)")
        elif points.get(gid) is not None and points[gid] < max_points.get(gid, 0) and not zero_all \
                and (zero_from is None or i < zero_from):
            failures.append(f"{gid} (partial credit)")
    n_tests = sum(1 for gid, i in index.items() if is_test_cell(nbg(nb.cells[i])))
    if status == "graded" and not failures:
        reasons.append(f"all {n_tests} tests passed" if n_tests else "graded")
    if failures and not zero_all:
        reasons.append("failed: " + ", ".join(failures[:8]) + (" ..." if len(failures) > 8 else ""))
    if manual:
        reasons.append(f"{len(manual)} cell(s) need manual grading")
    reasons += job.notes

    details = {"events": events, "oom_kills": oom_kills, "execution": execution}
    if zeroed:
        details["zeroed"] = zeroed
    return Result(status=status, reason="; ".join(reasons), scores=points, max_scores=max_points,
                  total=sum(v for v in points.values() if v is not None), max_total=sum(max_points.values()),
                  details=details)
