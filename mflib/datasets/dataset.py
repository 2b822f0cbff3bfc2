"""The :class:`Dataset` object every loader returns, and the fixed genre vocabulary :data:`GENRES`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["Dataset", "GENRES"]

# Genre order of ML-100K's u.item flag columns; all variants' genres are reported in this order.
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western", "IMAX", "(no genres listed)",
)
_GENRE_RANK = {g: i for i, g in enumerate(GENRES)}


# --------------------------------------------------------------------------------------------
# The dataset object
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A MovieLens variant with contiguous indices.

    Attributes
    ----------
    name : str
        ``"100k"``, ``"1m"``, ``"20m"``, ``"latest-small"`` or ``"latest"``.
    ratings : DataFrame
        ``user_id, item_id`` (raw MovieLens ids, int32), ``rating`` (float32: whole stars for 100k and
        1m, half stars from 0.5 for the csv variants), ``timestamp`` (int64, seconds since 1970) and
        ``user_idx, item_idx`` (int32): contiguous 0-based indices, the row and column of the matrices
        below. 28 bytes per rating.
    items : DataFrame
        ``item_id, title, year, genres`` (genres is a list of str), indexed by ``item_idx``.
        ``title`` keeps MovieLens' form, e.g. ``"Star Wars (1977)"``; ``year`` is nullable.
    users : DataFrame
        ``user_id`` plus, for 100k and 1m, ``age, gender, occupation, zip_code``, indexed by
        ``user_idx``. ML-100K gives the age in years; ML-1M gives its age code, the lower bound of the
        bucket (1 = under 18, 18, 25, 35, 45, 50, 56 = 56+), and its occupation code is replaced by
        GroupLens' label (:data:`mflib.datasets.ML1M_OCCUPATIONS`). The csv variants have no demographics.
    user_ids, item_ids : ndarray
        index -> raw id. ``user_index`` / ``item_index`` (dict) map raw id -> index.
    source : str
        Where the files came from: ``"cache"``, ``"grouplens"`` or ``"mirror:recbole==1.2.1"``.
    """

    name: str
    ratings: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    source: str = "unknown"
    user_ids: np.ndarray = field(init=False, repr=False)
    item_ids: np.ndarray = field(init=False, repr=False)
    user_index: dict = field(init=False, repr=False)
    item_index: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_ids = self.users["user_id"].to_numpy()
        self.item_ids = self.items["item_id"].to_numpy()
        self.user_index = {int(u): i for i, u in enumerate(self.user_ids)}
        self.item_index = {int(m): i for i, m in enumerate(self.item_ids)}

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, ratings={len(self.ratings):,}, users={self.n_users:,}, "
                f"items={self.n_items:,}, source={self.source!r})")

    # ---- matrices ----------------------------------------------------------------------------
    def to_csr(self, interactions: pd.DataFrame | None = None, values: str | float = "rating",
               dtype=np.float32) -> sp.csr_matrix:
        """users x items CSR of ``interactions`` (default: all ratings).

        ``values`` names a column of ``interactions`` or is a constant (``1.0`` for implicit data).
        The shape is always ``(n_users, n_items)`` so indices agree across splits.
        """
        df = self.ratings if interactions is None else interactions
        data = (np.full(len(df), values, dtype=dtype) if not isinstance(values, str)
                else df[values].to_numpy(dtype=dtype))
        matrix = sp.csr_matrix((data, (df["user_idx"].to_numpy(), df["item_idx"].to_numpy())),
                               shape=(self.n_users, self.n_items), dtype=dtype)
        matrix.sum_duplicates()
        matrix.sort_indices()
        return matrix

    def explicit(self) -> sp.csr_matrix:
        """users x items CSR whose values are the ratings."""
        return self.to_csr(self.ratings, "rating")

    def positives(self, threshold: float = 4.0) -> pd.DataFrame:
        """The ratings counted as implicit positives: ``rating >= threshold``."""
        return self.ratings[self.ratings["rating"] >= threshold]

    def implicit(self, threshold: float = 4.0) -> sp.csr_matrix:
        """users x items CSR with 1.0 where ``rating >= threshold`` (4 by default, as in the classic notebooks)."""
        return self.to_csr(self.positives(threshold), 1.0)

    def genre_matrix(self) -> sp.csr_matrix:
        """items x genres binary CSR (columns in :data:`GENRES` order), for genre-overlap metrics."""
        rows = np.repeat(np.arange(self.n_items), self.items["genres"].map(len).to_numpy())
        cols = np.array([_GENRE_RANK[g] for gs in self.items["genres"] for g in gs], dtype=np.int64)
        return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                             shape=(self.n_items, len(GENRES)))

    # ---- titles ------------------------------------------------------------------------------
    def title(self, item_idx) -> str | list[str]:
        """Title(s) of item index(es)."""
        titles = self.items["title"].to_numpy()
        if np.ndim(item_idx) == 0:
            return str(titles[int(item_idx)])
        return [str(t) for t in titles[np.asarray(item_idx, dtype=np.int64)]]

    def find_item(self, query: str) -> int:
        """Index of the item whose title matches ``query``: exact title first, then the most-rated
        title containing it (case-insensitive). ``find_item("Star Wars")`` -> Star Wars (1977)."""
        titles = self.items["title"]
        exact = np.flatnonzero(titles.str.lower().to_numpy() == query.lower())
        candidates = exact if len(exact) else np.flatnonzero(
            titles.str.contains(query, case=False, regex=False).to_numpy())
        if len(candidates) == 0:
            raise KeyError(f"no item title contains {query!r}; try a shorter part of the title")
        counts = np.bincount(self.ratings["item_idx"].to_numpy(), minlength=self.n_items)
        return int(candidates[np.argmax(counts[candidates])])
