"""Feature vectors for a factorization machine on MovieLens: one sparse row per (user, item) pair.

A factorization machine does not see "users" and "items": it sees a feature vector
:math:`x \\in \\mathbb{R}^n` per rating, made of *blocks* (fields) laid side by side::

    | user one-hot | item one-hot | age bucket | gender | occupation | genres       | release year |
    |  0 .. 1 .. 0 |  0 .. 1 .. 0 | 0 1 0 0 .. | 0 1    | 0 .. 1 .. 0| 0 ⅓ 0 ⅓ ⅓ .. | 0 0 1 0 ..   |
      943 columns    1,682          7            2        21           19             8      (ML-100K)

* ``user``: one-hot of the user index (absent for a cold-start user, see :func:`cold_start_rows`);
* ``item``: one-hot of the item index;
* ``age``: one-hot of the user's age bucket, MovieLens 1M's buckets ``<18, 18-24, 25-34, 35-44,
  45-49, 50-55, 56+`` (:data:`AGE_EDGES`);
* ``gender``, ``occupation``: one-hot of the category (categories sorted, taken from ``dataset.users``);
* ``genres``: multi-hot of the film's genres, **normalised so that a film's genre weights sum to 1**
  (a film with 3 genres has 1/3 in each). We normalise so that every block carries the same total
  weight: a 5-genre film would otherwise get 5 genre terms in the linear part and 10 genre x genre
  pairs in the interactions, and its predictions would swing further from the mean for no reason
  (libFM's convention for set-valued fields). Pass ``genre_weights="binary"`` for plain 0/1 flags;
* ``year``: one-hot of the release-year bucket ``<1960, 1960s, 1970s, 1980s, 1990-94, 1995-96,
  1997+`` (:data:`YEAR_EDGES`) and ``unknown`` for a film without a year.

Every user-side block is a row of a (users x features) matrix ``U`` and every item-side block a row
of an (items x features) matrix ``I`` in the same column space, so the row of rating
:math:`(u, i)` is simply ``U[u] + I[i]``: that is how :func:`build_features` builds all rows at once,
and how :func:`cold_start_rows` pairs a brand-new user's demographic row with every film.

Usage::

    from mflib.features import build_features, cold_start_rows
    X, space = build_features(ds, train_df)                  # (n_ratings x n_features) CSR
    space.slice("occupation"), space.names[:3]               # where a block lives, column labels
    X_new = cold_start_rows(space, ds, age=25, gender="M", occupation="student")  # one row per film
    scores = fm.predict(X_new)                               # rank every film for the new user
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .datasets import GENRES, Dataset

__all__ = ["FIELDS", "USER_FIELDS", "ITEM_FIELDS", "AGE_EDGES", "YEAR_EDGES", "Block", "FeatureSpace",
           "build_features", "user_rows", "user_row", "item_rows", "cold_start_rows", "age_bucket",
           "year_bucket"]

#: Every block the builder knows, in column order.
FIELDS = ("user", "item", "age", "gender", "occupation", "genres", "year")
USER_FIELDS = ("user", "age", "gender", "occupation")
ITEM_FIELDS = ("item", "genres", "year")

#: Age bucket edges (MovieLens 1M's buckets): ``age < 18`` -> "<18", ``18 <= age < 25`` -> "18-24", ...
AGE_EDGES = (18, 25, 35, 45, 50, 56)
AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
#: Release-year bucket edges; a film without a year goes to "unknown".
YEAR_EDGES = (1960, 1970, 1980, 1990, 1995, 1997)
YEAR_LABELS = ("<1960", "1960-69", "1970-79", "1980-89", "1990-94", "1995-96", "1997+", "unknown")


def age_bucket(age) -> np.ndarray:
    """Index of the age bucket of each age (0 = "<18", ..., 6 = "56+")."""
    return np.searchsorted(np.asarray(AGE_EDGES), np.asarray(age, dtype=np.float64), side="right")


def year_bucket(year) -> np.ndarray:
    """Index of the release-year bucket of each year; a missing year (NaN/NA) -> the last, "unknown"."""
    years = pd.array(np.atleast_1d(year), dtype="Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    bucket = np.searchsorted(np.asarray(YEAR_EDGES), years, side="right")
    bucket[np.isnan(years)] = len(YEAR_LABELS) - 1
    return bucket


@dataclass(frozen=True)
class Block:
    """One field of the feature vector: columns ``start:stop``, one label per column."""

    name: str
    start: int
    labels: tuple[str, ...]

    @property
    def stop(self) -> int:
        return self.start + len(self.labels)

    @property
    def size(self) -> int:
        return len(self.labels)

    def slice(self) -> slice:
        return slice(self.start, self.stop)


@dataclass
class FeatureSpace:
    """The column layout of a feature matrix: its blocks, column names and category vocabularies.

    Attributes
    ----------
    blocks : tuple[Block, ...]
        The fields in column order, e.g. ``Block("age", 2625, ("<18", "18-24", ...))``.
    categories : dict[str, tuple]
        The vocabulary of each categorical user field (``"gender"``, ``"occupation"``) and ``"genres"``.
    genre_weights : str
        ``"normalized"`` (a film's genre weights sum to 1) or ``"binary"``.
    n_users, n_items : int
        Sizes of the ``user`` and ``item`` one-hot blocks (the dataset's, even when a block is left out).
    """

    blocks: tuple[Block, ...]
    categories: dict = field(default_factory=dict)
    genre_weights: str = "normalized"
    n_users: int = 0
    n_items: int = 0

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(block.name for block in self.blocks)

    @property
    def n_features(self) -> int:
        return self.blocks[-1].stop if self.blocks else 0

    @property
    def names(self) -> list[str]:
        """A label per column, ``"field=value"``, e.g. ``"occupation=student"``, ``"genres=Drama"``."""
        return [f"{block.name}={label}" for block in self.blocks for label in block.labels]

    @property
    def groups(self) -> np.ndarray:
        """The block index of every column (``n_features`` ints), e.g. for per-block regularisation."""
        return np.repeat(np.arange(len(self.blocks)), [block.size for block in self.blocks])

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def block(self, name: str) -> Block:
        for block in self.blocks:
            if block.name == name:
                return block
        raise KeyError(f"no block {name!r} in this feature space; blocks: {list(self.fields)}")

    def slice(self, name: str) -> slice:
        """Columns of block ``name``: ``X[:, space.slice("genres")]``."""
        return self.block(name).slice()

    def column(self, name: str, label) -> int:
        """Column of value ``label`` in block ``name``, e.g. ``column("occupation", "student")``."""
        block = self.block(name)
        label = str(label)
        if label not in block.labels:
            raise KeyError(f"{label!r} is not a value of block {name!r}; values: {list(block.labels)}")
        return block.start + block.labels.index(label)

    def __repr__(self) -> str:
        parts = ", ".join(f"{b.name}[{b.size}]" for b in self.blocks)
        return f"FeatureSpace({parts}; {self.n_features} features, genres {self.genre_weights})"


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------
def _make_space(dataset: Dataset, fields, genre_weights: str) -> FeatureSpace:
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; choose from {FIELDS}")
    if genre_weights not in ("normalized", "binary"):
        raise ValueError("genre_weights must be 'normalized' or 'binary'")
    users, items = dataset.users, dataset.items
    missing = [f for f in ("age", "gender", "occupation") if f in fields and f not in users.columns]
    if missing:
        raise ValueError(f"dataset {dataset.name!r} has no user column(s) {missing}; leave these fields out")
    present = set(g for gs in items["genres"] for g in gs)
    categories = {
        "gender": tuple(sorted(map(str, users["gender"].unique()))) if "gender" in users else (),
        "occupation": tuple(sorted(map(str, users["occupation"].unique()))) if "occupation" in users else (),
        "genres": tuple(g for g in GENRES if g in present),
    }
    labels = {
        "user": tuple(str(u) for u in dataset.user_ids),
        "item": tuple(str(i) for i in dataset.item_ids),
        "age": AGE_LABELS,
        "gender": categories["gender"],
        "occupation": categories["occupation"],
        "genres": categories["genres"],
        "year": YEAR_LABELS,
    }
    blocks, start = [], 0
    for name in FIELDS:  # column order is fixed, whatever order the fields were given in
        if name in fields:
            blocks.append(Block(name, start, labels[name]))
            start += len(labels[name])
    return FeatureSpace(tuple(blocks), categories, genre_weights, dataset.n_users, dataset.n_items)


def _one_hot(rows: np.ndarray, columns: np.ndarray, n_rows: int, n_features: int,
             values: np.ndarray | None = None) -> sp.csr_matrix:
    values = np.ones(len(rows), dtype=np.float32) if values is None else values.astype(np.float32)
    return sp.csr_matrix((values, (rows, columns)), shape=(n_rows, n_features), dtype=np.float32)


def _category_codes(space: FeatureSpace, name: str, values) -> np.ndarray:
    vocabulary = space.categories[name]
    values = np.asarray([str(v) for v in np.atleast_1d(values)])
    codes = pd.Index(vocabulary).get_indexer(values)
    if (codes < 0).any():
        bad = sorted(set(values[codes < 0]))
        raise ValueError(f"unknown {name} value(s) {bad}; known values: {list(vocabulary)}")
    return codes


def user_rows(space: FeatureSpace, age, gender, occupation, user=None) -> sp.csr_matrix:
    """The user-side part of feature rows, one row per user described by demographics.

    ``age`` (years), ``gender`` and ``occupation`` are scalars or equal-length arrays; ``user`` holds
    user *indices* for the ``user`` one-hot block, or ``None`` for brand-new users (cold start: no
    one-hot column is set, the model only knows their demographics).
    """
    age, gender, occupation = (np.atleast_1d(np.asarray(v)) for v in (age, gender, occupation))
    n = max(len(age), len(gender), len(occupation), 0 if user is None else len(np.atleast_1d(user)))
    age, gender, occupation = (np.broadcast_to(v, (n,)) for v in (age, gender, occupation))
    columns = []  # one column index per row for each one-hot block present
    if "user" in space and user is not None:
        user = np.broadcast_to(np.atleast_1d(np.asarray(user, dtype=np.int64)), (n,))
        if ((user < 0) | (user >= space.n_users)).any():
            raise IndexError(f"user indices must lie in [0, {space.n_users})")
        columns.append(space.block("user").start + user)
    if "age" in space:
        columns.append(space.block("age").start + age_bucket(age))
    for name, values in (("gender", gender), ("occupation", occupation)):
        if name in space:
            columns.append(space.block(name).start + _category_codes(space, name, values))
    if not columns:
        return sp.csr_matrix((n, space.n_features), dtype=np.float32)
    return _one_hot(np.tile(np.arange(n), len(columns)), np.concatenate(columns), n, space.n_features)


def user_row(space: FeatureSpace, age, gender, occupation) -> sp.csr_matrix:
    """The ``1 x n_features`` row of a brand-new user known only by ``age``, ``gender``, ``occupation``."""
    return user_rows(space, [age], [gender], [occupation], user=None)


def _dataset_user_rows(space: FeatureSpace, dataset: Dataset) -> sp.csr_matrix:
    """The user-side rows of every user of ``dataset`` (with their one-hot), in index order."""
    users = dataset.users

    def column(name):  # a block left out of the space needs no values
        return users[name].to_numpy() if name in space else np.zeros(len(users))

    return user_rows(space, column("age"), column("gender"), column("occupation"), user=np.arange(len(users)))


def item_rows(space: FeatureSpace, dataset: Dataset, items=None) -> sp.csr_matrix:
    """The item-side part of feature rows (item one-hot, genres, year bucket), one row per item index
    in ``items`` (default: every item, in index order)."""
    items = np.arange(dataset.n_items) if items is None else np.atleast_1d(np.asarray(items, dtype=np.int64))
    n = len(items)
    rows, columns, values = [], [], []
    if "item" in space:
        rows.append(np.arange(n))
        columns.append(space.block("item").start + items)
        values.append(np.ones(n))
    if "genres" in space:
        genre_lists = dataset.items["genres"].to_numpy()[items]
        counts = np.array([len(g) for g in genre_lists], dtype=np.int64)
        codes = (_category_codes(space, "genres", np.concatenate(genre_lists)) if counts.sum()
                 else np.zeros(0, dtype=np.int64))
        weight = 1.0 / np.maximum(counts, 1) if space.genre_weights == "normalized" else np.ones(n)
        rows.append(np.repeat(np.arange(n), counts))
        columns.append(space.block("genres").start + codes)
        values.append(np.repeat(weight, counts))
    if "year" in space:
        rows.append(np.arange(n))
        columns.append(space.block("year").start + year_bucket(dataset.items["year"].to_numpy()[items]))
        values.append(np.ones(n))
    if not rows:
        return sp.csr_matrix((n, space.n_features), dtype=np.float32)
    return _one_hot(np.concatenate(rows), np.concatenate(columns), n, space.n_features, np.concatenate(values))


def build_features(dataset: Dataset, interactions: pd.DataFrame | None = None, fields=FIELDS,
                   genre_weights: str = "normalized") -> tuple[sp.csr_matrix, FeatureSpace]:
    """Feature rows of ``interactions`` (default: every rating) and the layout of their columns.

    Parameters
    ----------
    dataset : Dataset
        Provides ``users`` (age, gender, occupation) and ``items`` (genres, year).
    interactions : DataFrame with ``user_idx`` and ``item_idx`` columns, e.g. a split of ``ds.ratings``.
    fields : the blocks to include, any of :data:`FIELDS`; ``("user", "item")`` gives plain
        matrix factorization (an FM on two one-hot blocks *is* biased MF).
    genre_weights : ``"normalized"`` (a film's genres sum to 1, default) or ``"binary"``.

    Returns
    -------
    X : csr_matrix, float32, shape ``(len(interactions), space.n_features)``
        Row ``r`` is ``U[user_idx[r]] + I[item_idx[r]]``: user blocks plus item blocks.
    space : FeatureSpace
        Where each block lives; pass it to :func:`cold_start_rows`.
    """
    space = _make_space(dataset, tuple(fields), genre_weights)
    df = dataset.ratings if interactions is None else interactions
    users = df["user_idx"].to_numpy(dtype=np.int64)
    items = df["item_idx"].to_numpy(dtype=np.int64)
    user_part = _dataset_user_rows(space, dataset)
    item_part = item_rows(space, dataset)
    X = (user_part[users] + item_part[items]).tocsr()
    X.sort_indices()
    return X, space


def cold_start_rows(space: FeatureSpace, dataset: Dataset, age, gender, occupation,
                    items=None) -> sp.csr_matrix:
    """Feature rows pairing a brand-new user (only ``age``, ``gender``, ``occupation`` known: no user
    one-hot) with each of ``items`` (default: every film). ``model.predict`` on them scores every film
    for that user, so ``np.argsort(-scores)[:10]`` is a cold-start top-10."""
    new_user = user_row(space, age, gender, occupation)
    item_part = item_rows(space, dataset, items)
    X = (item_part + sp.csr_matrix(np.ones((item_part.shape[0], 1), dtype=np.float32)) @ new_user).tocsr()
    X.sort_indices()
    return X
