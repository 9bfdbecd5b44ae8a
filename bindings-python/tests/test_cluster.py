"""Two tidewire servers in one asyncio loop joined over a redis-server of the
test's own (free loopback port): a broadcast on one reaches a python-socketio
client connected to the other."""

from __future__ import annotations

import asyncio
import socket as net
import subprocess
import time
from typing import Any, AsyncIterator

import pytest
import socketio

import tidewire

STEP = 10.0


def free_port() -> int:
    with net.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(what: str, pred: Any) -> None:
    deadline = time.monotonic() + STEP
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            with net.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    try:
        await until("redis-server", up)
        yield f"redis://127.0.0.1:{port}/"
    finally:
        proc.kill()
        proc.wait()


async def test_a_broadcast_on_one_server_reaches_a_client_of_the_other(redis_url: str) -> None:
    a, b = tidewire.Server(), tidewire.Server()

    @b.on("connection")
    def joined(socket: tidewire.Socket) -> None:
        socket.join("room")

    client = socketio.AsyncClient(reconnection=False)
    got: list[Any] = []
    client.on("probe", lambda *args: got.append("probe"))
    client.on("news", lambda *args: got.append(list(args)))
    try:
        for s in (a, b):
            await s.join_cluster(redis_url, request_timeout=1)
            await s.start()
        await until("two nodes", lambda: _both_count(a, b, 2))
        await client.connect(b.url, transports=["websocket"])

        def reachable() -> bool:
            a.to("room").emit("probe")
            return "probe" in got

        await until("the room reachable from a", reachable)
        assert a.to("room").emit("news", "headline", b"\x01\x02") == 0, "no member on a itself"
        await until("news on b's client", lambda: any(isinstance(g, list) for g in got))
        news = [g for g in got if isinstance(g, list)]
        assert news == [["headline", b"\x01\x02"]]
    finally:
        await client.disconnect()
        await a.close()
        await b.close()


async def _both_count(a: tidewire.Server, b: tidewire.Server, n: int) -> bool:
    return await a.server_count() == n and await b.of("/").server_count() == n


async def test_bad_cluster_options_are_refused(redis_url: str) -> None:
    s = tidewire.Server()
    try:
        with pytest.raises(tidewire.InvalidArgument):
            await s.join_cluster("")
        with pytest.raises(tidewire.InvalidArgument):
            await s.join_cluster(redis_url, request_timeout=0)
        with pytest.raises(tidewire.InvalidArgument):
            await s.join_cluster("not a url")
        await s.join_cluster(redis_url)
        with pytest.raises(tidewire.InvalidArgument):
            await s.join_cluster(redis_url)
        assert await s.server_count() == 1
    finally:
        await s.close()
