"""The newest tree head a signing key has signed, recorded in the data directory: a guard against
signing a second history of the log after its database was rolled back.

A database restored from an older backup (or another log's database, pointed at with this
log's key) holds a smaller log than the one the key signed. Served as it is, the sequencer would
sign new heads under the same key and origin at sizes it already signed with other contents:
two signed histories of one log, which anyone holding a checkpoint of each can show. The
database cannot tell, so the sequencer keeps a small file of its own, by default
``<data dir>/signing-key.pem.signed`` (named after the key file; ``TRUEUP_SIGNED_HEAD_FILE``):
one line ``<tree size> <root in lower-case hex>``, mode 0600.

The record is written only after the seal that signed the head committed, so it never claims
more than the database holds, even after a crash; atomically (a temporary file, synced, renamed
over the old one); and at most once every :data:`RECORD_INTERVAL_S` and when sealing stops, so a
restore older than about a second is caught. Before a process signs anything, :meth:`check`
compares it with the database: a database whose newest head is smaller than the record, or
whose tree of the recorded size has another root, is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trueup.proof import CompactRange, required_nodes
from trueup.service.files import SecretFileError, replace_private_file
from trueup.service.settings import Settings
from trueup.storage import Storage
from trueup.storage.heads import HeadRecord

__all__ = ["RECORD_INTERVAL_S", "LogRollbackError", "SignedHead", "SignedHeadRecord"]

log = logging.getLogger(__name__)

RECORD_INTERVAL_S = 1.0
"""The shortest time between two writes of the record while seals go on."""

_RECORD_MAX_BYTES = 200
"""More than a record's line (a size of at most 20 digits, a space, 64 hex digits, a newline)."""
_ROLLBACK_SECTION = 'docs/operations.md, "Restoring an older backup rolls the log back"'


@dataclass(frozen=True, slots=True)
class SignedHead:
    """A tree head by its size and root (32 bytes)."""

    size: int
    root: bytes

    def line(self) -> str:
        return f"{self.size} {self.root.hex()}\n"


class LogRollbackError(SecretFileError):
    """The database holds less than, or other than, what the signing key signed (or the record
    of it cannot be read or written): the message says what was found and the ways out."""


class SignedHeadRecord:
    """The record at ``path`` of the newest head this key signed and the database committed.

    One sealing loop writes it (:meth:`signed`, :meth:`flush`); not thread-safe.
    """

    def __init__(
        self,
        path: Path,
        interval_s: float = RECORD_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        *,
        named_after_key: bool = False,
    ) -> None:
        self.path = path
        self._named_after_key = named_after_key
        """The record's name is the key file's (the default place): with none of that name, a
        record of another name beside it may be this key's, kept under the key's old name."""
        self._interval = interval_s
        self._clock = clock
        self._pending: SignedHead | None = None
        """A committed head not written yet (the last write was less than an interval ago)."""
        self._written_at: float | None = None
        self._failing = False

    @classmethod
    def of(cls, settings: Settings) -> SignedHeadRecord:
        """The record a process with ``settings`` keeps: where ``TRUEUP_SIGNED_HEAD_FILE`` says,
        else in the data directory, named after the signing key's file."""
        return cls(settings.resolved_signed_head_path, named_after_key=settings.signed_head_path is None)

    def read(self) -> SignedHead | None:
        """The recorded head; ``None`` when there is no record.

        Raises:
            LogRollbackError: it cannot be read, or does not hold one ``size root`` line.
        """
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise LogRollbackError(
                f"cannot read the record of the newest signed tree head at {self.path}: {exc}"
            ) from None
        recorded = _parse(text)
        if recorded is None:
            raise LogRollbackError(
                f"{self.path} does not hold a record of a signed tree head (one line: tree size, a space, "
                f"the root in hex), it holds {text[:80]!r}: put back the file Trueup wrote, or, knowingly, "
                f"move it aside ({_ROLLBACK_SECTION})"
            )
        return recorded

    def problem(self, storage: Storage) -> str | None:
        """What is wrong with the database against the record (``None``: it holds the recorded
        head, or there is no record). Only reads.

        Raises:
            LogRollbackError: the record cannot be read.
        """
        recorded = self.read()
        if recorded is None:
            return self._other_record()
        head = storage.log.head()
        size = 0 if head is None else head.size
        older = head is None or head.size < recorded.size
        if older:
            found = (
                "the database holds no log"
                if head is None
                else f"the database's newest head has size {size} (root {head.root.hex()})"
            )
        else:
            # The root of the recorded size from the stored nodes, as a consistency proof reads it.
            needed = required_nodes(recorded.size)
            nodes = storage.log.nodes(needed)
            missing = [node for node in needed if node not in nodes]
            if missing:
                found = (
                    f"the database holds no tree of that size (tree nodes {missing[:3]} are missing; "
                    f"its newest head has size {size})"
                )
            else:
                root = CompactRange.from_nodes(recorded.size, [nodes[node] for node in needed]).root()
                if root == recorded.root:
                    return None
                found = (
                    f"the database's tree of size {recorded.size} has root {root.hex()} (its newest "
                    f"head has size {size})"
                )
        if older:
            out = f"or, knowingly, move {self.path} aside and start again ({_ROLLBACK_SECTION})"
            why = (
                "The database is older than what this key signed (restored from an older backup) "
                "or is another log's"
            )
        else:  # as large a tree, without the signed one in it
            why = (
                "The database's tree of that size is not the one this key signed: its nodes were "
                "deleted or altered (`trueup audit` checks every node against the database's signed "
                "heads), or it grew from an older backup, or it is another log's"
            )
            out = (
                "restore it from a backup that holds that head, or, knowingly, move "
                f"{self.path} aside and start again ({_ROLLBACK_SECTION})"
            )
        return (
            f"{self.path} records that this signing key signed a tree head of size {recorded.size} with "
            f"root {recorded.root.hex()}, but {found}. {why}: sealing on it would sign a second "
            "history of this log under the same key and origin. Point --data-dir or --database-url at "
            f"the database this key last sealed into, {out}"
        )

    def _other_record(self) -> str | None:
        """Where there is no record of this name: another record beside it (``*.signed``), if
        the name is the key file's. A key moved or renamed since its record was written (a key
        given by path, a restore that copied the record under the old name) would otherwise
        start a new record from whatever database it is pointed at, without a word."""
        if not self._named_after_key:
            return None
        try:
            with os.scandir(self.path.parent) as entries:
                names = sorted(e.name for e in entries if e.name.endswith(".signed") and e.is_file())
        except FileNotFoundError:  # no data directory yet: nothing beside the record either
            return None
        except OSError as exc:  # listed only here: the record's own read and write may still work
            log.warning("cannot look for other records of signed tree heads beside %s: %s", self.path, exc)
            return None
        others = [self.path.parent / name for name in names if name != self.path.name]
        others = [other for other in others if _is_record(other)]  # a record, not any file so named
        if not others:
            return None
        return (
            f"there is no record of signed tree heads at {self.path}, which is named after the signing "
            f"key's file, but {others[0]} is one, named after a key file of another name: if the key was "
            f"moved or renamed since, rename {others[0].name} to {self.path.name}; if it is another key's, "
            f"knowingly, move it aside; then start again ({_ROLLBACK_SECTION})"
        )

    def check(self, storage: Storage) -> None:
        """Refuse a database that holds less than, or other than, the record; start a record
        from the database's newest head where there is none (a first start, an upgrade).

        Raises:
            LogRollbackError: naming what was found and the ways out, or the record cannot be
                read or written.
        """
        problem = self.problem(storage)
        if problem is not None:
            raise LogRollbackError(problem)
        if self.path.exists():
            return
        head = storage.log.head()
        if head is None:
            return  # the first seal records it
        try:
            self._write(SignedHead(head.size, head.root))
        except OSError as exc:
            raise LogRollbackError(
                f"cannot write the record of the newest signed tree head at {self.path}: "
                f"{exc.strerror or exc} (TRUEUP_SIGNED_HEAD_FILE names another place for it)"
            ) from None
        log.debug("recording the newest signed tree head (size %d) in %s", head.size, self.path)

    def signed(self, head: HeadRecord) -> None:
        """``head`` was signed and its seal committed: record it, now if the last write was
        an interval ago or more, else at the next :meth:`flush`."""
        self._pending = SignedHead(head.size, head.root)
        self.flush(due_only=True)

    def flush(self, due_only: bool = False) -> None:
        """Write the head :meth:`signed` last noted, if not written yet (``due_only``: only if
        the last write was an interval ago or more). A failure is logged, not raised: sealing
        goes on, with the record as it was (it never claims more than the database holds)."""
        pending = self._pending
        if pending is None:
            return
        now = self._clock()
        if due_only and self._written_at is not None and now - self._written_at < self._interval:
            return
        self._written_at = now
        try:
            self._write(pending)
        except (OSError, LogRollbackError) as exc:
            if not self._failing:
                log.error("cannot record the newest signed tree head in %s: %s", self.path, exc)  # noqa: TRY400 - no traceback: the file's error says it
            self._failing = True
            return
        if self._failing:
            log.info("the newest signed tree head is recorded in %s again", self.path)
        self._failing = False
        self._pending = None

    def _write(self, head: SignedHead) -> None:
        # Never back: a process that lost the sequencer role may write after the one that took
        # it over from it on this host (both heads are committed; the larger one guards more).
        current = None
        with contextlib.suppress(LogRollbackError):  # one that cannot be read is replaced
            current = self.read()
        if current is not None and current.size > head.size:
            return
        replace_private_file(self.path, head.line().encode("ascii"))


def _is_record(path: Path) -> bool:
    """Whether ``path`` holds a record of a signed tree head (one that cannot be read does not)."""
    try:
        with path.open("rb") as file:
            text = file.read(_RECORD_MAX_BYTES + 1)
        return len(text) <= _RECORD_MAX_BYTES and _parse(text.decode("ascii")) is not None
    except (OSError, UnicodeDecodeError):
        return False


def _parse(text: str) -> SignedHead | None:
    """The head of a record's text (``<size> <root hex>``, a newline after it), or ``None``."""
    fields = text.split()
    if len(fields) != 2 or not fields[0].isdigit() or len(fields[1]) != 64:
        return None
    try:
        return SignedHead(int(fields[0]), bytes.fromhex(fields[1]))
    except ValueError:
        return None
