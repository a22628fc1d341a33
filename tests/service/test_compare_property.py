"""Through the real store: a removed, doubled or sign-flipped delta is always found, month named."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service.conftest import principal_for, seal_all, write
from trueup.service.container import open_services
from trueup.service.settings import Settings

histories = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=6), st.integers(min_value=-5000, max_value=5000).filter(bool)
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    histories,
    st.data(),
    st.sampled_from(["missing", "duplicated", "sign_flipped"]),
    st.sampled_from(["yours", "theirs"]),
)
def test_one_wrong_delta_is_found_in_its_month(
    history: list[tuple[int, int]], data: st.DataObject, kind: str, party: str
) -> None:
    target = data.draw(st.integers(min_value=0, max_value=len(history) - 1))
    with tempfile.TemporaryDirectory() as tmp:
        services = open_services(replace(Settings(), data_dir=Path(tmp), database_url=None))
        try:
            who = principal_for(services)
            write(
                services,
                who,
                *[
                    {
                        "key": f"k{i}",
                        "accountId": "prop",
                        "bits": amount,
                        "occurredAt": f"2026-{month:02d}-{1 + i % 27:02d}T00:00:00Z",
                    }
                    for i, (month, amount) in enumerate(history)
                ],
            )
            seal_all(services)
            neutral = sum(amount for _, amount in history)
            wrong_amount = history[target][1]
            claimed = {
                "missing": neutral - wrong_amount,
                "duplicated": neutral + wrong_amount,
                "sign_flipped": neutral - 2 * wrong_amount,
            }[kind]
            yours, theirs = (claimed, neutral) if party == "yours" else (neutral, claimed)
            result, _, _ = services.balances.compare(
                who,
                {"customerId": "prop", "yourBalance": yours, "theirBalance": theirs, "startingBalance": 0},
            )
        finally:
            services.close()
    assert result.report is not None
    month = f"2026-{history[target][0]:02d}"
    windows = [w for w in result.report.windows if w.party == party]
    assert month in [w.period for w in windows]
    candidates = {(c.leaf_index, c.explanation) for w in windows for c in w.candidates}
    assert (target, kind) in candidates or any(
        c.delta == wrong_amount and c.explanation == kind and w.period == month
        for w in windows
        for c in w.candidates
    )
