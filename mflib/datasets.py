"""MovieLens loading: fetch (cache -> GroupLens -> offline mirror) -> verify -> parse -> :class:`Dataset`.

Usage::

    from mflib.datasets import load_movielens
    ds = load_movielens("100k")          # 100,000 ratings, 943 users, 1,682 items
    X = ds.implicit()                    # users x items CSR of positives (rating >= 4)
    R = ds.explicit()                    # users x items CSR of ratings
    ds.title(ds.find_item("Star Wars"))  # 'Star Wars (1977)'

Where the files come from
-------------------------
1. The cache, ``data/`` at the repository root (or ``$MFLIB_DATA`` or ``data_home``).
2. The official GroupLens zip, checked against the md5 GroupLens publishes.
3. For ``100k`` only, when GroupLens cannot be reached: the copy of ML-100K that ships inside the
   ``recbole==1.2.1`` wheel on the Python package index (fetched with ``pip download``, sha256 verified).
   Both sources give identical DataFrames (tests check the GroupLens parser on a fixture zip in the
   official layout).

MovieLens files are never committed: the GroupLens licence forbids redistribution.
Every download goes to a temporary file that is verified and then renamed, so an interrupted
download never leaves a file that later looks valid. A cached file whose checksum does not match
raises :class:`CorruptDataError` naming the file and telling you to delete it.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "Dataset",
    "load_movielens",
    "CorruptDataError",
    "DataUnavailableError",
    "GENRES",
    "VARIANTS",
]

# Genre order of ML-100K's u.item flag columns; all variants' genres are reported in this order.
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western", "IMAX", "(no genres listed)",
)
_GENRE_RANK = {g: i for i, g in enumerate(GENRES)}
# Later MovieLens variants spell one genre differently.
_GENRE_ALIASES = {"Children": "Children's"}


@dataclass(frozen=True)
class _Source:
    url: str
    checksum: str | None  # "md5:..." or "sha256:..." as GroupLens publishes it; None = zip integrity only
    folder: str


GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
VARIANTS: dict[str, _Source] = {
    # GroupLens publishes an .md5 file beside each stable archive.
    "100k": _Source(GROUPLENS + "ml-100k.zip", "md5:0e33842e24a9c977be4e0107933c0723", "ml-100k"),
    "1m": _Source(GROUPLENS + "ml-1m.zip", "md5:c4d9eecfca2ab87c1945afe126590906", "ml-1m"),
    "20m": _Source(GROUPLENS + "ml-20m.zip", None, "ml-20m"),
    # ml-latest-small changes when GroupLens refreshes it; its checksum cannot be pinned.
    "latest-small": _Source(GROUPLENS + "ml-latest-small.zip", None, "ml-latest-small"),
}

MIRROR_WHEEL = "recbole==1.2.1"
MIRROR_WHEEL_SHA256 = "sha256:9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MIRROR_MEMBERS = {
    "inter": "recbole/dataset_example/ml-100k/ml-100k.inter",
    "item": "recbole/dataset_example/ml-100k/ml-100k.item",
    "user": "recbole/dataset_example/ml-100k/ml-100k.user",
}


class CorruptDataError(RuntimeError):
    """A cached or downloaded MovieLens file failed its checksum or could not be parsed."""


class DataUnavailableError(RuntimeError):
    """No source (cache, GroupLens, offline mirror) could provide the requested variant."""


# --------------------------------------------------------------------------------------------
# The dataset object
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """A MovieLens variant with contiguous indices.

    Attributes
    ----------
    name : str
        ``"100k"``, ``"1m"``, ``"20m"`` or ``"latest-small"``.
    ratings : DataFrame
        ``user_id, item_id, rating, timestamp`` (raw MovieLens ids) plus ``user_idx, item_idx``:
        contiguous 0-based indices, the row and column of the matrices below.
    items : DataFrame
        ``item_id, title, year, genres`` (genres is a list of str), indexed by ``item_idx``.
        ``title`` keeps MovieLens' form, e.g. ``"Star Wars (1977)"``; ``year`` is nullable.
    users : DataFrame
        ``user_id`` plus ``age, gender, occupation, zip_code`` where the variant has them,
        indexed by ``user_idx``.
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


# --------------------------------------------------------------------------------------------
# Cache, download, verification
# --------------------------------------------------------------------------------------------
def data_home(data_home: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``data_home``, else ``$MFLIB_DATA``, else ``data/`` at the repository root."""
    if data_home is None:
        data_home = os.environ.get("MFLIB_DATA") or Path(__file__).resolve().parent.parent / "data"
    path = Path(data_home).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, checksum: str | None, what: str) -> None:
    """Raise CorruptDataError (naming the file and the fix) unless ``path`` is a good archive.

    ``checksum`` is ``"md5:<hex>"`` or ``"sha256:<hex>"``; without one, the zip's CRCs are checked.
    """
    fix = f"Delete it and run again to fetch {what} afresh: rm {path}"
    if checksum is not None:
        algorithm, expected = checksum.split(":", 1)
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise CorruptDataError(f"{path} is corrupt or truncated ({algorithm} {actual[:12]}..., "
                                   f"expected {expected[:12]}...). {fix}")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        raise CorruptDataError(f"{path} is not a valid zip archive ({error}). {fix}") from error
    if bad is not None:
        raise CorruptDataError(f"{path} is corrupt: member {bad} fails its CRC. {fix}")


def _download_grouplens(source: _Source, target: Path, timeout: float = 20) -> None:
    """Download with pooch (progress bar, atomic write, checksum) into ``target``."""
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=True, timeout=timeout)
    pooch.retrieve(source.url, known_hash=source.checksum, fname=target.name, path=target.parent,
                   downloader=downloader)


def _fetch_mirror_wheel(home: Path) -> Path:
    """The recbole wheel that carries ML-100K, via ``pip download`` (uses the user's pip config)."""
    wheel = home / "recbole-1.2.1-py3-none-any.whl"
    if wheel.exists():
        _verify(wheel, MIRROR_WHEEL_SHA256, f"the offline mirror ({MIRROR_WHEEL})")
        return wheel
    with tempfile.TemporaryDirectory(dir=home, prefix=".download-") as tmp:
        print(f"GroupLens unreachable; fetching ML-100K from the package index ({MIRROR_WHEEL}, 2 MB)...",
              file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", "-d", tmp, MIRROR_WHEEL]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        found = list(Path(tmp).glob("recbole-1.2.1-*.whl"))
        if result.returncode != 0 or not found:
            raise DataUnavailableError(
                "Could not fetch ML-100K: GroupLens is unreachable and `pip download recbole==1.2.1` "
                f"failed:\n{result.stderr.strip()[-2000:]}\nCheck your network or proxy, or copy "
                f"ml-100k.zip from GroupLens into {home} by hand.")
        _verify(found[0], MIRROR_WHEEL_SHA256, f"the offline mirror ({MIRROR_WHEEL})")
        os.replace(found[0], wheel)  # atomic: the cache only ever holds a verified wheel
    return wheel


def _cached_zip(name: str, home: Path) -> Path:
    return home / Path(VARIANTS[name].url).name


# --------------------------------------------------------------------------------------------
# Parsers (pure: bytes in, DataFrames out)
# --------------------------------------------------------------------------------------------
_YEAR = re.compile(r"\((\d{4})\)(?!.*\(\d{4}\))")


def _year_from_title(titles: pd.Series) -> pd.Series:
    """The last "(YYYY)" in each title ("... (1995) (V)" -> 1995); <NA> where there is none."""
    return titles.str.extract(_YEAR, expand=False).astype("Int64")


def _sorted_genres(names) -> list[str]:
    names = [_GENRE_ALIASES.get(g, g) for g in names if g]
    return sorted(set(names), key=lambda g: _GENRE_RANK.get(g, len(GENRES)))


def _finish(name: str, ratings: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
            source: str) -> Dataset:
    """Common tail of every parser: dtypes, contiguous indices, sanity checks."""
    ratings = ratings.astype({"user_id": np.int64, "item_id": np.int64, "rating": np.float32,
                              "timestamp": np.int64}).reset_index(drop=True)
    if users is None or len(users) == 0:
        users = pd.DataFrame({"user_id": np.unique(ratings["user_id"].to_numpy())})
    users = users.sort_values("user_id").reset_index(drop=True)
    items = items.sort_values("item_id").reset_index(drop=True)
    # one text dtype whatever the source and pandas version (pandas 3 infers its string dtype)
    items["title"] = items["title"].astype(str)
    for column in ("gender", "occupation", "zip_code"):
        if column in users:
            users[column] = users[column].astype(str)
    users.index.name = "user_idx"
    items.index.name = "item_idx"
    user_pos = pd.Index(users["user_id"])
    item_pos = pd.Index(items["item_id"])
    ratings["user_idx"] = user_pos.get_indexer(ratings["user_id"]).astype(np.int32)
    ratings["item_idx"] = item_pos.get_indexer(ratings["item_id"]).astype(np.int32)
    if (ratings["user_idx"] < 0).any() or (ratings["item_idx"] < 0).any():
        raise CorruptDataError(f"MovieLens {name}: ratings reference users or items missing from the "
                               "user/item files; the download is damaged. Delete the cached file and retry.")
    return Dataset(name=name, ratings=ratings, items=items, users=users, source=source)


def parse_grouplens_100k(archive: zipfile.ZipFile, source: str = "grouplens") -> Dataset:
    """Parse the official ``ml-100k.zip`` (u.data, u.item, u.user; u.item is Latin-1)."""
    root = "ml-100k/"
    ratings = pd.read_csv(archive.open(root + "u.data"), sep="\t", header=None,
                          names=["user_id", "item_id", "rating", "timestamp"], engine="c")
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
    ratings.columns = ["user_id", "item_id", "rating", "timestamp"]
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


def _read_double_colon(handle, names, dtypes=None) -> pd.DataFrame:
    """Read a ``::``-separated file with the fast C parser (not pandas' python engine):
    ``::`` is replaced by a byte that never occurs in MovieLens text."""
    text = handle.read().decode("latin-1").replace("::", "\x1f")
    return pd.read_csv(io.StringIO(text), sep="\x1f", header=None, names=names, engine="c",
                       quoting=3, dtype=dtypes)


def parse_grouplens_1m(archive: zipfile.ZipFile, source: str = "grouplens") -> Dataset:
    root = "ml-1m/"
    ratings = _read_double_colon(archive.open(root + "ratings.dat"),
                                 ["user_id", "item_id", "rating", "timestamp"])
    movies = _read_double_colon(archive.open(root + "movies.dat"), ["item_id", "title", "genres"])
    users = _read_double_colon(archive.open(root + "users.dat"),
                               ["user_id", "gender", "age", "occupation", "zip_code"], {"zip_code": str})
    return _finish("1m", ratings, _movies_frame(movies), users[["user_id", "age", "gender", "occupation",
                                                                  "zip_code"]], source)


def _movies_frame(movies: pd.DataFrame) -> pd.DataFrame:
    titles = movies["title"].astype(str).str.strip()
    return pd.DataFrame({
        "item_id": movies["item_id"].astype(np.int64),
        "title": titles,
        "year": _year_from_title(titles),
        "genres": [_sorted_genres(str(g).split("|")) for g in movies["genres"]],
    })


def parse_grouplens_csv(archive: zipfile.ZipFile, name: str, source: str = "grouplens") -> Dataset:
    """ml-20m and ml-latest-small: ratings.csv and movies.csv; no user demographics."""
    root = VARIANTS[name].folder + "/"
    ratings = pd.read_csv(archive.open(root + "ratings.csv"), engine="c")
    ratings.columns = ["user_id", "item_id", "rating", "timestamp"]
    movies = pd.read_csv(archive.open(root + "movies.csv"), engine="c")
    movies.columns = ["item_id", "title", "genres"]
    return _finish(name, ratings, _movies_frame(movies), None, source)


def _parse_zip(name: str, path: Path, source: str) -> Dataset:
    try:
        with zipfile.ZipFile(path) as archive:
            if name == "100k":
                return parse_grouplens_100k(archive, source)
            if name == "1m":
                return parse_grouplens_1m(archive, source)
            return parse_grouplens_csv(archive, name, source)
    except (zipfile.BadZipFile, KeyError, ValueError, pd.errors.ParserError) as error:
        raise CorruptDataError(f"{path} could not be parsed as MovieLens {name} ({error}). "
                               f"Delete it and run again: rm {path}") from error


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def load_movielens(variant: str = "100k", data_home: str | os.PathLike | None = None,
                   download: bool = True) -> Dataset:
    """Load a MovieLens variant: ``"100k"``, ``"1m"``, ``"20m"`` or ``"latest-small"``.

    Sources in order: the cache (``data/``, ``$MFLIB_DATA`` or ``data_home``); the official
    GroupLens zip (checksum verified); for ``"100k"`` the offline mirror in the recbole 1.2.1 wheel.
    Nothing is downloaded twice. A corrupt cached file raises :class:`CorruptDataError` that names it.
    """
    variant = str(variant).lower().removeprefix("ml-")
    if variant not in VARIANTS:
        raise ValueError(f"unknown MovieLens variant {variant!r}; choose one of {sorted(VARIANTS)}")
    source = VARIANTS[variant]
    home = globals()["data_home"](data_home)
    archive = _cached_zip(variant, home)

    if archive.exists():
        _verify(archive, source.checksum, f"MovieLens {variant}")
        return _parse_zip(variant, archive, "cache")

    mirror = home / "recbole-1.2.1-py3-none-any.whl"
    if variant == "100k" and mirror.exists():
        _verify(mirror, MIRROR_WHEEL_SHA256, f"the offline mirror ({MIRROR_WHEEL})")
        return _parse_mirror(mirror, "cache")

    if not download:
        raise DataUnavailableError(f"MovieLens {variant} is not cached in {home} and download=False.")

    grouplens_error: Exception | None = None
    if os.environ.get("MFLIB_OFFLINE") != "1":
        try:
            _download_grouplens(source, archive)
            return _parse_zip(variant, archive, "grouplens")
        except CorruptDataError:
            raise
        except Exception as error:  # network errors of every kind: fall through to the mirror
            grouplens_error = error
            archive.unlink(missing_ok=True)

    if variant == "100k":
        return _parse_mirror(_fetch_mirror_wheel(home), f"mirror:{MIRROR_WHEEL}")
    raise DataUnavailableError(
        f"Could not download MovieLens {variant} from GroupLens ({grouplens_error}). Only ML-100K has an "
        f"offline mirror. Download {source.url} by hand and put it in {home}.")


def _parse_mirror(wheel_path: Path, source: str) -> Dataset:
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            return parse_mirror_100k(wheel, source)
    except (zipfile.BadZipFile, KeyError, ValueError, pd.errors.ParserError) as error:
        raise CorruptDataError(f"{wheel_path} could not be parsed ({error}). "
                               f"Delete it and run again: rm {wheel_path}") from error
