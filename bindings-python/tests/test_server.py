"""The tidewire package driven from asyncio, with python-socketio's
AsyncClient and npm socket.io-client as peers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from typing import Any, AsyncIterator

import pytest
import socketio

import tidewire

STEP = 5.0


async def within(awaitable: Any, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, STEP)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture
async def server() -> AsyncIterator[tidewire.Server]:
    errors: list[BaseException] = []
    srv = tidewire.Server(on_error=errors.append, ping_interval=1, ping_timeout=1)
    srv.errors = errors  # type: ignore[attr-defined]
    srv.disconnects = []  # type: ignore[attr-defined]

    @srv.use
    async def auth(handshake: dict[str, Any]) -> Any:
        token = handshake["auth"].get("token") if isinstance(handshake["auth"], dict) else None
        if token == "bad":
            raise tidewire.ConnectionRefused("unauthorized", {"reason": "bad token"})
        if token == "boom":
            raise RuntimeError("middleware crashed")
        return {"user": token, "data": {"via": "token"}} if token else None

    @srv.on("connection")
    def connected(socket: tidewire.Socket) -> None:
        socket.data["connected"] = True

    @srv.on("disconnect")
    def gone(socket: tidewire.Socket, reason: str) -> None:
        srv.disconnects.append((socket.id, reason))  # type: ignore[attr-defined]

    @srv.on("echo")
    async def echo(socket: tidewire.Socket, *args: Any) -> Any:
        return args

    @srv.on("whoami")
    def whoami(socket: tidewire.Socket) -> Any:
        return {"id": socket.id, "user": socket.user, "rooms": sorted(socket.rooms), "data": socket.data.get("connected")}

    @srv.on("join")
    def join(socket: tidewire.Socket, room: str) -> bool:
        socket.join(room)
        return True

    @srv.on("shout")
    def shout(socket: tidewire.Socket, room: str, msg: Any) -> None:
        socket.to(room).emit("shout", msg)

    @srv.on("ask")
    async def ask(socket: tidewire.Socket) -> Any:
        answer = await socket.emit_with_ack("question", "ping?", timeout=2)
        return answer[0]

    @srv.on("ask-timeout")
    async def ask_timeout(socket: tidewire.Socket) -> str:
        try:
            await socket.emit_with_ack("silent", timeout=0.1)
            return "answered?"
        except tidewire.AckTimeout:
            return "AckTimeout"

    # Two handlers of one event: both run, in order (the first answers).
    @srv.on("twice")
    def twice_first(socket: tidewire.Socket) -> str:
        socket.data["twice"] = ["first"]
        return "first"

    @srv.on("twice")
    def twice_second(socket: tidewire.Socket) -> None:
        socket.data["twice"].append("second")
        socket.emit("twice", socket.data["twice"])

    @srv.on("fill-rooms")
    def fill_rooms(socket: tidewire.Socket) -> Any:
        try:
            for i in range(1001):
                socket.join(f"many:{i}")
            return "no error"
        except tidewire.InvalidArgument as e:
            return [type(e).__name__, e.code, isinstance(e, tidewire.TooManyRooms)]

    # Events without a handler of their own, with their name.
    @srv.on("*")
    def anything(socket: tidewire.Socket, event: str, *args: Any) -> Any:
        return ["caught", event, list(args)]

    @srv.on("throw")
    def throw(socket: tidewire.Socket) -> None:
        raise ValueError("handler failed")

    @srv.on("bad-args")
    def bad_args(socket: tidewire.Socket) -> list[str]:
        out = []
        for f in (
            lambda: socket.join(""),
            lambda: socket.join(42),  # type: ignore[arg-type]
            lambda: socket.emit(""),
            lambda: socket.emit("x", object()),
            lambda: socket.emit("x", float("nan")),
        ):
            try:
                f()
                out.append("no error")
            except tidewire.InvalidArgument:
                out.append("InvalidArgument")
        return out

    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def client(url: str, **kwargs: Any) -> socketio.AsyncClient:
    c = socketio.AsyncClient(reconnection=False)
    await within(c.connect(url, transports=["websocket"], wait_timeout=STEP, **kwargs), "connect")
    return c


async def test_acks_are_return_values_binary_included(server: tidewire.Server) -> None:
    c = await client(server.url)
    try:
        args = ["a", 1, -2.5, True, None, {"b": [1, {"c": "ü😀"}]}, [], {}]
        assert await within(c.call("echo", tuple(args)), "echo") == tuple(args)
        got = await within(c.call("echo", (b"\x00\x01\xff", {"nested": [b"x" * 100_000]}, "text")), "binary echo")
        assert got == (b"\x00\x01\xff", {"nested": [b"x" * 100_000]}, "text")
        assert await within(c.call("echo", "one"), "one arg") == "one"
    finally:
        await c.disconnect()


async def test_a_catch_all_gets_events_without_a_handler(server: tidewire.Server) -> None:
    c = await client(server.url)
    try:
        assert await within(c.call("nobody-handles", (1, "x")), "catch-all") == ["caught", "nobody-handles", [1, "x"]]
        assert await within(c.call("echo", "own handler"), "echo") == "own handler"
    finally:
        await c.disconnect()


async def test_middleware_admits_users_and_refuses_with_data(server: tidewire.Server) -> None:
    c = await client(server.url, auth={"token": "alice"})
    try:
        me = await within(c.call("whoami"), "whoami")
        assert me["user"] == "alice"
        assert me["rooms"] == sorted([c.get_sid("/"), "user:alice"])
        assert me["data"] is True
    finally:
        await c.disconnect()
    for token, expected in (
        ("bad", {"message": "unauthorized", "data": {"reason": "bad token"}}),
        ("boom", {"message": "middleware crashed"}),
    ):
        refused = socketio.AsyncClient(reconnection=False)
        errors: list[Any] = []
        refused.on("connect_error", errors.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await within(refused.connect(server.url, transports=["websocket"], auth={"token": token}, wait_timeout=STEP), "refusal")
        assert errors == [expected]


async def test_rooms_and_broadcasts(server: tidewire.Server) -> None:
    a, b, c = [await client(server.url) for _ in range(3)]
    heard: dict[str, list[Any]] = {"a": [], "b": [], "c": []}
    for name, cl in (("a", a), ("b", b), ("c", c)):
        cl.on("news", lambda x, name=name: heard[name].append(("news", x)))
        cl.on("shout", lambda x, name=name: heard[name].append(("shout", x)))
    try:
        assert await within(a.call("join", "r1"), "join") is True
        assert await within(b.call("join", "r1"), "join") is True
        assert server.to("r1").emit("news", 1) == 2
        assert server.to("r1").except_("r1").emit("news", 2) == 0
        await a.emit("shout", ("r1", "hey"))
        for _ in range(100):
            if heard["a"] == [("news", 1)] and heard["b"] == [("news", 1), ("shout", "hey")]:
                break
            await asyncio.sleep(0.02)
        assert heard == {"a": [("news", 1)], "b": [("news", 1), ("shout", "hey")], "c": []}
    finally:
        for cl in (a, b, c):
            await cl.disconnect()


async def test_server_asks_a_client_and_a_silent_one_times_out(server: tidewire.Server) -> None:
    c = await client(server.url)
    c.on("question", lambda q: f"pong to {q}")

    async def silent() -> None:
        await asyncio.sleep(30)  # never answers in time

    c.on("silent", silent)
    try:
        assert await within(c.call("ask"), "ask") == "pong to ping?"
        assert await within(c.call("ask-timeout"), "ask-timeout") == "AckTimeout"
    finally:
        await c.disconnect()


async def test_handler_errors_are_reported_and_the_server_keeps_serving(server: tidewire.Server) -> None:
    c = await client(server.url)
    try:
        await c.emit("throw")
        for _ in range(100):
            if server.errors:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.02)
        assert [str(e) for e in server.errors] == ["handler failed"]  # type: ignore[attr-defined]
        assert await within(c.call("echo", "still"), "echo") == "still"
    finally:
        await c.disconnect()


async def test_bad_arguments_raise_tidewire_errors(server: tidewire.Server) -> None:
    c = await client(server.url)
    try:
        assert await within(c.call("bad-args"), "bad-args") == ["InvalidArgument"] * 5
    finally:
        await c.disconnect()
    with pytest.raises(tidewire.InvalidArgument):
        tidewire.Server(port=70_000)
    with pytest.raises(tidewire.InvalidArgument):
        tidewire.Server(ping_interval=-1)
    with pytest.raises(tidewire.InvalidArgument):
        server.of("no-slash")
    with pytest.raises(tidewire.InvalidArgument):
        server.on("x", "not callable")  # type: ignore[arg-type]
    assert issubclass(tidewire.AckTimeout, tidewire.TidewireError)


async def test_every_handler_of_an_event_runs_in_order(server: tidewire.Server) -> None:
    c = await client(server.url)
    try:
        second: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        c.on("twice", lambda got: second.set_result(got))
        assert await within(c.call("twice"), "twice") == "first"
        assert await within(second, "the second handler") == ["first", "second"]
        assert server.errors == []  # type: ignore[attr-defined]
    finally:
        await c.disconnect()


async def test_errors_carry_the_codes_node_uses(server: tidewire.Server) -> None:
    c = await client(server.url)
    try:
        assert await within(c.call("fill-rooms"), "fill-rooms") == ["TooManyRooms", "ERR_TOO_MANY_ROOMS", True]
    finally:
        await c.disconnect()
    with pytest.raises(tidewire.InvalidArgument) as bad:
        tidewire.Server(ping_interval=-1)
    assert bad.value.code == "ERR_INVALID_ARG"
    assert "ping_interval" in str(bad.value)
    codes = {
        tidewire.InvalidArgument: "ERR_INVALID_ARG",
        tidewire.TooManyRooms: "ERR_TOO_MANY_ROOMS",
        tidewire.ServerClosed: "ERR_SERVER_CLOSED",
        tidewire.ListenError: "ERR_LISTEN",
        tidewire.SendError: "ERR_SEND",
        tidewire.AckTimeout: "ERR_ACK_TIMEOUT",
        tidewire.Disconnected: "ERR_DISCONNECTED",
        tidewire.AckAlreadySent: "ERR_ACK_SENT",
        tidewire.ClusterError: "ERR_CLUSTER",
    }
    for cls, code in codes.items():
        assert cls.code == code and issubclass(cls, tidewire.TidewireError)


async def test_disconnect_reason_and_closed_server() -> None:
    srv = tidewire.Server()
    reasons: list[str] = []
    srv.on("disconnect", lambda s, r: reasons.append(r))
    await srv.start()
    c = await client(srv.url)
    await c.disconnect()
    for _ in range(100):
        if reasons:
            break
        await asyncio.sleep(0.02)
    # python-socketio may close the transport before its DISCONNECT packet
    # is read; either way the reason is a client's.
    assert len(reasons) == 1 and reasons[0] in ("client namespace disconnect", "transport close"), reasons
    await srv.close()
    with pytest.raises(tidewire.ServerClosed):
        srv.of("/late")
    with pytest.raises(tidewire.ServerClosed):
        await srv.start()


NODE_CLIENT = r"""
const { io } = require(process.env.SIO_CLIENT);
const c = io(process.argv[1], { transports: ["websocket"], reconnection: false, auth: { token: "node" } });
c.on("connect_error", (e) => { console.log(JSON.stringify({ error: e.message })); process.exit(1); });
c.on("connect", async () => {
  const me = await c.timeout(5000).emitWithAck("whoami");
  const bin = await c.timeout(5000).emitWithAck("echo", Buffer.from([1, 2, 3]));
  console.log(JSON.stringify({ user: me.user, bin: [...bin] }));
  c.close();
});
"""


async def test_npm_socket_io_client_as_peer(server: tidewire.Server) -> None:
    client_dir = os.environ.get("SIO_CLIENT_DIR")
    if not client_dir or shutil.which("node") is None:
        pytest.fail("SIO_CLIENT_DIR (a node_modules with socket.io-client) and node are required")
    env = dict(os.environ, SIO_CLIENT=os.path.join(client_dir, "socket.io-client"))
    proc = await asyncio.create_subprocess_exec(
        "node", "-e", NODE_CLIENT, server.url, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await within(proc.communicate(), "the node client")
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"user": "node", "bin": [1, 2, 3]}


async def test_limits_presence_and_drain() -> None:
    srv = tidewire.Server(limits={"events": {"shout": "2/m:2"}}, recovery=60)

    @srv.use
    def auth(handshake: dict[str, Any]) -> Any:
        user = handshake["auth"]["user"]
        return {"user": user, "presence": {"name": user.upper()}}

    srv.of("/").limit_event("say", max_bytes=200, schema={"type": "string", "maxLength": 10})
    srv.of("/").enable_presence("room:")

    @srv.on("say")
    def say(socket: tidewire.Socket, text: str) -> Any:
        return {"status": "ok", "text": text}

    @srv.on("shout")
    def shout(socket: tidewire.Socket) -> Any:
        return {"status": "ok"}

    @srv.on("enter")
    def enter(socket: tidewire.Socket, room: str) -> Any:
        socket.join(f"room:{room}")
        return [u["userId"] for u in srv.of("/").presence(f"room:{room}")]

    await srv.start()
    ann = await client(srv.url, auth={"user": "ann"})
    bob = await client(srv.url, auth={"user": "bob"})
    notices: list[Any] = []
    # With recovery on, events carry their offset as an extra last argument.
    ann.on("tidewire:drain", lambda notice, *offset: notices.append(notice))
    try:
        assert await within(ann.call("say", "hi"), "say") == {"status": "ok", "text": "hi"}
        assert (await within(ann.call("say", "much too long"), "say"))["code"] == "invalid_payload"
        assert (await within(ann.call("say", "x" * 300), "say"))["code"] == "payload_too_large"
        results = [await within(ann.call("shout"), "shout") for _ in range(3)]
        assert [r["status"] for r in results] == ["ok", "ok", "error"]
        assert results[2]["code"] == "rate_limited" and results[2]["retryAfterMs"] > 0
        assert await within(bob.call("enter", "r"), "enter") == ["bob"]
        assert await within(ann.call("enter", "r"), "enter") == ["bob", "ann"]
        report = await within(srv.drain(batch_size=1, batch_interval=0.01, ack_deadline=1), "drain")
        assert report == {"connections": 2, "batches": 2, "acks_abandoned": 0}
        for _ in range(100):
            if notices and not ann.connected:
                break
            await asyncio.sleep(0.02)
        assert notices and notices[0]["reason"] == "server shutting down"
    finally:
        await ann.disconnect()
        await bob.disconnect()
        await srv.close()


async def test_bad_limits_raise_invalid_argument() -> None:
    with pytest.raises(tidewire.InvalidArgument):
        tidewire.Server(limits={"rateSocket": "lots"})
    with pytest.raises(tidewire.InvalidArgument):
        tidewire.Server(limits={"nope": 1})
    srv = tidewire.Server()
    with pytest.raises(tidewire.InvalidArgument):
        srv.of("/").limit_event("e", schema={"type": 12})


async def test_a_burst_crosses_in_batches_in_order_and_every_ack_is_answered() -> None:
    # Deliveries reach the loop in batches (one wake-up per batch): many
    # events in flight from several clients at once must each run once, in
    # each socket's order, and every ack must come back.
    srv = tidewire.Server(limits={"rateSocket": "off", "rateUser": "off", "rateIp": "off"})
    seen: dict[str, list[int]] = {}

    @srv.on("seq")
    def seq(socket: tidewire.Socket, n: int) -> int:
        seen.setdefault(socket.id, []).append(n)
        return n

    await srv.start()
    clients = [await client(srv.url) for _ in range(3)]
    try:
        answers = await within(
            asyncio.gather(*[c.call("seq", n, timeout=STEP) for c in clients for n in range(300)]), "300 acks per client"
        )
        assert answers == [n for _ in clients for n in range(300)]
        assert sorted(seen) == sorted(c.get_sid("/") for c in clients)
        for order in seen.values():
            assert order == list(range(300))
    finally:
        for c in clients:
            await c.disconnect()
        await srv.close()
