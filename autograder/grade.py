"""Grade a whole class safely: ``python -m autograder grade ASSIGNMENT SUBMISSIONS``.

Architecture (details and guarantees in docs/grading.md):

* The **parent** (this module, run as root for full isolation) finds the submissions
  (:mod:`autograder.submissions`), checks each one statically (:mod:`autograder.scan`) and runs
  up to ``--jobs`` students at a time.  It is the only process that writes the output directory:
  one ``results/<student>.json`` and ``feedback/<student>.html`` per student, written atomically
  as soon as that student is done, and ``grades.csv`` rebuilt from them.
* Once per run a **template** nbgrader course is made in a private root-only directory: the
  assignment's source folder is copied there and ``nbgrader generate_assignment`` fills a fresh
  gradebook (with the hidden tests) and the release version.
* Each student is graded by a **worker** process (forked from a multiprocessing fork server that
  has imported nbgrader once; ``python -I -m autograder.grade worker JOB`` does the same by hand),
  root, in its own 0700 copy of the template, with its own copy of the gradebook -- nbgrader's
  SQLite gradebook never sees two writers.  The worker runs nbgrader's autograde (with
  :class:`autograder.executor.SandboxedExecute`) and generate_feedback through nbgrader's API,
  reads the scores back with :class:`nbgrader.api.Gradebook` and writes one result file.
* The **kernel** is started by jupyter_client through a kernel spec whose argv is the sandbox
  wrapper (:mod:`autograder.sandbox`): it runs as a dedicated unprivileged user, in new
  mount/PID/network/IPC/UTS namespaces, with rlimits and cgroup limits, and sees only the
  Python installation, the course packages and a private working directory.
* Results are keyed by a hash of the submission, the assignment source, the course config and the
  grading options: a rerun skips students whose key is unchanged and reuses their result files
  verbatim, so it produces identical grades.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, wait, FIRST_COMPLETED
from pathlib import Path

# jsonschema's optional "iri" format checker (package rfc3987-syntax) compiles a grammar for ~2 s
# when jsonschema is imported (nbformat imports it); notebooks never use that format, and every
# grading process would pay for it.  Blocking the optional import makes jsonschema skip that checker.
if "rfc3987_syntax" not in sys.modules and not os.environ.get("AUTOGRADER_KEEP_RFC3987"):
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]

import multiprocessing  # noqa: E402

from . import sandbox  # noqa: E402
from . import scan as scanmod  # noqa: E402
from .submissions import discover  # noqa: E402

GRADER_VERSION = "1"
STATUSES = ("graded", "output_limit", "crashed", "timeout", "memory_limit", "forbidden_import",
            "tampering", "wrong_assignment", "invalid_notebook", "error")
KERNEL_NAME = "mf-sandbox"
DEFAULT_TIMEOUT = 120


@dataclasses.dataclass
class Options:
    assignment: str
    submissions: str
    course_dir: str | None = None
    out_dir: str | None = None
    jobs: int = 1
    timeout: int | None = None          # per cell, seconds (default: the course's, else 120)
    memory_mb: int = 2048               # address space of the kernel process
    output_limit_mb: float = 5.0        # output kept per notebook
    max_procs: int = 128                # processes + threads of the sandbox user
    fsize_mb: int = 64                  # largest file the kernel may write
    disk_mb: int = 256                  # size of the kernel's working directory (tmpfs)
    tmp_mb: int = 64                    # size of the kernel's /tmp and /dev/shm (tmpfs)
    cpus: float = 1.0                   # CPU quota of one kernel (cgroup), in cores
    isolation: str = "auto"             # auto | namespace | user | none
    user_prefix: str = "mfgrade-sbx"
    allow_paths: list = dataclasses.field(default_factory=list)
    expose_modules: list = dataclasses.field(default_factory=lambda: ["mflib", "autograder"])
    forbid_imports: list = dataclasses.field(default_factory=list)
    allow_imports: list = dataclasses.field(default_factory=list)
    students: list = dataclasses.field(default_factory=list)
    force: bool = False
    keep_work: bool = False
    worker_memory_mb: int = 4096
    verbose: bool = True

    def __post_init__(self):
        for name in ("memory_mb", "max_procs", "fsize_mb", "disk_mb", "tmp_mb", "jobs", "worker_memory_mb"):
            setattr(self, name, int(getattr(self, name)))
        self.output_limit_mb = float(self.output_limit_mb)
        self.cpus = float(self.cpus)
        if self.timeout is not None:
            self.timeout = int(self.timeout)

    def grading_key(self) -> dict:
        """The options that can change a grade (part of every result's cache key)."""
        return {k: getattr(self, k) for k in ("timeout", "memory_mb", "output_limit_mb", "max_procs",
                                              "fsize_mb", "disk_mb", "tmp_mb", "forbid_imports",
                                              "allow_imports", "expose_modules", "allow_paths")}


# --- small utilities -----------------------------------------------------------------------------

def atomic_write(path: Path, data: bytes | str, mode: int = 0o644):
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], Exception)


def sha256_tree(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and "__pycache__" not in rel and ".ipynb_checkpoints" not in rel:
            h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def find_course_root(start: Path | None = None) -> Path:
    start = Path(start or os.getcwd()).resolve()
    for d in (start, *start.parents):
        if (d / "nbgrader_config.py").is_file():
            return d
    return Path(__file__).resolve().parent.parent  # the repository this package lives in


def fmt_score(x) -> str:
    if x is None:
        return ""
    x = float(x)
    return str(int(x)) if x == int(x) else f"{x:g}"


def load_course_config(course_dir: Path):
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    cfg = Config()
    path = course_dir / "nbgrader_config.py"
    if path.is_file():
        cfg.merge(PyFileConfigLoader(path.name, path=str(course_dir)).load_config())
    return cfg


def _cfg_get(cfg, section, key, default=None):
    if section in cfg and key in cfg[section]:
        return cfg[section][key]
    return default


# --- config for nbgrader inside the private course dirs -----------------------------------------

def nbgrader_config(job: dict):
    """traitlets Config for nbgrader in the private course dir described by *job*."""
    from nbgrader.preprocessors import Execute
    from nbgrader.converters.autograde import Autograde
    from .executor import SandboxedExecute

    cfg = load_course_config(Path(job["course_dir"]))
    root = job["root"]
    cfg.CourseDirectory.root = root
    cfg.CourseDirectory.db_url = "sqlite:///" + os.path.join(root, "gradebook.db")
    cfg.CourseDirectory.source_directory = job["source_directory"]
    cfg.CourseDirectory.release_directory = job["release_directory"]
    cfg.CourseDirectory.submitted_directory = "submitted"
    cfg.CourseDirectory.autograded_directory = "autograded"
    cfg.CourseDirectory.feedback_directory = "feedback"
    cfg.CourseDirectory.groupshared = False
    if "timeout" in job:
        for section in ("Execute", "SandboxedExecute"):
            cfg[section].timeout = int(job["timeout"])
            cfg[section].interrupt_on_timeout = True
            cfg[section].raise_on_iopub_timeout = False
            cfg[section].startup_timeout = 90
            cfg[section].kernel_name = KERNEL_NAME
        cfg.SandboxedExecute.sandbox_kernel = KERNEL_NAME
        cfg.SandboxedExecute.events_file = job["events_file"]
        cfg.SandboxedExecute.output_limit = int(job["output_limit"])
        cfg.SandboxKernelManager.max_message_bytes = max(4 * int(job["output_limit"]), 32 * 2**20)
        cfg.KernelManager.transport = "ipc"
        cfg.KernelManager.ip = job["ipc_path"]
        cfg.KernelManager.shutdown_wait_time = 3.0
        cfg.OverwriteCells.add_missing_cells = False  # done (robustly) by scan.sanitize
        current = _cfg_get(cfg, "Autograde", "autograde_preprocessors",
                           list(Autograde.class_traits()["autograde_preprocessors"].default()))
        cfg.Autograde.autograde_preprocessors = [SandboxedExecute if p is Execute or p == "Execute" else p
                                                 for p in current]
    return cfg


def _api(job):
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    cfg = nbgrader_config(job)
    return NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)


# --- worker processes (run as ``python -I -m autograder.grade {prepare,worker} JOB``) -----------

def prepare_main(job_path: str) -> int:
    """Template: nbgrader generate_assignment in the private course dir -> gradebook + release."""
    job = json.loads(Path(job_path).read_text())
    out = {"success": False}
    try:
        api = _api(job)
        r = api.generate_assignment(job["assignment"], force=True, create=True)
        out.update(success=bool(r.get("success")), log=r.get("log", "")[-20000:], error=r.get("error", ""))
        if job.get("mplconfig"):  # prebuild matplotlib's font cache once (else: stderr in a test)
            env = dict(os.environ, MPLCONFIGDIR=job["mplconfig"])
            subprocess.run([sys.executable, "-I", "-c", "import matplotlib.font_manager"], env=env,
                           capture_output=True, timeout=300, cwd="/")
    except Exception:  # noqa: BLE001
        out["error"] = traceback.format_exc()
    atomic_write(Path(job["result"]), json.dumps(out))
    return 0 if out["success"] else 1


def worker_main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    result = {"status": "error", "reason": "the grading worker failed", "scores": {}}
    try:
        result = _work(job)
    except Exception:  # noqa: BLE001
        result["reason"] = "internal grading error: " + traceback.format_exc().strip().splitlines()[-1][:300]
        result["details"] = {"traceback": traceback.format_exc()[-5000:]}
    atomic_write(Path(job["result"]), json.dumps(result, indent=1, sort_keys=True))
    return 0


PRELOAD = ["autograder.grade", "autograder.executor", "autograder.scan", "nbgrader.apps.api", "nbgrader.api",
           "nbconvert.exporters.html", "jupyter_client.manager", "nbclient"]


def _child_main(kind: str, job_path: str, env: dict, cwd: str, log_path: str, memory_bytes: int):
    """Entry point of a worker forked from the fork server (modules already imported)."""
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
    rc = prepare_main(job_path) if kind == "prepare" else worker_main(job_path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def _read_events(path) -> list:
    events = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return events


def _oom_count(memory_dir) -> int:
    if not memory_dir:
        return 0
    for name in ("memory.oom_control", "memory.events"):
        p = Path(memory_dir) / name
        if p.exists():
            with _suppress():
                d = dict(line.split() for line in p.read_text().splitlines())
                return int(d.get("oom_kill", 0))
    return 0


def _label(i, cell) -> str:
    gid = scanmod.grade_id(cell) if cell is not None else None
    return gid or f"cell {i + 1}"


def _error_text(out) -> str:
    ename = out.get("ename", "Error")
    evalue = " ".join(str(out.get("evalue", "")).split())
    return f"{ename}: {evalue}"[:160] if evalue else ename


def _work(job: dict) -> dict:
    from nbgrader.api import Gradebook
    import nbformat

    a, sid, nbname = job["assignment"], job["student"], job["notebook"]
    root = Path(job["root"])
    _t = time.monotonic()
    api = _api(job)
    r = api.autograde(a, sid, force=True, create=True)
    print(f"[autograder] autograde took {time.monotonic() - _t:.2f} s", file=sys.stderr, flush=True)
    events = _read_events(job["events_file"])
    oom = _oom_count(job.get("memory_cgroup"))
    autograded = root / "autograded" / sid / a / f"{nbname}.ipynb"
    if not r.get("success") or not autograded.exists():
        err = (r.get("error") or r.get("log") or "").strip().splitlines()
        return {"status": "error", "reason": "nbgrader autograde failed: " + (err[-1] if err else "?")[:300],
                "scores": {}, "details": {"log": (r.get("log") or "")[-5000:], "events": events}}
    nb = nbformat.read(str(autograded), as_version=4)
    index = {scanmod.grade_id(c): i for i, c in enumerate(nb.cells) if scanmod.grade_id(c)}

    # what happened
    reasons, status = [], "graded"
    notes = list(job.get("notes", []))
    zero_from, zero_all = None, False
    tamper = [e for e in events if e["event"] == "tampering"]
    forbidden_rt = [e for e in events if e["event"] == "forbidden_import"]
    static_forbidden = job.get("forbidden", [])
    died = [e for e in events if e["event"] == "kernel_died"]
    timeouts = [e for e in events if e["event"] == "timeout"]
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
    died_oom = died and oom > 0
    if memory or died_oom:
        if status == "graded":
            status = "memory_limit"
        where = lab(memory[0]) if memory else lab(died[0])
        how = "MemoryError" if memory else "the kernel was killed"
        reasons.append(f"memory limit ({job['memory_mb']} MB) exceeded in {where} ({how})")
    cpu_killed = [e for e in died if "SIGXCPU" in str(e.get("how"))]
    if timeouts or cpu_killed:
        if status == "graded":
            status = "timeout"
        if timeouts:
            t = timeouts[0]
            msg = f"{lab(t)} exceeded the {job['timeout']} s time limit"
            if any(e.get("unresponsive") for e in timeouts):
                msg += " and the kernel could not be interrupted (killed; later cells not run)"
            reasons.append(msg)
        else:
            reasons.append(f"CPU time limit exceeded in {lab(cpu_killed[0])} (kernel killed; later cells not run)")
    if died and not died_oom and not cpu_killed:
        if status == "graded":
            status = "crashed"
        d = died[0]
        reasons.append(f"the kernel died in {lab(d)} ({d.get('how')}); later cells not run")
    if truncated:
        if status == "graded":
            status = "output_limit"
        reasons.append(f"output truncated after {job['output_limit'] // 1024} KiB")

    # scores from the gradebook (and zeroing, so the feedback shows the same numbers)
    scores, max_scores, manual = {}, {}, []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(nbname, a, sid)
        changed = False
        for g in sub.grades:
            pos = index.get(g.name)
            base = g.manual_score if g.manual_score is not None else g.auto_score  # (g.score says 0 for None)
            is_test = pos is not None and scanmod.is_test_cell(scanmod.nbg(nb.cells[pos]))
            if zero_all or (zero_from is not None and is_test and pos >= zero_from):
                if base is None or base > 0 or g.extra_credit:
                    g.manual_score, g.extra_credit, base = 0.0, None, 0.0
                    changed = True
            score = None if base is None else base + (g.extra_credit or 0.0)
            scores[g.name] = None if score is None else float(score)
            max_scores[g.name] = float(g.max_score)
            if score is None:
                manual.append(g.name)
        if changed:
            gb.db.commit()

    # which tests failed, and why
    failures = []
    for gid, i in index.items():
        cell = nb.cells[i]
        meta = scanmod.nbg(cell)
        if not (meta.get("grade") and not meta.get("solution") and cell.cell_type == "code"):
            continue
        errs = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        stderr = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        if errs:
            failures.append(f"{gid} ({_error_text(errs[-1])})")
        elif stderr and scores.get(gid) == 0:
            failures.append(f"{gid} (wrote to stderr)")
        elif scores.get(gid) is not None and scores[gid] < max_scores.get(gid, 0) and not zero_all \
                and (zero_from is None or i < zero_from):
            failures.append(f"{gid} (partial credit)")
    n_tests = sum(1 for gid, i in index.items() if scanmod.is_test_cell(scanmod.nbg(nb.cells[i])))
    if status == "graded" and not failures:
        reasons.append(f"all {n_tests} tests passed" if n_tests else "graded")
    if failures and not zero_all:
        reasons.append("failed: " + ", ".join(failures[:8]) + (" ..." if len(failures) > 8 else ""))
    if manual:
        reasons.append(f"{len(manual)} cell(s) need manual grading")
    reasons += notes

    total = sum(v for v in scores.values() if v is not None)
    result = {"status": status, "reason": "; ".join(reasons), "scores": scores, "max_scores": max_scores,
              "total": total, "max_total": sum(max_scores.values()),
              "details": {"events": events, "oom_kills": oom}}
    # feedback
    fr = api.generate_feedback(a, sid, force=True)
    html_path = root / "feedback" / sid / a / f"{nbname}.html"
    if fr.get("success") and html_path.exists():
        page = html_path.read_text(encoding="utf-8", errors="replace")
        Path(job["feedback"]).write_text(inject_banner(page, result), encoding="utf-8")
    else:
        Path(job["feedback"]).write_text(simple_feedback(job["student"], a, result), encoding="utf-8")
        result["details"]["feedback_error"] = (fr.get("error") or "")[-2000:]
    return result


def banner_html(result) -> str:
    color = "#2e7d32" if result["status"] == "graded" else "#c62828"
    score = f"{fmt_score(result.get('total', 0))} / {fmt_score(result.get('max_total', 0))}"
    return (f'<div style="border:2px solid {color};padding:0.8em;margin:1em;font-family:sans-serif">'
            f'<b>Autograder: {html.escape(result["status"])}</b> &mdash; score {score}<br>'
            f'{html.escape(result.get("reason", ""))}</div>')


def inject_banner(page: str, result) -> str:
    i = page.find("<body")
    if i >= 0:
        j = page.find(">", i)
        if j >= 0:
            return page[: j + 1] + banner_html(result) + page[j + 1:]
    return banner_html(result) + page


def simple_feedback(student, assignment, result) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(assignment)} "
            f"feedback for {html.escape(student)}</title></head><body>"
            f"<h1>{html.escape(assignment)}: {html.escape(student)}</h1>{banner_html(result)}</body></html>")


# --- the parent ----------------------------------------------------------------------------------

class Grader:
    def __init__(self, opts: Options, log=None):
        self.opts = opts
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True) if opts.verbose else None)
        self.stop = threading.Event()
        self.active: dict[int, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.seq = 0
        self.users: list = []
        self.base: Path | None = None
        self.mp = multiprocessing.get_context("forkserver")
        self.mp.set_forkserver_preload(PRELOAD)
        self.start_lock = threading.Lock()

    def run_child(self, kind, job_path: Path, private: Path, cwd: Path, budget: float, slot=None):
        """Run prepare/worker in a process forked from the fork server; returns (exitcode, why)."""
        env = self._worker_env(private)
        log = private / f"{kind}.log"
        with self.start_lock:
            proc = self.mp.Process(target=_child_main, name=f"autograder-{kind}",
                                   args=(kind, str(job_path), env, str(cwd), str(log),
                                         self.opts.worker_memory_mb * 2**20))
            proc.start()
        if slot is not None:
            with self.lock:
                self.active[slot] = proc
        started, why = time.monotonic(), None
        try:
            while proc.is_alive():
                if self.stop.wait(0.1):
                    why = "interrupted"
                    break
                if time.monotonic() - started > budget:
                    why = "budget"
                    break
        finally:
            if proc.is_alive():
                _killpg(proc.pid)
                proc.kill()
            proc.join()
            if slot is not None:
                with self.lock:
                    self.active.pop(slot, None)
        return proc.exitcode, why

    # -- setup --------------------------------------------------------------------------------
    def setup(self):
        o = self.opts
        self.course = Path(o.course_dir).resolve() if o.course_dir else find_course_root()
        self.course_cfg = load_course_config(self.course)
        from nbgrader.coursedir import CourseDirectory
        cd = CourseDirectory(config=self.course_cfg)
        self.source_directory = cd.source_directory
        self.release_directory = cd.release_directory
        self.src = self.course / self.source_directory / o.assignment
        notebooks = sorted(self.src.glob("*.ipynb")) if self.src.is_dir() else []
        if not notebooks:
            raise SystemExit(f"error: no source notebook in {self.src} (assignment {o.assignment!r})")
        if len(notebooks) > 1:
            raise SystemExit(f"error: {self.src} has {len(notebooks)} notebooks; assignments with several "
                             "notebooks are not supported by this grader")
        self.nbname = notebooks[0].stem
        src_root = self.course / self.source_directory
        known = {p.name for p in src_root.iterdir() if p.is_dir()} if src_root.is_dir() else set()
        known |= {a.get("name") for a in _cfg_get(self.course_cfg, "CourseDirectory", "db_assignments", [])
                  if isinstance(a, dict) and a.get("name")}
        self.known_assignments = sorted(k for k in known if k)
        if o.timeout is None:
            o.timeout = int(_cfg_get(self.course_cfg, "Execute", "timeout", None)
                            or _cfg_get(self.course_cfg, "ExecutePreprocessor", "timeout", None) or DEFAULT_TIMEOUT)
        self.out = Path(o.out_dir).resolve() if o.out_dir else self.course / "grading" / o.assignment
        (self.out / "results").mkdir(parents=True, exist_ok=True)
        (self.out / "feedback").mkdir(parents=True, exist_ok=True)
        course_cfg_file = self.course / "nbgrader_config.py"
        self.source_hash = hashlib.sha256(
            (sha256_tree(self.src) + (course_cfg_file.read_text() if course_cfg_file.exists() else "")
             + GRADER_VERSION + json.dumps(o.grading_key(), sort_keys=True)).encode()).hexdigest()
        self.policy = scanmod.Policy()
        self.policy.forbid += [m for m in o.forbid_imports if m not in self.policy.forbid]
        self.policy.allow += list(o.allow_imports)
        import nbformat
        source = nbformat.read(str(self.src / f"{self.nbname}.ipynb"), as_version=4)
        self.ref = scanmod.Reference.from_notebooks(self.nbname, source, source)  # until the template exists
        self.isolation = None
        self.warnings = []

    def setup_runtime(self):
        """The expensive part, only needed when somebody has to be graded: template + sandbox."""
        _remove_stale_work_dirs()
        sandbox.cleanup_stale_cgroups()
        self.base = Path(tempfile.mkdtemp(prefix="mfg-", dir="/tmp"))
        os.chmod(self.base, 0o711)
        (self.base / "owner.pid").write_text(str(os.getpid()))
        self._prepare_template()
        self._choose_isolation()
        probe = sandbox.Cgroup(f"mfgrade-{os.getpid()}-probe", 2**30, 64, 1.0) if self.isolation != "none" else None
        self.cgroup_controllers = probe.controllers if probe else []
        if probe is not None:
            probe.remove()
        if self.isolation != "none" and not self.cgroup_controllers:
            self.warnings.append("no cgroups available: memory/pids/cpu are limited per process (rlimits) only")
            self.log(f"WARNING: {self.warnings[-1]}")
        if self.isolation == "user":
            for d in ("results", "feedback"):
                os.chmod(self.out / d, 0o700)

    def _prepare_template(self):
        o = self.opts
        t = self.base / "t"
        t.mkdir(mode=0o700)
        course = t / "course"
        shutil.copytree(self.src, course / self.source_directory / o.assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        job = {"course_dir": str(self.course), "root": str(course), "assignment": o.assignment,
               "source_directory": self.source_directory, "release_directory": self.release_directory,
               "result": str(t / "prepare.json"), "mplconfig": str(t / "mplconfig")}
        (t / "mplconfig").mkdir()
        (t / "prepare_job.json").write_text(json.dumps(job))
        code, why = self.run_child("prepare", t / "prepare_job.json", t, course, budget=900)
        res = json.loads((t / "prepare.json").read_text()) if (t / "prepare.json").exists() else {}
        if why == "interrupted":
            raise KeyboardInterrupt
        if not res.get("success"):
            log = (t / "prepare.log").read_text(errors="replace") if (t / "prepare.log").exists() else ""
            raise SystemExit("error: nbgrader generate_assignment failed for the template:\n"
                             + (res.get("error") or res.get("log") or log)[-3000:])
        self.template = course
        self.mplconfig = t / "mplconfig"
        import nbformat
        release_dir = course / self.release_directory / o.assignment
        source = nbformat.read(str(self.src / f"{self.nbname}.ipynb"), as_version=4)
        release = nbformat.read(str(release_dir / f"{self.nbname}.ipynb"), as_version=4)
        self.ref = scanmod.Reference.from_notebooks(self.nbname, release, source)
        self.release_files = [p for p in release_dir.rglob("*") if p.is_file() and p.suffix != ".ipynb"]
        self.release_dir = release_dir
        meta = source.metadata.get("autograder", {}) if isinstance(source.metadata, dict) else {}
        self.policy.forbid += [m for m in meta.get("forbidden_imports", []) if m not in self.policy.forbid]
        self.policy.allow += list(meta.get("allowed_imports", []))

    def _worker_env(self, private: Path) -> dict:
        env = {"PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(private / "home"),
               "JUPYTER_PATH": str(private / "jupyter"), "JUPYTER_CONFIG_DIR": str(private / "jupyter_config"),
               "JUPYTER_DATA_DIR": str(private / "jupyter_data"), "JUPYTER_RUNTIME_DIR": str(private / "runtime"),
               "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(private / "ipython"),
               "PYTHONDONTWRITEBYTECODE": "1", "MALLOC_ARENA_MAX": "2", "TMPDIR": str(private / "tmp")}
        for d in ("home", "jupyter", "jupyter_config", "jupyter_data", "runtime", "ipython", "tmp"):
            (private / d).mkdir(mode=0o700, exist_ok=True)
        return env

    def _choose_isolation(self):
        o = self.opts
        root = sandbox.is_root()
        if o.isolation not in ("auto",) + sandbox.MODES:
            raise SystemExit(f"error: unknown isolation {o.isolation!r}")
        self.warnings = []
        if not root:
            if o.isolation in ("namespace", "user"):
                raise SystemExit(f"error: --isolation {o.isolation} needs root")
            self.isolation = "none"
            self.warnings.append("NOT running as root: student code runs as YOUR user with only rlimits -- "
                                 "it can read and write everything you can (no sandbox user, no namespaces). "
                                 "Run as root for isolation.")
        else:
            self.users = sandbox.reserve_users(o.user_prefix, max(1, o.jobs))
            candidates = ["namespace", "user"] if o.isolation == "auto" else [o.isolation]
            self.isolation = None
            problems = []
            for mode in candidates:
                if mode == "none":
                    self.isolation = "none"
                    self.warnings.append("--isolation none as root: student code runs AS ROOT with only rlimits")
                    break
                ok, why = self._probe(mode)
                if ok:
                    self.isolation = mode
                    break
                problems.append(f"{mode}: {why}")
            if self.isolation is None:
                raise SystemExit("error: no working sandbox here (" + "; ".join(problems) + "). "
                                 "Use --isolation none to grade WITHOUT isolation.")
            if problems:
                self.warnings.append("sandbox fallback: " + "; ".join(problems))
            if self.isolation == "user":
                self.warnings.append("isolation 'user' (no namespaces): the kernel runs as an unprivileged user "
                                     "but can read every world-readable file (check that solutions/, the "
                                     "submissions and the output folder are not world-readable) and use the network")
        for w in self.warnings:
            self.log(f"WARNING: {w}")
        self.log(f"isolation: {self.isolation}")

    def _probe(self, mode) -> tuple[bool, str]:
        user = self.users[0]
        box = self._make_box(user, "probe", mode)
        canary = self.base / "t" / "canary"
        canary.write_text("secret")
        os.chmod(canary, 0o600)
        cfg = self._sandbox_cfg(mode, user, box, cgroup=None, pidfile=None, n_cells=1)
        cfg["argv"] = [sys.executable, "-I", "-c", sandbox.PROBE_CODE]
        cfg["env"]["MF_PROBE_CANARY"] = str(canary)
        path = self.base / "t" / f"probe-{mode}.json"
        path.write_text(json.dumps(cfg))
        try:
            r = sandbox.run_wrapped(str(path), timeout=120)
        except subprocess.TimeoutExpired:
            return False, "probe timed out"
        finally:
            sandbox.kill_user_processes(user.uid)
        log = (Path(box["run_dir"]) / "kernel.log")
        text = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(box["box"], ignore_errors=True)
        line = next((ln for ln in text.splitlines() if ln.startswith("PROBE")), None)
        if r.returncode != 0 or line is None:
            return False, (r.stderr.strip() or text.strip() or f"exit {r.returncode}")[-300:]
        info = json.loads(line[5:])
        if info["uid"] != user.uid or info["euid"] != user.uid:
            return False, f"kernel ran as uid {info['uid']}"
        if info["canary_readable"]:
            return False, "a root-only file was readable"
        if not info.get("imports"):
            return False, f"the kernel cannot import numpy/ipykernel: {info.get('import_error')}"
        if mode == "namespace" and info["network"]:
            return False, "network still reachable"
        return True, ""

    # -- boxes and sandbox config ---------------------------------------------------------------
    def _make_box(self, user, tag, mode) -> dict:
        b = self.base / f"b{tag}"
        shutil.rmtree(b, ignore_errors=True)
        b.mkdir(mode=0o711)
        os.chmod(b, 0o711)
        paths = {k: b / k for k in ("run", "work", "home", "root", "seed_work", "seed_home")}
        for p in paths.values():
            p.mkdir(mode=0o700)
        uid, gid = (user.uid, user.gid) if user is not None else (os.getuid(), os.getgid())
        for k in ("run", "work", "home"):
            os.chown(paths[k], uid, gid)
        # public inputs: the released files (not notebooks) and a prebuilt matplotlib cache
        work_seed = paths["work"] if mode != "namespace" else paths["seed_work"]
        home_seed = paths["home"] if mode != "namespace" else paths["seed_home"]
        for f in getattr(self, "release_files", []):
            dest = work_seed / f.relative_to(self.release_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        mpl = getattr(self, "mplconfig", None)
        if mpl is not None and mpl.is_dir() and any(mpl.iterdir()):
            shutil.copytree(mpl, home_seed / ".config" / "matplotlib", dirs_exist_ok=True)
        if mode != "namespace":
            for dirpath, dirnames, filenames in os.walk(b / "work"):
                for n in dirnames + filenames:
                    os.chown(os.path.join(dirpath, n), uid, gid)
            for dirpath, dirnames, filenames in os.walk(b / "home"):
                for n in dirnames + filenames:
                    os.chown(os.path.join(dirpath, n), uid, gid)
        return {"box": str(b), "run_dir": str(paths["run"]), "work_dir": str(paths["work"]),
                "home_dir": str(paths["home"]), "root_dir": str(paths["root"]),
                "seed_work": str(paths["seed_work"]), "seed_home": str(paths["seed_home"])}

    def _ro_paths(self) -> list:
        extra = list(self.opts.allow_paths)
        data = self.course / "data"
        if data.is_dir():
            extra.append(str(data))
        if os.environ.get("MFLIB_DATA") and os.path.isdir(os.environ["MFLIB_DATA"]):
            extra.append(os.environ["MFLIB_DATA"])
        paths = sandbox.readonly_paths(self.opts.expose_modules, extra)
        # never expose the course root itself or anything that contains the sources
        bad = [self.course, self.src, self.out, self.base]
        return [p for p in paths if not any(Path(p) == b or b.is_relative_to(p) for b in bad)]

    def _guard_cfg(self, ro_paths) -> dict:
        import importlib.util
        rt = scanmod.runtime_policy(self.ref, self.policy)
        transparent = []
        spec = importlib.util.find_spec("mflib")
        if spec is not None and spec.origin:
            transparent += [spec.origin, os.path.realpath(spec.origin)]
        return {"trusted_roots": ro_paths, "transparent_files": transparent, **rt,
                "watch": ["builtins", "math", "numpy", "numpy.testing", "autograder.*", "mflib.*"],
                "preload": ["numpy", "numpy.testing"],
                "output_limit": int(self.opts.output_limit_mb * 2**20)}

    def _sandbox_cfg(self, mode, user, box, cgroup, pidfile, n_cells) -> dict:
        o = self.opts
        ro = self._ro_paths()
        venv_bin = os.path.dirname(sys.executable)
        env = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": box["home_dir"],
               "USER": user.name if user else "student", "LOGNAME": user.name if user else "student",
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp" if mode == "namespace" else box["work_dir"],
               "MPLCONFIGDIR": os.path.join(box["home_dir"], ".config", "matplotlib"),
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
               "PYTHONDONTWRITEBYTECODE": "1", "NBGRADER_EXECUTION": "autograde", "JUPYTER_PLATFORM_DIRS": "1",
               "MF_GUARD": json.dumps(self._guard_cfg(ro))}
        data = self.course / "data"
        if os.environ.get("MFLIB_DATA"):
            env["MFLIB_DATA"] = os.environ["MFLIB_DATA"]
        elif data.is_dir():
            env["MFLIB_DATA"] = str(data)
        limits = {"memory_mb": o.memory_mb, "fsize_mb": o.fsize_mb, "nproc": o.max_procs,
                  "cpu_s": o.timeout * max(1, n_cells) + 60, "tmp_mb": o.tmp_mb, "work_mb": o.disk_mb,
                  "home_mb": 64, "nofile": 1024}
        return {"mode": mode, "uid": user.uid if user and mode != "none" else None,
                "gid": user.gid if user and mode != "none" else None, **box, "ro_paths": ro, "limits": limits,
                "cgroup_procs": cgroup.procs_files if cgroup else [], "pidfile": pidfile, "env": env,
                "argv": [sys.executable, "-I", "-m", "autograder.kernel_guard", "-f", "{connection_file}"]}

    # -- one student ----------------------------------------------------------------------------
    def key_for(self, sub) -> str:
        h = hashlib.sha256()
        for part in (self.source_hash, sub.student, sub.named_assignment or "", "\n".join(sub.notes)):
            h.update(part.encode() + b"\0")
        h.update(sub.data)
        return h.hexdigest()

    def result_base(self, sub, key) -> dict:
        return {"student": sub.student, "assignment": self.opts.assignment, "key": key,
                "submission": sub.origin, "submission_sha256": hashlib.sha256(sub.data).hexdigest(),
                "isolation": self.isolation}

    def zero_result(self, sub, key, status, reason) -> dict:
        scores = {gid: 0.0 for gid, _ in self.ref.grade_cells}
        maxes = {gid: pts for gid, pts in self.ref.grade_cells}
        r = self.result_base(sub, key)
        r.update(status=status, reason=reason, scores=scores, max_scores=maxes, total=0.0,
                 max_total=sum(maxes.values()), details={})
        return r

    def grade_one(self, sub, slot: int) -> tuple[dict, str]:
        """Returns (result, feedback html)."""
        key = self.key_for(sub)
        notes = list(sub.notes)
        try:
            nb = scanmod.load_notebook(sub.data)
        except scanmod.NotebookError as e:
            r = self.zero_result(sub, key, "invalid_notebook", "; ".join([str(e)] + notes))
            return r, simple_feedback(sub.student, self.opts.assignment, r)
        if scanmod.matching_ids(nb, self.ref) == 0:
            other = sub.named_assignment if sub.named_assignment and sub.named_assignment != self.opts.assignment else None
            why = (f"this is not a notebook of {self.opts.assignment}"
                   + (f" (the file name says {other})" if other else "")
                   + ": none of its graded/read-only cells belong to the assignment")
            r = self.zero_result(sub, key, "wrong_assignment", "; ".join([why] + notes))
            return r, simple_feedback(sub.student, self.opts.assignment, r)
        nb, fix_notes = scanmod.sanitize(nb, self.ref)
        notes = fix_notes + notes
        findings = scanmod.scan(nb, self.ref, self.policy)
        tamper = [f for f in findings if f.kind == "tampering"]
        if tamper:
            r = self.zero_result(sub, key, "tampering",
                                 "; ".join(["tampering with the grading: " + "; ".join(f.text() for f in tamper[:5])
                                            + " -- not executed, all tests scored 0"] + notes))
            return r, simple_feedback(sub.student, self.opts.assignment, r)
        forbidden = [dataclasses.asdict(f) for f in findings if f.kind == "forbidden_import"]
        with self.lock:
            self.seq += 1
            seq = self.seq
        r = self._execute(sub, nb, slot, seq, key, notes, forbidden)
        return r

    def _execute(self, sub, nb, slot, seq, key, notes, forbidden):
        import nbformat
        o = self.opts
        user = self.users[slot] if self.users and self.isolation != "none" else None
        p = self.base / f"p{slot}-{seq}"
        p.mkdir(mode=0o700)
        box = self._make_box(user, f"{slot}-{seq}", self.isolation)
        course = p / "course"
        course.mkdir()
        shutil.copy2(self.template / "gradebook.db", course / "gradebook.db")
        shutil.copytree(self.template / self.source_directory, course / self.source_directory)
        subdir = course / "submitted" / sub.student / o.assignment
        subdir.mkdir(parents=True)
        nbformat.write(nb, str(subdir / f"{self.nbname}.ipynb"))
        n_cells = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())
        # a student cannot buy more time by adding cells
        n_cells = min(n_cells, 2 * sum(1 for c in self.ref.source.cells if c.cell_type == "code") + 20)
        memory_bytes = (o.memory_mb + o.disk_mb + 2 * o.tmp_mb + 64 + 256) * 2**20
        cgroup = sandbox.Cgroup(f"mfgrade-{os.getpid()}-{slot}-{seq}", memory_bytes, o.max_procs, o.cpus) \
            if self.isolation != "none" else None
        pidfile = p / "ctl" / "wrapper.pid"
        try:
            code, reason, started = self._launch(sub, nb, slot, p, box, course, cgroup, pidfile, n_cells, notes,
                                                 forbidden)
        finally:
            self._cleanup_kernel(pidfile, cgroup, user)
        return self._collect(sub, key, p, box, code, reason, started, n_cells)

    def _launch(self, sub, nb, slot, p, box, course, cgroup, pidfile, n_cells, notes, forbidden):
        o = self.opts
        user = self.users[slot] if self.users and self.isolation != "none" else None
        ctl = p / "ctl"
        ctl.mkdir(mode=0o700)
        scfg = self._sandbox_cfg(self.isolation, user, box, cgroup, str(pidfile), n_cells)
        (ctl / "sandbox.json").write_text(json.dumps(scfg))
        kdir = p / "jupyter" / "kernels" / KERNEL_NAME
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-I", "-m", "autograder.sandbox", "wrap", str(ctl / "sandbox.json"),
                     "{connection_file}"],
            "display_name": "mf-course sandbox", "language": "python", "interrupt_mode": "signal"}))
        job = {"course_dir": str(self.course), "root": str(course), "assignment": o.assignment,
               "student": sub.student, "notebook": self.nbname, "source_directory": self.source_directory,
               "release_directory": self.release_directory, "timeout": o.timeout,
               "output_limit": int(o.output_limit_mb * 2**20), "memory_mb": o.memory_mb,
               "events_file": str(p / "events.jsonl"), "ipc_path": os.path.join(box["run_dir"], "k"),
               "memory_cgroup": str(cgroup.memory_dir) if cgroup and cgroup.memory_dir else None,
               "result": str(p / "result.json"), "feedback": str(p / "feedback.html"),
               "notes": notes, "forbidden": forbidden}
        (p / "job.json").write_text(json.dumps(job))
        started = time.monotonic()
        code, reason = self.run_child("worker", p / "job.json", p, course, self._budget(n_cells), slot=slot)
        return code, reason, started

    def _budget(self, n_cells) -> int:
        return 120 + n_cells * (self.opts.timeout + 20)

    def _collect(self, sub, key, p, box, code, reason, started, n_cells):
        o = self.opts
        budget = self._budget(n_cells)
        if reason == "interrupted":
            raise KeyboardInterrupt
        result_file = p / "result.json"
        if reason == "budget":
            r = self.zero_result(sub, key, "timeout",
                                 f"grading took longer than {budget} s (the per-notebook limit) and was stopped")
            html_page = simple_feedback(sub.student, o.assignment, r)
        elif not result_file.exists():
            tail = (p / "worker.log").read_text(errors="replace")[-2000:] if (p / "worker.log").exists() else ""
            r = self.zero_result(sub, key, "error", f"the grading worker failed (exit {code})")
            r["details"] = {"worker_log": tail}
            html_page = simple_feedback(sub.student, o.assignment, r)
        else:
            wr = json.loads(result_file.read_text())
            r = self.result_base(sub, key)
            r.update(wr)
            if "max_scores" not in r:
                r.update({k: v for k, v in self.zero_result(sub, key, r["status"], r["reason"]).items()
                          if k in ("scores", "max_scores", "total", "max_total")})
            fb = p / "feedback.html"
            html_page = fb.read_text(encoding="utf-8") if fb.exists() else simple_feedback(sub.student, o.assignment, r)
        r.setdefault("details", {})["seconds"] = round(time.monotonic() - started, 2)
        klog = Path(box["run_dir"]) / "kernel.log"
        if klog.exists() and r["status"] in ("crashed", "error", "memory_limit"):
            with open(klog, "rb") as f:
                f.seek(max(0, klog.stat().st_size - 2000))
                r["details"]["kernel_log_tail"] = f.read().decode(errors="replace")
        if not o.keep_work:
            shutil.rmtree(p, ignore_errors=True)
            shutil.rmtree(box["box"], ignore_errors=True)
        return r, html_page

    def _cleanup_kernel(self, pidfile, cgroup, user):
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
        if user is not None and self.isolation != "none":
            sandbox.kill_user_processes(user.uid)

    # -- outputs ----------------------------------------------------------------------------------
    def write_result(self, result: dict, page: str):
        student = result["student"]
        atomic_write(self.out / "feedback" / f"{student}.html", page)
        atomic_write(self.out / "results" / f"{student}.json", json.dumps(result, indent=1, sort_keys=True))

    def write_csv(self, students):
        cols = [gid for gid, _ in self.ref.grade_cells]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["student", "assignment", *cols, "total", "max_total", "status", "reason"])
        for s in sorted(students):
            path = self.out / "results" / f"{s}.json"
            if not path.exists():
                continue
            r = json.loads(path.read_text())
            scores = r.get("scores", {})
            w.writerow([s, r.get("assignment", self.opts.assignment), *[fmt_score(scores.get(c)) for c in cols],
                        fmt_score(r.get("total", 0)), fmt_score(r.get("max_total", 0)), r.get("status", ""),
                        r.get("reason", "")])
        atomic_write(self.out / "grades.csv", buf.getvalue())

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> dict:
        o = self.opts
        t0 = time.monotonic()
        self.setup()
        disc = discover(o.submissions, o.assignment, self.known_assignments)
        subs = disc.submissions
        all_students = [s.student for s in subs]  # grades.csv lists everybody, even with --student
        if o.students:
            subs = [s for s in subs if s.student in set(o.students)]
        for note in disc.ignored:
            self.log(f"ignored: {note}")
        todo, skipped = [], []
        for s in subs:
            key = self.key_for(s)
            path = self.out / "results" / f"{s.student}.json"
            fb = self.out / "feedback" / f"{s.student}.html"
            if not o.force and path.exists() and fb.exists():
                try:
                    if json.loads(path.read_text()).get("key") == key:
                        skipped.append(s.student)
                        continue
                except ValueError:
                    pass
            todo.append(s)
        students = all_students
        setup_seconds = 0.0
        if todo:
            t_setup = time.monotonic()
            try:
                self.setup_runtime()
            except BaseException:
                self.teardown()
                raise
            setup_seconds = time.monotonic() - t_setup
        self.log(f"{len(subs)} submission(s): {len(todo)} to grade, {len(skipped)} already graded "
                 f"(isolation {self.isolation}, {o.jobs} job(s), {o.timeout} s per cell)")
        slots: queue.Queue = queue.Queue()
        for i in range(max(1, o.jobs)):
            slots.put(i)
        statuses: dict[str, str] = {}
        done = 0

        def task(sub):
            slot = slots.get()
            try:
                if self.stop.is_set():
                    return None
                try:
                    result, page = self.grade_one(sub, slot)
                except KeyboardInterrupt:
                    return None
                except Exception:  # noqa: BLE001 - one student's problem never stops the run
                    result = self.zero_result(sub, self.key_for(sub), "error",
                                              "internal grading error: " + traceback.format_exc().strip().splitlines()[-1][:300])
                    result["details"] = {"traceback": traceback.format_exc()[-5000:]}
                    page = simple_feedback(sub.student, o.assignment, result)
                self.write_result(result, page)
                return result
            finally:
                slots.put(slot)

        interrupted = False
        old_term = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        pool = ThreadPoolExecutor(max_workers=max(1, o.jobs))
        try:
            futures = {pool.submit(task, s): s for s in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    r = f.result()
                    if r is None:
                        continue
                    done += 1
                    statuses[r["student"]] = r["status"]
                    self.log(f"[{done}/{len(todo)}] {r['student']}: {r['status']} "
                             f"{fmt_score(r.get('total'))}/{fmt_score(r.get('max_total'))} -- {r['reason'][:150]}")
                    self.write_csv(students)
        except KeyboardInterrupt:
            interrupted = True
            self.log("interrupted: stopping the running students (finished grades are kept)")
            self.stop.set()
            with self.lock:
                procs = list(self.active.values())
            for proc in procs:
                _killpg(proc.pid)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, old_term)
            self.write_csv(students)
            self.teardown()
        summary = {"assignment": o.assignment, "course_dir": str(self.course), "out_dir": str(self.out),
                   "isolation": self.isolation, "cgroups": getattr(self, "cgroup_controllers", []),
                   "warnings": self.warnings, "jobs": o.jobs,
                   "submissions": len(subs), "graded": done, "skipped": len(skipped), "ignored": disc.ignored,
                   "interrupted": interrupted, "seconds": round(time.monotonic() - t0, 2),
                   "setup_seconds": round(setup_seconds, 2),
                   "statuses": _count_statuses(self.out, students)}
        atomic_write(self.out / "run.json", json.dumps(summary, indent=1, sort_keys=True))
        if interrupted:
            raise KeyboardInterrupt
        return summary

    def teardown(self):
        if self.base is not None and not self.opts.keep_work:
            shutil.rmtree(self.base, ignore_errors=True)
        for u in self.users:
            sandbox.kill_user_processes(u.uid)
            u.release()
        self.users = []
        stop_forkserver()


def stop_forkserver():
    """Stop multiprocessing's fork server (it would otherwise live as long as this process)."""
    from multiprocessing import forkserver
    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if stop is not None:
        with _suppress():
            stop()


def _remove_stale_work_dirs():
    """/tmp/mfg-* work folders of grading runs whose process is gone (e.g. killed with SIGKILL)."""
    for d in Path("/tmp").glob("mfg-*"):
        try:
            if d.owner() != _current_user() or not (d / "owner.pid").is_file():
                continue
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError, KeyError):
            continue
        if not sandbox._pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _current_user():
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def _killpg(pid):
    with _suppress():
        os.killpg(pid, signal.SIGKILL)


def _count_statuses(out: Path, students) -> dict:
    counts: dict[str, int] = {}
    for s in students:
        p = out / "results" / f"{s}.json"
        if p.exists():
            st = json.loads(p.read_text()).get("status", "?")
            counts[st] = counts.get(st, 0) + 1
    return counts


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def grade(opts: Options, log=None) -> dict:
    return Grader(opts, log).run()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "worker":
        return worker_main(argv[1])
    if len(argv) == 2 and argv[0] == "prepare":
        return prepare_main(argv[1])
    from .cli import main as cli_main
    return cli_main(["grade", *argv])


if __name__ == "__main__":
    sys.exit(main())
