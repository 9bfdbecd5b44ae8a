"""A FastAPI application written for python-socketio; only its import
differs (`import tidewire as socketio` instead of `import socketio`)."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from fastapi import FastAPI

import tidewire as socketio


def create_app() -> tuple[Any, Any, dict[str, list[Any]]]:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", ping_interval=5, ping_timeout=5)
    seen: dict[str, list[Any]] = {"disconnects": [], "chat": [], "lifespan": []}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        seen["lifespan"].append("api up")
        yield
        seen["lifespan"].append("api down")

    api = FastAPI(lifespan=lifespan)

    @api.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @api.post("/notify/{room}")
    async def notify(room: str, body: dict[str, Any]) -> dict[str, bool]:
        await sio.emit("notice", body, room=room)
        return {"ok": True}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> Any:
        token = auth.get("token") if isinstance(auth, dict) else None
        if token is None:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized", {"reason": "no token"})
        if token == "false":
            return False
        await sio.save_session(sid, {"user": token, "agent": environ.get("HTTP_USER_AGENT")})
        await sio.enter_room(sid, "lobby")
        await sio.emit("welcome", {"user": token}, to=sid)
        return None

    @sio.event
    async def disconnect(sid: str, reason: str) -> None:
        seen["disconnects"].append((sid, reason))

    @sio.event
    async def whoami(sid: str) -> Any:
        session = await sio.get_session(sid)
        return session["user"], sorted(sio.rooms(sid)), sid

    @sio.event
    async def rename(sid: str, name: str) -> str:
        async with sio.session(sid) as session:
            session["user"] = name
        return name

    @sio.event
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    @sio.event
    async def leave(sid: str, room: str) -> None:
        await sio.leave_room(sid, room)

    @sio.on("shout")
    async def shout(sid: str, data: dict[str, Any]) -> None:
        await sio.emit("shout", data["msg"], room=data["room"], skip_sid=sid)

    @sio.event
    async def close(sid: str, room: str) -> None:
        await sio.close_room(room)

    @sio.event
    def echo(sid: str, *args: Any) -> Any:
        return args

    @sio.event
    async def ask(sid: str) -> Any:
        return await sio.call("question", "ping?", to=sid, timeout=5)

    @sio.event
    async def ask_back(sid: str) -> None:
        async def answered(*args: Any) -> None:
            await sio.emit("answered", list(args), to=sid)

        await sio.emit("question", "pong?", to=sid, callback=answered)

    @sio.event
    async def boom(sid: str) -> None:
        raise RuntimeError("handler failed on purpose")

    @sio.event
    async def kick(sid: str) -> None:
        await sio.disconnect(sid)

    @sio.on("*")
    async def any_event(event: str, sid: str, *args: Any) -> Any:
        return "caught", event, list(args)

    class Chat(socketio.AsyncNamespace):
        async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
            await self.enter_room(sid, "chatters")

        def on_hello(self, sid: str, name: str) -> str:
            return f"hello {name}"

        async def on_say(self, sid: str, text: str) -> None:
            seen["chat"].append(text)
            await self.emit("said", text, room="chatters", skip_sid=sid)

        async def on_disconnect(self, sid: str, reason: str) -> None:
            seen["disconnects"].append(("/chat", reason))

    sio.register_namespace(Chat("/chat"))
    app = socketio.ASGIApp(
        sio,
        api,
        on_startup=lambda: seen["lifespan"].append("startup"),
        on_shutdown=lambda: seen["lifespan"].append("shutdown"),
    )
    return sio, app, seen
