"""A minimal HTTP/1.1 keep-alive server that answers every request at once.

It measures the load generator's own ceiling on this machine (the reference beside the
single-item write rate) and gives the tests a real socket to drive. Every request gets
``202`` and ``{"statusCode": 202, "data": {"requestId": "req_<n>"}}``; nothing is parsed
beyond the header block and ``Content-Length``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import cast

__all__ = ["EchoProtocol", "main", "start_echo_server"]

_HEADER_END = b"\r\n\r\n"


class EchoProtocol(asyncio.Protocol):
    """One client connection; replies in order to every complete request it receives."""

    served = 0

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(_HEADER_END)
            if end < 0:
                return
            length = 0
            for line in bytes(buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + len(_HEADER_END) + length
            if len(buffer) < total:
                return
            del buffer[:total]
            EchoProtocol.served += 1
            body = b'{"statusCode":202,"data":{"requestId":"req_%d"}}' % EchoProtocol.served
            assert self._transport is not None
            self._transport.write(
                b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )


async def start_echo_server(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) in the running loop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(EchoProtocol, host, port)


def main(argv: list[str] | None = None) -> int:
    """``python -m trueup.bench.echo --port P``: serve until killed (127.0.0.1 only)."""
    parser = argparse.ArgumentParser(prog="python -m trueup.bench.echo")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = await start_echo_server("127.0.0.1", args.port)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    try:
        import uvloop  # noqa: PLC0415 - the loop the real server uses, when installed
    except ImportError:  # pragma: no cover
        asyncio.run(serve())
    else:
        uvloop.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
