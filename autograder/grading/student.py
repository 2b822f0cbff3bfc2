"""Grade one student's (already checked) notebook: private course copy, sandbox box, worker, clean-up.

:func:`run_student` is called by the supervisor for every notebook that passed the static checks.  It

1. makes ``BASE/p<slot>-<seq>/`` (0700): a copy of the template course with the notebook in
   ``submitted/<student>/<assignment>/``, the kernel spec whose argv is the sandbox wrapper, the
   wrapper's config and the :class:`~autograder.grading.types.Job`;
2. makes the kernel's box and cgroup, runs the worker under the notebook's wall-clock budget
   (:meth:`Options.notebook_budget`);
3. kills whatever is left of the kernel (wrapper, cgroup, the slot user's processes);
4. turns the worker's answer (or its absence) into the student's
   :class:`~autograder.grading.types.Result` and feedback page.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from .cgroups import Cgroup
from .options import Options
from .render import simple_feedback
from .types import Job, Result
from .users import kill_user_processes
from .worker import KERNEL_NAME, write_job

__all__ = ["run_student"]


def run_student(opts: Options, assignment, runtime, children, nb, slot: int, seq: int, base: Result,
                zero, notes: list, forbidden: list) -> tuple[Result, str]:
    """Grade ``nb`` in job slot ``slot`` (see the module docstring); returns (result, feedback page).

    ``base`` is the student's empty result (identity fields), ``zero(status, reason)`` makes their
    all-zero result; ``notes`` go into the reason, ``forbidden`` are the static findings."""
    import nbformat

    boxes = runtime.boxes
    user = boxes.user(slot)
    p = runtime.base / f"p{slot}-{seq}"
    p.mkdir(mode=0o700)
    box = boxes.make_box(user, f"{slot}-{seq}", boxes.isolation)
    course = p / "course"
    course.mkdir()
    shutil.copy2(runtime.template.course / "gradebook.db", course / "gradebook.db")
    shutil.copytree(runtime.template.course / assignment.source_directory, course / assignment.source_directory)
    subdir = course / "submitted" / base.student / opts.assignment
    subdir.mkdir(parents=True)
    nbformat.write(nb, str(subdir / f"{assignment.notebook}.ipynb"))
    n_cells = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())
    # a student cannot buy more time by adding cells
    n_cells = min(n_cells, 2 * sum(1 for c in runtime.template.ref.source.cells if c.cell_type == "code") + 20)
    memory_bytes = (opts.memory_mb + opts.disk_mb + 2 * opts.tmp_mb + 64 + 256) * 2**20
    cgroup = Cgroup(f"{runtime.cgroup_prefix}-{slot}-{seq}", memory_bytes, opts.max_procs, opts.cpus) \
        if boxes.isolation != "none" else None
    pidfile = p / "ctl" / "wrapper.pid"
    budget = opts.notebook_budget(n_cells)
    try:
        ctl = p / "ctl"
        ctl.mkdir(mode=0o700)
        scfg = boxes.sandbox_config(boxes.isolation, user, box, cgroup, str(pidfile), n_cells)
        (ctl / "sandbox.json").write_text(json.dumps(scfg))
        kdir = p / "jupyter" / "kernels" / KERNEL_NAME
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-I", "-m", "autograder.grading.sandbox", "wrap", str(ctl / "sandbox.json"),
                     "{connection_file}"],
            "display_name": "mf-course sandbox", "language": "python", "interrupt_mode": "signal"}))
        job = Job(course_dir=str(assignment.course), root=str(course), assignment=opts.assignment,
                  student=base.student, notebook=assignment.notebook,
                  source_directory=assignment.source_directory, release_directory=assignment.release_directory,
                  timeout=opts.timeout, output_limit=opts.output_limit, memory_mb=opts.memory_mb,
                  events_file=str(p / "events.jsonl"), ipc_path=os.path.join(box["run_dir"], "k"),
                  memory_cgroup=str(cgroup.memory_dir) if cgroup and cgroup.memory_dir else None,
                  notebook_timeout=opts.notebook_timeout,
                  result=str(p / "result.json"), feedback=str(p / "feedback.html"),
                  notes=notes, forbidden=forbidden)
        write_job(p / "job.json", job)
        started = time.monotonic()
        code, reason = children.run(p / "job.json", p, course, budget, log=p / "worker.log", slot=slot)
    finally:
        _cleanup_kernel(pidfile, cgroup, user)
    return _collect(opts, p, box, code, reason, started, budget, base, zero)


def _collect(opts, p: Path, box: dict, code, reason, started, budget, base: Result, zero) -> tuple[Result, str]:
    if reason == "interrupted":
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
    if not opts.keep_work:
        shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(box["box"], ignore_errors=True)
    return r, page


def _cleanup_kernel(pidfile: Path, cgroup, user) -> None:
    """Kill whatever is left of this student's kernel: the wrapper W (if it is still ours),
    everything in its cgroup, and every process of the slot's sandbox user."""
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
