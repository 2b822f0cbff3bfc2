"""Find the students' submissions in a folder or a .zip, whatever produced it.

Accepted layouts (a .zip is read like a folder, without extracting it; a single top-level folder
that wraps everything, e.g. ``submissions/`` or ``submitted/``, is looked through):

1. **nbgrader**: ``<student>/<assignment>/<notebook>.ipynb`` (the ``submitted/`` directory of an
   nbgrader course).  Folders for other assignments are ignored.
2. **one folder per student** (Moodle "download all submissions" with folders):
   ``<folder>/<anything>.ipynb``; the student is the folder name, with Moodle's
   ``_<id>_assignsubmission_file_`` suffix removed.
3. **one file per student** (flat LMS exports), student taken from the file name:

   * Moodle: ``Full Name_12345_assignsubmission_file_<original name>.ipynb`` -> ``Full_Name``
   * Canvas: ``login_12345_67890_<original name>.ipynb`` and ``login_LATE_12345_67890_...``
     -> ``login``
   * otherwise ``<student>_<assignment>.ipynb`` / ``<student>-<assignment>.ipynb`` /
     ``<assignment>_<student>.ipynb`` -> ``<student>`` (any of the course's assignment names is
     recognised, so ``bob_01-svd-sgd.ipynb`` is bob's -- and flagged as the wrong assignment if
     its content is), and plain ``<student>.ipynb`` -> ``<student>``.
   * a browser's duplicate marker (``alice_02-als (1).ipynb``) is ignored.

Student ids keep letters, digits, ``.``, ``-``, ``_`` and ``@``; anything else becomes ``_``.
If a student has several notebooks the newest (modification time, then name) is graded and the
others are listed in the reason.  Only ``*.ipynb`` files are graded; other files (PDFs, HTML,
hidden files, ``__MACOSX``) are ignored and reported.  Extra files a student submits next to the
notebook are not given to the kernel: the notebook must be self-contained.
"""
from __future__ import annotations

import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ZIP_BYTES = 4 * 1024 * 1024 * 1024

MOODLE_FILE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_(?P<rest>.*)$",
                         re.IGNORECASE)
MOODLE_DIR = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_?$", re.IGNORECASE)
CANVAS_FILE = re.compile(r"^(?P<name>[^_]+?)(?:_late)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<rest>.*)$",
                         re.IGNORECASE)
COPY_MARKER = re.compile(r"\s*\(\d+\)$")


@dataclass
class Submission:
    """One student's notebook as found (the file may not be a notebook at all)."""

    student: str
    origin: str                       # where it came from (for messages)
    data: bytes                       # the notebook file (possibly not a notebook at all)
    filename: str                     # original file name
    mtime: float = 0.0
    extra_files: list = field(default_factory=list)
    named_assignment: str | None = None  # assignment named by the file name, if any
    notes: list = field(default_factory=list)


@dataclass
class Discovery:
    """What :func:`discover` found: one submission per student, and notes about the files it skipped."""

    submissions: list
    ignored: list                     # human-readable notes about skipped files


def student_id(name: str) -> str:
    """``name`` reduced to letters, digits, ``.``, ``-``, ``_``, ``@`` (no leading dot or CSV formula)."""
    s = re.sub(r"[^A-Za-z0-9._@-]+", "_", name.strip()).strip("._-@")  # no hidden files, no CSV formulas
    s = re.sub(r"_+", "_", s)
    return s[:100] or "unknown"


def _strip_assignment(stem: str, names) -> tuple[str, str | None]:
    low = stem.lower()
    for a in sorted(names, key=len, reverse=True):
        al = a.lower()
        for sep in ("_", "-", ".", " "):
            if low.endswith(sep + al) and len(stem) > len(a) + 1:
                return stem[: -len(a) - 1], a
            if low.startswith(al + sep) and len(stem) > len(a) + 1:
                return stem[len(a) + 1:], a
        if low == al:
            return "", a
    return stem, None


def student_from_filename(filename: str, assignment: str, known=()) -> tuple[str, str | None]:
    """(student id, assignment named in the file name or None) -- see the module docstring."""
    stem = filename[:-6] if filename.lower().endswith(".ipynb") else filename
    stem = COPY_MARKER.sub("", stem)
    names = {assignment, *known}
    m = MOODLE_FILE.match(stem)
    if m:
        _, named = _strip_assignment(COPY_MARKER.sub("", m["rest"]), names)
        return student_id(m["name"]), named
    m = CANVAS_FILE.match(stem)
    if m:
        _, named = _strip_assignment(COPY_MARKER.sub("", m["rest"]), names)
        return student_id(m["name"]), named
    name, named = _strip_assignment(stem, names)
    return student_id(name), named


def _entries_from_dir(root: Path, ignored):
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX"
                             and not os.path.islink(os.path.join(dirpath, d)))
        for fn in sorted(filenames):
            full = Path(dirpath) / fn
            rel = full.relative_to(root).as_posix()
            if fn.startswith("."):
                continue
            if full.is_symlink() or not full.is_file():
                ignored.append(f"{rel}: not a regular file (ignored)")
                continue
            yield rel, full.stat().st_size, full.stat().st_mtime, (lambda p=full: _read_limited(p))


def _read_limited(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(MAX_FILE_BYTES + 1)


def _entries_from_zip(path: Path, ignored):
    zf = zipfile.ZipFile(path)
    total = 0
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        if info.is_dir():
            continue
        parts = PurePosixPath(name).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts) or any(p == ".." for p in parts) \
                or name.startswith("/"):
            continue
        total += info.file_size
        if total > MAX_ZIP_BYTES:
            ignored.append(f"{name}: the zip expands to more than {MAX_ZIP_BYTES >> 30} GB (rest ignored)")
            break
        mtime = time.mktime(info.date_time + (0, 0, -1)) if info.date_time[0] >= 1980 else 0.0

        def read(info=info):
            with zf.open(info) as f:
                return f.read(MAX_FILE_BYTES + 1)
        yield name, info.file_size, mtime, read


def discover(path, assignment: str, known_assignments=()) -> Discovery:
    """The submissions of ``assignment`` in the folder or .zip ``path`` (layouts: module docstring);
    ``known_assignments`` are the course's other assignment names.  FileNotFoundError if ``path`` is
    neither a folder nor a zip file."""
    path = Path(path)
    ignored: list[str] = []
    if path.is_file() and zipfile.is_zipfile(path):
        entries = list(_entries_from_zip(path, ignored))
        label = path.name + ":"
    elif path.is_dir():
        entries = list(_entries_from_dir(path, ignored))
        label = ""
    else:
        raise FileNotFoundError(f"{path}: not a folder or a .zip file")
    known = set(known_assignments) | {assignment}

    # look through wrapper folders: a single top-level folder that is not an nbgrader student dir
    def parts(e):
        return PurePosixPath(e[0]).parts

    while entries and len({parts(e)[0] for e in entries}) == 1 and all(len(parts(e)) > 1 for e in entries):
        top = parts(entries[0])[0]
        below = [PurePosixPath(*parts(e)[1:]).as_posix() for e in entries]
        if len(entries) == 1 and len(parts(entries[0])) == 2:
            break  # <student folder>/<notebook>
        if {PurePosixPath(b).parts[0] for b in below} & known or MOODLE_DIR.match(top):
            break  # <student>/<assignment>/... or a Moodle student folder
        entries = [(b, *e[1:]) for b, e in zip(below, entries)]
        label += top + "/"

    found: list[Submission] = []
    for rel, size, mtime, read in entries:
        p = PurePosixPath(rel).parts
        origin = label + rel
        if len(p) >= 3 and p[1] in known:  # nbgrader: student/assignment/...
            if p[1] != assignment:
                ignored.append(f"{origin}: belongs to assignment {p[1]} (ignored)")
                continue
            if not rel.lower().endswith(".ipynb") or len(p) != 3:
                ignored.append(f"{origin}: not a notebook at the top of the submission (not graded)")
                continue
            sub = Submission(student_id(p[0]), origin, b"", p[2], mtime)
        elif not rel.lower().endswith(".ipynb"):
            ignored.append(f"{origin}: not an .ipynb file (ignored)")
            continue
        elif len(p) == 1:
            student, named = student_from_filename(p[0], assignment, known)
            sub = Submission(student, origin, b"", p[0], mtime, named_assignment=named)
        else:
            folder = p[-2] if len(p) == 2 else p[0]
            m = MOODLE_DIR.match(folder)
            student = student_id(m["name"] if m else folder)
            _, named = student_from_filename(p[-1], assignment, known)
            sub = Submission(student, origin, b"", p[-1], mtime, named_assignment=named)
        sub._read = read  # type: ignore[attr-defined]
        sub._size = size  # type: ignore[attr-defined]
        found.append(sub)

    by_student: dict[str, list[Submission]] = {}
    for s in found:
        by_student.setdefault(s.student, []).append(s)
    result = []
    for student in sorted(by_student):
        subs = sorted(by_student[student], key=lambda s: (s.mtime, s.origin))
        chosen = subs[-1]
        if len(subs) > 1:
            chosen.notes.append("several notebooks for this student; graded the newest, "
                                f"ignored: {', '.join(s.origin for s in subs[:-1])}")
        chosen.data = chosen._read()  # type: ignore[attr-defined]
        result.append(chosen)
    return Discovery(result, ignored)
