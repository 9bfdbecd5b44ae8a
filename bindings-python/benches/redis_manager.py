"""Side by side: python-socketio's AsyncRedisManager (redis-py) and
tidewire's (core's RedisBus), on a redis-server started here (free
loopback port). Not a test: prints rates.

    .venv/bin/python bindings-python/benches/redis_manager.py [N]

- emitter: `await mgr.emit(...)` of a write-only manager, one after the
  other (python-socketio's returns once Redis answered; tidewire's once
  queued on the bus, written in order in the background), and the same
  with the synchronous `RedisManager`;
- server emit: `await sio.emit(..., room=r)` on a server with the manager
  (nobody in r on this node: the cost is the publish);
- receive: N emit messages published at once; how fast a node's manager
  takes them in (decoded, checked, handed to the local emit).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis
import socketio

import tidewire


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def rate(n: int, step: Callable[[int], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    for i in range(n):
        await step(i)
    return n / (time.perf_counter() - start)


async def receive_rate(url: str, n: int, counted: Callable[[], int]) -> float:
    r = aioredis.from_url(url)
    message = json.dumps({"method": "emit", "event": "e", "data": [{"i": 1}], "binary": False, "namespace": "/",
                          "room": "nobody-here", "skip_sid": None, "callback": None, "host_id": "bench"})
    base = counted()
    start = time.perf_counter()
    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        pipe.publish("socketio", message)
    await pipe.execute()
    while counted() - base < n:
        if time.perf_counter() - start > 120:
            raise SystemExit(f"only {counted() - base} of {n} received")
        await asyncio.sleep(0.001)
    await r.aclose()
    return n / (time.perf_counter() - start)


async def main(n: int) -> None:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    await asyncio.sleep(0.5)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        theirs = socketio.AsyncRedisManager(url, write_only=True)
        ours = tidewire.AsyncRedisManager(url, write_only=True)
        data = {"text": "hello", "n": 1}
        print(f"emitter, python-socketio: {await rate(n, lambda i: theirs.emit('e', data, room='r')):,.0f} emits/s")
        print(f"emitter, tidewire:        {await rate(n, lambda i: ours.emit('e', data, room='r')):,.0f} emits/s")
        await ours.close()

        # The synchronous write-only managers (a Celery task, a Django view).
        for name, sync in (("python-socketio", socketio.RedisManager(url, write_only=True)),
                           ("tidewire", tidewire.RedisManager(url, write_only=True))):
            start = time.perf_counter()
            for _ in range(n):
                sync.emit("e", data, room="r")
            print(f"sync emitter, {name + ':':16} {n / (time.perf_counter() - start):,.0f} emits/s")

        psio = socketio.AsyncServer(async_mode="asgi", client_manager=socketio.AsyncRedisManager(url))
        tw = tidewire.AsyncServer(async_mode="asgi", client_manager=tidewire.AsyncRedisManager(url))
        print(f"server emit, python-socketio: {await rate(n, lambda i: psio.emit('e', data, room='r')):,.0f} emits/s")
        print(f"server emit, tidewire:        {await rate(n, lambda i: tw.emit('e', data, room='r')):,.0f} emits/s")

        # Receiving: start both managers' listeners, count what they handle.
        seen = {"psio": 0, "tw": 0}
        psio.manager.set_server(psio)
        psio.manager_initialized = True
        psio.manager.initialize()
        handle_emit = psio.manager._handle_emit

        async def counted_psio(message: Any) -> None:
            seen["psio"] += 1
            await handle_emit(message)

        psio.manager._handle_emit = counted_psio
        tw._bind_loop()
        await tw._start_manager()
        assert tw.manager is not None
        handle = tw.manager._handle

        async def counted_tw(message: Any) -> None:
            seen["tw"] += 1
            await handle(message)

        tw.manager._handle = counted_tw  # type: ignore[method-assign]
        await asyncio.sleep(0.5)
        # Both listen on the channel: each run feeds both, one is counted.
        print(f"receive, python-socketio: {await receive_rate(url, n, lambda: seen['psio']):,.0f} messages/s")
        await asyncio.sleep(1)
        print(f"receive, tidewire:        {await receive_rate(url, n, lambda: seen['tw']):,.0f} messages/s")
        await tw.shutdown()
        psio.manager.thread.cancel()
    finally:
        proc.kill()


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
