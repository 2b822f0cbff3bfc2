"""Small MovieLens archives in the exact GroupLens layouts, built from a known "truth" (no real data).

:func:`make_truth` draws a few hundred seeded ratings with the awkward cases of each format (Latin-1 and
UTF-8 titles, commas and quotes, titles without a year or with a year range, "(no genres listed)",
"Children" vs "Children's", IMAX, zip codes with leading zeros, non-contiguous movie ids, films nobody
rated); :func:`grouplens_zip` writes it the way GroupLens ships that variant:

* ``ml-100k/``: ``u.data`` (tab), ``u.item`` (``|``, Latin-1, release date, IMDb url, 19 genre flags),
  ``u.user`` (``|``), plus README, u.info, u.genre, u.occupation;
* ``ml-1m/``: ``ratings.dat``, ``movies.dat`` (Latin-1), ``users.dat`` (age and occupation codes), all
  ``::``-separated without a header, plus README;
* ``ml-20m/``, ``ml-latest-small/``, ``ml-latest/``: UTF-8 csv with GroupLens' headers and csv quoting,
  ``ratings.csv`` with half stars, ``movies.csv``, plus README.txt, links.csv, tags.csv and (20m, latest)
  genome-scores.csv / genome-tags.csv.

All zips are deflated, with the top-level folder entry first, as GroupLens' are.
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mflib.datasets import GENRES, ML1M_AGES, ML1M_OCCUPATIONS, VARIANTS

ML1M_GENRES = [g for g in GENRES if g not in ("unknown", "IMAX", "(no genres listed)")]
CSV_GENRES = [g for g in GENRES if g != "unknown"]
ML100K_OCCUPATIONS = ("administrator", "artist", "educator", "engineer", "other", "programmer", "student",
                      "technician", "writer")

# (title as the loader returns it, year, genres) — the awkward cases of each format
SPECIAL_100K = [
    ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"]),
    ("unknown", None, ["unknown"]),
    ("Land Before Time III: The Time of the Great Giving (1995) (V)", 1995, ["Animation", "Children's"]),
    ("Misérables, Les (1995)", 1995, ["Drama", "Musical"]),
    ("Star Wars (1977)", 1977, ["Action", "Adventure", "Romance", "Sci-Fi", "War"]),
]
SPECIAL_1M = [
    ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"]),
    ("Misérables, Les (1995)", 1995, ["Drama", "Musical"]),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", 1995, ["Adventure", "Sci-Fi"]),
    ("Sunset Blvd. (a.k.a. Sunset Boulevard) (1950)", 1950, ["Film-Noir"]),
    ("Wallace & Gromit: The Best of Aardman Animation (1996)", 1996, ["Animation"]),
]
SPECIAL_CSV = [
    ("Toy Story (1995)", 1995, ["Adventure", "Animation", "Children's", "Comedy", "Fantasy"]),
    ("American President, The (1995)", 1995, ["Comedy", "Drama", "Romance"]),
    ('"Great Performances" Cats (1998)', 1998, ["Musical"]),
    ("Misérables, Les (1995)", 1995, ["Drama", "War"]),
    ("Death Note: Desu nôto (2006–2007)", None, ["(no genres listed)"]),
    ("Babylon 5", None, ["Sci-Fi"]),
    ("Dark Knight, The (2008)", 2008, ["Action", "Crime", "Drama", "IMAX"]),
    ("Sunset Blvd. (a.k.a. Sunset Boulevard) (1950)", 1950, ["Drama", "Film-Noir", "Romance"]),
    ('Ghost Rider: Spirit of Vengeance, the "Sequel", Part 2 (2012)', 2012, ["Action", "Fantasy"]),
]


@dataclass
class Truth:
    """What the loader must return: raw ratings in file order, movies and (100k, 1m) users."""

    variant: str
    ratings: pd.DataFrame  # user_id, item_id, rating, timestamp
    movies: pd.DataFrame  # item_id, title, year (or None), genres (loader order and spelling)
    users: pd.DataFrame | None  # user_id, age, gender, occupation (label), zip_code


def _genres(rng, vocabulary) -> list[str]:
    picked = set(rng.choice(vocabulary, size=int(rng.integers(1, 4)), replace=False).tolist())
    return [g for g in GENRES if g in picked]


def make_truth(variant: str, seed: int = 0, n_users: int = 25, n_movies: int = 40, n_ratings: int = 300,
               large_ids: bool = False) -> Truth:
    """Seeded ratings for ``variant``; ``large_ids`` gives movie ids up to 2**30 (the search path)."""
    rng = np.random.default_rng(seed)
    special = {"100k": SPECIAL_100K, "1m": SPECIAL_1M}.get(variant, SPECIAL_CSV)
    vocabulary = {"100k": list(GENRES[:19]), "1m": ML1M_GENRES}.get(variant, CSV_GENRES)
    id_range = {"100k": None, "1m": 3952, "20m": 131262, "latest-small": 193609, "latest": 288983}[variant]
    if large_ids:
        id_range = 2**30
    movie_ids = (np.arange(1, n_movies + 1) if id_range is None
                 else np.sort(rng.choice(id_range, size=n_movies, replace=False)) + 1)
    rows = []
    for k, movie_id in enumerate(movie_ids):
        if k < len(special):
            title, year, genres = special[k]
        else:
            year = int(rng.integers(1919, 2023 if variant not in ("100k", "1m") else 1998))
            title, genres = f"Film Number {k}, The ({year})", _genres(rng, vocabulary)
        rows.append((int(movie_id), title, year, genres))
    movies = pd.DataFrame(rows, columns=["item_id", "title", "year", "genres"])

    user_ids = np.arange(1, n_users + 1)
    rated_movies = movie_ids[:-3]  # the last three films are in the movie file but nobody rated them
    pairs = rng.choice(n_users * len(rated_movies), size=n_ratings, replace=False)
    half_stars = variant not in ("100k", "1m")
    stars = (rng.integers(1, 11, n_ratings) / 2) if half_stars else rng.integers(1, 6, n_ratings).astype(float)
    ratings = pd.DataFrame({
        "user_id": user_ids[pairs // len(rated_movies)], "item_id": rated_movies[pairs % len(rated_movies)],
        "rating": stars, "timestamp": rng.integers(874_724_710, 1_690_000_000, n_ratings)})
    ratings = ratings.sort_values(["user_id", "item_id"], kind="stable").reset_index(drop=True)

    users = None
    if variant in ("100k", "1m"):
        occupations = ML100K_OCCUPATIONS if variant == "100k" else ML1M_OCCUPATIONS
        ages = rng.integers(7, 74, n_users) if variant == "100k" else rng.choice(ML1M_AGES, n_users)
        zips = [f"{z:05d}" for z in rng.integers(0, 99_999, n_users)]
        zips[0], zips[1] = "02139", ("T8H1N" if variant == "100k" else "98107-4032")
        users = pd.DataFrame({"user_id": user_ids, "age": ages, "gender": rng.choice(["F", "M"], n_users),
                              "occupation": rng.choice(occupations, n_users), "zip_code": zips})
    return Truth(variant, ratings, movies, users)


# --------------------------------------------------------------------------------------------------
# Writers, one per GroupLens format
# --------------------------------------------------------------------------------------------------
def _lines(rows, sep: str) -> str:
    return "".join(sep.join(str(v) for v in row) + "\n" for row in rows)


def _csv_text(header: list[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # QUOTE_MINIMAL, doubled quotes: GroupLens' quoting
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _files_100k(truth: Truth) -> dict[str, bytes]:
    r = truth.ratings
    u_data = _lines(zip(r["user_id"], r["item_id"], r["rating"].astype(int), r["timestamp"]), "\t")
    items = []
    for movie in truth.movies.itertuples():
        flags = "|".join("1" if g in movie.genres else "0" for g in GENRES[:19])
        date = "" if movie.year is None else f"01-Jan-{movie.year}"
        url = "" if movie.title == "unknown" else f"http://us.imdb.com/M/title-exact?{movie.item_id}"
        items.append(f"{movie.item_id}|{movie.title}|{date}||{url}|{flags}\n")
    u = truth.users
    u_user = _lines(zip(u["user_id"], u["age"], u["gender"], u["occupation"], u["zip_code"]), "|")
    return {"u.data": u_data.encode(), "u.item": "".join(items).encode("latin-1"), "u.user": u_user.encode(),
            "u.genre": _lines(((g, i) for i, g in enumerate(GENRES[:19])), "|").encode(),
            "u.occupation": "\n".join(ML100K_OCCUPATIONS).encode() + b"\n",
            "u.info": f"{truth.users.shape[0]} users\n{len(truth.movies)} items\n{len(r)} ratings\n".encode(),
            "README": b"SUMMARY & USAGE LICENSE (fixture built by tests/movielens_layouts.py)\n"}


def _files_1m(truth: Truth) -> dict[str, bytes]:
    r, u = truth.ratings, truth.users
    ratings = _lines(zip(r["user_id"], r["item_id"], r["rating"].astype(int), r["timestamp"]), "::")
    movies = _lines(((m.item_id, m.title, "|".join(m.genres)) for m in truth.movies.itertuples()), "::")
    codes = [ML1M_OCCUPATIONS.index(o) for o in u["occupation"]]
    users = _lines(zip(u["user_id"], u["gender"], u["age"], codes, u["zip_code"]), "::")
    return {"movies.dat": movies.encode("latin-1"), "ratings.dat": ratings.encode(), "users.dat": users.encode(),
            "README": b"SUMMARY (fixture built by tests/movielens_layouts.py)\n"}


def _files_csv(truth: Truth) -> dict[str, bytes]:
    r = truth.ratings
    rating_text = [f"{v:.1f}" for v in r["rating"]]  # GroupLens writes 4.0 and 3.5
    ratings = _csv_text(["userId", "movieId", "rating", "timestamp"],
                        zip(r["user_id"], r["item_id"], rating_text, r["timestamp"]))
    movies = _csv_text(["movieId", "title", "genres"],
                       ((m.item_id, m.title, "|".join("Children" if g == "Children's" else g for g in m.genres))
                        for m in truth.movies.itertuples()))
    files = {"links.csv": _csv_text(["movieId", "imdbId", "tmdbId"],
                                    ((m, f"{m:07d}", m + 1) for m in truth.movies["item_id"][:5])).encode(),
             "movies.csv": movies.encode("utf-8"), "ratings.csv": ratings.encode(),
             "tags.csv": _csv_text(["userId", "movieId", "tag", "timestamp"],
                                   [(1, int(truth.movies["item_id"][0]), "pixar, fun", 1139045764)]).encode(),
             "README.txt": b"Summary (fixture built by tests/movielens_layouts.py)\n"}
    if truth.variant in ("20m", "latest"):
        files["genome-scores.csv"] = b"movieId,tagId,relevance\n1,1,0.025\n"
        files["genome-tags.csv"] = b"tagId,tag\n1,007\n"
    return files


def grouplens_files(truth: Truth) -> dict[str, bytes]:
    """Member name (inside the top-level folder) -> bytes, for ``truth.variant``."""
    if truth.variant == "100k":
        return _files_100k(truth)
    if truth.variant == "1m":
        return _files_1m(truth)
    return _files_csv(truth)


def zip_bytes(folder: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(folder + "/"), b"")
        for name in sorted(files):
            archive.writestr(folder + "/" + name, files[name])
    return buffer.getvalue()


def grouplens_zip(truth: Truth) -> bytes:
    """The archive GroupLens would serve for ``truth`` (``ml-<variant>.zip`` bytes)."""
    return zip_bytes(VARIANTS[truth.variant].folder, grouplens_files(truth))
