"""``trueup follow CHECKPOINT_FILE --key KEY``: check that the log was only appended to since
the checkpoint you hold, and hold the newer one from then on.

The monitor's side of the log, for the party that does not run the server: run it from cron.
``CHECKPOINT_FILE`` holds a signed checkpoint (a C2SP signed note) you verified before. The
command asks the server for its newest checkpoint and an RFC 9162 consistency proof from the
size held (:meth:`trueup.sdk.Client.follow`), checks both against the pinned key alone and,
when they pass, puts the newer checkpoint in the file (atomically: a crash leaves the old one or
the new, whole). A check that fails leaves the file as it was: it is the evidence, with the
line printed, that the log signed two histories.

``--init`` starts following: the file must not exist yet, and is created holding the server's
newest checkpoint once its signature checks out (trust on first use of the log's state; the key
itself must be pinned out of band, from ``trueup log-key`` on the server's host). Without it, a
missing file is an error, so a path typed wrong never restarts a monitor from scratch.

Prints one line; exits 0 when the log was only appended to (or the file was started), 1 naming
the check that failed (or the server's refusal), 2 when an argument or the file is wrong, and 3
when the server could not be asked (:mod:`trueup.cli.unchecked`), which proves nothing either
way and leaves the file as it was.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trueup.cli.keyarg import KeyArgumentError, add_key_arguments, read_verifier_key
from trueup.cli.proof import add_server_url
from trueup.cli.unchecked import NOT_CHECKED, nothing_checked
from trueup.proof import ProofError, TreeHead, VerifierKey, verify_checkpoint
from trueup.proof.errors import shown
from trueup.sdk import Client, TrueupError
from trueup.service.files import replace_private_file, write_private_file

__all__ = ["run"]

_MAX_NOTE_BYTES = 64 * 1024
"""A checkpoint note is a few hundred bytes; a file much larger holds something else."""


class _FileError(Exception):
    """The checkpoint file cannot be used as asked (exit 2): the message says why."""


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trueup follow", description=__doc__)
    parser.add_argument("checkpoint_file", help="the file holding the signed checkpoint you follow from")
    add_key_arguments(parser)
    add_server_url(parser)
    parser.add_argument(
        "--init",
        action="store_true",
        help="create CHECKPOINT_FILE from the server's newest checkpoint (it must not exist yet)",
    )
    args = parser.parse_args(argv)
    path = Path(args.checkpoint_file)
    try:
        key = read_verifier_key(args.key)
        origin = args.origin or key.name
        held = None if _starting(path, args.init) else _held(path, key, origin)
    except (KeyArgumentError, _FileError) as exc:
        print(f"trueup follow: {exc}")
        return 2
    newest = _newest(args.url, held, key, origin)
    if isinstance(newest, int):
        return newest
    note, head = newest
    try:
        if held is None:
            write_private_file(path, note.encode())
        elif note != held[0]:
            replace_private_file(path, note.encode())
    except FileExistsError:  # created meanwhile by another run
        print(f"trueup follow: {path} was created meanwhile: follow from it without --init")
        return 2
    except OSError as exc:
        print(f"trueup follow: the checkpoint was checked, but {path} cannot be written: {exc}")
        return 2
    print(_ok_line(path, None if held is None else held[1], head))
    return 0


def _newest(
    url: str, held: tuple[str, TreeHead] | None, key: VerifierKey, origin: str
) -> tuple[str, TreeHead] | int:
    """The server's newest checkpoint and its head, checked against the pinned key (and proven
    to extend ``held``, when one is held); else the exit status, once its line is printed."""
    with Client(url, retries=2) as client:
        try:
            if held is None:
                note = client.log_checkpoint()
                return note, verify_checkpoint(note, key, origin=origin)
            followed = client.follow(held[0], key, origin=origin)
        except ProofError as exc:
            print(f"FAILED: {exc}")
            return 1
        except TrueupError as exc:
            if nothing_checked(exc.status, exc.code):
                print(f"NOT CHECKED: the server could not be asked: {shown(str(exc), 300)}")
                return NOT_CHECKED
            print(f"FAILED: the server refused: {shown(str(exc), 300)}")
            return 1
    return followed.checkpoint, followed.head


def _starting(path: Path, init: bool) -> bool:
    """Whether nothing is held yet: ``--init`` starts a file that must not exist yet."""
    if init and path.exists():
        raise _FileError(f"{path} exists already: follow from it without --init")
    return init


def _held(path: Path, key: VerifierKey, origin: str) -> tuple[str, TreeHead]:
    """The checkpoint note held in ``path`` and its head, checked against the pinned key."""
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_NOTE_BYTES + 1)
    except FileNotFoundError:
        raise _FileError(
            f"{path} does not exist: --init creates it from the server's newest checkpoint"
        ) from None
    except OSError as exc:  # a directory, no permission
        raise _FileError(f"cannot read {path}: {exc}") from None
    if len(raw) > _MAX_NOTE_BYTES:
        raise _FileError(f"{path} is larger than a checkpoint can be ({_MAX_NOTE_BYTES} bytes)")
    try:
        note = raw.decode("utf-8")
        return note, verify_checkpoint(note, key, origin=origin)
    except (UnicodeDecodeError, ProofError) as exc:
        raise _FileError(f"{path} holds no checkpoint signed by the pinned key: {exc}") from None


def _ok_line(path: Path, old: TreeHead | None, new: TreeHead) -> str:
    state = f"root {new.root.hex()}, signed by the pinned key"
    if old is None:
        return (
            f"OK: following the log from its newest checkpoint, {_leaves(new.size)}, {state}; held in {path}"
        )
    if new.size == old.size:
        return f"OK: the log is as held, {_leaves(new.size)}, {state}"
    return (
        f"OK: the log grew from {old.size} to {_leaves(new.size)} and was only appended to "
        f"(consistency proven), {state}; held in {path}"
    )


def _leaves(size: int) -> str:
    return "1 leaf" if size == 1 else f"{size} leaves"
