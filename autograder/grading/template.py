"""The assignment being graded, and its template course.

:func:`load_assignment` reads what the instructor's course says about the assignment (cheap, done for
every run): where its source notebook is, the other assignments' names, the time limit, the import
policy, and a hash of everything a grade depends on.

:func:`build_template` (once per run, only when somebody has to be graded) copies the assignment's
source folder into a private root-only folder and runs ``nbgrader generate_assignment`` there in a
worker: the result is a gradebook that holds the hidden tests and the release version.  Each student
is then graded in a copy of this template.  It then runs the source notebook once with the reference
models' calls recorded (:mod:`.record`): ``BASE/replay`` holds their answers (data only), which the
sandboxed kernels replay (:mod:`.replay`) instead of importing the reference code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..course.files import find_course_root
from .children import Children
from .notebook import Reference
from .options import DEFAULT_TIMEOUT, GRADER_VERSION, Options, config_value, load_course_config
from . import record
from .policy import ImportPolicy
from .sanitize import HiddenTests, delimiters
from .scan import default_policy
from .types import PrepareJob, PrepareResult
from .worker import write_job

__all__ = ["Assignment", "Template", "load_assignment", "build_template", "sha256_tree"]


def sha256_tree(root: Path) -> str:
    """Hash of every file's relative path and content below ``root`` (caches and checkpoints left out)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and "__pycache__" not in rel and ".ipynb_checkpoints" not in rel:
            h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass
class Assignment:
    """What the instructor's course says about the assignment being graded."""

    name: str
    course: Path                    # the course root
    config: object                  # its nbgrader config (traitlets Config)
    source_directory: str
    release_directory: str
    src: Path                       # course/source_directory/name
    notebook: str                   # the notebook's name without .ipynb
    known_assignments: list         # every assignment name of the course (to recognise file names)
    grade_cells: list               # [(grade_id, points)] in notebook order
    policy: ImportPolicy            # defaults + options + the notebook's metadata
    source_hash: str                # source folder + course config + grader version + grading options


def load_assignment(opts: Options) -> tuple[Assignment, Options]:
    """The assignment of ``opts``, and ``opts`` with the per-cell timeout filled in from the course config
    (``Execute.timeout``, else ``ExecutePreprocessor.timeout``, else 120 s) when it was not given.

    Exits (``SystemExit`` with a message) if the assignment has no source notebook or several."""
    import nbformat
    from nbgrader.coursedir import CourseDirectory

    course = Path(opts.course_dir).resolve() if opts.course_dir else find_course_root()
    config = load_course_config(course)
    cd = CourseDirectory(config=config)
    src = course / cd.source_directory / opts.assignment
    notebooks = sorted(src.glob("*.ipynb")) if src.is_dir() else []
    if not notebooks:
        raise SystemExit(f"error: no source notebook in {src} (assignment {opts.assignment!r})")
    if len(notebooks) > 1:
        raise SystemExit(f"error: {src} has {len(notebooks)} notebooks; assignments with several "
                         "notebooks are not supported by this grader")
    src_root = course / cd.source_directory
    known = {p.name for p in src_root.iterdir() if p.is_dir()} if src_root.is_dir() else set()
    known |= {a.get("name") for a in config_value(config, "CourseDirectory", "db_assignments", [])
              if isinstance(a, dict) and a.get("name")}
    if opts.timeout is None:
        timeout = (config_value(config, "Execute", "timeout", None)
                   or config_value(config, "ExecutePreprocessor", "timeout", None) or DEFAULT_TIMEOUT)
        opts = dataclasses.replace(opts, timeout=int(timeout))
    config_file = course / "nbgrader_config.py"
    source_hash = hashlib.sha256(
        (sha256_tree(src) + (config_file.read_text() if config_file.exists() else "")
         + GRADER_VERSION + json.dumps(opts.grading_key(), sort_keys=True)).encode()).hexdigest()
    source = nbformat.read(str(notebooks[0]), as_version=4)
    meta = source.metadata.get("autograder", {}) if isinstance(source.metadata, dict) else {}
    policy = default_policy()
    for module in [*opts.forbid_imports, *meta.get("forbidden_imports", [])]:
        if module not in policy.forbid:
            policy.forbid.append(module)
    policy.allow += [*opts.allow_imports, *meta.get("allowed_imports", [])]
    grade_cells = Reference.from_notebooks(notebooks[0].stem, source, source).grade_cells
    return Assignment(name=opts.assignment, course=course, config=config, source_directory=cd.source_directory,
                      release_directory=cd.release_directory, src=src, notebook=notebooks[0].stem,
                      known_assignments=sorted(k for k in known if k), grade_cells=grade_cells, policy=policy,
                      source_hash=source_hash), opts


@dataclass
class Template:
    """The private template course of a run (``BASE/t/course``)."""

    course: Path                    # gradebook.db (with the hidden tests), source and release folders
    ref: Reference                  # release + source notebooks
    release_dir: Path
    release_files: list             # files released beside the notebook (given to every kernel)
    mplconfig: Path                 # matplotlib's prebuilt font cache
    replay_dir: Path | None = None  # the reference models' recorded answers (BASE/replay, world-readable data)
    hidden: HiddenTests | None = None                  # the hidden tests (scrubbed from every output)
    record_summary: dict = field(default_factory=dict)  # calls recorded, unrecordable / nondeterministic ones


def build_template(assignment: Assignment, base: Path, children: Children) -> Template:
    """Run ``nbgrader generate_assignment`` for ``assignment`` in ``base/t/course`` (see the module
    docstring).  Raises KeyboardInterrupt if the run is stopped, SystemExit if nbgrader fails."""
    import nbformat

    t = base / "t"
    t.mkdir(mode=0o700)
    course = t / "course"
    shutil.copytree(assignment.src, course / assignment.source_directory / assignment.name,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (t / "mplconfig").mkdir()
    job = PrepareJob(course_dir=str(assignment.course), root=str(course), assignment=assignment.name,
                     source_directory=assignment.source_directory,
                     release_directory=assignment.release_directory,
                     result=str(t / "prepare.json"), mplconfig=str(t / "mplconfig"))
    write_job(t / "prepare_job.json", job)
    _, why = children.run(t / "prepare_job.json", t, course, budget=900, log=t / "prepare.log")
    res = PrepareResult.from_json((t / "prepare.json").read_text()) if (t / "prepare.json").exists() \
        else PrepareResult()
    if why == "interrupted":
        raise KeyboardInterrupt
    if not res.success:
        log = (t / "prepare.log").read_text(errors="replace") if (t / "prepare.log").exists() else ""
        raise SystemExit("error: nbgrader generate_assignment failed for the template:\n"
                         + (res.error or res.log or log)[-3000:])
    release_dir = course / assignment.release_directory / assignment.name
    source = nbformat.read(str(assignment.src / f"{assignment.notebook}.ipynb"), as_version=4)
    release = nbformat.read(str(release_dir / f"{assignment.notebook}.ipynb"), as_version=4)
    release_files = [p for p in release_dir.rglob("*") if p.is_file() and p.suffix != ".ipynb"]
    replay_dir = base / "replay"
    summary = record_reference_answers(assignment, base, release_dir, release_files, replay_dir)
    return Template(course=course, ref=Reference.from_notebooks(assignment.notebook, release, source),
                    release_dir=release_dir, release_files=release_files, mplconfig=t / "mplconfig",
                    replay_dir=replay_dir, hidden=HiddenTests.from_notebook(source, *delimiters(assignment.config)),
                    record_summary=summary)


def record_reference_answers(assignment: Assignment, base: Path, release_dir: Path, release_files: list,
                             out: Path) -> dict:
    """Run the assignment's source notebook with the reference models' calls recorded into ``out``
    (:mod:`.record`), in the conditions of a sandboxed kernel: the released files in its working
    folder, BLAS pinned to one thread, the same data folder.  Trusted code (the instructor's), run as
    the grader, outside the sandbox.  Returns the recording's summary; exits with a message if the
    notebook does not run cleanly."""
    t = base / "t"
    work, home = t / "record-work", t / "record-home"
    for d in (work, home):
        d.mkdir(mode=0o700)
    for f in release_files:
        dest = work / f.relative_to(release_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    env = {"PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "MPLCONFIGDIR": str(t / "mplconfig"),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
           "VECLIB_MAXIMUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "NBGRADER_EXECUTION": "autograde",
           "JUPYTER_PLATFORM_DIRS": "1"}
    data = assignment.course / "data"
    if os.environ.get("MFLIB_DATA"):
        env["MFLIB_DATA"] = os.environ["MFLIB_DATA"]
    elif data.is_dir():
        env["MFLIB_DATA"] = str(data)
    timeout = int(config_value(assignment.config, "Execute", "timeout", None)
                  or config_value(assignment.config, "ExecutePreprocessor", "timeout", None) or DEFAULT_TIMEOUT)
    source = assignment.src / f"{assignment.notebook}.ipynb"
    n_cells = sum(1 for c in json.loads(source.read_text()).get("cells", []) if c.get("cell_type") == "code")
    try:
        summary = record.run(source, out, work, timeout, env, budget=120 + n_cells * (timeout + 5))
    except RuntimeError as e:
        raise SystemExit(f"error: could not record the reference models' answers for the template of "
                         f"{assignment.name}: {e}") from None
    os.chmod(out, 0o755)  # the sandbox user reads it (inside the sandbox: a read-only bind)
    for p in out.iterdir():
        os.chmod(p, 0o644)
    return summary
