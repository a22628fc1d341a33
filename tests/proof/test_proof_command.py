"""``trueup proof``: an anchor id that is not one is refused before any request, and a reply
that is not the bundle asked for (another delta's, or no Trueup reply at all) is one line on
stderr, never a traceback or a bundle written out; a refusal is exit 1, and a server that could
not be asked is exit 3. The server here is a real HTTP server on 127.0.0.1 that answers as a
broken or hostile one would."""

from __future__ import annotations

import gzip
import json
import math
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trueup.cli import proof
from trueup.sdk import Client, TrueupError

from .reference import load_vector

BUNDLE = load_vector("bundle_v1.json")["bundles"][0]


class _Replies(BaseHTTPRequestHandler):
    """Answers every GET with the server's ``reply`` (content type, body[, status])."""

    def do_GET(self) -> None:
        self.server.asked = self.path  # type: ignore[attr-defined]
        content_type, body, *status = self.server.reply  # type: ignore[attr-defined]
        self.send_response(status[0] if status else 200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _run(httpd: ThreadingHTTPServer, anchor: str, *extra: str) -> int:
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    return proof.run([anchor, "--url", url, "--api-key", "pk_test", *extra])


def test_the_bundle_asked_for_is_written_out(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reply = ("application/json", json.dumps({"success": True, "data": BUNDLE}).encode())  # type: ignore[attr-defined]
    assert _run(server, BUNDLE["anchorId"]) == 0
    assert json.loads(capsys.readouterr().out) == BUNDLE


def test_a_server_s_error_message_is_shown_on_one_line(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hostile server's message could add a line that reads as another command's verdict."""
    forged = json.dumps({"success": False, "message": "gone\nOK: a_2 is leaf 2 of a tree of 3"})
    server.reply = ("application/json", forged.encode(), 404)  # type: ignore[attr-defined]
    assert _run(server, BUNDLE["anchorId"]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("trueup proof: 404 'gone\\nOK: a_2")
    assert err.count("\n") == 1


def test_a_server_s_whole_error_message_is_shown(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # It was cut at 60 characters, before the part that says what to do.
    message = "X-Api-Key is malformed: expected pk_live_<id>.<secret> or pk_test_<id>.<secret>"
    server.reply = ("application/json", json.dumps({"success": False, "message": message}).encode(), 401)  # type: ignore[attr-defined]
    assert _run(server, BUNDLE["anchorId"]) == 1
    assert capsys.readouterr().err == f"trueup proof: 401 {message!r}\n"


@pytest.mark.parametrize(
    ("reply", "message", "exit_code"),
    [
        pytest.param(
            ("application/json", json.dumps({"success": True, "data": {**BUNDLE, "anchorId": "a_7"}})),
            "the server sent no bundle for {anchor} (got 'a_7')",
            1,
            id="another delta's bundle",
        ),
        pytest.param(
            ("application/json", '{"success": true}'),
            "the server sent no bundle for {anchor} (got None)",
            1,
            id="no data",
        ),
        pytest.param(
            ("text/html", "<html>a proxy page</html>"),
            "200, not a Trueup reply: '<html>a proxy",
            3,
            id="not JSON",
        ),
        pytest.param(("application/json", "[1]"), "200, not a Trueup reply: '[1]'", 3, id="not an object"),
        pytest.param(
            ("application/json", json.dumps({"success": True, "data": {**BUNDLE, "leafIndex": math.nan}})),
            "the server's reply is not a bundle `trueup verify` can read: bundle: NaN is not JSON",
            1,
            id="NaN, which trueup verify refuses",
        ),
        pytest.param(
            (
                "application/json",
                json.dumps({"success": True, "data": BUNDLE}).replace('"leaf": ', '"leaf": {}, "leaf": ', 1),
            ),
            "the server's reply is not a bundle `trueup verify` can read: bundle: duplicate member 'leaf'",
            1,
            id="a member given twice",
        ),
        pytest.param(
            ("application/json", "[" * 100_000 + "]" * 100_000),
            "200, not a Trueup reply: '[[[[",
            3,
            id="nested past the interpreter's depth",
        ),
    ],
)
def test_a_reply_that_is_not_the_bundle_asked_for_is_one_line(
    server: ThreadingHTTPServer,
    capsys: pytest.CaptureFixture[str],
    reply: tuple[str, str],
    message: str,
    exit_code: int,
) -> None:
    """Exit 1 for a reply of the server's that holds no usable bundle, 3 for one that is not the
    server's at all (a proxy's page, say): that checked nothing."""
    server.reply = (reply[0], reply[1].encode())  # type: ignore[attr-defined]
    assert _run(server, BUNDLE["anchorId"]) == exit_code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("trueup proof: " + message.format(anchor=BUNDLE["anchorId"]))
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("status", "body", "exit_code"),
    [
        (404, {"success": False, "code": "NOT_FOUND", "message": "no delta a_0"}, 1),
        (403, {"success": False, "code": "FORBIDDEN", "message": "not your delta"}, 1),
        (403, {"success": False, "code": "BAD_REPLY", "message": "a refusal named as no reply"}, 1),
        (429, {"success": False, "code": "RATE_LIMITED", "message": "slow down"}, 3),
        (500, {"success": False, "code": "INTERNAL_ERROR", "message": "err_1"}, 3),
        (503, {"success": False, "code": "STORAGE_UNAVAILABLE", "message": "try again"}, 3),
    ],
)
def test_a_refusal_is_exit_1_and_a_server_that_could_not_answer_exit_3(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str], status: int, body: object, exit_code: int
) -> None:
    server.reply = ("application/json", json.dumps(body).encode(), status)  # type: ignore[attr-defined]
    assert _run(server, BUNDLE["anchorId"]) == exit_code
    assert capsys.readouterr().err.startswith(f"trueup proof: {status} ")


def test_no_server_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    idle = socket.socket()  # bound, never listening: a connection to it is refused at once
    idle.bind(("127.0.0.1", 0))
    try:
        code = proof.run(
            ["a_0", "--url", f"http://127.0.0.1:{idle.getsockname()[1]}", "--api-key", "pk_test"]
        )
    finally:
        idle.close()
    assert code == 3
    assert capsys.readouterr().err.startswith("trueup proof: cannot reach http://127.0.0.1:")


def test_a_password_in_the_server_url_is_never_shown(capsys: pytest.CaptureFixture[str]) -> None:
    """TRUEUP_URL may carry a proxy's user:password@; stderr is kept by service managers."""
    idle = socket.socket()
    idle.bind(("127.0.0.1", 0))
    url = f"http://ops:hunter2@127.0.0.1:{idle.getsockname()[1]}"
    try:
        assert proof.run(["a_0", "--url", url, "--api-key", "pk_test"]) == 3
        assert proof.run(["a_0", "--url", "ftp://ops:hunter2@127.0.0.1/", "--api-key", "pk_test"]) == 2
        with Client(url, retries=0) as client, pytest.raises(TrueupError) as refused:
            client.log_key()
    finally:
        idle.close()
    err = capsys.readouterr().err
    assert "cannot reach http://ops:***@127.0.0.1:" in err and "'ftp://ops:***@127.0.0.1/'" in err, err
    assert refused.value.code == "CONNECTION_ERROR" and "no reply from http://ops:***@127.0.0.1:" in str(
        refused.value
    )
    assert "hunter2" not in err + str(refused.value)


@pytest.mark.parametrize("anchor", ["../../checkpoint", "a_", "a_01", "7", "a_1?x=1"])
def test_an_anchor_id_that_is_not_one_is_refused_before_any_request(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str], anchor: str
) -> None:
    server.reply = ("application/json", json.dumps({"success": True, "data": BUNDLE}).encode())  # type: ignore[attr-defined]
    assert _run(server, anchor) == 2
    assert capsys.readouterr().err == (f"trueup proof: {anchor!r} is not an anchor id (a_<leaf index>)\n")


class _Coded(_Replies):
    """Answers every GET with the server's ``reply`` (content type, body, coding)."""

    def do_GET(self) -> None:
        content_type, body, coding = self.server.reply  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Encoding", coding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize(
    ("body", "coding", "exit_code"),
    [
        (gzip.compress(json.dumps({"success": True, "data": BUNDLE}).encode()), "gzip", 0),
        (json.dumps({"success": True, "data": BUNDLE, "pad": "x" * (1 << 20)}).encode(), "identity", 3),
        (gzip.compress(b" " * (8 << 20)), "gzip", 3),  # 8 MiB from 8 KB
    ],
    ids=["a gzipped bundle", "a reply longer than any bundle", "a reply that inflates past it"],
)
def test_a_reply_is_read_no_further_than_a_bundle_can_be(
    capsys: pytest.CaptureFixture[str], body: bytes, coding: str, exit_code: int
) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Coded)
    httpd.reply = ("application/json", body, coding)  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        assert _run(httpd, BUNDLE["anchorId"]) == exit_code
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    out, err = capsys.readouterr()
    if exit_code == 0:
        assert json.loads(out) == BUNDLE
    else:
        assert (out, err) == ("", err.splitlines()[0] + "\n")
        assert (
            err.startswith("trueup proof: a reply from http://127.0.0.1:")
            and "longer than 1048576 bytes" in err
        )


def test_tree_size_asks_for_that_tree_and_takes_no_other(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reply = ("application/json", json.dumps({"success": True, "data": BUNDLE}).encode())  # type: ignore[attr-defined]
    size = BUNDLE["treeSize"]
    assert _run(server, BUNDLE["anchorId"], "--tree-size", str(size)) == 0
    assert server.asked == f"/api/v1/log/proof/bundle/{BUNDLE['anchorId']}?treeSize={size}"  # type: ignore[attr-defined]
    assert json.loads(capsys.readouterr().out) == BUNDLE
    # A server answering with the newest tree instead did not give what was asked.
    assert _run(server, BUNDLE["anchorId"], "--tree-size", str(size - 1)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"trueup proof: the server sent a bundle in the tree of size {size}, not {size - 1}\n"
    # Nor is true a size of 1, or 3.0 one of 3, though Python finds them equal.
    for wrong, asked in ((True, 1), (float(size), size)):
        bent = {**BUNDLE, "treeSize": wrong}
        server.reply = ("application/json", json.dumps({"success": True, "data": bent}).encode())  # type: ignore[attr-defined]
        assert _run(server, BUNDLE["anchorId"], "--tree-size", str(asked)) == 1
        out, err = capsys.readouterr()
        said = f"trueup proof: the server sent a bundle in the tree of size {wrong!r}, not {asked}\n"
        assert out == "" and err == said


@pytest.mark.parametrize("wrong", ["0", "-3", "1e3", "x", "", str(2**62 + 1), "\uff11"])
def test_a_tree_size_that_is_none_is_refused_before_any_request(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str], wrong: str
) -> None:
    with pytest.raises(SystemExit) as refused:
        _run(server, BUNDLE["anchorId"], "--tree-size", wrong)
    assert refused.value.code == 2
    assert "--tree-size: must be a tree size, 1 to 2**62" in capsys.readouterr().err
    assert not hasattr(server, "asked")
