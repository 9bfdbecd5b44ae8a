"""python-socketio's AsyncClient against tidewire-server: WebSocket only,
polling only and polling with upgrade; text and binary events both ways;
server-to-client acks; the /chat namespace; auth rejection."""

import asyncio

import engineio.payload
import pytest
import socketio

from conftest import STEP, TEST_LIMIT, bounded

TRANSPORTS = {
    "websocket": (["websocket"], "websocket"),
    "polling": (["polling"], "polling"),
    "polling+upgrade": (None, "websocket"),  # None: polling first, then upgrade
}



@pytest.fixture(params=list(TRANSPORTS))
def transport(request):
    return request.param


async def connect(server, transport, namespaces=("/",), auth=None, client=None):
    transports, _ = TRANSPORTS[transport]
    sio = client or socketio.AsyncClient(reconnection=False)
    await sio.connect(
        server.url,
        transports=transports,
        namespaces=list(namespaces),
        auth=auth,
        wait_timeout=STEP,
    )
    return sio


@bounded
async def test_transport_is_as_configured(server, transport):
    sio = await connect(server, transport)
    try:
        assert sio.connected
        assert sio.transport() == TRANSPORTS[transport][1]
        assert isinstance(sio.get_sid("/"), str)
    finally:
        await sio.disconnect()


@bounded
async def test_echo_with_ack_text(server, transport):
    sio = await connect(server, transport)
    try:
        args = ("a", 1, -2.5, True, None, {"b": [1, {"c": "ü😀\"\\"}]}, [], {})
        got = await sio.call("echo", args, timeout=STEP)
        assert list(got) == list(args)
        assert await sio.call("echo", "single", timeout=STEP) == "single"
    finally:
        await sio.disconnect()


@bounded
async def test_echo_with_ack_binary(server, transport):
    sio = await connect(server, transport)
    try:
        args = (b"\x00\x01\x02\xff", {"nested": [b"hello", {"deep": b""}], "n": 1}, "text", b"\x07" * 100_000)
        got = await sio.call("echo", args, timeout=STEP)
        assert list(got) == list(args)
    finally:
        await sio.disconnect()


@bounded
async def test_echo_without_ack_text_and_binary(server, transport):
    sio = socketio.AsyncClient(reconnection=False)
    received = asyncio.Queue()

    @sio.on("echo")
    async def on_echo(*args):
        await received.put(args)

    await connect(server, transport, client=sio)
    try:
        await sio.emit("echo", ("x", {"y": [2]}))
        assert await asyncio.wait_for(received.get(), STEP) == ("x", {"y": [2]})
        await sio.emit("echo", ({"file": b"\x01\x02\x03"}, b"\xff"))
        assert await asyncio.wait_for(received.get(), STEP) == ({"file": b"\x01\x02\x03"}, b"\xff")
    finally:
        await sio.disconnect()


@bounded
async def test_whoami_returns_auth(server, transport):
    sio = await connect(server, transport, auth={"token": "py-" + transport})
    try:
        me = await sio.call("whoami", timeout=STEP)
        assert me == {"id": sio.get_sid("/"), "nsp": "/", "auth": {"token": "py-" + transport}}
    finally:
        await sio.disconnect()


@bounded
async def test_ask_question_answer(server, transport):
    sio = socketio.AsyncClient(reconnection=False)
    answers = asyncio.Queue()
    questions = []

    @sio.on("question")
    async def on_question(q):
        questions.append(q)
        return {"pong": transport, "bin": b"\x01\x02"}

    @sio.on("answer")
    async def on_answer(*args):
        await answers.put(args)

    await connect(server, transport, client=sio)
    try:
        await sio.emit("ask")
        got = await asyncio.wait_for(answers.get(), STEP)
        assert questions == ["ping?"]
        assert got == ({"pong": transport, "bin": b"\x01\x02"},)
    finally:
        await sio.disconnect()


@bounded
async def test_chat_namespace_with_root(server, transport):
    sio = socketio.AsyncClient(reconnection=False)
    chat_answers = asyncio.Queue()

    @sio.on("question", namespace="/chat")
    async def on_question(q):
        return "from chat"

    @sio.on("answer", namespace="/chat")
    async def on_answer(*args):
        await chat_answers.put(args)

    await connect(server, transport, namespaces=("/", "/chat"), auth={"who": "py"}, client=sio)
    try:
        root_me = await sio.call("whoami", namespace="/", timeout=STEP)
        chat_me = await sio.call("whoami", namespace="/chat", timeout=STEP)
        assert root_me == {"id": sio.get_sid("/"), "nsp": "/", "auth": {"who": "py"}}
        assert chat_me == {"id": sio.get_sid("/chat"), "nsp": "/chat", "auth": {"who": "py"}}
        assert sio.get_sid("/") != sio.get_sid("/chat")
        got = await sio.call("echo", (b"c", 2), namespace="/chat", timeout=STEP)
        assert list(got) == [b"c", 2]
        await sio.emit("ask", namespace="/chat")
        assert await asyncio.wait_for(chat_answers.get(), STEP) == ("from chat",)
    finally:
        await sio.disconnect()


@bounded
async def test_chat_namespace_alone(server, transport):
    sio = await connect(server, transport, namespaces=("/chat",))
    try:
        assert await sio.call("echo", "only chat", namespace="/chat", timeout=STEP) == "only chat"
    finally:
        await sio.disconnect()


@pytest.mark.parametrize("namespace", ["/", "/chat"])
@bounded
async def test_auth_rejection(server, transport, namespace):
    sio = socketio.AsyncClient(reconnection=False)
    errors = []

    @sio.on("connect_error", namespace=namespace)
    async def on_connect_error(data):
        errors.append(data)

    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(server, transport, namespaces=(namespace,), auth={"token": "bad"}, client=sio)
    assert errors == [{"message": "unauthorized"}]
    assert not sio.connected
    await sio.disconnect()


@bounded
async def test_unknown_namespace_is_rejected(server, transport):
    sio = socketio.AsyncClient(reconnection=False)
    errors = []

    @sio.on("connect_error", namespace="/random")
    async def on_connect_error(data):
        errors.append(data)

    with pytest.raises(socketio.exceptions.ConnectionError):
        await connect(server, transport, namespaces=("/random",), client=sio)
    assert errors == [{"message": "Invalid namespace"}]
    await sio.disconnect()


@bounded
async def test_many_events_keep_order(server, transport, monkeypatch):
    # python-engineio refuses polling payloads of more than 16 packets
    # (Payload.max_decode_packets, python-engineio#142); a socket.io server sends
    # a whole burst in one response, so raise the client's limit as its
    # maintainer recommends.
    monkeypatch.setattr(engineio.payload.Payload, "max_decode_packets", 1000)
    sio = socketio.AsyncClient(reconnection=False)
    got = []
    done = asyncio.Event()
    n = 100

    @sio.on("echo")
    async def on_echo(i):
        got.append(i)
        if len(got) == n:
            done.set()

    await connect(server, transport, client=sio)
    try:
        for i in range(n):
            await sio.emit("echo", i)
        try:
            await asyncio.wait_for(done.wait(), 10)
        except asyncio.TimeoutError:
            pytest.fail(f"only {len(got)} of {n} echoes arrived within 10 s: {got[:5]}...{got[-5:]}")
        assert got == list(range(n))
    finally:
        await sio.disconnect()
