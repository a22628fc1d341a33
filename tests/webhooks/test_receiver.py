"""The test receiver itself: a sender that goes away mid-request leaves nothing on stderr (where
it would land after the test run's summary line, from a handler thread that outlived its test)."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from tests.webhooks.receiver import Receiver


def test_a_sender_reset_mid_request_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    with Receiver() as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        sender = socket.create_connection(("127.0.0.1", port))
        sender.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        # Closed with a reset (linger 0), as a killed process's connection is.
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sender.close()
        deadline = time.monotonic() + 10
        while receiver.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler reads the body; the reset ends that read
        assert receiver.dropped == 1
    assert receiver.requests() == []  # the request never arrived whole
    assert capfd.readouterr().err == ""
