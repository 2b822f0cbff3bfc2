"""Find the students' submissions in a folder or a .zip, whatever produced it.

Accepted layouts (a .zip is read like a folder, without extracting it; a single top-level folder
that wraps everything, e.g. ``submissions/`` or ``submitted/``, is looked through):

1. **nbgrader**: ``<student>/<assignment>/<notebook>.ipynb`` (the ``submitted/`` directory of an
   nbgrader course), with nbgrader's ``timestamp.txt`` beside it.  Other assignments are ignored.
2. **one folder per student** (Moodle "download all submissions" with folders):
   ``<folder>/<anything>.ipynb``; the student is the folder (Moodle: ``Full Name_<id>_assignsubmission_file_``).
3. **one file per student** (flat LMS exports), the student taken from the file name: Moodle
   ``Full Name_<id>_assignsubmission_file_<original>.ipynb``, Canvas ``login[_LATE]_<user id>_<attachment
   id>_<original>.ipynb``, otherwise ``<student>_<assignment>.ipynb`` / ``<student>-<assignment>.ipynb`` /
   ``<assignment>_<student>.ipynb`` (any of the course's assignment names) or ``<student>.ipynb``.  A
   browser's copy marker (``alice_02-als (1).ipynb``) is ignored.

Who the submitter is and their student id (LMS ids kept, collisions resolved): :mod:`.identity`.

**Versions.**  Every regular ``.ipynb`` file of a submitter is one version, with a submission time
from (first that exists) nbgrader's ``timestamp.txt``, the LMS export (Moodle's and Canvas' file
times: the zip entry's time, or the file's modification time once extracted; Canvas' ``LATE_`` marker
is kept for :mod:`.deadlines`), or the file's modification time; ``time_source`` records which.
:func:`discover` returns one :class:`Submission` per submitter: their newest readable version (time,
then name), with every version in ``versions``.

**Every submitter gets a row.**  A submitter with no readable notebook -- only a symbolic link (never
followed), a folder named ``*.ipynb``, a FIFO/socket/device, a file that cannot be read, or files that
are not notebooks -- gets a Submission with ``invalid`` set to the reason (status ``invalid``).  Files
that name no submitter (``readme.txt`` at the top of a flat export, hidden files, ``__MACOSX``) and
extra files next to a notebook are listed in ``ignored``; they are never given to the kernel.
"""
from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable

from .deadlines import parse_timestamp_txt, utc_iso, zone
from .identity import COPY_MARKER, Person, assign_ids, lms_file, moodle_folder, student_id

__all__ = ["MAX_FILE_BYTES", "Submission", "Discovery", "discover", "student_from_filename", "student_id"]

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ZIP_BYTES = 4 * 1024 * 1024 * 1024
READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)
KINDS = {stat.S_IFLNK: "symbolic link (not followed)", stat.S_IFDIR: "folder, not a notebook file",
         stat.S_IFIFO: "FIFO, not a regular file", stat.S_IFSOCK: "socket, not a regular file",
         stat.S_IFCHR: "device, not a regular file", stat.S_IFBLK: "device, not a regular file"}


@dataclass
class Submission:
    """One version of one submitter's notebook (``data`` is read by :meth:`load`; may not be a notebook)."""

    student: str
    origin: str                       # where it came from (for messages)
    data: bytes                       # the notebook file (possibly not a notebook at all)
    filename: str                     # original file name
    mtime: float = 0.0                # submission time, seconds since the epoch
    extra_files: list = field(default_factory=list)
    named_assignment: str | None = None  # assignment named by the file name, if any
    notes: list = field(default_factory=list)
    name: str = ""                    # the submitter as the LMS / folder calls them
    lms: str | None = None            # "moodle" | "canvas" | None
    lms_id: str | None = None
    lms_late: bool = False            # Canvas' LATE_ marker
    submitted_at: datetime | None = None  # aware, UTC
    time_source: str = ""
    invalid: str | None = None        # why this submitter has no gradable notebook
    versions: list = field(default_factory=list, repr=False)   # every version of the submitter
    reader: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    read_error: str | None = None

    def load(self) -> str | None:
        """Read the file into ``data`` (once); returns None, or what went wrong reading it."""
        if self.reader is not None:
            try:
                self.data = self.reader()
            except READ_ERRORS as e:
                self.read_error = f"{type(e).__name__}: {e}"[:300]
            self.reader = None
        return self.read_error

    @property
    def version(self) -> str:
        """The version id: the first 12 hex digits of the file's SHA-256 (of the reason if invalid)."""
        return hashlib.sha256(("invalid: " + self.invalid).encode() if self.invalid else self.data).hexdigest()[:12]

    def identity(self) -> dict:
        """Who handed this in: student id, LMS, name, LMS id, original file."""
        return {"student": self.student, "lms": self.lms, "lms_id": self.lms_id, "name": self.name,
                "source_file": self.filename, "origin": self.origin}

    def version_info(self) -> dict:
        """This version: id, submission time (UTC) and where that time came from."""
        return {"id": self.version, "submitted_at": utc_iso(self.submitted_at), "time_source": self.time_source,
                "lms_late": self.lms_late}


@dataclass
class Discovery:
    """What :func:`discover` found: one submission per submitter, and notes about the files it skipped."""

    submissions: list
    ignored: list                     # human-readable notes about skipped files
    identities: dict = field(default_factory=dict)   # student id -> identity + files
    collisions: list = field(default_factory=list)   # ids several people reduce to (identity.assign_ids)


@dataclass
class _Entry:
    rel: str
    kind: int                          # stat.S_IFREG, S_IFLNK, S_IFDIR, ...
    mtime: float | None                # epoch seconds (folder)
    zip_time: tuple | None             # naive date_time of a zip entry
    read: Callable[[], bytes] | None
    problem: str = ""                  # set when the entry itself cannot be read


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


def _stem(filename: str) -> str:
    stem = filename[:-6] if filename.lower().endswith(".ipynb") else filename
    return COPY_MARKER.sub("", stem)


def _person_from_filename(filename: str, names) -> tuple[Person, str | None, bool]:
    stem = _stem(filename)
    person, rest, late = lms_file(stem)
    if person:
        return person, _strip_assignment(COPY_MARKER.sub("", rest), names)[1], late
    if not filename.lower().endswith(".ipynb"):
        stem = PurePosixPath(stem).stem
    name, named = _strip_assignment(stem, names)
    return Person(("name", name), name), named, False


def student_from_filename(filename: str, assignment: str, known=()) -> tuple[str, str | None]:
    """(student id, assignment named in the file name or None) -- see the module docstring."""
    person, named, _ = _person_from_filename(filename, {assignment, *known})
    return person.base_id, named


def _read_file(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return f.read(MAX_FILE_BYTES + 1)


def _entries_from_dir(root: Path):
    errors: list[OSError] = []

    def unlistable():  # a folder that cannot be listed: its submitter (if any) gets an invalid row
        while errors:
            e = errors.pop()
            if Path(e.filename or root) == root:
                raise e
            yield _Entry(Path(e.filename).relative_to(root).as_posix(), stat.S_IFDIR, None, None, None,
                         f"a folder that cannot be listed ({e.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=errors.append):
        yield from unlistable()
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            if d.startswith(".") or d == "__MACOSX":
                continue
            st = os.lstat(here / d)
            if stat.S_ISLNK(st.st_mode) or d.lower().endswith(".ipynb"):
                yield _Entry((here / d).relative_to(root).as_posix(), stat.S_IFMT(st.st_mode), st.st_mtime, None, None)
            else:
                keep.append(d)
        dirnames[:] = keep
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            full = here / fn
            st = os.lstat(full)
            yield _Entry(full.relative_to(root).as_posix(), stat.S_IFMT(st.st_mode), st.st_mtime, None,
                         (lambda p=full: _read_file(p)) if stat.S_ISREG(st.st_mode) else None)
    yield from unlistable()


def _entries_from_zip(path: Path, ignored):
    zf = zipfile.ZipFile(path)
    total = 0
    for info in zf.infolist():
        name = info.filename.replace("\\", "/").rstrip("/")
        parts = PurePosixPath(name).parts
        if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts) or ".." in parts \
                or info.filename.startswith("/"):
            continue
        mode = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
        if info.is_dir():
            if name.lower().endswith(".ipynb"):
                yield _Entry(name, stat.S_IFDIR, None, info.date_time, None)
            continue
        if mode == stat.S_IFLNK:
            yield _Entry(name, stat.S_IFLNK, None, info.date_time, None)
            continue
        total += info.file_size
        if total > MAX_ZIP_BYTES:
            ignored.append(f"{name}: the zip expands to more than {MAX_ZIP_BYTES >> 30} GB (rest ignored)")
            break

        def read(info=info):
            with zf.open(info) as f:
                return f.read(MAX_FILE_BYTES + 1)
        yield _Entry(name, stat.S_IFREG, None, info.date_time, read)


def _entry_time(e: _Entry, tz: str) -> datetime | None:
    if e.zip_time is not None:
        if e.zip_time[0] < 1980:
            return None
        return datetime(*e.zip_time, tzinfo=zone(tz)).astimezone(timezone.utc)
    return datetime.fromtimestamp(e.mtime, timezone.utc) if e.mtime is not None else None


def _unwrap(entries, known, label):
    """Look through single wrapper folders (not an nbgrader student folder, not a Moodle folder)."""
    def parts(e):
        return PurePosixPath(e.rel).parts

    while entries and len({parts(e)[0] for e in entries}) == 1 and all(len(parts(e)) > 1 for e in entries):
        top = parts(entries[0])[0]
        below = [PurePosixPath(*parts(e)[1:]).as_posix() for e in entries]
        if len(entries) == 1 and len(parts(entries[0])) == 2:
            break  # <student folder>/<notebook>
        if {PurePosixPath(b).parts[0] for b in below} & known or moodle_folder(top):
            break  # <student>/<assignment>/... or a Moodle student folder
        for e, b in zip(entries, below):
            e.rel = b
        label += top + "/"
    return entries, label


def _attribute(e: _Entry, assignment, known, ignored, origin):
    """(person, named assignment, Canvas LATE_, attributable) of an entry, or None (ignored, noted)."""
    p = PurePosixPath(e.rel).parts
    if len(p) >= 3 and p[1] in known:  # nbgrader: student/assignment/...
        if p[1] != assignment:
            ignored.append(f"{origin}: belongs to assignment {p[1]} (ignored)")
            return None
        return Person(("name", p[0]), p[0]), None, False, True
    if len(p) == 1:
        person, named, late = _person_from_filename(p[0], known)
        return person, named, late, bool(person.lms or named or p[0].lower().endswith(".ipynb"))
    folder = p[-2] if len(p) == 2 else p[0]
    person = moodle_folder(folder) or Person(("name", folder), folder)
    return person, _person_from_filename(p[-1], known)[1], False, True


def discover(path, assignment: str, known_assignments=(), tz: str = "UTC") -> Discovery:
    """The submitters of ``assignment`` in the folder or .zip ``path`` (see the module docstring);
    ``known_assignments`` are the course's other assignment names, ``tz`` the zone of zip entry times
    and of ``timestamp.txt`` files without one.  FileNotFoundError if ``path`` is neither a folder nor a zip."""
    path = Path(path)
    ignored: list[str] = []
    if path.is_file() and zipfile.is_zipfile(path):
        entries, label = list(_entries_from_zip(path, ignored)), path.name + ":"
    elif path.is_dir():
        entries, label = list(_entries_from_dir(path)), ""
    else:
        raise FileNotFoundError(f"{path}: not a folder or a .zip file")
    known = set(known_assignments) | {assignment}
    entries, label = _unwrap(entries, known, label)

    stamps = {}  # (student, assignment) -> nbgrader's timestamp.txt
    for e in entries:
        parts = PurePosixPath(e.rel).parts
        if len(parts) == 3 and parts[1] in known and parts[2] == "timestamp.txt":
            stamps[parts[:2]] = e
    people: dict[tuple, Person] = {}
    found: dict[tuple, dict] = {}
    for e in entries:
        parts, origin = PurePosixPath(e.rel).parts, label + e.rel
        if len(parts) == 3 and stamps.get(parts[:2]) is e:
            continue
        got = _attribute(e, assignment, known, ignored, origin)
        if got is None:
            continue
        person, named, late, attributable = got
        people.setdefault(person.key, person)
        slot = found.setdefault(person.key, {"notebooks": [], "problems": [], "others": []})
        nested = len(parts) > 3 and parts[1] in known
        if e.problem:
            slot["problems"].append((origin, e.problem))
        elif nested or not e.rel.lower().endswith(".ipynb"):
            why = "not at the top of the submission" if nested else \
                KINDS.get(e.kind, "not an .ipynb file") if e.kind != stat.S_IFREG else "not an .ipynb file"
            slot["others"].append((origin, why, attributable))
        elif e.kind != stat.S_IFREG:
            slot["problems"].append((origin, "a " + KINDS.get(e.kind, "special file, not a regular file")))
        else:
            when, source = _time_of(e, person, stamps.get(parts[:2]) if len(parts) == 3 else None, tz, ignored)
            slot["notebooks"].append(Submission("", origin, b"", parts[-1], when.timestamp() if when else 0.0,
                                                named_assignment=named, name=person.name, lms=person.lms,
                                                lms_id=person.lms_id, lms_late=late, submitted_at=when,
                                                time_source=source, reader=e.read))
    counted = {k: slot for k, slot in found.items() if _counts(slot)}
    ids, collisions = assign_ids(people[k] for k in counted)
    result, identities = [], {}
    for key in sorted(counted, key=lambda k: ids[k]):
        sub = _submitter(ids[key], people[key], counted[key], ignored)
        result.append(sub)
        slot = counted[key]
        identities[sub.student] = {**sub.identity(), "files": [v.origin for v in slot["notebooks"]]
                                   + [o for o, _ in slot["problems"]] + [o for o, _, _ in slot["others"]]}
    for key, slot in found.items():
        if key not in counted:
            ignored += [f"{origin}: {why} (ignored)" for origin, why, _ in slot["others"]]
    return Discovery(result, ignored, identities, collisions)


def _counts(slot: dict) -> bool:
    """Does this submitter get a row: a notebook, a broken notebook, or a file that names them?"""
    return bool(slot["notebooks"] or slot["problems"] or any(a for _, _, a in slot["others"]))


def _time_of(e: _Entry, person: Person, stamp: _Entry | None, tz: str, ignored) -> tuple[datetime | None, str]:
    if stamp is not None and stamp.read is not None:
        try:
            return parse_timestamp_txt(stamp.read().decode("utf-8"), tz), "nbgrader timestamp.txt"
        except (*READ_ERRORS, UnicodeDecodeError, ValueError) as err:
            ignored.append(f"{stamp.rel}: unreadable timestamp ({err}); the file time is used")
    where = "zip entry time" if e.zip_time is not None else "file mtime"
    source = f"{person.lms.capitalize()} file time ({where})" if person.lms else where
    return _entry_time(e, tz), source


def _submitter(student: str, person: Person, slot: dict, ignored) -> Submission:
    """The submitter's Submission: their newest readable version, or an invalid one saying why."""
    versions = sorted(slot["notebooks"], key=lambda v: (v.submitted_at is not None, v.submitted_at or 0, v.origin))
    for v in versions:
        v.student = student
    for v in reversed(versions):
        if v.load() is None:
            v.versions = [w for w in versions if w.read_error is None]
            ignored += [f"{origin}: {why} (not graded)" for origin, why, _ in slot["others"]]
            ignored += [f"{origin}: {why} (not graded)" for origin, why in slot["problems"]]
            return v
        ignored.append(f"{v.origin}: could not be read ({v.read_error})")
    reasons = [f"{origin}: {why}" for origin, why in slot["problems"]] \
        + [f"{v.origin}: could not be read ({v.read_error})" for v in versions] \
        + [f"{origin}: {why}" for origin, why, _ in slot["others"]]
    reason = "no readable notebook: " + "; ".join(reasons[:5]) + ("; ..." if len(reasons) > 5 else "")
    newest = versions[-1] if versions else None
    origin = newest.origin if newest else ([o for o, _ in slot["problems"]] + [o for o, _, _ in slot["others"]])[0]
    return Submission(student, origin, b"", PurePosixPath(origin).name, newest.mtime if newest else 0.0,
                      notes=[reason], name=person.name, lms=person.lms, lms_id=person.lms_id,
                      submitted_at=newest.submitted_at if newest else None,
                      time_source=newest.time_source if newest else "", invalid=reason)
