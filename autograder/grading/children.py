"""Worker processes of a grading run, forked from a multiprocessing fork server.

The fork server imports nbgrader & co. once and warms their caches (:data:`autograder.grading.worker.PRELOAD`,
:mod:`autograder.grading.warmup`), so a worker starts in milliseconds.  :meth:`Children.start` starts one
worker on a job file, in its own process group with a clean environment rooted in a private folder;
:meth:`Children.wait` waits for it under a wall-clock budget (a standby worker is started early and waited
for once its student is handed over, see :mod:`autograder.grading.student`); :meth:`Children.kill_all`
stops every running worker (Ctrl-C, SIGTERM).  The fork server is this process's own: two grading runs
never share one, and two runs in one process stop it only when the last is done (:meth:`Children.close`).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .worker import PRELOAD, child_main

__all__ = ["Children", "killpg", "stop_forkserver"]


def killpg(pid: int) -> None:
    """SIGKILL the process group ``pid`` (gone already: nothing to do)."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


_servers_lock = threading.Lock()
_server_users = 0   # Children objects of this process that use the fork server and are not closed


def stop_forkserver() -> None:
    """Stop multiprocessing's fork server (it would otherwise live as long as this process)."""
    from multiprocessing import forkserver
    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if stop is not None:
        with contextlib.suppress(OSError, ValueError):  # already stopped: nothing to do
            stop()


def worker_env(private: Path) -> dict:
    """The environment of a worker: PATH with this interpreter's bin/ first (nbgrader runs ``alembic``),
    C.UTF-8, and HOME, Jupyter's and IPython's folders and TMPDIR inside ``private`` (created 0700)."""
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(private / "home"),
           "JUPYTER_PATH": str(private / "jupyter"), "JUPYTER_CONFIG_DIR": str(private / "jupyter_config"),
           "JUPYTER_DATA_DIR": str(private / "jupyter_data"), "JUPYTER_RUNTIME_DIR": str(private / "runtime"),
           "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(private / "ipython"),
           "PYTHONDONTWRITEBYTECODE": "1", "MALLOC_ARENA_MAX": "2", "TMPDIR": str(private / "tmp")}
    for d in ("home", "jupyter", "jupyter_config", "jupyter_data", "runtime", "ipython", "tmp"):
        (private / d).mkdir(mode=0o700, exist_ok=True)
    return env


class Children:
    """The workers of one grading run (thread-safe)."""

    def __init__(self, memory_mb: int, stop: threading.Event):
        self.memory_bytes = memory_mb * 2**20
        self.stop = stop                        # set: every waiting run() returns "interrupted"
        self.active: dict[int, multiprocessing.Process] = {}   # id(process) -> process
        self.lock = threading.Lock()
        self.start_lock = threading.Lock()
        self.mp = multiprocessing.get_context("forkserver")
        self.mp.set_forkserver_preload(PRELOAD)
        self.uses_server = False

    def close(self) -> None:
        """This run is done with the fork server: stop it unless another run of this process still
        uses it (two Graders in one process share multiprocessing's one fork server)."""
        global _server_users
        with _servers_lock:
            if not self.uses_server:
                return
            self.uses_server = False
            _server_users -= 1
            if _server_users == 0:
                stop_forkserver()

    def start(self, job_path: Path, private: Path, cwd: Path, log: Path) -> multiprocessing.Process:
        """Start a worker on ``job_path`` in ``cwd`` (stdout/stderr to ``log``) and return it; it counts as
        running (:meth:`kill_all`) until :meth:`wait` or :meth:`discard` is done with it."""
        global _server_users
        env = worker_env(private)
        with _servers_lock:
            if not self.uses_server:
                self.uses_server = True
                _server_users += 1
        with self.start_lock:
            proc = self.mp.Process(target=child_main, name="autograder-worker",
                                   args=(str(job_path), env, str(cwd), str(log), self.memory_bytes, time.monotonic()))
            proc.start()
        with self.lock:
            self.active[id(proc)] = proc
        return proc

    def wait(self, proc: multiprocessing.Process, budget: float) -> tuple[int | None, str | None]:
        """Wait for ``proc`` at most ``budget`` s from now; returns (exit code, why) where why is None,
        ``"budget"`` (killed after ``budget`` s) or ``"interrupted"`` (the run was stopped)."""
        started, why = time.monotonic(), None
        try:
            while proc.is_alive():
                proc.join(0.1)   # returns as soon as the worker exits
                if self.stop.is_set():
                    why = "interrupted"
                    break
                if time.monotonic() - started > budget:
                    why = "budget"
                    break
        finally:
            self.discard(proc)
        return proc.exitcode, why

    def discard(self, proc: multiprocessing.Process) -> None:
        """Kill ``proc`` and everything in its process group if it still runs, and forget it."""
        if proc.is_alive():
            killpg(proc.pid)
            proc.kill()
        proc.join()
        with self.lock:
            self.active.pop(id(proc), None)

    def run(self, job_path: Path, private: Path, cwd: Path, budget: float, log: Path) -> tuple[int | None, str | None]:
        """:meth:`start` then :meth:`wait` (the template's worker)."""
        return self.wait(self.start(job_path, private, cwd, log), budget)

    def kill_all(self) -> None:
        """SIGKILL the process group of every running worker."""
        with self.lock:
            procs = list(self.active.values())
        for proc in procs:
            killpg(proc.pid)

