"""Grade one student's (already checked) notebook: private course copy, sandbox box, worker, clean-up.

Grading a notebook takes two steps, so that the first can happen before the student is known:

1. :func:`prepare` makes a **standby** for a job slot: ``BASE/p<slot>-<seq>/`` (0700) with a copy of the
   template course, the kernel's box and cgroup for one of the slot's two sandbox users, the wrapper's
   config, the kernel spec, and a worker started on a standby job -- the worker starts the sandboxed
   kernel at once and waits for its student.  The supervisor prepares the slot's next standby as soon
   as the current student is handed over, so the next kernel boots while this notebook runs
   (:attr:`Standby.user` alternates between the slot's two users: killing what one student left behind
   never touches the next student's kernel).
2. :func:`run_student` hands the notebook over (``submitted/<student>/<assignment>/`` and the final
   :class:`~autograder.grading.types.Job`), waits for the worker under the notebook's wall-clock budget
   (:meth:`Options.notebook_budget`), kills whatever is left of the kernel (wrapper, cgroup, the user's
   processes) and turns the worker's answer (or its absence) into the student's
   :class:`~autograder.grading.types.Result` and feedback page.  Without a standby it prepares one first.

:func:`discard` removes a standby nobody needed (end of the run, Ctrl-C).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..course.files import atomic_write
from .cgroups import Cgroup
from .options import Options
from .render import simple_feedback
from .types import Job, Result
from .users import kill_user_processes
from .worker import KERNEL_NAME, write_job

__all__ = ["Standby", "prepare", "run_student", "discard"]


@dataclass
class Standby:
    """A sandbox, a worker and its kernel, ready for the next student of a slot."""

    slot: int
    seq: int
    user: object                 # SlotUser (None without isolation)
    p: Path                      # the private folder
    box: dict
    cgroup: Cgroup | None
    pidfile: Path
    job: Job                     # the standby job (student still empty)
    worker: object               # the worker process (Children.start)
    max_cells: int               # code cells the sandbox's limits were sized for
    parity: int = 0              # which of the slot's two sandbox users


def prepare(opts: Options, assignment, runtime, children, slot: int, seq: int, parity: int = 0) -> Standby:
    """Make a standby for job slot ``slot`` with the slot's sandbox user ``parity`` (0/1; see the module
    docstring) and start its worker, which starts the kernel and waits for :func:`run_student`."""
    boxes = runtime.boxes
    user = boxes.user(slot, parity)
    p = runtime.base / f"p{slot}-{seq}"
    p.mkdir(mode=0o700)
    box = boxes.make_box(user, f"{slot}-{seq}", boxes.isolation)
    course = p / "course"
    course.mkdir()
    shutil.copy2(runtime.template.course / "gradebook.db", course / "gradebook.db")
    shutil.copytree(runtime.template.course / assignment.source_directory, course / assignment.source_directory)
    # a student cannot buy more time by adding cells: limits are sized for at most this many
    max_cells = 2 * sum(1 for c in runtime.template.ref.source.cells if c.cell_type == "code") + 20
    memory_bytes = (opts.memory_mb + opts.disk_mb + 2 * opts.tmp_mb + 64 + 256) * 2**20
    cgroup = Cgroup(f"{runtime.cgroup_prefix}-{slot}-{seq}", memory_bytes, opts.max_procs, opts.cpus) \
        if boxes.isolation != "none" else None
    pidfile = p / "ctl" / "wrapper.pid"
    try:
        ctl = p / "ctl"
        ctl.mkdir(mode=0o700)
        scfg = boxes.sandbox_config(boxes.isolation, user, box, cgroup, str(pidfile), max_cells)
        (ctl / "sandbox.json").write_text(json.dumps(scfg))
        kdir = p / "jupyter" / "kernels" / KERNEL_NAME
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-I", "-m", "autograder.grading.sandbox", "wrap", str(ctl / "sandbox.json"),
                     "{connection_file}"],
            "display_name": "mf-course sandbox", "language": "python", "interrupt_mode": "signal"}))
        job = Job(course_dir=str(assignment.course), root=str(course), assignment=opts.assignment,
                  student="", notebook=assignment.notebook,
                  source_directory=assignment.source_directory, release_directory=assignment.release_directory,
                  timeout=opts.timeout, output_limit=opts.output_limit, memory_mb=opts.memory_mb,
                  events_file=str(p / "events.jsonl"), ipc_path=os.path.join(box["run_dir"], "k"),
                  memory_cgroup=str(cgroup.memory_dir) if cgroup and cgroup.memory_dir else None,
                  notebook_timeout=opts.notebook_timeout,
                  result=str(p / "result.json"), feedback=str(p / "feedback.html"))
        write_job(p / "standby.json", job, kind="standby")
        worker = children.start(p / "standby.json", p, course, log=p / "worker.log")
    except BaseException:
        _cleanup_kernel(pidfile, cgroup, user)
        _remove(opts, p, box)
        raise
    return Standby(slot=slot, seq=seq, user=user, p=p, box=box, cgroup=cgroup, pidfile=pidfile, job=job,
                   worker=worker, max_cells=max_cells, parity=parity)


def run_student(opts: Options, assignment, runtime, children, nb, slot: int, seq: int, base: Result,
                zero, notes: list, forbidden: list, standby: Standby | None = None,
                on_handover=None) -> tuple[Result, str]:
    """Grade ``nb`` in job slot ``slot`` (see the module docstring); returns (result, feedback page).

    ``base`` is the student's empty result (identity fields), ``zero(status, reason)`` makes their
    all-zero result; ``notes`` go into the reason, ``forbidden`` are the static findings.  ``standby``
    is used if given (else one is prepared now, numbered ``seq``); ``on_handover()`` is called once the
    worker has the notebook (the supervisor then prepares the slot's next standby)."""
    import nbformat

    if standby is None:
        standby = prepare(opts, assignment, runtime, children, slot, seq)
    p, course = standby.p, Path(standby.job.root)
    started = time.monotonic()
    code = reason = None
    budget = 0
    try:
        subdir = course / "submitted" / base.student / opts.assignment
        subdir.mkdir(parents=True)
        nbformat.write(nb, str(subdir / f"{assignment.notebook}.ipynb"))
        n_cells = min(standby.max_cells, sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip()))
        budget = opts.notebook_budget(n_cells)
        job = dataclasses.replace(standby.job, student=base.student, notes=notes, forbidden=forbidden)
        atomic_write(p / "job.json", job.to_json())  # the worker has been waiting for this file
        if on_handover is not None:
            on_handover()
        code, reason = children.wait(standby.worker, budget)
    finally:
        if code is None and reason is None:  # handing over failed: the worker must not go on
            children.discard(standby.worker)
        _cleanup_kernel(standby.pidfile, standby.cgroup, standby.user)
    return _collect(opts, p, standby.box, code, reason, started, budget, base, zero)


def discard(opts: Options, children, standby: Standby) -> None:
    """Stop a standby nobody needs: its worker and kernel, its cgroup, its folders."""
    children.discard(standby.worker)
    _cleanup_kernel(standby.pidfile, standby.cgroup, standby.user)
    _remove(opts, standby.p, standby.box)


def _remove(opts, p: Path, box: dict) -> None:
    if not opts.keep_work:
        shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(box["box"], ignore_errors=True)


def _collect(opts, p: Path, box: dict, code, reason, started, budget, base: Result, zero) -> tuple[Result, str]:
    if reason == "interrupted":
        _remove(opts, p, box)
        raise KeyboardInterrupt
    result_file = p / "result.json"
    if reason == "budget":
        r = zero("timeout", f"grading took longer than {budget} s (the per-notebook limit) and was stopped")
        page = simple_feedback(base.student, opts.assignment, r)
    elif not result_file.exists():
        tail = (p / "worker.log").read_text(errors="replace")[-2000:] if (p / "worker.log").exists() else ""
        r = zero("error", f"the grading worker failed (exit {code})")
        r.details = {"worker_log": tail}
        page = simple_feedback(base.student, opts.assignment, r)
    else:
        wr = Result.from_json(result_file.read_text())
        r = dataclasses.replace(base, status=wr.status, reason=wr.reason, scores=wr.scores,
                                max_scores=wr.max_scores, total=wr.total, max_total=wr.max_total,
                                details=wr.details)
        if not wr.max_scores:  # the worker failed before reading the gradebook
            z = zero(r.status, r.reason)
            r = dataclasses.replace(r, scores=z.scores, max_scores=z.max_scores, total=z.total,
                                    max_total=z.max_total)
        fb = p / "feedback.html"
        page = fb.read_text(encoding="utf-8") if fb.exists() else simple_feedback(base.student, opts.assignment, r)
    r.details["seconds"] = round(time.monotonic() - started, 2)
    klog = Path(box["run_dir"]) / "kernel.log"
    if klog.exists() and r.status in ("crashed", "error", "memory_limit"):
        with open(klog, "rb") as f:
            f.seek(max(0, klog.stat().st_size - 2000))
            r.details["kernel_log_tail"] = f.read().decode(errors="replace")
    _remove(opts, p, box)
    return r, page


def _cleanup_kernel(pidfile: Path, cgroup, user) -> None:
    """Kill whatever is left of this student's kernel: the wrapper W (if it is still ours),
    everything in its cgroup, and every process of the student's sandbox user."""
    try:
        pid = int(Path(pidfile).read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        if str(Path(pidfile).parent / "sandbox.json").encode() in cmdline:  # not a recycled pid
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass
    if cgroup is not None:
        cgroup.remove()
    if user is not None:
        kill_user_processes(user.uid)
