"""A checkpoint a check rejected, kept beside the held file it was checked against: evidence.

Where a check finds a checkpoint signed by the pinned key that does not extend the one held (a
second history at one size, a smaller or rewritten newest one), both are what anyone holding the
key can show. ``trueup follow`` and ``trueup verify --held`` keep the rejected one as
``CHECKPOINT_FILE.rejected`` (``.rejected.2`` and on: never written over).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from trueup.cli.keyarg import MAX_NOTE_BYTES
from trueup.proof import ProofError, VerifierKey
from trueup.proof.note import split_note

__all__ = ["keep_rejected", "kept_note"]

_MAX_REJECTED = 100
"""At most this many rejected checkpoints are kept beside a file."""


def keep_rejected(path: Path, note: str | None, key: VerifierKey) -> str:
    """Keep ``note``, the checkpoint signed by the pinned key that a check rejected, beside the
    file as ``NAME.rejected`` (``NAME.rejected.2`` and on where that holds another: evidence
    is never written over, and the same note is kept once). Returns what to add to the FAILED
    line."""
    if note is None:
        return ""
    try:
        kept = kept_note(note, key).encode()
    except ProofError as exc:  # called while a failure is said: never an error of its own
        return f"; the checkpoint it rejected was not kept: {exc}"
    # Loaded only here: the offline verifier (trueup verify) loads nothing of Trueup beyond the
    # proof layer and the command line unless it has a fork's evidence to keep; the writer is
    # the standard library's os calls, shared with the server's files.
    from trueup.service.files import write_private_file  # noqa: PLC0415

    target = path.resolve()
    for number in range(1, _MAX_REJECTED + 1):
        rejected = target.with_name(f"{target.name}.rejected" + ("" if number == 1 else f".{number}"))
        try:
            write_private_file(rejected, kept)
        except FileExistsError:
            with contextlib.suppress(OSError):
                if rejected.read_bytes() == kept:
                    return f"; the checkpoint it rejected is kept in {rejected} (since an earlier run)"
            continue
        except OSError as exc:
            return f"; the checkpoint it rejected could not be kept: {exc}"
        return f"; the checkpoint it rejected is kept in {rejected}"
    return f"; the checkpoint it rejected was not kept: {_MAX_REJECTED} are kept beside {path} already"


def kept_note(note: str, key: VerifierKey) -> str:
    """The note as the file keeps it: its text and the pinned key's signature lines only (other
    signatures are not checked, and a note padded with them would fill the file)."""
    text, signatures = split_note(note)
    lines = note[len(text) + 1 : -1].split("\n")  # after the blank line, without the last newline
    mine = [
        line
        for line, s in zip(lines, signatures, strict=True)
        if (s.name, s.key_id) == (key.name, key.key_id)
    ]
    kept = text + "\n" + "".join(line + "\n" for line in mine)
    if len(kept.encode()) > MAX_NOTE_BYTES:
        raise ProofError(
            f"the server's checkpoint is longer than a checkpoint can be ({MAX_NOTE_BYTES} bytes)"
        )
    return kept
