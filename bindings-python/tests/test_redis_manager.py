"""Mixed nodes on one Redis (a redis-server of the test's own, free loopback
port): a real python-socketio `AsyncServer` with its `AsyncRedisManager` and
a `tidewire.AsyncServer` with `tidewire.AsyncRedisManager`, both under
uvicorn. Emits (rooms, skip_sid, namespaces, binary), remote room changes,
disconnects, `call` and callbacks cross both ways; write-only emitters
(async, sync in another process, python-socketio's own) reach clients on
both; hostile messages on the channel are refused and counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from typing import Any, AsyncIterator

import pytest
import redis.asyncio as aioredis
import socketio

import tidewire
from test_asgi import serve
from test_cluster import redis_url, until  # noqa: F401 - the fixture

STEP = 5.0


async def within(awaitable: Any, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, STEP)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def install(sio: Any, name: str) -> None:
    """The same handlers on both kinds of node."""

    @sio.event
    async def join(sid: str, room: str) -> str:
        await sio.enter_room(sid, room)
        return "joined"

    @sio.event
    async def whoami(sid: str) -> str:
        return name

    @sio.event
    async def boom(sid: str) -> None:
        raise RuntimeError("boom on purpose")

    @sio.on("join", namespace="/chat")
    async def join_chat(sid: str, room: str) -> str:
        await sio.enter_room(sid, room, namespace="/chat")
        return "joined"


class Mixed:
    def __init__(self, tw: tidewire.AsyncServer, psio: socketio.AsyncServer, tw_url: str, psio_url: str, redis_url: str) -> None:
        self.tw, self.psio, self.tw_url, self.psio_url, self.redis_url = tw, psio, tw_url, psio_url, redis_url
        self.clients: list[socketio.AsyncClient] = []

    async def client(self, url: str, namespaces: Any = None) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        client.inbox = asyncio.Queue()  # type: ignore[attr-defined]

        async def anything(event: str, *args: Any) -> None:
            await client.inbox.put((event, *args))  # type: ignore[attr-defined]

        for nsp in namespaces or ["/"]:
            client.on("*", anything, namespace=nsp)

        @client.on("question")
        def question(text: str) -> Any:
            return ("pong", 2) if text == "two?" else "pong"

        self.clients.append(client)
        await within(client.connect(url, namespaces=namespaces, transports=["websocket"], wait_timeout=STEP), "connect")
        return client


async def subscribers(url: str, channel: str = "socketio") -> int:
    r = aioredis.from_url(url)
    try:
        counts = await r.pubsub_numsub(channel)
        return int(counts[0][1])
    finally:
        await r.aclose()


@pytest.fixture
async def mixed(redis_url: str) -> AsyncIterator[Mixed]:  # noqa: F811
    psio = socketio.AsyncServer(async_mode="asgi", client_manager=socketio.AsyncRedisManager(redis_url))
    tw = tidewire.AsyncServer(async_mode="asgi", client_manager=tidewire.AsyncRedisManager(redis_url))
    install(psio, "python-socketio")
    install(tw, "tidewire")
    async with serve(socketio.ASGIApp(psio)) as psio_url, serve(tidewire.ASGIApp(tw)) as tw_url:
        m = Mixed(tw, psio, tw_url, psio_url, redis_url)
        try:
            yield m
        finally:
            for c in m.clients:
                if c.connected:
                    await asyncio.wait_for(c.disconnect(), STEP)
            await asyncio.wait_for(tw.shutdown(), STEP)
            task = getattr(psio.manager, "thread", None)
            if task is not None:
                task.cancel()


async def pair(m: Mixed, namespaces: Any = None) -> tuple[socketio.AsyncClient, socketio.AsyncClient]:
    """A client on each node (python-socketio's manager starts listening
    with its first client); both nodes subscribed."""
    a = await m.client(m.tw_url, namespaces)
    b = await m.client(m.psio_url, namespaces)
    await until("both nodes on the channel", lambda: _count(m.redis_url, 2))
    return a, b


async def _count(url: str, n: int) -> bool:
    return await subscribers(url) >= n


async def next_event(client: socketio.AsyncClient, event: str) -> tuple[Any, ...]:
    """The next message the client got, which must be `event`."""
    message = await within(client.inbox.get(), event)  # type: ignore[attr-defined]
    assert message[0] == event, f"expected {event}, got {message}"
    return tuple(message[1:])


async def test_emits_cross_both_ways(mixed: Mixed) -> None:
    a, b = await pair(mixed)
    await mixed.tw.emit("news", {"from": "tidewire"})
    assert await next_event(a, "news") == ({"from": "tidewire"},)
    assert await next_event(b, "news") == ({"from": "tidewire"},)
    await mixed.psio.emit("news", {"from": "python-socketio"})
    assert await next_event(a, "news") == ({"from": "python-socketio"},)
    assert await next_event(b, "news") == ({"from": "python-socketio"},)

    # Several arguments, none, and binary ones, both ways.
    await mixed.tw.emit("multi", (1, "x", [True]))
    assert await next_event(b, "multi") == (1, "x", [True])
    assert await next_event(a, "multi") == (1, "x", [True])
    await mixed.psio.emit("multi", (2, None))
    assert await next_event(a, "multi") == (2, None)
    await next_event(b, "multi")
    await mixed.tw.emit("bare")
    assert await next_event(b, "bare") == ()
    await next_event(a, "bare")
    await mixed.psio.emit("bin", {"blob": b"\x01\x02", "n": 1}, to=a.get_sid())
    assert await next_event(a, "bin") == ({"blob": b"\x01\x02", "n": 1},)
    await mixed.tw.emit("bin", (b"\x03", "and text"), to=b.get_sid())
    assert await next_event(b, "bin") == (b"\x03", "and text")

    # Rooms with members on both nodes; skip_sid of a client of the other node.
    assert await within(a.call("join", "r"), "join") == "joined"
    assert await within(b.call("join", "r"), "join") == "joined"
    await mixed.tw.emit("in-room", 1, room="r", skip_sid=b.get_sid())
    await mixed.tw.emit("after", 1)
    assert await next_event(a, "in-room") == (1,)
    assert await next_event(b, "after") == (1,)  # not in-room: skipped
    await next_event(a, "after")
    await mixed.psio.emit("in-room", 2, to="r", skip_sid=a.get_sid())
    await mixed.psio.emit("after", 2)
    assert await next_event(b, "in-room") == (2,)
    assert await next_event(a, "after") == (2,)
    await next_event(b, "after")
    await mixed.psio.emit("to-rooms", 3, to=["r", "elsewhere"])
    assert await next_event(a, "to-rooms") == (3,)
    await next_event(b, "to-rooms")


async def test_namespaces_stay_apart(mixed: Mixed) -> None:
    a, b = await pair(mixed, namespaces=["/", "/chat"])
    assert await within(a.call("join", "lobby", namespace="/chat"), "join") == "joined"
    assert await within(b.call("join", "lobby", namespace="/chat"), "join") == "joined"
    await mixed.tw.emit("chat", "hi from tidewire", room="lobby", namespace="/chat")
    await mixed.psio.emit("chat", "hi from python-socketio", room="lobby", namespace="/chat")
    await mixed.psio.emit("chat", "not in /chat's lobby", room="lobby")
    for client in (a, b):
        got = {(await next_event(client, "chat"))[0] for _ in range(2)}
        assert got == {"hi from tidewire", "hi from python-socketio"}
        assert client.inbox.empty()  # type: ignore[attr-defined]


async def test_remote_rooms_and_disconnects(mixed: Mixed) -> None:
    a, b = await pair(mixed)
    tw, psio = mixed.tw, mixed.psio
    # Each node puts the other node's client in a room.
    await tw.enter_room(b.get_sid(), "t")
    await psio.enter_room(a.get_sid(), "t")
    await until("b in t", lambda: "t" in psio.rooms(b.get_sid()))
    await until("a in t", lambda: "t" in tw.rooms(a.get_sid()))
    await tw.emit("in-t", 1, room="t")
    assert await next_event(a, "in-t") == (1,)
    assert await next_event(b, "in-t") == (1,)
    await tw.leave_room(b.get_sid(), "t")
    await psio.leave_room(a.get_sid(), "t")
    await until("b out of t", lambda: "t" not in psio.rooms(b.get_sid()))
    await until("a out of t", lambda: "t" not in tw.rooms(a.get_sid()))

    # close_room empties the room on every node, from either kind.
    for closer in (tw, psio):
        await tw.enter_room(a.get_sid(), "c")
        await psio.enter_room(b.get_sid(), "c")
        await closer.close_room("c")
        await until("c closed", lambda: "c" not in tw.rooms(a.get_sid()) and "c" not in psio.rooms(b.get_sid()))

    # A node disconnects the other node's client.
    await tw.disconnect(b.get_sid())
    await until("b disconnected", lambda: not b.connected)
    await psio.disconnect(a.get_sid())
    await until("a disconnected", lambda: not a.connected)


async def test_call_and_callbacks_cross_both_ways(mixed: Mixed) -> None:
    a, b = await pair(mixed)
    tw, psio = mixed.tw, mixed.psio
    assert await within(tw.call("question", "ping?", to=b.get_sid(), timeout=STEP), "call b") == "pong"
    assert await within(psio.call("question", "ping?", to=a.get_sid(), timeout=STEP), "call a") == "pong"
    assert await within(tw.call("question", "two?", to=b.get_sid(), timeout=STEP), "call b") == ("pong", 2)
    assert await within(psio.call("question", "two?", to=a.get_sid(), timeout=STEP), "call a") == ("pong", 2)

    answers: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue()
    await tw.emit("question", "ping?", to=b.get_sid(), callback=lambda *args: answers.put_nowait(("tw", args)))
    await psio.emit("question", "two?", to=a.get_sid(), callback=lambda *args: answers.put_nowait(("psio", args)))
    got = {await within(answers.get(), "callback") for _ in range(2)}
    assert got == {("tw", ("pong",)), ("psio", ("pong", 2))}

    # A callback with a room: each local member's answer calls it, and the
    # other node's first one (python-socketio forgets a callback once called).
    a2 = await mixed.client(mixed.tw_url)
    for client in (a, a2, b):
        assert await within(client.call("join", "quiz"), "join") == "joined"
    await tw.emit("question", "ping?", room="quiz", callback=lambda *args: answers.put_nowait(("room", args)))
    got_room = [await within(answers.get(), "room callbacks") for _ in range(3)]
    assert got_room == [("room", ("pong",))] * 3

    # Nobody answers for an unknown sid: both time out.
    with pytest.raises(tidewire.exceptions.TimeoutError):
        await tw.call("question", "ping?", to="nobody", timeout=0.3)
    with pytest.raises(socketio.exceptions.TimeoutError):
        await psio.call("question", "ping?", to="nobody", timeout=0.3)


SYNC_EMITTER = """
import sys, tidewire
mgr = tidewire.RedisManager(sys.argv[1], write_only=True)
mgr.emit("notice", {"from": "a sync worker"}, room=sys.argv[2])
mgr.emit("notice", "to everyone")
"""


async def test_write_only_emitters_reach_clients_on_both(mixed: Mixed) -> None:
    a, b = await pair(mixed)
    await within(a.call("join", "r"), "join")
    await within(b.call("join", "r"), "join")
    emitter = tidewire.AsyncRedisManager(mixed.redis_url, write_only=True)
    await emitter.emit("notice", {"from": "an async emitter"}, room="r")
    await emitter.emit("notice", ("two", "args"), skip_sid=a.get_sid())
    assert await next_event(a, "notice") == ({"from": "an async emitter"},)
    assert await next_event(b, "notice") == ({"from": "an async emitter"},)
    assert await next_event(b, "notice") == ("two", "args")
    await emitter.enter_room(a.get_sid(), "/", "from-emitter")
    await until("a in the emitter's room", lambda: "from-emitter" in mixed.tw.rooms(a.get_sid()))
    await emitter.close()
    # What an emitter dropped right after its emit had queued still goes out.
    dropped = tidewire.AsyncRedisManager(mixed.redis_url, write_only=True)
    await dropped.emit("notice", "from a dropped emitter", to=a.get_sid())
    del dropped
    assert await next_event(a, "notice") == ("from a dropped emitter",)

    # A synchronous worker process (Celery, a Django view) with RedisManager.
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SYNC_EMITTER, mixed.redis_url, "r", stderr=subprocess.PIPE)
    _, err = await within(proc.communicate(), "the sync emitter")
    assert proc.returncode == 0, err.decode()
    for client in (a, b):
        assert await next_event(client, "notice") == ({"from": "a sync worker"},)
        assert await next_event(client, "notice") == ("to everyone",)

    # python-socketio's own write-only manager reaches Tidewire's client.
    theirs = socketio.AsyncRedisManager(mixed.redis_url, write_only=True)
    await theirs.emit("notice", "from python-socketio's emitter", room=a.get_sid())
    assert await next_event(a, "notice") == ("from python-socketio's emitter",)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


async def test_hostile_messages_are_refused_and_the_node_keeps_serving(mixed: Mixed, tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    a, b = await pair(mixed)
    manager = mixed.tw.manager
    assert manager is not None
    marker = tmp_path / "pwned"
    hostile = [
        pickle.dumps({"method": "emit", "event": "x", "data": [_Evil(str(marker))], "host_id": "evil"}),
        pickle.dumps(_Evil(str(marker))),
        b"\x80\x04not a pickle",
        b"not json",
        b"[1, 2]",
        json.dumps({"method": "emit", "event": 5, "data": []}).encode(),
        json.dumps({"method": "emit", "event": "x", "data": "not a list"}).encode(),
        json.dumps({"method": "emit", "event": "x", "data": [1], "room": {"a": 1}}).encode(),
        json.dumps({"method": "enter_room", "sid": 1, "room": "r"}).encode(),
        json.dumps({"method": "emit", "event": "x", "data": ["AAA"], "binary": True}).encode(),
        json.dumps({"method": "launch_missiles"}).encode(),
        b"[" * 100_000,
    ]
    r = aioredis.from_url(mixed.redis_url)
    try:
        with caplog.at_level(logging.WARNING):
            for raw in hostile:
                await r.publish("socketio", raw)
            # A plain-data pickle, as python-socketio before 5.14 sends: accepted.
            old = {"method": "emit", "event": "old-peer", "data": [("a", 1)], "namespace": "/", "room": None, "skip_sid": None, "callback": None, "host_id": "old"}
            await r.publish("socketio", pickle.dumps(old, protocol=2))
            assert await next_event(a, "old-peer") == (["a", 1],)
    finally:
        await r.aclose()
    await until("every hostile message refused", lambda: manager.refused == len(hostile))
    assert not marker.exists()
    assert "pickle refused" in caplog.text and "refused: the message names posix.system" in caplog.text
    # The node still serves both directions.
    await mixed.psio.emit("still", 1)
    assert await next_event(a, "still") == (1,)
    assert await within(mixed.tw.call("question", "ping?", to=b.get_sid(), timeout=STEP), "call") == "pong"


async def test_a_handler_that_raises_is_logged_and_the_node_keeps_serving(mixed: Mixed, caplog: pytest.LogCaptureFixture) -> None:
    a, b = await pair(mixed)
    with caplog.at_level(logging.ERROR):
        await a.emit("boom")
        await until("the handler's error logged", lambda: "boom on purpose" in caplog.text)
        # A callback that raises when the other node's answer comes back.
        def bad_callback(*args: Any) -> None:
            raise ValueError("callback failed on purpose")

        await mixed.tw.emit("question", "ping?", to=b.get_sid(), callback=bad_callback)
        await until("the callback's error logged", lambda: "callback failed on purpose" in caplog.text)
    await mixed.psio.emit("still", 2)
    assert await next_event(a, "still") == (2,)
    assert await within(a.call("whoami"), "whoami") == "tidewire"
    assert await within(mixed.tw.call("question", "ping?", to=b.get_sid(), timeout=STEP), "call") == "pong"


async def test_unsupported_options_raise_clearly(redis_url: str) -> None:  # noqa: F811
    cases: list[tuple[Any, type, str]] = [
        (lambda: tidewire.AsyncRedisManager(redis_url, redis_options={"socket_timeout": 1}), NotImplementedError, "redis_options"),
        (lambda: tidewire.AsyncRedisManager("rediss://127.0.0.1:1/0"), NotImplementedError, "TLS"),
        (lambda: tidewire.AsyncRedisManager("redis+sentinel://h:1/0/m"), NotImplementedError, "Sentinel"),
        (lambda: tidewire.AsyncRedisManager("kafka://h:1"), ValueError, "Unsupported Redis URL scheme"),
        (lambda: tidewire.AsyncRedisManager(redis_url, json=json), NotImplementedError, "json"),
        (lambda: tidewire.AsyncRedisManager(redis_url, protocol="zmq"), ValueError, "protocol"),
        (lambda: tidewire.AsyncRedisManager(redis_url, write_only=True, protocol="socket.io"), NotImplementedError, "redis-emitter"),
        (lambda: tidewire.RedisManager(redis_url), NotImplementedError, "write-only"),
        (lambda: tidewire.AsyncServer(client_manager=socketio.AsyncRedisManager(redis_url)), NotImplementedError, "tidewire.AsyncRedisManager"),
        (lambda: tidewire.AsyncServer(client_manager=tidewire.AsyncRedisManager(redis_url, write_only=True)), ValueError, "write-only"),
    ]
    for make, kind, words in cases:
        with pytest.raises(kind, match=words):
            make()
    emitter = tidewire.AsyncRedisManager(redis_url, write_only=True)
    with pytest.raises(RuntimeError, match="context of a server"):
        await emitter.emit("x", 1, room="r", callback=lambda: None)
    sio = tidewire.AsyncServer(client_manager=tidewire.AsyncRedisManager(redis_url))
    with pytest.raises(NotImplementedError, match="several rooms"):
        await sio.emit("x", 1, to=["a", "b"], callback=lambda: None)
    with pytest.raises(ValueError, match="without a room"):
        await sio.emit("x", 1, callback=lambda: None)
    await sio.shutdown()
    await emitter.close()


NODE_CLIENT = """
const { io } = require(process.env.SIO_CLIENT);
const c = io(process.argv[1], { reconnection: false, transports: ["polling", "websocket"] });
c.on("question", (text, ack) => ack("pong from node"));
c.on("connect", () => console.log(JSON.stringify({ sid: c.id })));
c.on("news", (n) => { console.log(JSON.stringify({ news: n })); c.close(); });
"""


async def test_npm_socket_io_client_on_tidewire_hears_python_socketio(mixed: Mixed) -> None:
    client_dir = os.environ.get("SIO_CLIENT_DIR")
    if not client_dir or shutil.which("node") is None:
        pytest.fail("SIO_CLIENT_DIR (a node_modules with socket.io-client) and node are required")
    await pair(mixed)
    env = dict(os.environ, SIO_CLIENT=os.path.join(client_dir, "socket.io-client"))
    proc = await asyncio.create_subprocess_exec("node", "-e", NODE_CLIENT, mixed.tw_url, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        sid = json.loads(await within(proc.stdout.readline(), "the node client's sid"))["sid"]
        assert await within(mixed.psio.call("question", "?", to=sid, timeout=STEP), "call node") == "pong from node"
        await mixed.psio.emit("news", {"n": 1}, to=sid)
        assert json.loads(await within(proc.stdout.readline(), "news")) == {"news": {"n": 1}}
        await within(proc.wait(), "the node client's exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def test_socket_io_protocol_joins_the_adapter_cluster(redis_url: str) -> None:  # noqa: F811
    """protocol='socket.io': the server speaks @socket.io/redis-adapter's
    protocol (Node socket.io nodes' clusters) through the core's cluster."""
    one = tidewire.AsyncServer(client_manager=tidewire.AsyncRedisManager(redis_url, protocol="socket.io"))
    two = tidewire.AsyncServer(client_manager=tidewire.AsyncRedisManager(redis_url, protocol="socket.io"))
    async with serve(tidewire.ASGIApp(one)) as url_one, serve(tidewire.ASGIApp(two)) as url_two:
        client = socketio.AsyncClient(reconnection=False)
        got: asyncio.Queue[Any] = asyncio.Queue()
        client.on("hello", got.put_nowait)
        await within(client.connect(url_two, transports=["websocket"], wait_timeout=STEP), "connect")
        try:
            await until("two nodes counted", lambda: _server_count(one, 2))
            await one.emit("hello", "across the adapter")
            assert await within(got.get(), "hello") == "across the adapter"
        finally:
            await client.disconnect()
            await one.shutdown()
            await two.shutdown()


async def _server_count(sio: tidewire.AsyncServer, n: int) -> bool:
    return int(await sio._native.server_count("/")) >= n


OFFICIAL_NODE = os.path.join(os.path.dirname(__file__), "..", "..", "server-example", "e2e", "node", "lib", "official-node.mjs")


async def test_socket_io_protocol_mixes_with_an_official_node(redis_url: str) -> None:  # noqa: F811
    """protocol='socket.io' next to an official Node socket.io 4.8 node with
    @socket.io/redis-adapter (createAdapter): broadcasts cross both ways."""
    if shutil.which("node") is None or not os.environ.get("SIO_CLIENT_DIR"):
        pytest.fail("node and SIO_CLIENT_DIR (the e2e node_modules) are required")
    proc = await asyncio.create_subprocess_exec(
        "node", OFFICIAL_NODE, "--port", "0", "--redis-url", redis_url, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    tw = tidewire.AsyncServer(client_manager=tidewire.AsyncRedisManager(redis_url, protocol="socket.io"))
    try:
        assert proc.stdout is not None
        line = (await within(proc.stdout.readline(), "the official node")).decode()
        assert "listening on" in line, line
        node_url = line.rsplit(" ", 1)[1].strip()
        async with serve(tidewire.ASGIApp(tw)) as tw_url:
            on_tw, on_node = socketio.AsyncClient(reconnection=False), socketio.AsyncClient(reconnection=False)
            got_tw: asyncio.Queue[Any] = asyncio.Queue()
            got_node: asyncio.Queue[Any] = asyncio.Queue()
            on_tw.on("news", got_tw.put_nowait)
            on_node.on("news", got_node.put_nowait)
            await within(on_tw.connect(tw_url, transports=["websocket"], wait_timeout=STEP), "connect to tidewire")
            await within(on_node.connect(node_url, transports=["websocket"], wait_timeout=STEP), "connect to node")
            await until("two nodes counted", lambda: _server_count(tw, 2))
            await tw.emit("news", "from tidewire")
            assert await within(got_node.get(), "tidewire's broadcast on node") == "from tidewire"
            assert await within(got_tw.get(), "tidewire's broadcast locally") == "from tidewire"
            await within(on_node.call("hub-to", {"event": "news", "args": ["from node"]}), "node's broadcast")
            assert await within(got_tw.get(), "node's broadcast on tidewire") == "from node"
            assert await within(got_node.get(), "node's broadcast locally") == "from node"

            # Room changes and disconnects of the official node's socket.
            node_sid = on_node.get_sid()

            async def node_rooms() -> list[str]:
                return list(await within(on_node.call("rooms"), "rooms"))

            await tw.enter_room(node_sid, "vip")
            await until("the node's socket in vip", lambda: _has(node_rooms(), "vip"))
            await tw.emit("news", "to vip", room="vip")
            assert await within(got_node.get(), "vip news") == "to vip"
            await tw.leave_room(node_sid, "vip")
            await until("the node's socket out of vip", lambda: _lacks(node_rooms(), "vip"))
            with pytest.raises(NotImplementedError, match="protocol='python-socketio'"):
                await tw.call("question", "?", to=node_sid, timeout=1)
            with pytest.raises(NotImplementedError, match="protocol='python-socketio'"):
                await tw.emit("question", "?", to=node_sid, callback=lambda *a: None)
            await tw.disconnect(node_sid)
            await until("the node's socket disconnected", lambda: not on_node.connected)
            await on_tw.disconnect()
    finally:
        await tw.shutdown()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), STEP)


async def test_a_node_started_while_redis_is_down_joins_when_it_comes_back(tmp_path: Any) -> None:
    """Redis down at startup does not stop the server (local emits work);
    once Redis is up the manager subscribes and remote emits arrive."""
    from test_cluster import free_port

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    tw = tidewire.AsyncServer(client_manager=tidewire.AsyncRedisManager(url))
    got: asyncio.Queue[Any] = asyncio.Queue()
    proc = None
    async with serve(tidewire.ASGIApp(tw)) as tw_url:
        client = socketio.AsyncClient(reconnection=False)
        client.on("news", got.put_nowait)
        try:
            await within(client.connect(tw_url, transports=["websocket"], wait_timeout=STEP), "connect")
            await tw.emit("news", "local, Redis down")
            assert await within(got.get(), "local emit") == "local, Redis down"
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
            await until("the node subscribed", lambda: _reachable_count(url))
            emitter = tidewire.AsyncRedisManager(url, write_only=True)
            await emitter.emit("news", "remote, Redis back")
            await emitter.close()
            assert await within(got.get(), "remote emit") == "remote, Redis back"
        finally:
            await client.disconnect()
            await tw.shutdown()
            if proc is not None:
                proc.kill()


async def _reachable_count(url: str) -> bool:
    try:
        return await subscribers(url) >= 1
    except (OSError, aioredis.ConnectionError):
        return False


async def _has(rooms: Any, room: str) -> bool:
    return room in await rooms


async def _lacks(rooms: Any, room: str) -> bool:
    return room not in await rooms
