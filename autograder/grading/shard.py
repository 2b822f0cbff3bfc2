"""Grade a class on several machines: ``python -m autograder grade ... --shard K/N``.

Shard ``K`` of ``N`` (``0 <= K < N``, zero-based like Kubernetes' ``JOB_COMPLETION_INDEX`` and a SLURM
array ``--array=0-(N-1)``) grades exactly the students whose id hashes to ``K``::

    shard_of(student, N) = int.from_bytes(blake2b(student.encode("utf-8"), digest_size=8), "big") mod N

a stable hash (the same on every machine, Python version and run -- unlike ``hash()``, which is
salted per process), so the N shards partition the class whatever machine runs which shard.

Every shard writes ``OUT/shard.json`` (the *manifest*) when it starts grading, and marks it complete
when the run ends normally.  :mod:`autograder.grading.merge` uses it to refuse to merge shards that do
not belong together::

    {"format": 1, "assignment": "02-als", "shard": 1, "shards": 4, "complete": true,
     "fingerprint": <hash of the assignment source, course config, grader version, grading options>,
     "class_size": 212, "class_sha256": <hash of every discovered (student, notebook bytes, notes)>,
     "class_students": [...all discovered students...], "students": [...this shard's students...]}
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..course.files import atomic_write

__all__ = ["MANIFEST", "parse_spec", "shard_of", "select", "class_digest", "begin", "finish", "read_manifest"]

MANIFEST = "shard.json"
FORMAT = 1
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_spec(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``; raises ``ValueError`` (with what to write instead) unless ``0 <= K < N``."""
    m = _SPEC.match(str(text))
    if not m:
        raise ValueError(f"--shard {text!r}: write K/N, e.g. 0/4 for the first of 4 shards")
    k, n = int(m[1]), int(m[2])
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text!r}: K counts from 0, so 0 <= K < N (the shards of 4 are 0/4 ... 3/4)")
    return k, n


def shard_of(student: str, n: int) -> int:
    """The shard (``0 .. n-1``) of a student id: the first 8 bytes of its BLAKE2b hash, big-endian, mod n."""
    if n < 1:
        raise ValueError("the number of shards must be >= 1")
    digest = hashlib.blake2b(student.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def _student(item) -> str:
    return item if isinstance(item, str) else item.student


def select(subs, k: int, n: int) -> list:
    """The submissions (or student ids) of shard ``k`` of ``n``, in their original order."""
    if not 0 <= k < n:
        raise ValueError(f"shard {k} of {n}: need 0 <= k < n")
    return [s for s in subs if shard_of(_student(s), n) == k]


def class_digest(subs) -> str:
    """SHA-256 over every discovered submission (student, notebook bytes, file-name assignment, notes),
    in student order: two shards with the same digest graded the same snapshot of the class."""
    h = hashlib.sha256()
    for s in sorted(subs, key=lambda s: s.student):
        for part in (s.student, hashlib.sha256(s.data).hexdigest(), s.named_assignment or "", "\n".join(s.notes)):
            h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


def fingerprint(source_hash: str, opts) -> str:
    """What every shard of one class must share, as one digest: the assignment's source and grading options
    (``source_hash``) and the deadline options (``--deadline``, ``--hard-deadline``, ``--late-policy``,
    ``--timezone``), which are not part of a grade's cache key but decide which version is graded and the late
    columns.  ``merge`` refuses shards whose fingerprints differ."""
    parts = (source_hash, opts.deadline or "", opts.hard_deadline or "", opts.late_policy or "", opts.timezone or "")
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def begin(out: Path, spec: str, subs, assignment: str, fingerprint: str) -> list:
    """Select shard ``spec`` ("K/N") of the discovered submissions ``subs`` and write its manifest
    (``complete: false``) into ``out``; returns the selected submissions.

    Call it after discovery and before grading; call :func:`finish` when the run ended normally."""
    k, n = parse_spec(spec)
    chosen = select(subs, k, n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": FORMAT, "assignment": assignment, "shard": k, "shards": n, "complete": False,
                "fingerprint": fingerprint, "class_size": len(subs), "class_sha256": class_digest(subs),
                "class_students": sorted(s.student for s in subs), "students": sorted(s.student for s in chosen)}
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return chosen


def finish(out: Path) -> None:
    """Mark the manifest in ``out`` complete (every student of the shard has a result and feedback)."""
    manifest = read_manifest(out)
    manifest["complete"] = True
    atomic_write(Path(out) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


def read_manifest(out: Path) -> dict:
    """``out/shard.json``; ``FileNotFoundError``/``ValueError`` with what went wrong."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out}: no {MANIFEST}, so this is not the output of "
                                "`python -m autograder grade ... --shard K/N` (or that shard never started)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); rerun that shard") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a shard manifest of format {FORMAT}; rerun that shard with this grader")
    return manifest
