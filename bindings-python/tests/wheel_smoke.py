"""Run by `make binding-python` in a fresh venv where only the built abi3
wheel is installed (no repository on the path): the package imports from
the venv and serves a Socket.IO handshake on its native listener and
through `ASGIApp`. Exits non-zero on failure. Standard library only."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from typing import Any

import tidewire


async def main() -> None:
    where = os.path.dirname(tidewire._native.__file__)
    assert where.startswith(sys.prefix), f"tidewire imported from {where}, not the fresh venv {sys.prefix}"

    server = tidewire.Server(port=0)
    host, port = await server.start()
    url = f"http://{host}:{port}/socket.io/?EIO=4&transport=polling"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert body.startswith('0{"sid":'), body
    await server.close()

    sio = tidewire.AsyncServer(async_mode="asgi")
    app = tidewire.ASGIApp(sio)
    sent: list[dict[str, Any]] = []

    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.sleep(3600)  # the client stays until the answer
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/socket.io/", "raw_path": b"/socket.io/",
             "query_string": b"EIO=4&transport=polling", "headers": [], "client": ("127.0.0.1", 1), "scheme": "http"}
    await app(scope, receive, send)
    assert sent[0]["status"] == 200 and sent[1]["body"].startswith(b"0{"), sent
    await sio.shutdown()
    print(f"tidewire {tidewire.__version__} from the wheel: native listener and ASGI answer")


asyncio.run(main())
