"""Client managers: `AsyncRedisManager` and `RedisManager`, wire-compatible
with python-socketio 5.x's, so Tidewire and python-socketio nodes share one
Redis and write-only emitters (a Celery worker, a Django view) reach the
clients of both.

The protocol is python-socketio's pub/sub manager protocol: one Redis
channel (`socketio` by default) of JSON objects `{method, ..., host_id}`,
`method` being `emit`, `callback`, `disconnect`, `enter_room`,
`leave_room` or `close_room`. A node ignores its own messages (same
`host_id`) except callbacks, which are addressed to the `host_id` that
asked for them. The Redis side is core's `RedisBus` (`_native.RedisChannel`):
reconnection, resubscription, a bounded outage buffer and pipelined
publishes, off the interpreter's lock.

Decoding executes nothing: messages are JSON, or, from python-socketio
nodes older than 5.14 which pickle them, pickles of plain data only (a
restricted unpickler that refuses every class and function). Anything else
is refused, counted in `refused` and logged; the node keeps serving.

With `protocol="socket.io"` the server joins the cluster over
`@socket.io/redis-adapter`'s protocol instead (Node socket.io nodes and
Tidewire nodes on one Redis): `channel` is then the adapter's key.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import inspect
import io
import itertools
import json
import logging
import pickle
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, Union
from urllib.parse import urlparse

from . import _native
from ._args import encode

if TYPE_CHECKING:
    from ._server import AsyncServer

default_logger = logging.getLogger("socketio")

Rooms = Union[str, list[str], None]

# How long a full outbound queue is waited for, and how long what is still
# queued may take to go out when the process exits.
_PUBLISH_TIMEOUT = 5.0
# How long a server's start waits for its subscription (Redis being down
# does not stop the start: the bus subscribes once it is back).
_SUBSCRIBE_TIMEOUT = 2.0
# Callbacks waiting for a remote client's answer (python-socketio keeps them
# without bound; the oldest go first past this).
_MAX_PENDING_CALLBACKS = 100_000

_PROTOCOLS = ("python-socketio", "socket.io")


# Managers whose queued messages go out before the interpreter exits (a
# worker that emits and returns at once loses nothing).
_LIVE: "weakref.WeakSet[_Manager]" = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for manager in list(_LIVE):
        if manager._redis is not None:
            manager._redis.flush_blocking(_PUBLISH_TIMEOUT)


class Refused(ValueError):
    """A message on the channel that is not plain data of the protocol."""


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dicts, lists, tuples, strings, numbers,
    bytes, None, booleans): every global a pickle names, and therefore every
    callable it could run, is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused: the message names {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused: the message holds a persistent id")


def decode_message(raw: bytes) -> dict[str, Any]:
    """A message of the channel as plain data; `Refused` otherwise."""
    if raw[:1] == b"\x80":  # a pickle (protocol 2 or later): older python-socketio
        try:
            data = _PlainUnpickler(io.BytesIO(raw)).load()
        except Exception as e:  # noqa: BLE001 - any failure is a refusal
            raise Refused(f"pickle refused ({e})") from None
    else:
        try:
            data = json.loads(raw.decode())  # UnicodeDecodeError is a ValueError
        except (ValueError, RecursionError) as e:
            raise Refused(f"not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("method"), str):
        raise Refused("not a manager message (an object with a method)")
    return data


def _is_rooms(value: Any) -> bool:
    return value is None or isinstance(value, str) or (isinstance(value, list) and all(isinstance(r, str) for r in value))


def _args_of(message: dict[str, Any]) -> tuple[str, list[bytes]]:
    """The event arguments of an `emit` message as JSON text plus
    attachments, as python-socketio reads them: a one-element list is one
    argument, `[None]` none (what `emit(event)` publishes)."""
    data = message.get("data")
    if not isinstance(data, list):
        raise Refused("emit: data must be a list")
    attachments: list[bytes] = []
    if message.get("binary"):
        if not data or not all(isinstance(a, str) for a in data[1:]):
            raise Refused("emit: binary data must be [data, base64 attachments...]")
        try:
            attachments = [base64.b64decode(a, validate=True) for a in data[1:]]
        except ValueError:
            raise Refused("emit: an attachment is not base64") from None
        data = data[0]
        if not isinstance(data, list):
            raise Refused("emit: binary data must hold a list")
    if len(data) == 1:
        data = [] if data[0] is None else data
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise Refused(f"emit: data is not plain JSON ({e})") from None
    return text, attachments


def _emit_message(host_id: str, event: str, data: Any, namespace: str, room: Rooms, skip_sid: Rooms, callback: Optional[list[Any]]) -> dict[str, Any]:
    """python-socketio's `emit` message: `data` a list of the arguments,
    with binary parts as base64 attachments after the placeholder data."""
    args = list(data) if isinstance(data, tuple) else [data]
    text, attachments = encode(args)
    binary = bool(attachments)
    payload: list[Any] = json.loads(text)
    if binary:
        payload = [payload, *(base64.b64encode(a).decode() for a in attachments)]
    return {
        "method": "emit", "event": event, "data": payload, "binary": binary, "namespace": namespace,
        "room": room, "skip_sid": skip_sid, "callback": callback, "host_id": host_id,
    }


def _check_url(url: str) -> str:
    if not isinstance(url, str):
        raise ValueError("url must be a redis:// URL")
    scheme = urlparse(url).scheme.lower()
    if scheme in ("redis", "unix", "redis+unix"):
        return url
    if scheme == "valkey":
        return "redis" + url[len("valkey"):]
    if scheme in ("rediss", "valkeys"):
        raise NotImplementedError("TLS Redis URLs (rediss://) are not supported yet: use redis://")
    if "sentinel" in scheme:
        raise NotImplementedError("Redis Sentinel URLs are not supported: give the master's redis:// URL")
    raise ValueError(f"Unsupported Redis URL scheme: {scheme}")


class _Manager:
    """What the sync and async managers share: options and messages."""

    def __init__(self, url: str, channel: Optional[str], write_only: bool, logger: Optional[logging.Logger], json: Any, redis_options: Optional[dict[str, Any]], protocol: str) -> None:
        if json is not None:
            raise NotImplementedError("a custom json module is not supported: messages are standard JSON")
        if redis_options:
            raise NotImplementedError(f"redis_options are not supported ({', '.join(sorted(redis_options))}): put what you need in the URL")
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(_PROTOCOLS)}")
        if channel is not None and (not isinstance(channel, str) or not channel):
            raise ValueError("channel must be a non-empty string")
        self.redis_url = _check_url(url)
        self.protocol = protocol
        self.channel = channel or ("socketio" if protocol == "python-socketio" else "socket.io")
        self.write_only = bool(write_only)
        self.logger = logger
        self.host_id = uuid.uuid4().hex
        self.refused = 0
        self._redis: Optional[_native.RedisChannel] = None
        if protocol == "python-socketio":
            self._redis = _native.RedisChannel(self.redis_url, self.channel)
            _LIVE.add(self)

    def _get_logger(self) -> logging.Logger:
        return self.logger or default_logger

    def _encode(self, message: dict[str, Any]) -> bytes:
        return json.dumps(message, separators=(",", ":")).encode()

    def _publish_now(self, message: dict[str, Any]) -> None:
        """Queues `message` (in order, without waiting). A full queue (Redis
        away longer than the outage buffer lasts) is logged and the message
        dropped, as python-socketio gives up after its retry."""
        assert self._redis is not None
        try:
            self._redis.publish(self._encode(message))
        except _native.ClusterError as e:
            self._get_logger().error("Cannot publish to redis... giving up (%s)", e)

    def _external(self, what: str) -> None:
        """Only the python-socketio protocol has an emitter here."""
        if self.protocol != "python-socketio":
            raise NotImplementedError(f"{what} from a write-only manager needs protocol='python-socketio' (for socket.io's protocol use @socket.io/redis-emitter or tidewire-emit)")

    def _message(self, method: str, **fields: Any) -> dict[str, Any]:
        return {"method": method, **fields, "host_id": self.host_id}


class AsyncRedisManager(_Manager):
    """python-socketio's `AsyncRedisManager` on core's Redis bus: give it to
    `tidewire.AsyncServer(client_manager=...)`, or use it write-only to emit
    from another process (`await mgr.emit(...)`).

    `url`: `redis://` (or `valkey://`, `unix://`); TLS and Sentinel URLs,
    `redis_options` and a custom `json` raise. `channel`: the channel every
    node uses (`socketio`; with `protocol="socket.io"`, the adapter's key,
    `socket.io`). `protocol`: `"python-socketio"` (python-socketio's
    managers) or `"socket.io"` (`@socket.io/redis-adapter`'s, the server
    only). `refused` counts the messages refused as not plain data.
    """

    name = "aioredis"

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        channel: Optional[str] = None,
        write_only: bool = False,
        logger: Optional[logging.Logger] = None,
        json: Any = None,
        redis_options: Optional[dict[str, Any]] = None,
        protocol: str = "python-socketio",
    ) -> None:
        if write_only and protocol != "python-socketio":
            raise NotImplementedError("write_only with protocol='socket.io' is not supported: use @socket.io/redis-emitter or tidewire-emit")
        super().__init__(url, channel, write_only, logger, json, redis_options, protocol)
        self.server: Optional[AsyncServer] = None
        self._listening: Optional[asyncio.Future[Any]] = None
        self._started = False
        self._ack_ids = itertools.count(1)
        self._callbacks: dict[int, tuple[str, Callable[..., Any]]] = {}

    # --- as a server's manager ------------------------------------------------
    def set_server(self, server: AsyncServer) -> None:
        if self.write_only:
            raise ValueError("a write-only manager cannot be a server's client_manager")
        if self.server is not None and self.server is not server:
            raise ValueError("this manager already serves another server")
        self.server = server

    async def initialize(self) -> None:
        """Starts receiving the channel (or joins the socket.io cluster);
        the server calls it once, before serving."""
        if self._started or self.server is None:
            return
        self._started = True
        if self.protocol == "socket.io":
            await self.server._native.join_cluster(json.dumps({"redis_url": self.redis_url, "prefix": self.channel}))
            return
        assert self._redis is not None
        try:
            subscribed = await self._redis.subscribe(_SUBSCRIBE_TIMEOUT)
        except _native.ClusterError as e:
            self._get_logger().error("redis: cannot subscribe to %r yet (%s); the bus keeps trying", self.channel, e)
            subscribed = False
        if not subscribed:
            self._get_logger().warning("redis: not subscribed to %r yet; the bus keeps trying", self.channel)
        self._listening = asyncio.ensure_future(self._listen())
        self._get_logger().info("%s backend initialized.", self.name)

    async def close(self) -> None:
        """Stops receiving and closes the connections (after what was
        published is written, at most 2 s)."""
        if self._listening is not None:
            self._listening.cancel()
        if self._redis is not None:
            await self._redis.flush(2.0)
            self._redis.close()

    def publish(self, message: dict[str, Any]) -> None:
        """Queues `message` for the other nodes (in order, without waiting)."""
        self._publish_now(message)

    def track(self, sid: str, callback: Callable[..., Any]) -> int:
        """An ack id for a callback a remote client's answer will call."""
        if len(self._callbacks) >= _MAX_PENDING_CALLBACKS:
            self._callbacks.pop(next(iter(self._callbacks)))
        ack_id = next(self._ack_ids)
        self._callbacks[ack_id] = (sid, callback)
        return ack_id

    def untrack(self, ack_id: int) -> None:
        self._callbacks.pop(ack_id, None)

    def return_callback(self, host_id: str, sid: str, namespace: str, ack_id: Any) -> Callable[..., Any]:
        """The callback for a local client's answer to another node's emit."""

        def answer(*args: Any) -> None:
            try:
                self._publish_now({"method": "callback", "host_id": host_id, "sid": sid, "namespace": namespace, "id": ack_id, "args": list(args)})
            except (TypeError, ValueError) as e:
                self._get_logger().warning("cannot return the answer of %s to its node: %s", sid, e)

        return answer

    async def _listen(self) -> None:
        assert self._redis is not None
        while True:
            try:
                batch = await self._redis.receive()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged, the node keeps listening
                self._get_logger().exception("Unexpected Error in pubsub listening thread")
                await asyncio.sleep(1)
                continue
            if batch is None:
                return
            for raw in batch:
                try:
                    message = decode_message(raw)
                    await self._handle(message)
                except Refused as e:
                    self.refused += 1
                    self._get_logger().warning("pubsub message refused on %r: %s", self.channel, e)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - logged, the node goes on
                    self._get_logger().exception("Handler error in pubsub listening thread")

    async def _handle(self, message: dict[str, Any]) -> None:
        method = message["method"]
        server = self.server
        assert server is not None
        namespace = message.get("namespace") or "/"
        if not isinstance(namespace, str):
            raise Refused(f"{method}: namespace must be a string")
        if method == "callback":
            if message.get("host_id") == self.host_id:
                await self._callback(message)
            return
        if message.get("host_id") == self.host_id:
            return
        if method == "emit":
            event, room, skip = message.get("event"), message.get("room"), message.get("skip_sid")
            if not isinstance(event, str) or not _is_rooms(room) or not _is_rooms(skip):
                raise Refused("emit: event must be a string, room and skip_sid None, a string or strings")
            text, attachments = _args_of(message)
            callback = None
            remote = message.get("callback")
            if isinstance(remote, list) and len(remote) == 3:
                sid, nsp, ack_id = remote
                if not isinstance(sid, str) or not isinstance(nsp, str):
                    raise Refused("emit: callback must be [sid, namespace, id]")
                callback = self.return_callback(str(message.get("host_id")), sid, nsp, ack_id)
            await server._emit_local(namespace, event, text, attachments, room, skip, callback)
        elif method in ("disconnect", "enter_room", "leave_room"):
            sid, room = message.get("sid"), message.get("room")
            if not isinstance(sid, str) or (method != "disconnect" and not isinstance(room, str)):
                raise Refused(f"{method}: sid (and room) must be strings")
            if method == "disconnect":
                await server.disconnect(sid, namespace=namespace, ignore_queue=True)
            elif isinstance(room, str) and server._is_local(sid, namespace):
                if method == "enter_room":
                    await server.enter_room(sid, room, namespace=namespace)
                else:
                    await server.leave_room(sid, room, namespace=namespace)
        elif method == "close_room":
            room = message.get("room")
            if not isinstance(room, str):
                raise Refused("close_room: room must be a string")
            server._close_room_local(room, namespace)
        else:
            raise Refused(f"unknown method {method!r}")

    async def _callback(self, message: dict[str, Any]) -> None:
        ack_id, args, sid = message.get("id"), message.get("args"), message.get("sid")
        if not isinstance(args, list):
            raise Refused("callback: args must be a list")
        entry = self._callbacks.pop(ack_id, None) if isinstance(ack_id, int) else None
        if entry is None or entry[0] != sid:
            if entry is not None and isinstance(ack_id, int):
                self._callbacks[ack_id] = entry  # not this sid's: kept for it
            self._get_logger().warning("Unknown callback received, ignoring.")
            return
        result = entry[1](*args)
        if inspect.isawaitable(result):
            await result

    # --- python-socketio's manager API (write-only emitters) --------------------
    async def emit(self, event: str, data: Any = None, namespace: Optional[str] = None, room: Rooms = None, skip_sid: Rooms = None, callback: Optional[Callable[..., Any]] = None, to: Rooms = None, **kwargs: Any) -> None:
        """Emits to the clients of every node (python-socketio's signature);
        on a server's manager, as `server.emit`."""
        if self.server is not None:
            await self.server.emit(event, data, to=to or room, skip_sid=skip_sid, namespace=namespace, callback=callback, **kwargs)
            return
        if callback is not None:
            raise RuntimeError("Callbacks can only be issued from the context of a server.")
        if kwargs:
            raise TypeError(f"emit: unexpected argument(s) {', '.join(sorted(kwargs))}")
        self._external("emit")
        await self._send(_emit_message(self.host_id, event, data, namespace or "/", to or room, skip_sid, None))

    async def enter_room(self, sid: str, namespace: Optional[str], room: str, eio_sid: Any = None) -> None:
        self._external("enter_room")
        await self._send(self._message("enter_room", sid=sid, room=room, namespace=namespace or "/"))

    async def leave_room(self, sid: str, namespace: Optional[str], room: str) -> None:
        self._external("leave_room")
        await self._send(self._message("leave_room", sid=sid, room=room, namespace=namespace or "/"))

    async def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        self._external("close_room")
        await self._send(self._message("close_room", room=room, namespace=namespace or "/"))

    async def disconnect(self, sid: str, namespace: Optional[str] = None, **kwargs: Any) -> None:
        self._external("disconnect")
        await self._send(self._message("disconnect", sid=sid, namespace=namespace or "/"))

    async def _send(self, message: dict[str, Any]) -> None:
        """Queues the message for Redis: written in order in the background
        (pipelined), kept through a short outage, flushed by `close()`, when
        the manager is dropped and when the interpreter exits. A full queue
        is waited for once (backpressure) before giving up."""
        assert self._redis is not None
        try:
            self._redis.publish(self._encode(message))
        except _native.ClusterError:
            await self._redis.flush(_PUBLISH_TIMEOUT)
            self._publish_now(message)


class RedisManager(_Manager):
    """python-socketio's synchronous `RedisManager`, write-only: emit to the
    clients of every node from synchronous code (a Celery task, a Django
    view). `write_only=False` raises: there is no synchronous server here."""

    name = "redis"

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        channel: Optional[str] = None,
        write_only: bool = False,
        logger: Optional[logging.Logger] = None,
        json: Any = None,
        redis_options: Optional[dict[str, Any]] = None,
    ) -> None:
        if not write_only:
            raise NotImplementedError("tidewire.RedisManager is write-only (write_only=True): servers use tidewire.AsyncServer with AsyncRedisManager")
        super().__init__(url, channel, True, logger, json, redis_options, "python-socketio")

    def emit(self, event: str, data: Any = None, namespace: Optional[str] = None, room: Rooms = None, skip_sid: Rooms = None, callback: Optional[Callable[..., Any]] = None, to: Rooms = None, **kwargs: Any) -> None:
        if callback is not None:
            raise RuntimeError("Callbacks can only be issued from the context of a server.")
        if kwargs:
            raise TypeError(f"emit: unexpected argument(s) {', '.join(sorted(kwargs))}")
        self._send(_emit_message(self.host_id, event, data, namespace or "/", to or room, skip_sid, None))

    def enter_room(self, sid: str, namespace: Optional[str], room: str, eio_sid: Any = None) -> None:
        self._send(self._message("enter_room", sid=sid, room=room, namespace=namespace or "/"))

    def leave_room(self, sid: str, namespace: Optional[str], room: str) -> None:
        self._send(self._message("leave_room", sid=sid, room=room, namespace=namespace or "/"))

    def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        self._send(self._message("close_room", room=room, namespace=namespace or "/"))

    def disconnect(self, sid: str, namespace: Optional[str] = None, **kwargs: Any) -> None:
        self._send(self._message("disconnect", sid=sid, namespace=namespace or "/"))

    def _send(self, message: dict[str, Any]) -> None:
        """As `AsyncRedisManager`'s: queued, written in the background,
        flushed by `close()`, when dropped and at exit."""
        assert self._redis is not None
        try:
            self._redis.publish(self._encode(message))
        except _native.ClusterError:
            self._redis.flush_blocking(_PUBLISH_TIMEOUT)
            self._publish_now(message)

    def close(self) -> None:
        """Writes what is queued (at most 5 s) and closes the connections."""
        if self._redis is not None:
            self._redis.flush_blocking(_PUBLISH_TIMEOUT)
            self._redis.close()
