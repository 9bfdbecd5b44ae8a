"""Listeners off the connection and the server's maxPayload, through the
C ABI Swift and Kotlin use, against tidewire-server and Node socket.io 4.8:
a listener that blocks longer than the heartbeat window does not cost the
connection, and buffered emits flushed over long-polling are split under
the server's maxPayload, a single oversized packet failing alone."""

from __future__ import annotations

import time

import tidewire_swift as tw
from conftest import STEP, Recorder, States, ack, args, connected, opts

DISCONNECTED = tw.SocketState.DISCONNECTED


class Sleeper(Recorder):
    """Records events after blocking its thread for `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def on_event(self, event: str, args: tw.Args) -> tw.Args | None:
        time.sleep(self.seconds)
        return super().on_event(event, args)


async def test_a_listener_slower_than_the_heartbeat_keeps_the_connection(make_server) -> None:
    # The server gives up after 400 ms without a pong; each event blocks
    # its listener for 600 ms.
    server = make_server(ping_interval=200, ping_timeout=200)
    for transports in ([tw.Transport.WEB_SOCKET], [tw.Transport.POLLING]):
        manager = tw.SocketManager(server.url, opts(transports=transports))
        socket = manager.socket("/", None, None)
        await connected(socket)
        states = States()
        socket.on_state(states)
        slow = Sleeper(0.6)
        socket.on("echo", slow)
        # Answered by a listener that blocks too, after the ones before it.
        socket.on("question", Sleeper(0.6))
        answers = Recorder()
        socket.on("answer", answers)
        for i in range(3):
            socket.emit("echo", args(i))
        socket.emit("ask", args())
        assert await slow.wait(3, timeout=STEP + 3) == [[0], [1], [2]]
        # The server's question came after the echoes, answered once its
        # blocking listener returned.
        assert len(await answers.wait(1)) == 1
        assert await ack(socket, "echo", "still here") == ["still here"]
        assert not any(isinstance(s, DISCONNECTED) for s in states.items), (transports, states.items)
        assert socket.dropped_events() == 0
        manager.close()


async def test_polling_uploads_are_split_at_the_servers_max_payload(make_server) -> None:
    server = make_server(max_payload=2000)
    manager_states = States()
    manager = tw.SocketManager(
        server.url, opts(transports=[tw.Transport.POLLING], reconnection=False, auto_connect=False)
    )
    manager.on_state(manager_states)
    socket = manager.socket("/", None, None)
    echoes, errors = Recorder(), []

    class Errors(tw.EmitErrorListener):
        def on_emit_error(self, event: str, message: str) -> None:
            errors.append((event, message))

    socket.on("echo", echoes)
    socket.on_emit_error(Errors())
    # About 30 KB buffered before the handshake, flushed at once, and one
    # packet over the limit among them.
    for i in range(300):
        socket.emit("echo", args(i, "x" * 100))
        if i == 150:
            socket.emit("echo", args("too big", "y" * 3000))
    socket.connect()
    await connected(socket)
    got = await echoes.wait(300)
    assert [a[0] for a in got] == list(range(300))
    assert errors and errors[0][0] == "echo" and "maxPayload (2000 bytes)" in errors[0][1], errors
    # Known now: refused at once, the session goes on.
    try:
        socket.emit("echo", args("y" * 3000))
        raise AssertionError("an oversized emit was accepted")
    except tw.ClientError.PayloadTooLarge as e:
        assert e.max == 2000 and e.size > 2000
    try:
        await ack(socket, "echo", "y" * 3000)
        raise AssertionError("an oversized emit with ack was accepted")
    except tw.ClientError.PayloadTooLarge:
        pass
    assert await ack(socket, "echo", "after") == ["after"]
    lost = [s for s in manager_states.items if not isinstance(s, (tw.ManagerState.OPENING, tw.ManagerState.OPEN))]
    assert lost == [], lost
    manager.close()
