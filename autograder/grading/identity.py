"""Who handed a file in: the student id of every submitter, with LMS ids kept and no two people merged.

A submitter is recognised by a *person key*:

* **Moodle** ``Full Name_<participant id>_assignsubmission_file_<original>`` (a file) or
  ``Full Name_<participant id>_assignsubmission_file_/`` (a folder): key ``("moodle", id)``,
  student id ``Full_Name-<id>`` (e.g. ``Ann Lee_111_...`` -> ``Ann_Lee-111``);
* **Canvas** ``login_<user id>_<attachment id>_<original>`` or ``login_LATE_<user id>_...``: key
  ``("canvas", user id)``, student id ``login-<user id>``; the ``LATE_`` marker is kept
  (:mod:`.deadlines` reads it);
* anything else (an nbgrader ``submitted/<student>/`` folder, a folder per student, a plain file
  name): key ``("name", raw name)``, student id = the raw name reduced by :func:`student_id`.

Two different keys can still reduce to the same id (``ann lee.ipynb`` and ``ann_lee.ipynb``; two LMS
exports in one folder).  :func:`assign_ids` detects every such *collision* and gives each person a
distinct id: the one whose raw name already is the id keeps it, every other one gets
``<id>-<first 6 hex digits of SHA-256 of its key>`` (longer if that is taken too).  An id therefore
depends only on the person and on who collides with them, never on the order of the files, so a
regrade after one more file changes nobody else's id unless that file collides with them.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["MOODLE_FILE", "MOODLE_DIR", "CANVAS_FILE", "COPY_MARKER", "Person", "student_id", "lms_file",
           "moodle_folder", "assign_ids"]

MOODLE_FILE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_(?P<rest>.*)$",
                         re.IGNORECASE)
MOODLE_DIR = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_?$", re.IGNORECASE)
CANVAS_FILE = re.compile(r"^(?P<name>[^_]+?)(?P<late>_late)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<rest>.*)$",
                         re.IGNORECASE)
COPY_MARKER = re.compile(r"\s*\(\d+\)$")
MAX_ID = 100


@dataclass(frozen=True)
class Person:
    """One submitter as the file names tell: ``key`` identifies them, ``name`` is how they are called."""

    key: tuple                  # ("moodle", id) | ("canvas", user id) | ("name", raw name)
    name: str                   # "Ann Lee", the Canvas login, the folder or file name
    lms: str | None = None      # "moodle" | "canvas" | None
    lms_id: str | None = None

    @property
    def base_id(self) -> str:
        """The student id before collisions are resolved (``Ann_Lee-111``, ``login-12345``, ``alice``)."""
        if self.lms:
            return f"{student_id(self.name)[:MAX_ID - len(self.lms_id) - 1]}-{self.lms_id}"
        return student_id(self.name)

    @property
    def raw_label(self) -> str:
        """The id this person would have if nothing were replaced (used to pick who keeps an id)."""
        return f"{self.name}-{self.lms_id}" if self.lms else self.name


def student_id(name: str) -> str:
    """``name`` reduced to letters, digits, ``.``, ``-``, ``_``, ``@`` (no leading dot or CSV formula)."""
    s = re.sub(r"[^A-Za-z0-9._@-]+", "_", name.strip()).strip("._-@")  # no hidden files, no CSV formulas
    s = re.sub(r"_+", "_", s)
    return s[:MAX_ID] or "unknown"


def lms_file(stem: str) -> tuple[Person | None, str, bool]:
    """``(person, rest of the name, Canvas LATE_ marker)`` for a Moodle or Canvas download file name
    (without ``.ipynb``); ``(None, stem, False)`` for any other name."""
    m = MOODLE_FILE.match(stem)
    if m:
        return Person(("moodle", m["id"]), m["name"], "moodle", m["id"]), m["rest"], False
    m = CANVAS_FILE.match(stem)
    if m:
        return Person(("canvas", m["uid"]), m["name"], "canvas", m["uid"]), m["rest"], bool(m["late"])
    return None, stem, False


def moodle_folder(folder: str) -> Person | None:
    """The submitter of a Moodle "download with folders" folder ``Full Name_<id>_assignsubmission_file_``."""
    m = MOODLE_DIR.match(folder)
    return Person(("moodle", m["id"]), m["name"], "moodle", m["id"]) if m else None


def _suffixed(person: Person, base: str, taken: set) -> str:
    digest = hashlib.sha256(repr(person.key).encode("utf-8")).hexdigest()
    for n in range(6, len(digest) + 1, 2):
        candidate = f"{base[:MAX_ID - n - 1]}-{digest[:n]}"
        if candidate not in taken:
            return candidate
    raise ValueError(f"cannot give {person.key!r} a unique student id")  # 2**256 collisions first


def assign_ids(people) -> tuple[dict, list]:
    """``({person key: student id}, collisions)`` for the distinct :class:`Person` objects ``people``.

    Every collision is reported as ``{"id": shared base id, "people": [{key, name, student}, ...]}``."""
    by_base: dict[str, list[Person]] = {}
    for p in people:
        by_base.setdefault(p.base_id, []).append(p)
    ids: dict[tuple, str] = {}
    taken = set(by_base)
    collisions = []
    for base in sorted(by_base):
        group = sorted(by_base[base], key=lambda p: repr(p.key))
        if len(group) == 1:
            ids[group[0].key] = base
            continue
        for p in group:
            if p.raw_label == base and base not in ids.values():
                ids[p.key] = base
        for p in group:
            if p.key not in ids:
                ids[p.key] = _suffixed(p, base, taken)
                taken.add(ids[p.key])
        collisions.append({"id": base, "people": [{"key": list(p.key), "name": p.name, "student": ids[p.key]}
                                                  for p in group]})
    return ids, collisions
