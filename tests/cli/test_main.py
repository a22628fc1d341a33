"""The ``trueup`` command's entry point: what it says, in one line, when a command cannot go on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trueup.cli import logkey
from trueup.cli.main import main


def _trueup(args: list[str], stdout: object = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trueup.cli.main", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_argument_that_is_not_utf8_is_refused_by_its_place(capsys: pytest.CaptureFixture[str]) -> None:
    """Bytes that are not UTF-8 reach ``sys.argv`` as lone surrogates: used as an id, a tenant
    name or a URL, each failed with a traceback of its own."""
    not_utf8 = os.fsdecode(b"pk_live_\xff")
    assert main(["keys", "revoke", not_utf8]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "trueup: argument 3 is not UTF-8 text: pk_live_\\xff\n")


def test_an_interrupt_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while a command waits (on a server, a back-off, a database) ends it with a line,
    not with a traceback from wherever it was waiting."""

    def interrupted(argv: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(logkey, "run", interrupted)
    assert main(["log-key"]) == 130
    assert capsys.readouterr().err == "trueup log-key: interrupted\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_new_key_that_cannot_be_written_out_is_named_for_revoking(tmp_path: Path) -> None:
    """stdout on a full disk: the key is created, but nobody has its secret; the line says which
    key it is, and every other command says the write failed in one line too."""
    with Path("/dev/full").open("w") as full:
        created = _trueup(["keys", "create", "--data-dir", str(tmp_path)], stdout=full)
        listed = _trueup(["keys", "list", "--data-dir", str(tmp_path)], stdout=full)
    assert created.returncode == 1
    assert created.stderr.startswith("trueup keys create: key ")
    key_id = created.stderr.split()[4]
    assert created.stderr == (
        f"trueup keys create: key {key_id} was created but could not be written out (No space left on "
        f"device): revoke it (trueup keys revoke {key_id}) and create another\n"
    )
    assert (listed.returncode, listed.stderr) == (1, "trueup keys: [Errno 28] No space left on device\n")
    shown = _trueup(["keys", "list", "--data-dir", str(tmp_path)])
    assert key_id in shown.stdout  # it was created: revoke it as the line says
    revoked = _trueup(["keys", "revoke", key_id, "--data-dir", str(tmp_path)])
    assert (revoked.returncode, revoked.stdout) == (0, f"revoked {key_id}\n")
