"""File access: atomic writes (a temporary file beside the target, then a rename over it),
locks that keep two processes from writing one result folder or cache entry, and reading the
torch and result files rvi writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Iterator, Union

import torch

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None
    import msvcrt

from ..errors import FolderBusyError, UnreadableFileError


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


#: Lock files this process holds (their absolute paths): a nested :func:`file_lock` of the
#: same path is a no-op, so the command line can hold a result folder's lock across the run
#: and :meth:`rvi.BenchmarkResult.save` inside it.
_HELD: set = set()


@contextlib.contextmanager
def file_lock(lock_path: Union[str, Path], *, wait: bool, what: str) -> Iterator[None]:
    """Hold an exclusive OS lock on the file ``lock_path`` (created for the block and removed
    after it; the OS releases the lock if the process dies).

    Args:
        wait: block until the lock is free; else raise at once.
        what: what the lock guards, for the error (e.g. "out folder 'rvi-results'").

    Raises:
        rvi.errors.FolderBusyError: (a ``FileExistsError``) ``wait`` is False and another
            process holds the lock; the message names its process id.
    """
    lock_path = Path(lock_path).absolute()
    if str(lock_path) in _HELD:
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _lock(fd, wait):
            os.lseek(fd, 0, os.SEEK_SET)
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FolderBusyError(f"{what} is being written by another rvi run (process "
                                  f"{holder}); wait for it to finish or choose another folder")
        try:  # the holder before us may have removed the file we locked: lock the new one
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD.add(str(lock_path))
        try:
            yield
        finally:
            _HELD.discard(str(lock_path))
            os.unlink(lock_path)  # while still locked, so no one holds a removed file's lock
    finally:
        os.close(fd)  # releases the lock


def _lock(fd: int, wait: bool) -> bool:
    """Take the exclusive lock on ``fd``; False when ``wait`` is False and it is held."""
    if fcntl is None:  # pragma: no cover (Windows; rvi's CI runs on Linux)
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not wait:
                    return False
                time.sleep(0.2)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def lock_path_of(target: Union[str, Path]) -> Path:
    """The lock file that guards ``target`` (a folder or file): ``.NAME.lock`` beside it."""
    target = Path(target).absolute()
    return target.parent / f".{target.name}.lock"


def read_torch_file(path: Path, missing: str, unreadable: str) -> Any:
    """``torch.load(path)`` on the CPU with ``weights_only=True``.

    Raises:
        FileNotFoundError: ``missing``, when there is no such file.
        rvi.errors.UnreadableFileError: (a ``ValueError``) ``"{unreadable}: {torch's error}"``,
            when torch cannot read it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(missing)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure of a foreign or damaged file
        raise UnreadableFileError(f"{unreadable}: {first_line(err)}") from err


def first_line(err: BaseException) -> str:
    """The first line of an error's message (torch appends pages of advice to some)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def saved_file(folder: Union[str, Path], name: str, what: str) -> Path:
    """``folder/name``, the file that makes ``folder`` a saved ``what`` (e.g. "rvi result").

    Raises:
        FileNotFoundError: the folder has no such file.
    """
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"no {what} in {folder} ({name} missing)")
    return path
