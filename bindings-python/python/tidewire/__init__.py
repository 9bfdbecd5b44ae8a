"""Tidewire for Python: a Socket.IO v5 server whose engine is Rust.

Unmodified socket.io clients (JavaScript, Python, Swift, ...) connect over
WebSocket or HTTP long-polling. Handlers are coroutines (or plain functions)
and run on the asyncio loop that started the server; an event handler's
return value is the acknowledgement::

    server = tidewire.Server(port=3000)

    @server.on("echo")
    async def echo(socket, *args):
        return args          # the client's ack gets the same arguments

    await server.start()
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from typing import Any, Awaitable, Callable, Iterable, Optional, Union

from . import _native
from ._native import (
    AckAlreadySent,
    AckTimeout,
    ClusterError,
    Disconnected,
    InvalidArgument,
    ListenError,
    SendError,
    ServerClosed,
    TidewireError,
    TooManyRooms,
)
from ._args import decode, encode
from . import exceptions
from ._namespace import AsyncNamespace
from ._server import AsyncServer
from ._asgi import ASGIApp
from ._managers import AsyncRedisManager, RedisManager

__version__ = _native.__version__

__all__ = [
    "ASGIApp",
    "AckAlreadySent",
    "AsyncNamespace",
    "AsyncRedisManager",
    "AsyncServer",
    "AckTimeout",
    "BroadcastOperator",
    "ClusterError",
    "ConnectionRefused",
    "Disconnected",
    "InvalidArgument",
    "ListenError",
    "RedisManager",
    "Namespace",
    "SendError",
    "Server",
    "ServerClosed",
    "Socket",
    "TidewireError",
    "TooManyRooms",
    "decode",
    "encode",
    "exceptions",
]

class ConnectionRefused(TidewireError):
    """Raise in a connect middleware to refuse: the client gets a
    connect_error with `message` and `data`."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


def _options(**options: Any) -> str:
    """Options as JSON for core's checks (`embed::options`)."""
    try:
        return json.dumps(options, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"options must be JSON values: {e}") from None


def _check_name(kind: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{kind} must be a non-empty string")


def _rooms(rooms: Union[str, Iterable[str]]) -> list[str]:
    if isinstance(rooms, str):
        items = [rooms]
    else:
        try:
            items = list(rooms)
        except TypeError:
            raise InvalidArgument("rooms must be a string or strings") from None
    for r in items:
        _check_name("a room", r)
    return items


def _ack_args(result: Any) -> tuple[Any, ...]:
    if result is None:
        return ()
    if isinstance(result, tuple):
        return result
    return (result,)


class BroadcastOperator:
    """Emits to rooms, except other rooms."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def to(self, rooms: Union[str, Iterable[str]]) -> "BroadcastOperator":
        return BroadcastOperator(self._native.to(_rooms(rooms)))

    def except_(self, rooms: Union[str, Iterable[str]]) -> "BroadcastOperator":
        return BroadcastOperator(self._native.except_(_rooms(rooms)))

    def emit(self, event: str, *args: Any) -> int:
        """Sends; returns how many sockets it reached."""
        _check_name("an event name", event)
        text, attachments = encode(args)
        result: int = self._native.emit(event, text, attachments)
        return result


class Socket:
    """A connected socket (one object per socket for its whole life)."""

    def __init__(self, native: _native.Socket) -> None:
        self._native = native
        self._handshake: Optional[dict[str, Any]] = None
        #: Free for the application's own per-socket state.
        self.data: dict[str, Any] = {}

    @property
    def id(self) -> str:
        return self._native.id

    @property
    def nsp(self) -> str:
        return self._native.nsp

    @property
    def connected(self) -> bool:
        return self._native.connected

    @property
    def user(self) -> Optional[str]:
        """The user the connect middleware admitted the socket as."""
        return self._native.user

    @property
    def handshake(self) -> dict[str, Any]:
        if self._handshake is None:
            self._handshake = json.loads(self._native.handshake)
        return self._handshake

    @property
    def rooms(self) -> set[str]:
        return set(self._native.rooms())

    def join(self, rooms: Union[str, Iterable[str]]) -> None:
        for r in _rooms(rooms):
            self._native.join(r)

    def leave(self, room: str) -> None:
        _check_name("a room", room)
        self._native.leave(room)

    def emit(self, event: str, *args: Any) -> None:
        _check_name("an event name", event)
        text, attachments = encode(args)
        self._native.emit(event, text, attachments)

    async def emit_with_ack(self, event: str, *args: Any, timeout: Optional[float] = None) -> list[Any]:
        """Asks the client; returns its answer's arguments. Raises
        AckTimeout, Disconnected or SendError."""
        _check_name("an event name", event)
        text, attachments = encode(args)
        reply_text, reply_attachments = await self._native.emit_with_ack(event, text, attachments, timeout)
        return decode(reply_text, reply_attachments)

    def to(self, rooms: Union[str, Iterable[str]]) -> BroadcastOperator:
        """To `rooms`, without this socket."""
        return self.broadcast.to(rooms)

    @property
    def broadcast(self) -> BroadcastOperator:
        """To the whole namespace, without this socket."""
        return BroadcastOperator(self._native.broadcast())

    def disconnect(self, close: bool = False) -> None:
        self._native.disconnect(close)


Handler = Callable[..., Any]


class _CatchAll:
    """A `"*"` handler: it gets the event's name before its arguments."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler


class Namespace:
    """One namespace of a server."""

    def __init__(self, server: "Server", name: str) -> None:
        self._server = server
        self.name = name
        self._sockets: dict[str, Socket] = {}
        server._native.watch(name)

    def _socket(self, native: Any) -> Socket:
        socket = self._sockets.get(native.id)
        if socket is None:
            socket = self._sockets[native.id] = Socket(native)
        return socket

    # On the loop (the server's drain), with the handlers to run (core
    # keeps the lists).
    def _dispatch(self, kind: str, native: Any, name: str, text: str, attachments: list[bytes], ack: Any, handlers: list[Handler]) -> None:
        server = self._server
        if kind == "disconnect":
            socket = self._sockets.pop(native.id, None) or Socket(native)
            args: tuple[Any, ...] = (socket, name)
        else:
            socket = self._socket(native)
            args = (socket,)
        if kind == "event":
            try:
                args = (socket, *decode(text, attachments))
            except ValueError as e:
                server._report(e)
                return
        for handler in handlers:
            if isinstance(handler, _CatchAll):
                server._run(handler.handler, (args[0], name, *args[1:]), ack)
            else:
                server._run(handler, args, ack)

    def use(self, middleware: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        """A connect middleware: gets the handshake dict, returns None (or
        `{"user": id, "data": ...}`) to admit, raises ConnectionRefused (or
        any exception) to refuse. Usable as a decorator."""
        if not callable(middleware):
            raise InvalidArgument("a middleware must be callable")
        server = self._server

        def decide(handshake_json: str, reply: Any) -> None:
            async def run() -> None:
                try:
                    result = middleware(json.loads(handshake_json))
                    if inspect.isawaitable(result):
                        result = await result
                    # Core's `embed::decision` reads the outcome.
                    reply.resolve(json.dumps({"admit": result if isinstance(result, dict) else None}))
                except ConnectionRefused as e:
                    reply.resolve(json.dumps({"refuse": e.message, "data": e.data}))
                except Exception as e:  # noqa: BLE001 - any failure refuses
                    reply.resolve(json.dumps({"refuse": str(e) or type(e).__name__}))

            server._soon(lambda: server._loop_task(run()))

        self._server._native.use_middleware(self.name, decide)
        return middleware

    def on(self, event: str, handler: Optional[Handler] = None) -> Any:
        """`on("connection", fn(socket))`, `on("disconnect", fn(socket,
        reason))`, or an event: `fn(socket, *args)`, whose return value is
        the ack (a tuple for several arguments); `"*"`: `fn(socket, event,
        *args)` for every event without a handler of its own. Every handler
        added for a name runs, in order (the first answer is the ack).
        Usable as a decorator."""
        _check_name("an event name", event)
        if handler is None:
            return lambda h: self.on(event, h)
        if not callable(handler):
            raise InvalidArgument("a handler must be callable")
        native_handler: Any = _CatchAll(handler) if event == "*" else handler
        self._server._native.on(self.name, event, native_handler)
        return handler

    def to(self, rooms: Union[str, Iterable[str]]) -> BroadcastOperator:
        return self.broadcast.to(rooms)

    def except_(self, rooms: Union[str, Iterable[str]]) -> BroadcastOperator:
        return self.broadcast.except_(rooms)

    @property
    def broadcast(self) -> BroadcastOperator:
        return BroadcastOperator(self._server._native.broadcast(self.name))

    def emit(self, event: str, *args: Any) -> int:
        return self.broadcast.emit(event, *args)

    @property
    def socket_count(self) -> int:
        return self._server._native.socket_count(self.name)

    async def server_count(self) -> int:
        """How many nodes serve this namespace, this one included (1 outside
        a cluster); ClusterError when the bus cannot count."""
        return await self._server._native.server_count(self.name)

    def limit_event(self, event: str, *, max_bytes: Optional[int] = None, schema: Optional[dict[str, Any]] = None) -> None:
        """Limits `event`: its size in bytes and a JSON Schema of its first
        argument. A refused event never reaches a handler; its ack gets
        `{"status": "error", "code": "payload_too_large" | "invalid_payload", ...}`."""
        _check_name("an event name", event)
        self._server._native.limit_event(self.name, event, _options(max_bytes=max_bytes, schema=schema))

    def enable_presence(self, prefix: str = "") -> None:
        """Turns presence on for the rooms whose name starts with `prefix`
        (users from a middleware's `{"user": ..., "presence": {...}}`)."""
        if not isinstance(prefix, str):
            raise InvalidArgument("prefix must be a string")
        self._server._native.enable_presence(self.name, prefix)

    def presence(self, room: str) -> list[dict[str, Any]]:
        """The users present in `room`: `[{"userId", "connections": [{"id", "node", "meta"}]}]`."""
        _check_name("a room", room)
        result: list[dict[str, Any]] = json.loads(self._server._native.presence(self.name, room))
        return result


class Server:
    """A Socket.IO v5 server. Options: host (default 127.0.0.1), port
    (default 0: a free one), ping_interval / ping_timeout /
    connect_timeout (seconds), max_payload (bytes), cors_origins,
    limits (rate limits and connection caps: {"rateSocket": "100/s:200",
    "rateUser", "rateIp", "events": {name: rate}, "maxViolations",
    "maxConnPerIp", "maxConnPerUser", "maxConnections", "handshakesPerIp", "handshakesTotal",
    "trustedProxies"}), recovery (connection-state recovery window, in
    seconds; off by default), and on_error(exc) for handler exceptions
    (default: printed to stderr)."""

    def __init__(
        self,
        host: Optional[str] = None,
        port: Optional[int] = None,
        *,
        ping_interval: Optional[float] = None,
        ping_timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        max_payload: Optional[int] = None,
        cors_origins: Optional[list[str]] = None,
        limits: Optional[dict[str, Any]] = None,
        recovery: Optional[float] = None,
        on_error: Optional[Callable[[BaseException], None]] = None,
    ) -> None:
        self._native = _native.Server(
            _options(
                host=host,
                port=port,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                max_payload=max_payload,
                connect_timeout=connect_timeout,
                cors_origins=cors_origins,
                limits=limits,
                recovery=recovery,
            )
        )
        self._on_error = on_error
        self._namespaces: dict[str, Namespace] = {}
        self._native.set_dispatcher(self._wake)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.address: Optional[tuple[str, int]] = None

    # --- running work on the loop -------------------------------------
    # Called on an engine thread once per batch of deliveries: one drain
    # on the loop takes them all, in order.
    def _wake(self) -> None:
        self._soon(self._drain)

    def _drain(self) -> None:
        for nsp, kind, native, name, text, attachments, ack, handlers in self._native.take_deliveries():
            ns = self._namespaces.get(nsp)
            if ns is not None:
                try:
                    ns._dispatch(kind, native, name, text, attachments, ack, handlers)
                except Exception as e:  # noqa: BLE001 - the others still run
                    self._report(e)

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _loop_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _report(self, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(exc)
        else:
            print(f"tidewire: handler failed: {exc!r}", file=sys.stderr)

    def _run(self, handler: Handler, args: tuple[Any, ...], ack: Any) -> None:
        """Runs a handler on the loop; its result answers `ack`."""

        def answer(result: Any) -> None:
            if ack is not None:
                text, attachments = encode(_ack_args(result))
                try:
                    ack.send(text, attachments)
                except AckAlreadySent:
                    pass  # another handler of the event answered first
                except TidewireError as e:
                    self._report(e)

        try:
            result = handler(*args)
        except Exception as e:  # noqa: BLE001 - reported, the server goes on
            self._report(e)
            return
        if inspect.isawaitable(result):

            async def finish() -> None:
                try:
                    answer(await result)
                except Exception as e:  # noqa: BLE001
                    self._report(e)

            self._loop_task(finish())
        else:
            try:
                answer(result)
            except Exception as e:  # noqa: BLE001
                self._report(e)

    # --- the API --------------------------------------------------------
    def of(self, name: str) -> Namespace:
        _check_name("a namespace", name)
        ns = self._namespaces.get(name)
        if ns is None:
            ns = self._namespaces[name] = Namespace(self, name)
        return ns

    def use(self, middleware: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        return self.of("/").use(middleware)

    def on(self, event: str, handler: Optional[Handler] = None) -> Any:
        return self.of("/").on(event, handler)

    def to(self, rooms: Union[str, Iterable[str]]) -> BroadcastOperator:
        return self.of("/").to(rooms)

    def except_(self, rooms: Union[str, Iterable[str]]) -> BroadcastOperator:
        return self.of("/").except_(rooms)

    def emit(self, event: str, *args: Any) -> int:
        return self.of("/").emit(event, *args)

    async def join_cluster(
        self, redis_url: str, *, prefix: Optional[str] = None, request_timeout: Optional[float] = None, redis_cluster: bool = False
    ) -> None:
        """Joins a cluster over Redis, wire-compatible with
        `@socket.io/redis-adapter` (`createAdapter`): broadcasts reach the
        sockets of every node, official socket.io nodes included. `prefix`
        is the channel prefix (default "socket.io"), `request_timeout` in
        seconds (default 5), `redis_cluster` when `redis_url` lists seed
        nodes of a Redis Cluster, separated by commas."""
        options = _options(redis_url=redis_url, prefix=prefix, request_timeout=request_timeout, redis_cluster=bool(redis_cluster))
        await self._native.join_cluster(options)

    async def server_count(self) -> int:
        """How many nodes serve the main namespace, this one included."""
        return await self.of("/").server_count()

    async def start(self) -> tuple[str, int]:
        """Starts listening on the running loop; returns (host, port)."""
        self._loop = asyncio.get_running_loop()
        address = await self._native.start()
        host, _, port = address.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        return self.address

    @property
    def url(self) -> str:
        if self.address is None:
            raise ServerClosed("the server has not started")
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    async def drain(
        self, *, batch_size: Optional[int] = None, batch_interval: Optional[float] = None, ack_deadline: Optional[float] = None
    ) -> dict[str, int]:
        """Shuts down gracefully: refuses newcomers, sends `tidewire:drain` to
        connected clients in batches, gives in-flight acks until
        `ack_deadline` seconds, closes every connection and stops."""
        options = _options(batch_size=batch_size, batch_interval=batch_interval, ack_deadline=ack_deadline)
        connections, batches, abandoned = await self._native.drain(options)
        for task in list(self._tasks):
            task.cancel()
        return {"connections": connections, "batches": batches, "acks_abandoned": abandoned}

    async def close(self) -> None:
        """Disconnects everyone and stops."""
        await self._native.close()
        for task in list(self._tasks):
            task.cancel()
