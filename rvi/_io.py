"""File access: atomic writes (a temporary file beside the target, then a rename over it) and
reading the torch and result files rvi writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Union

import torch


@contextlib.contextmanager
def atomic_write(path: Union[str, Path], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path`` in one rename, on error
    it is removed and ``path`` is untouched. The file gets the usual umask permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_torch_file(path: Path, missing: str, unreadable: str) -> Any:
    """``torch.load(path)`` on the CPU with ``weights_only=True``.

    Raises:
        FileNotFoundError: ``missing``, when there is no such file.
        ValueError: ``"{unreadable}: {torch's error}"``, when torch cannot read it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(missing)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure of a foreign or damaged file
        raise ValueError(f"{unreadable}: {err}") from err


def saved_file(folder: Union[str, Path], name: str, what: str) -> Path:
    """``folder/name``, the file that makes ``folder`` a saved ``what`` (e.g. "rvi result").

    Raises:
        FileNotFoundError: the folder has no such file.
    """
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"no {what} in {folder} ({name} missing)")
    return path
