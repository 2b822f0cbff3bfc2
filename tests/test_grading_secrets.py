"""What a determined student can get out of the grader: no reference code, no hidden test, no live HTML.

Everything runs through the real command line (``python -m autograder grade``) on a tiny course made in a
temporary directory: the grading fixture's course plus an assignment ``psref`` whose hidden tests compare
the student's functions with mflib's reference SVD (``from mflib.models import svd as reference``,
``check_matches_reference``, a trained ``reference.SVD``), i.e. with the answers the grader recorded
when it built the template (:mod:`autograder.grading.record` / :mod:`autograder.grading.replay`).

The sandbox tests need root and Linux namespaces; the browser test needs Debian's ``chromium``
(``.ci/run`` installs it; without it that test is skipped, and says so).
"""
from __future__ import annotations

import html
import html.parser
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading_fixtures.course import make_course  # noqa: E402
from preconditions import missing, require_sandbox  # noqa: E402

from autograder.grading import codec, sanitize  # noqa: E402
from autograder.grading.render import CSP  # noqa: E402

USER_PREFIX = "mfsec-sbx"   # not the users of the other grading tests, which may run at the same time
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def sandbox():
    """Skips -- or with CI=true / as root fails -- unless root and Linux namespaces work here."""
    require_sandbox()


needs_sandbox = pytest.mark.usefixtures("sandbox")

# --- the psref assignment ------------------------------------------------------------------------

SETUP = '''import numpy as np
from autograder.checks import check_matches_reference


def make_inputs(seed, n_users=6, n_items=5, k=3, n=12):
    rng = np.random.default_rng(seed)
    return (3.5, rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_items), rng.normal(0, 0.5, (n_users, k)),
            rng.normal(0, 0.5, (n_items, k)), rng.integers(0, n_users, n), rng.integers(0, n_items, n))


def step_inputs(seed):
    rng = np.random.default_rng(seed + 100)
    return (*make_inputs(seed), rng.uniform(1, 5, 12), 0.05, 0.1)'''
PREDICT = '''def predict_ratings(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, rating_scale=None):
    ### BEGIN SOLUTION
    users, items = np.asarray(users), np.asarray(items)
    out = global_mean + user_bias[users] + item_bias[items] + np.sum(user_factors[users] * item_factors[items], axis=1)
    return out if rating_scale is None else np.clip(out, *rating_scale)
    ### END SOLUTION'''
STEP = '''def sgd_step(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, ratings, learning_rate,
             regularization):
    ### BEGIN SOLUTION
    users, items = np.asarray(users), np.asarray(items)
    p, q, bu, bi = user_factors[users], item_factors[items], user_bias[users], item_bias[items]
    e = ratings - (global_mean + bu + bi + np.sum(p * q, axis=1))
    loss = float(e @ e + regularization * np.sum(bu ** 2 + bi ** 2 + np.sum(p * p, axis=1) + np.sum(q * q, axis=1)))
    g_bu, g_bi, g_p, g_q = (np.zeros_like(a) for a in (user_bias, item_bias, user_factors, item_factors))
    np.add.at(g_bu, users, -2 * e + 2 * regularization * bu)
    np.add.at(g_bi, items, -2 * e + 2 * regularization * bi)
    np.add.at(g_p, users, -2 * e[:, None] * q + 2 * regularization * p)
    np.add.at(g_q, items, -2 * e[:, None] * p + 2 * regularization * q)
    user_bias -= learning_rate * g_bu
    item_bias -= learning_rate * g_bi
    user_factors -= learning_rate * g_p
    item_factors -= learning_rate * g_q
    return loss
    ### END SOLUTION'''
TESTS = {
    "test-predict": ('''assert predict_ratings(3.0, np.zeros(2), np.zeros(2), np.zeros((2, 1)), np.zeros((2, 1)), [0], [1])[0] == 3.0
### BEGIN HIDDEN TESTS
from mflib.models import svd as reference  # psref-hidden-one
check_matches_reference(predict_ratings, reference.predict_ratings, make_inputs, name="predict_ratings")
check_matches_reference(predict_ratings, reference.predict_ratings, lambda seed: (*make_inputs(seed + 3), (3.0, 4.0)),
                        name="predict_ratings clipped to the rating scale")
### END HIDDEN TESTS''', 2),
    "test-step": ('''assert isinstance(sgd_step(*step_inputs(0)), float)
### BEGIN HIDDEN TESTS
from mflib.models import svd as reference  # psref-hidden-two
check_matches_reference(sgd_step, reference.sgd_step, step_inputs, name="sgd_step")
### END HIDDEN TESTS''', 2),
    "test-model": ('''### BEGIN HIDDEN TESTS
from mflib.models import svd as reference  # psref-hidden-three
trained_reference = reference.SVD(factors=2, iterations=3, learning_rate=0.05, random_state=0).fit(
    *step_inputs(7)[5:8], n_users=6, n_items=5)
pairs_u, pairs_i = np.arange(6), np.arange(6) % 5
mine_clipped = np.clip(predict_ratings(trained_reference.global_mean, trained_reference.user_bias,
                                       trained_reference.item_bias, trained_reference.user_factors,
                                       trained_reference.item_factors, pairs_u, pairs_i), 1, 5)
assert np.allclose(mine_clipped, trained_reference.predict(pairs_u, pairs_i), atol=1e-5), "predict_ratings disagrees with a trained SVD"
### END HIDDEN TESTS''', 1),
}
GRADE_IDS = list(TESTS)
REFERENCE_MARKERS = ("_batch_" + "gradients", "residual, user_side, item_side = ")  # only in mflib/models/svd.py


def _meta(grade_id, *, grade=False, solution=False, locked=False, points=None):
    m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
         "task": False}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


def psref_source():
    cells = [new_markdown_cell("# PSREF: ratings\n\nThe prediction is $\\hat r = \\mu + b_u + b_i + p_u \\cdot q_i$."),
             new_code_cell(SETUP, metadata=_meta("setup", locked=True)),
             new_code_cell(PREDICT, metadata=_meta("predict-solution", solution=True)),
             new_code_cell(TESTS["test-predict"][0], metadata=_meta("test-predict", grade=True, locked=True, points=2)),
             new_code_cell(STEP, metadata=_meta("step-solution", solution=True)),
             new_code_cell(TESTS["test-step"][0], metadata=_meta("test-step", grade=True, locked=True, points=2)),
             new_code_cell(TESTS["test-model"][0], metadata=_meta("test-model", grade=True, locked=True, points=1)),
             new_markdown_cell("The biases absorb each user's and item's average.",
                               metadata=_meta("q-why", grade=True, solution=True, points=1))]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _strip_solution(src):
    return re.sub(r" *### BEGIN SOLUTION\n(.*?) *### END SOLUTION", lambda m: m.group(1), src, flags=re.S)


def _strip_hidden(src):
    return re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", "", src, flags=re.S).rstrip()


def hidden_lines() -> list[str]:
    """Every line of the hidden tests (an independent reading of the source, not the grader's)."""
    lines = []
    for src, _ in TESTS.values():
        m = re.search(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", src, flags=re.S)
        lines += [line.strip() for line in m.group(1).splitlines() if len(line.strip()) >= 12]
    return lines


def submission(answers=None, extra_cells=(), metadata=None):
    """psref as a student hands it in: the release with the answers (default: the solutions) filled in;
    ``extra_cells`` = [(after grade_id, cell)]."""
    answers = answers or {}
    nb = psref_source()
    cells = []
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ("predict-solution", "step-solution"):
            cell.source = answers.get(gid, _strip_solution(cell.source))
        elif gid in TESTS:
            cell.source = _strip_hidden(cell.source)
        elif gid == "q-why":
            cell.source = answers.get(gid, "Because the biases absorb the averages.")
        cells.append(cell)
        cells += [extra for after, extra in extra_cells if after == gid]
    nb.cells = cells
    nb.metadata.update(metadata or {})
    return nb


# --- hostile students ----------------------------------------------------------------------------------

SOLUTION_PREDICT = _strip_solution(PREDICT)
# searches every readable file of the kernel's filesystem for the reference code of mflib's SVD
SEARCH = SOLUTION_PREDICT + '''
import os, sys, importlib.util, zipfile
markers = [(a + b).encode() for a, b in %r]  # split: not in this cell's own text
found, searched = [], 0
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if not (top == "/" and d in ("proc", "sys", "dev"))]
    for name in files:
        if not name.endswith((".py", ".pyc", ".ipynb", ".json", ".npz", ".txt", ".md", ".pth", ".cfg")):
            continue
        path = os.path.join(top, name)
        try:
            if os.path.getsize(path) > 4_000_000:
                continue
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        searched += 1
        if name.endswith(".npz"):
            try:
                with zipfile.ZipFile(path) as z:
                    data += b"".join(z.read(n) for n in z.namelist())
            except (OSError, zipfile.BadZipFile, ValueError):
                pass
        for m in markers:
            i = data.find(m)
            if i >= 0:
                found.append(path)
                print("FO" + "UND", path, data[max(0, i - 200):i + 300].decode(errors="replace"))
spec = importlib.util.find_spec(".".join(["mflib", "models", "svd"]))
origin = getattr(spec, "origin", None)
print("ORIGIN" + "-IS", origin, repr(open(origin).read()[:2000]) if origin and os.path.isfile(origin) else "unreadable")
print(f"SEARCHED {searched} files, {len(found)} with reference code")
''' % ([(m[:5], m[5:]) for m in REFERENCE_MARKERS],)

# prints the running hidden test's source in four ways, at test time and later
SPY = '''import sys, linecache, inspect, glob, sqlite3, json
STOLEN = []


def predict_ratings(global_mean, user_bias, item_bias, user_factors, item_factors, users, items, rating_scale=None):
    ip = get_ipython()
    STOLEN.append(ip.user_ns["In"][-1])
    frame = sys._getframe(1)
    for _ in range(3):
        STOLEN.append("".join(linecache.getlines(frame.f_code.co_filename)))
        frame = frame.f_back
    for path in glob.glob(ip.ipython_dir + "/profile_default/history.sqlite"):
        try:
            STOLEN.extend(row[0] for row in sqlite3.connect(path).execute("select source from history"))
        except sqlite3.Error:
            pass
    print("SPY-" + "TEST-TIME", STOLEN[0])
    users, items = np.asarray(users), np.asarray(items)
    out = global_mean + user_bias[users] + item_bias[items] + np.sum(user_factors[users] * item_factors[items], axis=1)
    return out if rating_scale is None else np.clip(out, *rating_scale)'''
SPY_LATER = '''print("SPY-" + "LATER")
for text in STOLEN:
    print(text)
print(json.dumps(STOLEN))
print(" | ".join(STOLEN).replace("\\n", " ~ "))
raise RuntimeError("\\n".join(STOLEN[:3]))'''
SPY_CRASH = '''def predict_ratings(*args, **kwargs):
    import os
    source = get_ipython().user_ns["In"][-1]
    os.write(1, ("CRASH-SPY " + source).encode())
    os.write(2, ("CRASH-SPY " + source).encode())
    os._exit(3)'''

VALID_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
# each payload, if it ever ran, would leave a marker built at run time (so the escaped text cannot match)
XSS = '''from IPython.display import HTML, Javascript, SVG, Markdown, display
mark = "document.title='XS'+'S{n}';document.documentElement.setAttribute('data-pw'+'ned','{n}')"
payloads = [
    "<script>" + mark.format(n=1) + "</script>",
    '<img src=x onerror="' + mark.format(n=2) + '">',
    '<iframe srcdoc="<script>parent.' + mark.format(n=3).replace("'", "&#39;") + '</script>"></iframe>',
    '<svg onload="' + mark.format(n=4) + '"></svg>',
    '<object data="javascript:' + mark.format(n=5) + '"></object><embed src="javascript:' + mark.format(n=6) + '">',
    '<a href="javascript:' + mark.format(n=7) + '" id="jslink">click</a><a href="  JaVaScRiPt:x">x</a>',
    '<form action="javascript:x"><button formaction="javascript:x">b</button></form>',
    '<meta http-equiv="refresh" content="0;url=javascript:' + mark.format(n=8) + '">',
    '<div style="background:url(javascript:x)" onmouseover="' + mark.format(n=9) + '">hover</div>',
    '<details open ontoggle="' + mark.format(n=10) + '">d</details>',
    '<base href="https://evil.example/"><link rel=stylesheet href="https://evil.example/x.css">',
]
for p in payloads:
    display(HTML(p))
display(HTML(payloads[0]), metadata={"isolated": True})
display(Javascript(mark.format(n=11)))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="' + mark.format(n=12) + '"><script>'
            + mark.format(n=13) + '</script></svg>'))
display(Markdown('<img src=x onerror="' + mark.format(n=14) + '"> [m](javascript:' + mark.format(n=15) + ')'))
display({"image/png": '"><img src=x onerror="' + mark.format(n=16) + '">'}, raw=True)
display({"image/png": "%s"}, raw=True, metadata={"image/png": {"width": '1 onerror="' + mark.format(n=17) + '"'}})
display({"application/vnd.jupyter.widget-view+json": {"model_id": "</script><script>" + mark.format(n=18)}}, raw=True)
print("<script>" + mark.format(n=19) + "</script>")''' % VALID_PNG
XSS_MARKDOWN = ('Answer <script>document.title="XS"+"S20"</script> <img src=x onerror="document.title=\'XS\'+\'S21\'">\n\n'
                '[link](javascript:document.title=\'XS\'+\'S22\') <a href="javascript:x" onclick="document.title=1">a</a>'
                '\n\n```\n\n[inside](javascript:document.title=\'XS\'+\'S23\')\n```\n')


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def make_secret_course(root: Path) -> Path:
    course = make_course(root)
    (course / "solutions" / "psref").mkdir(parents=True, exist_ok=True)
    nbformat.write(psref_source(), str(course / "solutions" / "psref" / "psref.ipynb"))
    return course


def cli(course: Path, subs: Path, out: Path, *extra, assignment="psref", timeout=900):
    cmd = [sys.executable, "-m", "autograder", "grade", assignment, str(subs), "--course-dir", str(course),
           "--out", str(out), "--jobs", "2", "--timeout", "120", "--sandbox-user", USER_PREFIX, "-q",
           "--memory", "1536", "--max-procs", "64", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory):
    require_sandbox()
    root = tmp_path_factory.mktemp("secrets")
    course = make_secret_course(root / "course")
    subs = root / "subs"
    bad_predict = "def predict_ratings(mu, bu, bi, P, Q, users, items, rating_scale=None):\n" \
                  "    return mu + bu[users] + bi[items] + np.sum(P[users] * Q[items], axis=1)"
    bad_step = _strip_solution(STEP).replace("    user_bias -= learning_rate * g_bu\n",
                                             "    user_bias = user_bias - learning_rate * g_bu\n")
    students = {
        "good": submission(),
        "noclip": submission({"predict-solution": bad_predict}),
        "notinplace": submission({"step-solution": bad_step}),
        "searcher": submission({"predict-solution": SEARCH}),
        "spy": submission({"predict-solution": SPY}, [("test-predict", new_code_cell(SPY_LATER))]),
        "spycrash": submission({"predict-solution": SPY_CRASH}),
        "xss": submission({"q-why": XSS_MARKDOWN},
                          [("predict-solution", new_code_cell(XSS)),
                           ("predict-solution", new_markdown_cell(XSS_MARKDOWN)),
                           ("setup", new_code_cell("1 + 1", metadata={"tags": ['x" onmouseover="document.title=1']}))],
                          {"widgets": {"application/vnd.jupyter.widget-state+json": {
                              "state": "</script><script>document.title='XS'+'S24'</script>"}}}),
    }
    for name, nb in students.items():
        write(nb, subs / f"{name}_psref.ipynb")
    r = cli(course, subs, root / "out")
    out = root / "out"
    results = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    yield {"root": root, "course": course, "subs": subs, "out": out, "cli": r, "results": results}


def page_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


# --- the run ----------------------------------------------------------------------------------------------

@needs_sandbox
def test_replayed_hidden_tests_keep_their_power(secret_run):
    r = secret_run["results"]
    assert secret_run["cli"].returncode == 0, secret_run["cli"].stderr[-3000:]
    assert r["good"]["status"] == "graded" and r["good"]["total"] == 5, r["good"]["reason"]
    assert [r["good"]["scores"][g] for g in GRADE_IDS] == [2, 2, 1]
    # passes the visible test, fails the hidden one on the recorded clipped inputs, and the message says why
    assert r["noclip"]["scores"]["test-predict"] == 0 and r["noclip"]["scores"]["test-step"] == 2
    assert "predict_ratings clipped to the rating scale" in r["noclip"]["reason"], r["noclip"]["reason"]
    # the recorded in-place update of the arguments is replayed: a copy instead of an update is caught
    assert r["notinplace"]["scores"]["test-step"] == 0
    assert "user_bias" in r["notinplace"]["reason"] and "in place" in r["notinplace"]["reason"], r["notinplace"]["reason"]
    # a trained reference model (a class: __init__, fit, predict replayed) answers too
    assert r["notinplace"]["scores"]["test-model"] == 1 and r["noclip"]["scores"]["test-model"] == 1
    assert "not recorded" not in json.dumps(r)


@needs_sandbox
def test_reference_code_is_nowhere_in_the_kernel(secret_run):
    r = secret_run["results"]["searcher"]
    page = (secret_run["out"] / "feedback" / "searcher.html").read_text()
    text = page_text(page)
    searched = re.search(r"SEARCHED (\d+) files, (\d+) with reference code", text)
    assert searched, text[:3000]
    assert int(searched.group(1)) > 1000  # it did walk the whole visible filesystem
    assert int(searched.group(2)) == 0 and "FOUND" not in text
    assert re.search(r"ORIGIN-IS \S+svd\.py ''", text), text[-3000:]  # the file is there, and empty
    assert r["status"] == "graded" and r["total"] == 5, r["reason"]
    for name in secret_run["results"]:
        for marker in REFERENCE_MARKERS:
            assert marker not in (secret_run["out"] / "feedback" / f"{name}.html").read_text(), name
            assert marker not in (secret_run["out"] / "results" / f"{name}.json").read_text(), name
    # the test is not vacuous: the same search, run outside the sandbox on mflib's folder, finds the code
    control = subprocess.run([sys.executable, "-c", "import numpy as np\n" + SEARCH.replace(
        'os.walk("/")', f"os.walk({str(REPO / 'mflib')!r})")], capture_output=True, text=True, timeout=300)
    assert "FOUND" in control.stdout and "svd.py" in control.stdout, control.stdout[-2000:] + control.stderr[-2000:]


@needs_sandbox
def test_no_hidden_test_line_in_any_feedback_or_result(secret_run):
    lines = hidden_lines()
    keys = [sanitize._key(line) for line in lines]
    out = secret_run["out"]
    pages = sorted((out / "feedback").glob("*.html")) + sorted((out / "results").glob("*.json"))
    assert len(pages) == 2 * len(secret_run["results"]) == 14
    for path in pages:
        raw = path.read_text()
        text = page_text(raw) if path.suffix == ".html" else json.dumps(json.loads(raw))
        for line, key in zip(lines, keys):
            assert line not in text and line not in raw, (path.name, line)
            assert key not in sanitize._key(text), (path.name, line)
    # the spies ran and were cut: they printed at test time and later, and crashed with it in the log
    spy = page_text((out / "feedback" / "spy.html").read_text())
    assert "SPY-TEST-TIME" in spy and "SPY-LATER" in spy and sanitize.NOTICE in spy
    assert secret_run["results"]["spycrash"]["status"] == "crashed"
    assert "test-predict" in secret_run["results"]["spycrash"]["reason"]
    # the test cells show their visible code and say the hidden part ran
    good = page_text((out / "feedback" / "good.html").read_text())
    assert "predict_ratings(3.0, np.zeros(2)" in good and "hidden tests of this cell ran" in good


@needs_sandbox
def test_summary_table_lists_each_test_with_points_and_message(secret_run):
    page = (secret_run["out"] / "feedback" / "noclip.html").read_text()
    table = re.search(r'<table class="mf-summary">(.*?)</table>', page, flags=re.S).group(1)
    rows = re.findall(r"<tr[^>]*><td>(.*?)</td><td[^>]*>(.*?)</td><td[^>]*>(.*?)</td></tr>", table, flags=re.S)
    by_name = {page_text(name).strip(): (points, html.unescape(message)) for name, points, message in rows}
    assert list(by_name) == [*GRADE_IDS, "q-why"]
    assert by_name["test-predict"][0] == "0 / 2" and "predict_ratings clipped to the rating scale" in by_name["test-predict"][1]
    assert by_name["test-step"] == ("2 / 2", "passed")
    assert by_name["q-why"][1] == "graded by hand"
    assert page.index('<table class="mf-summary">') < page.index("Student") < page.index("test-predict</code>")


# --- live HTML ------------------------------------------------------------------------------------------

class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _active_content(page: str) -> list[str]:
    """Tags and attributes of ``page`` that could run code (not counting the template's MathJax)."""
    parser = _Tags()
    parser.feed(page)
    bad = []
    for tag, attrs in parser.tags:
        if tag == "script" and (attrs.get("type") == "text/x-mathjax-config"
                                or (attrs.get("src") or "").startswith("https://cdnjs.cloudflare.com/ajax/libs/mathjax/")):
            continue
        if tag in ("script", "iframe", "object", "embed", "form", "base", "link", "frame", "applet") \
                or (tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh"):
            bad.append(f"<{tag} {attrs}>")
        for name, value in attrs.items():
            v = re.sub(r"[\s\x00-\x1f]", "", (value or "")).lower()
            if name.startswith("on") or v.startswith(("javascript:", "vbscript:", "data:text")) \
                    or (name == "style" and "url(" in v):
                bad.append(f"<{tag} {name}={value!r}>")
    return bad


@needs_sandbox
def test_feedback_holds_no_active_student_content(secret_run):
    page = (secret_run["out"] / "feedback" / "xss.html").read_text()
    assert secret_run["results"]["xss"]["status"] == "graded"
    assert _active_content(page) == []
    assert f'content="{CSP}"' in page
    text = page_text(page)
    assert "XS'+'S1" in text  # the payload is shown as text, not dropped silently
    for name in secret_run["results"]:
        assert _active_content((secret_run["out"] / "feedback" / f"{name}.html").read_text()) == [], name


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _dom(path: Path) -> str:
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                        "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@needs_sandbox
def test_no_student_script_runs_in_a_browser(secret_run, tmp_path):
    if _chromium() is None:  # .ci/run installs it; a skip elsewhere says so (the static check still ran)
        missing("chromium is not installed (Debian: apt-get install -y chromium): the feedback pages were not "
                "opened in a browser; test_feedback_holds_no_active_student_content checked them statically")
    # control: the same payloads in a plain page do run in this browser, so the check below can fail
    control = tmp_path / "control.html"
    control.write_text("<html><head><title>control</title></head><body>"
                       "<script>document.title='XS'+'S1';document.documentElement.setAttribute('data-pw'+'ned','1')"
                       "</script><img src=x onerror=\"document.documentElement.setAttribute('data-pw'+'ned','2')\">"
                       "</body></html>")
    dom = _dom(control)
    assert "XSS1" in dom and 'data-pwned="2"' in dom
    for name in ("xss", "spy", "good"):
        dom = _dom(secret_run["out"] / "feedback" / f"{name}.html")
        assert "data-pwned" not in dom and not re.search(r"<title>[^<]*XSS", dom), name
        assert "XSS" not in dom.replace("XS'+'S", ""), name


# --- fast unit tests (no sandbox) ---------------------------------------------------------------------------

def test_codec_round_trip_and_digest():
    import scipy.sparse as sp

    store = codec.ArrayStore()
    rng = np.random.default_rng(0)
    value = {"a": np.arange(6.0).reshape(2, 3), "b": [1, 2.5, float("nan"), None, "x"], 3: (True, np.float32(2)),
             "s": sp.random(4, 5, density=0.5, random_state=1, format="csr"), "g": np.random.default_rng(5),
             "t": np.dtype("float32"), "n": inspect.ArgInfo(["a"], None, None, {"a": 1})}
    tree = json.loads(json.dumps(codec.encode(value, store)))
    back = codec.decode(tree, store.arrays)
    assert np.array_equal(back["a"], value["a"]) and back[3] == (True, np.float32(2))
    assert back["b"][:2] == [1, 2.5] and np.isnan(back["b"][2]) and back["b"][3:] == [None, "x"]
    assert (back["s"] != value["s"]).nnz == 0 and back["t"] == np.float32 and back["n"] == value["n"]
    assert type(back["n"]) is inspect.ArgInfo
    assert back["g"].random() == np.random.default_rng(5).random()
    assert codec.digest(value["a"]) == codec.digest(value["a"].copy())
    assert codec.digest(value["a"]) != codec.digest(value["a"].astype(np.float32))
    assert codec.digest({"x": 1, "y": 2}) == codec.digest({"y": 2, "x": 1})
    with pytest.raises(codec.Unrecordable):
        codec.encode(lambda x: x, store)
    with pytest.raises(codec.Unrecordable):
        codec.encode(np.array([object()]), store)
    target = {"w": np.zeros(3), "r": rng}
    codec.apply_state(target, {"w": np.ones(3), "r": np.random.default_rng(9)})
    assert target["w"].tolist() == [1, 1, 1] and target["r"] is rng and rng.random() == np.random.default_rng(9).random()


def test_hidden_lines_are_scrubbed_but_messages_stay():
    source = psref_source()
    source.cells.append(new_code_cell('assert ok, (\n    "the message a hidden test shows")\n'
                                      "### BEGIN HIDDEN TESTS\nassert secret_function(41) == 42, (\n"
                                      '    "the message a hidden test shows")\n### END HIDDEN TESTS',
                                      metadata=_meta("test-extra", grade=True, locked=True, points=1)))
    hidden = sanitize.HiddenTests.from_notebook(source)
    assert hidden.visible["test-model"] == ""
    assert hidden.visible["test-extra"].startswith("assert ok")
    text = "ok\nx = 'assert   secret_function(41)==42, ('  # copied\nthe message a hidden test shows\n"
    assert hidden.scrub(text) == f"ok\n{sanitize.NOTICE}\nthe message a hidden test shows\n"
    assert hidden.found_in("assert secret_\nfunction(41) == 42")  # across a line break
    assert hidden.scrub_value({"r": ["from mflib.models import svd as reference  # psref-hidden-one"]}) == \
        {"r": [sanitize.NOTICE]}


def test_clean_html_allows_tables_and_text_only():
    cleaned = sanitize.clean_html('<table border="1" class="dataframe"><tr><td onclick="x()">1</td></tr></table>'
                                  '<style>td{}</style><script>alert(1)</script><a href="javascript:x">a</a>'
                                  '<a href="https://example.org/">b</a><img src="x" onerror="y">')
    assert "<table" in cleaned and "<td>1</td>" in cleaned and "onclick" not in cleaned
    assert "alert" not in cleaned and "td{}" not in cleaned and "javascript" not in cleaned
    assert 'href="https://example.org/"' in cleaned and "onerror" not in cleaned
    assert _active_content(sanitize.clean_markdown(XSS_MARKDOWN)) == []
