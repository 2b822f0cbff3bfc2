"""Sandbox users for the grading parent (root): one dedicated unprivileged user per worker slot.

Each slot gets its own uid (``mfgrade-sbx0``, ``mfgrade-sbx1``, ...; created as system users with no
home and no login shell when missing), reserved with a ``flock`` so two grading runs on one machine
never share one.  RLIMIT_NPROC is counted per uid, and :func:`kill_user_processes` ends everything a
student's kernel left behind without touching anybody else.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["is_root", "ensure_user", "SlotUser", "reserve_users", "user_reserved", "user_pids",
           "kill_user_processes"]


def is_root() -> bool:
    """Does this process run as root (effective uid 0)?"""
    return os.geteuid() == 0


def ensure_user(name: str) -> tuple[int, int]:
    """uid, gid of sandbox user *name*; created (system user, no home, no login shell) if missing."""
    try:
        pw = pwd.getpwnam(name)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        pass
    if not is_root():
        raise PermissionError(f"sandbox user {name!r} does not exist and only root can create it")
    with _global_lock("useradd"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--user-group",
                        "--comment", "mf-course autograder sandbox", name],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(name)
        return pw.pw_uid, pw.pw_gid


LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")


@contextlib.contextmanager
def _global_lock(name: str):
    path = LOCK_DIR / f"mf-autograder-{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class SlotUser:
    """A sandbox user reserved for one worker slot (flock'ed so two runs never share one)."""

    def __init__(self, name: str, uid: int, gid: int, lock_fd: int):
        self.name, self.uid, self.gid, self._lock_fd = name, uid, gid, lock_fd

    def release(self):
        """Give the user back (unlock it for other runs)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __repr__(self):
        return f"SlotUser({self.name!r}, uid={self.uid})"


def _user_lock(name: str) -> Path:
    return LOCK_DIR / f"mf-autograder-user-{name}.lock"


def user_reserved(name: str) -> bool:
    """Is sandbox user ``name`` reserved by a running grading run (of any process) right now?"""
    try:
        fd = os.open(_user_lock(name), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we got it
    return False


def reserve_users(prefix: str, count: int, max_users: int = 64) -> list[SlotUser]:
    """Reserve *count* distinct sandbox users ``{prefix}0``, ``{prefix}1``, ... (created if needed).

    Each slot gets its own uid so RLIMIT_NPROC (counted per uid) and the "kill every process of
    the sandbox uid" cleanup of one student can never affect another student graded in parallel,
    and a second grading run on the same machine uses different users.
    """
    users: list[SlotUser] = []
    index = 0
    while len(users) < count:
        if index >= max_users:
            for u in users:
                u.release()
            raise RuntimeError(f"could not reserve {count} sandbox users {prefix}N")
        name = f"{prefix}{index}"
        index += 1
        fd = os.open(_user_lock(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        uid, gid = ensure_user(name)
        kill_user_processes(uid)  # leftovers of an earlier crashed run
        users.append(SlotUser(name, uid, gid, fd))
    return users


def user_pids(uid: int) -> list[int]:
    """Pids of every process whose real uid is ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:  # real uid
                            pids.append(int(entry))
                        break
        except OSError:
            continue
    return pids


def kill_user_processes(uid: int, timeout: float = 10.0) -> int:
    """SIGKILL every process whose real uid is *uid* (a dedicated sandbox user) until none is left."""
    if uid == 0 or uid == os.getuid() or not is_root():
        return 0
    killed = 0
    deadline = time.monotonic() + timeout
    while True:
        pids = user_pids(uid)
        if not pids:
            return killed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        if time.monotonic() > deadline:
            return killed
        time.sleep(0.02)
