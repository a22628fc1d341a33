"""Secrets kept in the data directory: created once, mode 0600, never logged."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["read_or_create_secret", "write_private_file"]


def write_private_file(path: Path, content: bytes) -> None:
    """Create ``path`` with mode 0600 exclusively; fails if it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_or_create_secret(path: Path, size: int) -> bytes:
    """The random secret stored at ``path``, created (0600) on first use."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
        write_private_file(path, secrets.token_bytes(size))
    return path.read_bytes()
