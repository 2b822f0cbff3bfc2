"""What keeps two grading runs on one machine apart (two TAs, two assignments, one class into two folders).

Every run has a **run id** (:func:`new_run_id`: the grading process's pid and a random tag).  Everything
a run creates outside its output folder carries it or is reserved for it alone:

* its work folder ``/tmp/mfg-<run id>-*`` (with ``owner.pid``; a later run removes work folders whose
  owner is gone);
* its cgroups ``mfgrade-<pid>-<tag>-<slot>-<seq>`` (:func:`cgroup_prefix`; the pid comes first so that
  :func:`~autograder.grading.cgroups.cleanup_stale_cgroups` can tell the dead from the living);
* its sandbox users, reserved with a ``flock`` each (:func:`~autograder.grading.users.reserve_users`):
  a second run takes the next free ones, and "kill every process of this uid" never reaches another
  run's kernels;
* its worker fork server, a private multiprocessing server (its socket lives in a per-process
  temporary folder).

Two runs into the **same** output folder would overwrite each other's results: :class:`OutputLock`
refuses the second one (:class:`OutputBusy`) while the first is running.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
from pathlib import Path

from .users import LOCK_DIR

__all__ = ["OutputBusy", "OutputLock", "new_run_id", "cgroup_prefix"]


class OutputBusy(RuntimeError):
    """Another grading run is writing the same output folder (the message says which)."""


def new_run_id() -> str:
    """``<pid>-<6 hex digits>``: unique among the runs on this machine, and tells which process owns it."""
    return f"{os.getpid()}-{secrets.token_hex(3)}"


def cgroup_prefix(run_id: str) -> str:
    """The name prefix of a run's cgroups: ``mfgrade-<pid>-<tag>`` (see :mod:`.cgroups`)."""
    return f"mfgrade-{run_id}"


class OutputLock:
    """An exclusive ``flock`` on an output folder for the duration of a run (released when the process
    ends, even on SIGKILL).  The lock file lives in ``/run/lock`` (not in the output folder, whose
    files are the run's product) and names the owner for the error message."""

    def __init__(self, out: Path, run_id: str):
        self.out = Path(out).resolve()
        digest = hashlib.sha256(str(self.out).encode()).hexdigest()[:16]
        self.path = LOCK_DIR / f"mf-autograder-out-{digest}.lock"
        self.run_id = run_id
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputBusy` naming the run that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputBusy(f"another grading run ({owner}) is writing {self.out}; wait for it to finish "
                             "or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, run {self.run_id}".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        """Give the lock back (the lock file stays: removing it would race with a waiting run)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
