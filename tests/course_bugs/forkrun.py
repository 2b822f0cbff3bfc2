"""Grade many pretend students of one notebook in one process: run the notebook once, fork at each entry's cell.

``python tests/course_bugs/forkrun.py SPEC.json OUT.json`` (with :func:`course_bugs.course_env`'s
environment) executes what ``nbgrader autograde`` executes for a student -- the solution (source) notebook's
cells, hidden tests included, with the student's answer cells -- in IPython's ``InteractiveShell`` (the shell
ipykernel wraps), one cell after another.  Before the cell that a corpus entry changes, the process forks;
the child applies the entry's replacements to that cell and runs from there, the parent goes on with the
solution.  So the cells before an entry's cell run once for every entry, not once per entry.

A graded test cell loses its points exactly as under nbgrader (``nbgrader.utils.determine_grade``): when it
raises, or when it writes to stderr.  A child stops early once its entry's outcome is known:

* a BUG stops at the first graded cell that loses points and whose text names the expected feedback
  (or at the first that loses points, when the entry expects none); otherwise it runs to the end;
* an ALTERNATIVE runs to the end (full marks need every test cell).

SPEC = {"notebook": path, "workdir": folder, "cell_timeout": s, "entry_timeout": s,
        "entries": [{"key": str, "kind": "bug" | "alt", "cell": grade_id, "replace": [[old, new], ...],
                     "feedback": str | None}, ...]}
OUT  = {"solution": RESULT, "entries": {key: RESULT}}, RESULT = {"graded": [grade_id, ...], "lost": [...],
        "said": {grade_id: text}, "stopped_early": bool, "seconds": float, "error": str | None}

Everything the notebook does runs in the child exactly as in the parent: state is copied by ``fork``, so
OpenMP / BLAS must run one thread (``course_env`` sets that) and nothing may keep a thread pool across cells.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import select
import signal
import sys
import time

from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the corpus package
from course_bugs import normalise  # noqa: E402  (the feedback matching of the corpus)


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_graded_test(cell) -> bool:
    meta = _meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and float(meta.get("points") or 0) > 0


class CellTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CellTimeout("cell timed out (the graders' per-cell limit)")


def make_shell():
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False      # no sqlite history, no saving thread to lose in a fork
    shell = InteractiveShell.instance(config=config)
    shell.showtraceback = lambda *args, **kwargs: None   # the message is ename: evalue, as in _messages
    shell.showsyntaxerror = lambda *args, **kwargs: None
    return shell


def run_cell(shell, source: str, timeout: float) -> tuple[bool, str]:
    """Execute one cell; (lost_points_if_graded, what it said: stdout + stderr + 'ename: evalue')."""
    out, err = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = shell.run_cell(source, store_history=False, silent=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    error = result.error_before_exec or result.error_in_exec
    text = out.getvalue() + err.getvalue()
    if error is not None:
        text += f"\n{type(error).__name__}: {error}"
    return error is not None or bool(err.getvalue()), text


def run_tail(shell, cells, start: int, timeout: float, expect=None, stop_early=False) -> dict:
    """Run ``cells[start:]``; graded cells' outcome.  ``stop_early``: stop once the expected failure is seen."""
    t0 = time.monotonic()
    graded, lost, said = [], [], {}
    stopped = False
    for cell in cells[start:]:
        if cell.cell_type != "code":
            continue
        failed, text = run_cell(shell, cell.source, timeout)
        if not is_graded_test(cell):
            continue
        grade_id = _meta(cell).get("grade_id")
        graded.append(grade_id)
        if failed:
            lost.append(grade_id)
            said[grade_id] = text
            if stop_early and (expect is None or normalise(expect) in normalise(text)):
                stopped = True
                break
    return {"graded": graded, "lost": lost, "said": said, "stopped_early": stopped,
            "seconds": round(time.monotonic() - t0, 2), "error": None}


def fork_entry(shell, cells, index: int, entry: dict, spec: dict) -> dict:
    """Run ``entry`` in a forked child from cell ``index``; its RESULT (or why the child failed)."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's loop, whatever happens
        os.close(read_end)
        payload = b""
        try:
            cell = cells[index].copy()
            for old, new in entry.get("replace", []):
                cell.source = cell.source.replace(old, new)
            changed = cells[:index] + [cell] + cells[index + 1:]
            result = run_tail(shell, changed, index, spec["cell_timeout"], entry.get("feedback"),
                              stop_early=entry["kind"] == "bug")
            payload = json.dumps(result).encode()
        finally:
            # on an error escaping the shell, send what it was: the parent fails that entry with it
            error = sys.exc_info()[1]
            if error is not None:
                payload = json.dumps({"error": f"the harness failed: {type(error).__name__}: {error}"}).encode()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            os._exit(1 if error is not None else 0)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + spec["entry_timeout"]
    timed_out = False
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([pipe], [], [], min(left, 5.0))
            if ready:
                chunk = os.read(pipe.fileno(), 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"error": f"the entry's run took longer than {spec['entry_timeout']} s and was killed"}
    if not chunks:
        return {"error": f"the child died without a result (wait status {status})"}
    return json.loads(b"".join(chunks))


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    notebook = nbformat.read(spec["notebook"], as_version=4)
    cells = notebook.cells
    index_of = {_meta(c).get("grade_id"): i for i, c in enumerate(cells) if _meta(c).get("solution")}
    by_index: dict[int, list] = {}
    results = {}
    for entry in spec["entries"]:
        index = index_of.get(entry["cell"])
        missing = [old for old, _ in entry.get("replace", []) if index is not None and old not in cells[index].source]
        if index is None or missing:
            results[entry["key"]] = {"error": f"cannot be applied: no answer cell {entry['cell']!r}" if index is None
                                     else f"cannot be applied: {missing[0]!r} is not in cell {entry['cell']!r}"}
            continue
        by_index.setdefault(index, []).append(entry)
    os.chdir(spec["workdir"])
    shell = make_shell()
    t0 = time.monotonic()
    graded, lost, said = [], [], {}
    for index, cell in enumerate(cells):
        for entry in by_index.get(index, []):
            results[entry["key"]] = fork_entry(shell, cells, index, entry, spec)
        if cell.cell_type != "code":
            continue
        failed, text = run_cell(shell, cell.source, spec["cell_timeout"])
        if is_graded_test(cell):
            graded.append(_meta(cell).get("grade_id"))
            if failed:
                lost.append(graded[-1])
                said[graded[-1]] = text
    solution = {"graded": graded, "lost": lost, "said": said, "stopped_early": False,
                "seconds": round(time.monotonic() - t0, 2), "error": None}
    with open(out_path, "w") as f:
        json.dump({"solution": solution, "entries": results}, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
