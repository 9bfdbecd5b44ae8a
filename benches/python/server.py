"""The Python side of the load generator's contract, three ways: the same
app on python-socketio's AsyncServer under uvicorn (`python-socketio`), on
tidewire.AsyncServer mounted with tidewire.ASGIApp under uvicorn
(`tidewire-asgi`: `import tidewire as socketio`, nothing else changes), and
on Tidewire's native listener with its socket-object API
(`tidewire-native`). The Rust side is benches/src/bin/tidewire-bench-server.rs,
the Node one benches/node/server.mjs. Stock configuration.

On the main namespace:
  join (room) -> joins room, acks true
  fanout (room, *args) -> emits fanout (*args) to room, sender excluded
  echo (*args) -> acks with the same arguments

Usage: python server.py {python-socketio,tidewire-asgi,tidewire-native}
           [--port N] [--host H]
Prints "listening on http://ADDR" on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from typing import Any


def sio_app(socketio: Any) -> Any:
    """The app, written once against python-socketio's API."""
    sio = socketio.AsyncServer(async_mode="asgi")

    @sio.on("join")
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    @sio.on("fanout")
    async def fanout(sid: str, room: str, *args: Any) -> None:
        await sio.emit("fanout", args, room=room, skip_sid=sid)

    @sio.on("echo")
    async def echo(sid: str, *args: Any) -> Any:
        return args

    return socketio.ASGIApp(sio)


def listening(host: str, port: int) -> None:
    sys.stdout.write(f"listening on http://{host}:{port}\n")
    sys.stdout.flush()


async def serve_asgi(app: Any, host: str, port: int) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, backlog=4096, lifespan="off")
    server = uvicorn.Server(config)
    # uvicorn's own handlers stop it on SIGINT / SIGTERM.
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.01)
    listening(host, sock.getsockname()[1])
    await task


async def serve_native(host: str, port: int) -> None:
    import tidewire

    # Stock configuration, except the rate limits, off as in the Rust bench
    # server (python-socketio has none to compare with).
    server = tidewire.Server(host=host, port=port, limits={"rateSocket": "off", "rateUser": "off", "rateIp": "off"})

    @server.on("join")
    def join(socket: Any, room: str) -> bool:
        socket.join(room)
        return True

    @server.on("fanout")
    def fanout(socket: Any, room: str, *args: Any) -> None:
        socket.to(room).emit("fanout", *args)

    @server.on("echo")
    def echo(socket: Any, *args: Any) -> Any:
        return args

    bound_host, bound_port = await server.start()
    listening(bound_host, bound_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("impl", choices=["python-socketio", "tidewire-asgi", "tidewire-native"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    if args.impl == "python-socketio":
        import socketio

        asyncio.run(serve_asgi(sio_app(socketio), args.host, args.port))
    elif args.impl == "tidewire-asgi":
        import tidewire

        asyncio.run(serve_asgi(sio_app(tidewire), args.host, args.port))
    else:
        asyncio.run(serve_native(args.host, args.port))


if __name__ == "__main__":
    main()
