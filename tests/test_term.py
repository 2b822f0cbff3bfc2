"""A real term's tools: sharded grading + merge, LMS export, similarity report, the cluster deploy files.

* Sharding: ``grade --shard K/N`` as separate processes, then ``merge``, must give the single run's
  ``grades.csv`` byte for byte, and its feedback and results (real CLI, real sandbox, the tiny test
  course of ``grading_fixtures``; needs root + namespaces like tests/test_grading.py).
* LMS export: the files are read back with parsers written from each LMS's documented import rules
  (Canvas' ``GradebookImporter``, Moodle's ``assignfeedback_offline`` grade importer), not with the
  exporter's code.
* Similarity: copies (renamed variables, reordered functions, changed comments) of the course's real
  solutions score high; the corpus's independent alternative solutions (tests/course_bugs) score low.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course_bugs import ROOT, load_corpus  # noqa: E402
from grading_fixtures.course import make_course, student_notebook, write  # noqa: E402
from preconditions import require_sandbox  # noqa: E402

from autograder.grading import report, shard  # noqa: E402
from autograder.grading.discovery import Submission  # noqa: E402
from autograder.grading.similarity import kgram_hashes, winnow  # noqa: E402
from autograder.grading.types import Result  # noqa: E402

PY = sys.executable
USER_PREFIX = "mfterm-sbx"   # not the users of tests/test_grading.py, whose leftover checks must not see ours


@pytest.fixture
def sandbox():
    """Skips -- or with CI=true / as root fails -- unless root and Linux namespaces work here."""
    require_sandbox()


needs_sandbox = pytest.mark.usefixtures("sandbox")


def cli(*args, check=True, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PATH=os.pathsep.join([str(Path(PY).parent),
                                                                          os.environ.get("PATH", "")]))
    r = subprocess.run([PY, "-m", "autograder", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError(f"autograder {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


# --- sharding --------------------------------------------------------------------------------------

def test_parse_spec():
    assert shard.parse_spec("0/4") == (0, 4) and shard.parse_spec(" 3 / 4 ") == (3, 4)
    for bad in ("4/4", "-1/4", "1/0", "1", "a/b", "1/2/3"):
        with pytest.raises(ValueError, match="K"):
            shard.parse_spec(bad)


def test_shards_partition_the_class_the_same_in_every_process():
    ids = [f"student{i}" for i in range(400)] + ["Ann_Lee-111", "Dörte", "x@y.org"]
    parts = [shard.select(ids, k, 4) for k in range(4)]
    assert sorted(sum(parts, [])) == sorted(ids)                       # disjoint and complete
    assert all(70 <= len(p) <= 135 for p in parts), [len(p) for p in parts]  # roughly balanced
    code = "import sys; from autograder.grading.shard import shard_of; print([shard_of(s, 7) for s in sys.argv[1:]])"
    runs = {subprocess.run([PY, "-c", code, *ids], capture_output=True, text=True, check=True,
                           env=dict(os.environ, PYTHONHASHSEED=seed)).stdout for seed in ("0", "1", "random")}
    assert len(runs) == 1  # not Python's salted hash()
    assert json.loads(runs.pop()) == [shard.shard_of(s, 7) for s in ids]


def _fake_result(student, status="graded", reason="all 3 tests passed", total=5.0) -> Result:
    scores = {"test-add": 1.0, "test-scale": 2.0, "test-mean": total - 3.0}
    return Result(status=status, reason=reason, scores=scores,
                  max_scores={"test-add": 1, "test-scale": 2, "test-mean": 2}, total=total, max_total=5.0,
                  student=student, assignment="ps1", key="k-" + student, submission=f"{student}_ps1.ipynb")


FAKE_CLASS = ["alice", "bob", "carla", "dora", "erin", "frank", "gus", "hana", "ivan", "jo"]
REASONS = {"bob": 'test-mean (AssertionError: "quoted", with commas)', "dora": "line one\nline two"}


def _subs(names=FAKE_CLASS, data=b"{}"):
    return [Submission(s, f"{s}_ps1.ipynb", data + s.encode(), f"{s}_ps1.ipynb") for s in names]


def _fake_shard(folder: Path, k: int, n: int, subs, *, fingerprint="fp", assignment="ps1", complete=True):
    chosen = shard.begin(folder, f"{k}/{n}", subs, assignment, fingerprint)
    report.prepare_output(folder)
    for s in chosen:
        r = _fake_result(s.student, reason=REASONS.get(s.student, "all 3 tests passed"))
        report.write_result(folder, r, f"<html>feedback of {s.student}</html>")
    report.write_grades_csv(folder, [s.student for s in chosen], ["test-add", "test-scale", "test-mean"], assignment)
    (folder / "run.json").write_text(json.dumps({"isolation": "namespace" if k else "user", "ignored": ["x.txt"]}))
    if complete:
        shard.finish(folder)
    return folder


def test_merge_gives_the_single_run_files(tmp_path):
    subs = _subs()
    shards = [_fake_shard(tmp_path / f"s{k}", k, 3, subs) for k in range(3)]
    single = tmp_path / "single"
    report.prepare_output(single)
    for s in subs:
        report.write_result(single, _fake_result(s.student, reason=REASONS.get(s.student, "all 3 tests passed")),
                            f"<html>feedback of {s.student}</html>")
    report.write_grades_csv(single, FAKE_CLASS, ["test-add", "test-scale", "test-mean"], "ps1")
    r = cli("merge", *reversed(shards), "--out", tmp_path / "merged")
    merged = tmp_path / "merged"
    assert (merged / "grades.csv").read_bytes() == (single / "grades.csv").read_bytes()
    for sub in ("results", "feedback"):  # feedback/<student>/<version>.html included
        assert {p.relative_to(merged).as_posix(): p.read_bytes() for p in (merged / sub).rglob("*") if p.is_file()} == \
               {p.relative_to(single).as_posix(): p.read_bytes() for p in (single / sub).rglob("*") if p.is_file()}
    run = json.loads((merged / "run.json").read_text())
    assert run["submissions"] == 10 and run["statuses"] == {"graded": 10} and run["isolation"] == "user"
    assert [m["shard"] for m in run["merged_from"]] == [0, 1, 2] and "10 students" in r.stdout


@pytest.mark.parametrize("case, message", [
    ("missing", "shard(s) 2/3 missing"),
    ("twice", "shard 1/3 given twice"),
    ("incomplete", "did not finish"),
    ("fingerprint", "different grading options"),
    ("submissions", "different set of submissions"),
    ("assignment", "another assignment"),
    ("other_n", "different number of shards"),
    ("lost_result", "results/"),
    ("not_a_shard", "no shard.json"),
    ("out_exists", "not empty"),
])
def test_merge_refuses(tmp_path, case, message):
    subs = _subs()
    dirs = [_fake_shard(tmp_path / f"s{k}", k, 3, subs, complete=not (case == "incomplete" and k == 1),
                        fingerprint="other" if case == "fingerprint" and k == 2 else "fp",
                        assignment="ps2" if case == "assignment" and k == 2 else "ps1")
            for k in range(3)]
    out = tmp_path / "merged"
    if case == "missing":
        dirs = dirs[:2]
    elif case == "twice":
        dirs = [dirs[0], dirs[1], dirs[1]]
    elif case == "submissions":
        changed = _subs(data=b"{ }")
        dirs[2] = _fake_shard(tmp_path / "s2b", 2, 3, changed)
    elif case == "other_n":
        dirs.append(_fake_shard(tmp_path / "s4", 3, 4, subs))
    elif case == "lost_result":
        victim = shard.read_manifest(dirs[1])["students"][0]
        (dirs[1] / "results" / f"{victim}.json").unlink()
    elif case == "not_a_shard":
        (dirs[0] / "shard.json").unlink()
    elif case == "out_exists":
        out.mkdir()
        (out / "grades.csv").write_text("old")
    r = cli("merge", *dirs, "--out", out, check=False)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    if case != "out_exists":
        assert not out.exists()


def test_shards_with_different_deadline_options_have_different_fingerprints():
    """--deadline / --hard-deadline / --late-policy / --timezone decide which version is graded and the late
    columns, so shards graded with different ones must not merge (merge compares the fingerprints)."""
    from autograder.grading.options import Options
    base = dict(assignment="ps1", submissions="subs")
    plain = shard.fingerprint("src", Options(**base))
    assert plain == shard.fingerprint("src", Options(**base))
    others = [shard.fingerprint("other-src", Options(**base)),
              shard.fingerprint("src", Options(**base, deadline="2026-09-28T23:59")),
              shard.fingerprint("src", Options(**base, deadline="2026-09-28T23:59", hard_deadline="2026-10-05T23:59")),
              shard.fingerprint("src", Options(**base, deadline="2026-09-28T23:59", late_policy="10%/day")),
              shard.fingerprint("src", Options(**base, timezone="Europe/Paris"))]
    assert len({plain, *others}) == 1 + len(others)


# --- LMS export: the importers' rules -----------------------------------------------------------------

CANVAS_NON_ASSIGNMENT = re.compile("Current Score|Current Points|Current Grade|Final Score|Final Points|Final Grade|"
                                   "Override Score|Override Grade|Override Status")


def canvas_import(text: str) -> dict:
    """What Canvas' Gradebook import (GradebookImporter) reads from a CSV: the header must start with
    Student, ID (and SIS User ID + SIS Login ID, optional Integration ID), Section; the other columns are
    assignments ("Title (id)" names an existing one), minus Canvas' read-only score columns; a row whose first
    cell contains "Points Possible" sets points; a student is found by ID, then SIS ids, then name."""
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert len(header) > 3 and "Student" in header[0] and "ID" in header[1], "Canvas: invalid header row"
    columns, sis_user, sis_login = 3, None, None
    if re.search(r"SIS\s+Login\s+ID", header[2]):
        sis_login, columns = 2, 4
    elif re.search(r"SIS\s+User\s+ID", header[2]) and re.search(r"SIS\s+Login\s+ID", header[3]):
        sis_user, sis_login = 2, 3
        columns = 5 + (1 if re.search(r"Integration\s+ID", header[4]) else 0)
    assert "Section" in header[columns - 1], "Canvas: invalid header row (no Section)"
    assignments = {}
    for i, name in enumerate(header[columns:], columns):
        if CANVAS_NON_ASSIGNMENT.search(name):
            continue
        m = re.match(r"\A(.*)\s\((\d+)\)\Z", name)
        assignments[i] = {"title": m[1] if m else name, "id": m[2] if m else None, "points": None}
    students = []
    for row in rows[1:]:
        if "Points Possible" in row[0]:
            for i, a in assignments.items():
                a["points"] = row[i]
            continue
        if all(re.match(r"^\s*(Muted|Manual Posting.*)?\s*$", c, re.I) for c in row):
            continue
        students.append({"name": row[0], "id": int(row[1]) if row[1].strip() else None,
                         "sis_user": row[sis_user] if sis_user is not None else None,
                         "sis_login": row[sis_login] if sis_login is not None else None,
                         "grades": {a["title"]: row[i].strip() for i, a in assignments.items()}})
    return {"assignments": list(assignments.values()), "students": students}


def moodle_worksheet_import(text: str, max_grade: float, existing_modified: float = 0) -> dict:
    """What Moodle's "Upload grading worksheet" (assignfeedback_offline) imports: the columns named exactly
    "Identifier", "Grade" and "Last modified (grade)" must exist ("Feedback comments" is optional); the
    participant id is the identifier without its "Participant " prefix; a row is skipped when the grade is
    empty or negative, above the assignment's maximum grade, or older than the grade in Moodle (+60 s)."""
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    for needed in ("Identifier", "Grade", "Last modified (grade)"):
        assert needed in header, f"Moodle: column {needed!r} missing, the import is refused"
    idx = {name: header.index(name) for name in header}
    imported, skipped = {}, []
    for row in rows[1:]:
        participant = row[idx["Identifier"]][len("Participant "):]
        raw = row[idx["Grade"]].strip()
        modified = datetime.fromisoformat(row[idx["Last modified (grade)"]]).timestamp()
        grade = float(raw) if raw else None
        if grade is None or grade < 0 or grade > max_grade or existing_modified > modified + 60:
            skipped.append(participant)
            continue
        imported[participant] = {"grade": grade, "comment": row[idx["Feedback comments"]]
                                 if "Feedback comments" in idx else None}
    return {"imported": imported, "skipped": skipped}


def _export_out(tmp_path) -> Path:
    """A grading output with every way of knowing (or not) who a student is."""
    out = tmp_path / "out"
    report.prepare_output(out)
    people = {  # student: (submission origin, extra result fields, total, status)
        "Ann_Lee": ("Ann Lee_111_assignsubmission_file_ps1.ipynb", {}, 5.0, "graded"),
        "Carla_Diaz": ("export.zip:sub/Carla Diaz_555_assignsubmission_file_/work.ipynb", {}, 3.5, "graded"),
        "bob": ("bob_12345_67890_ps1.ipynb", {}, 4.0, "graded"),
        "dora": ("dora_LATE_222_333_ps1-1.ipynb", {}, 1.0, "graded"),
        "eve": ("eve_ps1.ipynb", {"identity": {"lms": "moodle", "lms_id": "777", "lms_name": "=Eve, \"E\" Ng",
                                               "source_file": "x.ipynb"}}, 2.0, "graded"),
        "fay": ("fay_ps1.ipynb", {}, 5.0, "graded"),
        "gil": ("gil_999_888_ps1.ipynb", {}, 0.0, "error"),
        "hal": ("hal_12345_1_ps1.ipynb", {}, 3.0, "graded"),  # same Canvas id as bob
        "ivy": ("ivy_ps1.ipynb", {}, 4.5, "graded"),           # identity from run.json
    }
    for student, (origin, extra, total, status) in people.items():
        r = _fake_result(student, status=status, total=total)
        r.submission = origin
        data = json.loads(r.to_json())
        data.update(extra)
        (out / "results" / f"{student}.json").write_text(json.dumps(data))
        (out / "feedback" / f"{student}.html").write_text("<html></html>")
    rows = [["student", "assignment", "test-add", "test-scale", "test-mean", "total", "max_total", "status", "reason"]]
    for student, (_, _, total, status) in sorted(people.items()):
        rows.append([student, "ps1", "1", "2", str(total - 3), str(total).rstrip("0").rstrip("."), "5", status,
                     "all 3 tests passed"])
    (out / "grades.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    (out / "run.json").write_text(json.dumps({"assignment": "ps1", "identities": {
        "ivy": {"lms": "canvas", "lms_id": "4242", "lms_name": "Ivy Ito", "source_file": "ivy_ps1.ipynb"}}}))
    return out


def test_canvas_export_is_read_by_canvas_rules(tmp_path):
    out = _export_out(tmp_path)
    r = cli("export", "--lms", "canvas", out, "--assignment-name", "PS 1", "--canvas-assignment-id", "98765",
            check=False)
    assert r.returncode == 1  # somebody needs attention
    text = (out / "lms" / "canvas-ps1.csv").read_text()
    parsed = canvas_import(text)
    assert parsed["assignments"] == [{"title": "PS 1", "id": "98765", "points": "5"}]
    by_id = {s["id"]: s for s in parsed["students"]}
    assert by_id[4242]["grades"] == {"PS 1": "4.5"}                 # from run.json
    assert by_id[222]["grades"] == {"PS 1": "1"}                     # dora_LATE_222_...
    assert by_id[999]["grades"] == {"PS 1": ""}                      # grader error: no change in Canvas
    assert 12345 not in by_id                                        # bob and hal share it: neither row keeps it
    assert len(parsed["students"]) == 9                              # nobody dropped
    unmatched = {row["student"]: row for row in csv.DictReader(open(out / "lms" / "canvas-ps1-unmatched.csv"))}
    assert set(unmatched) == {"Ann_Lee", "Carla_Diaz", "eve", "fay", "gil", "bob", "hal"}
    assert "also the id of hal" in unmatched["bob"]["problem"] and "grader failed" in unmatched["gil"]["problem"]
    for student in unmatched:
        assert student in r.stderr
    assert "'=Eve" in text  # a name that a spreadsheet would run as a formula is neutralised


def test_moodle_export_is_read_by_moodle_rules(tmp_path):
    out = _export_out(tmp_path)
    before = datetime.now(timezone.utc).timestamp()
    r = cli("export", "--lms", "moodle", out, "--feedback-comments", "-o", tmp_path / "m.csv", check=False)
    assert r.returncode == 1
    parsed = moodle_worksheet_import((tmp_path / "m.csv").read_text(), max_grade=5, existing_modified=before - 30)
    assert parsed["imported"] == {"111": {"grade": 5.0, "comment": "all 3 tests passed"},
                                  "555": {"grade": 3.5, "comment": "all 3 tests passed"},
                                  "777": {"grade": 2.0, "comment": "all 3 tests passed"}}
    assert parsed["skipped"] == []
    unmatched = {row["student"] for row in csv.DictReader(open(tmp_path / "m-unmatched.csv"))}
    assert unmatched == {"bob", "dora", "fay", "gil", "hal", "ivy"}
    # a Moodle assignment out of 100 skips raw points above... nothing here; scaled points import as percentages
    cli("export", "--lms", "moodle", out, "--scale-to", "100", "-o", tmp_path / "m100.csv", check=False)
    scaled = moodle_worksheet_import((tmp_path / "m100.csv").read_text(), max_grade=100)
    assert scaled["imported"]["555"]["grade"] == 70.0 and scaled["imported"]["111"]["grade"] == 100.0


def test_plain_export_lists_everybody(tmp_path):
    out = _export_out(tmp_path)
    cli("export", "--lms", "csv", out, check=False)
    rows = {r["student"]: r for r in csv.DictReader(open(out / "lms" / "csv-ps1.csv"))}
    assert len(rows) == 9
    assert (rows["Carla_Diaz"]["lms"], rows["Carla_Diaz"]["lms_id"], rows["Carla_Diaz"]["name"]) == ("moodle", "555",
                                                                                                       "Carla Diaz")
    assert (rows["dora"]["lms"], rows["dora"]["lms_id"], rows["dora"]["points"]) == ("canvas", "222", "1")
    assert rows["fay"]["lms"] == "" and rows["fay"]["points"] == "5" and rows["gil"]["points"] == ""


def test_export_prefers_a_final_column_and_reports_missing_output(tmp_path):
    out = _export_out(tmp_path)
    text = (out / "grades.csv").read_text().splitlines()
    text = [text[0] + ",final"] + [line + ",2.5" for line in text[1:]]
    (out / "grades.csv").write_text("\n".join(text) + "\n")
    cli("export", "--lms", "csv", out, check=False)
    assert {r["points"] for r in csv.DictReader(open(out / "lms" / "csv-ps1.csv"))} == {"2.5", ""}
    r = cli("export", "--lms", "canvas", tmp_path / "nothing", check=False)
    assert r.returncode == 2 and "grades.csv" in r.stderr


# --- similarity ----------------------------------------------------------------------------------------

def test_winnowing_guarantee_and_noise_threshold():
    """A match of w + k - 1 tokens always shares a fingerprint; one of k - 1 tokens never does."""
    k, w = 12, 8
    rng = np.random.default_rng(0)
    for trial in range(40):
        for length, must_share in ((w + k - 1, True), (k - 1, False)):
            common = rng.integers(1, 2**63, size=length, dtype=np.uint64)
            a = np.concatenate([rng.integers(1, 2**63, size=rng.integers(0, 200), dtype=np.uint64), common,
                                rng.integers(1, 2**63, size=rng.integers(0, 200), dtype=np.uint64)])
            b = np.concatenate([rng.integers(1, 2**63, size=rng.integers(0, 200), dtype=np.uint64), common,
                                rng.integers(1, 2**63, size=50, dtype=np.uint64)])
            fps = []
            for doc in (a, b):
                h, _ = kgram_hashes(doc, np.zeros(len(doc), np.int64), k)
                fps.append(set(h[winnow(h, np.zeros(len(h), np.int64), w)].tolist()))
            assert bool(fps[0] & fps[1]) == must_share, (trial, length)


KEEP = {"self", "np", "sp", "numpy", "scipy", "math"}


def renamed_copy(source: str) -> str:
    """What a student who copies does: every variable, parameter and function renamed consistently (names of
    library keyword arguments and attributes kept, so the code still runs), functions of a cell in the
    opposite order, every comment rewritten."""
    import builtins
    import keyword

    blocks = re.split(r"\n(?=(?:def|class) )", source)
    if sum(1 for b in blocks if re.match(r"(def|class) ", b)) >= 2:
        source = "\n\n".join(b.rstrip("\n") for b in reversed(blocks)) + "\n"
    toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    depth, plain = 0, set()
    for i, t in enumerate(toks):
        depth += t.string in "([{" if t.type == tokenize.OP else 0
        depth -= t.string in ")]}" if t.type == tokenize.OP else 0
        kwarg = depth > 0 and i + 1 < len(toks) and toks[i + 1].string == "="
        if t.type == tokenize.NAME and not kwarg and not (i and toks[i - 1].string == "."):
            plain.add(t.string)
    keep = KEEP | set(keyword.kwlist) | set(dir(builtins))
    out = []
    for i, t in enumerate(toks):
        if t.type == tokenize.NAME and t.string in plain and t.string not in keep \
                and not (i and toks[i - 1].string == "."):
            t = t._replace(string="r_" + hashlib.sha256(t.string.encode()).hexdigest()[:7])
        elif t.type == tokenize.COMMENT:
            t = t._replace(string="# my own comment")
        out.append(t)
    return tokenize.untokenize(out)


def _answer_cells(nb) -> dict:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}


def _solution_region(source: str) -> list[str]:
    m = re.search(r"### BEGIN SOLUTION\n(.*?)[ \t]*### END SOLUTION", source, re.S)
    return [ln.strip() for ln in (m[1] if m else source).splitlines() if ln.strip()]


def _pairs(report_dir: Path) -> dict:
    with open(report_dir / "pairs.csv", newline="") as f:
        return {frozenset((r["a"], r["b"])): float(r["similarity"]) for r in csv.DictReader(f)}


@pytest.mark.parametrize("assignment", sorted(load_corpus()))
def test_copies_score_high_and_independent_solutions_low(assignment, tmp_path):
    """Per course assignment: `copy` (renamed_copy of every answer) vs `orig` (the instructor's answers), and
    for each alternative of the corpus, `refN` vs `altN`: the released notebook with only that answer cell
    filled, with the reference solution or with the alternative.  An alternative is *independent* when at most a
    third of the reference's solution lines survive in it; those must score low."""
    solution = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    release = nbformat.read(ROOT / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = {gid: c.source for gid, c in _answer_cells(solution).items()}
    subs = tmp_path / "subs"

    def hand_in(name: str, sources: dict):
        nb = nbformat.from_dict(json.loads(json.dumps(release)))
        for gid, cell in _answer_cells(nb).items():
            if gid in sources:
                cell.source = sources[gid]
        write(nb, subs / f"{name}_{assignment}.ipynb")

    hand_in("orig", answers)
    hand_in("copy", {gid: renamed_copy(src) for gid, src in answers.items()})
    kept = {}
    for i, alt in enumerate(load_corpus()[assignment]["alternatives"]):
        ref = answers[alt["cell"]]
        new = ref
        for old, repl in alt["replace"]:
            assert old in new, alt["name"]
            new = new.replace(old, repl)
        reference_lines = _solution_region(ref)
        kept[i] = sum(ln in set(_solution_region(new)) for ln in reference_lines) / len(reference_lines)
        hand_in(f"ref{i}", {alt["cell"]: ref})
        hand_in(f"alt{i}", {alt["cell"]: new})
    cli("similarity", assignment, subs, "--course-dir", ROOT, "--out", tmp_path / "report")
    pairs = _pairs(tmp_path / "report")
    copy = pairs.get(frozenset(("orig", "copy")), 0.0)
    figures = []
    for i, alt in enumerate(load_corpus()[assignment]["alternatives"]):
        figures.append((alt["name"], kept[i], pairs.get(frozenset((f"ref{i}", f"alt{i}")), 0.0)))
    print(f"\n{assignment}: copy {copy:.2f}; alternatives (share of the reference's lines kept -> similarity): "
          + "; ".join(f"{name[:45]} ({k:.2f} -> {sim:.2f})" for name, k, sim in figures))
    assert copy >= 0.8, copy
    for name, k, sim in figures:
        if k <= 1 / 3 + 1e-9:  # independent
            assert sim <= 0.3, (name, sim)


def test_blank_hand_ins_are_not_similar_and_the_report_is_inert(tmp_path):
    """Untouched released notebooks share only base code (excluded); student code is escaped, the pages have no
    script and say they are a signal, not a grade.  The test course has no release folder: the base is the
    source notebook with its solutions removed."""
    course = make_course(tmp_path / "course")
    hostile = ("def add(a, b):\n    html = '</pre><script>alert(1)</script><img src=x onerror=alert(2)>'\n"
               "    total = a + b  # <b>bold</b>\n    for step in range(3):\n        total = total + 0 * step\n"
               "    return total")
    subs = tmp_path / "subs"
    stub = "\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    blank = {"add-solution": "def add(a, b):" + stub, "scale-solution": "def scale(xs, k):" + stub,
             "mean-solution": "def mean(xs):" + stub}
    for name in ("blank1", "blank2"):
        write(student_notebook(blank), subs / f"{name}_ps1.ipynb")
    for name in ("mal1", "mal2"):
        write(student_notebook({"add-solution": hostile}), subs / f"{name}_ps1.ipynb")
    r = cli("similarity", "ps1", subs, "--course-dir", course, "--out", tmp_path / "report")
    pairs = _pairs(tmp_path / "report")
    assert frozenset(("blank1", "blank2")) not in pairs
    assert pairs[frozenset(("mal1", "mal2"))] == 1.0
    assert "solutions replaced by nbgrader's stub" in r.stdout
    pages = [tmp_path / "report" / "index.html", *sorted((tmp_path / "report" / "pairs").glob("*.html"))]
    assert len(pages) >= 2
    for page in pages:
        text = page.read_text()
        assert "<script" not in text.lower() and "<img" not in text.lower()
        assert "default-src 'none'" in text and "never a grade change" in text
    pair_page = pages[1].read_text()
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in pair_page and "&lt;b&gt;bold&lt;/b&gt;" in pair_page
    assert 'style="background:' in pair_page  # matched lines are highlighted


def test_similarity_of_no_class_and_of_one_student(tmp_path):
    (tmp_path / "none").mkdir()
    r = cli("similarity", "ps1", tmp_path / "none", "--course-dir", make_course(tmp_path / "course"),
            "--out", tmp_path / "r0")
    assert "0 submissions, 0 pairs" in r.stdout and (tmp_path / "r0" / "index.html").is_file()
    write(student_notebook(), tmp_path / "one" / "solo_ps1.ipynb")
    r = cli("similarity", "ps1", tmp_path / "one", "--course-dir", tmp_path / "course", "--out", tmp_path / "r1")
    assert "1 submissions, 0 pairs" in r.stdout


# --- deploy files -----------------------------------------------------------------------------------------

DEPLOY = ROOT / "deploy"


def test_kubernetes_indexed_job():
    import yaml
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "grading-job.yaml").read_text()) if d]
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    n = spec["completions"]
    assert spec["completionMode"] == "Indexed" and 1 <= spec["parallelism"] <= n
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    argv = container.get("command", []) + container["args"]  # no command: the image's tini entrypoint stays
    assert argv[:4] == ["python", "-m", "autograder", "grade"]
    assert argv[argv.index("--shard") + 1] == f"$(JOB_COMPLETION_INDEX)/{n}"
    out = argv[argv.index("--out") + 1]
    assert out == "/data/out/shard-$(JOB_COMPLETION_INDEX)"
    assert argv[argv.index("--isolation") + 1] == "namespace"
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"  # declared, so $(...) expands
    sec = container["securityContext"]
    assert sec["runAsUser"] == 0 and sec["allowPrivilegeEscalation"] is True and sec.get("privileged") is not True
    assert {"SYS_ADMIN", "NET_ADMIN", "SETUID", "SETGID", "KILL"} <= set(sec["capabilities"]["add"])
    assert sec["capabilities"]["drop"] == ["ALL"] and sec["appArmorProfile"]["type"] == "Unconfined"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    data = next(name for name, path in mounts.items() if path == "/data")
    claim = volumes[data]["persistentVolumeClaim"]["claimName"]
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim and "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_slurm_array_job():
    script = DEPLOY / "slurm" / "grade.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    array = re.search(r"^#SBATCH --array=0-(\d+)", text, re.M)
    shards = re.search(r"^SHARDS=\$\{SHARDS:-(\d+)\}", text, re.M)
    assert array and shards and int(array[1]) == int(shards[1]) - 1
    assert '--shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}"' in text and "--isolation namespace" in text
    assert re.search(r"-m autograder merge", text) and re.search(r'--dependency="?afterok:', text)


def test_containerfile_installs_the_course():
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert re.search(r"pip install[^\n]*-e \.", text) and "useradd" in text and "util-linux" in text


# --- sharded grading through the real CLI, in the sandbox ------------------------------------------------

GRADE_OPTS = ["--timeout", "5", "--memory", "1024", "--output-limit", "1", "--max-procs", "64",
              "--isolation", "namespace", "--sandbox-user", USER_PREFIX, "-q"]
CLASS = {  # file name -> (solutions changed)
    "Ann Lee_111_assignsubmission_file_ps1.ipynb": {},
    "Carla Diaz_555_assignsubmission_file_ps1.ipynb": {"mean-solution": "def mean(xs):\n    return 0"},
    "bobsmith_12345_67890_ps1.ipynb": {},
    "dora_LATE_222_333_ps1-1.ipynb": {"scale-solution": "def scale(xs, k):\n    raise ValueError('nope')"},
    "alice_ps1.ipynb": {"add-solution": "def add(a, b):\n    return a - b"},
    "erin_ps1.ipynb": {},
}


@pytest.fixture(scope="module")
def term_run(tmp_path_factory):
    """One course graded once on one machine and once as 3 shards (3 processes at the same time), then merged."""
    require_sandbox()
    root = tmp_path_factory.mktemp("term")
    course = make_course(root / "course")
    subs = root / "subs"
    for name, solutions in CLASS.items():
        write(student_notebook(solutions), subs / name)
    (subs / "notjson.ipynb").write_text("{ not json")
    common = ["ps1", subs, "--course-dir", course, *GRADE_OPTS]
    cli("grade", *common, "--out", root / "single", "--jobs", "2")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PATH=os.pathsep.join([str(Path(PY).parent), os.environ["PATH"]]))
    procs = [subprocess.Popen([PY, "-m", "autograder", "grade", *map(str, common), "--shard", f"{k}/3",
                               "--out", str(root / f"shard-{k}"), "--jobs", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for k in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, out + err
    merged = cli("merge", *[root / f"shard-{k}" for k in range(3)], "--out", root / "merged")
    return {"root": root, "course": course, "subs": subs, "single": root / "single", "merged": root / "merged",
            "merge_stdout": merged.stdout}


def _results(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}


@needs_sandbox
def test_shards_then_merge_equal_one_run(term_run):
    single, merged = term_run["single"], term_run["merged"]
    assert (merged / "grades.csv").read_bytes() == (single / "grades.csv").read_bytes()
    rows = list(csv.DictReader(open(single / "grades.csv")))
    assert len(rows) == 7 and len({r["status"] for r in rows}) >= 2   # a real mix of grades
    one, many = _results(single), _results(merged)
    assert set(one) == set(many)
    for student, r in one.items():
        for key in ("status", "reason", "scores", "total", "max_total", "key", "submission", "submission_sha256"):
            assert many[student][key] == r[key], (student, key)
    assert sorted(p.name for p in (merged / "feedback").iterdir()) == \
        sorted(p.name for p in (single / "feedback").iterdir())
    shards = [shard.read_manifest(term_run["root"] / f"shard-{k}") for k in range(3)]
    assert sorted(s for m in shards for s in m["students"]) == sorted(one)
    assert all(m["complete"] and m["class_size"] == 7 for m in shards)


@needs_sandbox
def test_feedback_pages_are_those_of_one_run(term_run):
    """Byte for byte, except what nbgrader itself makes different on every run (none in this course: the
    comparison would show it)."""
    pages = [p for p in (term_run["single"] / "feedback").rglob("*.html")]   # with feedback/<student>/<version>.html
    assert len(pages) == 2 * 7
    for page in pages:
        rel = page.relative_to(term_run["single"])
        assert (term_run["merged"] / rel).read_bytes() == page.read_bytes(), rel


@needs_sandbox
def test_rerun_over_the_merged_output_reuses_every_grade(term_run, tmp_path):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(term_run["merged"], out)
    r = cli("grade", "ps1", term_run["subs"], "--course-dir", term_run["course"], *GRADE_OPTS, "--out", out, "--json")
    summary = json.loads(r.stdout)
    assert summary["graded"] == 0 and summary["skipped"] == 7
    assert (out / "grades.csv").read_bytes() == (term_run["single"] / "grades.csv").read_bytes()


@needs_sandbox
def test_shard_option_errors(term_run, tmp_path):
    r = cli("grade", "ps1", term_run["subs"], "--course-dir", term_run["course"], "--shard", "3/3", "--out",
            tmp_path / "x", check=False)
    assert r.returncode == 2 and "0 <= K < N" in r.stderr
    r = cli("grade", "ps1", term_run["subs"], "--course-dir", term_run["course"], "--shard", "1/3", check=False)
    assert r.returncode == 2 and "--shard needs --out" in r.stderr
    r = cli("merge", term_run["root"] / "shard-0", term_run["root"] / "shard-2", "--out", tmp_path / "m", check=False)
    assert r.returncode == 2 and "shard(s) 1/3 missing" in r.stderr


@needs_sandbox
def test_export_of_the_merged_class(term_run, tmp_path):
    merged = term_run["merged"]
    cli("export", "--lms", "canvas", merged, "-o", tmp_path / "canvas.csv", check=False)
    canvas = canvas_import((tmp_path / "canvas.csv").read_text())
    grades = {r["student"]: r for r in csv.DictReader(open(merged / "grades.csv"))}
    by_id = {s["id"]: s["grades"]["ps1"] for s in canvas["students"] if s["id"]}
    assert set(by_id) == {12345, 222} and len(canvas["students"]) == 7
    bob = next(s for s in grades if s.startswith("bobsmith"))
    assert by_id[12345] == grades[bob]["total"]
    cli("export", "--lms", "moodle", merged, "-o", tmp_path / "moodle.csv", check=False)
    moodle = moodle_worksheet_import((tmp_path / "moodle.csv").read_text(), max_grade=5)
    carla = next(s for s in grades if s.startswith("Carla"))
    assert set(moodle["imported"]) == {"111", "555"}
    assert moodle["imported"]["555"]["grade"] == float(grades[carla]["total"])
    unmatched = {r["student"] for r in csv.DictReader(open(tmp_path / "moodle-unmatched.csv"))}
    assert len(unmatched) == 5 and not unmatched & {s for s in grades if s.startswith(("Ann", "Carla"))}
