"""A fault-injecting HTTP proxy in front of the S3 server, for the storage-fault tests.

It listens on 127.0.0.1 (an ephemeral port, in a thread of its own) and forwards each request to the
upstream server, except those its `Schedule` picks: those it answers 503 SlowDown (with an XML body, or none:
a HEAD's answer never has one), 503 with no body, 429, 500, or it resets the connection, or it stalls past
the client's read timeout: at a rate per fault, within a window of requests, or always for some keys (a
persistent outage). The picks are deterministic for a seed (the n-th request gets the n-th draw); `injected`
counts what it did, `timeline` records when and for which key.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

#: Every fault the proxy can inject.
FAULTS = ("503", "503-bare", "429", "500", "reset", "stall")

_ERRORS = {
    "503": (503, "Service Unavailable", "SlowDown", "Please reduce your request rate."),
    "503-bare": (503, "Service Unavailable", None, None),
    "429": (429, "Too Many Requests", "TooManyRequests", "Too many requests."),
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
}


@dataclass(frozen=True)
class Schedule:
    """Which requests fail, and how."""

    #: Fault -> probability per request (their sum at most 1).
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    #: `rates` apply only to requests whose path contains this ("/media/": the objects, not the bucket check).
    only: str = ""
    #: A request whose path contains one of these always gets `outage` (a persistent outage there).
    keys: tuple[str, ...] = ()
    outage: str = "503"
    #: `rates` apply from the `start`-th to before the `end`-th request `only` matches (end None: to the last).
    start: int = 0
    end: int | None = None
    #: How long a stalled request is held before its connection is closed (past the client's read timeout).
    stall_seconds: float = 30.0

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULTS) | ({self.outage} - set(FAULTS))
        if unknown or sum(self.rates.values()) > 1:
            raise ValueError(f"bad schedule: {self.rates} / {self.outage}")


class FaultProxy:
    """`with FaultProxy(upstream, schedule) as proxy:` then point the client at `proxy.endpoint`."""

    def __init__(self, upstream: str, schedule: Schedule | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.schedule = schedule or Schedule()
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        #: (seconds since start, request path, "ok" or the fault), one per request in arrival order.
        self.timeline: list[tuple[float, str, str]] = []
        #: (method, request target with its query), one per request in arrival order.
        self.requests: list[tuple[str, str]] = []
        self._rng = random.Random(self.schedule.seed)
        self._matched = 0
        self._started = time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.endpoint = ""

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result(10)
        port = self._server.sockets[0].getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _in_window(self) -> bool:
        """Count one more request `only` matches: is it within [start, end)?"""
        index, self._matched = self._matched, self._matched + 1
        return self.schedule.start <= index and (self.schedule.end is None or index < self.schedule.end)

    def _pick(self, target: str) -> str:
        """The n-th request's fate ("ok" to forward it)."""
        sched = self.schedule
        now = time.monotonic() - self._started
        draw = self._rng.random()  # drawn for every request, so the sequence depends on the seed only
        key = unquote(urlsplit(target).path)
        if any(k in key for k in sched.keys):
            fate = sched.outage
        elif sched.only not in key or not self._in_window():
            fate = "ok"
        else:
            fate, edge = "ok", 0.0
            for fault, rate in sched.rates.items():
                edge += rate
                if draw < edge:
                    fate = fault
                    break
        self.timeline.append((now, key, fate))
        if fate == "ok":
            self.forwarded += 1
        else:
            self.injected[fate] += 1
        return fate

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                request = await _read_message(reader, request=True)
                if request is None:
                    return
                head, headers, body = request
                method, target = head.split(" ")[:2]
                self.requests.append((method, target))
                fate = self._pick(target)
                if fate == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if fate == "stall":
                    await asyncio.sleep(self.schedule.stall_seconds)
                    return
                if fate == "ok":
                    answer = await self._forward(head, headers, body, method)
                else:
                    answer = _error_answer(fate, method)
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:  # closing: end quietly (asyncio logs a handler task that ends cancelled)
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _forward(self, head: str, headers: list[tuple[str, str]], body: bytes, method: str) -> bytes:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            sent = [(k, v) for k, v in headers if k.lower() not in ("connection", "transfer-encoding",
                                                                    "content-length")]
            if body or method in ("POST", "PUT"):
                sent.append(("Content-Length", str(len(body))))
            sent.append(("Connection", "close"))
            up_writer.write(_encode(head, sent, body))
            await up_writer.drain()
            answer = await _read_message(up_reader, request=False, head_request=method == "HEAD")
        finally:
            up_writer.close()
        if answer is None:
            raise ConnectionResetError("upstream closed")
        status, rheaders, rbody = answer
        kept = [(k, v) for k, v in rheaders if k.lower() not in ("connection", "transfer-encoding", "keep-alive")
                and (method == "HEAD" or k.lower() != "content-length")]
        if method != "HEAD":
            kept.append(("Content-Length", str(len(rbody))))
        return _encode(status, kept, rbody)


def _error_answer(fault: str, method: str) -> bytes:
    status, reason, code, message = _ERRORS[fault]
    body = b""
    if code is not None and method != "HEAD":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>fault-proxy</RequestId></Error>").encode()
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    if status in (429, 503):
        headers.append(("Retry-After", "1"))
    return _encode(f"HTTP/1.1 {status} {reason}", headers, body)


def _encode(head: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    return (head + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1") + body


async def _read_message(reader: asyncio.StreamReader, *, request: bool, head_request: bool = False
                        ) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """One HTTP/1.1 message: its first line, headers and (de-chunked) body; None at a clean end of stream."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    lines = raw.decode("latin-1").split("\r\n")
    head = lines[0]
    headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)]
    fields = {k.lower(): v for k, v in headers}
    status = 0 if request else int(head.split(" ")[1])
    if head_request or status in (204, 304) or 100 <= status < 200:
        return head, headers, b""
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from our peers
                return head, headers, body
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in fields:
        return head, headers, await reader.readexactly(int(fields["content-length"]))
    return head, headers, b"" if request else await reader.read()
