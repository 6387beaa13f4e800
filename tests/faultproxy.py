"""A fault-injecting HTTP proxy on 127.0.0.1, for network-fault tests (no mocks: real sockets).

It sits between a client (s3fs, gcsfs, an HTTP client) and a real server (moto, the GCS
emulator, the Hub test server): point the client's endpoint at ``proxy.url``. Every request is
read in full, matched against the rules, and then either forwarded (one upstream connection per
request, the answer relayed to the client over its kept-alive connection) or answered with a
fault:

========== ===============================================================================
``drop``   close the client's connection without an answer (``forward=True``: after the
           server received and applied the request: the client cannot know it succeeded)
``reset``  the same with a TCP reset (RST) instead of an orderly close
``stall``  answer nothing for ``seconds`` (longer than the client's timeout), then close;
           with ``fraction`` set, send the headers and that share of the body first
``slow``   relay the answer at ``rate`` bytes per second
``status`` answer ``status`` (500, 503...) with an S3-style XML error body
``truncate`` send the headers with the full ``Content-Length`` and ``fraction`` of the body,
           then close
``corrupt`` relay the whole answer with 4 bytes of the body inverted at ``fraction`` of its
           length (default: the middle): damage in transit that no length check sees
========== ===============================================================================

A rule matches on ``method`` and a regular expression searched in the request target (path and
query); it lets ``skip`` matches through, then applies to the next ``times`` matches (``None``:
to every match). The proxy counts what it did (``rule.applied``) and logs every request
(``proxy.log``), so a test can prove that its faults were really injected.

Usage::

    with FaultProxy("http://127.0.0.1:5000") as proxy:
        proxy.add(Rule("truncate", method="GET", path=r"\\.parquet$", times=2))
        fs = s3fs.S3FileSystem(..., client_kwargs={"endpoint_url": proxy.url})
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

FAULTS = ("drop", "reset", "stall", "slow", "status", "truncate", "corrupt")
_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout", 429: "Too Many Requests"}
_S3_CODES = {500: "InternalError", 503: "ServiceUnavailable", 502: "BadGateway",
             504: "GatewayTimeout", 429: "SlowDown"}


@dataclass
class Rule:
    """One fault and the requests it applies to."""

    fault: str
    method: str | None = None
    path: str | None = None
    times: int | None = 1
    skip: int = 0
    status: int = 503
    seconds: float = 30.0
    rate: int = 64 * 1024
    fraction: float | None = None
    forward: bool = False
    matched: int = 0
    applied: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; one of {', '.join(FAULTS)}")
        self._pattern = re.compile(self.path) if self.path else None

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and method.upper() != self.method.upper():
            return False
        return self._pattern is None or self._pattern.search(target) is not None

    def take(self) -> bool:
        """Count a match; True if the fault applies to it."""
        self.matched += 1
        if self.matched <= self.skip:
            return False
        if self.times is not None and self.applied >= self.times:
            return False
        self.applied += 1
        return True


@dataclass
class Request:
    """One request the proxy saw, and what it did with it."""

    method: str
    target: str
    fault: str | None
    status: int | None
    at: float


class _Closed(Exception):
    """The client closed its connection."""


class FaultProxy:
    """An HTTP/1.1 proxy to ``upstream`` on 127.0.0.1 that injects faults by rule."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy only forwards to loopback servers")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self._port = port
        self.rules: list[Rule] = []
        self.log: list[Request] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    # ------------------------------------------------------------------ control
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *rules: Rule) -> list[Rule]:
        with self._lock:
            self.rules.extend(rules)
        return list(rules)

    def clear(self) -> None:
        """Remove every rule (the log stays)."""
        with self._lock:
            self.rules.clear()

    def requests(self, method: str | None = None, path: str | None = None) -> list[Request]:
        pattern = re.compile(path) if path else None
        with self._lock:
            return [r for r in self.log if (method is None or r.method == method)
                    and (pattern is None or pattern.search(r.target))]

    def faults(self) -> list[Request]:
        with self._lock:
            return [r for r in self.log if r.fault]

    def start(self) -> FaultProxy:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", self._port))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        with contextlib.suppress(Exception):
            loop.close()
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving
    def _match(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, target) and rule.take():
                    return rule
        return None

    def _record(self, method: str, target: str, fault: str | None, status: int | None) -> None:
        with self._lock:
            self.log.append(Request(method, target, fault, status, time.monotonic()))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    method, target, head, body = await _read_request(reader, writer)
                except _Closed:
                    return
                rule = self._match(method, target)
                keep = await self._answer(rule, method, target, head, body, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, rule: Rule | None, method: str, target: str, head: bytes,
                      body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Handle one request; False when the client connection must be closed."""
        fault = rule.fault if rule else None
        if rule is not None and fault in ("drop", "reset") and not rule.forward:
            self._record(method, target, fault, None)
            _abort(writer, reset=fault == "reset")
            return False
        if rule is not None and fault == "stall" and rule.fraction is None:
            self._record(method, target, fault, None)
            await asyncio.sleep(rule.seconds)
            _abort(writer, reset=False)
            return False
        if rule is not None and fault == "status":
            self._record(method, target, fault, rule.status)
            writer.write(_error_response(rule.status, method))
            await writer.drain()
            return True
        try:
            status, response_head, response_body = await self._forward(method, head, body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            self._record(method, target, "upstream-error", 502)
            writer.write(_error_response(502, method))
            await writer.drain()
            return True
        self._record(method, target, fault, status)
        if rule is not None and fault in ("drop", "reset"):  # forwarded, then dropped
            _abort(writer, reset=fault == "reset")
            return False
        if rule is not None and fault in ("truncate", "stall"):
            share = 0.5 if rule.fraction is None else rule.fraction
            writer.write(response_head + response_body[: int(len(response_body) * share)])
            await writer.drain()
            if fault == "stall":
                await asyncio.sleep(rule.seconds)
            _abort(writer, reset=False)
            return False
        if rule is not None and fault == "corrupt" and len(response_body) >= 4:
            at = min(int(len(response_body) * (0.5 if rule.fraction is None else rule.fraction)),
                     len(response_body) - 4)
            flipped = bytes(b ^ 0xFF for b in response_body[at:at + 4])
            response_body = response_body[:at] + flipped + response_body[at + 4:]
        if rule is not None and fault == "slow":
            data = response_head + response_body
            step = max(1, rule.rate // 20)
            for offset in range(0, len(data), step):
                writer.write(data[offset: offset + step])
                await writer.drain()
                await asyncio.sleep(step / rule.rate)
            return True
        writer.write(response_head + response_body)
        await writer.drain()
        return True

    async def _forward(self, method: str, head: bytes, body: bytes) -> tuple[int, bytes, bytes]:
        """Send one request upstream on a fresh connection; the whole answer, re-framed."""
        reader, writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            writer.write(_with_header(head, b"Connection", b"close") + body)
            await writer.drain()
            response_head = await reader.readuntil(b"\r\n\r\n")
            while response_head.startswith(b"HTTP/1.1 100"):  # interim answer: skip it
                response_head = await reader.readuntil(b"\r\n\r\n")
            code = int(response_head.split(b" ", 2)[1])
            framing = _headers(response_head)
            if method == "HEAD" or code in (204, 304):
                response_body = b""
            elif b"content-length" in framing:
                response_body = await reader.readexactly(int(framing[b"content-length"]))
            elif framing.get(b"transfer-encoding", b"").lower() == b"chunked":
                response_body = await _read_chunked(reader)
            else:
                response_body = await reader.read(-1)
        finally:
            writer.close()
        status = int(response_head.split(b" ", 2)[1])
        headers = _headers(response_head)
        if b"content-length" not in headers and b"transfer-encoding" not in headers \
                and method != "HEAD" and status not in (204, 304):
            response_head = _with_header(response_head, b"Content-Length",
                                         str(len(response_body)).encode())
        response_head = _with_header(response_head, b"Connection", b"keep-alive")
        return status, response_head, response_body


# ---------------------------------------------------------------------- HTTP helpers
async def _read_request(reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> tuple[str, str, bytes, bytes]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        raise _Closed from None
    except asyncio.LimitOverrunError:
        raise _Closed from None
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, target = request_line.split(" ")[:2]
    headers = _headers(head)
    if headers.get(b"expect", b"").lower() == b"100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        head = _without_header(head, b"Expect")
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = await _read_chunked(reader)
    else:
        body = b""
    return method, target, head, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """The raw bytes of a chunked body, framing included (forwarded as is)."""
    out = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        out += line
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then an empty line
                trailer = await reader.readuntil(b"\r\n")
                out += trailer
                if trailer == b"\r\n":
                    return bytes(out)
        out += await reader.readexactly(size + 2)


def _headers(head: bytes) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            found[name.strip().lower()] = value.strip()
    return found


def _without_header(head: bytes, name: bytes) -> bytes:
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]] + [line for line in lines[1:]
                         if line.split(b":", 1)[0].strip().lower() != name.lower()]
    return b"\r\n".join(kept) + b"\r\n\r\n"


def _with_header(head: bytes, name: bytes, value: bytes) -> bytes:
    return _without_header(head, name)[:-2] + name + b": " + value + b"\r\n\r\n"


def _error_response(status: int, method: str) -> bytes:
    code = _S3_CODES.get(status, "InternalError")
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>injected by the fault proxy</Message>"
            f"<RequestId>faultproxy</RequestId></Error>").encode()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
            f"Connection: keep-alive\r\n\r\n").encode()
    return head if method == "HEAD" else head + body


def _abort(writer: asyncio.StreamWriter, reset: bool) -> None:
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    if reset:
        transport.abort()
    else:
        with contextlib.suppress(Exception):
            writer.close()
