"""mflib.datasets: the real ML-100K offline; all five GroupLens layouts on fixture zips built here
(tests/movielens_layouts.py), through the cache, the checksum / CRC paths and the download path;
corrupt archives (truncated, wrong checksum, flipped byte, wrong layout) are reported and deleted."""
from __future__ import annotations

import dataclasses
import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mflib import datasets
from mflib.datasets import (GENRES, ML1M_OCCUPATIONS, VARIANTS, CorruptDataError, DataUnavailableError, fetch,
                            is_cached, load_movielens, parse_grouplens_1m, parse_grouplens_100k,
                            parse_grouplens_csv)
from movielens_layouts import grouplens_files, grouplens_zip, make_truth, zip_bytes

REPO_DATA = Path(fetch.__file__).resolve().parents[2] / "data"
MIRROR = "recbole-1.2.1-py3-none-any.whl"
ALL_VARIANTS = ["100k", "1m", "20m", "latest-small", "latest"]
PINNED = [v for v in ALL_VARIANTS if VARIANTS[v].checksum is not None]
CRC_ONLY = [v for v in ALL_VARIANTS if VARIANTS[v].checksum is None]


# ---- the real data -------------------------------------------------------------------------------
def test_ml100k_has_the_documented_shape(ml100k):
    assert len(ml100k.ratings) == 100_000
    assert ml100k.n_users == 943 and ml100k.n_items == 1682
    assert ml100k.ratings["user_idx"].max() == 942 and ml100k.ratings["item_idx"].max() == 1681
    assert set(np.unique(ml100k.ratings["rating"])) == {1, 2, 3, 4, 5}
    assert ml100k.ratings["timestamp"].between(874_000_000, 894_000_000).all()
    # every item has a title, years for all but the "unknown" film, genres from the fixed list
    assert ml100k.items["title"].str.len().gt(0).all()
    assert ml100k.items["year"].isna().sum() == 1
    assert all(set(g) <= set(GENRES) and len(g) >= 1 for g in ml100k.items["genres"])
    assert list(ml100k.users.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert ml100k.users["occupation"].nunique() == 21


def test_known_items_and_users(ml100k):
    star_wars = ml100k.find_item("Star Wars")
    assert ml100k.title(star_wars) == "Star Wars (1977)"
    assert ml100k.items.loc[star_wars, "item_id"] == 50
    assert ml100k.items.loc[star_wars, "year"] == 1977
    assert ml100k.items.loc[star_wars, "genres"] == ["Action", "Adventure", "Romance", "Sci-Fi", "War"]
    assert ml100k.title(ml100k.item_index[1]) == "Toy Story (1995)"
    assert ml100k.title(ml100k.find_item("Godfather")) == "Godfather, The (1972)"
    # Latin-1 titles decoded the same way from both sources
    assert "Misérables, Les (1995)" in set(ml100k.items["title"])
    first_user = ml100k.users.iloc[0]
    assert (first_user["user_id"], first_user["age"], first_user["gender"]) == (1, 24, "M")
    with pytest.raises(KeyError, match="no item title contains"):
        ml100k.find_item("No Such Film 2099")


def test_matrices_and_ids_agree(ml100k):
    explicit = ml100k.explicit()
    assert explicit.shape == (943, 1682) and explicit.nnz == 100_000
    first = ml100k.ratings.iloc[0]
    assert explicit[int(first["user_idx"]), int(first["item_idx"])] == first["rating"]
    positives = ml100k.implicit()
    assert positives.nnz == int((ml100k.ratings["rating"] >= 4).sum()) == 55_375
    assert set(np.unique(positives.data)) == {1.0}
    assert ml100k.implicit(threshold=5).nnz == int((ml100k.ratings["rating"] == 5).sum())
    genres = ml100k.genre_matrix()
    assert genres.shape == (1682, len(GENRES))
    assert genres.sum() == sum(len(g) for g in ml100k.items["genres"])
    for raw, index in list(ml100k.item_index.items())[:50]:
        assert ml100k.item_ids[index] == raw


def test_second_load_comes_from_the_cache(ml100k):
    again = load_movielens("100k")
    assert again.source == "cache"
    pd.testing.assert_frame_equal(again.ratings, ml100k.ratings)


def test_ratings_table_takes_28_bytes_per_rating(ml100k):
    """The memory formula of the docstrings: int32 ids and indices, float32 rating, int64 timestamp."""
    assert ml100k.ratings.dtypes.astype(str).to_dict() == {
        "user_id": "int32", "item_id": "int32", "rating": "float32", "timestamp": "int64",
        "user_idx": "int32", "item_idx": "int32"}
    assert ml100k.ratings.memory_usage(index=False).sum() == 28 * len(ml100k.ratings)


# ---- GroupLens layouts: the parser against the truth the fixture was built from --------------------
def _assert_matches_truth(ds, truth):
    """Every rating, film, title, year, genre list and (100k, 1m) user comes back as written."""
    expected = truth.ratings
    assert ds.name == truth.variant and len(ds.ratings) == len(expected)
    assert ds.ratings.memory_usage(index=False).sum() == 28 * len(expected)
    np.testing.assert_array_equal(ds.ratings["user_id"].to_numpy(), expected["user_id"].to_numpy())
    np.testing.assert_array_equal(ds.ratings["item_id"].to_numpy(), expected["item_id"].to_numpy())
    np.testing.assert_array_equal(ds.ratings["rating"].to_numpy(), expected["rating"].to_numpy(np.float32))
    np.testing.assert_array_equal(ds.ratings["timestamp"].to_numpy(), expected["timestamp"].to_numpy())
    # contiguous indices that point back at the raw ids, and matrices that hold the ratings
    np.testing.assert_array_equal(ds.user_ids[ds.ratings["user_idx"]], ds.ratings["user_id"])
    np.testing.assert_array_equal(ds.item_ids[ds.ratings["item_idx"]], ds.ratings["item_id"])
    explicit = ds.explicit()
    rows = [ds.user_index[u] for u in expected["user_id"]]
    cols = [ds.item_index[i] for i in expected["item_id"]]
    np.testing.assert_array_equal(np.asarray(explicit[rows, cols]).ravel(), expected["rating"].to_numpy())
    # films: all of the movie file (also those nobody rated), sorted by id
    movies = truth.movies.sort_values("item_id").reset_index(drop=True)
    assert ds.n_items == len(movies) and ds.items["item_id"].tolist() == movies["item_id"].tolist()
    assert ds.items["title"].tolist() == movies["title"].tolist()
    assert ds.items["genres"].tolist() == movies["genres"].tolist()
    def years(values):
        return [None if pd.isna(y) else int(y) for y in values]

    assert years(ds.items["year"]) == years(movies["year"])
    assert ds.genre_matrix().sum() == sum(len(g) for g in movies["genres"])
    if truth.users is None:
        assert list(ds.users.columns) == ["user_id"]
        assert ds.users["user_id"].tolist() == sorted(set(expected["user_id"]))
    else:
        assert list(ds.users.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
        assert ds.users.astype(str).values.tolist() == truth.users.astype(str).values.tolist()


def _pin_fixture_checksum(monkeypatch, variant: str, data: bytes) -> None:
    """Make the fixture the "genuine" archive: pin its md5 where GroupLens publishes one."""
    source = VARIANTS[variant]
    if source.checksum is not None:
        monkeypatch.setitem(VARIANTS, variant, dataclasses.replace(
            source, checksum="md5:" + hashlib.md5(data).hexdigest()))


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """A data home where GroupLens "cannot be reached" (the download raises at once)."""
    def unreachable(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(fetch, "_download_grouplens", unreachable)
    return tmp_path


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_cached_grouplens_archive_loads_exactly(variant, offline_home, monkeypatch):
    truth = make_truth(variant)
    data = grouplens_zip(truth)
    _pin_fixture_checksum(monkeypatch, variant, data)
    (offline_home / VARIANTS[variant].filename).write_bytes(data)
    assert is_cached(variant, offline_home)
    ds = load_movielens(f"ml-{variant}", data_home=offline_home)
    assert ds.source == "cache"
    _assert_matches_truth(ds, truth)
    assert [p.name for p in offline_home.iterdir()] == [VARIANTS[variant].filename]


@pytest.mark.parametrize("variant", CRC_ONLY + ["20m"])
def test_large_movie_ids_take_the_search_path(variant, tmp_path):
    """Ids too sparse for a lookup table (up to 2**30) are indexed by binary search, with the same result."""
    truth = make_truth(variant, seed=3, large_ids=True)
    path = tmp_path / "archive.zip"
    path.write_bytes(grouplens_zip(truth))
    with zipfile.ZipFile(path) as archive:
        _assert_matches_truth(parse_grouplens_csv(archive, variant), truth)


def test_csv_fixture_uses_grouplens_quoting():
    """The awkward titles really are quoted in the file (else the parser test above proves little)."""
    movies = grouplens_files(make_truth("latest"))["movies.csv"].decode("utf-8")
    assert movies.startswith("movieId,title,genres\n")
    assert ',"American President, The (1995)",Comedy|Drama|Romance\n' in movies
    assert ',"""Great Performances"" Cats (1998)",Musical\n' in movies
    assert ",Death Note: Desu nôto (2006–2007),(no genres listed)\n" in movies
    assert "|Children|" in movies and "Children's" not in movies
    ratings = grouplens_files(make_truth("latest"))["ratings.csv"].decode()
    assert ratings.startswith("userId,movieId,rating,timestamp\n") and ".5," in ratings


def test_ml1m_demographics(tmp_path):
    truth = make_truth("1m", seed=1)
    files = grouplens_files(truth)
    first = files["users.dat"].decode().splitlines()[0].split("::")
    assert len(first) == 5 and first[2].isdigit() and first[3].isdigit()  # age and occupation are codes
    path = tmp_path / "ml-1m.zip"
    path.write_bytes(zip_bytes("ml-1m", files))
    with zipfile.ZipFile(path) as archive:
        ds = parse_grouplens_1m(archive)
    assert set(ds.users["occupation"]) <= set(ML1M_OCCUPATIONS)
    assert ds.users.loc[0, "zip_code"] == "02139" and ds.users.loc[1, "zip_code"] == "98107-4032"
    assert ds.title(ds.item_index[int(truth.movies["item_id"][1])]) == "Misérables, Les (1995)"  # Latin-1

    lines = files["users.dat"].split(b"\n")
    lines[0] = b"1::F::17::4::02139"  # 17 is no ML-1M age code
    bad = dict(files, **{"users.dat": b"\n".join(lines)})
    path.write_bytes(zip_bytes("ml-1m", bad))
    with zipfile.ZipFile(path) as archive, pytest.raises(CorruptDataError, match="age code 17"):
        parse_grouplens_1m(archive)


def test_ml100k_parser_matches_the_mirror_on_the_real_data(ml100k, tmp_path):
    """The real ML-100K (from the recbole mirror) written back in the GroupLens layout parses identically."""
    ratings = ml100k.ratings[["user_id", "item_id", "rating", "timestamp"]].astype({"rating": int})
    items = []
    for item in ml100k.items.itertuples():
        flags = "|".join("1" if g in item.genres else "0" for g in GENRES[:19])
        date = "" if pd.isna(item.year) else f"01-Jan-{item.year}"
        url = "" if item.title == "unknown" else "http://us.imdb.com/M/title-exact?x"
        items.append(f"{item.item_id}|{item.title}|{date}||{url}|{flags}\n")
    path = tmp_path / "ml-100k.zip"
    path.write_bytes(zip_bytes("ml-100k", {
        "u.data": ratings.to_csv(sep="\t", header=False, index=False).encode(),
        "u.item": "".join(items).encode("latin-1"),
        "u.user": ml100k.users.to_csv(sep="|", header=False, index=False).encode()}))
    with zipfile.ZipFile(path) as archive:
        parsed = parse_grouplens_100k(archive)
    pd.testing.assert_frame_equal(parsed.ratings, ml100k.ratings)
    pd.testing.assert_frame_equal(parsed.items, ml100k.items)
    pd.testing.assert_frame_equal(parsed.users, ml100k.users)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.update({"ratings.csv": f["ratings.csv"].replace(b"userId,movieId", b"user,movie", 1)}),
     "expected the header 'userId,movieId,rating,timestamp'"),
    (lambda f: f.update({"movies.csv": f["movies.csv"].replace(b",Musical\n", b",Musical|Telenovela\n", 1)}),
     r"unknown genre\(s\) \['Telenovela'\]"),
    (lambda f: f.update({"ratings.csv": f["ratings.csv"] + b"1,2147483647,4.0,1\n"}),
     "ratings reference item 2147483647, missing from the item file"),
])
def test_csv_format_errors_are_explained(change, message, tmp_path):
    files = grouplens_files(make_truth("latest-small"))
    change(files)
    path = tmp_path / "ml-latest-small.zip"
    path.write_bytes(zip_bytes("ml-latest-small", files))
    with pytest.raises(CorruptDataError, match=message):
        load_movielens("latest-small", data_home=tmp_path)
    assert path.exists()  # it passed its CRCs: not deleted, the message says what to do


def _latest_zip_with(n_ratings: int) -> bytes:
    """An ml-latest archive with ``n_ratings`` random half-star ratings."""
    truth = make_truth("latest", n_movies=400)
    rng = np.random.default_rng(n_ratings)
    users = np.sort(rng.integers(1, 5_000, n_ratings)).tolist()
    movies = rng.choice(truth.movies["item_id"].to_numpy(), n_ratings).tolist()
    stars = [f"{k / 2:.1f}" for k in rng.integers(1, 11, n_ratings)]
    times = rng.integers(789_652_009, 1_690_000_000, n_ratings).tolist()
    files = grouplens_files(truth)
    files["ratings.csv"] = ("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{m},{r},{t}\n" for u, m, r, t in zip(users, movies, stars, times))).encode()
    return zip_bytes("ml-latest", files)


def test_csv_loading_peak_memory_per_rating():
    """The docstring's bound: loading peaks at <= 36 bytes per rating (28 kept + one 8-byte column while
    pandas joins its parse chunks). Measured as the slope of traced peak memory between two sizes, so
    that the fixed costs (films table, buffers) cancel out."""
    import io
    import tracemalloc

    peaks = {}
    for n in (60_000, 180_000):
        data = _latest_zip_with(n)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            tracemalloc.start()
            try:
                ds = parse_grouplens_csv(archive, "latest")
                peaks[n] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert len(ds.ratings) == n and ds.ratings.memory_usage(index=False).sum() == 28 * n
        del ds
    slope = (peaks[180_000] - peaks[60_000]) / 120_000
    assert 28 <= slope <= 36, f"loading peaks at {slope:.1f} bytes per rating; the docstrings promise <= 36"


# ---- corruption: reported with the file and the fix, and never left in the cache ------------------
def _flip_byte_inside(data: bytes, member: str) -> bytes:
    """Flip one byte in the middle of ``member``'s compressed data."""
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(member)
    header = 30 + len(info.filename.encode()) + len(info.extra)
    position = info.header_offset + header + info.compress_size // 2
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:]


def _assert_reported_and_deleted(error, path: Path, variant: str) -> None:
    text = str(error.value)
    assert str(path) in text, text
    assert "deleted from the cache" in text and VARIANTS[variant].url in text, text
    assert not path.exists() and list(path.parent.iterdir()) == []


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_truncated_cached_archive(variant, offline_home, monkeypatch):
    data = grouplens_zip(make_truth(variant))
    _pin_fixture_checksum(monkeypatch, variant, data)
    path = offline_home / VARIANTS[variant].filename
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.raises(CorruptDataError, match="corrupt or truncated") as error:
        load_movielens(variant, data_home=offline_home)
    _assert_reported_and_deleted(error, path, variant)


@pytest.mark.parametrize("variant", PINNED)
def test_wrong_checksum(variant, offline_home):
    """A well-formed zip that is not GroupLens' archive: its md5 differs from the published one."""
    path = offline_home / VARIANTS[variant].filename
    path.write_bytes(grouplens_zip(make_truth(variant)))
    with pytest.raises(CorruptDataError, match=r"md5 [0-9a-f]{12}\.\.\., expected") as error:
        load_movielens(variant, data_home=offline_home)
    _assert_reported_and_deleted(error, path, variant)
    assert VARIANTS[variant].checksum.split(":")[1] in str(error.value)  # the md5 a good copy must have


@pytest.mark.parametrize("variant", CRC_ONLY)
def test_crc_path_catches_a_flipped_byte(variant, offline_home):
    folder = VARIANTS[variant].folder
    path = offline_home / VARIANTS[variant].filename
    path.write_bytes(_flip_byte_inside(grouplens_zip(make_truth(variant)), f"{folder}/ratings.csv"))
    with pytest.raises(CorruptDataError, match="corrupt or truncated") as error:
        load_movielens(variant, data_home=offline_home)
    _assert_reported_and_deleted(error, path, variant)


@pytest.mark.parametrize("variant", CRC_ONLY)
def test_crc_path_rejects_a_wrong_layout(variant, offline_home):
    """ratings.csv at the top level instead of inside ml-latest*/: not GroupLens' archive."""
    files = grouplens_files(make_truth(variant))
    path = offline_home / VARIANTS[variant].filename
    path.write_bytes(zip_bytes("ratings", files))
    with pytest.raises(CorruptDataError, match=f"lacks {VARIANTS[variant].folder}/ratings.csv") as error:
        load_movielens(variant, data_home=offline_home)
    _assert_reported_and_deleted(error, path, variant)


def test_undeletable_corrupt_file_says_rm(offline_home, monkeypatch):
    path = offline_home / "ml-latest.zip"
    path.write_bytes(b"PK\x03\x04 not a zip")

    def refuse(self, missing_ok=False):
        raise PermissionError("read-only file system (test)")

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(CorruptDataError, match=f"could not be deleted .*rm {path}"):
        load_movielens("latest", data_home=offline_home)


# ---- the download path (GroupLens simulated: the fake writes what the server would send) ----------
def _serve(monkeypatch, payload: bytes, requests: list):
    def download(url, target, timeout=20):
        requests.append((url, target))
        target.write_bytes(payload)

    monkeypatch.setattr(fetch, "_download_grouplens", download)


@pytest.mark.parametrize("variant", ["1m", "latest"])
def test_download_is_verified_then_cached(variant, tmp_path, monkeypatch):
    truth = make_truth(variant)
    data = grouplens_zip(truth)
    _pin_fixture_checksum(monkeypatch, variant, data)
    requests = []
    _serve(monkeypatch, data, requests)
    ds = load_movielens(variant, data_home=tmp_path)
    assert ds.source == "grouplens" and [url for url, _ in requests] == [VARIANTS[variant].url]
    assert requests[0][1].parent != tmp_path  # written under a temporary folder first
    _assert_matches_truth(ds, truth)
    assert [p.name for p in tmp_path.iterdir()] == [VARIANTS[variant].filename]
    assert load_movielens(variant, data_home=tmp_path).source == "cache" and len(requests) == 1


@pytest.mark.parametrize("variant", ["1m", "latest"])
def test_corrupt_download_leaves_nothing(variant, tmp_path, monkeypatch):
    data = grouplens_zip(make_truth(variant))
    _pin_fixture_checksum(monkeypatch, variant, data)
    _serve(monkeypatch, data[:-200], [])  # the connection dropped before the end
    with pytest.raises(CorruptDataError, match="failed its check") as error:
        load_movielens(variant, data_home=tmp_path)
    assert VARIANTS[variant].url in str(error.value) and "Nothing was kept" in str(error.value)
    assert list(tmp_path.iterdir()) == []


# ---- the ML-100K mirror and the offline messages -------------------------------------------------
def _copy_mirror_into(home: Path) -> None:
    load_movielens("100k")  # make sure the repo cache holds the wheel
    shutil.copy(REPO_DATA / MIRROR, home / MIRROR)


def test_offline_load_uses_the_cached_mirror(offline_home, ml100k):
    _copy_mirror_into(offline_home)
    assert is_cached("100k", offline_home) and not is_cached("1m", offline_home)
    ds = load_movielens("100k", data_home=offline_home)
    assert ds.source == "cache" and len(ds.ratings) == 100_000


def test_truncated_mirror_wheel_is_deleted(offline_home, ml100k):
    _copy_mirror_into(offline_home)
    wheel = offline_home / MIRROR
    wheel.write_bytes(wheel.read_bytes()[: 500_000])  # an interrupted copy
    with pytest.raises(CorruptDataError, match="corrupt or truncated.*deleted from the cache"):
        load_movielens("100k", data_home=offline_home)
    assert not wheel.exists()


def test_variant_without_mirror_says_what_to_do(offline_home, monkeypatch):
    for variant in ("1m", "20m", "latest"):
        with pytest.raises(DataUnavailableError, match=f"Download .*{VARIANTS[variant].filename} by hand"):
            load_movielens(variant, data_home=offline_home)
    monkeypatch.setenv("MFLIB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match=r"\(MFLIB_OFFLINE=1\)"):
        load_movielens("latest-small", data_home=offline_home)
    with pytest.raises(DataUnavailableError, match="download=False"):
        load_movielens("100k", data_home=offline_home, download=False)
    with pytest.raises(ValueError, match="unknown MovieLens variant"):
        load_movielens("7m")
    assert list(offline_home.iterdir()) == []


def test_mirror_download_through_pip_is_atomic_and_verified(offline_home, monkeypatch):
    """A real `pip download` from the package index into an empty home; then a failing one."""
    ds = load_movielens("100k", data_home=offline_home)
    assert ds.source.startswith("mirror:") and len(ds.ratings) == 100_000
    assert sorted(p.name for p in offline_home.iterdir()) == [MIRROR]  # no temp files left behind

    # pip fails (e.g. no network at all): a clear error, and no file that later looks valid
    (offline_home / MIRROR).unlink()

    class Failed:
        returncode, stderr = 1, "ERROR: Could not find a version that satisfies the requirement"

    monkeypatch.setattr(fetch.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(DataUnavailableError, match="pip download recbole==1.2.1"):
        load_movielens("100k", data_home=offline_home)
    assert list(offline_home.iterdir()) == []


def test_mflib_data_environment_variable(offline_home, monkeypatch, ml100k):
    _copy_mirror_into(offline_home)
    monkeypatch.setenv("MFLIB_DATA", str(offline_home))
    assert datasets.data_home() == offline_home
    assert load_movielens("ml-100k").n_items == 1682
