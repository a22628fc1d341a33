"""``trueup proof``: an anchor id that is not one is refused before any request, and a reply
that is not the bundle asked for (another delta's, or no Trueup reply at all) is one line on
stderr, never a traceback or a bundle written out. The server here is a real HTTP server on
127.0.0.1 that answers as a broken or hostile one would."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trueup.cli import proof

from .reference import load_vector

BUNDLE = load_vector("bundle_v1.json")["bundles"][0]


class _Replies(BaseHTTPRequestHandler):
    """Answers every GET with the server's ``reply`` (content type, body[, status])."""

    def do_GET(self) -> None:
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


def _run(httpd: ThreadingHTTPServer, anchor: str) -> int:
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    return proof.run([anchor, "--url", url, "--api-key", "pk_test"])


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
    ("reply", "message"),
    [
        pytest.param(
            ("application/json", json.dumps({"success": True, "data": {**BUNDLE, "anchorId": "a_7"}})),
            "the server sent no bundle for {anchor} (got 'a_7')",
            id="another delta's bundle",
        ),
        pytest.param(
            ("application/json", '{"success": true}'),
            "the server sent no bundle for {anchor} (got None)",
            id="no data",
        ),
        pytest.param(
            ("text/html", "<html>a proxy page</html>"),
            "200, not a Trueup reply: '<html>a proxy",
            id="not JSON",
        ),
        pytest.param(("application/json", "[1]"), "200, not a Trueup reply: '[1]'", id="not an object"),
        pytest.param(
            ("application/json", json.dumps({"success": True, "data": {**BUNDLE, "leafIndex": math.nan}})),
            "the server's reply is not a bundle `trueup verify` can read: bundle: NaN is not JSON",
            id="NaN, which trueup verify refuses",
        ),
        pytest.param(
            (
                "application/json",
                json.dumps({"success": True, "data": BUNDLE}).replace('"leaf": ', '"leaf": {}, "leaf": ', 1),
            ),
            "the server's reply is not a bundle `trueup verify` can read: bundle: duplicate member 'leaf'",
            id="a member given twice",
        ),
        pytest.param(
            ("application/json", "[" * 100_000 + "]" * 100_000),
            "200, not a Trueup reply: '[[[[",
            id="nested past the interpreter's depth",
        ),
    ],
)
def test_a_reply_that_is_not_the_bundle_asked_for_is_one_line(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str], reply: tuple[str, str], message: str
) -> None:
    server.reply = (reply[0], reply[1].encode())  # type: ignore[attr-defined]
    assert _run(server, BUNDLE["anchorId"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("trueup proof: " + message.format(anchor=BUNDLE["anchorId"]))
    assert err.count("\n") == 1


@pytest.mark.parametrize("anchor", ["../../checkpoint", "a_", "a_01", "7", "a_1?x=1"])
def test_an_anchor_id_that_is_not_one_is_refused_before_any_request(
    server: ThreadingHTTPServer, capsys: pytest.CaptureFixture[str], anchor: str
) -> None:
    server.reply = ("application/json", json.dumps({"success": True, "data": BUNDLE}).encode())  # type: ignore[attr-defined]
    assert _run(server, anchor) == 2
    assert capsys.readouterr().err == (f"trueup proof: {anchor!r} is not an anchor id (a_<leaf index>)\n")
