"""Read-side views: a delta's status carries its leaf once verified, and nothing before."""

from __future__ import annotations

from tests.service.conftest import principal_for, seal_all, write
from trueup.core.ids import record_id
from trueup.proof import encode_leaf, leaf_hash, verify_inclusion
from trueup.service.container import Services


def test_a_delta_status_carries_its_leaf_and_hash_once_verified_and_not_before(services: Services) -> None:
    who = principal_for(services)
    request_id = write(services, who, {"key": "k1", "accountId": "c1", "bits": 250, "metadata": {"po": 7}})
    queued = services.views.delta_status(who, record_id(request_id, 0))
    assert queued.record.status == "queued"
    assert (queued.head, queued.proof, queued.leaf, queued.leaf_hash) == (None, (), None, None)

    seal_all(services)
    verified = services.views.delta_status(who, record_id(request_id, 0))
    assert verified.leaf is not None and verified.head is not None
    assert (verified.leaf.customer_id, verified.leaf.delta, verified.leaf.key) == ("c1", 250, "k1")
    assert verified.leaf_hash == leaf_hash(encode_leaf(verified.leaf))
    # The hash is the one the log holds: the proof checks against the head's root.
    leaf_index = verified.record.leaf_index
    assert leaf_index is not None
    verify_inclusion(verified.leaf_hash, leaf_index, verified.head.size, verified.proof, verified.head.root)
