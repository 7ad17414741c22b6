"""Progress that fits where it goes: tqdm's bars on a terminal; off one (a log file, a pipe),
one timestamped line per stage when it ends (and one a minute while a long stage runs), so a
redirected log holds no carriage returns."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Optional

from tqdm import tqdm

#: Off a terminal, a stage still running writes a line after an item at most this often.
INTERIM_SECONDS = 60.0


def progress_bar(iterable: Optional[Iterable] = None, *, desc: str, unit: str,
                 disable: bool = False, total: Optional[int] = None, leave: bool = True):
    """``tqdm(iterable, ...)`` when standard error is a terminal (or ``disable``); otherwise a
    :class:`StageLine` with the same interface (iteration, ``update``, ``set_postfix``,
    ``close``, ``with``)."""
    if disable or sys.stderr.isatty():
        return tqdm(iterable, desc=desc, unit=unit, disable=disable, total=total, leave=leave)
    return StageLine(iterable, desc=desc, unit=unit, total=total)


class StageLine:
    """Counts a stage's items and, when it ends, writes one line to standard error:
    ``12:03:07 explain and score: 5 cells in 41.2 s (loss=0.052, acc=0.983)``; while it runs, an
    item that ends :data:`INTERIM_SECONDS` or more after the last line writes
    ``12:02:10 explain and score: 2/5 cells, 64.0 s so far``."""

    def __init__(self, iterable: Optional[Iterable] = None, *, desc: str, unit: str,
                 total: Optional[int] = None) -> None:
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None or not hasattr(iterable, "__len__") \
            else len(iterable)
        self.count, self.postfix, self.closed = 0, {}, False
        self.started = self.reported = time.perf_counter()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.perf_counter()
        if now - self.reported >= INTERIM_SECONDS:
            self.reported = now
            of = "" if self.total is None else f"/{self.total}"
            print(f"{time.strftime('%H:%M:%S')} {self.desc}: {self.count}{of} "
                  f"{self._units(self.count != 1 or self.total not in (None, 1))}, "
                  f"{now - self.started:.1f} s so far", file=sys.stderr, flush=True)

    def _units(self, plural: bool) -> str:
        return self.unit + ("es" if self.unit.endswith(("ch", "s", "x")) else "s") if plural \
            else self.unit

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        seconds = time.perf_counter() - self.started
        extra = f" ({', '.join(f'{k}={v}' for k, v in self.postfix.items())})" if self.postfix \
            else ""
        print(f"{time.strftime('%H:%M:%S')} {self.desc}: {self.count} {self._units(self.count != 1)} in "
              f"{seconds:.1f} s{extra}", file=sys.stderr, flush=True)

    def __enter__(self) -> "StageLine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
