"""MovieLens loading: fetch (cache -> GroupLens -> offline mirror) -> verify -> parse -> :class:`Dataset`.

Usage::

    from mflib.datasets import load_movielens
    ds = load_movielens("100k")          # 100,000 ratings, 943 users, 1,682 items
    X = ds.implicit()                    # users x items CSR of positives (rating >= 4)
    R = ds.explicit()                    # users x items CSR of ratings
    ds.title(ds.find_item("Star Wars"))  # 'Star Wars (1977)'

Variants (:data:`VARIANTS`): ``"100k"``, ``"1m"`` (with user demographics), ``"20m"``, ``"latest-small"``
and ``"latest"`` (the full, regularly refreshed ml-latest). ``"ml-1m"`` etc. are accepted too.

The package is split by job: :mod:`~mflib.datasets.fetch` (cache, download, checksum / CRC verification,
the ML-100K mirror), :mod:`~mflib.datasets.parse` (the GroupLens formats, memory-lean) and
:mod:`~mflib.datasets.dataset` (the :class:`Dataset` object). Everything public is importable from here.

MovieLens files are never committed: see ``data/README.md`` for the licences.
"""
from __future__ import annotations

import os

from . import fetch
from .dataset import GENRES, Dataset
from .fetch import (GROUPLENS, MIRROR_MEMBERS, MIRROR_WHEEL, MIRROR_WHEEL_SHA256, VARIANTS, CorruptDataError,
                    DataUnavailableError, Source, data_home, file_digest)
from .parse import (ML1M_AGES, ML1M_OCCUPATIONS, RATING_DTYPES, parse_archive, parse_grouplens_1m,
                    parse_grouplens_100k, parse_grouplens_csv, parse_mirror, parse_mirror_100k)

__all__ = [
    "Dataset", "load_movielens", "is_cached", "CorruptDataError", "DataUnavailableError", "GENRES", "VARIANTS",
    "Source", "GROUPLENS", "MIRROR_WHEEL", "MIRROR_WHEEL_SHA256", "MIRROR_MEMBERS", "ML1M_AGES",
    "ML1M_OCCUPATIONS", "RATING_DTYPES", "data_home", "file_digest", "parse_archive", "parse_grouplens_100k",
    "parse_grouplens_1m", "parse_grouplens_csv", "parse_mirror_100k", "parse_mirror",
]


def _variant_name(variant: str) -> str:
    name = str(variant).lower().removeprefix("ml-")
    if name not in VARIANTS:
        raise ValueError(f"unknown MovieLens variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return name


def is_cached(variant: str, data_home: str | os.PathLike | None = None) -> bool:
    """Whether ``variant``'s archive (or, for 100k, the offline mirror) is in the cache. Nothing is verified
    or downloaded here: :func:`load_movielens` verifies when it loads."""
    name = _variant_name(variant)
    home = fetch.data_home(data_home)
    return fetch.archive_path(name, home).exists() or (name == "100k" and fetch.mirror_path(home).exists())


def load_movielens(variant: str = "100k", data_home: str | os.PathLike | None = None,
                   download: bool = True) -> Dataset:
    """Load a MovieLens variant: ``"100k"``, ``"1m"``, ``"20m"``, ``"latest-small"`` or ``"latest"``.

    Sources in order: the cache (``data/``, ``$MFLIB_DATA`` or ``data_home``); the official GroupLens zip
    (skipped when ``download=False`` or ``MFLIB_OFFLINE=1``); for ``"100k"`` the offline mirror in the
    recbole 1.2.1 wheel. Every archive is verified before it is parsed — md5 for 100k, 1m and 20m, the
    zip CRCs for latest-small and latest (see :mod:`mflib.datasets.fetch`) — and one that fails is deleted
    and reported by a :class:`CorruptDataError` naming it. Nothing is downloaded twice.

    Memory: the ratings table takes 28 bytes per rating, and loading peaks at no more than about 36 bytes
    per rating (see :mod:`mflib.datasets.parse`), so ml-latest with ``n`` ratings needs ≈ 36·n bytes free.

    Raises :class:`DataUnavailableError` when no source can provide the variant, ``ValueError`` for an
    unknown variant.
    """
    name = _variant_name(variant)
    source = VARIANTS[name]
    home = fetch.data_home(data_home)

    if fetch.archive_path(name, home).exists():
        return parse_archive(name, fetch.check_cached(name, home), "cache")
    if name == "100k" and fetch.mirror_path(home).exists():
        return parse_mirror(fetch.check_cached_mirror(home), "cache")
    if not download:
        raise DataUnavailableError(f"MovieLens {name} is not cached in {home} and download=False.")

    grouplens_error: OSError | None = None
    if os.environ.get("MFLIB_OFFLINE") != "1":
        try:
            archive = fetch.fetch_grouplens(name, home)
        except OSError as error:  # unreachable (requests' errors are OSErrors); a bad download raises CorruptDataError
            grouplens_error = error
        else:
            return parse_archive(name, archive, "grouplens")
    reason = f"({grouplens_error})" if grouplens_error else "(MFLIB_OFFLINE=1)"

    if name == "100k":
        return parse_mirror(fetch.fetch_mirror_wheel(home), f"mirror:{MIRROR_WHEEL}")
    raise DataUnavailableError(
        f"Could not download MovieLens {name} from GroupLens {reason}. Only ML-100K has an offline mirror. "
        f"Download {source.url} by hand and put it in {home}.")
