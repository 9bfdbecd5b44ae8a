"""A FastAPI chat written for python-socketio: only the import differs
(`import tidewire as socketio` instead of `import socketio`).

    uvicorn fastapi_chat:app --port 8000
    REDIS_URL=redis://127.0.0.1:6379/0 uvicorn fastapi_chat:app --port 8001

With `REDIS_URL` set, nodes (Tidewire or python-socketio ones) share rooms,
emits and calls over Redis, and `POST /notify/{room}` reaches clients on
every node. Checked by `mypy --strict` in `make binding-python`.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from fastapi import FastAPI

import tidewire as socketio

redis_url = os.environ.get("REDIS_URL")
mgr = socketio.AsyncRedisManager(redis_url) if redis_url else None
sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", client_manager=mgr)
api = FastAPI()
app = socketio.ASGIApp(sio, api)


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/notify/{room}")
async def notify(room: str, body: dict[str, Any]) -> dict[str, bool]:
    await sio.emit("notice", body, room=room)
    return {"ok": True}


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Optional[dict[str, Any]]) -> Optional[bool]:
    user = (auth or {}).get("user")
    if not isinstance(user, str):
        raise socketio.exceptions.ConnectionRefusedError("authentication required")
    await sio.save_session(sid, {"user": user})
    await sio.enter_room(sid, "lobby")
    return None


@sio.event
async def disconnect(sid: str, reason: str) -> None:
    print(f"{sid} left: {reason}")


@sio.event
async def join(sid: str, room: str) -> str:
    await sio.enter_room(sid, room)
    async with sio.session(sid) as session:
        user = str(session["user"])
    await sio.emit("joined", {"user": user, "room": room}, room=room, skip_sid=sid)
    return "ok"


@sio.event
async def message(sid: str, data: dict[str, Any]) -> tuple[str, int]:
    session = await sio.get_session(sid)
    await sio.emit("message", {"from": session["user"], "text": data.get("text")}, room=data.get("room"), skip_sid=sid)
    return "delivered", len(str(data.get("text")))


@sio.on("ping", namespace="/admin")
async def admin_ping(sid: str) -> str:
    answer = await sio.call("whoareyou", to=sid, namespace="/admin", timeout=5)
    return f"pong, {answer}"


class Stats(socketio.AsyncNamespace):
    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await self.emit("stats", {"rooms": self.rooms(sid)}, to=sid)

    async def on_count(self, sid: str) -> int:
        return len(self.rooms(sid))


sio.register_namespace(Stats("/stats"))
