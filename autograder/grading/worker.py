"""The grading worker: the one process that runs nbgrader, for the template or for one student.

Entry points (both read a job file and write the answer file the job names):

* :func:`child_main` -- a worker forked from the supervisor's fork server (nbgrader already imported);
* ``python -I -m autograder.grading.worker JOB_FILE`` -- the same by hand (debugging).

A :class:`~autograder.grading.types.PrepareJob` runs ``nbgrader generate_assignment`` in a private
course folder (the template: gradebook with the hidden tests + release version).  A
:class:`~autograder.grading.types.Job` starts the sandbox kernel at once (its start-up overlaps
nbgrader's preparation of the notebook), runs nbgrader's autograde with
:class:`~autograder.grading.executor.SandboxedExecute` in the student's private copy of the template,
reads the executor's events (fail closed: an unreadable record is status ``error``) and the scores
from the gradebook, decides with :func:`~autograder.grading.verdict.verdict`, writes the zeros of that
verdict back to the gradebook (so the feedback shows the same numbers) and renders the feedback page.
``details["timing"]`` of the result says where the worker's time went.
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

from ..course.files import atomic_write
from .options import load_course_config, config_value
from .render import inject_banner, simple_feedback
from .sanitize import clean_autograded, delimiters
from .types import Job, PrepareJob, PrepareResult, Result
from .verdict import EventsError, GradebookScore, parse_events, verdict

__all__ = ["KERNEL_NAME", "PRELOAD", "nbgrader_config", "prepare", "grade", "run_job", "child_main", "main"]

KERNEL_NAME = "mf-sandbox"
# imported once by the fork server, so that every worker starts with them loaded
PRELOAD = ["autograder.grading.worker", "autograder.grading.executor", "autograder.grading.scan",
           "nbgrader.apps.api", "nbgrader.api", "nbconvert.exporters.html", "jupyter_client.manager", "nbclient",
           "nbgrader.converters", "nbgrader.preprocessors", "ipython_pygments_lexers", "sqlite3",
           "autograder.grading.warmup"]  # last: fills the libraries' lazy caches once (see its docstring)


def nbgrader_config(job: PrepareJob | Job):
    """traitlets Config for nbgrader in the private course folder of ``job``."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute

    from .executor import SandboxedExecute

    cfg = load_course_config(Path(job.course_dir))
    root = job.root
    cfg.CourseDirectory.root = root
    cfg.CourseDirectory.db_url = "sqlite:///" + os.path.join(root, "gradebook.db")
    cfg.CourseDirectory.source_directory = job.source_directory
    cfg.CourseDirectory.release_directory = job.release_directory
    cfg.CourseDirectory.submitted_directory = "submitted"
    cfg.CourseDirectory.autograded_directory = "autograded"
    cfg.CourseDirectory.feedback_directory = "feedback"
    cfg.CourseDirectory.groupshared = False
    if isinstance(job, Job):
        for section in ("Execute", "SandboxedExecute"):
            cfg[section].timeout = int(job.timeout)
            cfg[section].interrupt_on_timeout = True
            cfg[section].raise_on_iopub_timeout = False
            cfg[section].startup_timeout = 90
            cfg[section].kernel_name = KERNEL_NAME
            cfg[section].shutdown_kernel = "immediate"  # the sandbox is torn down right after anyway
        cfg.SandboxedExecute.notebook_timeout = int(job.notebook_timeout)
        if "exporter_class" not in cfg.GenerateFeedback:  # nbgrader's page; templates compiled once (warmup)
            cfg.GenerateFeedback.exporter_class = "autograder.grading.warmup.CachedHTMLExporter"
        cfg.SandboxedExecute.sandbox_kernel = KERNEL_NAME
        cfg.SandboxedExecute.events_file = job.events_file
        cfg.SandboxedExecute.output_limit = int(job.output_limit)
        cfg.SandboxKernelManager.max_message_bytes = max(4 * int(job.output_limit), 32 * 2**20)
        cfg.KernelManager.transport = "ipc"
        cfg.KernelManager.ip = job.ipc_path
        cfg.KernelManager.shutdown_wait_time = 3.0
        cfg.OverwriteCells.add_missing_cells = False  # done (robustly) by notebook.sanitize
        cfg.HTMLExporter.sanitize_html = True  # the feedback: also see sanitize.clean_autograded
        current = config_value(cfg, "Autograde", "autograde_preprocessors",
                               list(Autograde.class_traits()["autograde_preprocessors"].default()))
        cfg.Autograde.autograde_preprocessors = [SandboxedExecute if p is Execute or p == "Execute" else p
                                                 for p in current]
    return cfg


def _api(job: PrepareJob | Job, cfg=None):
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    cfg = nbgrader_config(job) if cfg is None else cfg
    return NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)


def prepare(job: PrepareJob) -> PrepareResult:
    """The template: nbgrader generate_assignment in the private course folder -> gradebook + release."""
    out = PrepareResult()
    try:
        r = _api(job).generate_assignment(job.assignment, force=True, create=True)
        out = PrepareResult(success=bool(r.get("success")), log=r.get("log", "")[-20000:], error=r.get("error", ""))
        if job.mplconfig:  # prebuild matplotlib's font cache once (else: stderr in a test)
            env = dict(os.environ, MPLCONFIGDIR=job.mplconfig)
            subprocess.run([sys.executable, "-I", "-c", "import matplotlib.font_manager"], env=env,
                           capture_output=True, timeout=300, cwd="/")
    except Exception:  # noqa: BLE001 - fails closed: no template; the supervisor stops the run with this text
        out.error = traceback.format_exc()
    return out


def read_events(path) -> list:
    """The executor's events (:func:`~autograder.grading.verdict.parse_events`); a missing or unreadable
    file raises :class:`~autograder.grading.verdict.EventsError` -- never "no events"."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EventsError("the events file is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EventsError(f"the events file cannot be read: {e}") from None
    return parse_events(text)


def _oom_count(memory_dir) -> int:
    if not memory_dir:
        return 0
    for name in ("memory.oom_control", "memory.events"):
        p = Path(memory_dir) / name
        if p.exists():
            try:
                d = dict(line.split() for line in p.read_text().splitlines())
                return int(d.get("oom_kill", 0))
            except (OSError, ValueError):
                return 0
    return 0


def grade(job: Job, cfg=None, clock: "_Clock | None" = None) -> Result:
    """Autograde one student (see the module docstring); writes the feedback page to ``job.feedback``.
    With ``cfg`` the kernel was started already (a standby worker, :func:`run_standby`)."""
    from nbgrader.api import Gradebook

    from .executor import discard_prestarted_kernel, prestart_kernel

    a, sid, nbname = job.assignment, job.student, job.notebook
    root = Path(job.root)
    clock = clock or _Clock(_spawned_at)
    if cfg is None:
        clock.lap("worker_start_s")   # fork server -> here (0 when run by hand)
        cfg = nbgrader_config(job)
        prestart_kernel(cfg, KERNEL_NAME, str(root))  # boots while nbgrader prepares the notebook
        clock.lap("kernel_launch_s")
    api = _api(job, cfg)
    try:
        r = api.autograde(a, sid, force=True, create=True)
    finally:
        discard_prestarted_kernel()  # still there only if autograde failed before executing
    clock.lap("autograde_s")
    print(f"[autograder] autograde took {clock.laps['autograde_s']:.2f} s", file=sys.stderr, flush=True)
    try:
        events, record_error = read_events(job.events_file), None
    except EventsError as e:
        events, record_error = [], str(e)
    oom = _oom_count(job.memory_cgroup)
    autograded = root / "autograded" / sid / a / f"{nbname}.ipynb"
    if not r.get("success") or not autograded.exists():
        err = (r.get("error") or r.get("log") or "").strip().splitlines()
        details = {"log": (r.get("log") or "")[-5000:], "events": events, "timing": clock.laps}
        if record_error:
            details["record_error"] = record_error
        return Result(status="error", reason="nbgrader autograde failed: " + (err[-1] if err else "?")[:300],
                      details=details)
    # hidden tests out, outputs sanitised -- before the verdict reads it and the feedback renders it
    nb, _ = clean_autograded(autograded, root / job.source_directory / a / f"{nbname}.ipynb",
                             *delimiters(api.config))
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(nbname, a, sid)
        raw = [GradebookScore(g.name, g.manual_score if g.manual_score is not None else g.auto_score,
                              g.extra_credit, float(g.max_score)) for g in sub.grades]
        result = verdict(events, raw, nb, job, oom, record_error=record_error)
        zeroed = set(result.details.get("zeroed", ()))
        for g in sub.grades:
            if g.name in zeroed:
                g.manual_score, g.extra_credit = 0.0, None
        if zeroed:
            gb.db.commit()
    clock.lap("verdict_s")
    fr = api.generate_feedback(a, sid, force=True)
    html_path = root / "feedback" / sid / a / f"{nbname}.html"
    if fr.get("success") and html_path.exists():
        page = html_path.read_text(encoding="utf-8", errors="replace")
        Path(job.feedback).write_text(inject_banner(page, result, nb), encoding="utf-8")
    else:
        Path(job.feedback).write_text(simple_feedback(sid, a, result), encoding="utf-8")
        result.details["feedback_error"] = (fr.get("error") or "")[-2000:]
    clock.lap("feedback_s")
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this worker only: nbgrader, verdict, feedback (not the kernel)
    result.details["timing"] = {**clock.laps, "worker_cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}
    return result


class _Clock:
    """Wall-clock laps of the worker, in seconds: ``laps[name]`` = time since the previous lap."""

    def __init__(self, start: float | None = None):
        self.last = time.monotonic() if start is None else start
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self.last, 3)
        self.last = now


def run_job(job_path: str) -> int:
    """Run the job in ``job_path`` (its ``kind`` says which) and write its answer; exit status."""
    data = json.loads(Path(job_path).read_text())
    kind = data.pop("kind")
    if kind == "prepare":
        job = PrepareJob(**data)
        out = prepare(job)
        atomic_write(Path(job.result), out.to_json())
        return 0 if out.success else 1
    job = Job(**data)
    if kind == "standby":
        return run_standby(job, Path(job_path).with_name("job.json"))
    return _grade_and_answer(job)


def _grade_and_answer(job: Job, cfg=None, clock=None) -> int:
    result = Result(reason="the grading worker failed")
    try:
        result = grade(job, cfg, clock)
    except Exception:  # noqa: BLE001 - fails closed: status error (all 0) with the traceback in the result
        result.reason = "internal grading error: " + traceback.format_exc().strip().splitlines()[-1][:300]
        result.details = {"traceback": traceback.format_exc()[-5000:]}
    atomic_write(Path(job.result), result.to_json(indent=1, sort_keys=True))
    return 0


# the fields of the standby job that the student's job may change (everything else is the sandbox's)
HANDOVER_FIELDS = ("student", "notes", "forbidden")


def run_standby(standby: Job, job_file: Path, poll: float = 0.01) -> int:
    """A standby worker (:func:`autograder.grading.student.prepare`): start the kernel now, wait for the
    student's job in ``job_file`` (written by the supervisor), then grade it.  Leaves (killing the
    kernel) if the supervisor goes away before."""
    from .executor import discard_prestarted_kernel, prestart_kernel

    cfg = nbgrader_config(standby)
    prestart_kernel(cfg, KERNEL_NAME, standby.root)
    parent = os.getppid()
    while not job_file.exists():
        if os.getppid() != parent:   # the fork server -- so the grading run -- is gone
            discard_prestarted_kernel()
            return 1
        time.sleep(poll)
    clock = _Clock()
    job = Job.from_json(job_file.read_text())
    changed = [f for f in dataclasses.fields(Job) if f.name not in HANDOVER_FIELDS
               and getattr(job, f.name) != getattr(standby, f.name)]
    if changed:
        discard_prestarted_kernel()
        raise ValueError(f"the student's job changes the standby's {[f.name for f in changed]}")
    return _grade_and_answer(job, cfg, clock)


def write_job(path: Path, job: PrepareJob | Job, kind: str | None = None) -> None:
    """Write ``job`` for :func:`run_job` (JSON with a ``kind`` key: prepare, grade or standby)."""
    data = json.loads(job.to_json())
    data["kind"] = kind or ("prepare" if isinstance(job, PrepareJob) else "grade")
    Path(path).write_text(json.dumps(data))


_spawned_at: float | None = None   # time.monotonic() when the supervisor asked for this worker


def child_main(job_path: str, env: dict, cwd: str, log_path: str, memory_bytes: int, spawned_at: float | None = None):
    """Entry point of a worker forked from the fork server: own process group, stdout/stderr to
    ``log_path``, rlimits, a clean environment; never returns.  ``spawned_at`` (the supervisor's
    ``time.monotonic()``, the same clock here) times the worker's start-up."""
    global _spawned_at
    _spawned_at = spawned_at
    os.setsid()  # own process group: the parent can kill it and everything it started
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = [p for p in sys.path if p and os.path.isabs(p)]  # nothing relative to the cwd
    os.chdir(cwd)
    rc = run_job(job_path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def main(argv=None) -> int:
    """``python -I -m autograder.grading.worker JOB_FILE``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -I -m autograder.grading.worker JOB_FILE", file=sys.stderr)
        return 2
    return run_job(argv[0])


if __name__ == "__main__":
    sys.exit(main())
