"""Progress that fits where it goes: tqdm's bars on a terminal; off one (a log file, a pipe),
one timestamped line per stage when it ends, so a redirected log holds no carriage returns."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Optional

from tqdm import tqdm


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
    ``12:03:07 explain and score: 5 cells in 41.2 s (loss=0.052, acc=0.983)``."""

    def __init__(self, iterable: Optional[Iterable] = None, *, desc: str, unit: str,
                 total: Optional[int] = None) -> None:
        self.iterable, self.desc, self.unit, self.total = iterable, desc, unit, total
        self.count, self.postfix, self.closed = 0, {}, False
        self.started = time.perf_counter()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.count += 1
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.count += n

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        seconds = time.perf_counter() - self.started
        extra = f" ({', '.join(f'{k}={v}' for k, v in self.postfix.items())})" if self.postfix \
            else ""
        plural = "" if self.count == 1 else ("es" if self.unit.endswith(("ch", "s", "x")) else "s")
        print(f"{time.strftime('%H:%M:%S')} {self.desc}: {self.count} {self.unit}{plural} in "
              f"{seconds:.1f} s{extra}", file=sys.stderr, flush=True)

    def __enter__(self) -> "StageLine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
