"""python-socketio 5.x's `AsyncServer` and `AsyncNamespace` on Tidewire's
core: an application written for python-socketio runs with its import
changed (`import tidewire as socketio`).

Everything crosses into the core through the same native layer as the
socket-object API (`tidewire.Server`): one dispatcher, the same argument
conversion (`_args`), the same handler lists in core. What python-socketio
decides in Python (which handler runs, its call signature, acks from return
values, sessions) is decided here, the way python-socketio does it.

Differences that cannot be hidden are refused loudly: an option or value
this server cannot honour raises `ValueError` or `NotImplementedError`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar, Union, overload

from . import _native
from ._args import decode, encode
from ._native import AckTimeout, Disconnected, TidewireError
from .exceptions import ConnectionRefusedError, TimeoutError
from ._managers import AsyncRedisManager, _emit_message
from ._namespace import AsyncNamespace, _invoke, _SessionContext
from ._wsgi import _REASONS, _Reason, _environ

default_logger = logging.getLogger("socketio.server")

Handler = Callable[..., Any]
F = TypeVar("F", bound=Callable[..., Any])
Rooms = Union[str, Iterable[str]]

# Options python-socketio / python-engineio accept whose only honoured value
# is the one this server has, and why.
_FIXED: dict[str, tuple[Any, str]] = {
    "json": (None, "a custom json module is not supported"),
    "async_handlers": (True, "handlers always run as tasks"),
    "serializer": ("default", "only the default JSON serializer is supported"),
    "allow_upgrades": (True, "upgrades to WebSocket are always offered; use transports= to restrict"),
    "cors_credentials": (True, "credentials are always allowed for listed origins"),
    "monitor_clients": (True, "heartbeats always run"),
    "http_compression": (False, "long-polling answers are not compressed"),
    "cookie": (None, "the session cookie is not supported"),
}


_NO_CLUSTER_ACKS = (
    "call / emit with a callback to clients of other nodes needs AsyncRedisManager(protocol='python-socketio'); "
    "with protocol='socket.io' only clients of this node can answer"
)

# How long an admitted client may take to become a socket (core creates it
# right after the admission unless the client left).
_CONNECTING_FOR = 30.0



def _data_args(data: Any) -> tuple[Any, ...]:
    """python-socketio's `data`: a tuple is several arguments, None none."""
    if data is None:
        return ()
    if isinstance(data, tuple):
        return data
    return (data,)


def _wire_rooms(rooms: Optional[Rooms]) -> Union[str, list[str], None]:
    """Rooms as python-socketio's messages carry them."""
    return rooms if rooms is None or isinstance(rooms, str) else list(rooms)


def _room_list(rooms: Rooms) -> list[str]:
    if isinstance(rooms, str):
        return [rooms]
    return list(rooms)


class _Connecting:
    """What a `connect` handler asked for before the socket exists: applied
    once the core has created it."""

    def __init__(self) -> None:
        self.rooms: list[str] = []
        self.emits: list[tuple[str, str, list[bytes]]] = []


class _Namespace:
    """The server's state for one namespace."""

    def __init__(self) -> None:
        self.sockets: dict[str, Any] = {}  # sid -> native socket
        self.sids: dict[str, str] = {}  # core socket id -> sid
        self.connecting: dict[str, _Connecting] = {}
        self.subscribed: set[str] = set()
        self.middleware = False


class AsyncServer:
    """A Socket.IO server with python-socketio's `AsyncServer` API, served by
    `tidewire.ASGIApp` (or any ASGI server through it).

    Honoured options: `cors_allowed_origins` (None: no CORS headers, `"*"`,
    a string or a list), `ping_interval`, `ping_timeout`,
    `max_http_buffer_size`, `async_mode="asgi"`, `transports`,
    `always_connect`, `logger`, `engineio_logger`, `namespaces` (a list;
    `"*"` is refused), `client_manager` (a `tidewire.AsyncRedisManager`). Any other option, or a value this server cannot
    honour, raises `ValueError` / `NotImplementedError`.

    Like python-socketio, it refuses no event for its rate: the core's
    event rate limits are off. Tidewire's own `limits` option (a dict with
    the core's `LimitsSpec` keys: `rateSocket`, `rateUser`, `rateIp`,
    `events`, `maxViolations`, `maxConnPerIp`, `maxConnPerUser`,
    `maxConnections`, `handshakesPerIp`, `handshakesTotal`, `trustedProxies`)
    sets them, and
    the connection caps, which stay on by default.
    """

    reason = _Reason

    def __init__(
        self,
        client_manager: Any = None,
        logger: Union[bool, logging.Logger] = False,
        json: Any = None,
        async_handlers: bool = True,
        namespaces: Optional[Union[str, list[str]]] = None,
        always_connect: bool = False,
        **kwargs: Any,
    ) -> None:
        if client_manager is not None and not isinstance(client_manager, AsyncRedisManager):
            raise NotImplementedError(
                f"AsyncServer: client_manager={type(client_manager).__name__} is not supported: "
                "use tidewire.AsyncRedisManager (wire-compatible with python-socketio's AsyncRedisManager)"
            )
        self._check_fixed("json", json)
        self._check_fixed("async_handlers", async_handlers)
        async_mode = kwargs.pop("async_mode", None)
        if async_mode not in (None, "asgi"):
            raise ValueError(f"async_mode={async_mode!r} is not supported: tidewire serves through ASGI (async_mode='asgi')")
        self.async_mode = "asgi"
        options: dict[str, Any] = {}
        if "ping_interval" in kwargs:
            interval = kwargs.pop("ping_interval")
            if isinstance(interval, (tuple, list)):
                raise NotImplementedError("ping_interval as (interval, grace period) is not supported: give seconds")
            options["ping_interval"] = interval
        if "ping_timeout" in kwargs:
            options["ping_timeout"] = kwargs.pop("ping_timeout")
        if "max_http_buffer_size" in kwargs:
            options["max_payload"] = kwargs.pop("max_http_buffer_size")
        self.max_http_buffer_size: int = options.get("max_payload") or 1_000_000
        if "cors_allowed_origins" in kwargs:
            origins = kwargs.pop("cors_allowed_origins")
            if origins is None or origins == [] or origins == "":
                pass
            elif isinstance(origins, str):
                options["cors_origins"] = [origins]
            elif isinstance(origins, (list, tuple)) and all(isinstance(o, str) for o in origins):
                options["cors_origins"] = list(origins)
            else:
                raise ValueError("cors_allowed_origins must be None, '*', an origin or a list of origins")
        if "transports" in kwargs:
            transports = kwargs.pop("transports")
            options["transports"] = [transports] if isinstance(transports, str) else transports
        # python-socketio has no event rate limits: an app moved here must
        # not start getting refusals under load. `limits=` opts in.
        limits: dict[str, Any] = {"rateSocket": "off", "rateUser": "off", "rateIp": "off"}
        if "limits" in kwargs:
            extra = kwargs.pop("limits")
            if not isinstance(extra, dict):
                raise ValueError("limits must be a dict of the core's LimitsSpec keys (e.g. {'rateSocket': '20/s:40'})")
            limits.update(extra)
        options["limits"] = limits
        engineio_logger = kwargs.pop("engineio_logger", False)
        for name, value in list(kwargs.items()):
            if name in _FIXED:
                self._check_fixed(name, value)
                del kwargs[name]
        if kwargs:
            names = ", ".join(sorted(kwargs))
            raise ValueError(f"AsyncServer: unsupported option(s): {names}")
        if namespaces == "*" or (isinstance(namespaces, list) and "*" in namespaces):
            raise NotImplementedError("namespaces='*' (any namespace) is not supported: list the namespaces")
        if namespaces is not None and not (isinstance(namespaces, list) and all(isinstance(n, str) for n in namespaces)):
            raise ValueError("namespaces must be a list of namespace names")

        try:
            self._native = _native.Server(json_module_dumps(options))
        except _native.InvalidArgument as e:
            raise ValueError(str(e)) from None
        self._native.set_dispatcher(self._wake)

        if not isinstance(logger, bool):
            self.logger = logger
        else:
            self.logger = default_logger
            if self.logger.level == logging.NOTSET:
                self.logger.setLevel(logging.INFO if logger else logging.ERROR)
                if not self.logger.handlers:
                    self.logger.addHandler(logging.StreamHandler())
        if isinstance(engineio_logger, bool):
            self.eio_logger: Optional[logging.Logger] = None
            if engineio_logger:
                self.eio_logger = logging.getLogger("engineio.server")
                if self.eio_logger.level == logging.NOTSET:
                    self.eio_logger.setLevel(logging.INFO)
        else:
            self.eio_logger = engineio_logger

        self.always_connect = bool(always_connect)
        self.namespaces: list[str] = list(namespaces or ["/"])
        self.handlers: dict[str, dict[str, Handler]] = {}
        self.namespace_handlers: dict[str, AsyncNamespace] = {}
        self.not_handled = object()
        self._spaces: dict[str, _Namespace] = {}
        self._sessions: dict[tuple[str, str], dict[str, Any]] = {}
        self._environs: dict[tuple[str, str], dict[str, Any]] = {}
        self._auths: dict[tuple[str, str], Any] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self.manager: Optional[AsyncRedisManager] = client_manager
        # The manager whose messages this server publishes (python-socketio's
        # protocol); with protocol="socket.io" the core's cluster carries all.
        self._pubsub = client_manager if client_manager is not None and client_manager.protocol == "python-socketio" else None
        self._cluster = client_manager is not None and client_manager.protocol == "socket.io"
        self._manager_started: Optional[asyncio.Future[Any]] = None
        if client_manager is not None:
            client_manager.set_server(self)
        for name in ["/", *self.namespaces]:
            self._space(name)

    @staticmethod
    def _check_fixed(name: str, value: Any) -> None:
        honoured, why = _FIXED[name]
        if value is not honoured and value != honoured:
            raise NotImplementedError(f"AsyncServer: {name}={value!r} is not supported ({why})")

    def is_asyncio_based(self) -> bool:
        return True

    # --- registration --------------------------------------------------------
    def _space(self, nsp: str) -> _Namespace:
        space = self._spaces.get(nsp)
        if space is None:
            if not isinstance(nsp, str) or not nsp.startswith("/"):
                raise ValueError(f"namespace {nsp!r} must start with '/'")
            space = self._spaces[nsp] = _Namespace()
            self._native.watch(nsp)
            self._native.use_middleware(nsp, lambda handshake, reply: self._admit(nsp, handshake, reply))
        return space

    def _subscribe(self, nsp: str, event: str) -> None:
        space = self._space(nsp)
        if event in ("connect", "disconnect") or event in space.subscribed:
            return
        space.subscribed.add(event)
        self._native.on(nsp, event, self._dispatch)

    @overload
    def on(self, event: str, handler: None = None, namespace: Optional[str] = None) -> Callable[[F], F]: ...

    @overload
    def on(self, event: str, handler: Handler, namespace: Optional[str] = None) -> None: ...

    def on(self, event: str, handler: Optional[Handler] = None, namespace: Optional[str] = None) -> Any:
        """Registers `handler` for `event` (`connect`, `disconnect`, `*` for
        every event without a handler of its own, or any event). Usable as
        a decorator."""
        namespace = namespace or "/"
        if namespace == "*":
            raise NotImplementedError("handlers for namespace '*' are not supported")
        if not isinstance(event, str) or not event:
            raise ValueError("an event name must be a non-empty string")

        def set_handler(handler: Handler) -> Handler:
            self.handlers.setdefault(namespace, {})[event] = handler
            self._subscribe(namespace, event)
            return handler

        if handler is None:
            return set_handler
        set_handler(handler)
        return None

    @overload
    def event(self, handler: F, /) -> F: ...

    @overload
    def event(self, *, namespace: Optional[str] = None) -> Callable[[F], F]: ...

    def event(self, *args: Any, **kwargs: Any) -> Any:
        """Registers a handler named after the function: `@sio.event` or
        `@sio.event(namespace="/chat")`."""
        if len(args) == 1 and len(kwargs) == 0 and callable(args[0]):
            return self.on(args[0].__name__)(args[0])

        def set_handler(handler: Handler) -> Handler:
            self.on(handler.__name__, *args, **kwargs)(handler)
            return handler

        return set_handler

    def register_namespace(self, namespace_handler: "AsyncNamespace") -> None:
        """Routes the events of `namespace_handler.namespace` to its
        `on_<event>` methods."""
        if not isinstance(namespace_handler, AsyncNamespace):
            raise ValueError("Not a valid namespace class for this server")
        namespace_handler._set_server(self)
        nsp = namespace_handler.namespace
        if nsp == "*":
            raise NotImplementedError("class-based namespace '*' is not supported")
        self.namespace_handlers[nsp] = namespace_handler
        self._subscribe(nsp, "*")

    # --- running work on the loop --------------------------------------------
    def _bind_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self.manager is not None and self._manager_started is None:
            self._manager_started = asyncio.ensure_future(self.manager.initialize())

    async def _start_manager(self) -> None:
        """Starts the client manager (ASGIApp's startup awaits it)."""
        self._bind_loop()
        if self._manager_started is not None:
            await self._manager_started

    def _soon(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _task(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # Called on an engine thread once per batch of deliveries (the native
    # layer's one dispatcher): one drain on the loop takes them all, in
    # order.
    def _wake(self) -> None:
        self._soon(self._drain)

    def _drain(self) -> None:
        for nsp, kind, native, name, text, attachments, ack, _handlers in self._native.take_deliveries():
            try:
                self._deliver(nsp, kind, native, name, text, attachments, ack)
            except Exception:  # noqa: BLE001 - the others still run
                self.logger.exception("delivery to namespace %s failed", nsp)

    # Registered with `on` so that core delivers the event; never called
    # (deliveries come through `_drain`).
    def _dispatch(self, *_delivery: Any) -> None:
        return None

    def _deliver(self, nsp: str, kind: str, native: Any, name: str, text: str, attachments: list[bytes], ack: Any) -> None:
        space = self._spaces.get(nsp)
        if space is None:
            return
        if kind == "connection":
            self._connected(nsp, space, native)
        elif kind == "disconnect":
            sid = space.sids.pop(native.id, None)
            if sid is not None:
                space.sockets.pop(sid, None)
                self._task(self._disconnected(nsp, sid, _REASONS.get(name, name)))
        elif kind == "event":
            sid = space.sids.get(native.id)
            if sid is None:
                return
            try:
                args = decode(text, attachments)
            except ValueError:
                self.logger.exception("undecodable arguments of event %r from %s [%s]", name, sid, nsp)
                return
            self._task(self._event(nsp, sid, name, args, ack))

    def _connected(self, nsp: str, space: _Namespace, native: Any) -> None:
        data = json.loads(native.data)
        sid = data.get("sid") if isinstance(data, dict) else None
        if not isinstance(sid, str):
            sid = native.id
        space.sockets[sid] = native
        space.sids[native.id] = sid
        pending = space.connecting.pop(sid, None)
        if pending is not None:
            for room in pending.rooms:
                native.join(room)
            for event, text, attachments in pending.emits:
                native.emit(event, text, attachments)
        if self.always_connect and self._has_connect(nsp):
            handshake = json.loads(native.handshake)
            self._environs[(nsp, sid)] = _environ(handshake)
            auth = handshake.get("auth")
            self._auths[(nsp, sid)] = auth if auth not in ({}, None) else None
            self._task(self._connect_after(nsp, sid, native))

    async def _connect_after(self, nsp: str, sid: str, native: Any) -> None:
        """always_connect: the client is connected already; a refusal
        disconnects it."""
        success, _ = await self._run_connect(nsp, sid)
        if success is False:
            native.disconnect(False)

    def _has_connect(self, nsp: str) -> bool:
        ns_handler = self.namespace_handlers.get(nsp)
        return "connect" in self.handlers.get(nsp, {}) or (ns_handler is not None and hasattr(ns_handler, "on_connect"))

    def _admit(self, nsp: str, handshake_json: str, reply: Any) -> None:
        """The namespace's connect middleware (on an engine thread). Without
        a `connect` handler to run first, or with `always_connect`, the
        socket is admitted at once and its sid is the core's id. Otherwise
        the handler runs now, before the socket exists, with the sid core
        will give the socket (the handshake's `sid`); core's admission data
        carries it to the socket, so a recovered session, which keeps its
        old id, is mapped too."""
        if self.always_connect or not self._has_connect(nsp):
            reply.resolve('{"admit":null}')
            return

        async def run() -> None:
            handshake = json.loads(handshake_json)
            # The id core gives the socket (a recovered session keeps its
            # old one: then the admission data below maps it).
            sid = handshake.get("sid") or secrets.token_urlsafe(15)
            key = (nsp, sid)
            self._environs[key] = _environ(handshake)
            auth = handshake.get("auth")
            self._auths[key] = auth if auth not in ({}, None) else None
            admit = json.dumps({"admit": {"data": {"sid": sid}}})
            space = self._space(nsp)
            space.connecting[sid] = _Connecting()
            success, refusal = await self._run_connect(nsp, sid)
            if success is False:
                space.connecting.pop(sid, None)
                self._forget(nsp, sid)
                decision: dict[str, Any] = {"refuse": refusal.get("message", "Connection rejected by server")}
                if "data" in refusal:
                    decision["data"] = refusal["data"]
                try:
                    reply.resolve(json.dumps(decision))
                except (TypeError, ValueError):
                    reply.resolve(json.dumps({"refuse": decision["refuse"]}))
            else:
                reply.resolve(admit)
                # A client that left meanwhile never becomes a socket.
                asyncio.get_running_loop().call_later(_CONNECTING_FOR, self._abandon, nsp, sid)

        self._soon(lambda: self._task(run()))

    def _abandon(self, nsp: str, sid: str) -> None:
        space = self._spaces[nsp]
        if space.connecting.pop(sid, None) is not None and sid not in space.sockets:
            self._forget(nsp, sid)

    async def _run_connect(self, nsp: str, sid: str) -> tuple[Any, dict[str, Any]]:
        """Calls the `connect` handler as python-socketio does; returns its
        result and the refusal to send when it is False."""
        key = (nsp, sid)
        environ = self._environs.get(key)
        auth = self._auths.pop(key, None)
        refusal: dict[str, Any] = ConnectionRefusedError().error_args
        try:
            if auth:
                success = await self._trigger_event("connect", nsp, sid, environ, auth)
            else:
                try:
                    success = await self._trigger_event("connect", nsp, sid, environ, None)
                except TypeError as first:
                    try:
                        success = await self._trigger_event("connect", nsp, sid, environ)
                    except TypeError:
                        raise first from None
        except ConnectionRefusedError as e:
            return False, e.error_args
        except Exception:  # noqa: BLE001 - logged; the client is refused
            self.logger.exception("connect handler error [%s]", nsp)
            return False, {"message": "Connection refused by server"}
        return success, refusal

    async def _disconnected(self, nsp: str, sid: str, reason: str) -> None:
        try:
            await self._trigger_event("disconnect", nsp, sid, reason)
        except Exception:  # noqa: BLE001
            self.logger.exception("disconnect handler error [%s]", nsp)
        finally:
            self._forget(nsp, sid)

    def _forget(self, nsp: str, sid: str) -> None:
        self._sessions.pop((nsp, sid), None)
        self._environs.pop((nsp, sid), None)
        self._auths.pop((nsp, sid), None)

    async def _event(self, nsp: str, sid: str, event: str, args: list[Any], ack: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info('received event "%s" from %s [%s]', event, sid, nsp)
        try:
            result = await self._trigger_event(event, nsp, sid, *args)
        except Exception:  # noqa: BLE001 - logged, the server goes on
            self.logger.exception("event handler error: %r from %s [%s]", event, sid, nsp)
            return
        if result is self.not_handled or ack is None:
            return
        text, attachments = encode(_data_args(result))
        try:
            ack.send(text, attachments)
        except TidewireError as e:
            self.logger.warning("cannot acknowledge %r to %s [%s]: %s", event, sid, nsp, e)

    async def _trigger_event(self, event: str, namespace: str, *args: Any) -> Any:
        """Runs the application's handler as python-socketio does: the
        namespace's handler for `event`, its `*` handler, then its
        class-based namespace."""
        handler = None
        handlers = self.handlers.get(namespace, {})
        if event in handlers:
            handler = handlers[event]
        elif event not in ("connect", "disconnect") and "*" in handlers:
            handler = handlers["*"]
            args = (event, *args)
        if handler is not None:
            return await _invoke(handler, event, args)
        ns_handler = self.namespace_handlers.get(namespace)
        if ns_handler is not None:
            return await ns_handler.trigger_event(event, *args)
        return self.not_handled

    # --- the API ---------------------------------------------------------------
    def _targets(self, space: _Namespace, rooms: Rooms) -> list[str]:
        """Rooms in core's terms: a sid stands for its socket's own room."""
        out = []
        for room in _room_list(rooms):
            native = space.sockets.get(room)
            out.append(native.id if native is not None else room)
        return out

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: Optional[Rooms] = None,
        room: Optional[Rooms] = None,
        skip_sid: Optional[Rooms] = None,
        namespace: Optional[str] = None,
        callback: Optional[Handler] = None,
        ignore_queue: bool = False,
    ) -> None:
        """Emits `event` to one client (`to=sid`), to rooms, or to every
        client of the namespace, without those in `skip_sid`; with a client
        manager, on every node (`ignore_queue`: this node only)."""
        nsp = namespace or "/"
        space = self._space(nsp)
        target = to if to is not None else room
        if isinstance(target, (tuple, set)):
            target = list(target)
        if isinstance(skip_sid, (tuple, set)):
            skip_sid = list(skip_sid)
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info('emitting event "%s" to %s [%s]', event, target or "all", nsp)
        text, attachments = encode(_data_args(data))
        manager = self._pubsub
        # A client of this node is nobody else's: no other node to tell.
        if manager is not None and not ignore_queue and not (isinstance(target, str) and self._is_local(target, nsp)):
            remote = None
            if callback is not None:
                if target is None:
                    raise ValueError("Cannot use callback without a room set.")
                remote = [target, nsp, manager.track(target, callback)] if isinstance(target, str) else None
                if remote is None:
                    raise NotImplementedError("emit with a callback to several rooms across nodes: give one sid or room")
            manager.publish(_emit_message(manager.host_id, event, data, nsp, _wire_rooms(target), _wire_rooms(skip_sid), remote))
        if self._cluster and callback is not None and not (isinstance(target, str) and self._is_local(target, nsp)):
            raise NotImplementedError(_NO_CLUSTER_ACKS)
        await self._emit_local(nsp, event, text, attachments, target, skip_sid, callback)

    def _is_local(self, sid: str, namespace: Optional[str] = None) -> bool:
        space = self._space(namespace or "/")
        return sid in space.sockets or sid in space.connecting

    async def _emit_local(
        self, nsp: str, event: str, text: str, attachments: list[bytes], target: Any, skip_sid: Any, callback: Optional[Handler]
    ) -> None:
        """Emits on this node only (an emit of the application, or of
        another node through the manager)."""
        space = self._space(nsp)
        if isinstance(target, str) and target in space.connecting and target not in space.sockets:
            if callback is not None:
                raise NotImplementedError("emit with a callback to a client that is still connecting")
            space.connecting[target].emits.append((event, text, attachments))
            return
        if callback is not None:
            for native in self._members(space, target, skip_sid):
                self._task(self._callback(native, event, text, attachments, callback))
            return
        op = self._native.broadcast(nsp)
        if target is not None:
            op = op.to(self._targets(space, target))
        if skip_sid is not None:
            op = op.except_(self._targets(space, skip_sid))
        op.emit(event, text, attachments)

    def _members(self, space: _Namespace, target: Any, skip_sid: Any) -> list[Any]:
        """The local sockets an emit with a callback reaches (each answer
        calls the callback, as python-socketio does)."""
        if isinstance(target, str) and target in space.sockets:
            found = [space.sockets[target]]
        else:
            rooms = set(_room_list(target)) if target is not None else None
            found = [n for n in space.sockets.values() if rooms is None or rooms.intersection(n.rooms())]
        skip = set(self._targets(space, skip_sid)) if skip_sid is not None else set()
        return [n for n in found if not skip.intersection(n.rooms())]

    async def _callback(self, native: Any, event: str, text: str, attachments: list[bytes], callback: Handler) -> None:
        try:
            reply_text, reply_attachments = await native.emit_with_ack(event, text, attachments, None)
        except (AckTimeout, Disconnected):
            return
        try:
            result = callback(*decode(reply_text, reply_attachments))
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001
            self.logger.exception("callback of %r failed", event)

    async def send(
        self,
        data: Any,
        to: Optional[Rooms] = None,
        room: Optional[Rooms] = None,
        skip_sid: Optional[Rooms] = None,
        namespace: Optional[str] = None,
        callback: Optional[Handler] = None,
        ignore_queue: bool = False,
    ) -> None:
        """Emits a `message` event."""
        await self.emit("message", data=data, to=to, room=room, skip_sid=skip_sid, namespace=namespace, callback=callback)

    async def call(
        self,
        event: str,
        data: Any = None,
        to: Optional[str] = None,
        sid: Optional[str] = None,
        namespace: Optional[str] = None,
        timeout: float = 60,
        ignore_queue: bool = False,
    ) -> Any:
        """Emits `event` to one client and returns its answer (one value, a
        tuple of several, or None); `exceptions.TimeoutError` when it does not
        answer within `timeout` seconds."""
        target = to or sid
        if target is None:
            raise ValueError("Cannot use call() to broadcast.")
        nsp = namespace or "/"
        native = self._space(nsp).sockets.get(target)
        if native is None and self._pubsub is not None and not ignore_queue:
            return await self._call_remote(event, data, target, nsp, timeout)
        if native is None and self._cluster and not self._is_local(target, nsp):
            raise NotImplementedError(_NO_CLUSTER_ACKS)
        if native is None:
            # python-socketio waits for the timeout when nobody can answer.
            await asyncio.sleep(timeout)
            raise TimeoutError()
        text, attachments = encode(_data_args(data))
        try:
            reply_text, reply_attachments = await native.emit_with_ack(event, text, attachments, timeout)
        except AckTimeout:
            raise TimeoutError() from None
        except Disconnected:
            raise TimeoutError() from None
        args = decode(reply_text, reply_attachments)
        if len(args) > 1:
            return tuple(args)
        return args[0] if args else None

    async def _call_remote(self, event: str, data: Any, sid: str, nsp: str, timeout: float) -> Any:
        """`call` to a client of another node, through the manager's
        callback protocol."""
        manager = self._pubsub
        assert manager is not None
        answer: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

        def answered(*args: Any) -> None:
            if not answer.done():
                answer.set_result(args)

        ack_id = manager.track(sid, answered)
        manager.publish(_emit_message(manager.host_id, event, data, nsp, sid, None, [sid, nsp, ack_id]))
        try:
            args = await asyncio.wait_for(answer, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError() from None
        finally:
            manager.untrack(ack_id)
        if len(args) > 1:
            return args
        return args[0] if args else None

    async def enter_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        nsp = namespace or "/"
        space = self._space(nsp)
        native = space.sockets.get(sid)
        if native is not None:
            native.join(room)
        elif sid in space.connecting:
            space.connecting[sid].rooms.append(room)
        elif self._pubsub is not None:
            self._pubsub.publish(self._pubsub._message("enter_room", sid=sid, room=room, namespace=nsp))
        elif self._cluster:
            self._native.broadcast(nsp).to([sid]).join(room)

    async def leave_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        nsp = namespace or "/"
        space = self._space(nsp)
        native = space.sockets.get(sid)
        if native is not None:
            native.leave(room)
        elif sid in space.connecting:
            if room in space.connecting[sid].rooms:
                space.connecting[sid].rooms.remove(room)
        elif self._pubsub is not None:
            self._pubsub.publish(self._pubsub._message("leave_room", sid=sid, room=room, namespace=nsp))
        elif self._cluster:
            self._native.broadcast(nsp).to([sid]).leave(room)

    async def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        """Removes every client from `room` (on every node)."""
        nsp = namespace or "/"
        self._close_room_local(room, nsp)
        if self._pubsub is not None:
            self._pubsub.publish(self._pubsub._message("close_room", room=room, namespace=nsp))

    def _close_room_local(self, room: str, nsp: str) -> None:
        self._native.broadcast(nsp).to([room]).leave(room)

    def rooms(self, sid: str, namespace: Optional[str] = None) -> list[str]:
        """The rooms of `sid`, its own sid first."""
        space = self._space(namespace or "/")
        native = space.sockets.get(sid)
        if native is None:
            pending = space.connecting.get(sid)
            return [sid, *pending.rooms] if pending is not None else []
        return [sid, *(r for r in native.rooms() if r != native.id)]

    def get_environ(self, sid: str, namespace: Optional[str] = None) -> Optional[dict[str, Any]]:
        nsp = namespace or "/"
        environ = self._environs.get((nsp, sid))
        native = self._space(nsp).sockets.get(sid)
        if environ is None and native is not None:
            environ = self._environs[(nsp, sid)] = _environ(json.loads(native.handshake))
        return environ

    def transport(self, sid: str, namespace: Optional[str] = None) -> str:
        raise NotImplementedError("transport(sid) is not supported")

    async def get_session(self, sid: str, namespace: Optional[str] = None) -> dict[str, Any]:
        nsp = namespace or "/"
        space = self._space(nsp)
        if sid not in space.sockets and sid not in space.connecting:
            raise KeyError("Session not found")
        return self._sessions.setdefault((nsp, sid), {})

    async def save_session(self, sid: str, session: dict[str, Any], namespace: Optional[str] = None) -> None:
        nsp = namespace or "/"
        space = self._space(nsp)
        if sid not in space.sockets and sid not in space.connecting:
            raise KeyError("Session not found")
        self._sessions[(nsp, sid)] = session

    def session(self, sid: str, namespace: Optional[str] = None) -> "_SessionContext":
        """`async with sio.session(sid) as session:` saves it on exit."""
        return _SessionContext(self, sid, namespace)

    async def disconnect(self, sid: str, namespace: Optional[str] = None, ignore_queue: bool = False) -> None:
        """Disconnects `sid` (of another node: through the manager)."""
        nsp = namespace or "/"
        native = self._space(nsp).sockets.get(sid)
        if native is not None:
            native.disconnect(False)
        elif self._pubsub is not None and not ignore_queue and not self._is_local(sid, nsp):
            self._pubsub.publish(self._pubsub._message("disconnect", sid=sid, namespace=nsp))
        elif self._cluster and not ignore_queue and not self._is_local(sid, nsp):
            self._native.broadcast(nsp).to([sid]).disconnect(False)

    async def shutdown(self) -> None:
        """Disconnects every client and stops serving (and the manager)."""
        if self.manager is not None:
            await self.manager.close()
        await self._native.close()

    def start_background_task(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(target(*args, **kwargs))
        return task

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    def attach(self, app: Any, socketio_path: str = "socket.io") -> None:
        raise NotImplementedError("attach() is not supported: mount tidewire.ASGIApp(sio, app)")

    async def handle_request(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("handle_request() is not supported: mount tidewire.ASGIApp(sio, app)")

    def instrument(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the Socket.IO Admin UI (instrument) is not supported")

    # --- the ASGI app's entry points ---------------------------------------------
    def _log_engine(self, message: str, *args: Any) -> None:
        if self.eio_logger is not None:
            self.eio_logger.info(message, *args)


def json_module_dumps(options: dict[str, Any]) -> str:
    try:
        return json.dumps(options, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"options must be plain values: {e}") from None


