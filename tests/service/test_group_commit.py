"""The group committer hands replies back to the event loop of each caller, a group at a time,
and keeps going when a caller has gone away."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import replace

import pytest

from tests.conftest import disk_full
from tests.service.conftest import principal_for
from trueup.core.errors import UnavailableError
from trueup.core.ids import new_request_id
from trueup.service.container import Services
from trueup.storage.write_drafts import DeltaDraft, WriteDraft


def _draft(tenant_id: str, key: str) -> WriteDraft:
    item = DeltaDraft(
        key=key,
        customer_id="c1",
        amount=5,
        reason="",
        metadata=None,
        occurred_at="2026-01-15T00:00:00.000000Z",
        explicit_time=True,
        salt=secrets.token_bytes(16),
    )
    return WriteDraft(
        tenant_id=tenant_id,
        request_id=new_request_id(secrets.token_bytes(7), 1_764_000_000_000),
        source="writes",
        accepted_at="2026-01-15T00:00:00.000000Z",
        items=[item],
    )


def test_many_concurrent_callers_each_get_their_own_result(services: Services) -> None:
    tenant = principal_for(services).tenant_id
    drafts = [_draft(tenant, f"k{i}") for i in range(200)]

    async def commit_all() -> list[str]:
        results = await asyncio.gather(*(services.committer.commit(d) for d in drafts))
        return [result.request_id for result in results]

    assert asyncio.run(commit_all()) == [d.request_id for d in drafts]


def test_a_caller_that_went_away_does_not_stop_the_others(services: Services) -> None:
    tenant = principal_for(services).tenant_id

    async def scenario() -> str:
        with services.storage.engine.write():  # on SQLite, the committer waits for the writer
            first = asyncio.ensure_future(services.committer.commit(_draft(tenant, "first")))
            await asyncio.sleep(0.05)  # the committer has taken "first" and waits
            gone = asyncio.ensure_future(services.committer.commit(_draft(tenant, "gone")))
            waiting = asyncio.ensure_future(services.committer.commit(_draft(tenant, "waiting")))
            await asyncio.sleep(0)
            gone.cancel()  # "gone" and "waiting" are queued together behind "first"
        await asyncio.wait_for(first, timeout=30)
        return (await asyncio.wait_for(waiting, timeout=30)).request_id

    assert asyncio.run(scenario())
    # What the departed caller sent was committed anyway; a retry with its key is a duplicate.
    with services.storage.engine.read() as tx:
        keys = {row[0] for row in tx.execute("SELECT item_key FROM deltas WHERE tenant_id = ?", (tenant,))}
    assert keys == {"first", "gone", "waiting"}


def test_a_failing_hook_after_a_durable_commit_neither_loses_the_reply_nor_the_thread(
    services: Services,
) -> None:
    """The group is durable once committed: its callers get their replies, and the next groups
    are committed, even when what runs after the commit (the sequencer's trigger) raises."""
    tenant = principal_for(services).tenant_id

    def broken(stored: int) -> None:
        raise RuntimeError("the trigger failed")

    services.committer.on_stored = broken

    async def commit_two() -> list[str]:
        first = await asyncio.wait_for(services.committer.commit(_draft(tenant, "hook-1")), 60)
        second = await asyncio.wait_for(services.committer.commit(_draft(tenant, "hook-2")), 60)
        return [first.request_id, second.request_id]

    assert len(set(asyncio.run(commit_two()))) == 2
    assert services.storage.log.queue_stats()[0] == 2


def test_group_commits_failing_in_a_row_log_one_traceback(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk under load failed every group: a traceback each flooded the log (500,000
    lines a minute). The first failure in a row is logged whole, the others a line each."""
    tenant = principal_for(services).tenant_id

    async def commit(key: str) -> object:
        one = _draft(tenant, key)
        # 500 deltas: more than the pages a SQLite file holds with room to spare
        draft = replace(one, items=[one.items[0]._replace(key=f"{key}-{i}") for i in range(500)])
        try:
            return await asyncio.wait_for(services.committer.commit(draft), 60)
        except UnavailableError as exc:
            return exc

    with caplog.at_level(logging.ERROR, logger="trueup.service.group_commit"):
        with disk_full(services):
            refused = [asyncio.run(commit(f"full-{i}")) for i in range(3)]
        assert not isinstance(asyncio.run(commit("room")), Exception)
        with disk_full(services):
            assert isinstance(asyncio.run(commit("full-again")), UnavailableError)
    assert all(isinstance(outcome, UnavailableError) for outcome in refused)
    logged = [(record.getMessage(), record.exc_info is not None) for record in caplog.records]
    assert [whole for _, whole in logged] == [True, False, False, True]
    # each failed group is named by the id its replies quote
    ids = [outcome.incident_id for outcome in refused if isinstance(outcome, UnavailableError)]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"err_[0-9a-f]{16}", str(i)) for i in ids)
    assert logged[0][0] == f"group commit {ids[0]} of 1 requests failed"
    assert logged[1][0].startswith(f"group commit {ids[1]} of 1 requests failed again (2 in a row): ")
    assert logged[2][0].startswith(f"group commit {ids[2]} of 1 requests failed again (3 in a row): ")
