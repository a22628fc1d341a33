"""Secret files of the data directory: written whole, owner-only, and durable with their names."""

from __future__ import annotations

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
