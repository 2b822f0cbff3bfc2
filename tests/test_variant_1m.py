"""Every course notebook runs unchanged with ``VARIANT = "1m"`` (its one variant line changed, nothing else).

GroupLens' ML-1M cannot be fetched on these machines, so the archive is a stand-in: the real ML-100K written
in ML-1M's exact layout (``ml-1m/ratings.dat``, Latin-1 ``movies.dat`` and ``users.dat`` with ML-1M's age and
occupation codes, ``::``-separated) by ``tests/movielens_layouts.py``, and pinned as the genuine archive in the
kernel (its md5 replaces GroupLens' in ``mflib.datasets.VARIANTS``).  So this proves the code path -- ML-1M's
parser, its demographics in the FM features, every notebook's use of ``VARIANT`` -- on data whose content the
hidden tests know, not the notebooks' speed or quality at ML-1M's size.  Each solution notebook runs with its
hidden tests in a fresh kernel; a cell that raises or a graded cell that writes to stderr fails the test.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course_bugs import ROOT, course_env  # noqa: E402
from movielens_layouts import Truth, grouplens_zip  # noqa: E402

from autograder.course.notebooks import ASSIGNMENTS, solution_path  # noqa: E402
from mflib.datasets import ML1M_AGES, VARIANTS  # noqa: E402

pytestmark = [pytest.mark.course, pytest.mark.slow]

# ML-100K's occupations in ML-1M's vocabulary (mflib.datasets.ML1M_OCCUPATIONS)
OCCUPATIONS = {"administrator": "clerical/admin", "artist": "artist", "doctor": "doctor/health care",
               "educator": "academic/educator", "engineer": "technician/engineer", "entertainment": "other",
               "executive": "executive/managerial", "healthcare": "doctor/health care", "homemaker": "homemaker",
               "lawyer": "lawyer", "librarian": "academic/educator", "marketing": "sales/marketing",
               "none": "unemployed", "other": "other", "programmer": "programmer", "retired": "retired",
               "salesman": "sales/marketing", "scientist": "scientist", "student": "college/grad student",
               "technician": "technician/engineer", "writer": "writer"}


def stand_in_1m(ds) -> Truth:
    """ML-100K's ratings, films and users as ML-1M would ship them (ages as ML-1M's age-group codes; the two
    films whose only genre is ML-100K's "unknown", which ML-1M does not have, become "Drama")."""
    ages = np.asarray(ML1M_AGES)
    users = ds.users.copy()
    users["age"] = ages[np.searchsorted(ages, users["age"].to_numpy(), side="right") - 1]
    users["occupation"] = users["occupation"].map(OCCUPATIONS)
    movies = ds.items.copy()
    movies["genres"] = [[g for g in genres if g != "unknown"] or ["Drama"] for genres in movies["genres"]]
    ratings = ds.ratings[["user_id", "item_id", "rating", "timestamp"]].copy()
    return Truth("1m", ratings, movies[["item_id", "title", "year", "genres"]],
                 users[["user_id", "age", "gender", "occupation", "zip_code"]])


@pytest.fixture(scope="module")
def data_home(tmp_path_factory, ml100k):
    """A data home with the stand-in ``ml-1m.zip`` (and ML-100K's cached mirror); the archive's md5."""
    home = tmp_path_factory.mktemp("data-1m")
    data = grouplens_zip(stand_in_1m(ml100k))
    (home / VARIANTS["1m"].filename).write_bytes(data)
    for cached in (ROOT / "data").glob("*.whl"):
        shutil.copy(cached, home / cached.name)
    return home, "md5:" + hashlib.md5(data).hexdigest()


def test_the_stand_in_loads_as_ml1m(data_home, ml100k, monkeypatch):
    import dataclasses

    from mflib.datasets import load_movielens
    home, checksum = data_home
    monkeypatch.setitem(VARIANTS, "1m", dataclasses.replace(VARIANTS["1m"], checksum=checksum))
    ds = load_movielens("1m", data_home=home, download=False)
    assert (ds.n_users, ds.n_items, len(ds.ratings)) == (ml100k.n_users, ml100k.n_items, len(ml100k.ratings))
    assert set(ds.users["age"]) <= set(ML1M_AGES) and ds.title(ds.find_item("Star Wars")) == "Star Wars (1977)"
    pd.testing.assert_series_equal(ds.ratings["rating"], ml100k.ratings["rating"], check_dtype=False)


@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_notebook_runs_unchanged_on_1m(name, data_home, monkeypatch):
    from nbclient import NotebookClient

    home, checksum = data_home
    notebook = nbformat.read(solution_path(name), as_version=4)
    variant_cells = [c for c in notebook.cells if c.cell_type == "code" and 'VARIANT = "100k"' in c.source]
    assert len(variant_cells) == 1, f"{name}: VARIANT must be set in exactly one code cell"
    variant_cells[0].source = variant_cells[0].source.replace('VARIANT = "100k"', 'VARIANT = "1m"')
    pin = ("import dataclasses\nfrom mflib.datasets import VARIANTS\n"
           f"VARIANTS['1m'] = dataclasses.replace(VARIANTS['1m'], checksum={checksum!r})")
    notebook.cells.insert(0, nbformat.v4.new_code_cell(pin))
    notebook.cells.append(nbformat.v4.new_code_cell("print(ds.name, ds.source)"))
    for variable, value in {**course_env(), "MFLIB_DATA": str(home)}.items():
        monkeypatch.setenv(variable, value)
    workdir = home.parent / f"run-{name}"
    workdir.mkdir(exist_ok=True)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell raises
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        for output in cell.get("outputs", []):
            if meta.get("grade") and output.output_type == "stream" and output.name == "stderr":
                pytest.fail(f"{name}: test {meta.get('grade_id')} writes to stderr on 1m: {output.text[:500]}")
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].get("outputs", []))
    assert printed.strip() == "1m cache", f"{name}: the notebook's `ds` is not the 1m archive: {printed!r}"
