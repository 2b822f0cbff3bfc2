"""Where the course lives, and the one way the autograder writes a file.

* ``ROOT`` -- the repository this package belongs to (``course_src/``, ``solutions/``,
  ``assignments/``, ``nbgrader_config.py``);
* :func:`find_course_root` -- the course a command works on: the nearest folder with an
  ``nbgrader_config.py`` at or above a starting folder, else ``ROOT``;
* :func:`atomic_write` -- write a whole file or nothing (temporary file, fsync, rename), so a reader
  (a rerun, a TA opening grades.csv, a crashed run) never sees half a file.

Standard library only: the grading workers import it.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["ROOT", "find_course_root", "atomic_write"]

ROOT = Path(__file__).resolve().parents[2]


def find_course_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding an
    ``nbgrader_config.py``; ``ROOT`` when there is none."""
    start = Path(start or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    return ROOT


def atomic_write(path: str | Path, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` by ``data`` (str is UTF-8 encoded) atomically, with permissions ``mode``.

    The data go to a temporary file in the same folder, are fsync'ed, and the file is renamed over
    ``path``; on any error the temporary file is removed and the error raised."""
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
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
