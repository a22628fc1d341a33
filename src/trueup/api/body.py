"""Reading a JSON request body: media type, size, then strict decoding."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.requests import ClientDisconnect

from trueup.core.errors import PayloadTooLargeError, UnsupportedMediaTypeError, ValidationError
from trueup.core.strict_json import loads_strict

__all__ = ["read_json"]


async def read_json(request: Request, max_bytes: int) -> tuple[Any, bytes]:
    """The decoded body and its raw bytes.

    415 unless ``Content-Type`` is ``application/json`` (UTF-8) and the body is not compressed
    (``Content-Encoding``); 413 past ``max_bytes`` (checked on the header and again while
    streaming, so a lying header cannot pass); 400 when the client leaves mid-body.
    """
    content_type = request.headers.get("content-type", "")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        shown = media or "none"
        raise UnsupportedMediaTypeError(f"Content-Type must be application/json, got {shown[:64]}")
    for param in params.split(";"):  # every parameter: a charset may come after others
        name, _, value = param.strip().lower().partition("=")
        if name == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise UnsupportedMediaTypeError("Content-Type charset must be utf-8")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"request body must be at most {max_bytes} bytes, got {declared}")
    codings = [
        c.strip().lower() for header in request.headers.getlist("content-encoding") for c in header.split(",")
    ]
    encoding = next((coding for coding in codings if coding not in ("", "identity")), None)
    if encoding is not None:  # in any of the headers, or anywhere in a list
        shown = encoding[:32]
        raise UnsupportedMediaTypeError(f"Content-Encoding {shown} is not supported; send it uncompressed")
    chunks = bytearray()
    try:
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > max_bytes:
                raise PayloadTooLargeError(f"request body must be at most {max_bytes} bytes")
    except ClientDisconnect as exc:  # nobody reads the reply; a 400 keeps it out of the 5xx count
        raise ValidationError("body", "ended early: the client closed the connection") from exc
    body = bytes(chunks)
    return loads_strict(body), body
