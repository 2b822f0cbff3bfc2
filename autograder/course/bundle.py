"""Build the student bundle: everything a student needs, nothing that gives the answers away.

    python -m autograder.course.bundle                # -> dist/mf-course-student/ and dist/mf-course-student.zip
    python -m autograder.course.bundle --out /tmp/handout --no-zip

The bundle holds

* ``assignments/`` — the released notebooks (solutions and hidden tests stripped by nbgrader);
* ``mflib/`` — the library *without* the reference solutions: the files of
  :func:`mflib.models.registry.reference_source_paths` (data loading, splits, metrics, evaluation,
  retrieval, gradcheck, display, the model base classes and the popularity baseline stay);
* ``autograder/`` — the package without its instructor-side folders ``course/`` and ``grading/``, i.e.
  ``setup_notebook``, the checks and their messages, so the visible test cells run;
* ``environment.yml``, ``pyproject.toml`` and a student ``README.md``.

Every text file is scanned before it is written: a file containing an nbgrader solution or hidden-test
marker aborts the build (``BundleError``).
"""
from __future__ import annotations

import argparse
import re
import shutil
import zipfile
from pathlib import Path

from mflib.models.registry import reference_source_paths

from .files import ROOT

__all__ = ["build_bundle", "REFERENCE_MODULES", "INSTRUCTOR_PACKAGES", "BundleError"]

REFERENCE_MODULES = reference_source_paths()   # mflib/models/als.py, ...: never in the bundle
INSTRUCTOR_PACKAGES = ("course", "grading")    # autograder's instructor-side subpackages: never in the bundle
# Spelled in two pieces so that this file itself never contains the markers it looks for.
_MARKERS = tuple(("BEGIN " + word, "END " + word) for word in ("SOLUTION", "HIDDEN TESTS"))
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")


class BundleError(RuntimeError):
    """The bundle would leak a solution, hidden tests or a reference model."""


STUDENT_README = """# mf-course — student bundle

A Jupyter course on matrix-factorization recommenders. Each folder of `assignments/` holds one notebook:

| notebook | topic |
|---|---|
| 00-intro | MovieLens, the evaluation protocol, a first recommender, retrieval with faiss |
| 01-svd-sgd | explicit ratings: biased matrix factorization with SGD |
| 02-als | implicit feedback: alternating least squares |
| 03-bpr | learning to rank: Bayesian personalised ranking |
| 04-warp | learning to rank: WARP |
| 05-fm | factorization machines and cold start |
| 06-capstone | every model on one split |

## Setup

    conda env create -f environment.yml && conda activate mf-course    # or: python -m venv .venv
    pip install -e .                                                    # installs mflib and autograder
    jupyter lab

The first notebook downloads MovieLens 100K from GroupLens (or its mirror on PyPI) into `data/`.

## Working on an assignment

Write your code where a cell says `# YOUR CODE HERE` (delete the `raise NotImplementedError()`).
The cell after each exercise checks your answer and prints a line starting with ✓ when it is right;
otherwise its error message says what is wrong. More tests, hidden here, run when your notebook is
graded — make the visible ones pass first, then submit the notebook file.

`mflib` gives you the data, splits, metrics, evaluation protocol, retrieval, gradient checking and plots.
The reference models (`mflib.ALS`, `mflib.BPR`, ...) are not part of this bundle: you write them.
"""


def _environment_yml(root: Path) -> str:
    """environment.yml of the course, else one made from pyproject.toml's dependencies."""
    path = root / "environment.yml"
    if path.exists():
        return path.read_text()
    import tomllib

    dependencies = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = ["name: mf-course", "channels:", "  - conda-forge", "dependencies:", "  - python>=3.11", "  - pip",
             "  - pip:"]
    lines += [f"      - {dependency}" for dependency in dependencies]
    return "\n".join(lines) + "\n"


def _check_text(relative: str, data: bytes) -> None:
    for begin, end in _MARKERS:
        for marker in (begin, end):
            if marker.encode() in data:
                raise BundleError(f"{relative} contains {marker!r}: it must not be handed to students")


def build_bundle(out: str | Path = ROOT / "dist" / "mf-course-student", root: Path = ROOT,
                 make_zip: bool = True) -> Path:
    """Write the bundle folder ``out`` (replaced if it exists) and ``out.zip``; return the folder."""
    root, out = Path(root), Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    releases = sorted((root / "assignments").glob("*/*.ipynb"))
    if not releases:
        raise BundleError(f"no released notebooks in {root / 'assignments'}: run "
                          "`python -m autograder.course.notebooks release` first")
    shutil.copytree(root / "assignments", out / "assignments", ignore=_SKIP)
    shutil.copytree(root / "mflib", out / "mflib", ignore=_SKIP)
    for module in REFERENCE_MODULES:
        (out / module).unlink(missing_ok=True)
    shutil.copytree(root / "autograder", out / "autograder",
                    ignore=shutil.ignore_patterns(*INSTRUCTOR_PACKAGES, "__pycache__", "*.pyc"))
    shutil.copy(root / "pyproject.toml", out / "pyproject.toml")
    (out / "environment.yml").write_text(_environment_yml(root))
    (out / "README.md").write_text(STUDENT_README)
    data_readme = root / "data" / "README.md"
    if data_readme.exists():
        (out / "data").mkdir()
        shutil.copy(data_readme, out / "data" / "README.md")

    for path in sorted(out.rglob("*")):
        if path.is_file():
            _check_text(path.relative_to(out).as_posix(), path.read_bytes())
    leaked = [m for m in REFERENCE_MODULES if (out / m).exists()]
    leaked += [f"autograder/{p}/" for p in INSTRUCTOR_PACKAGES if (out / "autograder" / p).exists()]
    if leaked:
        raise BundleError(f"reference models or instructor tools in the bundle: {leaked}")
    if make_zip:
        archive = out.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(out.rglob("*")):
                if path.is_file():
                    zf.write(path, f"{out.name}/{path.relative_to(out).as_posix()}")
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m autograder.course.bundle [--out DIR] [--no-zip]``."""
    parser = argparse.ArgumentParser(prog="python -m autograder.course.bundle",
                                     description=re.sub(r"\n\n.*", "", __doc__ or "", flags=re.S))
    parser.add_argument("--out", default=str(ROOT / "dist" / "mf-course-student"),
                        help="bundle folder (a .zip of the same name is written beside it)")
    parser.add_argument("--no-zip", action="store_true", help="only write the folder")
    args = parser.parse_args(argv)
    folder = build_bundle(args.out, make_zip=not args.no_zip)
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    print(f"wrote {folder} ({files} files)" + ("" if args.no_zip else f" and {folder.with_suffix('.zip')}"))


if __name__ == "__main__":
    main()
