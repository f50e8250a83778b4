"""The server's pure-ASGI middleware: request ids, API-key auth and the request-body guard.

Pure ASGI rather than ``@app.middleware``: these run on every request, and the decorator's
per-request task and stream cost more than the checks themselves. Request ids come from
``asgi-correlation-id`` (``RequestIdMiddleware``), which keeps the id in a context variable:
the 500 handler reads it (``current_request_id``), and so can a log filter
(``asgi_correlation_id.CorrelationIdFilter``).
"""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Mapping, Sequence

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def sane_request_id(value: str) -> bool:
    """A client's ``X-Request-ID`` is kept only if it is short and cannot forge a log line.

    >>> sane_request_id("abc-123"), sane_request_id("two words")
    (True, False)
    """
    return _REQUEST_ID.fullmatch(value) is not None


class RequestIdMiddleware(CorrelationIdMiddleware):
    """Gives every request an id, the client's ``X-Request-ID`` if sane, else a new uuid4 hex,
    and sends it back on the response.

    >>> app.add_middleware(RequestIdMiddleware)  # doctest: +SKIP
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, header_name="X-Request-ID", validator=sane_request_id)


def current_request_id() -> str:
    """The id of the request being handled (a fresh one outside any request)."""
    return correlation_id.get() or uuid.uuid4().hex


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The one error shape of this API: ``{"error": "…"}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ApiKeyAuth:
    """401 to any request but ``/health`` (and CORS preflights) without ``Authorization:
    Bearer <key>`` for one of ``api_keys``; checked before any body is read.

    >>> app.add_middleware(ApiKeyAuth, api_keys=["k-0123456789abcdef"])  # doctest: +SKIP
    """

    def __init__(
        self, app: ASGIApp, api_keys: Sequence[str], open_paths: Sequence[str] = ("/health",)
    ) -> None:
        if not api_keys:
            raise ValueError("ApiKeyAuth needs at least one key")
        self.app = app
        self.keys = tuple(key.encode() for key in api_keys)
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.open_paths
            or scope["method"] == "OPTIONS"
            or self._authorised(scope)
        ):
            await self.app(scope, receive, send)
            return
        response = error_response(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        matched = False
        for key in self.keys:  # every key is compared, in constant time, so timing reveals nothing
            matched |= hmac.compare_digest(token, key)
        return scheme.lower() == b"bearer" and matched


class BodyGuard:
    """Reads a request body up to ``max_bytes`` before the app sees it: 413 past the limit
    (with or without a Content-Length header, chunked included) and 400 when it is not UTF-8.

    >>> app.add_middleware(BodyGuard, max_bytes=1_000_000)  # doctest: +SKIP
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        try:
            body = await _read_body(receive, self.max_bytes)
        except _TooLarge:
            await self._too_large(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            response = error_response(400, f"request body is not valid UTF-8 (byte {err.start})")
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, f"request body over {self.max_bytes} bytes")(scope, receive, send)


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole body, None if the client disconnected; ``_TooLarge`` past ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then the client's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
