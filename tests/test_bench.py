"""The benchmark's bookkeeping (benchmarks/bench.py, speed.py, _common.py): ratios, noise, tables, README block."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench  # noqa: E402  (benchmarks/, not the library)
import speed  # noqa: E402
from _common import markdown_table  # noqa: E402


def test_readme_has_one_generated_block():
    text = bench.README.read_text()
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    assert text.index(bench.BEGIN) < text.index(bench.END)


def test_replace_between_markers_touches_only_the_block():
    text = f"intro\n{bench.BEGIN}\nold table\n{bench.END}\noutro\n"
    new = bench.replace_between_markers(text, "| new |", "README")
    assert new == f"intro\n{bench.BEGIN}\n| new |\n{bench.END}\noutro\n"
    assert bench.replace_between_markers(new, "| newer |", "README").count("| new") == 1


@pytest.mark.parametrize("text", ["no markers", f"{bench.END}\n{bench.BEGIN}",
                                  f"{bench.BEGIN}{bench.BEGIN}{bench.END}"])
def test_replace_between_markers_refuses_a_broken_readme(text):
    with pytest.raises(ValueError, match="bench:begin"):
        bench.replace_between_markers(text, "x", "README.md")


def _task(ours, anchor, second=None, **kwargs):
    task = speed.SpeedTask("row", "1 / 1", ours=lambda: None, anchor_name="anchor", anchor=lambda: None, **kwargs)
    task.runs[0] = {"ours": [(t, t) for t in ours], "anchor": [(t, 2 * t) for t in anchor]}
    if second:
        task.runs[1] = {"ours": [(t, t) for t in second[0]], "anchor": [(t, t) for t in second[1]]}
    return task


def test_summarise_takes_the_best_run_and_states_the_noise():
    tasks = [_task([3.0, 2.0, 2.5], [1.0, 1.5], second=([2.2], [1.0]), target=1.5, one_thread=True),
             _task([0.5], [1.0], second=([0.5], [1.0]), per=10, unit="ms")]
    rows, noise = speed.summarise(tasks)
    assert rows[0]["mflib"] == 2.0 and rows[0]["anchor_time"] == 1.0
    assert rows[0]["ratio"] == pytest.approx(2.0) and rows[0]["ratio_rerun"] == pytest.approx(2.2)
    assert rows[0]["cpu_ratio"] == pytest.approx(1.0)        # CPU seconds: 2.0 against 2 * 1.0
    assert rows[0]["met"] == "no"                             # 2.0 > 1.5
    assert rows[1]["mflib"] == pytest.approx(50.0)             # 0.5 s over 10 epochs, in ms
    assert rows[1]["ratio"] == pytest.approx(0.5) and "cpu_ratio" not in rows[1] and "met" not in rows[1]
    assert noise["ratio_change_max"] == pytest.approx(0.1)
    assert noise["spread_max"] == pytest.approx(0.5)          # 3.0 over 2.0, and 1.5 over 1.0


def test_summarise_without_anchor():
    task = speed.SpeedTask("row", "1 / 1", ours=lambda: None)
    task.runs[0] = {"ours": [(1.0, 1.0)], "anchor": []}
    rows, _ = speed.summarise([task])
    assert rows[0]["anchor"] == "not installed" and "ratio" not in rows[0]


def test_measure_interleaves_and_reruns():
    calls = []
    task = speed.SpeedTask("row", "1 / 1", ours=lambda: calls.append("o"), anchor=lambda: calls.append("a"))
    once = speed.SpeedTask("loop", "1 / 1", ours=lambda: calls.append("O"), anchor=lambda: calls.append("A"),
                           anchor_repeats=1, rerun=False)
    speed.measure([task, once], repeats=2, passes=2, log=lambda *a, **k: None)
    assert "".join(calls) == "oaoa" + "OAO" + "oaoa"
    assert sorted(task.runs) == [0, 1] and sorted(once.runs) == [0]


def test_markdown_table():
    table = markdown_table([{"model": "a", "x": 0.12345, "y": None}], [("x", "X", ".2f"), ("y", "Y", "")])
    assert table.splitlines() == ["| model | X | Y |", "|---|---:|---:|", "| a | 0.12 |  |"]


def test_write_puts_one_run_in_the_report_and_the_readme(tmp_path, monkeypatch):
    """The whole of main() with every section replaced by a stub: the report gets the machine and every
    section, the README only its block (from the same numbers)."""
    import beyond
    import seed_scale

    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nprose 1.5\n{bench.BEGIN}\n*old*\n{bench.END}\nmore prose\n")
    monkeypatch.setattr(bench, "README", readme)
    monkeypatch.setattr(bench, "REPORT", tmp_path / "benchmarks.md")
    monkeypatch.setattr(bench, "quality_implicit", lambda ds, seeds, quick: [{"model": "mflib ALS", "ndcg@10": 0.5}])
    monkeypatch.setattr(bench, "quality_explicit",
                        lambda ds, seeds, quick, svdpp: [{"model": "mflib SVD", "rmse": 0.9, "fit s": 1.0}])
    tick = iter(range(1, 1000))
    fast = speed.SpeedTask("ALS fit", "1 / 1", ours=lambda: next(tick), anchor_name="implicit ALS",
                           anchor=lambda: next(tick), target=1.5, one_thread=True)
    monkeypatch.setattr(speed, "speed_tasks", lambda ds, quick: [fast])
    monkeypatch.setattr(speed, "als_profile", lambda: "profile table")

    def fake_seed_scale(argv):
        Path(argv[argv.index("--markdown") + 1]).write_text("## Seed-scale speed\n\nFM table\n")
    monkeypatch.setattr(seed_scale, "main", fake_seed_scale)
    table = beyond.Table("Beyond", ["k", "x"])
    table.add(1, "0.1")
    monkeypatch.setattr(beyond, "new_users_table", lambda ds, seeds: table)
    monkeypatch.setattr(beyond, "explicit_table", lambda ds, seeds: table)
    monkeypatch.setattr(beyond, "two_stage_tables", lambda *a, **k: [table])

    bench.main(["--write", "--repeats", "2"])
    report = (tmp_path / "benchmarks.md").read_text()
    for expected in ("## Machine", "load average", "blas", "| mflib ALS | 0.500 |", "| mflib SVD | 0.9000 |",
                     "| ALS fit | 1 / 1 |", "profile table", "FM table", "### Beyond", "quoted, not measured"):
        assert expected in report, expected
    assert "## Seed-scale speed\n" not in report  # its heading is replaced by the report's own
    text = readme.read_text()
    assert text.startswith("# Title\nprose 1.5\n") and text.endswith(f"{bench.END}\nmore prose\n")
    block = text.split(bench.BEGIN)[1].split(bench.END)[0]
    assert "*old*" not in block and "| mflib ALS | 0.500 |" in block and "| ALS fit | 1 / 1 |" in block
    assert "docs/benchmarks.md" in block and "FM table" not in block


REPORT = """# Benchmarks

Generated by `make bench` (`benchmarks/bench.py`) on 2026-12-04 20:32 UTC, revision abc, in 12 min.

## Machine

- CPU: Test CPU, 2 cores
- load average (1, 5, 15 min) at start: 0.10, 0.20, 0.30
- blas: openblas 0.3.30 (libscipy_openblas.so), kernel Haswell, 1 threads
- load average at the end: 0.40, 0.50, 0.60

## Implicit feedback on ML-100K

| implicit feedback | NDCG@10 |
|---|---:|
| mflib ALS | 0.331 |

## Explicit ratings on ML-100K

| explicit ratings | RMSE |
|---|---:|
| mflib SVD | 0.907 |

## Speed against implicit

| task | ratio |
|---|---:|
| ALS | 0.66 |

Noise note.

Where mflib's ALS fit spends its time (cProfile):

| function | own s |
|---|---:|
| _gram | 0.04 |

## Seed-scale speed (`benchmarks/seed_scale.py`)

- machine lines

### Factorization machine, one epoch

| data | epoch |
|---|---:|
| ml-latest | **40.4 s** |

Epoch = wall time.

## Notebook 07 (`benchmarks/beyond.py`)

### New users from k positives

| k | fold-in |
|---|---|
| 1 | 0.4044 |
"""


def test_readme_block_is_cut_from_the_report():
    block = bench.readme_block(REPORT)
    assert "on 2026-12-04 20:32 UTC (CPU: Test CPU, 2 cores; load average 0.10, 0.20, 0.30 at the start, " \
           "0.40, 0.50, 0.60 at the end)" in block
    for line in ("- blas: openblas 0.3.30 (libscipy_openblas.so), kernel Haswell, 1 threads", "| mflib ALS | 0.331 |", "| mflib SVD | 0.907 |", "| ALS | 0.66 |", "Noise note.",
                 "**Factorization machine, one epoch**", "| ml-latest | **40.4 s** |",
                 "**New users from k positives**", "| 1 | 0.4044 |"):
        assert line in block
    for line in ("_gram", "Where mflib's ALS", "Epoch = wall time.", "- machine lines"):
        assert line not in block  # profiles and long notes stay in docs/benchmarks.md


@pytest.mark.parametrize("cut", ["## Notebook 07", "- load average at the end"])
def test_readme_block_refuses_an_incomplete_report(cut):
    with pytest.raises(ValueError, match="regenerate it with `make bench`"):
        bench.readme_block(REPORT.replace(cut, "## Something else" if cut.startswith("##") else "- other"))
