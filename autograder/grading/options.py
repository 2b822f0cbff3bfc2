"""The options of a grading run and the course's nbgrader configuration.

:class:`Options` holds every option of ``python -m autograder grade`` (one field per command-line
option, same defaults); :meth:`Options.grading_key` lists those that can change a grade (part of each
result's cache key) and :meth:`Options.notebook_budget` is the wall-clock limit of one notebook.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["Options", "DEFAULT_TIMEOUT", "DEFAULT_NOTEBOOK_TIMEOUT", "GRADER_VERSION", "load_course_config",
           "config_value"]

GRADER_VERSION = "2"    # part of every cache key: bump when a grade could change for the same input
DEFAULT_TIMEOUT = 120   # seconds per cell when neither --timeout nor the course config says
DEFAULT_NOTEBOOK_TIMEOUT = 15 * 60   # seconds for a whole notebook (--notebook-timeout)
GRACE_SECONDS = 120     # kernel start-up + nbgrader + feedback, on top of a notebook's execution budget


@dataclasses.dataclass
class Options:
    """Everything a grading run needs to know (see ``python -m autograder grade --help``)."""

    assignment: str
    submissions: str
    course_dir: str | None = None
    out_dir: str | None = None
    jobs: int = 1
    timeout: int | None = None          # per cell, seconds (default: the course's, else 120)
    notebook_timeout: int = DEFAULT_NOTEBOOK_TIMEOUT  # whole notebook, seconds of execution
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
    shard: str | None = None            # "K/N": grade only shard K of N (autograder.grading.shard)
    preflight: bool = True              # grade the instructor's solution first; stop if it loses points
    progress: bool | None = None        # progress bar on stderr (None: only when stderr is a terminal)
    deadline: str | None = None         # --deadline etc.: which versions are graded, late columns
    hard_deadline: str | None = None    # (autograder.grading.deadlines; not part of a grade's key)
    late_policy: str | None = None
    timezone: str = "UTC"               # zone of times written without one (deadlines, zip entries)

    def __post_init__(self):
        for name in ("memory_mb", "max_procs", "fsize_mb", "disk_mb", "tmp_mb", "jobs", "worker_memory_mb",
                     "notebook_timeout"):
            setattr(self, name, int(getattr(self, name)))
        self.output_limit_mb = float(self.output_limit_mb)
        self.cpus = float(self.cpus)
        if self.timeout is not None:
            self.timeout = int(self.timeout)

    @property
    def output_limit(self) -> int:
        """Output kept per notebook, in bytes."""
        return int(self.output_limit_mb * 2**20)

    def grading_key(self) -> dict:
        """The options that can change a grade (part of every result's cache key)."""
        return {k: getattr(self, k) for k in ("timeout", "notebook_timeout", "memory_mb", "output_limit_mb",
                                              "max_procs", "fsize_mb", "disk_mb", "tmp_mb", "forbid_imports",
                                              "allow_imports", "expose_modules", "allow_paths")}

    def notebook_budget(self, n_cells: int) -> int:
        """Wall-clock seconds the worker of one notebook of ``n_cells`` code cells may take, start-up and
        feedback included: ``120 + min(n_cells * (timeout + 20), notebook_timeout + 20)``.  Past it the
        worker is killed and every test scores 0 (status timeout); the executor itself stops the notebook
        at ``notebook_timeout`` and keeps the points earned so far, so this is only the backstop."""
        cells = n_cells * (self.timeout + 20)
        return GRACE_SECONDS + min(cells, self.notebook_timeout + 20)

    def cpu_seconds(self, n_cells: int) -> int:
        """RLIMIT_CPU of a kernel: ``min(timeout * n_cells, notebook_timeout * max(1, cpus)) + 60`` seconds
        (the cgroup caps a kernel at ``--cpus`` cores, so its CPU time follows its wall-clock budget)."""
        return int(min(self.timeout * max(1, n_cells), self.notebook_timeout * max(1.0, self.cpus))) + 60


def load_course_config(course_dir: Path):
    """The traitlets ``Config`` of ``course_dir/nbgrader_config.py`` (empty if there is none)."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    cfg = Config()
    path = Path(course_dir) / "nbgrader_config.py"
    if path.is_file():
        cfg.merge(PyFileConfigLoader(path.name, path=str(course_dir)).load_config())
    return cfg


def config_value(cfg, section: str, key: str, default=None):
    """``cfg.section.key`` if the config sets it, else ``default`` (never creates the section)."""
    if section in cfg and key in cfg[section]:
        return cfg[section][key]
    return default
