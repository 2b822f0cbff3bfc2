"""Tests of the class-grading engine (``python -m autograder grade``).

Everything runs against a tiny course made in a temporary directory
(:mod:`tests.grading_fixtures.course`), never against the real course notebooks.  The sandbox
tests need root and Linux namespaces; without them only the static/unit tests run -- except with
``CI=true`` or as root, where a missing precondition fails them (:mod:`tests.preconditions`).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading_fixtures.course import (  # noqa: E402
    GRADE_IDS, MAX_TOTAL, leftover_sandbox_pids, make_course, ps2_notebook, student_notebook, write)
from preconditions import require_sandbox  # noqa: E402

from autograder.grading import notebook as nbmod  # noqa: E402
from autograder.grading import scan as scanmod  # noqa: E402
from autograder.grading.cgroups import grading_cgroups  # noqa: E402
from autograder.grading.discovery import discover, student_from_filename  # noqa: E402
from autograder.grading.options import Options  # noqa: E402
from autograder.grading.supervisor import grade  # noqa: E402

ROOT = os.geteuid() == 0
TIMEOUT = 5
USER_PREFIX = "mfgrade-sbx"


@pytest.fixture
def sandbox():
    """Skips -- or with CI=true / as root fails -- unless root and Linux namespaces work here."""
    require_sandbox()


needs_sandbox = pytest.mark.usefixtures("sandbox")

ADD = "def add(a, b):\n    return a + b"
SCALE = "def scale(xs, k):\n    return [x * k for x in xs]"
MEAN = "def mean(xs):\n    return sum(xs) / len(xs)"
# passes the visible test of add, fails its hidden tests: proves hidden tests were run
ADD_HIDDEN_FAIL = "def add(a, b):\n    return a + b if a > 0 else 99"


def _sandbox_pids():
    return leftover_sandbox_pids(USER_PREFIX)


def _owner_gone(pid_text: str) -> bool:
    """Is the grading process that made a cgroup / work folder gone?  (Folders of runs still going, e.g.
    another test session on a shared machine, are theirs, not leftovers: every run's names carry its pid.)"""
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False
    return False


def _cgroups():
    """Cgroups of finished runs left in the places our runs make them (not other containers' or sessions')."""
    return [p for p in grading_cgroups() if _owner_gone(p.name.split("-")[1])]


def _mfg_dirs():
    def gone(d):
        try:
            return _owner_gone((d / "owner.pid").read_text())
        except OSError:
            return True
    return {d for d in Path("/tmp").glob("mfg-*") if gone(d)}


def hostile_submissions(root: Path, subs: Path, port: int) -> dict:
    """Write every submission of the big run; returns expectations {student: (status, scores, text)}."""
    secrets = [str(root / "course" / "solutions" / "ps1" / "ps1.ipynb"), str(subs / "alice_ps1.ipynb"),
               str(root / "out" / "results" / "alice.json"), "/work/main/.git/HEAD", "/etc/shadow"]
    secret_globs = ["/tmp/mfg-*/t/course/gradebook.db", "/tmp/mfg-*/p*/course/submitted/*/*/*.ipynb",
                    str(root / "course" / "solutions" / "*" / "*.ipynb"), "/work/main/solutions/*/*.ipynb"]
    host_targets = [str(root / "pwned-root"), str(root / "course" / "pwned-course"), "/work/main/pwned-repo",
                    str(subs / "pwned-subs"), "/pwned-slash"]
    nbs = {
        "alice": student_notebook(),
        "bob_12345_67890": student_notebook({"mean-solution": "def mean(xs):\n    return 0"}),
        "Carla Diaz_555_assignsubmission_file": student_notebook(),
        "deltest": student_notebook({"add-solution": ADD_HIDDEN_FAIL}, drop=["test-add", "test-mean", "setup"]),
        "edittest": student_notebook({"add-solution": ADD_HIDDEN_FAIL},
                                     tests={"test-add": "pass", "test-scale": "assert True"}),
        "raises": student_notebook({"scale-solution": "def scale(xs, k):\n    raise ValueError('nope')"}),
        "loop": student_notebook({"scale-solution": "while True:\n    pass"}),
        "loopsig": student_notebook({"scale-solution": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                       "while True:\n    pass"}),
        "membomb": student_notebook({"scale-solution": "blocks = []\nwhile True:\n"
                                                       "    blocks.append(bytearray(50 * 2**20))"}),
        "bigout": student_notebook({"add-solution": ADD + "\nfor i in range(300):\n    print('x' * 10000)\n"
                                                          "print('y' * 40_000_000)"}),
        "exit": student_notebook({"scale-solution": "import os\nos._exit(3)"}),
        "killself": student_notebook({"scale-solution": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"}),
        "killall": student_notebook({"scale-solution": "import os, signal\nfor pid in (os.getppid(), 1):\n"
                                                       "    try:\n        os.kill(pid, signal.SIGKILL)\n"
                                                       "    except OSError as e:\n        print(pid, e)\n"
                                                       "os.kill(-1, signal.SIGKILL)"}),
        "forkbomb": student_notebook({"scale-solution": (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        break\n" + SCALE)}),
        "writer": student_notebook({"add-solution": ADD + (
            "\nfor p in %r:\n    try:\n        open(p, 'w').write('pwned')\n        print('WROTE', p)\n"
            "    except OSError as e:\n        print('blocked', p, type(e).__name__)" % (host_targets,))}),
        "reader": student_notebook({"add-solution": ADD + (
            "\nimport glob\nleaked = []\nfor p in %r:\n    try:\n        open(p, 'rb').read(1)\n"
            "        leaked.append(p)\n    except OSError:\n        pass\nfor g in %r:\n    leaked += glob.glob(g)\n"
            "import os\nif 0 in (os.getuid(), os.geteuid(), os.getgid()):\n    leaked.append('running as root')\n"
            "print('LEAKED', leaked)\nif leaked:\n    def add(a, b):\n        return 0") % (secrets, secret_globs)}),
        "network": student_notebook({"add-solution": ADD + (
            "\nimport socket\nok = []\nfor host, port in [('1.1.1.1', 53), ('8.8.8.8', 443), ('127.0.0.1', %d)]:\n"
            "    try:\n        socket.create_connection((host, port), timeout=2).close()\n        ok.append(host)\n"
            "    except OSError as e:\n        print('blocked', host, e)\nif ok:\n    def add(a, b):\n"
            "        return 0") % port}),
        "shadow": student_notebook({"add-solution": ADD + (
            "\nimport os\nos.makedirs('mflib', exist_ok=True)\nopen('mflib/__init__.py', 'w').write('FAKE = 1')\n"
            "open('mflib/metrics.py', 'w').write('FAKE = 1')\nimport mflib, mflib.metrics\n"
            "if hasattr(mflib, 'FAKE') or hasattr(mflib.metrics, 'FAKE'):\n"
            "    def add(a, b):\n        return 0")}),
        "forbidden": student_notebook({"scale-solution": "import implicit\n" + SCALE}),
        "forbidden2": student_notebook({"mean-solution": "from mflib import ALS\n" + MEAN}),
        "forbiddenrt": student_notebook({"mean-solution": "import importlib\n"
                                                          "m = importlib.import_module('impl' + 'icit')\n" + MEAN}),
        "forbiddenmeta": student_notebook({"mean-solution": "import xml.dom.minidom\n" + MEAN}),
        "monkey": student_notebook({"scale-solution": "np.allclose = lambda *a, **k: True\n"
                                                      "def scale(xs, k):\n    return []"}),
        "monkeyrt": student_notebook({"scale-solution": "setattr(__import__('num' + 'py'), 'all' + 'close', "
                                                        "lambda *a, **k: True)\ndef scale(xs, k):\n    return []"}),
    }
    for name, nb in nbs.items():
        write(nb, subs / f"{name}_ps1.ipynb")
    (subs / "notjson.ipynb").write_text("{ this is not json")
    (subs / "notnb.ipynb").write_text(json.dumps({"hello": "world"}))
    (subs / "empty.ipynb").write_text("")
    write(ps2_notebook(), subs / "other_ps2.ipynb")
    (subs / "readme.txt").write_text("not a submission")
    return {"host_targets": host_targets}


EXPECTED = {
    # student: (status, (test-add, test-scale, test-mean), text in reason)
    "alice": ("graded", (1, 2, 2), "all 3 tests passed"),
    "bob-12345": ("graded", (1, 2, 0), "test-mean (AssertionError)"),         # Canvas: login-<user id>
    "Carla_Diaz-555": ("graded", (1, 2, 2), "all 3 tests passed"),            # Moodle: name-<participant id>
    "deltest": ("graded", (0, 2, 2), "deleted instructor cell 'test-add' restored"),
    "edittest": ("graded", (0, 2, 2), "instructor cell 'test-add' was edited (restored)"),
    "raises": ("graded", (1, 0, 2), "ValueError: nope"),
    "loop": ("timeout", (1, 0, 2), f"scale-solution exceeded the {TIMEOUT} s time limit"),
    "loopsig": ("timeout", (1, 0, 0), "could not be interrupted"),
    "membomb": ("memory_limit", (1, 0, 2), "memory limit (1024 MB) exceeded in scale-solution"),
    "bigout": ("output_limit", (1, 2, 2), "output truncated"),
    "exit": ("crashed", (1, 0, 0), "the kernel died in scale-solution (exit code 3)"),
    "killself": ("crashed", (1, 0, 0), "SIGKILL"),
    # kill(ppid), kill(1) are refused, kill(-1) spares the caller: nothing outside the student dies
    "killall": ("graded", (1, 0, 2), "test-scale (NameError"),
    "writer": ("graded", (1, 2, 2), "all 3 tests passed"),
    "reader": ("graded", (1, 2, 2), "all 3 tests passed"),
    "network": ("graded", (1, 2, 2), "all 3 tests passed"),
    "shadow": ("graded", (1, 2, 2), "all 3 tests passed"),
    "forbidden": ("forbidden_import", (1, 0, 0), "scale-solution: imports implicit"),
    "forbidden2": ("forbidden_import", (1, 2, 0), "mean-solution: imports mflib.ALS"),
    "forbiddenrt": ("forbidden_import", (1, 2, 0), "mean-solution: imports implicit"),
    "forbiddenmeta": ("forbidden_import", (1, 2, 0), "mean-solution: imports xml.dom"),
    "monkey": ("tampering", (0, 0, 0), "modifies numpy.allclose"),
    "monkeyrt": ("tampering", (0, 0, 0), "numpy.allclose replaced"),
    "notjson": ("invalid_notebook", (0, 0, 0), "not JSON"),
    "notnb": ("invalid_notebook", (0, 0, 0), "not a Jupyter notebook"),
    "empty": ("invalid_notebook", (0, 0, 0), "empty file"),
    "other": ("wrong_assignment", (0, 0, 0), "the file name says ps2"),
}


def run_grader(course, subs, out, jobs=2, **kw):
    opts = Options(assignment="ps1", submissions=str(subs), course_dir=str(course), out_dir=str(out),
                            jobs=jobs, timeout=TIMEOUT, memory_mb=1024, output_limit_mb=1, max_procs=64,
                            user_prefix=USER_PREFIX, verbose=False, **kw)
    return grade(opts)


def read_results(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}


def essentials(r: dict):
    return r["status"], r["reason"], r["scores"], r["total"], r["max_total"]


class Listener:
    """A TCP server on the host's loopback that counts connections (must stay at 0)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self):
        self.stopped = True
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    require_sandbox()
    root = tmp_path_factory.mktemp("grading")
    course = make_course(root / "course")
    subs = root / "subs"
    subs.mkdir()
    listener = Listener()
    extra = hostile_submissions(root, subs, listener.port)
    before = _mfg_dirs()
    t0 = time.monotonic()
    summary = run_grader(course, subs, root / "out", jobs=2)
    elapsed = time.monotonic() - t0
    listener.close()
    yield {"root": root, "course": course, "subs": subs, "out": root / "out", "summary": summary,
           "results": read_results(root / "out"), "listener": listener, "elapsed": elapsed,
           "mfg_before": before, **extra}
    for target in extra["host_targets"]:
        if os.path.exists(target):
            os.unlink(target)


# --- the big hostile run ------------------------------------------------------------------------

@needs_sandbox
def test_every_submission_has_a_row_and_feedback(big_run):
    out = big_run["out"]
    with open(out / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["student"] for r in rows] == sorted(r["student"] for r in rows)
    assert {r["student"] for r in rows} == set(EXPECTED) | {"forkbomb"}
    assert list(rows[0].keys()) == ["student", "assignment", *GRADE_IDS, "total", "max_total", "status", "reason"]
    for r in rows:
        assert (out / "feedback" / f"{r['student']}.html").exists()
        assert r["max_total"] == "5"
    assert big_run["summary"]["isolation"] == "namespace"
    assert any("readme.txt" in note for note in big_run["summary"]["ignored"])


@needs_sandbox
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_status_scores_and_reason(big_run, student):
    status, scores, text = EXPECTED[student]
    r = big_run["results"][student]
    assert r["status"] == status, r["reason"]
    assert tuple(r["scores"][g] for g in GRADE_IDS) == scores, r["reason"]
    assert r["total"] == sum(scores) and r["max_total"] == MAX_TOTAL
    assert text in r["reason"]


@needs_sandbox
def test_fork_bomb_is_contained(big_run):
    r = big_run["results"]["forkbomb"]
    assert r["status"] in ("graded", "crashed", "timeout"), r["reason"]
    assert r["scores"]["test-add"] == 1  # the cells before the bomb are intact


@needs_sandbox
def test_restored_cells_ran_their_hidden_tests_which_the_feedback_does_not_show(big_run):
    page = (big_run["out"] / "feedback" / "deltest.html").read_text()
    text = re.sub(r"<[^>]+>", "", page)
    assert big_run["results"]["deltest"]["scores"]["test-add"] == 0  # the restored cell's hidden test failed
    assert "add(10, 5)" not in text and "assert add(1, 2) == 3" in text  # visible part only (tests/test_grading_secrets.py)
    assert "Autograder: graded" in page


@needs_sandbox
def test_nothing_written_outside_the_sandbox(big_run):
    for target in big_run["host_targets"]:
        assert not os.path.exists(target), target
    assert not (big_run["course"] / "solutions" / "ps1" / "mflib").exists()


@needs_sandbox
def test_no_network_even_to_the_host_loopback(big_run):
    assert big_run["listener"].connections == 0
    assert big_run["results"]["network"]["status"] == "graded"


@needs_sandbox
def test_no_leftover_processes_cgroups_or_work_dirs(big_run):
    assert _sandbox_pids() == []
    assert _cgroups() == []
    assert _mfg_dirs() - big_run["mfg_before"] == set()


# --- parallelism, resume, interruption ----------------------------------------------------------

@needs_sandbox
def test_jobs_1_gives_the_same_grades_and_reads_zip(big_run, tmp_path):
    subset = ["alice_ps1.ipynb", "bob_12345_67890_ps1.ipynb", "loop_ps1.ipynb", "exit_ps1.ipynb",
              "notjson.ipynb", "monkeyrt_ps1.ipynb"]
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in subset:
            z.write(big_run["subs"] / name, f"export/{name}")
    run_grader(big_run["course"], archive, tmp_path / "out", jobs=1)
    one = read_results(tmp_path / "out")
    assert set(one) == {"alice", "bob-12345", "loop", "exit", "notjson", "monkeyrt"}
    for student, r in one.items():
        assert essentials(r) == essentials(big_run["results"][student]), student


@needs_sandbox
def test_rerun_skips_graded_and_is_identical(big_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(big_run["out"], out)
    subs = tmp_path / "subs"
    shutil.copytree(big_run["subs"], subs)
    csv_before = (out / "grades.csv").read_bytes()
    files_before = {p.name: p.read_bytes() for p in (out / "results").iterdir()}
    summary = run_grader(big_run["course"], subs, out)
    assert summary["graded"] == 0 and summary["skipped"] == len(EXPECTED) + 1
    assert (out / "grades.csv").read_bytes() == csv_before
    assert {p.name: p.read_bytes() for p in (out / "results").iterdir()} == files_before
    # a changed submission and a lost result are (re)graded, nothing else
    write(student_notebook(), subs / "bob_12345_67890_ps1.ipynb")
    (out / "results" / "alice.json").unlink()
    summary = run_grader(big_run["course"], subs, out)
    assert summary["graded"] == 2
    after = read_results(out)
    assert essentials(after["alice"]) == essentials(big_run["results"]["alice"])
    assert after["bob-12345"]["status"] == "graded" and after["bob-12345"]["total"] == MAX_TOTAL
    for student in EXPECTED:
        if student not in ("alice", "bob-12345"):
            assert (out / "results" / f"{student}.json").read_bytes() == files_before[f"{student}.json"]


@needs_sandbox
def test_interrupted_run_keeps_finished_grades(big_run, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(big_run["subs"] / "alice_ps1.ipynb", subs)
    shutil.copy(big_run["subs"] / "loop_ps1.ipynb", subs / "zed_ps1.ipynb")
    out = tmp_path / "out"
    before = _mfg_dirs()
    cmd = [sys.executable, "-m", "autograder", "grade", "ps1", str(subs), "--course-dir", str(big_run["course"]),
           "--out", str(out), "--jobs", "1", "--timeout", str(TIMEOUT), "--sandbox-user", USER_PREFIX, "-q",
           "--memory", "1024", "--output-limit", "1", "--max-procs", "64"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not (out / "results" / "alice.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.5)  # zed's kernel is now running its endless loop
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert json.loads((out / "results" / "alice.json").read_text())["status"] == "graded"
    assert not (out / "results" / "zed.json").exists()
    assert _sandbox_pids() == [] and _cgroups() == [] and _mfg_dirs() - before == set()
    summary = run_grader(big_run["course"], subs, out, jobs=1)
    assert summary["skipped"] == 1 and summary["graded"] == 1
    assert read_results(out)["zed"]["status"] == "timeout"


# --- fast unit tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("filename, student", [
    ("alice_ps1.ipynb", "alice"),
    ("alice-ps1.ipynb", "alice"),
    ("ps1_alice.ipynb", "alice"),
    ("alice.ipynb", "alice"),
    ("alice_ps1 (1).ipynb", "alice"),
    ("bob_12345_67890_ps1.ipynb", "bob-12345"),
    ("bob_LATE_12345_67890_ps1-2.ipynb", "bob-12345"),
    ("Carla Diaz_555_assignsubmission_file_ps1.ipynb", "Carla_Diaz-555"),
    ("Dörte Ünal_9_assignsubmission_file_my work.ipynb", "D_rte_nal-9"),
    ("../../etc/passwd.ipynb", "etc_passwd"),
])
def test_student_from_filename(filename, student):
    assert student_from_filename(filename, "ps1", ["ps2"])[0] == student


def test_filename_naming_another_assignment():
    assert student_from_filename("bob_ps2.ipynb", "ps1", ["ps2"]) == ("bob", "ps2")


def _layouts(tmp: Path):
    nb = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    files = {
        "nbgrader/submitted/alice/ps1/ps1.ipynb": nb, "nbgrader/submitted/alice/ps2/ps2.ipynb": nb,
        "nbgrader/submitted/bob/ps1/ps1.ipynb": nb,
        "moodle/Alice Smith_1_assignsubmission_file_/ps1.ipynb": nb,
        "moodle/Bob Jones_2_assignsubmission_file_/work.ipynb": nb,
        "flat/alice_ps1.ipynb": nb, "flat/alice.ipynb": nb, "flat/bob.ipynb": nb, "flat/notes.pdf": b"%PDF",
        "flat/.hidden.ipynb": nb,
    }
    for rel, data in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    os.utime(tmp / "flat/alice.ipynb", (1e9, 1e9))
    return files


def test_discover_layouts(tmp_path):
    _layouts(tmp_path)
    d = discover(tmp_path / "nbgrader", "ps1", ["ps2"])
    assert [s.student for s in d.submissions] == ["alice", "bob"]
    d = discover(tmp_path / "nbgrader/submitted", "ps1", ["ps2"])
    assert [s.student for s in d.submissions] == ["alice", "bob"]
    assert any("ps2" in note for note in d.ignored)
    d = discover(tmp_path / "moodle", "ps1")
    assert [s.student for s in d.submissions] == ["Alice_Smith-1", "Bob_Jones-2"]
    d = discover(tmp_path / "flat", "ps1")
    assert [s.student for s in d.submissions] == ["alice", "bob"]
    alice = d.submissions[0]
    assert alice.origin == "alice_ps1.ipynb" and [v.origin for v in alice.versions] == ["alice.ipynb", "alice_ps1.ipynb"]
    assert any("notes.pdf" in n for n in d.ignored)


def test_discover_zip_with_wrapper_folder(tmp_path):
    files = _layouts(tmp_path)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for rel, data in files.items():
            if rel.startswith("moodle/"):
                z.writestr("download/" + rel, data)
        z.writestr("download/moodle/../../evil.ipynb", b"x")
        z.writestr("__MACOSX/._x.ipynb", b"x")
    d = discover(archive, "ps1")
    assert [s.student for s in d.submissions] == ["Alice_Smith-1", "Bob_Jones-2"]


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"   \n", "empty file"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"{oops", "not JSON"),
    (b"[1, 2]", "not a Jupyter notebook"),
    (b'{"nbformat": 4, "cells": "nope", "metadata": {}, "nbformat_minor": 5}', "not a valid Jupyter notebook"),
])
def test_load_notebook_rejects(data, message):
    with pytest.raises(nbmod.NotebookError, match=message):
        nbmod.load_notebook(data)


def _ref():
    from grading_fixtures.course import source_notebook
    src = source_notebook()
    return nbmod.Reference.from_notebooks("ps1", student_notebook(), src)


@pytest.mark.parametrize("code, kind, what", [
    ("import implicit", "forbidden_import", "imports implicit"),
    ("import lightfm.model", "forbidden_import", "imports lightfm.model"),
    ("from surprise import SVD", "forbidden_import", "imports surprise"),
    ("import torch as t", "forbidden_import", "imports torch"),
    ("from mflib.models.als import ALS", "forbidden_import", "imports mflib.models"),
    ("from mflib import ALS", "forbidden_import", "imports mflib.ALS"),
    ("from mflib import FactorizationMachine as FM", "forbidden_import", "imports mflib.FactorizationMachine"),
    ("import mflib\nmodel = mflib.WARP()", "forbidden_import", "uses mflib.WARP"),
    ("np.allclose = lambda *a, **k: True", "tampering", "modifies numpy.allclose"),
    ("import numpy\nnumpy.testing.assert_allclose = print", "tampering", "modifies numpy.testing.assert_allclose"),
    ("setattr(np, 'isclose', print)", "tampering", "setattr() on numpy"),
    ("np = None", "tampering", "rebinds 'np'"),
    ("import sys\nsys.modules['numpy'] = None", "tampering", "modifies sys.modules"),
    ("import builtins\nbuiltins.len = print", "tampering", "modifies builtins.len"),
    ("get_ipython().events.register('post_run_cell', print)", "tampering", "get_ipython().events"),
    ("%load_ext evil", "tampering", "%load_ext"),
    ("import autograder.checks as C\nC.check = print", "tampering", "modifies autograder.checks.check"),
    ("import sys\nsys.settrace(print)", "tampering", "calls sys.settrace()"),
])
def test_static_scan_flags(code, kind, what):
    ref = _ref()
    nb = student_notebook({"add-solution": code + "\n" + ADD})
    findings = scanmod.scan(nb, ref, scanmod.default_policy())
    assert any(f.kind == kind and what in f.what and f.label == "add-solution" for f in findings), findings


@pytest.mark.parametrize("code", [
    "import numpy as np\nx = np.zeros(3)\nx[0] = 1",
    "import pandas as pd\npd.options.display.max_rows = 5",
    "%timeit add(1, 2)",
    "import numpy.testing as npt\nnpt.assert_allclose([1], [1])",
    "import mflib\nfrom mflib import datasets",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2])",
    "obj = type('O', (), {})()\nobj.allclose = 1",
])
def test_static_scan_allows(code):
    nb = student_notebook({"add-solution": code + "\n" + ADD})
    assert scanmod.scan(nb, _ref(), scanmod.default_policy()) == []


def test_runtime_guard_policy():
    from autograder.grading import kernel_guard as kg
    from autograder.grading.policy import ImportPolicy
    from grading_fixtures.course import source_notebook

    ref = nbmod.Reference.from_notebooks("ps1", student_notebook(), source_notebook())
    policy = scanmod.default_policy()
    policy.forbid.append("xml.dom")
    rt = scanmod.runtime_policy(ref, policy)
    assert "xml.dom" in rt["allow"]  # a hidden test imports it: cannot be refused at run time
    saved = kg._policy
    try:
        kg._policy = ImportPolicy(rt["forbid"], rt["allow"] + ["mflib.models.popularity"], rt["lazy"])
        assert kg.is_forbidden("implicit") and kg.is_forbidden("implicit.als")
        assert kg.is_forbidden("mflib.models.als") and kg.is_forbidden("mflib.ALS")
        assert not kg.is_forbidden("mflib.models.popularity") and not kg.is_forbidden("mflib.models")
        assert not kg.is_forbidden("xml.dom.minidom") and not kg.is_forbidden("numpy")
    finally:
        kg._policy = saved


def test_sanitize_restores_instructor_cells():
    ref = _ref()
    nb = student_notebook(drop=["test-add"], tests={"test-scale": "pass"})
    nb.cells[1].metadata["nbgrader"]["locked"] = False  # unlock the setup cell
    fixed, notes = nbmod.sanitize(nb, ref)
    ids = [nbmod.grade_id(c) for c in fixed.cells if nbmod.grade_id(c)]
    assert ids == [nbmod.grade_id(c) for c in ref.release.cells if nbmod.grade_id(c)]
    scale_test = next(c for c in fixed.cells if nbmod.grade_id(c) == "test-scale")
    assert "np.allclose" in scale_test.source
    assert any("test-add" in n for n in notes) and any("setup" in n for n in notes)
