"""What travels between the grading processes, typed: statuses, jobs and results.

The supervisor writes a job (:class:`PrepareJob` for the template course, :class:`Job` for one
student) as JSON into the worker's private folder; the worker answers with a :class:`PrepareResult`
or a :class:`Result`.  At the process boundary they become plain JSON with :meth:`to_json` and come
back with :meth:`from_json` / :func:`from_dict` (unknown or missing required keys raise).
``results/<student>.json`` is a :class:`Result` too.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["STATUSES", "PrepareJob", "PrepareResult", "Job", "Result", "from_dict"]

# status -> what it means (the order is the order of the help text of ``python -m autograder grade``)
STATUSES = {
    "graded": "ran to the end (reason lists the failed tests)",
    "output_limit": "graded, but the output was truncated at --output-limit",
    "timeout": "a cell ran longer than --timeout (interrupted; if it could not be\n"
               "interrupted the kernel was killed and later cells score 0), or the\n"
               "notebook ran out of --notebook-timeout (later cells not run)",
    "memory_limit": "MemoryError or killed by the memory limit (--memory)",
    "crashed": "the kernel died (os._exit, segfault, killed itself); later cells score 0",
    "forbidden_import": "a forbidden library/reference model was imported; tests from that cell on score 0",
    "tampering": "the submission tries to change how it is graded; all tests score 0",
    "wrong_assignment": "the notebook belongs to another assignment; 0",
    "invalid_notebook": "empty, not JSON, or not a valid notebook; 0",
    "invalid": "no readable notebook file: a symlink, a folder named .ipynb,\n"
               "unreadable, or not an .ipynb file; 0",
    "error": "the grader itself failed for this student (see results/<student>.json)",
}

T = TypeVar("T")


def from_dict(cls: type[T], data: dict) -> T:
    """``cls(**data)`` for a dataclass ``cls``; a key ``cls`` does not have raises ``TypeError``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
    return cls(**data)


class _Json:
    """``to_json``/``from_json`` for the dataclasses below."""

    def to_json(self, **kwargs) -> str:
        """This object as JSON (``dataclasses.asdict``); ``kwargs`` go to ``json.dumps``."""
        return json.dumps(dataclasses.asdict(self), **kwargs)

    @classmethod
    def from_json(cls, text: str):
        """The object written by :meth:`to_json`."""
        return from_dict(cls, json.loads(text))


@dataclass
class PrepareJob(_Json):
    """Build the template course: ``nbgrader generate_assignment`` in a private course folder."""

    course_dir: str           # the instructor's course (its nbgrader_config.py is read)
    root: str                 # the private course folder the worker works in
    assignment: str
    source_directory: str
    release_directory: str
    result: str               # where the worker writes its PrepareResult
    mplconfig: str = ""       # if set: build matplotlib's font cache there once


@dataclass
class PrepareResult(_Json):
    """What the template worker reports."""

    success: bool = False
    log: str = ""
    error: str = ""


@dataclass
class Job(_Json):
    """Grade one student's notebook, already placed in ``root/submitted/<student>/<assignment>/``."""

    course_dir: str
    root: str
    assignment: str
    student: str
    notebook: str             # the notebook's name without .ipynb
    source_directory: str
    release_directory: str
    timeout: int              # seconds per cell
    output_limit: int         # bytes of output kept per notebook
    memory_mb: int
    events_file: str          # JSON lines written by the executor
    ipc_path: str             # ZeroMQ ipc:// socket path prefix (in the sandbox's run dir)
    result: str               # where the worker writes its Result
    feedback: str             # where the worker writes the feedback page
    memory_cgroup: str | None = None
    notebook_timeout: int = 0                       # seconds for all cells together (0: no limit)
    notes: list = field(default_factory=list)       # texts added to the reason
    forbidden: list = field(default_factory=list)   # static findings: {kind, cell, label, what}


@dataclass
class Result(_Json):
    """One student's grade: ``results/<student>.json`` (the worker fills the first part, the
    supervisor the identity of the submission)."""

    status: str = "error"
    reason: str = ""
    scores: dict = field(default_factory=dict)       # grade_id -> points (None: manual grading)
    max_scores: dict = field(default_factory=dict)
    total: float = 0.0
    max_total: float = 0.0
    details: dict = field(default_factory=dict)      # events, logs, seconds, ...
    student: str = ""
    assignment: str = ""
    key: str = ""                                    # cache key (see report.cache_key)
    submission: str = ""                             # where the notebook came from
    submission_sha256: str = ""
    isolation: str | None = None
    identity: dict = field(default_factory=dict)     # who handed it in (discovery.Submission.identity)
    version: dict = field(default_factory=dict)      # id, submitted_at, time_source (Submission.version_info)
    feedback: str = ""                               # this version's page: feedback/<student>/<version>.html
    history: list = field(default_factory=list)      # every graded version, oldest first (report.write_result)
