"""Per-kernel cgroups (memory incl. tmpfs pages, pids, CPU quota) for the grading parent (root).

cgroup v1 (separate memory/pids/cpu hierarchies) and v2 (unified, if the controllers can be enabled
below our own cgroup) are supported; whatever cannot be set up is skipped and reported by
:attr:`Cgroup.controllers` -- rlimits still apply.  Cgroups are named ``mfgrade-<pid>-...`` after the
grading process, so :func:`cleanup_stale_cgroups` can remove those of runs that died.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from .users import is_root

__all__ = ["Cgroup", "cgroup_bases", "cleanup_stale_cgroups", "grading_cgroups", "pid_alive"]


def _own_cgroup_paths() -> dict[str, str]:
    """controller -> path of this process's cgroup in that hierarchy (v1), '' key for v2."""
    paths = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(","):
                paths[c] = path
    return paths


class Cgroup:
    """Per-kernel cgroup(s): memory (incl. tmpfs pages), pids and cpu quota.

    cgroup v1 (separate memory/pids/cpu hierarchies) and v2 (unified, if the controllers can be
    enabled below our own cgroup) are supported; whatever cannot be set up is skipped and
    reported by :attr:`controllers` -- rlimits still apply.
    """

    def __init__(self, name: str, memory_bytes: int | None, pids: int | None, cpus: float | None):
        self.dirs: list[Path] = []
        self.controllers: list[str] = []
        self.memory_dir: Path | None = None
        self.v2 = False
        if not is_root():
            return
        own = _own_cgroup_paths()
        root = Path("/sys/fs/cgroup")
        wanted = {"memory": memory_bytes, "pids": pids, "cpu": cpus}
        if (root / "cgroup.controllers").exists():  # pure v2
            self._setup_v2(root / own.get("", "/").lstrip("/"), name, wanted)
            return
        for controller, value in wanted.items():
            if value is None:
                continue
            base = root / controller
            if not base.is_dir() or controller not in own:
                continue
            d = base / own[controller].lstrip("/") / name
            try:
                d.mkdir()
            except FileExistsError:
                pass
            except OSError:
                continue
            try:
                if controller == "memory":
                    (d / "memory.limit_in_bytes").write_text(str(value))
                    with contextlib.suppress(OSError):
                        (d / "memory.memsw.limit_in_bytes").write_text(str(value))
                    self.memory_dir = d
                elif controller == "pids":
                    (d / "pids.max").write_text(str(value))
                elif controller == "cpu":
                    (d / "cpu.cfs_period_us").write_text("100000")
                    (d / "cpu.cfs_quota_us").write_text(str(int(value * 100000)))
            except OSError:
                with contextlib.suppress(OSError):
                    d.rmdir()
                continue
            self.dirs.append(d)
            self.controllers.append(controller)

    def _setup_v2(self, parent: Path, name: str, wanted):
        d = parent / name
        try:
            d.mkdir(exist_ok=True)
        except OSError:
            return
        self.v2 = True
        self.dirs.append(d)
        ctl = (d / "cgroup.controllers").read_text().split() if (d / "cgroup.controllers").exists() else []
        for controller, value in wanted.items():
            if value is None or controller not in ctl:
                continue
            try:
                if controller == "memory":
                    (d / "memory.max").write_text(str(value))
                    with contextlib.suppress(OSError):
                        (d / "memory.swap.max").write_text("0")
                    self.memory_dir = d
                elif controller == "pids":
                    (d / "pids.max").write_text(str(value))
                elif controller == "cpu":
                    (d / "cpu.max").write_text(f"{int(value * 100000)} 100000")
                self.controllers.append(controller)
            except OSError:
                continue
        if not self.controllers:
            self.remove()
            self.dirs = []

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the sandbox wrapper writes its pid into."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_events(self) -> int:
        """Times the memory limit was hit (OOM kills, or allocations that failed at the limit)."""
        d = self.memory_dir
        if d is None:
            return 0
        try:
            if self.v2:
                events = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0))
            text = (d / "memory.oom_control").read_text()
            kills = dict(line.split() for line in text.splitlines()).get("oom_kill", "0")
            return int(kills)
        except (OSError, ValueError):
            return 0

    def pids(self) -> list[int]:
        """Pids of the processes in these cgroups."""
        out = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return sorted(out)

    def kill_all(self, timeout: float = 10.0):
        """SIGKILL every process in these cgroups until none is left (or ``timeout`` s passed)."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids or time.monotonic() > deadline:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self):
        """Kill what is left inside, then delete the cgroup directories."""
        self.kill_all()
        for d in self.dirs:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """Is there a process ``pid`` (possibly of another user)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cgroup_bases() -> list[Path]:
    """The folders a grading run started from this process makes its cgroups in: this process's own cgroup in
    each v1 hierarchy we use (memory, pids, cpu), and in the v2 unified tree.  Cgroups elsewhere on the machine
    (another container's, another session's) are none of ours."""
    own = _own_cgroup_paths()
    bases = [Path("/sys/fs/cgroup") / c / own[c].lstrip("/") for c in ("memory", "pids", "cpu") if c in own]
    bases.append(Path("/sys/fs/cgroup") / own.get("", "/").lstrip("/"))
    return [b for b in dict.fromkeys(bases) if b.is_dir()]


def grading_cgroups(prefix: str = "mfgrade-") -> list[Path]:
    """Every cgroup ``mfgrade-<pid>-...`` in :func:`cgroup_bases`, of living and dead runs alike."""
    return sorted(d for base in cgroup_bases() for d in base.glob(prefix + "*") if d.is_dir())


def cleanup_stale_cgroups(prefix: str = "mfgrade-") -> int:
    """Remove cgroups ``mfgrade-<pid>-...`` left by a grading process that no longer exists."""
    if not is_root():
        return 0
    removed = 0
    for d in grading_cgroups(prefix):
        try:
            pid = int(d.name[len(prefix):].split("-")[0])
        except ValueError:
            continue
        if pid_alive(pid):
            continue
        c = Cgroup.__new__(Cgroup)
        c.dirs, c.controllers, c.memory_dir, c.v2 = [d], [], None, False
        c.remove()
        removed += 1
    return removed
