"""Shared fixtures: the real ML-100K (fetched once into the repo's data/ cache) and its protocol split."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

from mflib.datasets import load_movielens


@pytest.fixture(scope="session")
def ml100k():
    """The real MovieLens 100K (cache -> GroupLens -> recbole mirror)."""
    return load_movielens("100k")


@pytest.fixture(scope="session")
def implicit_split_0(ml100k):
    from mflib.evaluation import implicit_split

    return implicit_split(ml100k, random_state=0)
