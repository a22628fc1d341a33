"""``trueup verify-period``: a locked month checked through the real server's public pages, one
line and an exit code for each outcome: proven, a check that failed (a forged page from a real
HTTP server on 127.0.0.1, a root the server does not know), an argument wrong, nothing checked
(no server, a proxy's page, a server that is failing)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Running
from tests.e2e.server import free_port, local_server
from trueup.cli.main import main
from trueup.cli.verifyperiod import ok_line
from trueup.proof import (
    EMPTY_ROOT,
    CheckpointSigner,
    TreeHead,
    VerifiedPeriod,
    parse_checkpoint,
    parse_verifier_key,
    private_key_from_seed,
)
from trueup.sdk import Client
from trueup.service.signing import load_signer

CUSTOMER = "cli-period-cust"
_Reply = tuple[int, dict[str, str], bytes]
AMOUNTS = [500, -120, 45]


@pytest.fixture
def client(running: Running) -> Iterator[Client]:
    with Client(running.url, running.key) as opened:
        yield opened


@pytest.fixture
def locked(client: Client) -> tuple[str, str]:
    """A month of three deltas, locked: ``(its proof root, the log's verifier key)``."""
    accepted = client.write(
        [
            {
                "key": f"cli-p-{i}",
                "accountId": CUSTOMER,
                "bits": bits,
                "occurredAt": f"2026-06-0{i + 1}T08:00:00Z",
            }
            for i, bits in enumerate(AMOUNTS)
        ]
        + [{"key": "cli-p-before", "accountId": CUSTOMER, "bits": 1000, "occurredAt": "2026-05-20T08:00:00Z"}]
    )
    client.wait_verified(accepted["requestId"])
    return client.lock_period(CUSTOMER, "2026-06")["proofRoot"], client.log_key()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["verify-period", *argv])
    return code, capsys.readouterr().out


def test_the_installed_command_proves_a_locked_month(running: Running, locked: tuple[str, str]) -> None:
    root, key = locked
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from trueup.cli.main import main; sys.exit(main())",
            "verify-period",
            root,
            "--key",
            key,
            "--url",
            running.url,
            "--page-size",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"OK: period 2026-06 of customer '{CUSTOMER}' of tenant 'ten_")
    assert "3 records, each proven in the tree of size " in line
    assert (
        f", signed by the pinned key; they recompute proof root {root} and they sum to a net change "
        f"of {sum(AMOUNTS)};" in line
    )
    assert line.endswith(f"starting balance of 1000, so the period ends at {1000 + sum(AMOUNTS)}")


def test_a_key_file_and_an_upper_case_root_are_taken(
    running: Running, locked: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, key = locked
    (tmp_path / "log.pub").write_text(key + "\n")
    for written in (root.upper().replace("0X", "0x"), root.upper()):  # 0X too, as the SDK takes it
        code, out = _run(capsys, written, "--key", str(tmp_path / "log.pub"), "--url", running.url)
        assert (code, out.startswith("OK: period 2026-06")) == (0, True), out


def test_a_forged_page_fails_naming_the_field(
    running: Running, locked: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, key = locked
    with Client(running.url) as public:
        genuine = public._get(f"/api/v1/verify/{root}")

    def lying(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        page = json.loads(json.dumps(genuine))
        page["records"][1]["amount"] = -12  # the leaf says -120
        return 200, {"Content-Type": "application/json"}, json.dumps({"success": True, "data": page}).encode()

    with local_server(lying) as url:
        code, out = _run(capsys, root, "--key", key, "--url", url)
    assert code == 1
    assert out == "FAILED: page 1.records[1].amount: -12 is not the leaf's -120\n"


@pytest.mark.parametrize(
    ("forge", "failed"),
    [
        (
            lambda page: page["records"][1].update(time="2026-06-30T08:00:00Z"),
            "page 1.records[1].time: '2026-06-30T08:00:00Z' is not the leaf's 2026-06-02T08:00:00.000000Z",
        ),
        (
            lambda page: page["summary"].update(lastRecordAt="2026-06-30T08:00:00Z"),
            "summary.lastRecordAt: '2026-06-30T08:00:00Z' is not the records' 2026-06-03T08:00:00.000000Z",
        ),
    ],
    ids=["a record's time", "the last record's time"],
)
def test_a_page_showing_other_times_than_its_leaves_fails(
    running: Running,
    locked: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    forge: Callable[[dict[str, Any]], None],
    failed: str,
) -> None:
    """A record's time and the period's first and last are the leaves' occurredAt, which the
    proof root commits to: a page showing others is refused, as a forged amount is."""
    root, key = locked
    with Client(running.url) as public:
        genuine = public._get(f"/api/v1/verify/{root}")
    assert [record["time"] for record in genuine["records"]] == [f"2026-06-0{i}T08:00:00Z" for i in (1, 2, 3)]
    page = json.loads(json.dumps(genuine))
    forge(page)

    def lying(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, json.dumps({"success": True, "data": page}).encode()

    with local_server(lying) as url:
        code, out = _run(capsys, root, "--key", key, "--url", url)
    assert (code, out) == (1, f"FAILED: {failed}\n")


def test_a_root_the_server_does_not_know_fails_and_no_server_checks_nothing(
    running: Running, locked: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The server's 404 for a root you hold from it is its answer (exit 1); no reply says
    nothing about the log (exit 3), so a monitor alarming on 1 is not woken by an outage."""
    _, key = locked
    code, out = _run(capsys, "0x" + "ab" * 32, "--key", key, "--url", running.url)
    assert code == 1 and out.startswith("FAILED: the server did not give the period: '404 "), out
    code, out = _run(capsys, "0x" + "ab" * 32, "--key", key, "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 3, out
    assert out.startswith("NOT CHECKED: the server could not be asked for the period: 'CONNECTION_ERROR"), out


@pytest.mark.parametrize(
    ("status", "content_type", "body", "shown_as"),
    [
        (
            503,
            "application/json",
            b'{"success": false, "code": "STORAGE_UNAVAILABLE", "message": "x"}',
            "503 STORAGE_",
        ),
        (
            500,
            "application/json",
            b'{"success": false, "code": "INTERNAL_ERROR", "message": "x"}',
            "500 INTERNAL_",
        ),
        (429, "application/json", b'{"success": false, "code": "RATE_LIMITED", "message": "x"}', "429 RATE_"),
        (502, "text/html", b"<html>bad gateway</html>", "502 BAD_REPLY"),
        (403, "text/html", b"<html>a proxy's login page</html>", "403 BAD_REPLY"),
        (200, "text/html", b"<html>a captive portal's login page</html>", "200 BAD_REPLY"),
        (200, "application/json", b"[1, 2]", "200 BAD_REPLY"),
    ],
)
def test_a_server_that_cannot_answer_checks_nothing(
    locked: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    status: int,
    content_type: str,
    body: bytes,
    shown_as: str,
) -> None:
    root, key = locked

    def failing(request: BaseHTTPRequestHandler, _: bytes) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": content_type, "Retry-After": "0"}, body

    with local_server(failing) as url:
        code, out = _run(capsys, root, "--key", key, "--url", url)
    assert code == 3, out
    assert re.match(rf"NOT CHECKED: the server could not be asked for the period: ['\"]{shown_as}", out), out


def test_a_tree_heads_root_is_said_to_be_no_period(
    running: Running, locked: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, key = locked
    with Client(running.url) as public:
        head_root = "0x" + parse_checkpoint(public.log_checkpoint())[1].root.hex()
    code, out = _run(capsys, head_root, "--key", key, "--url", running.url)
    assert code == 1
    assert out == (
        f"FAILED: page 1.type: {head_root} is the root of a tree head, not a period checkpoint's "
        "proof root (a tree head is checked with its signed checkpoint)\n"
    )


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["0xabc", "--key", "KEY"], r"^trueup verify-period: '0xabc' is not a proof root"),
        (["ROOT", "--key", "KEY", "--page-size", "0"], r"--page-size must be 1\.\.1000, got 0$"),
        (["ROOT", "--key", "KEY", "--page-size", "1001"], r"--page-size must be 1\.\.1000, got 1001$"),
        (
            ["ROOT", "--key", "KEY", "--url", "ftp://127.0.0.1/"],
            r"--url 'ftp://127\.0\.0\.1/' is not a server URL",
        ),
        (["ROOT", "--key", "KEY", "--url", "http://"], r"--url 'http://' is not a server URL"),
        (["ROOT", "--key", " "], r"--key is empty"),
        (["ROOT", "--key", "no-such-file"], r"is neither a verifier key .* nor a file$"),
        (
            ["ROOT", "--key", "KEY", "--after", "0x12"],
            r"^trueup verify-period: --after: '0x12' is not a proof root",
        ),
    ],
)
def test_a_wrong_argument_is_exit_2_before_any_request(
    args: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "localhost/trueup+8792bbd9+AdPqkE5LSMCBuhYr2bdf8Kbsbmr2WpU0GKDl5zOeZ4dQ"  # never used: no request
    argv = [("0x" + "cd" * 32) if a == "ROOT" else key if a == "KEY" else a for a in args]
    code, out = _run(capsys, *argv)
    assert code == 2
    assert re.search(problem, out.strip()), out


def test_one_record_is_said_in_the_singular() -> None:
    period = VerifiedPeriod(b"\x01" * 32, "ten_x", "c1", "2026-06", 1, -5, 100, 95, 7, b"\x02" * 32)
    assert ok_line(period) == (
        f"OK: period 2026-06 of customer 'c1' of tenant 'ten_x': 1 record, proven in the tree of size 7 "
        f"with root {'02' * 32}, signed by the pinned key; it recomputes proof root 0x{'01' * 32} and "
        "its amount is a net change of -5; the server states a starting balance of 100, so the period "
        "ends at 95"
    )


def test_held_ties_the_period_s_tree_to_a_checkpoint_held(
    running: Running, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--held: the tree the records are proven in is the held one, or proven consistent with it
    by the server (smaller or larger); a held note of that log's key for another history, or a
    size the log never signed, fails; a held file that is no checkpoint of the key is exit 2."""
    key = client.log_key()

    def sealed(name: str) -> TreeHead:
        item = {"key": name, "accountId": "cli-held-cust", "bits": 7, "occurredAt": "2026-07-02T08:00:00Z"}
        client.wait_verified(client.write([item])["requestId"])
        return parse_checkpoint(client.log_checkpoint())[1]

    earlier = sealed("cli-held-1")  # a head before the lock's
    sealed("cli-held-2")
    root = client.lock_period("cli-held-cust", "2026-07")["proofRoot"]
    period_size = client.verify_period(root, key).tree_size
    accepted = client.write([{"key": "cli-held-after", "accountId": "cli-p-other", "bits": 3}])
    client.wait_verified(accepted["requestId"])
    later = parse_checkpoint(client.log_checkpoint())[1]
    assert earlier.size < period_size < later.size
    assert later.size > period_size
    signer = load_signer(running.data_dir / "signing-key.pem", parse_verifier_key(key).name)
    origin = signer.name

    def held(head: TreeHead, name: str) -> str:
        path = tmp_path / name
        path.write_text(signer.sign(origin, head))
        return str(path)

    the_period_s = client.verify_period(root, key)
    same = held(TreeHead(period_size, the_period_s.tree_root, 1), "same")
    code, out = _run(capsys, root, "--key", key, "--url", running.url, "--held", same)
    assert code == 0, out
    tree = f"in the tree of size {period_size} with root {the_period_s.tree_root.hex()}"
    assert f"{tree}, signed by the pinned key, the held checkpoint's; they recompute" in out
    larger = held(TreeHead(later.size, later.root, 1), "larger")
    code, out = _run(capsys, root, "--key", key, "--url", running.url, "--held", larger)
    assert code == 0, out
    assert f"the pinned key and proven consistent with the held checkpoint of size {later.size};" in out
    smaller = held(earlier, "smaller")
    code, out = _run(capsys, root, "--key", key, "--url", running.url, "--held", smaller)
    assert code == 0, out
    assert f"proven consistent with the held checkpoint of size {earlier.size};" in out

    # Signed by the log's own key, as a server turned against its clients would: another root
    # at the period's size, at a later size, and a size it never signed.
    for head, said in (
        (TreeHead(period_size, b"\x07" * 32, 1), "the pinned key signed two histories of the log"),
        (TreeHead(later.size, b"\x07" * 32, 1), f"the held checkpoint of size {later.size} are not shown"),
        (TreeHead(later.size + 10**6, b"\x07" * 32, 1), "the server gives no consistency proof between"),
    ):
        code, out = _run(capsys, root, "--key", key, "--url", running.url, "--held", held(head, "forged"))
        assert code == 1 and out.startswith("FAILED: ") and said in out and out.count("\n") == 1, out

    # Only the consistency proof not to be had: said as that, not as the period.
    def failing_consistency(request: BaseHTTPRequestHandler, body: bytes) -> _Reply:
        if request.path.startswith("/api/v1/log/proof/consistency"):
            return 503, {"Content-Type": "text/html"}, b"<html>down for maintenance</html>"
        reply = httpx.get(f"{running.url}{request.path}", timeout=30)
        return reply.status_code, {"Content-Type": reply.headers["content-type"]}, reply.content

    with local_server(failing_consistency) as url:
        code, out = _run(capsys, root, "--key", key, "--url", url, "--held", larger)
    assert code == 3, out
    assert out.startswith(
        "NOT CHECKED: the server could not be asked for the consistency proof between the period's tree "
        "and the held one: "
    )
    # The empty tree's checkpoint ties nothing: asked wrongly, before any request.
    empty = held(TreeHead(0, EMPTY_ROOT, 1), "empty")
    code, out = _run(capsys, root, "--key", key, "--url", f"http://127.0.0.1:{free_port()}", "--held", empty)
    assert code == 2 and "is of the empty tree, which every log extends" in out, out
    with pytest.raises(ValueError, match="the held checkpoint is of the empty tree"):
        client.verify_period(root, key, held=Path(empty).read_text())
    # A held file of another key, or none at all, checks nothing (exit 2) and asks nothing.
    stranger = CheckpointSigner(private_key_from_seed(b"\x05" * 32), origin)
    other = tmp_path / "other"
    other.write_text(stranger.sign(origin, later))
    nowhere = f"http://127.0.0.1:{free_port()}"
    for path in (str(other), str(tmp_path / "missing"), ""):
        code, out = _run(capsys, root, "--key", key, "--url", nowhere, "--held", path)
        assert code == 2 and out.startswith("trueup verify-period: "), out


CHAINED = "cli-chain-cust"


@pytest.fixture
def chained(client: Client) -> tuple[str, str, str]:
    """A May of one delta and a June of three, each locked (May first): ``(May's proof root,
    June's, the log's verifier key)``."""
    return _may_and_june_locked(client, CHAINED, seal_between=False)


def _may_and_june_locked(client: Client, customer: str, *, seal_between: bool) -> tuple[str, str, str]:
    """May (1,000) and June (:data:`AMOUNTS`) of ``customer``, locked in turn; with
    ``seal_between``, a July delta sealed between the two locks, so June's tree is larger."""
    accepted = client.write(
        [
            {
                "key": f"{customer}-may",
                "accountId": customer,
                "bits": 1000,
                "occurredAt": "2026-05-20T08:00:00Z",
            }
        ]
        + [
            {
                "key": f"{customer}-jun-{i}",
                "accountId": customer,
                "bits": bits,
                "occurredAt": f"2026-06-0{i + 1}T08:00:00Z",
            }
            for i, bits in enumerate(AMOUNTS)
        ]
    )
    client.wait_verified(accepted["requestId"])
    may = client.lock_period(customer, "2026-05")["proofRoot"]
    if seal_between:
        later = client.write(
            [
                {
                    "key": f"{customer}-jul",
                    "accountId": customer,
                    "bits": 7,
                    "occurredAt": "2026-07-01T08:00:00Z",
                }
            ]
        )
        client.wait_verified(later["requestId"])
    return may, client.lock_period(customer, "2026-06")["proofRoot"], client.log_key()


def test_after_proves_the_starting_balance_is_where_the_month_before_ends(
    running: Running, chained: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--after: the starting balance, otherwise the server's word, is checked against the
    previous month's period, itself verified from its records."""
    may, june, key = chained
    code, out = _run(capsys, june, "--key", key, "--url", running.url, "--after", may)
    assert code == 0, out
    assert out.startswith(f"OK: period 2026-06 of customer '{CHAINED}' of tenant 'ten_"), out
    assert out.endswith(
        f"; they recompute proof root {june} and they sum to a net change of {sum(AMOUNTS)}; its starting "
        f"balance of 1000 is where period 2026-05 (proof root {may}, verified the same way, in the same "
        f"log) ends, so the period ends at {1000 + sum(AMOUNTS)}\n"
    ), out


def test_after_refuses_a_period_that_is_not_the_month_before_of_the_customer(
    running: Running,
    client: Client,
    chained: tuple[str, str, str],
    locked: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    may, june, key = chained
    code, out = _run(capsys, june, "--key", key, "--url", running.url, "--after", june)
    assert (code, out) == (1, "FAILED: the previous period is 2026-06, not the month before 2026-06\n")
    code, out = _run(capsys, may, "--key", key, "--url", running.url, "--after", june)
    assert (code, out) == (1, "FAILED: the previous period is 2026-06, not the month before 2026-05\n")
    empty = client.lock_period(CHAINED, "2026-04", force=True)["proofRoot"]  # no deltas: proves nothing
    code, out = _run(capsys, may, "--key", key, "--url", running.url, "--after", empty)
    assert code == 1
    assert out.startswith("FAILED: the period given with --after: summary.recordCount: 0;"), out
    code, out = _run(capsys, may, "--key", key, "--url", running.url, "--after", "0x" + "ab" * 32)
    assert code == 1
    assert out.startswith("FAILED: the server did not give the period given with --after: '404 "), out
    other, _ = locked  # June of another customer
    code, out = _run(capsys, june, "--key", key, "--url", running.url, "--after", other)
    assert code == 1
    assert out.startswith(f"FAILED: the previous period is of customer '{CUSTOMER}' of tenant 'ten_"), out
    assert f", this one of '{CHAINED}' of 'ten_" in out


def test_after_fails_a_starting_balance_the_month_before_does_not_end_at(
    running: Running, chained: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A server (here a proxy on 127.0.0.1 in front of the real one) that states another
    starting balance for June, its pages otherwise whole: each period checks out on its own,
    the two do not meet."""
    may, june, key = chained

    def lying(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        reply = httpx.get(running.url + request.path, timeout=10)
        if not request.path.startswith(f"/api/v1/verify/{june}"):
            return reply.status_code, {"Content-Type": "application/json"}, reply.content
        document = reply.json()
        document["data"]["summary"]["startingBalance"] += 1
        document["data"]["summary"]["endingBalance"] += 1
        return 200, {"Content-Type": "application/json"}, json.dumps(document).encode()

    with local_server(lying) as url:
        code, out = _run(capsys, june, "--key", key, "--url", url)
        assert (
            code,
            out.endswith(f"starting balance of 1001, so the period ends at {1001 + sum(AMOUNTS)}\n"),
        ) == (
            0,
            True,
        ), out
        code, out = _run(capsys, june, "--key", key, "--url", url, "--after", may)
    assert (code, out) == (
        1,
        "FAILED: period 2026-06 states a starting balance of 1001, but period 2026-05 ends at 1000 (its "
        "starting balance 0 and its records' net change 1000): a delta of 2026-05 or before is in one "
        "figure and not the other\n",
    )


APART = "cli-apart-cust"


@pytest.fixture
def apart(client: Client) -> tuple[str, str, str]:
    """As :func:`chained`, but June locked after another seal, so in a larger tree than May's."""
    return _may_and_june_locked(client, APART, seal_between=True)


def test_after_proves_the_two_periods_trees_of_one_log(
    running: Running, apart: tuple[str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Periods locked under trees of two sizes: the server's consistency proof between them is
    checked; a forged one fails naming both trees, and one that cannot be asked for checks
    nothing."""
    may, june, key = apart
    with Client(running.url) as public:
        may_size = public._get(f"/api/v1/verify/{may}")["treeSize"]
        june_size = public._get(f"/api/v1/verify/{june}")["treeSize"]
    assert may_size < june_size
    code, out = _run(capsys, june, "--key", key, "--url", running.url, "--after", may)
    assert code == 0 and "is where period 2026-05" in out, out

    def forging(status: int) -> Callable[[BaseHTTPRequestHandler, bytes], tuple[int, dict[str, str], bytes]]:
        def answer(request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
            reply = httpx.get(running.url + request.path, timeout=10)
            if not request.path.startswith("/api/v1/log/proof/consistency"):
                return reply.status_code, {"Content-Type": "application/json"}, reply.content
            document = reply.json()
            assert document["data"]["proof"], document  # a proof with nodes to forge
            document["data"]["proof"] = ["00" * 32 for _ in document["data"]["proof"]]
            return status, {"Content-Type": "application/json"}, json.dumps(document).encode()

        return answer

    with local_server(forging(200)) as url:
        code, out = _run(capsys, june, "--key", key, "--url", url, "--after", may)
    assert code == 1
    assert out.startswith(
        f"FAILED: the tree of period 2026-06 of size {june_size} and that of period 2026-05 of size "
        f"{may_size} are not shown to be of one log: "
    ), out
    with local_server(forging(503)) as url:
        code, out = _run(capsys, june, "--key", key, "--url", url, "--after", may)
    assert code == 3
    assert out.startswith(
        "NOT CHECKED: the server could not be asked for the consistency proof between the two "
        "periods' trees: "
    ), out
