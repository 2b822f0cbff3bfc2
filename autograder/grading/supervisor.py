"""The grading parent: grade a whole class in parallel, one sandboxed worker per student.

:func:`grade` runs :class:`Grader` (run as root for full isolation).  A run goes through

1. **plan** -- load the assignment (:mod:`.template`), find the submissions (:mod:`.discovery`) and
   skip students whose result is still valid (same cache key, :mod:`.report`);
2. **set up** (only if somebody is left) -- a private work folder ``/tmp/mfg-<run id>-*``, the
   template course, the sandbox users and isolation (:class:`.boxes.Boxes`): the per-run
   :class:`Runtime`; then the **preflight** (:mod:`.preflight`): the instructor's solution is graded
   first and the run stops unless it gets full marks;
3. **grade** -- up to ``--jobs`` students at a time (:meth:`Grader.grade_one`): static checks, then a
   worker in the student's own 0700 copy of the template, its kernel in its own box and cgroup; a
   progress bar on stderr (:mod:`.progress`);
4. **report** -- each result and feedback page as soon as the student is done, ``grades.csv`` after
   every student, ``run.json`` at the end.  Each result's ``details.timing`` has ``total_s`` (the
   supervisor's wall time for that student), ``notebook_s`` (the cells' own execution) and
   ``overhead_s`` (the difference: what grading costs beyond running the notebook).

The supervisor is the only process that writes the output folder, and only one run at a time may
(:class:`.runs.OutputLock`); everything else a run creates is its own (:mod:`.runs`).  Ctrl-C or
SIGTERM stops the running students and keeps every finished grade; a rerun continues where the run
stopped.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

# jsonschema's optional "iri" format checker (package rfc3987-syntax) compiles a grammar for ~2 s
# when jsonschema is imported (nbformat imports it); notebooks never use that format, and every
# grading process would pay for it.  Blocking the optional import makes jsonschema skip that checker.
if "rfc3987_syntax" not in sys.modules and not os.environ.get("AUTOGRADER_KEEP_RFC3987"):
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]

from . import deadlines, notebook, report, shard  # noqa: E402
from .boxes import Boxes  # noqa: E402
from .cgroups import Cgroup, cleanup_stale_cgroups, pid_alive  # noqa: E402
from .children import Children  # noqa: E402
from .discovery import Submission, discover  # noqa: E402
from .options import Options  # noqa: E402
from .preflight import PreflightFailed, run_preflight  # noqa: E402
from .progress import Progress, progress_enabled  # noqa: E402
from .render import fmt_score, simple_feedback  # noqa: E402
from .runs import OutputBusy, OutputLock, cgroup_prefix, new_run_id  # noqa: E402
from .scan import scan  # noqa: E402
from .student import Standby, discard, prepare, run_student  # noqa: E402
from .template import Template, build_template, load_assignment  # noqa: E402
from .types import Result  # noqa: E402

__all__ = ["Grader", "Runtime", "grade", "OutputBusy", "PreflightFailed"]


@dataclass
class Runtime:
    """Per-run state, set up only when somebody has to be graded; everything lives below ``base``
    (``/tmp/mfg-*``, removed at the end) or is reserved for this run only (sandbox users, cgroups)."""

    base: Path
    template: Template
    boxes: Boxes
    cgroup_controllers: list
    run_id: str = ""
    cgroup_prefix: str = "mfgrade"     # this run's cgroups are <cgroup_prefix>-<slot>-<seq>
    sandbox_users: list = dataclasses.field(default_factory=list)


class Grader:
    """One grading run of ``opts`` (see the module docstring); :meth:`run` returns the summary."""

    def __init__(self, opts: Options, log=None):
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True) if opts.verbose else None)
        self.assignment, self.opts = load_assignment(opts)
        self.out = Path(self.opts.out_dir).resolve() if self.opts.out_dir \
            else self.assignment.course / "grading" / self.opts.assignment
        self.stop = threading.Event()
        self.run_id = new_run_id()
        self.children = Children(self.opts.worker_memory_mb, self.stop)
        self.lock = threading.Lock()
        self.seq = 0                          # numbers each student's private folders
        self.runtime: Runtime | None = None
        self.standbys: dict[int, Standby] = {}   # slot -> sandbox + worker + kernel ready for its next student
        self.next_parity: dict[int, int] = {}    # slot -> which of its two sandbox users the next standby uses
        self.unstarted = 0                       # submissions of this run not yet taken by a job slot
        self.deadlines = deadlines.from_options(self.opts.deadline, self.opts.hard_deadline, self.opts.late_policy,
                                                self.opts.timezone)

    # -- results without running anything -------------------------------------------------------
    def result_base(self, sub: Submission, key: str) -> Result:
        """An empty result for ``sub`` carrying its identity (student, key, origin, hash, isolation)."""
        return Result(student=sub.student, assignment=self.opts.assignment, key=key, submission=sub.origin,
                      submission_sha256=hashlib.sha256(sub.data).hexdigest(),
                      isolation=self.runtime.boxes.isolation if self.runtime else None,
                      identity=sub.identity(), version=sub.version_info())

    def zero_result(self, sub: Submission, key: str, status: str, reason: str) -> Result:
        """Every grade cell at 0, with ``status`` and ``reason``."""
        cells = self.assignment.grade_cells
        return dataclasses.replace(self.result_base(sub, key), status=status, reason=reason,
                                   scores={gid: 0.0 for gid, _ in cells}, max_scores=dict(cells),
                                   total=0.0, max_total=sum(pts for _, pts in cells), details={})

    def key_for(self, sub: Submission) -> str:
        """The cache key of ``sub``'s grade (see :func:`.report.cache_key`)."""
        return report.cache_key(self.assignment.source_hash, sub.student, sub.named_assignment, sub.notes, sub.data)

    # -- one student ----------------------------------------------------------------------------
    def grade_one(self, sub: Submission, slot: int) -> tuple[Result, str]:
        """Grade one submission in job slot ``slot``; returns (result, feedback page)."""
        key = self.key_for(sub)
        notes = list(sub.notes)
        if sub.invalid:  # no readable notebook (discovery says why): a row, nothing to run
            r = self.zero_result(sub, key, "invalid", sub.invalid)
            return r, simple_feedback(sub.student, self.opts.assignment, r)
        ref = self.runtime.template.ref
        try:
            nb = notebook.load_notebook(sub.data)
        except notebook.NotebookError as e:
            r = self.zero_result(sub, key, "invalid_notebook", "; ".join([str(e)] + notes))
            return r, simple_feedback(sub.student, self.opts.assignment, r)
        if notebook.matching_ids(nb, ref) == 0:
            other = sub.named_assignment if sub.named_assignment and sub.named_assignment != self.opts.assignment \
                else None
            why = (f"this is not a notebook of {self.opts.assignment}"
                   + (f" (the file name says {other})" if other else "")
                   + ": none of its graded/read-only cells belong to the assignment")
            r = self.zero_result(sub, key, "wrong_assignment", "; ".join([why] + notes))
            return r, simple_feedback(sub.student, self.opts.assignment, r)
        nb, fix_notes = notebook.sanitize(nb, ref)
        notes = fix_notes + notes
        findings = scan(nb, ref, self.assignment.policy)
        tamper = [f for f in findings if f.kind == "tampering"]
        if tamper:
            r = self.zero_result(sub, key, "tampering",
                                 "; ".join(["tampering with the grading: " + "; ".join(f.text() for f in tamper[:5])
                                            + " -- not executed, all tests scored 0"] + notes))
            return r, simple_feedback(sub.student, self.opts.assignment, r)
        forbidden = [dataclasses.asdict(f) for f in findings if f.kind == "forbidden_import"]
        with self.lock:
            standby = self.standbys.pop(slot, None)
        if standby is None:  # the slot's first student, or nobody prepared one: prepare it now
            standby = self._prepare(slot)
        return run_student(self.opts, self.assignment, self.runtime, self.children, nb, slot, standby.seq,
                           self.result_base(sub, key), functools.partial(self.zero_result, sub, key),
                           notes, forbidden, standby=standby,
                           on_handover=functools.partial(self.prepare_standby, slot))

    # -- standbys: the next student's sandbox and kernel start while this one runs ---------------
    def _prepare(self, slot: int) -> Standby:
        with self.lock:
            self.seq += 1
            seq = self.seq
            parity = self.next_parity.get(slot, 0)
            self.next_parity[slot] = 1 - parity
        return prepare(self.opts, self.assignment, self.runtime, self.children, slot, seq, parity)

    def prepare_standby(self, slot: int) -> None:
        """Prepare job slot ``slot``'s next standby (:func:`.student.prepare`) if a submission is still
        waiting for one.  A standby that cannot be made is only logged: the student who would have used
        it prepares their own (and gets any error that persists)."""
        with self.lock:
            if self.stop.is_set() or slot in self.standbys or self.unstarted <= len(self.standbys):
                return
        try:
            standby = self._prepare(slot)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
            self.log(f"WARNING: could not prepare the next sandbox of job slot {slot} in advance: {e}")
            return
        with self.lock:
            if not self.stop.is_set() and slot not in self.standbys:
                self.standbys[slot], standby = standby, None
        if standby is not None:
            discard(self.opts, self.children, standby)

    def discard_standbys(self) -> None:
        """Stop every standby (end of the run, Ctrl-C, an error)."""
        with self.lock:
            standbys, self.standbys = list(self.standbys.values()), {}
        for standby in standbys:
            discard(self.opts, self.children, standby)

    # -- the run --------------------------------------------------------------------------------
    def setup_runtime(self) -> None:
        """The expensive part, only needed when somebody has to be graded: template + sandbox."""
        _remove_stale_work_dirs()
        cleanup_stale_cgroups()
        base = Path(tempfile.mkdtemp(prefix=f"mfg-{self.run_id}-", dir="/tmp"))
        os.chmod(base, 0o711)
        (base / "owner.pid").write_text(str(os.getpid()))
        boxes = None
        try:
            template = build_template(self.assignment, base, self.children)
            boxes = Boxes(self.opts, self.assignment, template, base, self.out, self.log)
            boxes.choose_isolation()
        except BaseException:
            if boxes is not None:
                boxes.release()
            if not self.opts.keep_work:
                shutil.rmtree(base, ignore_errors=True)
            raise
        self.runtime = Runtime(base=base, template=template, boxes=boxes, cgroup_controllers=[], run_id=self.run_id,
                               cgroup_prefix=cgroup_prefix(self.run_id), sandbox_users=[u.name for u in boxes.users])
        probe = Cgroup(f"{self.runtime.cgroup_prefix}-probe", 2**30, 64, 1.0) if boxes.isolation != "none" else None
        self.runtime.cgroup_controllers = probe.controllers if probe else []
        if probe is not None:
            probe.remove()
        if boxes.isolation != "none" and not self.runtime.cgroup_controllers:
            boxes.warnings.append("no cgroups available: memory/pids/cpu are limited per process (rlimits) only")
            self.log(f"WARNING: {boxes.warnings[-1]}")
        if boxes.isolation == "user":
            report.prepare_output(self.out, private=True)

    def teardown(self) -> None:
        """Stop the standbys, remove the work folder (unless --keep-work), free the sandbox users, stop the
        fork server."""
        self.discard_standbys()
        if self.runtime is not None:
            if not self.opts.keep_work:
                shutil.rmtree(self.runtime.base, ignore_errors=True)
            self.runtime.boxes.release()
        self.children.close()

    def _task(self, sub: Submission, slots: queue.Queue) -> Result | None:
        slot = slots.get()
        with self.lock:
            self.unstarted -= 1
        try:
            if self.stop.is_set():
                return None
            started = time.monotonic()
            try:
                result, page = self.grade_one(sub, slot)
                _record_timing(result, time.monotonic() - started)
            except KeyboardInterrupt:
                return None
            except Exception:  # noqa: BLE001 - fails closed: that student gets status error; the run goes on
                result = self.zero_result(sub, self.key_for(sub), "error", "internal grading error: "
                                          + traceback.format_exc().strip().splitlines()[-1][:300])
                result.details = {"traceback": traceback.format_exc()[-5000:]}
                page = simple_feedback(sub.student, self.opts.assignment, result)
            hidden = self.runtime.template.hidden if self.runtime else None
            if hidden is not None:  # no hidden-test line in results/*.json (kernel log tails, messages)
                result.reason, result.details = hidden.scrub_value(result.reason), hidden.scrub_value(result.details)
            report.write_result(self.out, result, page)
            return result
        finally:
            slots.put(slot)

    def preflight(self) -> dict:
        """Grade the instructor's solution before any student (:mod:`.preflight`); on failure the run
        is torn down and :class:`PreflightFailed` raised.  Returns what goes into run.json."""
        if not self.opts.preflight:
            return {"status": "skipped (--no-preflight)"}
        self.log("preflight: grading the instructor's solution in the sandbox first")
        try:
            result = run_preflight(self, slot=0)
        except BaseException:
            self.teardown()
            raise
        self.log(f"preflight: {result['status']} ({result['seconds']} s)")
        return result

    def run(self) -> dict:
        """Grade every submission that has no valid result yet; returns the run summary (run.json).
        Raises :class:`OutputBusy` if another run is writing the same output folder."""
        lock = OutputLock(self.out, self.run_id)
        lock.acquire()
        try:
            return self._run()
        finally:
            lock.release()

    def _run(self) -> dict:
        o = self.opts
        t0 = time.monotonic()
        report.prepare_output(self.out)
        disc = discover(o.submissions, o.assignment, self.assignment.known_assignments, tz=o.timezone)
        subs = disc.submissions
        if o.shard:  # only this shard's students, and its manifest for `merge`
            subs = shard.begin(self.out, o.shard, subs, o.assignment, shard.fingerprint(self.assignment.source_hash, o))
        students = [s.student for s in subs]  # grades.csv lists everybody, even with --student
        if o.students:
            subs = [s for s in subs if s.student in set(o.students)]
        versions, version_notes = deadlines.to_grade(subs, self.deadlines)  # several per student with deadlines
        for note in disc.ignored + version_notes:
            self.log(f"ignored: {note}")
        todo, skipped = [], []
        for s in versions:
            if not o.force and report.reusable(self.out, s.student, self.key_for(s)):
                skipped.append(s.student)
            else:
                todo.append(s)
        setup_seconds = 0.0
        if any(not s.invalid for s in todo):
            t_setup = time.monotonic()
            try:
                self.setup_runtime()
            except BaseException:
                self.teardown()
                raise
            setup_seconds = time.monotonic() - t_setup
        self.unstarted = len(todo)   # the preflight's handover then prepares slot 0's standby for them
        preflight = self.preflight() if self.runtime else {"status": "not needed"}
        isolation = self.runtime.boxes.isolation if self.runtime else None
        self.log(f"{len(subs)} submission(s): {len(todo)} to grade, {len(skipped)} already graded "
                 f"(isolation {isolation}, {o.jobs} job(s), {o.timeout} s per cell)")
        slots: queue.Queue = queue.Queue()
        for i in range(max(1, o.jobs)):
            slots.put(i)
        grade_ids = [gid for gid, _ in self.assignment.grade_cells]
        done, interrupted = 0, False
        old_term = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        pool = ThreadPoolExecutor(max_workers=max(1, o.jobs))
        bar = Progress(len(todo), progress_enabled(o), o.assignment, self.log)
        try:
            pending = {pool.submit(self._task, s, slots) for s in todo}
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    r = f.result()
                    if r is None:
                        continue
                    done += 1
                    bar.log(f"[{done}/{len(todo)}] {r.student}: {r.status} "
                            f"{fmt_score(r.total)}/{fmt_score(r.max_total)} -- {r.reason[:150]}")
                    bar.done(r.status)
                    report.write_grades_csv(self.out, students, grade_ids, o.assignment, self.deadlines)
        except KeyboardInterrupt:
            interrupted = True
            bar.log("interrupted: stopping the running students (finished grades are kept)")
            self.stop.set()
            self.children.kill_all()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, old_term)
            report.write_grades_csv(self.out, students, grade_ids, o.assignment, self.deadlines)
            self.teardown()
        summary = {"assignment": o.assignment, "course_dir": str(self.assignment.course), "out_dir": str(self.out),
                   "isolation": isolation, "cgroups": self.runtime.cgroup_controllers if self.runtime else [],
                   "warnings": self.runtime.boxes.warnings if self.runtime else [], "jobs": o.jobs,
                   "submissions": len(subs), "graded": done, "skipped": len(skipped),
                   "ignored": disc.ignored + version_notes, "collisions": disc.collisions,
                   "identities": {s: disc.identities[s] for s in students if s in disc.identities},
                   "deadlines": self.deadlines.to_dict() if self.deadlines else None,
                   "interrupted": interrupted, "seconds": round(time.monotonic() - t0, 2),
                   "setup_seconds": round(setup_seconds, 2), "preflight": preflight,
                   "run_id": self.run_id, "sandbox_users": self.runtime.sandbox_users if self.runtime else [],
                   "statuses": report.count_statuses(self.out, students)}
        report.write_run_summary(self.out, summary)
        if interrupted:
            raise KeyboardInterrupt
        if o.shard:
            shard.finish(self.out)
        return summary


def _remove_stale_work_dirs():
    """/tmp/mfg-* work folders of grading runs whose process is gone (e.g. killed with SIGKILL)."""
    import pwd
    me = pwd.getpwuid(os.geteuid()).pw_name
    for d in Path("/tmp").glob("mfg-*"):
        try:
            if d.owner() != me or not (d / "owner.pid").is_file():
                continue
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError, KeyError):
            continue
        if not pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _record_timing(result: Result, total_s: float) -> None:
    """``result.details["timing"]``: ``total_s`` (this student's wall time in the supervisor),
    ``notebook_s`` (the cells' execution, measured by the executor), ``overhead_s`` = the difference,
    and the worker's own laps under ``worker``."""
    worker = result.details.get("timing") if isinstance(result.details.get("timing"), dict) else {}
    execution = result.details.get("execution") or {}
    notebook_s = float(execution.get("notebook_s", 0.0))
    result.details["timing"] = {"total_s": round(total_s, 3), "notebook_s": round(notebook_s, 3),
                                "overhead_s": round(total_s - notebook_s, 3), "worker": worker}


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def grade(opts: Options, log=None) -> dict:
    """Grade the class described by ``opts``; returns the run summary (also written to OUT/run.json)."""
    return Grader(opts, log).run()

