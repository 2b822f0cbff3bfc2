"""Build the course notebooks from readable, diffable sources.

Each notebook is written as a "percent" Python file ``course_src/NN-name.py``; cells start with a
marker line::

    # %% [markdown]                        a markdown cell: every line's leading "# " is dropped
    # %%                                   a plain code cell (not graded, editable)
    # %% [locked]                          a read-only code cell (nbgrader restores it when grading)
    # %% [solution] id=predict             an autograded answer cell (### BEGIN/END SOLUTION inside)
    # %% [tests] id=test_predict points=2  an autograder test cell (may hold ### BEGIN HIDDEN TESTS)
    # %% [manual] id=q_bias points=2       a manually graded written answer (markdown)
    # %% [task] id=task_plot points=1      a manually graded task (markdown instructions)

``build_notebook`` turns one source into an nbgrader *source* notebook (``solutions/NN-name/NN-name.ipynb``);
``execute_notebook`` runs it so that the committed solution carries its outputs for self-learners;
``release`` calls ``nbgrader generate_assignment`` to make the student version in ``assignments/``.

Command line::

    python -m autograder.course.notebooks build [NAMES...]     # sources -> solutions/ (and execute)
    python -m autograder.course.notebooks release [NAMES...]   # solutions/ -> assignments/ via nbgrader
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from .files import ROOT, atomic_write

__all__ = ["ROOT", "SOURCES", "ASSIGNMENTS", "parse_source", "build_notebook", "execute_notebook",
           "release", "solution_path", "release_path"]

SOURCES = ROOT / "course_src"
ASSIGNMENTS = ["00-intro", "01-svd-sgd", "02-als", "03-bpr", "04-warp", "05-fm", "06-capstone", "07-beyond"]

_MARKER = re.compile(r"^# %%(?:\s*\[(?P<kind>\w+)\])?(?P<attrs>.*)$")
_KINDS = {"markdown", "code", "locked", "solution", "tests", "manual", "task"}


def solution_path(name: str, root: Path = ROOT) -> Path:
    """``root/solutions/NAME/NAME.ipynb``: the nbgrader source notebook (solutions + hidden tests)."""
    return root / "solutions" / name / f"{name}.ipynb"


def release_path(name: str, root: Path = ROOT) -> Path:
    """``root/assignments/NAME/NAME.ipynb``: the student version made by nbgrader."""
    return root / "assignments" / name / f"{name}.ipynb"


def parse_source(text: str) -> list[dict]:
    """Split a percent source into ``[{kind, attrs, source}]`` cells."""
    cells: list[dict] = []
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        match = _MARKER.match(line)
        if match:
            kind = match.group("kind") or "code"
            if kind not in _KINDS:
                raise ValueError(f"line {number}: unknown cell kind [{kind}]; use one of {sorted(_KINDS)}")
            attrs = dict(pair.split("=", 1) for pair in match.group("attrs").split())
            current = {"kind": kind, "attrs": attrs, "lines": [], "line": number}
            cells.append(current)
        elif current is not None:
            current["lines"].append(line)
        elif line.strip():
            raise ValueError(f"line {number}: text before the first '# %%' cell marker")
    for cell in cells:
        lines = cell.pop("lines")
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if cell["kind"] in ("markdown", "manual", "task"):
            lines = [re.sub(r"^# ?", "", line) for line in lines]
        cell["source"] = "\n".join(lines)
    return cells


def _nbgrader_meta(kind: str, attrs: dict, line: int) -> dict | None:
    if kind in ("markdown", "code"):
        return None
    grade_id = attrs.get("id")
    if not grade_id:
        raise ValueError(f"line {line}: a [{kind}] cell needs id=...")
    points = float(attrs.get("points", 0))
    if kind in ("tests", "manual", "task") and points <= 0:
        raise ValueError(f"line {line}: a [{kind}] cell needs points=N")
    meta = {"grade_id": grade_id, "schema_version": 3, "task": kind == "task",
            "solution": kind in ("solution", "manual"), "grade": kind in ("tests", "manual"),
            "locked": kind in ("locked", "tests", "task")}
    if kind in ("tests", "manual", "task"):
        meta["points"] = points
    return meta


def build_notebook(source: Path | str) -> nbformat.NotebookNode:
    """An nbgrader source notebook from a percent source file."""
    source = Path(source)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    seen_ids: set[str] = set()
    for cell in parse_source(source.read_text()):
        kind, attrs = cell["kind"], cell["attrs"]
        markdown = kind in ("markdown", "manual", "task")
        new = nbformat.v4.new_markdown_cell(cell["source"]) if markdown else nbformat.v4.new_code_cell(cell["source"])
        meta = _nbgrader_meta(kind, attrs, cell["line"])
        if meta:
            if meta["grade_id"] in seen_ids:
                raise ValueError(f"{source}: duplicate cell id {meta['grade_id']!r}")
            seen_ids.add(meta["grade_id"])
            new.metadata["nbgrader"] = meta
            new.id = re.sub(r"[^A-Za-z0-9_-]", "-", meta["grade_id"])[:64]
        if "tags" in attrs:
            new.metadata["tags"] = attrs["tags"].split(",")
        notebook.cells.append(new)
    # deterministic cell ids for unnamed cells, so rebuilding gives an identical file
    for index, cell in enumerate(notebook.cells):
        if "nbgrader" not in cell.metadata:
            cell.id = f"cell-{index:03d}"
    return notebook


def execute_notebook(notebook: nbformat.NotebookNode, cwd: Path, timeout: int = 300) -> nbformat.NotebookNode:
    """Run every cell (a failing cell raises) with BLAS pinned to one thread and progress bars off."""
    from nbclient import NotebookClient

    env_backup = dict(os.environ)
    os.environ.update({"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                       "MPLBACKEND": "module://matplotlib_inline.backend_inline", "TQDM_DISABLE": "1",
                       "PYTHONHASHSEED": "0"})
    try:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(cwd)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    return notebook


def build(names: list[str], execute: bool = True, root: Path = ROOT) -> None:
    """Build (and by default execute) ``solutions/NAME/NAME.ipynb`` from ``course_src/NAME.py``."""
    for name in names:
        source = SOURCES / f"{name}.py"
        target = solution_path(name, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        notebook = build_notebook(source)
        if execute:
            print(f"executing {name} ...", flush=True)
            notebook = execute_notebook(notebook, target.parent)
        text = nbformat.writes(notebook)
        atomic_write(target, text if text.endswith("\n") else text + "\n")
        print(f"wrote {target.relative_to(root)}")


def release(names: list[str], root: Path = ROOT) -> None:
    """``nbgrader generate_assignment`` for each name; the student versions land in ``assignments/``."""
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            db = f"sqlite:///{Path(tmp) / 'gradebook.db'}"
            command = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
                       f"--CourseDirectory.root={root}", f"--CourseDirectory.db_url={db}",
                       "--log-level=WARN"]
            result = subprocess.run(command, cwd=root, capture_output=True, text=True, env=tool_env())
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{result.stdout}\n{result.stderr}")
        print(f"released {release_path(name, root).relative_to(root)}")


def tool_env() -> dict:
    """The environment for nbgrader subprocesses: this interpreter's bin/ first on PATH, because
    nbgrader shells out to ``alembic`` (not found when the virtualenv is not activated)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def available(names: list[str] | None) -> list[str]:
    """``names``, or every assignment with a source; exits if a named source does not exist."""
    names = names or [n for n in ASSIGNMENTS if (SOURCES / f"{n}.py").exists()]
    missing = [n for n in names if not (SOURCES / f"{n}.py").exists()]
    if missing:
        raise SystemExit(f"no source for {missing} in {SOURCES}")
    return names


def main(argv: list[str] | None = None) -> None:
    """``python -m autograder.course.notebooks build|release [NAMES...]``."""
    parser = argparse.ArgumentParser(prog="python -m autograder.course.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="course_src/*.py -> solutions/ (executed)")
    build_parser.add_argument("names", nargs="*")
    build_parser.add_argument("--no-execute", action="store_true")
    release_parser = sub.add_parser("release", help="solutions/ -> assignments/ (nbgrader)")
    release_parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    names = available(args.names)
    if args.command == "build":
        build(names, execute=not args.no_execute)
    else:
        release(names)


if __name__ == "__main__":
    main()
