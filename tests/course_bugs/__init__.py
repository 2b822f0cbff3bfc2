"""Runner helpers for the course tests: a temporary nbgrader course, submissions built from the solution
notebooks (optionally with a bug from the corpus applied), one ``nbgrader autograde`` call per
assignment, and the scores and feedback read back from the gradebook and the graded notebooks.

The corpus itself is one module per assignment, ``aNN_name.py`` (see README.md)::

    ASSIGNMENT = "02-als"
    BUGS = [{"name": ..., "cell": "<grade_id of a [solution] cell>", "replace": [(old, new), ...],
             "feedback": "substring of the failing check's message"}, ...]
    ALTERNATIVES = [{... "feedback": None}]   # other correct solutions: full marks

A submission is the *released* notebook with every ``[solution]`` cell filled with the solution
notebook's source of that cell (markers included), then the entry's replacements applied to its cell.
"""
from __future__ import annotations

import copy
import importlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = Path(__file__).resolve().parent

__all__ = ["ROOT", "load_corpus", "submission", "solution_sources", "CourseDir", "Graded", "normalise",
           "entry_label"]


# --------------------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------------------
def load_corpus() -> dict[str, dict[str, list[dict]]]:
    """``{assignment: {"bugs": [...], "alternatives": [...], "modules": [...]}}`` from ``a*.py``."""
    corpus: dict[str, dict[str, list]] = {}
    for path in sorted(CORPUS_DIR.glob("a*.py")):
        module = importlib.import_module(f"{__name__}.{path.stem}")
        name = getattr(module, "ASSIGNMENT", None)
        if not name:
            raise ValueError(f"{path}: defines no ASSIGNMENT")
        entry = corpus.setdefault(name, {"bugs": [], "alternatives": [], "modules": []})
        entry["bugs"] += list(getattr(module, "BUGS", []))
        entry["alternatives"] += list(getattr(module, "ALTERNATIVES", []))
        entry["modules"].append(path.name)
    return corpus


def entry_label(entry: dict) -> str:
    return f"{entry.get('name', '?')!r} (cell {entry.get('cell')!r})"


def normalise(text: str) -> str:
    """Case- and spelling-insensitive matching of feedback: lower case, British -is- spellings as -iz-,
    ANSI colour codes removed."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "").lower()
    return re.sub(r"is(ation|ed|ing|e\b)", r"iz\1", text)


# --------------------------------------------------------------------------------------------------
# submissions
# --------------------------------------------------------------------------------------------------
from autograder.course.pretend import blank_submission, solution_sources, submission  # noqa: E402,F401


# --------------------------------------------------------------------------------------------------
# a temporary nbgrader course
# --------------------------------------------------------------------------------------------------
def course_env() -> dict:
    """Subprocess environment: the venv's bin/ first on PATH (nbgrader calls ``alembic``), MovieLens
    from the repository's cache (nothing downloads), one BLAS thread, no progress bars."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MFLIB_DATA"] = os.environ.get("MFLIB_DATA") or str(ROOT / "data")
    env.update({"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"})
    env.pop("JUPYTER_PLATFORM_DIRS", None)
    return env


@dataclass
class Graded:
    """One student's autograded result."""

    student: str
    cells: dict = field(default_factory=dict)  # grade_id -> (auto_score or None, max_score, is_code)
    notebook: object = None  # the autograded notebook (outputs of the test cells)

    @property
    def auto_score(self) -> float:
        return sum((score or 0.0) for score, _, code in self.cells.values() if code)

    @property
    def auto_max(self) -> float:
        return sum(points for _, points, code in self.cells.values() if code)

    def lost(self) -> list[str]:
        """Test cells that did not get full points."""
        return [gid for gid, (score, points, code) in self.cells.items() if code and (score or 0.0) < points]

    def output_text(self, grade_id: str) -> str:
        """Everything a test cell printed or raised (stream text, error name/value/traceback)."""
        if self.notebook is None:
            return ""
        parts = []
        for cell in self.notebook.cells:
            if _grade_id(cell) != grade_id or cell.cell_type != "code":
                continue
            for output in cell.get("outputs", []):
                if output.output_type == "stream":
                    parts.append(output.text)
                elif output.output_type == "error":
                    parts.append(f"{output.ename}: {output.evalue}")
                    parts.extend(output.get("traceback", []))
                elif "data" in output:
                    parts.append(str(output.data.get("text/plain", "")))
        return "\n".join(parts)

    def feedback_text(self) -> str:
        return "\n".join(self.output_text(gid) for gid in self.lost())


class CourseDir:
    """A throwaway copy of the course (config, solutions/, assignments/) where nbgrader can write."""

    def __init__(self, root: Path, assignment: str):
        self.root = Path(root)
        self.assignment = assignment
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "nbgrader_config.py", self.root / "nbgrader_config.py")
        for folder in ("solutions", "assignments"):
            source = ROOT / folder / assignment
            if source.exists():
                shutil.copytree(source, self.root / folder / assignment,
                                ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        self.log: list[str] = []

    @property
    def notebook_name(self) -> str:
        return f"{self.assignment}.ipynb"

    def solution_notebook(self):
        return nbformat.read(self.root / "solutions" / self.assignment / self.notebook_name, as_version=4)

    def release_notebook(self):
        return nbformat.read(self.root / "assignments" / self.assignment / self.notebook_name, as_version=4)

    def nbgrader(self, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={self.root}",
                   "--log-level=WARN"]
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, env=course_env(),
                                timeout=timeout)
        self.log.append(f"$ {' '.join(args)} -> {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                               f"{result.stderr[-8000:]}")
        return result

    def generate(self) -> None:
        """``nbgrader generate_assignment``: registers the assignment in the gradebook and rewrites
        assignments/<name>/ in this temporary course (the committed copy is untouched)."""
        self.nbgrader("generate_assignment", self.assignment, "--force")

    def submit(self, student: str, notebook) -> None:
        folder = self.root / "submitted" / student / self.assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, folder / self.notebook_name)

    def autograde(self) -> None:
        """One ``nbgrader autograde`` over every submitted student (``--create`` adds them)."""
        self.nbgrader("autograde", self.assignment, "--create", "--force")

    def results(self, students) -> dict[str, Graded]:
        from nbgrader.api import Gradebook

        out = {}
        with Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gradebook:
            for student in students:
                graded = Graded(student)
                notebook = gradebook.find_submission_notebook(self.assignment, self.assignment, student)
                for grade in notebook.grades:
                    is_code = grade.cell.cell_type == "code"
                    graded.cells[grade.name] = (grade.auto_score, float(grade.max_score), is_code)
                path = self.root / "autograded" / student / self.assignment / self.notebook_name
                if path.exists():
                    graded.notebook = nbformat.read(path, as_version=4)
                out[student] = graded
        return out
