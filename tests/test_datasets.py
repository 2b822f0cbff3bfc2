"""mflib.datasets: real ML-100K offline, the GroupLens parsers on fixture zips, corruption handling."""
from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mflib import datasets
from mflib.datasets import (GENRES, CorruptDataError, DataUnavailableError, load_movielens,
                            parse_grouplens_100k, parse_grouplens_1m, parse_grouplens_csv)

REPO_DATA = Path(datasets.__file__).resolve().parent.parent / "data"
MIRROR = "recbole-1.2.1-py3-none-any.whl"


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


# ---- GroupLens layout fixtures -------------------------------------------------------------------
def _grouplens_100k_zip(dataset, path: Path, n_ratings: int | None = None) -> Path:
    """Write ``dataset`` in the official ml-100k layout (tab/pipe separated, Latin-1 u.item)."""
    ratings = dataset.ratings if n_ratings is None else dataset.ratings.iloc[:n_ratings]
    u_data = ratings[["user_id", "item_id", "rating", "timestamp"]].astype(
        {"rating": int}).to_csv(sep="\t", header=False, index=False)
    item_lines = []
    for item in dataset.items.itertuples():
        flags = "|".join("1" if g in item.genres else "0" for g in GENRES[:19])
        date = "" if pd.isna(item.year) else f"01-Jan-{item.year}"
        url = "" if item.title == "unknown" else "http://us.imdb.com/M/title-exact?x"
        item_lines.append(f"{item.item_id}|{item.title}|{date}||{url}|{flags}")
    u_user = dataset.users.to_csv(sep="|", header=False, index=False)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-100k/u.data", u_data)
        archive.writestr("ml-100k/u.item", ("\n".join(item_lines) + "\n").encode("latin-1"))
        archive.writestr("ml-100k/u.user", u_user)
        archive.writestr("ml-100k/README", "fixture in the GroupLens layout, built by the tests")
    return path


def test_grouplens_parser_gives_the_same_frames_as_the_mirror(ml100k, tmp_path):
    archive_path = _grouplens_100k_zip(ml100k, tmp_path / "ml-100k.zip")
    with zipfile.ZipFile(archive_path) as archive:
        parsed = parse_grouplens_100k(archive)
    pd.testing.assert_frame_equal(parsed.ratings, ml100k.ratings)
    pd.testing.assert_frame_equal(parsed.items, ml100k.items)
    pd.testing.assert_frame_equal(parsed.users, ml100k.users)


def test_grouplens_100k_parser_on_hand_written_rows(tmp_path):
    u_item = ("1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
              "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
              "1412|Land Before Time III: The Time of the Great Giving (1995) (V)|01-Jan-1995||http://x|"
              "0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n")
    path = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-100k/u.data", "7\t1\t5\t881250949\n7\t267\t1\t881250950\n9\t1412\t4\t881250951\n")
        archive.writestr("ml-100k/u.item", u_item.encode("latin-1"))
        archive.writestr("ml-100k/u.user", "7|24|M|technician|85711\n9|53|F|other|94043\n")
    with zipfile.ZipFile(path) as archive:
        ds = parse_grouplens_100k(archive)
    assert ds.items["title"].tolist() == ["Toy Story (1995)", "unknown",
                                          "Land Before Time III: The Time of the Great Giving (1995) (V)"]
    assert ds.items["year"].tolist()[0] == 1995 and pd.isna(ds.items["year"].tolist()[1])
    assert ds.items["year"].tolist()[2] == 1995
    assert ds.items["genres"].tolist() == [["Animation", "Children's", "Comedy"], ["unknown"],
                                           ["Animation", "Children's"]]
    assert ds.ratings["user_idx"].tolist() == [0, 0, 1] and ds.ratings["item_idx"].tolist() == [0, 1, 2]
    assert ds.users["zip_code"].tolist() == ["85711", "94043"]


def test_grouplens_1m_parser_reads_double_colon_files(tmp_path):
    path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300275\n")
        archive.writestr("ml-1m/movies.dat",
                         "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                         "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n".encode("latin-1"))
        archive.writestr("ml-1m/users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    with zipfile.ZipFile(path) as archive:
        ds = parse_grouplens_1m(archive)
    assert len(ds.ratings) == 3 and ds.n_users == 2 and ds.n_items == 2
    assert ds.items["title"].tolist() == ["James and the Giant Peach (1996)",
                                          "One Flew Over the Cuckoo's Nest (1975)"]
    assert ds.items["genres"].tolist()[0] == ["Animation", "Children's", "Musical"]
    assert ds.users[["user_id", "age", "gender"]].values.tolist() == [[1, 1, "F"], [2, 56, "M"]]
    assert ds.explicit()[0, ds.item_index[1193]] == 5.0


def test_csv_variant_parser(tmp_path):
    path = tmp_path / "ml-latest-small.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-latest-small/ratings.csv",
                         "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,3,3.5,964981247\n")
        archive.writestr("ml-latest-small/movies.csv",
                         'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n'
                         '3,"Grumpier Old Men, The (1995)",Comedy|Romance\n')
    with zipfile.ZipFile(path) as archive:
        ds = parse_grouplens_csv(archive, "latest-small")
    assert ds.items["title"].tolist()[1] == "Grumpier Old Men, The (1995)"
    assert ds.items["genres"].tolist()[0] == ["Adventure", "Animation", "Children's", "Comedy", "Fantasy"]
    assert ds.ratings["rating"].tolist() == [4.0, 3.5]
    assert list(ds.users.columns) == ["user_id"]


# ---- caching, corruption, offline ----------------------------------------------------------------
@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """A data home where GroupLens "cannot be reached" (the download raises at once)."""
    def unreachable(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(datasets, "_download_grouplens", unreachable)
    return tmp_path


def _copy_mirror_into(home: Path) -> None:
    load_movielens("100k")  # make sure the repo cache holds the wheel
    shutil.copy(REPO_DATA / MIRROR, home / MIRROR)


def test_offline_load_uses_the_cached_mirror(offline_home, ml100k):
    _copy_mirror_into(offline_home)
    ds = load_movielens("100k", data_home=offline_home)
    assert ds.source == "cache" and len(ds.ratings) == 100_000


def test_corrupt_cached_zip_raises_naming_the_file(offline_home):
    bad = offline_home / "ml-100k.zip"
    bad.write_bytes(b"PK\x03\x04 this is not the GroupLens archive")
    with pytest.raises(CorruptDataError) as error:
        load_movielens("100k", data_home=offline_home)
    assert str(bad) in str(error.value) and "rm " in str(error.value)


def test_truncated_mirror_wheel_is_never_used(offline_home, ml100k):
    _copy_mirror_into(offline_home)
    wheel = offline_home / MIRROR
    wheel.write_bytes(wheel.read_bytes()[: 500_000])  # an interrupted copy
    with pytest.raises(CorruptDataError, match="corrupt or truncated"):
        load_movielens("100k", data_home=offline_home)


def test_zip_without_checksum_is_crc_checked(tmp_path):
    path = tmp_path / "ml-latest-small.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n" + "1,1,4.0,1\n" * 200)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF  # flip a byte inside the stored member
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError, match="CRC|not a valid zip"):
        load_movielens("latest-small", data_home=tmp_path)


def test_variant_without_mirror_says_what_to_do(offline_home):
    with pytest.raises(DataUnavailableError, match="Download .*ml-1m.zip by hand"):
        load_movielens("1m", data_home=offline_home)
    with pytest.raises(DataUnavailableError, match="download=False"):
        load_movielens("100k", data_home=offline_home, download=False)
    with pytest.raises(ValueError, match="unknown MovieLens variant"):
        load_movielens("7m")


def test_mirror_download_through_pip_is_atomic_and_verified(offline_home, monkeypatch):
    """A real `pip download` from the package index into an empty home; then a failing one."""
    ds = load_movielens("100k", data_home=offline_home)
    assert ds.source.startswith("mirror:") and len(ds.ratings) == 100_000
    assert sorted(p.name for p in offline_home.iterdir()) == [MIRROR]  # no temp files left behind

    # pip fails (e.g. no network at all): a clear error, and no file that later looks valid
    (offline_home / MIRROR).unlink()

    class Failed:
        returncode, stderr = 1, "ERROR: Could not find a version that satisfies the requirement"

    monkeypatch.setattr(datasets.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(DataUnavailableError, match="pip download recbole==1.2.1"):
        load_movielens("100k", data_home=offline_home)
    assert list(offline_home.iterdir()) == []


def test_mflib_data_environment_variable(offline_home, monkeypatch, ml100k):
    _copy_mirror_into(offline_home)
    monkeypatch.setenv("MFLIB_DATA", str(offline_home))
    assert datasets.data_home() == offline_home
    assert load_movielens("ml-100k").n_items == 1682
