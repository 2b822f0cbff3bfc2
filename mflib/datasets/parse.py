"""Parsers: a GroupLens zip (or the recbole wheel) in, a :class:`Dataset` out. No network, no cache.

The formats, as GroupLens ships them (each zip holds one top-level folder named like the zip):

=================  =========================================================================================
``ml-100k/``       ``u.data`` tab-separated ``user item rating timestamp``; ``u.item`` ``|``-separated,
                   Latin-1, 19 genre flags; ``u.user`` ``id|age|gender|occupation|zip``
``ml-1m/``         ``::``-separated, Latin-1, no header: ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp``,
                   ``movies.dat`` ``MovieID::Title::Genres`` (genres ``|``-separated),
                   ``users.dat`` ``UserID::Gender::Age::Occupation::Zip-code`` (age and occupation are codes)
``ml-20m/``,       UTF-8 csv with a header: ``ratings.csv`` ``userId,movieId,rating,timestamp`` (half stars),
``ml-latest/``,    ``movies.csv`` ``movieId,title,genres`` (csv quoting: ``"American President, The (1995)"``;
``ml-latest-       titles ``Title (Year)``, some without a year; genres ``|``-separated or
small/``           ``(no genres listed)``); no user demographics
=================  =========================================================================================

Memory (the large csv variants). The ratings table keeps 28 bytes per rating: ``user_id``, ``item_id``
(int32), ``rating`` (float32), ``timestamp`` (int64) and the indices ``user_idx``, ``item_idx`` (int32).
``ratings.csv`` is read by pandas' C engine straight into those dtypes (no int64/float64 frame in
between); the engine converts the file in chunks and joins them column by column, so at most one
column — the 8-byte timestamps — briefly exists twice, and the indices are computed as int32 by one
gather each. For ``n`` ratings: resident ≈ 28·n bytes, peak ≲ (28 + 8)·n = 36·n bytes, plus the movies
table (a few hundred bytes per film).
"""
from __future__ import annotations

import io
import itertools
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import _GENRE_RANK, GENRES, Dataset
from .fetch import MIRROR_MEMBERS, MIRROR_WHEEL, VARIANTS, CorruptDataError

__all__ = ["parse_grouplens_100k", "parse_grouplens_1m", "parse_grouplens_csv", "parse_mirror_100k",
           "parse_archive", "parse_mirror", "ML1M_AGES", "ML1M_OCCUPATIONS", "RATING_DTYPES"]

#: dtypes of the ratings table's raw columns, in order.
RATING_DTYPES = {"user_id": np.int32, "item_id": np.int32, "rating": np.float32, "timestamp": np.int64}
#: ML-1M's age codes (README): the lower bound of each bucket, 1 standing for "under 18".
ML1M_AGES = (1, 18, 25, 35, 45, 50, 56)
#: ML-1M's occupation codes 0..20 (README), as labels.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)
# Later MovieLens variants spell one genre differently.
_GENRE_ALIASES = {"Children": "Children's"}
_YEAR = re.compile(r"\((\d{4})\)(?!.*\(\d{4}\))")


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------
def _year_from_title(titles: pd.Series) -> pd.Series:
    """The last "(YYYY)" in each title ("... (1995) (V)" -> 1995); <NA> where there is none."""
    return titles.str.extract(_YEAR, expand=False).astype("Int64")


def _sorted_genres(names) -> list[str]:
    names = [_GENRE_ALIASES.get(g, g) for g in names if g]
    return sorted(set(names), key=lambda g: _GENRE_RANK.get(g, len(GENRES)))


def _movies_frame(movies: pd.DataFrame, where: str) -> pd.DataFrame:
    """``item_id, title, year, genres`` from ``item_id, title, genres`` (genres ``|``-separated)."""
    titles = movies["title"].astype(str).str.strip()
    genres = [_sorted_genres(str(g).split("|")) for g in movies["genres"]]
    unknown = set(itertools.chain.from_iterable(genres)) - set(GENRES)
    if unknown:
        raise CorruptDataError(f"{where}: unknown genre(s) {sorted(unknown)}; the loader knows {GENRES}. "
                               "If GroupLens added a genre, add it to mflib.datasets.GENRES.")
    return pd.DataFrame({"item_id": movies["item_id"].to_numpy(dtype=np.int64), "title": titles,
                         "year": _year_from_title(titles), "genres": genres})


def _unique_ids(values: np.ndarray) -> np.ndarray:
    """Sorted distinct ids (int64): one counting pass for small non-negative ids, a sort otherwise."""
    if len(values) and values.min() >= 0 and values.max() < max(4 * len(values), 1 << 20):
        return np.flatnonzero(np.bincount(values))
    return np.unique(values).astype(np.int64)


def _positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in the sorted distinct ``keys`` as int32; -1 where it is no key.

    MovieLens ids are small non-negative integers, so a lookup table ``table[id] = position`` (one int32
    per possible id) answers every value in one gather; otherwise a binary search."""
    if len(keys) == 0:
        return np.full(len(values), -1, dtype=np.int32)
    if len(values) == 0:
        return np.zeros(0, dtype=np.int32)
    low, high = min(keys[0], values.min()), max(keys[-1], values.max())
    if low >= 0 and high < max(16 * len(keys), 1 << 20):
        table = np.full(int(high) + 1, -1, dtype=np.int32)
        table[keys] = np.arange(len(keys), dtype=np.int32)
        return table[values]
    found = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return np.where(keys[found] == values, found, -1).astype(np.int32)


def _finish(name: str, ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame | None,
            source: str) -> Dataset:
    """Common tail of every parser: dtypes, sorted users and items, contiguous indices, sanity checks.

    Copies nothing when the parser already produced :data:`RATING_DTYPES` in order."""
    if list(ratings.columns) != list(RATING_DTYPES):
        ratings = ratings[list(RATING_DTYPES)]
    changes = {column: dtype for column, dtype in RATING_DTYPES.items() if ratings[column].dtype != dtype}
    if changes:
        ratings = ratings.astype(changes)
    index = ratings.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        ratings = ratings.reset_index(drop=True)
    if users is None or len(users) == 0:
        users = pd.DataFrame({"user_id": _unique_ids(ratings["user_id"].to_numpy())})
    users = users.sort_values("user_id", kind="stable").reset_index(drop=True)
    items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
    for table, what in ((users, "user"), (items, "item")):
        duplicated = table[f"{what}_id"].duplicated()
        if duplicated.any():
            raise CorruptDataError(f"MovieLens {name}: {what} id {table[f'{what}_id'][duplicated].iloc[0]} is "
                                   f"listed twice in the {what} file; the archive is damaged.")
    # one text dtype whatever the source and pandas version (pandas 3 infers its string dtype)
    items["title"] = items["title"].astype(str)
    for column in ("gender", "occupation", "zip_code"):
        if column in users:
            users[column] = users[column].astype(str)
    users.index.name = "user_idx"
    items.index.name = "item_idx"
    for what, keys in (("user", users["user_id"]), ("item", items["item_id"])):
        positions = _positions(keys.to_numpy(dtype=np.int64), ratings[f"{what}_id"].to_numpy())
        if (positions < 0).any():
            missing = ratings[f"{what}_id"].to_numpy()[positions < 0][0]
            raise CorruptDataError(f"MovieLens {name}: ratings reference {what} {missing}, missing from the "
                                   f"{what} file; the archive is damaged. Delete it and run again.")
        ratings[f"{what}_idx"] = positions
    return Dataset(name=name, ratings=ratings, items=items, users=users, source=source)


# --------------------------------------------------------------------------------------------
# ML-100K: the GroupLens zip and the recbole mirror
# --------------------------------------------------------------------------------------------
def parse_grouplens_100k(archive: zipfile.ZipFile, source: str = "grouplens") -> Dataset:
    """Parse the official ``ml-100k.zip`` (u.data, u.item, u.user; u.item is Latin-1)."""
    root = "ml-100k/"
    ratings = pd.read_csv(archive.open(root + "u.data"), sep="\t", header=None,
                          names=list(RATING_DTYPES), dtype=RATING_DTYPES, engine="c")
    flags = list(GENRES[:19])
    items = pd.read_csv(archive.open(root + "u.item"), sep="|", header=None, encoding="latin-1",
                        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *flags],
                        engine="c", quoting=3)
    titles = items["title"].fillna("unknown").str.strip()
    genre_flags = items[flags].to_numpy(dtype=bool)
    items = pd.DataFrame({
        "item_id": items["item_id"].astype(np.int64),
        "title": titles,
        "year": _year_from_title(titles),
        "genres": [_sorted_genres(np.array(flags)[row]) for row in genre_flags],
    })
    users = pd.read_csv(archive.open(root + "u.user"), sep="|", header=None, engine="c",
                        names=["user_id", "age", "gender", "occupation", "zip_code"], dtype={"zip_code": str})
    return _finish("100k", ratings, items, users, source)


def parse_mirror_100k(wheel: zipfile.ZipFile, source: str = f"mirror:{MIRROR_WHEEL}") -> Dataset:
    """Parse the ML-100K copy inside the recbole wheel (atomic files, UTF-8, year split from title)."""
    def read(member, **kw):
        return pd.read_csv(wheel.open(MIRROR_MEMBERS[member]), sep="\t", engine="c", quoting=3, **kw)

    ratings = read("inter")
    ratings.columns = list(RATING_DTYPES)
    raw_items = read("item", dtype=str, keep_default_na=False)
    raw_items.columns = ["item_id", "name", "year", "genres"]
    # recbole strips " (YYYY)" from the title into release_year; GroupLens keeps it in the title.
    # The last "(...)" of the GroupLens title went to release_year, even when it is "(V)".
    # Item 267 is "unknown" in GroupLens and "unkonwn" (sic) in recbole.
    name = raw_items["name"].replace({"unkonwn": "unknown"})
    suffix = raw_items["year"].replace({"unkonwn": ""})
    title = pd.Series(np.where(suffix == "", name, name + " (" + suffix + ")"), dtype=object)
    items = pd.DataFrame({
        "item_id": raw_items["item_id"].astype(np.int64),
        "title": title,
        "year": _year_from_title(title),
        "genres": [_sorted_genres(g.split(" ")) for g in raw_items["genres"]],
    })
    users = read("user", dtype={"zip_code:token": str})
    users.columns = ["user_id", "age", "gender", "occupation", "zip_code"]
    return _finish("100k", ratings, items, users, source)


# --------------------------------------------------------------------------------------------
# ML-1M: "::"-separated, Latin-1
# --------------------------------------------------------------------------------------------
def _read_double_colon(handle, names, dtypes=None) -> pd.DataFrame:
    """Read a ``::``-separated Latin-1 file with the fast C parser (not pandas' python engine):
    ``::`` is replaced by a byte that never occurs in MovieLens text."""
    text = handle.read().decode("latin-1").replace("::", "\x1f")
    return pd.read_csv(io.StringIO(text), sep="\x1f", header=None, names=names, engine="c",
                       quoting=3, dtype=dtypes, na_filter=False)


def parse_grouplens_1m(archive: zipfile.ZipFile, source: str = "grouplens") -> Dataset:
    """Parse the official ``ml-1m.zip``: ratings.dat, movies.dat and users.dat with demographics.

    ``users``: ``age`` is ML-1M's age code (:data:`ML1M_AGES`), ``occupation`` the label of its
    occupation code (:data:`ML1M_OCCUPATIONS`), ``zip_code`` text as given (some carry a ``-NNNN``)."""
    root = "ml-1m/"
    ratings = _read_double_colon(archive.open(root + "ratings.dat"), list(RATING_DTYPES), RATING_DTYPES)
    movies = _read_double_colon(archive.open(root + "movies.dat"), ["item_id", "title", "genres"],
                                {"item_id": np.int64, "title": str, "genres": str})
    users = _read_double_colon(archive.open(root + "users.dat"),
                               ["user_id", "gender", "age", "occupation", "zip_code"],
                               {"user_id": np.int64, "gender": str, "age": np.int64, "occupation": np.int64,
                                "zip_code": str})
    bad_age = ~users["age"].isin(ML1M_AGES)
    bad_occupation = ~users["occupation"].between(0, len(ML1M_OCCUPATIONS) - 1)
    bad_gender = ~users["gender"].isin(["F", "M"])
    if (bad_age | bad_occupation | bad_gender).any():
        row = users[bad_age | bad_occupation | bad_gender].iloc[0]
        raise CorruptDataError(f"ml-1m/users.dat: user {row['user_id']} has gender {row['gender']!r}, age code "
                               f"{row['age']}, occupation code {row['occupation']}; ML-1M's README allows "
                               f"F/M, ages {ML1M_AGES} and occupations 0-{len(ML1M_OCCUPATIONS) - 1}.")
    users["occupation"] = np.asarray(ML1M_OCCUPATIONS, dtype=object)[users["occupation"].to_numpy()]
    users = users[["user_id", "age", "gender", "occupation", "zip_code"]]
    return _finish("1m", ratings, _movies_frame(movies, "ml-1m/movies.dat"), users, source)


# --------------------------------------------------------------------------------------------
# ML-20M, ml-latest-small, ml-latest: csv with a header
# --------------------------------------------------------------------------------------------
_CSV_HEADERS = {"ratings.csv": "userId,movieId,rating,timestamp", "movies.csv": "movieId,title,genres"}


def _read_grouplens_csv(archive: zipfile.ZipFile, member: str, names: list[str], dtypes: dict,
                        **kw) -> pd.DataFrame:
    """Check the header line of ``member``, then read the rest with the C engine into ``dtypes``."""
    expected = _CSV_HEADERS[member.rsplit("/", 1)[-1]]
    with archive.open(member) as handle:
        header = handle.readline().decode("utf-8").rstrip("\r\n")
        if header != expected:
            raise CorruptDataError(f"{member} starts with {header[:80]!r}, expected the header {expected!r}: "
                                   "not the GroupLens layout this loader reads.")
        return pd.read_csv(handle, header=None, names=names, dtype=dtypes, engine="c", encoding="utf-8",
                           na_filter=False, **kw)


def parse_grouplens_csv(archive: zipfile.ZipFile, name: str, source: str = "grouplens") -> Dataset:
    """ml-20m, ml-latest-small and ml-latest: ``ratings.csv`` and ``movies.csv``; no demographics.

    ``ratings.csv`` is read straight into :data:`RATING_DTYPES` (see the module docstring for the memory
    this takes: resident ≈ 28·n bytes, peak ≲ 36·n bytes for n ratings)."""
    root = VARIANTS[name].folder + "/"
    ratings = _read_grouplens_csv(archive, root + "ratings.csv", list(RATING_DTYPES), RATING_DTYPES)
    movies = _read_grouplens_csv(archive, root + "movies.csv", ["item_id", "title", "genres"],
                                 {"item_id": np.int64, "title": str, "genres": str})
    return _finish(name, ratings, _movies_frame(movies, root + "movies.csv"), None, source)


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------
_PARSE_ERRORS = (KeyError, ValueError, UnicodeDecodeError, pd.errors.ParserError, zipfile.BadZipFile)


def parse_archive(variant: str, path: Path, source: str) -> Dataset:
    """Parse the verified GroupLens zip of ``variant`` at ``path``."""
    try:
        with zipfile.ZipFile(path) as archive:
            if variant == "100k":
                return parse_grouplens_100k(archive, source)
            if variant == "1m":
                return parse_grouplens_1m(archive, source)
            return parse_grouplens_csv(archive, variant, source)
    except _PARSE_ERRORS as error:
        raise CorruptDataError(f"{path} passed its check but could not be parsed as MovieLens {variant} "
                               f"({type(error).__name__}: {error}). Delete it (rm {path}) and run again; if "
                               "a fresh copy fails the same way, GroupLens changed the format.") from error


def parse_mirror(wheel_path: Path, source: str) -> Dataset:
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            return parse_mirror_100k(wheel, source)
    except _PARSE_ERRORS as error:
        raise CorruptDataError(f"{wheel_path} could not be parsed ({type(error).__name__}: {error}). "
                               f"Delete it and run again: rm {wheel_path}") from error
