"""Secret files of the data directory: written whole, owner-only, and durable with their names."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from trueup.service import files
from trueup.service.files import write_private_file


def test_a_new_secret_file_s_name_is_made_durable_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's fsync does not make its directory entry durable: after a power cut the signing
    key could be gone while the database holds heads it signed. The directory is synced after
    the file is linked into it."""
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def recorded(fd: int) -> None:
        info = os.fstat(fd)
        synced.append(("directory" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", recorded)
    key = tmp_path / "keys" / "signing-key.pem"
    write_private_file(key, b"secret")
    assert synced == [("file", key.stat().st_ino), ("directory", key.parent.stat().st_ino)]
    assert key.read_bytes() == b"secret" and key.stat().st_mode & 0o777 == 0o600


def test_a_file_system_that_cannot_sync_a_directory_still_takes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some file systems answer a directory's fsync with EINVAL: the key is written all the same,
    # not refused as unreadable at the first start.
    real_fsync = os.fsync

    def no_directory_sync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", no_directory_sync)
    key = tmp_path / "signing-key.pem"
    write_private_file(key, b"secret")
    assert key.read_bytes() == b"secret"
