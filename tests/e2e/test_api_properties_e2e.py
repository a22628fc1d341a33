"""Properties of the HTTP API, checked with generated input against the real server process on
SQLite and PostgreSQL.

- A write answered 202 stores exactly what was sent: each item's leaf carries its key, account,
  amount, the digest of its metadata (RFC 8785, computed here with another implementation) and
  its ``occurredAt`` in UTC to the microsecond, and derive lists it with the same amount, key
  and time.
- A valid write or emit with one field made invalid (every value of a table of them, and
  generated valid items around one) is a 400 whose message starts with that field's path, in
  the error envelope, and stores nothing: every key stays free.
- An odd value of one derive query parameter is a 200, or a 4xx naming that parameter; a derive
  of any in-range ``startingBalance`` adds the deltas to it exactly, and compare agrees.

Every reply is JSON in the documented envelope and none is a 5xx. The examples are
derandomized and bounded, so a run is the same every time and takes a few seconds per backend.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import Running
from tests.e2e.server import wait_until
from trueup.core.json_text import quoted
from trueup.core.scopes import DERIVE_PARAMS

pytestmark = pytest.mark.e2e

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)

_serial = itertools.count()

# -- the envelope --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(running: Running) -> Iterator[httpx.Client]:
    """One connection to the module's server, with its key: every example reuses it."""
    with httpx.Client(base_url=running.url, headers=running.headers, timeout=30) as session:
        yield session


def _document(reply: httpx.Response) -> dict[str, Any]:
    """The reply's JSON document, checked against the envelope its status calls for."""
    assert reply.status_code < 500, reply.text
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    document = reply.json()
    assert isinstance(document, dict), reply.text
    if reply.status_code >= 400:
        assert document["success"] is False, reply.text
        assert document["statusCode"] == reply.status_code, reply.text
        assert isinstance(document["error"], str) and document["error"], reply.text
        assert re.fullmatch(r"[A-Z][A-Z_]*", document["code"]), reply.text
        assert isinstance(document["message"], str) and document["message"], reply.text
    else:
        assert document["success"] is True and "data" in document, reply.text
    return document


# -- what is sent --------------------------------------------------------------------------------

# Text a key or reason may hold: any Unicode scalar value but NUL (I-JSON, RFC 7493).
_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=24)
_account = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True).filter(lambda s: s not in {".", ".."})
_amount = st.one_of(st.sampled_from([1, -1, 10**9, -(10**9)]), st.integers(-(10**9), 10**9).filter(bool))
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53 - 1), 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_metadata = st.dictionaries(
    _text,
    st.recursive(
        _scalar,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
        max_leaves=6,
    ),
    max_size=4,
)


@st.composite
def _occurred_at(draw: st.DrawFn) -> tuple[str, str]:
    """An RFC 3339 time with an offset and 0-9 fraction digits, and the UTC form stored for it
    (microseconds, digits beyond the sixth dropped)."""
    utc = draw(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 11, 29))).replace(
        microsecond=0
    )
    digits = draw(st.sampled_from(["", "5", "123456", "999999", "1234567", "000000009"]))
    offset = draw(st.sampled_from([0, 1, -1, 59, 60, -60, 330, -599, 23 * 60 + 59, -(23 * 60 + 59)]))
    utc += dt.timedelta(microseconds=int(digits[:6].ljust(6, "0")) if digits else 0)
    local = utc + dt.timedelta(minutes=offset)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "")
    sign = "+" if offset >= 0 else "-"
    text += "Z" if offset == 0 else f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    return text, utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@st.composite
def _item(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A valid write item (with a key no other example uses) and the stored ``occurredAt`` it
    must get, or None when it leaves the time to the server."""
    item: dict[str, Any] = {
        "key": f"prop-{next(_serial)}-" + draw(_text),
        "accountId": draw(_account),
        "bits": draw(_amount),
    }
    stored = None
    if draw(st.booleans()):
        item["metadata"] = draw(_metadata)
    if draw(st.booleans()):
        item["occurredAt"], stored = draw(_occurred_at())
    if draw(st.booleans()):
        item["reason"] = draw(_text)
    return item, stored


def _digest(metadata: object) -> str:
    return hashlib.sha256(rfc8785.dumps(metadata or {})).hexdigest()


def _wait_verified(client: httpx.Client, request_id: str) -> dict[str, Any]:
    def verified() -> bool:
        view = client.get(f"/api/v1/writes/{request_id}")
        return bool(_document(view)["data"]["status"] == "verified")

    wait_until(verified)
    view = client.get(f"/api/v1/writes/{request_id}")
    return dict(_document(view)["data"])


# -- writes --------------------------------------------------------------------------------------


@PROPERTY
@given(items=st.lists(_item(), min_size=1, max_size=4), ascii_only=st.booleans())
def test_an_accepted_write_stores_exactly_what_was_sent(
    client: httpx.Client, items: list[tuple[dict[str, Any], str | None]], ascii_only: bool
) -> None:
    body = json.dumps({"items": [item for item, _ in items]}, ensure_ascii=ascii_only).encode()
    reply = client.post("/api/v1/writes", content=body)
    assert reply.status_code == 202, reply.text
    request = _wait_verified(client, _document(reply)["data"]["requestId"])
    assert [row["key"] for row in request["items"]] == [item["key"] for item, _ in items]
    for row, (item, stored) in zip(request["items"], items, strict=True):
        assert (row["accountId"], row["bits"]) == (item["accountId"], item["bits"])
        bundle = client.get(f"/api/v1/log/proof/bundle/{row['anchorId']}")
        leaf = _document(bundle)["data"]["leaf"]
        assert leaf["key"] == item["key"]
        assert leaf["customerId"] == item["accountId"]
        assert leaf["delta"] == item["bits"] and type(leaf["delta"]) is int
        assert leaf["metadataDigest"] == _digest(item.get("metadata"))
        if stored is not None:
            assert leaf["occurredAt"] == stored
        record = client.get(f"/api/v1/balance/delta/{row['recordId']}")
        assert _document(record)["data"]["delta"] == item["bits"]
        derive = client.get(f"/api/v1/balance/derive/{item['accountId']}", params={"limit": 1000})
        listed = {delta["anchorId"]: delta for delta in _document(derive)["data"]["deltas"]}
        assert listed[row["anchorId"]]["delta"] == item["bits"]
        assert listed[row["anchorId"]]["key"] == item["key"]
        if stored is not None:
            assert listed[row["anchorId"]]["createdAt"][:19] == stored[:19]


@PROPERTY
@given(item=_item(), reason=_text)
def test_an_accepted_emit_echoes_and_stores_what_was_sent(
    client: httpx.Client, item: tuple[dict[str, Any], str | None], reason: str
) -> None:
    fields, stored = item
    body = {"customerId": fields["accountId"], "delta": fields["bits"], "reason": reason}
    body["referenceId"] = fields["key"]
    body.update({name: fields[name] for name in ("metadata", "occurredAt") if name in fields})
    reply = client.post("/api/v1/balance/delta", json=body)
    assert reply.status_code == 202, reply.text
    data = _document(reply)["data"]
    assert (data["customerId"], data["delta"], data["reason"], data["referenceId"]) == (
        body["customerId"],
        body["delta"],
        reason,
        body["referenceId"],
    )

    def sealed() -> bool:
        view = client.get(f"/api/v1/balance/delta/{data['recordId']}")
        return bool(_document(view)["data"]["status"] == "VERIFIED")

    wait_until(sealed)
    view = _document(client.get(f"/api/v1/balance/delta/{data['recordId']}"))
    bundle = client.get(f"/api/v1/log/proof/bundle/{view['data']['anchorId']}")
    leaf = _document(bundle)["data"]["leaf"]
    assert (leaf["key"], leaf["customerId"], leaf["delta"]) == (
        fields["key"],
        fields["accountId"],
        fields["bits"],
    )
    assert leaf["metadataDigest"] == _digest(fields.get("metadata"))
    if stored is not None:
        assert leaf["occurredAt"] == stored


# One invalid value for each field of a write item, as JSON text (some are not Python values:
# a number with a fraction or exponent, a lone surrogate escape).
_BAD_VALUES: dict[str, list[str]] = {
    "key": ['""', '"' + "k" * 257 + '"', "5", "null", "[]", '"\\ud800"', '"a\\u0000"'],
    "accountId": ['""', '"a b"', '".."', '"' + "a" * 129 + '"', "5", "null", '"caf\\u00e9"'],
    "bits": [
        "0",
        "1.0",
        "1e2",
        "1E2",
        "-0.0",
        '"3"',
        "true",
        "null",
        "[]",
        "{}",
        "1000000001",
        "-1000000001",
        str(2**63 - 1),
        str(-(2**63)),
        str(2**63),
        "1e400",
    ],
    "metadata": ["[]", '"x"', "5", "true", json.dumps({"n": 2**53}), '{"a":' * 9 + "1" + "}" * 9],
    "occurredAt": [
        '""',
        "5",
        '"2026-13-01T00:00:00Z"',
        '"2026-02-30T00:00:00Z"',
        '"2026-01-01T00:00:00"',
        '"9999-12-01T00:00:00Z"',
        '"1969-12-31T23:59:59Z"',
        '"2026-06-30T23:58:60Z"',
    ],
    "reason": ['"' + "r" * 501 + '"', "5", "[]", '"\\u0000"', '"\\udfff"'],
}
# The emit route's referenceId is optional: null there asks for one to be generated.
_BAD = [
    (route, field, value)
    for route in ("writes", "delta")
    for field, values in _BAD_VALUES.items()
    for value in values
    if (route, field, value) != ("delta", "key", "null")
]
_EMIT_NAMES = {"key": "referenceId", "accountId": "customerId", "bits": "delta"}


def _refuse_one_field(
    client: httpx.Client, items: list[dict[str, Any]], index: int, bad: tuple[str, str, str]
) -> None:
    """Send ``items`` with the field of ``items[index]`` set to the JSON text of ``bad``: a
    400 naming that field, after which the valid items alone are stored as new deltas."""
    route, field, value = bad
    name = _EMIT_NAMES.get(field, field) if route == "delta" else field
    texts = []
    for position, item in enumerate(items):
        fields = dict(item)
        if route == "delta":
            fields = {_EMIT_NAMES.get(key, key): content for key, content in fields.items()}
            fields.setdefault("reason", "r")
        if position == index:
            fields.pop(name, None)
            texts.append(
                json.dumps(fields)[:-1] + (", " if fields else "") + f"{json.dumps(name)}: {value}}}"
            )
        else:
            texts.append(json.dumps(fields))
    if route == "writes":
        path, body, expected = (
            "/api/v1/writes",
            '{"items": [' + ", ".join(texts) + "]}",
            f"items[{index}].{name}",
        )
    else:
        path, body, expected, items = "/api/v1/balance/delta", texts[index], name, [items[index]]
    reply = client.post(path, content=body.encode())
    assert reply.status_code == 400, (body[:300], reply.text)
    document = _document(reply)
    assert document["code"] == "VALIDATION_ERROR"
    assert document["message"].startswith(expected), (expected, document["message"])
    # Nothing was stored: every key is still free, so the valid items alone are new deltas, none
    # a repeat of one stored before (whose status would read "duplicate" at once).
    valid = client.post("/api/v1/writes", json={"items": items})
    assert valid.status_code == 202, valid.text
    request_id = _document(valid)["data"]["requestId"]
    request = _document(client.get(f"/api/v1/writes/{request_id}"))["data"]
    assert [row["key"] for row in request["items"]] == [item["key"] for item in items]
    assert "duplicate" not in {row["status"] for row in request["items"]}, request


@pytest.mark.parametrize(
    "bad", _BAD, ids=[f"{route}-{field}-{i}" for i, (route, field, _) in enumerate(_BAD)]
)
def test_each_invalid_value_is_a_400_naming_its_field(
    client: httpx.Client, bad: tuple[str, str, str]
) -> None:
    item = {"key": f"refused-{next(_serial)}", "accountId": "refused", "bits": 5, "reason": "r"}
    _refuse_one_field(client, [item], 0, bad)


@PROPERTY
@given(items=st.lists(_item(), min_size=1, max_size=3), where=st.integers(0, 2), bad=st.sampled_from(_BAD))
def test_one_invalid_field_among_valid_items_is_a_400_naming_it_and_stores_nothing(
    client: httpx.Client,
    items: list[tuple[dict[str, Any], str | None]],
    where: int,
    bad: tuple[str, str, str],
) -> None:
    _refuse_one_field(client, [item for item, _ in items], where % len(items), bad)


@PROPERTY
@given(item=_item(), repeated=st.sampled_from(["key", "accountId", "bits"]))
def test_a_repeated_member_is_a_400_naming_the_object(
    client: httpx.Client, item: tuple[dict[str, Any], str | None], repeated: str
) -> None:
    fields = item[0]
    text = json.dumps(fields)[:-1] + f", {json.dumps(repeated)}: {json.dumps(fields[repeated])}}}"
    reply = client.post("/api/v1/writes", content=('{"items": [' + text + "]}").encode())
    assert reply.status_code == 400, reply.text
    assert _document(reply)["message"].startswith(f"items[0]: duplicate key {quoted(repeated)}")


# -- derive and compare --------------------------------------------------------------------------

_odd = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-0",
            "+1",
            "1.0",
            "1e2",
            "1_000",
            " 1",
            "0x10",
            "\u0661",
            str(2**63 - 1),
            str(-(2**63)),
            str(2**63),
            "9" * 40,
            "1001",
            "2026-13",
            "0000-01",
            "2026-1",
            "9999-12",
            "1969-12",
            "2026-02-30T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "a_" + "9" * 41,
            "a_-1",
            "0x" + "0" * 64,
            "desc",
            "anchorId",
        ]
    ),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12),
    st.integers().map(str),
)


@pytest.fixture(scope="module")
def sealed_customer(client: httpx.Client) -> tuple[str, list[int]]:
    """A customer with a few sealed deltas across months, and their amounts."""
    amounts = [10**9, -(10**9), 7, -3, 1]
    items = [
        {
            "key": f"derive-prop-{i}",
            "accountId": "derive-prop",
            "bits": amount,
            "occurredAt": f"2026-0{i + 1}-15T00:00:00Z",
        }
        for i, amount in enumerate(amounts)
    ]
    reply = client.post("/api/v1/writes", json={"items": items})
    assert reply.status_code == 202, reply.text
    _wait_verified(client, _document(reply)["data"]["requestId"])
    return "derive-prop", amounts


@PROPERTY
@given(name=st.sampled_from(DERIVE_PARAMS), value=_odd)
def test_an_odd_derive_parameter_is_answered_or_named(
    client: httpx.Client, sealed_customer: tuple[str, list[int]], name: str, value: str
) -> None:
    customer, _ = sealed_customer
    reply = client.get(f"/api/v1/balance/derive/{customer}", params={name: value})
    document = _document(reply)
    if reply.status_code == 400:
        assert name in document["message"], (name, value, document["message"])
    else:
        assert reply.status_code in {200, 404}, reply.text


@PROPERTY
@given(starting=st.integers(-(10**29), 10**29) | st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**64)]))
def test_derive_and_compare_add_the_deltas_to_any_starting_balance_exactly(
    client: httpx.Client, sealed_customer: tuple[str, list[int]], starting: int
) -> None:
    customer, amounts = sealed_customer
    derive = client.get(
        f"/api/v1/balance/derive/{customer}",
        params={"startingBalance": str(starting)},
    )
    data = _document(derive)["data"]
    assert data["computedBalance"] == starting + sum(amounts)
    assert data["startingBalance"] == starting
    neutral = starting + sum(amounts)
    body = {
        "customerId": customer,
        "yourBalance": neutral,
        "theirBalance": neutral - 7,
        "startingBalance": starting,
    }
    compare = client.post("/api/v1/balance/compare", json=body)
    result = _document(compare)["data"]
    assert (result["neutralBalance"], result["matchesYours"], result["matchesTheirs"]) == (
        neutral,
        True,
        False,
    )
    assert result["discrepancyReport"]["amount"] == 7
