"""The sandbox side of a grading run: which isolation works here, and one box per kernel.

:class:`Boxes` (one per run) reserves the run's sandbox users (:mod:`.users`), chooses the strongest
isolation that works (``namespace``, else ``user``; ``none`` without root) by probing it, makes the
private folders of each kernel (:meth:`Boxes.make_box`) and writes the wrapper's configuration
(:meth:`Boxes.sandbox_config`: what the kernel may read, its limits, its environment and the kernel
guard's settings).  See :mod:`.sandbox` for what the wrapper does with it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import replay, sandbox
from .options import Options
from .scan import runtime_policy
from .template import Assignment, Template
from .users import is_root, kill_user_processes, reserve_users

__all__ = ["Boxes"]


class Boxes:
    """Sandbox users, isolation mode and kernel boxes of one grading run (all below ``base``)."""

    def __init__(self, opts: Options, assignment: Assignment, template: Template, base: Path, out: Path, log):
        self.opts = opts
        self.assignment = assignment
        self.template = template
        self.base = base
        self.out = out
        self.log = log
        self.users: list = []               # one SlotUser per job slot (root only)
        self.isolation: str | None = None   # namespace | user | none, once chosen
        self.warnings: list[str] = []

    # -- choosing the isolation -----------------------------------------------------------------
    def choose_isolation(self) -> None:
        """Reserve the sandbox users and pick the isolation (``opts.isolation``, or the strongest that
        passes the probe); exits with a message when none works."""
        o = self.opts
        if o.isolation not in ("auto",) + sandbox.MODES:
            raise SystemExit(f"error: unknown isolation {o.isolation!r}")
        self.warnings = []
        if not is_root():
            if o.isolation in ("namespace", "user"):
                raise SystemExit(f"error: --isolation {o.isolation} needs root")
            self.isolation = "none"
            self.warnings.append("NOT running as root: student code runs as YOUR user with only rlimits -- "
                                 "it can read and write everything you can (no sandbox user, no namespaces). "
                                 "Run as root for isolation.")
        else:
            self.users = reserve_users(o.user_prefix, 2 * max(1, o.jobs))  # two per slot: see user()
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
                readable = [q for q in replay.hidden_paths() if os.stat(q).st_mode & 0o004]
                if readable:
                    self.warnings.append(f"isolation 'user': {len(readable)} reference-solution files are world-"
                                         f"readable, so student code can print them (e.g. {readable[0]}); "
                                         "hidden tests do not need them: chmod o-rwx them")
        for w in self.warnings:
            self.log(f"WARNING: {w}")
        self.log(f"isolation: {self.isolation}")

    def _probe(self, mode) -> tuple[bool, str]:
        user = self.users[0]
        box = self.make_box(user, "probe", mode)
        canary = self.base / "t" / "canary"
        canary.write_text("secret")
        os.chmod(canary, 0o600)
        cfg = self.sandbox_config(mode, user, box, cgroup=None, pidfile=None, n_cells=1)
        cfg["argv"] = [sys.executable, "-I", "-c", sandbox.PROBE_CODE]
        cfg["env"]["MF_PROBE_CANARY"] = str(canary)
        path = self.base / "t" / f"probe-{mode}.json"
        path.write_text(json.dumps(cfg))
        try:
            r = sandbox.run_wrapped(str(path), timeout=120)
        except subprocess.TimeoutExpired:
            return False, "probe timed out"
        finally:
            kill_user_processes(user.uid)
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

    def user(self, slot: int, parity: int = 0):
        """Sandbox user ``parity`` (0 or 1) of job slot ``slot`` (None without isolation).  A slot has two,
        used in turn, so the next student's kernel can start while the last one's is being killed."""
        return self.users[2 * slot + parity] if self.users and self.isolation != "none" else None

    # -- one kernel's box -----------------------------------------------------------------------
    def make_box(self, user, tag: str, mode: str) -> dict:
        """Folders of one kernel below ``base/b<tag>``: run (sockets, log), work, home, root (namespace
        mode's new /) and the seeds of work and home (released files, matplotlib's cache)."""
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
        for f in self.template.release_files:
            dest = work_seed / f.relative_to(self.template.release_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
        mpl = self.template.mplconfig
        if mpl.is_dir() and any(mpl.iterdir()):
            shutil.copytree(mpl, home_seed / ".config" / "matplotlib", dirs_exist_ok=True)
        if mode != "namespace":
            for top in (b / "work", b / "home"):
                for dirpath, dirnames, filenames in os.walk(top):
                    for n in dirnames + filenames:
                        os.chown(os.path.join(dirpath, n), uid, gid)
        return {"box": str(b), "run_dir": str(paths["run"]), "work_dir": str(paths["work"]),
                "home_dir": str(paths["home"]), "root_dir": str(paths["root"]),
                "seed_work": str(paths["seed_work"]), "seed_home": str(paths["seed_home"])}

    def _ro_paths(self) -> list:
        extra = list(self.opts.allow_paths)
        data = self.assignment.course / "data"
        if data.is_dir():
            extra.append(str(data))
        if os.environ.get("MFLIB_DATA") and os.path.isdir(os.environ["MFLIB_DATA"]):
            extra.append(os.environ["MFLIB_DATA"])
        paths = sandbox.readonly_paths(self.opts.expose_modules, extra)
        # never expose the course root itself or anything that contains the sources
        bad = [self.assignment.course, self.assignment.src, self.out, self.base]
        paths = [p for p in paths if not any(Path(p) == b or b.is_relative_to(p) for b in bad)]
        replay_dir = getattr(self.template, "replay_dir", None)  # the recorded reference answers (data)
        return paths + ([str(replay_dir)] if replay_dir else [])

    def _guard_config(self, ro_paths) -> dict:
        rt = runtime_policy(self.template.ref, self.assignment.policy)
        # ``mflib.ALS`` imports the model inside ``mflib.__getattr__``: that import is the notebook's
        # (mflib's own module-level code, e.g. probing which models are installed, is not)
        transparent = []
        spec = importlib.util.find_spec("mflib")
        if spec is not None and spec.origin:
            transparent += [[spec.origin, "__getattr__"], [os.path.realpath(spec.origin), "__getattr__"]]
        return {"trusted_roots": ro_paths, "transparent_functions": transparent, **rt,
                "watch": ["builtins", "math", "numpy", "numpy.testing", "autograder.*", "mflib.*"],
                "preload": ["numpy", "numpy.testing"],
                "output_limit": self.opts.output_limit}

    def sandbox_config(self, mode, user, box, cgroup, pidfile, n_cells) -> dict:
        """The wrapper's configuration (``sandbox.json``) for one kernel of ``n_cells`` code cells."""
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
               "MF_GUARD": json.dumps(self._guard_config(ro)),
               "MF_REPLAY": str(getattr(self.template, "replay_dir", None) or "")}
        data = self.assignment.course / "data"
        if os.environ.get("MFLIB_DATA"):
            env["MFLIB_DATA"] = os.environ["MFLIB_DATA"]
        elif data.is_dir():
            env["MFLIB_DATA"] = str(data)
        limits = {"memory_mb": o.memory_mb, "fsize_mb": o.fsize_mb, "nproc": o.max_procs,
                  "cpu_s": o.cpu_seconds(n_cells), "tmp_mb": o.tmp_mb, "work_mb": o.disk_mb,
                  "home_mb": 64, "nofile": 1024}
        return {"mode": mode, "uid": user.uid if user and mode != "none" else None,
                "gid": user.gid if user and mode != "none" else None, **box, "ro_paths": ro, "limits": limits,
                "cgroup_procs": cgroup.procs_files if cgroup else [], "pidfile": pidfile, "env": env,
                "hidden_paths": replay.hidden_paths() if mode == "namespace" else [],
                "argv": [sys.executable, "-I", "-m", "autograder.grading.replay", "-f", "{connection_file}"]}

    def release(self) -> None:
        """Kill what is left of the sandbox users' processes and give the users back."""
        for u in self.users:
            kill_user_processes(u.uid)
            u.release()
        self.users = []
