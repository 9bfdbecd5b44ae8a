"""python-socketio's class-based namespaces (`AsyncNamespace`) and the
`session()` context manager, for `tidewire.AsyncServer`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import inspect

if TYPE_CHECKING:
    from ._server import AsyncServer

Handler = Callable[..., Any]


async def _invoke(handler: Any, event: str, args: tuple[Any, ...]) -> Any:
    """Calls a handler (sync or async) as python-socketio does: a
    `disconnect` handler written before the reason argument existed gets
    the arguments without it."""
    try:
        result = handler(*args)
        if inspect.isawaitable(result):
            result = await result
    except TypeError:
        if event != "disconnect":
            raise
        result = handler(*args[:-1])
        if inspect.isawaitable(result):
            result = await result
    return result


class _SessionContext:
    def __init__(self, server: AsyncServer, sid: str, namespace: Optional[str]) -> None:
        self.server, self.sid, self.namespace = server, sid, namespace
        self.session: Optional[dict[str, Any]] = None

    async def __aenter__(self) -> dict[str, Any]:
        self.session = await self.server.get_session(self.sid, namespace=self.namespace)
        return self.session

    async def __aexit__(self, *args: Any) -> None:
        assert self.session is not None
        await self.server.save_session(self.sid, self.session, namespace=self.namespace)


class AsyncNamespace:
    """python-socketio's class-based namespace: events go to its
    `on_<event>` methods. Register with `sio.register_namespace(...)`."""

    def __init__(self, namespace: Optional[str] = None) -> None:
        self.namespace = namespace or "/"
        self.server: Optional[AsyncServer] = None

    def _set_server(self, server: AsyncServer) -> None:
        self.server = server

    def is_asyncio_based(self) -> bool:
        return True

    async def trigger_event(self, event: str, *args: Any) -> Any:
        handler_name = "on_" + (event or "")
        if hasattr(self, handler_name):
            return await _invoke(getattr(self, handler_name), event, args)
        return None

    def _sio(self) -> AsyncServer:
        if self.server is None:
            raise RuntimeError("register the namespace with a server first")
        return self.server

    async def emit(self, event: str, data: Any = None, to: Any = None, room: Any = None, skip_sid: Any = None, namespace: Optional[str] = None, callback: Optional[Handler] = None, ignore_queue: bool = False) -> None:
        await self._sio().emit(event, data=data, to=to, room=room, skip_sid=skip_sid, namespace=namespace or self.namespace, callback=callback)

    async def send(self, data: Any, to: Any = None, room: Any = None, skip_sid: Any = None, namespace: Optional[str] = None, callback: Optional[Handler] = None, ignore_queue: bool = False) -> None:
        await self._sio().send(data, to=to, room=room, skip_sid=skip_sid, namespace=namespace or self.namespace, callback=callback)

    async def call(self, event: str, data: Any = None, to: Optional[str] = None, sid: Optional[str] = None, namespace: Optional[str] = None, timeout: float = 60, ignore_queue: bool = False) -> Any:
        return await self._sio().call(event, data=data, to=to, sid=sid, namespace=namespace or self.namespace, timeout=timeout)

    async def enter_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        await self._sio().enter_room(sid, room, namespace=namespace or self.namespace)

    async def leave_room(self, sid: str, room: str, namespace: Optional[str] = None) -> None:
        await self._sio().leave_room(sid, room, namespace=namespace or self.namespace)

    async def close_room(self, room: str, namespace: Optional[str] = None) -> None:
        await self._sio().close_room(room, namespace=namespace or self.namespace)

    def rooms(self, sid: str, namespace: Optional[str] = None) -> list[str]:
        return self._sio().rooms(sid, namespace=namespace or self.namespace)

    async def get_session(self, sid: str, namespace: Optional[str] = None) -> dict[str, Any]:
        return await self._sio().get_session(sid, namespace=namespace or self.namespace)

    async def save_session(self, sid: str, session: dict[str, Any], namespace: Optional[str] = None) -> None:
        await self._sio().save_session(sid, session, namespace=namespace or self.namespace)

    def session(self, sid: str, namespace: Optional[str] = None) -> _SessionContext:
        return self._sio().session(sid, namespace=namespace or self.namespace)

    async def disconnect(self, sid: str, namespace: Optional[str] = None) -> None:
        await self._sio().disconnect(sid, namespace=namespace or self.namespace)
