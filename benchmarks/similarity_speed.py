"""Speed of the similarity report on a synthetic class (default: 500 students of 02-als).

    .venv/bin/python benchmarks/similarity_speed.py                  # 500 students, seed 0
    .venv/bin/python benchmarks/similarity_speed.py --students 1000 --seed 1

Each synthetic student hands in the released notebook of the assignment with every answer cell
replaced by a generated function (the script prints the tokens per student next to those of the
instructor's real answers): numpy statement templates with the student's own variable names and
numbers, plus per cell one "idiom" from a pool of 40 that a whole class writes alike (dropped as
common code) and one snippet from a pool of 2,000 (so many pairs share a fingerprint or two and have
to be scored), and a 20 kB stream output per cell (student notebooks carry outputs).  Planted among
them: 10 students who copied another one (variables renamed, functions in the opposite order,
comments changed) and 5 who copied one answer cell of another.

Prints the wall time of ``python -m autograder.grading.similarity`` over the folder (a fresh process:
interpreter start, imports, reading and parsing the notebooks, fingerprints, scoring, the HTML report)
and where the planted pairs rank.  The machine is shared: treat the time as an upper bound.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUNCS = ["sum", "mean", "max", "min", "argsort", "argmax", "cumsum", "sqrt", "exp", "log1p", "abs", "maximum",
         "minimum", "clip", "dot", "outer", "where", "unique", "bincount", "diff", "sort", "square", "tanh"]
OPS = ["+", "-", "*", "/", "@"]


def _names(rng: random.Random, n: int) -> list[str]:
    words = ["user", "item", "score", "grad", "loss", "factor", "rating", "weight", "step", "row", "col", "val",
             "tmp", "acc", "total", "norm", "best", "pos", "neg", "lr", "reg", "data", "mask", "idx"]
    return [f"{rng.choice(words)}_{rng.choice(words)}{i}" for i in range(n)]


def _expr(rng: random.Random, v: list[str], depth: int) -> str:
    """A random numpy expression tree (names, numbers, calls, methods, subscripts, operators)."""
    if depth <= 0 or rng.random() < 0.25:
        return rng.choice(v) if rng.random() < 0.8 else str(rng.randint(0, 99))
    kind = rng.randrange(6)
    sub = lambda: _expr(rng, v, depth - 1)  # noqa: E731
    if kind == 0:
        return f"np.{rng.choice(FUNCS)}({sub()})"
    if kind == 1:
        return f"np.{rng.choice(FUNCS)}({sub()}, axis={rng.randrange(2)})"
    if kind == 2:
        return f"({sub()} {rng.choice(OPS)} {sub()})"
    if kind == 3:
        return f"{rng.choice(v)}[{sub()}]"
    if kind == 4:
        return f"{sub()}.{rng.choice(['T', 'sum()', 'copy()', 'ravel()', 'max(axis=1)', 'shape[0]'])}"
    return f"{rng.choice(v)}[:, {sub()}]"


def _statement(rng: random.Random, v: list[str], depth: int = 1) -> list[str]:
    pad = "    " * depth
    a, b = rng.sample(v, 2)
    kind = rng.randrange(5)
    if kind == 0 and depth < 3:
        return [f"{pad}for {a} in range({b}.shape[{rng.randrange(2)}]):"] + _statement(rng, v, depth + 1)
    if kind == 1 and depth < 3:
        return [f"{pad}if {_expr(rng, v, 2)} > {rng.random():.3f}:"] + _statement(rng, v, depth + 1)
    if kind == 2:
        return [f"{pad}{a}[{b}] {rng.choice(OPS)}= {_expr(rng, v, 3)}  # {rng.choice(['fix', 'todo', 'ok'])}"]
    return [f"{pad}{a} = {_expr(rng, v, 3)}"]


def _function(rng: random.Random, name: str, v: list[str], extra: list[str]) -> str:
    params = rng.sample(v, 3)
    body = []
    for _ in range(rng.randint(6, 10)):
        body += _statement(rng, v)
    for snippet in extra:
        body.insert(rng.randrange(len(body) + 1), "    " + snippet)
    body.append(f"    return {rng.choice(v)}")
    return f"def {name}({', '.join(params)}):\n" + "\n".join(body) + "\n"


def _rename(code: str, rng: random.Random) -> str:
    """Consistently rename the student's variables, reverse the order of the functions, change comments."""
    import io
    import re
    import tokenize

    toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    mapping = {}
    out = []
    for t in toks:
        if t.type == tokenize.NAME and re.match(r"^[a-z]+_[a-z]+\d+$", t.string):
            t = t._replace(string=mapping.setdefault(t.string, f"q{rng.randrange(10**6)}_{len(mapping)}"))
        elif t.type == tokenize.COMMENT:
            t = t._replace(string="# changed")
        out.append(t)
    renamed = tokenize.untokenize(out)
    functions = re.split(r"\n(?=def )", renamed)
    return "\n".join(reversed(functions))


def make_class(folder: Path, n: int, seed: int, assignment: str) -> dict:
    """Write n synthetic submissions into folder; returns the planted pairs."""
    rng = random.Random(seed)
    release = json.loads((REPO / "assignments" / assignment / f"{assignment}.ipynb").read_text())
    answer_cells = [i for i, c in enumerate(release["cells"])
                    if c.get("metadata", {}).get("nbgrader", {}).get("solution") and c["cell_type"] == "code"]
    idioms = [f"{name} = np.asarray({name}, dtype=np.float64).copy()" for name in _names(random.Random(seed + 1), 40)]
    pool = ["{0} = np.{1}({0}) * {2} + np.{3}({0}, axis={4})".format(name, rng.choice(FUNCS), rng.randint(2, 99),
                                                                   rng.choice(FUNCS), rng.randrange(2))
            for name in _names(random.Random(seed + 2), 2000)]
    codes = []
    for s in range(n):
        v = _names(rng, 14)
        cells = []
        for j, _ in enumerate(answer_cells):
            extra = rng.sample(idioms, 1) + rng.sample(pool, 1)
            cells.append(_function(rng, f"part{j}", v, extra))
        codes.append(cells)
    planted = {"copies": [], "partial": []}
    order = rng.sample(range(n), 30)
    for a, b in zip(order[:10], order[10:20]):
        codes[b] = [_rename(c, rng) for c in codes[a]]
        planted["copies"].append((f"student{a:04d}", f"student{b:04d}"))
    for a, b in zip(order[20:25], order[25:30]):
        codes[b][0] = _rename(codes[a][0], rng)
        planted["partial"].append((f"student{a:04d}", f"student{b:04d}"))
    folder.mkdir(parents=True, exist_ok=True)
    for s, cells in enumerate(codes):
        nb = json.loads(json.dumps(release))
        for i, code in zip(answer_cells, cells):
            nb["cells"][i]["source"] = code
            nb["cells"][i]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x" * 20000}]
        (folder / f"student{s:04d}_{assignment}.ipynb").write_text(json.dumps(nb))
    return planted


def doc_tokens(folder: Path, n: int) -> float:
    """Mean normalised tokens in the student cells of the first n submissions of folder."""
    from autograder.grading.similarity_tokens import doc_from_notebook, normalise

    files = sorted(folder.glob("*.ipynb"))[:n]
    counts = [sum(len(normalise(c.source)[0]) for c in doc_from_notebook(f.stem, f.read_bytes()).cells
                  if not c.label.startswith("added cell")) for f in files]
    return sum(counts) / max(1, len(counts))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--assignment", default="02-als")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="simbench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        planted = make_class(tmp / "subs", args.students, args.seed, args.assignment)
        made = time.perf_counter() - t0
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "autograder.grading.similarity", args.assignment, str(tmp / "subs"),
               "--course-dir", str(REPO), "--out", str(tmp / "report")]
        t0, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if run.returncode != 0:
            print(run.stdout, run.stderr, file=sys.stderr)
            return 1
        summary = json.loads((tmp / "report" / "similarity.json").read_text())
        sample = doc_tokens(tmp / "subs", 20)
        with open(tmp / "report" / "pairs.csv", newline="") as f:
            summary["pairs"] = [dict(r, similarity=float(r["similarity"])) for r in csv.DictReader(f)]
    real_tokens = doc_tokens(REPO / "solutions" / args.assignment, 1)
    rank = {tuple(sorted((r["a"], r["b"]))): i + 1 for i, r in enumerate(summary["pairs"])}
    copies = [rank.get(tuple(sorted(pair))) for pair in planted["copies"]]
    partial = [rank.get(tuple(sorted(pair))) for pair in planted["partial"]]
    sims = {tuple(sorted((r["a"], r["b"]))): r["similarity"] for r in summary["pairs"]}
    print(f"{args.students} synthetic submissions of {args.assignment} (seed {args.seed}; written in {made:.1f} s): "
          f"{sample:.0f} normalised tokens per student in the answer cells "
          f"(the instructor's answers: {real_tokens:.0f})")
    print(f"similarity report: {wall:.1f} s wall, {cpu:.1f} s CPU (2 tokenizing processes, {os.cpu_count()} cores "
          f"on the machine, load average {os.getloadavg()[0]:.1f}); phases (wall, s): {summary['seconds']}")
    print(f"  "
          f"{summary['pairs_scored']} pairs share a fingerprint, {summary['dropped_common']} common and "
          f"{summary['dropped_base']} base fingerprints ignored")
    print(f"planted full copies rank {sorted(r for r in copies if r)} (missing {copies.count(None)}), similarity "
          f"{min(sims.get(tuple(sorted(p)), 0) for p in planted['copies']):.2f} or more")
    print(f"planted one-function copies rank {sorted(r for r in partial if r)} (missing {partial.count(None)})")
    top_other = max((r["similarity"] for r in summary["pairs"]
                     if tuple(sorted((r["a"], r["b"]))) not in {tuple(sorted(p)) for v in planted.values() for p in v}),
                    default=0.0)
    print(f"most similar unplanted pair: {top_other:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
