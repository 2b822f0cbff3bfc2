"""Deadlines and resubmissions: ``grade ... --deadline T [--hard-deadline H] [--late-policy P] [--timezone Z]``.

**Times.**  A time written without a zone (``2026-09-28T23:59``, a zip entry's time, a ``timestamp.txt``
without a zone) is local time of ``--timezone`` (an IANA name such as ``Europe/Berlin``; default
``UTC``); one with an offset (``2026-09-28T23:59+02:00``, ``...Z``) is taken as written.  Everything
is compared and recorded in UTC.

**Versions.**  Every readable notebook a submitter handed in is a *version* (:mod:`.discovery` says
how files are attributed to a submitter); versions with the same bytes are one version, at the
earliest of their times.  With ``--deadline D`` the grader grades, per submitter,

* the newest version submitted at or before ``D`` (*on time*), and
* the newest version submitted after ``D`` and at or before the hard deadline ``H`` (*late*; without
  ``--hard-deadline`` any time after ``D``);
* a submitter with nothing at or before ``H`` still gets their newest version graded (for the feedback),
  but it counts 0.

Each graded version stays in the student's history (``results/<student>.json``), so the grade and
feedback of an earlier run (the soft deadline) survive a later run whose download no longer has
that file.  ``grades.csv`` gets the columns :data:`COLUMNS`, computed from the whole history by
:func:`summarize`::

    units_late = ceil((t_late - D) / unit)                      unit = 1 day or 1 hour
    penalty    = late * min(rate * units_late, max)             (late after H: penalty = late)
    final      = max(on_time, late - penalty)                   (0 when neither exists)

so resubmitting never lowers a grade.  ``--late-policy`` is ``RATE%/day`` or ``RATE%/hour`` with an
optional ``,max=CAP%`` (e.g. ``10%/day,max=50%``), or ``none`` (the default: a late version counts in
full until the hard deadline).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["COLUMNS", "LatePolicy", "Deadlines", "zone", "parse_time", "parse_timestamp_txt", "utc_iso",
           "from_options", "to_grade", "summarize"]

COLUMNS = ["on_time", "late", "days_late", "penalty", "final", "deadline_note"]
_POLICY = re.compile(r"^(?P<rate>\d+(?:\.\d+)?)\s*%\s*/\s*(?P<unit>day|hour)"
                     r"(?:\s*,\s*max\s*=\s*(?P<cap>\d+(?:\.\d+)?)\s*%)?$")
_OFFSET = re.compile(r"^[+-]\d{2}:?\d{2}$")


def zone(name: str):
    """The tzinfo of an IANA zone name (``UTC``, ``Europe/Berlin``); ValueError if unknown."""
    if name.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin") from None


def parse_time(text: str, tz: str = "UTC") -> datetime:
    """``text`` (ISO 8601, ``T`` or space, optional seconds/offset) as an aware UTC datetime; a time
    without an offset is local time of ``tz``.  ValueError with the accepted forms otherwise."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a time: write e.g. 2026-09-28T23:59 (local to --timezone) or "
                         "2026-09-28T23:59+02:00") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=zone(tz))
    return t.astimezone(timezone.utc)


def parse_timestamp_txt(text: str, tz: str = "UTC") -> datetime:
    """nbgrader's ``timestamp.txt`` (``2026-09-28 21:59:00.123456 UTC``, a numeric offset or zone name
    as the last word, or ISO 8601) as an aware UTC datetime."""
    text = text.strip()
    head, _, last = text.rpartition(" ")
    if head and not last[:1].isdigit():
        if _OFFSET.match(last):
            return parse_time(head + last[:3] + ":" + last[-2:], tz)
        return parse_time(head, last)
    return parse_time(text, tz)


def utc_iso(t: datetime | None) -> str | None:
    """``2026-09-28T21:59:00Z`` (seconds), or None."""
    return None if t is None else t.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LatePolicy:
    """A fraction ``rate`` of the late version's points per started ``unit`` late, at most ``cap``."""

    rate: float = 0.0
    unit: str = "day"
    cap: float = 1.0

    @classmethod
    def parse(cls, text: str | None) -> "LatePolicy":
        """``10%/day,max=50%``, ``5%/hour``, ``none`` (or None: no penalty); ValueError otherwise."""
        if text is None or text.strip().lower() in ("none", "0", "0%"):
            return cls()
        m = _POLICY.match(text.strip().lower())
        if not m:
            raise ValueError(f"--late-policy {text!r}: write RATE%/day or RATE%/hour, optionally ,max=CAP% "
                             "(e.g. 10%/day,max=50%), or none")
        cap = float(m["cap"]) / 100 if m["cap"] else 1.0
        if cap > 1:
            raise ValueError(f"--late-policy {text!r}: max is at most 100%")
        return cls(float(m["rate"]) / 100, m["unit"], cap)

    def fraction(self, late_by: timedelta) -> tuple[int, float]:
        """(started units late, fraction of the points taken) for a version ``late_by`` after the deadline."""
        unit = timedelta(days=1) if self.unit == "day" else timedelta(hours=1)
        units = max(1, math.ceil(late_by / unit))
        return units, min(self.rate * units, self.cap)

    def text(self) -> str:
        """The policy as ``--late-policy`` writes it."""
        if not self.rate:
            return "none"
        return f"{self.rate * 100:g}%/{self.unit}" + (f",max={self.cap * 100:g}%" if self.cap < 1 else "")


@dataclass(frozen=True)
class Deadlines:
    """The run's deadlines (aware UTC) and late policy."""

    deadline: datetime
    hard: datetime | None = None
    policy: LatePolicy = LatePolicy()
    tz: str = "UTC"

    def to_dict(self) -> dict:
        """For run.json."""
        return {"deadline": utc_iso(self.deadline), "hard_deadline": utc_iso(self.hard),
                "late_policy": self.policy.text(), "timezone": self.tz}

    def counts(self, t: datetime) -> bool:
        """Does a version submitted at ``t`` count (at or before the hard deadline)?"""
        return self.hard is None or t <= self.hard


def from_options(deadline: str | None, hard: str | None, policy: str | None, tz: str = "UTC") -> Deadlines | None:
    """The :class:`Deadlines` of the command line (None without ``--deadline``); ValueError saying what to fix."""
    zone(tz)
    if deadline is None:
        if hard or policy:
            raise ValueError("--hard-deadline and --late-policy need --deadline")
        return None
    d = parse_time(deadline, tz)
    h = parse_time(hard, tz) if hard else None
    if h is not None and h < d:
        raise ValueError(f"--hard-deadline {hard} is before --deadline {deadline}")
    return Deadlines(d, h, LatePolicy.parse(policy), tz)


def _effective(sub, dl: Deadlines):
    """``sub`` with its time as the deadline sees it: Canvas' LATE_ marker decides on which side of the
    deadline a Canvas file is (its file time only says how late)."""
    if sub.lms != "canvas" or sub.submitted_at is None:
        return sub
    if sub.lms_late and sub.submitted_at <= dl.deadline:
        return replace(sub, submitted_at=dl.deadline + timedelta(seconds=1),
                       time_source=sub.time_source + "; LATE_ marker: after the deadline")
    if not sub.lms_late and sub.submitted_at > dl.deadline:
        return replace(sub, submitted_at=dl.deadline, time_source=sub.time_source + "; no LATE_ marker: on time")
    return sub


def to_grade(subs, dl: Deadlines | None) -> tuple[list, list]:
    """The versions to grade for the submitters ``subs`` (one :class:`~.discovery.Submission` each: their
    newest readable version, with all of them in ``versions``), and notes about the versions not graded.
    Without deadlines: each ``sub`` itself."""
    if dl is None:
        return list(subs), [f"{v.origin}: not graded (the newest version of {s.student} is {s.origin})"
                            for s in subs for v in s.versions if v is not s]
    chosen, notes = [], []
    for sub in subs:
        if sub.invalid:
            chosen.append(sub)
            continue
        versions = [_effective(v, dl) for v in sub.versions if v.submitted_at is not None]
        notes += [f"{v.origin}: no submission time (zip entry before 1980?): not graded" for v in sub.versions
                  if v.submitted_at is None]
        on_time = [v for v in versions if v.submitted_at <= dl.deadline]
        late = [v for v in versions if v.submitted_at > dl.deadline and dl.counts(v.submitted_at)]
        picked = [v for v in (_newest_readable(on_time, notes), _newest_readable(late, notes)) if v]
        if not picked:  # nothing counts: grade the newest anyway, for the feedback
            picked = [v for v in [_newest_readable(versions, notes)] if v] or [sub]
        if len(picked) == 2 and picked[0].version == picked[1].version:
            picked = picked[:1]  # the same bytes again after the deadline: the on-time one counts
        graded = {v.origin for v in picked}
        notes += [f"{v.origin}: not graded (a newer version of {sub.student} counts)" for v in versions
                  if v.origin not in graded and dl.counts(v.submitted_at)]
        notes += [f"{v.origin}: after the hard deadline (not counted)" for v in versions
                  if v.origin not in graded and not dl.counts(v.submitted_at)]
        chosen += picked
    return chosen, notes


def _newest_readable(versions, notes):
    for v in sorted(versions, key=lambda v: (v.submitted_at, v.origin), reverse=True):
        error = v.load()
        if error is None:
            return v
        notes.append(f"{v.origin}: could not be read ({error}); an older version is used if there is one")
    return None


def summarize(history: list, dl: Deadlines) -> dict:
    """The :data:`COLUMNS` of one student from their graded versions (``history`` entries: dicts with
    ``version.submitted_at``, ``total``, ``status``), as numbers (None = empty cell) and a note."""
    def at(e):
        return parse_time(e["version"]["submitted_at"]) if e.get("version", {}).get("submitted_at") else None

    dated = sorted(((at(e), e) for e in history if at(e) is not None), key=lambda te: te[0])
    on = [e for t, e in dated if t <= dl.deadline]
    after = [(t, e) for t, e in dated if t > dl.deadline]
    counted = [(t, e) for t, e in after if dl.counts(t)]
    on_e = on[-1] if on else None
    late_t, late_e = counted[-1] if counted else (after[-1] if after and not on_e else (None, None))
    row = {"on_time": on_e["total"] if on_e else None, "late": None, "days_late": None, "penalty": None,
           "final": None, "deadline_note": ""}
    notes = []
    if late_e is not None:
        row["late"] = late_e["total"]
        units, frac = dl.policy.fraction(late_t - dl.deadline)
        row["days_late"] = round((late_t - dl.deadline) / timedelta(days=1), 2)
        if dl.counts(late_t):
            row["penalty"] = round(late_e["total"] * frac, 4)
            notes.append(f"late by {units} {dl.policy.unit}(s): -{frac * 100:g}%" if frac else "late, no penalty")
        else:
            row["penalty"] = late_e["total"]
            notes.append("submitted after the hard deadline: counts 0")
    if on_e is None and late_e is None:
        notes.append("no version with a submission time")
    if late_e is None and len(counted) < len(after):
        notes.append("a version after the hard deadline is not counted")
    if any(e["status"] == "error" for e in (on_e, late_e) if e is not None):
        notes.append("the grader failed on a counted version: regrade it")
        row["deadline_note"] = "; ".join(notes)
        return row
    best = [on_e["total"]] if on_e else []
    if late_e is not None:
        best.append(late_e["total"] - row["penalty"])
    row["final"] = round(max(best + [0.0]), 4)
    row["deadline_note"] = "; ".join(notes)
    return row
