"""`ASGIApp`: Socket.IO on the application's own ASGI server and port
(uvicorn, hypercorn, ...), python-socketio's `ASGIApp` signature.

The ASGI server parses HTTP and WebSocket frames; the core's host transport
(`tidewire::transport::host`, through `embed::host`) decides everything
else, exactly as on Tidewire's own listener: long-polling requests go in
whole and come back as complete answers, WebSocket messages go in one by
one and the frames to send come out in batches.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Optional

from ._native import ServerClosed
from ._server import AsyncServer

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _call(hook: Optional[Callable[[], Any]]) -> None:
    if hook is not None:
        result = hook()
        if inspect.isawaitable(result):
            await result


def _request(scope: Scope) -> tuple[str, str, list[tuple[bytes, bytes]], Optional[str], bool]:
    """`(method, target, headers, remote, secure)` for the native layer."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, (bytes, bytearray)) else scope.get("path", "/")
    query = scope.get("query_string") or b""
    target = path + ("?" + query.decode("latin-1") if query else "")
    client = scope.get("client")
    remote = None
    if client:
        host, port = client[0], client[1]
        remote = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    headers = [(bytes(n), bytes(v)) for n, v in scope.get("headers") or []]
    secure = scope.get("scheme") in ("https", "wss")
    return scope.get("method", "GET"), target, headers, remote, secure


class ASGIApp:
    """Serves `socketio_server` at `/socketio_path/` and everything else with
    `other_asgi_app` (404 without one). Lifespan events go to
    `other_asgi_app`; `on_startup` / `on_shutdown` (plain functions or
    coroutine functions) run before it starts and after it has shut down
    (python-socketio runs them instead of the other app's lifespan)."""

    def __init__(
        self,
        socketio_server: AsyncServer,
        other_asgi_app: Any = None,
        static_files: Any = None,
        socketio_path: str = "socket.io",
        on_startup: Optional[Callable[[], Any]] = None,
        on_shutdown: Optional[Callable[[], Any]] = None,
    ) -> None:
        if not isinstance(socketio_server, AsyncServer):
            raise ValueError("ASGIApp serves a tidewire.AsyncServer")
        if static_files:
            raise NotImplementedError("static_files is not supported: serve them with the other ASGI app")
        self.sio = socketio_server
        self.other_asgi_app = other_asgi_app
        self.engineio_path = "/" + socketio_path.strip("/") + "/"
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    def _ours(self, scope: Scope) -> bool:
        path = scope.get("path") or ""
        return path.startswith(self.engineio_path) or path == self.engineio_path[:-1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        self.sio._bind_loop()
        if kind == "http" and self._ours(scope):
            await self._http(scope, receive, send)
        elif kind == "websocket" and self._ours(scope):
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self.other_asgi_app is not None:
            await self.other_asgi_app(scope, receive, send)
        elif kind == "http":
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Not Found"})
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.other_asgi_app is not None:
            # The other app runs its own lifespan; on_startup runs before it
            # starts, on_shutdown once it has shut down.
            async def receive_hooked() -> dict[str, Any]:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.sio._start_manager()
                    await _call(self.on_startup)
                return message

            async def send_hooked(message: dict[str, Any]) -> None:
                if message["type"] == "lifespan.shutdown.complete":
                    await _call(self.on_shutdown)
                await send(message)

            await self.other_asgi_app(scope, receive_hooked, send_hooked)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.sio._start_manager()
                    await _call(self.on_startup)
                except Exception as e:  # noqa: BLE001 - reported to the server
                    await send({"type": "lifespan.startup.failed", "message": repr(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await _call(self.on_shutdown)
                except Exception as e:  # noqa: BLE001
                    await send({"type": "lifespan.shutdown.failed", "message": repr(e)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The body, cut just past the limit: the core answers 413 for it.
        limit = self.sio.max_http_buffer_size + 1
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if len(body) < limit:
                body += message.get("body", b"")[: limit - len(body)]
            if not message.get("more_body"):
                break
        try:
            pending = self.sio._native.host_http(_request(scope), bytes(body))
        except ServerClosed:
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Service Unavailable"})
            return
        answer = asyncio.ensure_future(pending)
        # A long poll waits for packets; the client may leave meanwhile.
        gone = asyncio.ensure_future(receive())
        try:
            await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not answer.done():
                answer.cancel()
            if not gone.done():
                gone.cancel()
        if answer.cancelled() or not answer.done():
            return
        status, headers, payload = answer.result()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        try:
            ws, refusal = self.sio._native.host_websocket(_request(scope))
        except ServerClosed:
            await send({"type": "websocket.close", "code": 1001})
            return
        if ws is None:
            assert refusal is not None
            status, headers, body = refusal
            self.sio._log_engine("websocket refused: %s %s", status, body)
            if "websocket.http.response" in (scope.get("extensions") or {}):
                await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        self.sio._log_engine("websocket open: session %s", ws.sid)
        writer = asyncio.ensure_future(self._write(ws, send))
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    if text is not None:
                        ws.receive_text(text)
                    else:
                        ws.receive_bytes(message.get("bytes") or b"")
                elif kind == "websocket.disconnect":
                    break
        finally:
            ws.receive_close()
            try:
                await asyncio.wait_for(writer, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                writer.cancel()
            self.sio._log_engine("websocket closed: session %s", ws.sid)

    @staticmethod
    async def _write(ws: Any, send: Send) -> None:
        try:
            while True:
                out = await ws.next_outgoing()
                if isinstance(out, tuple):
                    code, reason = out
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                for frame in out:
                    if isinstance(frame, str):
                        await send({"type": "websocket.send", "text": frame})
                    else:
                        await send({"type": "websocket.send", "bytes": frame})
        except Exception:  # noqa: BLE001 - the client went away mid-write
            ws.receive_close()
