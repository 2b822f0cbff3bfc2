"""The class run's progress bar: tqdm on stderr, with notebooks done, statuses so far and an ETA.

Only stderr is used, so stdout (the summary, ``--json``) and the output files stay clean.  By default
the bar is shown only when stderr is a terminal and the run is not ``--quiet``; ``--progress`` forces
it (e.g. into a CI log), ``--no-progress`` turns it off.  Log lines written while the bar is shown go
through :meth:`Progress.log`, which clears the bar first.
"""
from __future__ import annotations

import sys

__all__ = ["Progress", "progress_enabled"]


def progress_enabled(opts, stream=None) -> bool:
    """``opts.progress`` if set, else: not quiet and ``stream`` (stderr) is a terminal."""
    if opts.progress is not None:
        return bool(opts.progress)
    stream = sys.stderr if stream is None else stream
    return bool(opts.verbose and hasattr(stream, "isatty") and stream.isatty())


class Progress:
    """``total`` notebooks to grade; :meth:`done` after each one (thread-safe through tqdm's lock)."""

    def __init__(self, total: int, enabled: bool, desc: str, log):
        self._log = log
        self.counts: dict[str, int] = {}
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="nb", file=sys.stderr, dynamic_ncols=True,
                            smoothing=0.2, mininterval=0.5,
                            bar_format="{desc}: {n}/{total} {bar} [{elapsed}<{remaining}, {rate_fmt}] {postfix}")

    def log(self, message: str) -> None:
        """Write a log line without breaking the bar."""
        if self.bar is None:
            self._log(message)
            return
        with self.bar.external_write_mode(file=sys.stderr):
            self._log(message)

    def done(self, status: str) -> None:
        """One more notebook finished with ``status``."""
        self.counts[status] = self.counts.get(status, 0) + 1
        if self.bar is not None:
            self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())), refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        """Remove nothing, just end the bar's line."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
