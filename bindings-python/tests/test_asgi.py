"""python-socketio's API on Tidewire (`tidewire.AsyncServer`), mounted in a
FastAPI application with `tidewire.ASGIApp` and served by uvicorn (and
hypercorn) on one port; python-socketio's AsyncClient, npm socket.io-client
and httpx are the peers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
from typing import Any, AsyncIterator

import httpx
import pytest
import socketio
import uvicorn

import tidewire
from chat_app import create_app

STEP = 5.0


async def within(awaitable: Any, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, STEP)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Running:
    def __init__(self, sio: Any, seen: dict[str, list[Any]], url: str) -> None:
        self.sio, self.seen, self.url = sio, seen, url
        self.clients: list[socketio.AsyncClient] = []

    async def client(self, token: str = "alice", namespaces: Any = None, transports: Any = None) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        client.inbox = asyncio.Queue()  # type: ignore[attr-defined]

        @client.on("*")
        async def anything(event: str, *args: Any) -> None:
            await client.inbox.put((event, *args))  # type: ignore[attr-defined]

        @client.on("question")
        def question(text: str) -> str:
            return "pong" if text == "ping?" else "ping"

        self.clients.append(client)
        await within(
            client.connect(self.url, auth={"token": token}, namespaces=namespaces, transports=transports, wait_timeout=STEP),
            "connect",
        )
        return client


@contextlib.asynccontextmanager
async def serve(asgi: Any) -> AsyncIterator[str]:
    """Runs `asgi` under uvicorn on a free loopback port; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="on", timeout_graceful_shutdown=2))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        for _ in range(250):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()


@pytest.fixture
async def app() -> AsyncIterator[Running]:
    sio, asgi, seen = create_app()
    async with serve(asgi) as url:
        running = Running(sio, seen, url)
        try:
            yield running
        finally:
            for client in running.clients:
                if client.connected:
                    await asyncio.wait_for(client.disconnect(), STEP)
            await asyncio.wait_for(sio.shutdown(), STEP)


async def next_message(client: socketio.AsyncClient, event: str) -> Any:
    while True:
        message = await within(client.inbox.get(), event)  # type: ignore[attr-defined]
        if message[0] == event:
            return message[1:]


async def test_lifespan_reaches_the_other_app_and_the_hooks() -> None:
    sio, asgi, seen = create_app()
    async with serve(asgi):
        assert seen["lifespan"] == ["startup", "api up"]
    assert seen["lifespan"] == ["startup", "api up", "api down", "shutdown"]
    await sio.shutdown()


async def test_a_plain_route_answers_on_the_same_port(app: Running) -> None:
    async with httpx.AsyncClient(base_url=app.url, timeout=STEP) as http:
        r = await http.get("/hello")
        assert (r.status_code, r.json()) == (200, {"hello": "world"})
        assert (await http.get("/nowhere")).status_code == 404
        bad = await http.get("/socket.io/?EIO=3&transport=polling")
        assert (bad.status_code, bad.json()) == (400, {"code": 5, "message": "Unsupported protocol version"})


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]], ids=["websocket", "polling", "upgrade"])
async def test_connect_sessions_acks_and_binary(app: Running, transports: list[str]) -> None:
    client = await app.client("alice", transports=transports)
    assert await next_message(client, "welcome") == ({"user": "alice"},)
    user, rooms, sid = await within(client.call("whoami", timeout=STEP), "whoami")
    assert (user, rooms) == ("alice", sorted(["lobby", sid]))
    # The sid the connect handler and the others see is the client's.
    assert sid == client.get_sid("/")
    assert await within(client.call("rename", "bob", timeout=STEP), "rename") == "bob"
    assert (await within(client.call("whoami", timeout=STEP), "whoami"))[0] == "bob"
    # A tuple is several arguments; bytes travel as binary attachments.
    assert await within(client.call("echo", (1, "two", {"three": [3.5, None, True]}), timeout=STEP), "echo") == (
        1,
        "two",
        {"three": [3.5, None, True]},
    )
    assert await within(client.call("echo", b"\x00\x01\xff", timeout=STEP), "echo binary") == b"\x00\x01\xff"
    assert await within(client.call("echo", {"nested": [b"\x02"]}, timeout=STEP), "echo nested") == {"nested": [b"\x02"]}
    # The server asks the client: call() and emit(callback=).
    assert await within(client.call("ask", timeout=STEP), "ask") == "pong"
    await client.emit("ask_back")
    assert await next_message(client, "answered") == (["ping"],)
    # Events without a handler of their own go to the catch-all.
    assert await within(client.call("whatever", 7, timeout=STEP), "catch-all") == ("caught", "whatever", [7])
    if transports == ["polling", "websocket"]:
        for _ in range(100):
            if client.transport() == "websocket":
                break
            await asyncio.sleep(0.02)
        assert client.transport() == "websocket"
    else:
        assert client.transport() == transports[0]


async def test_refused_connections(app: Running) -> None:
    refused = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    refused.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await within(refused.connect(app.url, transports=["websocket"], wait_timeout=STEP), "refusal")
    assert errors == [{"message": "unauthorized", "data": {"reason": "no token"}}]
    errors.clear()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await within(refused.connect(app.url, auth={"token": "false"}, transports=["polling"], wait_timeout=STEP), "refusal")
    assert errors == [{"message": "Connection rejected by server"}]


async def test_rooms_skip_sid_an_http_route_and_close_room(app: Running) -> None:
    a, b, c = [await app.client(name) for name in ("a", "b", "c")]
    for client in (a, b):
        assert await within(client.call("join", "room1", timeout=STEP), "join") is True
    await a.emit("shout", {"room": "room1", "msg": "hi"})
    assert await next_message(b, "shout") == ("hi",)
    async with httpx.AsyncClient(base_url=app.url, timeout=STEP) as http:
        r = await http.post("/notify/room1", json={"n": 1})
        assert r.json() == {"ok": True}
        assert await next_message(a, "notice") == ({"n": 1},)
        assert await next_message(b, "notice") == ({"n": 1},)
        # The sender was skipped, c is not in the room: the next thing each
        # of them gets is the lobby notice.
        await http.post("/notify/lobby", json={"n": 2})
        assert await next_message(c, "notice") == ({"n": 2},)
        assert await next_message(a, "notice") == ({"n": 2},)
        assert await next_message(b, "notice") == ({"n": 2},)
        await a.emit("leave", "room1")
        await within(a.call("whoami", timeout=STEP), "whoami")
        await c.emit("close", "room1")
        await within(c.call("whoami", timeout=STEP), "whoami")
        await http.post("/notify/room1", json={"n": 3})
        await http.post("/notify/lobby", json={"n": 4})
        for client in (a, b, c):
            assert await next_message(client, "notice") == ({"n": 4},)


async def test_a_class_based_namespace(app: Running) -> None:
    a = await app.client("a", namespaces=["/chat"])
    b = await app.client("b", namespaces=["/", "/chat"])
    assert await within(a.call("hello", "ada", namespace="/chat", timeout=STEP), "hello") == "hello ada"
    a.on("said", lambda text: a.inbox.put_nowait(("said", text)), namespace="/chat")  # type: ignore[attr-defined]
    b.on("said", lambda text: b.inbox.put_nowait(("said", text)), namespace="/chat")  # type: ignore[attr-defined]
    await a.emit("say", "first", namespace="/chat")
    assert await next_message(b, "said") == ("first",)
    await b.emit("say", "second", namespace="/chat")
    assert await next_message(a, "said") == ("second",)
    assert app.seen["chat"] == ["first", "second"]


async def test_a_failing_handler_is_logged_and_the_server_goes_on(app: Running, caplog: pytest.LogCaptureFixture) -> None:
    client = await app.client("alice")
    with caplog.at_level(logging.INFO, logger="socketio.server"):
        await client.emit("boom")
        assert await within(client.call("echo", "still here", timeout=STEP), "echo") == "still here"
    assert "handler failed on purpose" in caplog.text
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert 'received event "boom"' in caplog.text


async def test_disconnect_reasons(app: Running) -> None:
    kicked = await app.client("k")
    gone = asyncio.Event()
    kicked.on("disconnect", lambda *reason: gone.set())
    user, rooms, kicked_sid = await within(kicked.call("whoami", timeout=STEP), "whoami")
    await kicked.emit("kick")
    await within(gone.wait(), "the server's disconnect")
    leaver = await app.client("l", transports=["websocket"])
    _, _, leaver_sid = await within(leaver.call("whoami", timeout=STEP), "whoami")
    await within(leaver.disconnect(), "disconnect")
    for _ in range(100):
        if len(app.seen["disconnects"]) >= 2:
            break
        await asyncio.sleep(0.02)
    # python-socketio's client closes its WebSocket without flushing its
    # DISCONNECT packet: the server sees the transport close (as
    # python-socketio's own server does).
    assert app.seen["disconnects"][0] == (kicked_sid, "server disconnect")
    assert app.seen["disconnects"][1][0] == leaver_sid
    assert app.seen["disconnects"][1][1] in ("client disconnect", "transport close")


@pytest.mark.parametrize(
    "options, error",
    [
        ({"async_mode": "aiohttp"}, ValueError),
        ({"client_manager": object()}, NotImplementedError),
        ({"json": object()}, NotImplementedError),
        ({"async_handlers": False}, NotImplementedError),
        ({"serializer": "msgpack"}, NotImplementedError),
        ({"namespaces": "*"}, NotImplementedError),
        ({"ping_interval": (25, 5)}, NotImplementedError),
        ({"ping_timeout": -1}, ValueError),
        ({"max_http_buffer_size": 0}, ValueError),
        ({"transports": ["carrier-pigeon"]}, ValueError),
        ({"cors_allowed_origins": 5}, ValueError),
        ({"allow_upgrades": False}, NotImplementedError),
        ({"cookie": "io"}, NotImplementedError),
        ({"monitor_clients": False}, NotImplementedError),
        ({"http_compression": True}, NotImplementedError),
        ({"compression_threshold": 1024}, ValueError),
        ({"no_such_option": 1}, ValueError),
    ],
)
def test_options_it_cannot_honour_raise(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        tidewire.AsyncServer(**options)
    assert str(raised.value)


async def test_static_files_and_other_entry_points_raise() -> None:
    sio = tidewire.AsyncServer(async_mode="asgi")
    await sio.emit("x", 1, room="lobby", callback=print)  # nobody there: no answer
    with pytest.raises(ValueError):
        await sio.call("x", 1)
    with pytest.raises(KeyError):
        await sio.get_session("nobody")
    with pytest.raises(NotImplementedError):
        sio.transport("nobody")
    with pytest.raises(NotImplementedError):
        tidewire.ASGIApp(sio, static_files={"/": "index.html"})
    with pytest.raises(NotImplementedError):
        sio.attach(object())
    with pytest.raises(NotImplementedError):
        sio.on("x", namespace="*")


async def test_always_connect_and_sids_without_a_connect_handler() -> None:
    """With always_connect the client is connected before `connect` runs and
    a refusal disconnects it; without a connect handler to run first, the
    server's sid is the one the client knows."""
    sio = tidewire.AsyncServer(async_mode="asgi", always_connect=True)
    started: list[str] = []

    @sio.event
    def connect(sid: str, environ: dict[str, Any]) -> bool:
        return environ["QUERY_STRING"].find("let=me") >= 0

    @sio.event
    def whoami(sid: str) -> Any:
        return sid, sio.get_environ(sid)["REMOTE_ADDR"]

    left: list[str] = []

    @sio.event
    def disconnect(sid: str, reason: str) -> None:
        left.append(reason)

    async def on_startup() -> None:
        started.append("up")

    async with serve(tidewire.ASGIApp(sio, on_startup=on_startup)) as url:
        assert started == ["up"]
        async with httpx.AsyncClient(base_url=url, timeout=STEP) as http:
            assert (await http.get("/elsewhere")).status_code == 404
        client = socketio.AsyncClient(reconnection=False)
        gone = asyncio.Event()
        client.on("disconnect", lambda *reason: gone.set())
        await within(client.connect(url + "?let=me", transports=["websocket"], wait_timeout=STEP), "connect")
        sid, address = await within(client.call("whoami", timeout=STEP), "whoami")
        assert (sid, address) == (client.get_sid("/"), "127.0.0.1")
        await client.disconnect()
        # The client connects, then the refusal disconnects it (python-socketio's
        # client may miss that DISCONNECT when it comes before its connect()
        # returns: the server's side is what is checked).
        refused = socketio.AsyncClient(reconnection=False)
        try:
            await within(refused.connect(url, transports=["polling"], wait_timeout=STEP), "connect")
        except socketio.exceptions.ConnectionError:
            pass
        for _ in range(250):
            if len(left) == 2:
                break
            await asyncio.sleep(0.02)
        assert "server disconnect" in left, left
        await refused.disconnect()
        await sio.shutdown()


NODE_CLIENT = r"""
const { io } = require(process.env.SIO_CLIENT);
const c = io(process.argv[1], { reconnection: false, auth: { token: "node" } });
c.on("connect_error", (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
c.on("connect", async () => {
  // An ack of several arguments resolves to its first one here.
  const user = await c.timeout(5000).emitWithAck("whoami");
  const bin = await c.timeout(5000).emitWithAck("echo", Buffer.from([1, 2, 3]));
  const upgraded = () => c.io.engine.transport.name === "websocket";
  for (let i = 0; i < 100 && !upgraded(); i++) await new Promise((r) => setTimeout(r, 20));
  const again = await c.timeout(5000).emitWithAck("echo", "after upgrade");
  console.log(JSON.stringify({ user, bin: [...bin], transport: c.io.engine.transport.name, again }));
  c.close();
});
"""


async def test_npm_socket_io_client_polls_then_upgrades(app: Running) -> None:
    client_dir = os.environ.get("SIO_CLIENT_DIR")
    if not client_dir or shutil.which("node") is None:
        pytest.fail("SIO_CLIENT_DIR (a node_modules with socket.io-client) and node are required")
    env = dict(os.environ, SIO_CLIENT=os.path.join(client_dir, "socket.io-client"))
    proc = await asyncio.create_subprocess_exec(
        "node", "-e", NODE_CLIENT, app.url, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await within(proc.communicate(), "the node client")
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"user": "node", "bin": [1, 2, 3], "transport": "websocket", "again": "after upgrade"}


async def test_engine_options_are_honoured(caplog: pytest.LogCaptureFixture) -> None:
    """transports, cors_allowed_origins, max_http_buffer_size and
    engineio_logger reach the engine serving the ASGI app."""
    sio = tidewire.AsyncServer(
        async_mode="asgi",
        transports=["polling"],
        cors_allowed_origins=["http://allowed.example"],
        max_http_buffer_size=100,
        engineio_logger=True,
    )
    async with serve(tidewire.ASGIApp(sio, socketio_path="/rt/")) as url:
        async with httpx.AsyncClient(base_url=url, timeout=STEP) as http:
            assert (await http.get("/socket.io/?EIO=4&transport=polling")).status_code == 404
            r = await http.get("/rt/?EIO=4&transport=polling", headers={"Origin": "http://allowed.example"})
            assert r.status_code == 200 and r.text.startswith("0{")
            assert r.headers["access-control-allow-origin"] == "http://allowed.example"
            sid = json.loads(r.text[1:])["sid"]
            assert json.loads(r.text[1:])["upgrades"] == []
            big = await http.post(f"/rt/?EIO=4&transport=polling&sid={sid}", content=b"4" + b"x" * 200)
            assert big.status_code == 413
            other = await http.get("/rt/?EIO=4&transport=polling", headers={"Origin": "http://elsewhere.example"})
            assert "access-control-allow-origin" not in other.headers
        with caplog.at_level(logging.INFO, logger="engineio.server"):
            client = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await within(client.connect(url, socketio_path="rt", transports=["websocket"], wait_timeout=STEP), "refusal")
            if client.eio.http is not None:
                await client.eio.http.close()
        assert "websocket refused: 400" in caplog.text
        await sio.shutdown()
        async with httpx.AsyncClient(base_url=url, timeout=STEP) as http:
            assert (await http.get("/rt/?EIO=4&transport=polling")).status_code == 503


@contextlib.asynccontextmanager
async def serve_hypercorn(asgi: Any) -> AsyncIterator[str]:
    """Runs `asgi` under hypercorn on a free loopback port; yields its URL."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) it
    config.graceful_timeout = 1
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    serving = asyncio.ensure_future(hypercorn_serve(asgi, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(base_url=url, timeout=STEP) as http:
            for _ in range(250):
                try:
                    if (await http.get("/hello")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]], ids=["websocket", "polling", "upgrade"])
async def test_under_hypercorn(transports: list[str]) -> None:
    sio, asgi, seen = create_app()
    async with serve_hypercorn(asgi) as url:
        running = Running(sio, seen, url)
        client = await running.client("hyper", transports=transports)
        try:
            assert await next_message(client, "welcome") == ({"user": "hyper"},)
            assert await within(client.call("echo", (b"\x01", "two"), timeout=STEP), "echo") == (b"\x01", "two")
            async with httpx.AsyncClient(base_url=url, timeout=STEP) as http:
                await http.post("/notify/lobby", json={"via": "hypercorn"})
            assert await next_message(client, "notice") == ({"via": "hypercorn"},)
            if transports == ["polling", "websocket"]:
                for _ in range(100):
                    if client.transport() == "websocket":
                        break
                    await asyncio.sleep(0.02)
            assert client.transport() == transports[-1]
        finally:
            await client.disconnect()
            await sio.shutdown()


async def test_no_event_is_refused_for_its_rate_unless_limits_say_so() -> None:
    """python-socketio refuses no event for its rate: a burst of 400 acked
    events from one client all reach the handler and are answered, in
    order. Tidewire's `limits` option turns rate limits on."""

    async def burst_of(sio: Any, count: int) -> tuple[list[Any], list[int]]:
        handled: list[int] = []

        @sio.on("burst")
        async def burst(sid: str, n: int) -> int:
            handled.append(n)
            return n

        async with serve(tidewire.ASGIApp(sio)) as url:
            client = socketio.AsyncClient(reconnection=False)
            await within(client.connect(url, transports=["websocket"], wait_timeout=STEP), "connect")
            try:
                calls = (client.call("burst", i, timeout=STEP) for i in range(count))
                answers = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 3 * STEP)
            finally:
                await client.disconnect()
        return list(answers), handled

    answers, handled = await burst_of(tidewire.AsyncServer(async_mode="asgi"), 400)
    assert answers == list(range(400))
    assert handled == list(range(400))

    limited = tidewire.AsyncServer(async_mode="asgi", limits={"rateSocket": "5/s:5", "maxViolations": 1000})
    answers, handled = await burst_of(limited, 50)
    assert 5 <= len(handled) < 50, handled
    assert answers[:5] == [0, 1, 2, 3, 4]

    with pytest.raises(ValueError, match="limits must be a dict"):
        tidewire.AsyncServer(async_mode="asgi", limits="off")
    with pytest.raises(ValueError, match="limits"):
        tidewire.AsyncServer(async_mode="asgi", limits={"rateSockets": "off"})
