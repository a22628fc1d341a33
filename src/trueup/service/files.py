"""Secrets kept in the data directory: created once, mode 0600, never logged."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from pathlib import Path

__all__ = [
    "DataDirectoryError",
    "SecretFileError",
    "make_data_dir",
    "read_or_create_secret",
    "replace_private_file",
    "warn_if_shared",
    "write_private_file",
]

log = logging.getLogger(__name__)


def write_private_file(path: Path, content: bytes) -> None:
    """Create ``path`` (mode 0600) holding ``content``; ``FileExistsError`` if it exists.

    Written to a temporary file first and linked into place, so another process never reads
    a file that exists but is still empty.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # atomic, and refuses to replace an existing file
    finally:
        temporary.unlink()
    _sync_directory(path.parent)


def replace_private_file(path: Path, content: bytes, mode: int = 0o600) -> None:
    """Put ``content`` at ``path`` (``mode``, 0600 unless given) in place of whatever is there,
    atomically: a reader, or a start after a crash or a power cut, finds the old content or the
    new, whole.

    Written to a temporary file beside it, synced, renamed over ``path``, then the directory
    synced (the rename is an entry of the directory, which the file's own sync does not cover).
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            if mode != 0o600:
                os.fchmod(fd, mode)  # exactly, whatever the umask
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the directory's entries durable: a file's own fsync does not cover its name, and a
    signing key lost to a power cut after the database recorded heads it signed would leave a
    data directory that no longer starts."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # A file system that cannot sync a directory says so (EINVAL, EBADF); there the file's
        # own fsync is what it offers, as SQLite and PostgreSQL take it too.
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


class SecretFileError(ValueError):
    """A secret file of the data directory (the signing key, the key pepper) is missing where
    the database says it must exist, or cannot be read; the message names it."""


class DataDirectoryError(SecretFileError):
    """The data directory cannot be made or used (a file stands at its path, no permission);
    the message names it. A command stops on it in one line, as on a secret file it cannot use."""


def make_data_dir(path: Path) -> None:
    """Make the data directory (0700) if it is missing, or :class:`DataDirectoryError`."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirectoryError(f"cannot use the data directory {path}: {_why(path, exc)}") from None


def _why(path: Path, exc: OSError) -> str:
    """Why a directory cannot be made at ``path``: "File exists" said of a file standing there
    reads as if the directory were fine, so that case is named."""
    if isinstance(exc, FileExistsError) and path.exists() and not path.is_dir():
        return "it is a file, not a directory"
    return exc.strerror or str(exc)


def read_or_create_secret(path: Path, size: int, what: str) -> bytes:
    """The random secret stored at ``path``, created (0600) on first use with ``size`` bytes.

    Raises:
        SecretFileError: when it exists and cannot be read, or holds fewer than ``size`` bytes
            (an empty placeholder, a copy cut short: no secret, though it reads), naming
            ``what`` and ``path``.
    """
    try:
        try:
            secret = path.read_bytes()
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                write_private_file(path, secrets.token_bytes(size))
            secret = path.read_bytes()
    except OSError as exc:
        raise SecretFileError(f"cannot read {what} at {path}: {exc.strerror or exc}") from None
    if len(secret) < size:
        raise SecretFileError(
            f"{what} at {path} holds {len(secret)} bytes, fewer than {size}: it is not one Trueup made "
            "(a copy cut short?); copy it whole from the data directory it was created in, or remove "
            "it if this database has no keys yet"
        )
    return secret


def warn_if_shared(path: Path, what: str) -> None:
    """Log a warning when users other than the owner may read or change ``path``: one created
    by Trueup is 0600, but a copy, a restore or an older version may have left it open."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:  # not there (yet): nothing to say
        return
    if mode & 0o077:
        log.warning("%s %s has mode %04o: other users may read it; chmod 600 it", what, path, mode)
