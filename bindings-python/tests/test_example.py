"""examples/fastapi_chat.py, written for python-socketio, runs the same on
both: the file as it is (`import tidewire as socketio`) and with the import
put back to python-socketio, each under uvicorn, driven by python-socketio's
AsyncClient and httpx; every observation must be equal."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import types
from typing import Any

import httpx
import pytest
import socketio

from test_asgi import serve

STEP = 5.0
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "fastapi_chat.py")
IMPORT = "import tidewire as socketio\n"


def load(flavour: str) -> types.ModuleType:
    with open(EXAMPLE, encoding="utf-8") as f:
        source = f.read()
    assert source.count(IMPORT) == 1, "the example imports tidewire as socketio, once"
    if flavour == "python-socketio":
        source = source.replace(IMPORT, "import socketio\n")
    name = f"fastapi_chat_{flavour.replace('-', '_')}"
    module = types.ModuleType(name)
    module.__file__ = EXAMPLE
    sys.modules[name] = module
    exec(compile(source, EXAMPLE, "exec"), module.__dict__)
    return module


async def within(awaitable: Any, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, STEP)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def drive(url: str) -> dict[str, Any]:
    """What a user of the app sees, without sids."""
    seen: dict[str, Any] = {}
    inboxes: dict[str, asyncio.Queue[Any]] = {}

    async def client(user: str, namespaces: Any = None) -> socketio.AsyncClient:
        c = socketio.AsyncClient(reconnection=False)
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        inboxes[user] = inbox
        for event in ("joined", "message", "notice"):
            c.on(event, lambda data, event=event: inbox.put_nowait((event, data)))
        if namespaces is not None:  # a client joins every namespace it has handlers for
            c.on("stats", lambda data: inbox.put_nowait(("stats", data)), namespace="/stats")
            c.on("whoareyou", lambda: user, namespace="/admin")
        await within(c.connect(url, auth={"user": user}, namespaces=namespaces, transports=["websocket"], wait_timeout=STEP), "connect")
        return c

    refused = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError) as e:
        await within(refused.connect(url, transports=["websocket"], wait_timeout=STEP), "refusal")
    seen["refused"] = str(e.value)

    alice = await client("alice", ["/", "/stats", "/admin"])
    bob = await client("bob")
    stats = await within(inboxes["alice"].get(), "stats")
    seen["stats"] = (stats[0], stats[1] == {"rooms": [alice.get_sid("/stats")]})
    seen["count"] = await within(alice.call("count", namespace="/stats"), "count")
    seen["join"] = await within(alice.call("join", "room1"), "join")
    seen["bob join"] = await within(bob.call("join", "room1"), "join")
    seen["alice hears"] = await within(inboxes["alice"].get(), "joined")
    seen["message ack"] = await within(bob.call("message", {"room": "room1", "text": "hi"}), "message")
    seen["alice reads"] = await within(inboxes["alice"].get(), "message")
    async with httpx.AsyncClient(base_url=url, timeout=STEP) as http:
        seen["health"] = (await http.get("/health")).json()
        seen["notify"] = (await http.post("/notify/room1", json={"text": "deploy"})).json()
    seen["notices"] = [await within(inboxes[u].get(), "notice") for u in ("alice", "bob")]
    seen["admin"] = await within(alice.call("ping", namespace="/admin"), "admin ping")
    seen["bob quiet"] = inboxes["bob"].empty()
    await alice.disconnect()
    await bob.disconnect()
    return seen


async def test_the_example_behaves_as_on_python_socketio() -> None:
    results = {}
    for flavour in ("python-socketio", "tidewire"):
        module = load(flavour)
        async with serve(module.app) as url:
            results[flavour] = await drive(url)
        await module.sio.shutdown()
    assert results["tidewire"] == results["python-socketio"]
    assert results["tidewire"]["message ack"] == ("delivered", 2)
    assert results["tidewire"]["admin"] == "pong, alice"
    assert results["tidewire"]["alice reads"] == ("message", {"from": "bob", "text": "hi"})
