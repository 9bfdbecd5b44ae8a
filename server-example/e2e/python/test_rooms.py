"""python-socketio's AsyncClient against tidewire-server --conformance: rooms
and broadcasts (to, hub-to, except, socket ids), binary acks, the broadcast
ack report (answered, silent, gone), the event middleware and dynamic
namespaces.

Non-delivery is checked without sleeping: after the broadcast under test a
"barrier" event is sent from the namespace to every client involved; the
server delivers to one socket in order, so once the barrier has arrived
anything sent before it has arrived too."""

import asyncio
import itertools
import os

import pytest
import socketio

from conftest import STEP, TEST_LIMIT, bounded


_ids = itertools.count()


def room(what):
    """A room name unique within this run."""
    return f"{what}-{os.getpid()}-{next(_ids)}"


class Recorder:
    """Records the given events of one client, in arrival order."""

    def __init__(self, sio, *events, namespace="/"):
        self.seen = []
        self._changed = asyncio.Event()
        for event in events:
            sio.on(event, self._handler(event), namespace=namespace)

    def _handler(self, event):
        async def handler(*args):
            self.seen.append((event, args))
            self._changed.set()

        return handler

    def of(self, event):
        return [args for e, args in self.seen if e == event]

    async def wait_for(self, predicate, what):
        try:
            async with asyncio.timeout(STEP):
                while not predicate(self):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}; seen {self.seen!r}")


class Clients:
    """Opens clients for a test and disconnects them all at the end."""

    def __init__(self, server):
        self.server = server
        self.clients = []

    async def connect(self, transport="websocket", namespaces=("/",), auth=None, events=(), client=None):
        sio = client or socketio.AsyncClient(reconnection=False)
        rec = Recorder(sio, "barrier", *events, namespace=namespaces[0])
        self.clients.append(sio)
        await sio.connect(
            self.server.url,
            transports=[transport] if transport else None,
            namespaces=list(namespaces),
            auth=auth,
            wait_timeout=STEP,
        )
        sio.rec = rec
        return sio

    async def close(self):
        for sio in self.clients:
            await sio.disconnect()


@pytest.fixture
async def clients(server):
    c = Clients(server)
    yield c
    await c.close()


def sid(sio, namespace="/"):
    return sio.get_sid(namespace)


async def barrier(via, targets):
    """Sends `barrier` from via's namespace to each target; waits until all have it."""
    tag = f"b-{next(_ids)}"
    reached = await via.call(
        "hub-to", {"rooms": [sid(t) for t in targets], "event": "barrier", "args": [tag]}, timeout=STEP
    )
    assert reached == len(targets)
    for t in targets:
        await t.rec.wait_for(lambda r: (tag,) in r.of("barrier"), f"barrier {tag}")


@bounded
async def test_join_leave_rooms(clients):
    s = await clients.connect()
    me = sid(s)
    a, b = room("a"), room("b")
    assert await s.call("rooms", timeout=STEP) == [me]
    assert await s.call("join", a, timeout=STEP) == sorted([me, a])
    assert await s.call("join", [a, b], timeout=STEP) == sorted([me, a, b])
    assert await s.call("leave", a, timeout=STEP) == sorted([me, b])
    assert await s.call("leave", room("never"), timeout=STEP) == sorted([me, b])
    assert await s.call("leave", b, timeout=STEP) == [me]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@bounded
async def test_to_reaches_members_not_sender_nor_outsiders(clients, transport):
    sender, m1, m2, outsider = [await clients.connect(transport, events=("hello",)) for _ in range(4)]
    r = room("to")
    for s in (sender, m1, m2):
        await s.call("join", r, timeout=STEP)
    reached = await sender.call("to", {"rooms": [r], "event": "hello", "args": [1, {"x": [True]}]}, timeout=STEP)
    assert reached == 2
    await barrier(sender, [sender, m1, m2, outsider])
    assert m1.rec.of("hello") == [(1, {"x": [True]})]
    assert m2.rec.of("hello") == [(1, {"x": [True]})]
    assert sender.rec.of("hello") == []
    assert outsider.rec.of("hello") == []


@bounded
async def test_hub_to_includes_sender_and_except_excludes(clients):
    sender, keep, muted, by_id = [await clients.connect(events=("news",)) for _ in range(4)]
    everyone = [sender, keep, muted, by_id]
    r, quiet = room("hub"), room("quiet")
    for s in everyone:
        await s.call("join", r, timeout=STEP)
    await muted.call("join", quiet, timeout=STEP)
    spec = {"rooms": [r], "except": [quiet, sid(by_id)], "event": "news", "args": ["n"]}
    assert await sender.call("hub-to", spec, timeout=STEP) == 2
    assert await sender.call("to", spec, timeout=STEP) == 1
    await barrier(sender, everyone)
    assert sender.rec.of("news") == [("n",)]  # hub-to only
    assert keep.rec.of("news") == [("n",), ("n",)]  # both
    assert muted.rec.of("news") == []
    assert by_id.rec.of("news") == []


@bounded
async def test_union_of_rooms_delivers_once_and_socket_id_as_room(clients):
    sender, in_both, in_r1, in_r2, target = [await clients.connect(events=("multi", "dm")) for _ in range(5)]
    everyone = [sender, in_both, in_r1, in_r2, target]
    r1, r2 = room("u1"), room("u2")
    await sender.call("join", [r1, r2], timeout=STEP)
    await in_both.call("join", [r1, r2], timeout=STEP)
    await in_r1.call("join", r1, timeout=STEP)
    await in_r2.call("join", r2, timeout=STEP)
    assert await sender.call("to", {"rooms": [r1, r2], "event": "multi", "args": []}, timeout=STEP) == 3
    assert await sender.call("to", {"rooms": [sid(target)], "event": "dm", "args": ["psst"]}, timeout=STEP) == 1
    await barrier(sender, everyone)
    for s in (in_both, in_r1, in_r2):
        assert s.rec.of("multi") == [()]
    assert sender.rec.of("multi") == [] and target.rec.of("multi") == []
    assert target.rec.of("dm") == [("psst",)]
    assert all(s.rec.of("dm") == [] for s in everyone if s is not target)


@bounded
async def test_namespaces_of_one_client_are_independent(clients):
    sio = socketio.AsyncClient(reconnection=False)
    chat_rec = Recorder(sio, "where", namespace="/chat")
    both = await clients.connect(namespaces=("/", "/chat"), events=("where",), client=sio)
    other_root = await clients.connect(events=("where",))
    r = room("nsp")
    await both.call("join", r, namespace="/", timeout=STEP)
    assert await both.call("rooms", namespace="/chat", timeout=STEP) == [both.get_sid("/chat")]
    # from / to the room: reaches the / socket, not the /chat one
    assert await other_root.call("to", {"rooms": [r], "event": "where", "args": ["/"]}, timeout=STEP) == 1
    await barrier(other_root, [both])
    assert both.rec.of("where") == [("/",)]
    assert chat_rec.of("where") == []
    # from /chat to the same room name: nobody is in it there
    assert await both.call("to", {"rooms": [r], "event": "where", "args": []}, namespace="/chat", timeout=STEP) == 0


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@bounded
async def test_echo_ack_with_nested_bytes_is_a_binary_ack(clients, transport):
    sio = socketio.AsyncClient(reconnection=False)
    frames = []
    original = sio.eio.handlers["message"]

    async def spy(data):
        frames.append(data)
        return await original(data)

    sio.eio.handlers["message"] = spy
    await clients.connect(transport, client=sio)
    sent = ({"file": {"name": "a.bin", "data": b"\x00\x01\xfd"}, "list": [b"x", 1]}, "t")
    got = await sio.call("echo", sent, timeout=STEP)
    assert list(got) == list(sent)
    assert isinstance(got[0]["file"]["data"], bytes)
    headers = [f for f in frames if isinstance(f, str) and f[:1] in ("3", "6")]
    assert len(headers) == 1, frames
    assert headers[0].startswith("62-"), f"a BINARY_ACK with two attachments, got {headers[0][:40]!r}"
    assert [f for f in frames if isinstance(f, bytes)] == [b"\x00\x01\xfd", b"x"]


@bounded
async def test_ask_server_to_client_ack_with_bytes(clients):
    sio = socketio.AsyncClient(reconnection=False)
    questions = []

    @sio.on("question")
    async def on_question(q):
        questions.append(q)
        return {"answer": 42, "blob": b"\x09\x08"}

    await clients.connect(events=("answer",), client=sio)
    await sio.emit("ask")
    await sio.rec.wait_for(lambda r: r.of("answer"), "answer")
    assert questions == ["ping?"]
    assert sio.rec.of("answer") == [({"answer": 42, "blob": b"\x09\x08"},)]


@bounded
async def test_broadcast_ack_report_answered_silent_gone(clients):
    sender = await clients.connect()
    answering_client = socketio.AsyncClient(reconnection=False)
    silent_client = socketio.AsyncClient(reconnection=False)
    gone_client = socketio.AsyncClient(reconnection=False)
    release = asyncio.Event()  # holds the silent handler until the report is in
    silent_polled = asyncio.Event()
    gone_polled = asyncio.Event()

    @answering_client.on("poll")
    async def answer(q):
        return {"vote": "yes", "q": q}

    # python-socketio acks every event that asks for one (with no arguments
    # when there is no handler), so "silent" is a handler that does not return
    @silent_client.on("poll")
    async def silent(_q):
        silent_polled.set()
        await release.wait()

    @gone_client.on("poll")
    async def gone_handler(_q):
        gone_polled.set()
        await release.wait()

    answering = await clients.connect(client=answering_client)
    silent_one = await clients.connect(client=silent_client)
    gone = await clients.connect(client=gone_client)
    ids = {name: sid(s) for name, s in (("answering", answering), ("silent", silent_one), ("gone", gone))}
    r = room("poll")
    for s in (answering, silent_one, gone):
        await s.call("join", r, timeout=STEP)

    async def disconnect_gone():
        await gone_polled.wait()
        await gone.disconnect()

    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        report, _ = await asyncio.gather(
            sender.call("broadcast-ack", {"rooms": [r], "timeoutMs": 1000}, timeout=STEP),
            disconnect_gone(),
        )
        elapsed = loop.time() - started
        assert silent_polled.is_set()
        assert report == {
            "responses": [{"id": ids["answering"], "args": [{"vote": "yes", "q": "?"}]}],
            "timedOut": [ids["silent"]],
            "disconnected": [ids["gone"]],
        }
        assert elapsed >= 0.9, f"the report waited for the timeout ({elapsed:.3f} s)"
    finally:
        release.set()
    # the late ack of the silent client is ignored and the connections work on
    assert await silent_one.call("echo", "late", timeout=STEP) == "late"
    assert await sender.call("echo", "sender", timeout=STEP) == "sender"


@bounded
async def test_broadcast_ack_all_answer_before_the_timeout(clients):
    sender = await clients.connect()
    a_client, b_client = socketio.AsyncClient(reconnection=False), socketio.AsyncClient(reconnection=False)

    @a_client.on("poll")
    async def a_answer(_q):
        return ("a", b"\x01")

    @b_client.on("poll")
    async def b_answer(_q):
        return "b"

    a = await clients.connect(client=a_client)
    b = await clients.connect(client=b_client)
    r = room("poll-all")
    await a.call("join", r, timeout=STEP)
    await b.call("join", r, timeout=STEP)
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await sender.call("broadcast-ack", {"rooms": [r], "timeoutMs": 4000}, timeout=STEP)
    assert loop.time() - started < 3, "did not wait for the timeout"
    by_id = {x["id"]: x["args"] for x in report["responses"]}
    assert by_id[sid(b)] == ["b"]
    assert by_id[sid(a)][0] == "a"  # binary answers: see the node tests for their encoding
    assert sorted(by_id) == sorted([sid(a), sid(b)])
    assert report["timedOut"] == [] and report["disconnected"] == []


@bounded
async def test_forbidden_events_are_refused_and_the_connection_stays(clients):
    s = await clients.connect()
    res = await s.call("forbidden-x", {"a": 1}, timeout=STEP)
    assert res["status"] == "error"
    assert res["code"] == "forbidden"
    assert isinstance(res["message"], str) and res["message"]
    await s.emit("forbidden")  # no ack: dropped
    assert await s.call("echo", ("still", b"\x01"), timeout=STEP) == ("still", b"\x01")
    assert s.connected


@bounded
async def test_dynamic_namespaces(clients):
    s = await clients.connect(namespaces=("/dyn-42",), auth={"k": "v"})
    me = await s.call("whoami", namespace="/dyn-42", timeout=STEP)
    assert me == {"id": s.get_sid("/dyn-42"), "nsp": "/dyn-42", "auth": {"k": "v"}}

    bad = socketio.AsyncClient(reconnection=False)
    errors = []

    @bad.on("connect_error", namespace="/dyn-x")
    async def on_connect_error(data):
        errors.append(data)

    with pytest.raises(socketio.exceptions.ConnectionError):
        await clients.connect(namespaces=("/dyn-x",), client=bad)
    assert errors == [{"message": "Invalid namespace"}]
