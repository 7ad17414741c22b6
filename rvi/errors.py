"""rvi's own exception classes, for errors a built-in class does not describe well enough.

Each subclasses the built-in error a caller would already catch (``ValueError``, ``ImportError``,
``FileExistsError``), so ``except ValueError`` keeps working. The command line turns these, and
the built-in errors a user's input, files or environment cause, into one line and exit code 2
(:func:`rvi.cli.main`); anything else is a bug in rvi and shows its traceback.
"""

from __future__ import annotations


class RviError(Exception):
    """Base of rvi's own errors: each one is caused by input, files or the environment, not by
    a bug in rvi."""


class MissingPackageError(RviError, ImportError):
    """An optional package a chosen feature needs is not installed; the message names the
    ``pip install "rvi[extra]"`` that installs it."""


class UnreadableFileError(RviError, ValueError):
    """A file exists but cannot be read as what it should be (truncated, damaged, another
    format)."""


class NonFiniteOutputError(RviError, ValueError):
    """A model returned NaN or infinite logits; the message names the model."""


class FolderBusyError(RviError, FileExistsError):
    """Another process is writing the same result folder (it holds the folder's lock)."""


class ResultNotSavedError(RviError, OSError):
    """A computed result could not be written where asked; its records were saved in
    :attr:`fallback` instead."""

    def __init__(self, message: str, fallback) -> None:
        super().__init__(message)
        self.fallback = fallback
