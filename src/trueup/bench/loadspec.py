"""What a load is and what it measured: request templates, load specs, results.

These values cross the process boundary of :func:`trueup.bench.load.run_load_process` as
JSON, so each has ``to_json``/``from_json``; a template's body travels as latin-1 text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from trueup.bench.stats import Summary

__all__ = ["CLIENT_MARKER", "MARKER", "LoadResult", "LoadSpec", "RequestTemplate"]

MARKER = b"@@TOKEN@@"
"""Replaced in a template's path and body by a token unique to each request."""

CLIENT_MARKER = b"@@CLIENT@@"
"""Replaced in a template's body by the number of the client (connection) sending it."""


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """One request shape. :data:`MARKER` in ``path`` or ``body`` becomes a unique token."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    customers: int | None = None
    """With :data:`CLIENT_MARKER` in the body: how many distinct values it takes (the client's
    number modulo this), so the customers written to do not grow with the connections."""

    def render(self, host: str, port: int) -> Callable[[bytes, int], bytes]:
        """A function from (request token, client number) to the complete request bytes."""
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        prefix = head.encode("latin-1")
        body = self.body
        marked_path = MARKER in prefix
        marked_body = MARKER in body
        per_client = CLIENT_MARKER in body
        customers = self.customers or 1 << 62  # a client's own number, unless told fewer

        def build(token: bytes, client: int) -> bytes:
            start = prefix.replace(MARKER, token) if marked_path else prefix
            payload = body.replace(MARKER, token) if marked_body else body
            if per_client:
                payload = payload.replace(CLIENT_MARKER, b"%04d" % (client % customers))
            if not payload and self.method == "GET":
                return start + b"\r\n"
            return b"%sContent-Length: %d\r\n\r\n%s" % (start, len(payload), payload)

        return build


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to send, how hard and for how long.

    ``duration_s`` is the measured window, after ``warmup_s`` of unmeasured load. In closed
    loop every connection is a client; in open loop (``rate_per_s`` set) requests are
    scheduled at that rate over at most ``connections`` connections. ``id_field`` is the
    dotted path (``data.requestId``) of a string in each JSON reply body, read with the JSON
    parser and kept with the request's timings when ``record`` is set. ``watch`` names
    processes (role: pids) whose CPU time over the measured window the result reports
    (:mod:`trueup.bench.cpu`); with ``postgres_url``, their PostgreSQL backends' too.
    ``latency_status`` is the status whose replies the latency summary counts: an error
    answered fast must not make a write look fast.
    """

    host: str
    port: int
    template: RequestTemplate
    connections: int
    duration_s: float
    warmup_s: float = 0.0
    rate_per_s: float | None = None
    max_requests: int = 5_000_000
    tag: str = "t"
    record: bool = False
    id_field: str | None = None
    request_timeout_s: float = 30.0
    watch: dict[str, list[int]] = field(default_factory=dict)
    postgres_url: str | None = None
    latency_status: int = 202

    def to_json(self) -> str:
        data = asdict(self)
        data["template"]["body"] = self.template.body.decode("latin-1")
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> LoadSpec:
        data = json.loads(text)
        raw = data.pop("template")
        template = RequestTemplate(
            method=raw["method"],
            path=raw["path"],
            headers=tuple((str(name), str(value)) for name, value in raw["headers"]),
            body=raw["body"].encode("latin-1"),
            customers=raw.get("customers"),
        )
        return cls(template=template, **data)


@dataclass(slots=True)
class LoadResult:
    """What one run measured. Latencies are in milliseconds; wall times are Unix seconds.

    ``records`` (when asked for) hold ``(scheduled send, reply received, status, id)`` per
    measured request, in wall-clock seconds of this host (``time.time`` advanced by
    ``time.perf_counter``, so intervals are monotonic and instants comparable with the
    server's clock on the same machine).
    """

    completed: int = 0
    elapsed_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    error_sample: str = ""
    reconnects: int = 0
    scheduled: int = 0
    late_sends: int = 0
    unanswered: int = 0
    """Open loop: requests scheduled in the measured window with neither a reply nor an error
    by ``request_timeout_s`` after it (a server that keeps a request must not pass for one that
    answered it)."""
    latency_ms: Summary = field(default_factory=Summary)
    """Of the replies with the spec's ``latency_status`` only."""
    records: list[tuple[float, float, int, str]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds over the measured window (:func:`trueup.bench.cpu.cpu_used`); empty when
    nothing was watched, ``/proc`` could not be read, or the load ended before its deadline."""

    @property
    def rate_per_s(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def ok(self, status: int) -> int:
        """Replies with ``status`` in the measured window."""
        return self.statuses.get(str(status), 0)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        data = json.loads(text)
        data["latency_ms"] = Summary(**data["latency_ms"])
        data["records"] = [tuple(record) for record in data["records"]]
        return cls(**data)
