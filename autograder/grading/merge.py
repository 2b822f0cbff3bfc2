"""Merge the output folders of ``grade ... --shard K/N`` into the output of one run:
``python -m autograder merge OUT_0 ... OUT_N-1 --out OUT``.

The merged ``OUT`` has exactly what a single-machine run over the whole class writes:

* ``grades.csv`` -- the shards' header (identical in every shard) and their rows, each row copied
  byte for byte, sorted by student id (the first column) as the grader sorts them;
* ``results/`` and ``feedback/`` -- every shard student's files, copied unchanged (so a later
  single-machine rerun over ``OUT`` reuses them: the cache keys are those of a single run), with the
  folder ``feedback/<student>/`` of their graded versions.  Other files there are copied when their
  name starts with a student id of that shard followed by ``.``, ``-`` or ``_`` (the longest such id wins);
* ``run.json`` -- the summary: class size, statuses counted from the results, the weakest isolation
  any shard used, and one entry per shard (``merged_from``).

It refuses, with an error saying what to do, when the shards do not make one run: a folder that is not a
shard output, a shard that did not finish, a shard given twice or missing, shards of different
assignments, grading options / assignment source / course config / grader version
(``fingerprint``), or of different submissions (``class_sha256``), overlapping students, differing
``grades.csv`` columns, or a student without a result or feedback file.  ``OUT`` must not exist or be
empty; it is written in a temporary folder beside it and renamed, so it is never half written.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .shard import read_manifest

__all__ = ["MergeError", "merge", "main"]

ISOLATION_ORDER = ("namespace", "user", "none")  # strongest first


class MergeError(Exception):
    """The shards cannot be merged (the message says why and what to do)."""


def _csv_rows(path: Path) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(raw header line, header fields, [(student, raw row text)]) of a grades.csv, rows byte for byte."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = f.readlines()
    reader = csv.reader(iter(lines))
    try:
        header = next(reader)
    except StopIteration:
        raise MergeError(f"{path}: empty file; rerun that shard") from None
    done = reader.line_num
    header_raw = "".join(lines[:done])
    rows = []
    for fields in reader:
        raw = "".join(lines[done:reader.line_num])
        done = reader.line_num
        if not fields:
            continue
        rows.append((fields[0], raw))
    return header_raw, header, rows


def _load_shard(folder: Path) -> dict:
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as e:
        raise MergeError(str(e)) from None
    label = f"shard {manifest['shard']}/{manifest['shards']} ({folder})"
    if not manifest.get("complete"):
        raise MergeError(f"{label} did not finish (interrupted or still running): rerun the same "
                         f"`grade ... --shard {manifest['shard']}/{manifest['shards']} --out {folder}` "
                         "(students already graded are reused), then merge again")
    grades = folder / "grades.csv"
    if not grades.is_file():
        raise MergeError(f"{label}: no grades.csv; rerun that shard")
    header_raw, header, rows = _csv_rows(grades)
    if not header or header[0] != "student":
        raise MergeError(f"{grades}: the first column is not 'student'; not written by this grader")
    students = [s for s, _ in rows]
    if students != sorted(students):
        raise MergeError(f"{grades}: rows are not sorted by student; not written by this grader version")
    if set(students) != set(manifest["students"]) or len(students) != len(set(students)):
        missing = sorted(set(manifest["students"]) - set(students))
        extra = sorted(set(students) - set(manifest["students"]))
        raise MergeError(f"{label}: grades.csv does not list exactly the shard's students "
                         f"(missing {missing[:5]}, unexpected {extra[:5]}); rerun that shard")
    for s in manifest["students"]:
        for sub, ext in (("results", "json"), ("feedback", "html")):
            if not (folder / sub / f"{s}.{ext}").is_file():
                raise MergeError(f"{label}: {sub}/{s}.{ext} is missing; rerun that shard")
    run = {}
    if (folder / "run.json").is_file():
        try:
            run = json.loads((folder / "run.json").read_text())
        except ValueError:
            raise MergeError(f"{folder / 'run.json'}: not valid JSON; rerun that shard") from None
    return {"dir": folder, "label": label, "manifest": manifest, "header_raw": header_raw, "header": header,
            "rows": rows, "run": run}


def _check_together(shards: list[dict]) -> None:
    first = shards[0]["manifest"]
    for key, what in (("shards", "a different number of shards N"), ("assignment", "another assignment"),
                      ("fingerprint", "different grading options, assignment source, course config or "
                                      "grader version"),
                      ("class_sha256", "a different set of submissions (the folder changed between shards?)")):
        for s in shards[1:]:
            if s["manifest"].get(key) != first.get(key):
                raise MergeError(f"{s['label']} was graded with {what} than {shards[0]['label']} "
                                 f"({key}: {s['manifest'].get(key)!r} vs {first.get(key)!r}); regrade the "
                                 "shards with one command line over the same submissions")
    n = first["shards"]
    seen: dict[int, Path] = {}
    for s in shards:
        k = s["manifest"]["shard"]
        if k in seen:
            raise MergeError(f"shard {k}/{n} given twice: {seen[k]} and {s['dir']}")
        seen[k] = s["dir"]
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        raise MergeError(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing: merge needs all {n} "
                         "output folders of the class")
    owner: dict[str, str] = {}
    for s in shards:
        if s["header"] != shards[0]["header"]:
            raise MergeError(f"{s['label']}: grades.csv columns differ from {shards[0]['label']}")
        for student in s["manifest"]["students"]:
            if student in owner:
                raise MergeError(f"student {student!r} is in {owner[student]} and in {s['label']}")
            owner[student] = s["label"]
    if sorted(owner) != sorted(first["class_students"]):
        lost = sorted(set(first["class_students"]) - set(owner))
        raise MergeError(f"the shards do not cover the class: {len(lost)} student(s) in no shard "
                         f"(e.g. {lost[:5]}); were they graded with another N?")


def _extra_files(folder: Path, students: list[str], required: set[str]) -> list[tuple[Path, str]]:
    """Files of ``folder`` beyond the required ones that belong to one of ``students`` (by name prefix)."""
    found = []
    by_length = sorted(students, key=len, reverse=True)
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.name.startswith(".") or not p.is_file() or p.name in required:
            continue
        if any(p.name.startswith(s) and p.name[len(s):len(s) + 1] in (".", "-", "_") for s in by_length):
            found.append((p, p.name))
    return found


def _run_summary(shards: list[dict], out: Path) -> dict:
    first = shards[0]["manifest"]
    statuses: dict[str, int] = {}
    for s in shards:
        for student in s["manifest"]["students"]:
            status = json.loads((s["dir"] / "results" / f"{student}.json").read_text()).get("status", "?")
            statuses[status] = statuses.get(status, 0) + 1
    isolations = [s["run"].get("isolation") for s in shards if s["run"].get("isolation")]
    weakest = max(isolations, key=lambda i: ISOLATION_ORDER.index(i) if i in ISOLATION_ORDER else -1,
                  default=None)
    warnings, ignored, identities = [], [], {}
    for s in shards:
        warnings += [w for w in s["run"].get("warnings", []) if w not in warnings]
        ignored += [i for i in s["run"].get("ignored", []) if i not in ignored]
        identities.update(s["run"].get("identities") or {})
    return {"assignment": first["assignment"], "out_dir": str(out), "submissions": first["class_size"],
            "statuses": statuses, "isolation": weakest, "warnings": warnings, "ignored": ignored,
            "identities": identities, "collisions": next((s["run"]["collisions"] for s in shards
                                                          if s["run"].get("collisions")), []),
            "shards": first["shards"], "fingerprint": first["fingerprint"], "class_sha256": first["class_sha256"],
            "merged_from": [{"dir": str(s["dir"]), "shard": s["manifest"]["shard"],
                             "students": len(s["manifest"]["students"]),
                             **{k: s["run"].get(k) for k in ("isolation", "seconds", "graded", "skipped", "jobs")}}
                            for s in sorted(shards, key=lambda s: s["manifest"]["shard"])]}


def merge(out_dirs, out) -> dict:
    """Merge the shard output folders ``out_dirs`` into ``out`` (see the module docstring); returns the
    merged ``run.json`` summary.  Raises :class:`MergeError`."""
    if not out_dirs:
        raise MergeError("no shard output folder given")
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"{out} exists and is not empty: merge into a new folder")
    shards = [_load_shard(Path(d).resolve()) for d in out_dirs]
    if any(s["dir"] == out for s in shards):
        raise MergeError(f"{out} is one of the shard folders: merge into a new folder")
    _check_together(shards)

    rows = sorted((r for s in shards for r in s["rows"]), key=lambda r: r[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.merge-", dir=out.parent))
    try:
        for sub in ("results", "feedback"):
            (tmp / sub).mkdir()
        for s in shards:
            students = s["manifest"]["students"]
            for sub, ext in (("results", "json"), ("feedback", "html")):
                required = {f"{st}.{ext}" for st in students}
                files = [(s["dir"] / sub / name, name) for name in sorted(required)]
                files += _extra_files(s["dir"] / sub, students, required)
                for src, name in files:
                    if (tmp / sub / name).exists():
                        raise MergeError(f"{sub}/{name} is in two shards (the second is {s['label']})")
                    shutil.copy2(src, tmp / sub / name)
                for st in students:  # each graded version's page: feedback/<student>/<version>.html
                    if (s["dir"] / sub / st).is_dir():
                        shutil.copytree(s["dir"] / sub / st, tmp / sub / st)
        with open(tmp / "grades.csv", "w", newline="", encoding="utf-8") as f:
            f.write(shards[0]["header_raw"] + "".join(raw for _, raw in rows))
        summary = _run_summary(shards, out)
        (tmp / "run.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def main(argv=None) -> int:
    """``python -m autograder merge OUT_0 ... OUT_N-1 --out OUT``; exit 0, or 2 when the shards cannot be merged."""
    p = argparse.ArgumentParser(prog="python -m autograder merge",
                                description="Merge the output folders of `grade ... --shard K/N` (all N of them) "
                                            "into the grades.csv, results/ and feedback/ of one run.")
    p.add_argument("shard_dirs", nargs="+", metavar="OUT_K", help="output folder of one shard (with shard.json)")
    p.add_argument("--out", required=True, help="new folder for the merged output")
    args = p.parse_args(argv)
    try:
        summary = merge(args.shard_dirs, args.out)
    except MergeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"merged {len(args.shard_dirs)} shard(s), {summary['submissions']} students: "
          + ", ".join(f"{k} {v}" for k, v in sorted(summary["statuses"].items())))
    print(f"-> {summary['out_dir']}/grades.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
