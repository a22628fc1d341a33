"""Read-side views of writes and records: what was accepted and how far it got."""

from __future__ import annotations

from dataclasses import dataclass

from trueup.core.errors import NotFoundError
from trueup.core.ids import parse_anchor_id, parse_record_id
from trueup.core.json_text import quoted
from trueup.proof import LeafFields, encode_leaf, leaf_hash
from trueup.service.keys import Principal
from trueup.service.log import LogService
from trueup.service.sealing import record_leaf
from trueup.storage import Storage
from trueup.storage.heads import HeadRecord
from trueup.storage.write_views import RecordView, RequestView

__all__ = ["DeltaStatus", "RequestStatus", "ViewService"]


@dataclass(frozen=True, slots=True)
class DeltaStatus:
    """A delta's state; once verified, its leaf and its inclusion proof in the newest signed
    head: all a client needs to check it, with the log's key, from this reply alone."""

    record: RecordView
    head: HeadRecord | None
    proof: tuple[bytes, ...]
    leaf: LeafFields | None = None

    @property
    def leaf_hash(self) -> bytes | None:
        """RFC 9162 §2.1.1 ``SHA-256(0x00 || leaf)`` of its leaf, once verified."""
        return None if self.leaf is None else leaf_hash(encode_leaf(self.leaf))


@dataclass(frozen=True, slots=True)
class RequestStatus:
    request: RequestView
    status: str
    head: HeadRecord | None

    @property
    def verified_at(self) -> str | None:
        """When the seal that settled the request's last item signed its head; ``None`` while
        it is queued, and for a request none of whose items was verified (``failed``)."""
        return None if self.status in ("queued", "failed") else self.request.verified_at


class ViewService:
    def __init__(self, storage: Storage, log: LogService) -> None:
        self._storage = storage
        self._log = log

    def delta_status(self, principal: Principal, record_id: str) -> DeltaStatus:
        """``rec_…`` or ``a_…``: status, and once verified the proof in the newest head."""
        record = self.record(principal, record_id)
        if record.leaf_index is None:
            return DeltaStatus(record, None, ())
        head = self._log.latest()
        path = tuple(self._log.inclusion_path(record.leaf_index, head.size))
        return DeltaStatus(record, head, path, record_leaf(record))

    def request_status(self, principal: Principal, request_id: str, limit: int, offset: int) -> RequestStatus:
        """A write request of the caller's tenant with one page of items.

        ``status``: ``queued`` while any item awaits sealing; then ``verified`` (all sealed),
        ``failed`` (none sealed) or ``partially_failed``. ``head`` is the tree head that
        sealed the last item, once the request is complete.
        """
        view = self._storage.writes.request(principal.tenant_id, request_id, limit, offset)
        if view is None:
            raise NotFoundError(f"requestId {quoted(request_id[:64])} not found")
        repeats = view.repeat_statuses
        verified = (view.stored_count - view.pending_count - view.failed_count) + repeats.get("verified", 0)
        failed = view.failed_count + repeats.get("failed", 0)
        if view.pending_count > 0 or repeats.get("queued", 0) > 0:
            status = "queued"
        elif failed == 0 and verified > 0:
            status = "verified"
        elif verified == 0:
            status = "failed"  # every item failed, or none was accepted at all
        else:
            status = "partially_failed"
        head = None
        if status != "queued" and view.sealed_size is not None:
            head = self._storage.log.head_at(view.sealed_size)
        return RequestStatus(request=view, status=status, head=head)

    def record(self, principal: Principal, record_id: str) -> RecordView:
        """A delta by ``rec_…`` id or ``a_…`` anchor id, within the caller's tenant."""
        leaf_index = parse_anchor_id(record_id)
        if leaf_index is not None:
            found = self._storage.writes.record_at_leaf(principal.tenant_id, leaf_index)
        else:
            parsed = parse_record_id(record_id)
            found = None if parsed is None else self._storage.writes.record(principal.tenant_id, *parsed)
        if found is None:
            raise NotFoundError(f"record {quoted(record_id[:80])} not found")
        return found
