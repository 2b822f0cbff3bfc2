"""The pure verdict of the grader (:func:`autograder.grading.verdict.verdict`), without root or nbgrader.

An autograded notebook is built by hand (three answer cells, three test cells of 1 + 2 + 2 points and a
manually graded answer), then events and gradebook scores are fed to ``verdict`` the way the worker does:
framed by the executor's ``started`` and ``finished`` events.  A record that cannot be read or lacks its
frame must give status ``error`` (fail closed), never ``graded``.
"""
from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.grading.types import Job, Result
from autograder.grading.verdict import EventsError, GradebookScore, check_record, parse_events, verdict
from autograder.grading.worker import read_events

POINTS = {"test-a": 1.0, "test-b": 2.0, "test-c": 2.0}


def _meta(gid, *, grade=False, solution=False, points=None):
    m = {"grade": grade, "grade_id": gid, "locked": not solution, "schema_version": 3, "solution": solution,
         "task": False}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


def notebook(outputs=None):
    """Cells: 0 a-solution, 1 test-a, 2 b-solution, 3 test-b, 4 c-solution, 5 test-c, 6 q-manual.
    ``outputs``: {grade_id: [output dicts]} for the test cells."""
    outputs = outputs or {}
    cells = []
    for name in "abc":
        cells.append(new_code_cell(f"def {name}(): return 1", metadata=_meta(f"{name}-solution", solution=True)))
        test = new_code_cell(f"assert {name}() == 1", metadata=_meta(f"test-{name}", grade=True,
                                                                     points=POINTS[f"test-{name}"]))
        test.outputs = [nbformat.from_dict(o) for o in outputs.get(f"test-{name}", [])]
        cells.append(test)
    cells.append(new_markdown_cell("my answer", metadata=_meta("q-manual", grade=True, solution=True, points=1)))
    return new_notebook(cells=cells)


def job(**kw) -> Job:
    base = dict(course_dir="/c", root="/r", assignment="ps1", student="s", notebook="ps1",
                source_directory="solutions", release_directory="assignments", timeout=5,
                output_limit=1024 * 1024, memory_mb=1024, events_file="/e", ipc_path="/k", result="/res",
                feedback="/fb")
    base.update(kw)
    return Job(**base)


def scores(a=1.0, b=2.0, c=2.0, manual=None, extra=None):
    extra = extra or {}
    return [GradebookScore("test-a", a, extra.get("test-a"), 1.0), GradebookScore("test-b", b, extra.get("test-b"), 2.0),
            GradebookScore("test-c", c, extra.get("test-c"), 2.0), GradebookScore("q-manual", manual, None, 1.0)]


def points(result: Result):
    return tuple(result.scores[g] for g in POINTS)


STARTED = {"event": "started", "cell": None, "grade_id": None, "notebook_timeout": 900, "cell_timeout": 5}
FINISHED = {"event": "finished", "cell": None, "grade_id": None, "cells": 6, "notebook_s": 1.25, "execute_s": 2.0,
            "budget_hit": False}


def framed(events=()):
    """``events`` as the executor records them: between its ``started`` and ``finished`` events."""
    return [STARTED, *events, FINISHED]


def test_clean_run_is_graded_with_every_score():
    r = verdict(framed(), scores(), notebook(), job())
    assert r.status == "graded"
    assert points(r) == (1.0, 2.0, 2.0) and r.scores["q-manual"] is None
    assert r.total == 5.0 and r.max_total == 6.0
    assert r.reason == "all 3 tests passed; 1 cell(s) need manual grading"
    assert "zeroed" not in r.details and r.details["events"] == []
    assert r.details["execution"] == {"cells": 6, "notebook_s": 1.25, "execute_s": 2.0, "budget_hit": False}


def test_failed_tests_are_named_with_their_error():
    error = {"output_type": "error", "ename": "AssertionError", "evalue": "loss  rose\n at epoch 3", "traceback": []}
    stderr = {"output_type": "stream", "name": "stderr", "text": "warning"}
    r = verdict(framed(), scores(a=0.0, b=0.0, c=1.0), notebook({"test-a": [error], "test-b": [stderr]}), job())
    assert r.status == "graded"
    assert "failed: test-a (AssertionError: loss rose at epoch 3), test-b (wrote to stderr), " \
           "test-c (partial credit)" in r.reason
    assert points(r) == (0.0, 0.0, 1.0) and r.total == 1.0


def test_tampering_zeroes_every_test_and_wins_over_other_problems():
    events = [{"event": "timeout", "cell": 2}, {"event": "tampering", "cell": 0, "what": "numpy.allclose replaced"}]
    r = verdict(framed(events), scores(extra={"test-c": 0.5}), notebook(), job())
    assert r.status == "tampering"
    assert points(r) == (0.0, 0.0, 0.0) and r.total == 0.0
    assert r.reason.startswith("tampering detected after a-solution: numpy.allclose replaced; all tests scored 0")
    assert "b-solution exceeded the 5 s time limit" in r.reason
    assert sorted(r.details["zeroed"]) == ["q-manual", "test-a", "test-b", "test-c"]


def test_forbidden_import_zeroes_the_tests_from_that_cell_on():
    static = [{"kind": "forbidden_import", "cell": 2, "label": "b-solution", "what": "imports implicit"}]
    events = [{"event": "forbidden_import", "cell": 4, "what": "mflib.models.als"}]
    r = verdict(framed(events), scores(), notebook(), job(forbidden=static))
    assert r.status == "forbidden_import"
    assert points(r) == (1.0, 0.0, 0.0)
    assert "forbidden import (b-solution: imports implicit; c-solution: imports mflib.models.als); " \
           "tests from that cell on scored 0" in r.reason
    assert r.details["zeroed"] == ["test-b", "test-c"]  # the manual answer is not a test cell


@pytest.mark.parametrize("events, oom, status, text", [
    ([{"event": "memory_error", "cell": 2}], 0, "memory_limit", "memory limit (1024 MB) exceeded in b-solution "
                                                                "(MemoryError)"),
    ([{"event": "kernel_died", "cell": 2, "how": "SIGKILL, killed"}], 1, "memory_limit",
     "exceeded in b-solution (the kernel was killed)"),
    ([{"event": "kernel_died", "cell": 2, "how": "SIGKILL, killed"}], 0, "crashed",
     "the kernel died in b-solution (SIGKILL, killed); later cells not run"),
    ([{"event": "kernel_died", "cell": 4, "how": "SIGXCPU, CPU time limit exceeded"}], 0, "timeout",
     "CPU time limit exceeded in c-solution"),
    ([{"event": "timeout", "cell": 2, "unresponsive": True}], 0, "timeout",
     "b-solution exceeded the 5 s time limit and the kernel could not be interrupted"),
    ([{"event": "output_truncated", "cell": 0}], 0, "output_limit", "output truncated after 1024 KiB"),
])
def test_each_kernel_event_gives_its_status(events, oom, status, text):
    r = verdict(framed(events), scores(b=0.0, c=0.0), notebook(), job(), oom_kills=oom)
    assert r.status == status
    assert text in r.reason
    assert points(r) == (1.0, 0.0, 0.0)  # nothing zeroed beyond what nbgrader scored
    assert r.details["oom_kills"] == oom


def test_an_event_for_an_unknown_cell_is_labelled_with_a_question_mark():
    r = verdict(framed([{"event": "kernel_died", "cell": None, "how": "exit code 3"}]), scores(), notebook(), job())
    assert r.status == "crashed" and "the kernel died in ? (exit code 3)" in r.reason


def test_notes_end_the_reason_and_the_result_survives_the_process_boundary():
    r = verdict(framed(), scores(), notebook(), job(notes=["instructor cell 'test-a' was edited (restored)"]))
    assert r.reason.endswith("; instructor cell 'test-a' was edited (restored)")
    back = Result.from_json(r.to_json(sort_keys=True))
    assert back == r
    with pytest.raises(TypeError, match="no field"):
        Result.from_json(json.dumps({**json.loads(r.to_json()), "surprise": 1}))


def test_notebook_budget_stops_the_notebook_and_keeps_earlier_points():
    events = [{"event": "notebook_timeout", "cell": 2, "seconds": 20}]
    r = verdict(framed(events), scores(b=0.0, c=0.0), notebook(), job(notebook_timeout=20))
    assert r.status == "timeout"
    assert "the notebook ran out of its 20 s budget (--notebook-timeout) in b-solution; later cells not run, " \
           "earlier points kept" in r.reason
    assert points(r) == (1.0, 0.0, 0.0) and "zeroed" not in r.details
    stuck = verdict(framed([{**events[0], "unresponsive": True}]), scores(b=0.0, c=0.0), notebook(),
                    job(notebook_timeout=20))
    assert stuck.status == "timeout" and "could not be interrupted and was killed" in stuck.reason


@pytest.mark.parametrize("events, error, problem", [
    ([], None, "the events file is empty"),
    ([STARTED], None, "the execution did not finish"),
    ([FINISHED], None, "does not begin with the executor's start"),
    ([STARTED, FINISHED, FINISHED], None, "the execution did not finish"),
    ([STARTED, STARTED, FINISHED], None, "does not begin with the executor's start"),
    ([STARTED, FINISHED, {"event": "timeout", "cell": 2}], None, "the execution did not finish"),
    ([], "the events file is missing", "the events file is missing"),
])
def test_a_record_the_grader_cannot_trust_is_an_error_with_every_test_at_zero(events, error, problem):
    r = verdict(list(events), scores(extra={"test-c": 0.5}), notebook(), job(), record_error=error)
    assert r.status == "error"
    assert problem in r.reason and "cannot trust its record" in r.reason and problem in r.details["record_error"]
    assert points(r) == (0.0, 0.0, 0.0) and r.scores["q-manual"] == 0.0 and r.total == 0.0
    assert r.max_total == 6.0
    assert sorted(r.details["zeroed"]) == ["q-manual", "test-a", "test-b", "test-c"]  # written back: same feedback


def test_parse_events_reads_json_lines_and_refuses_anything_else():
    text = "\n".join(json.dumps(e) for e in framed([{"event": "timeout", "cell": 2}])) + "\n\n"
    events = parse_events(text)
    assert [e["event"] for e in events] == ["started", "timeout", "finished"] and check_record(events) is None
    with pytest.raises(EventsError, match="line 2 of the events file is not JSON"):
        parse_events(json.dumps(STARTED) + '\n{"event": "timeout", "cel')  # cut off mid-line
    with pytest.raises(EventsError, match="line 1 of the events file is not an event"):
        parse_events('{"event": "graded_anyway"}')
    with pytest.raises(EventsError, match="not an event"):
        parse_events("[1, 2]")


def test_the_worker_refuses_a_missing_or_unreadable_events_file(tmp_path):
    with pytest.raises(EventsError, match="the events file is missing"):
        read_events(tmp_path / "events.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(EventsError, match="cannot be read"):
        read_events(tmp_path / "dir.jsonl")
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(EventsError, match="cannot be read"):
        read_events(tmp_path / "binary.jsonl")
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(e) + "\n" for e in framed()))
    assert read_events(good) == framed()
