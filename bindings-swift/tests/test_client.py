"""The mobile client's C ABI (the one Swift and Kotlin call), driven through
UniFFI's Python bindings of the same library against tidewire-server and an
official Node socket.io 4.8 server, through a TCP proxy that cuts, refuses
and black-holes connections."""

from __future__ import annotations

import asyncio
import gc
import json
import time

import pytest

import tidewire_swift as tw
from conftest import STEP, Recorder, States, ack, args, connected, node_server, opts, tidewire_server, until

CONNECTED = tw.SocketState.CONNECTED
DISCONNECTED = tw.SocketState.DISCONNECTED


async def test_cut_reconnects_with_backoff_recovers_and_flushes_in_order(make_server, proxy_factory) -> None:
    server = make_server(recovery=True)
    proxy = proxy_factory(server.port)
    manager = tw.SocketManager(proxy.url, opts())
    socket = manager.socket("/", None, None)
    states, mstates = States(), States()
    socket.on_state(states)
    manager.on_state(mstates)
    news, echoes = Recorder(), Recorder()
    socket.on("news", news)
    socket.on("echo", echoes)
    first = await connected(socket)
    assert not first.recovered
    assert (await ack(socket, "join", "r"))[0] == sorted([first.sid, "r"])

    other_manager = tw.SocketManager(server.url, opts())
    other = other_manager.socket("/", None, None)
    await connected(other)
    await ack(other, "hub-to", {"rooms": ["r"], "event": "news", "args": [0]})
    assert await news.wait(1) == [[0]]  # the recovery offset is not an argument

    proxy.refuse = True
    proxy.cut()
    await states.wait_for(lambda s: isinstance(s, DISCONNECTED) and s.will_reconnect)
    for i in range(1, 4):  # missed while away: replayed on recovery
        await ack(other, "hub-to", {"rooms": ["r"], "event": "news", "args": [i]})
    for word in ["a", "b", "c"]:  # buffered while offline, sent in order
        socket.emit("echo", args(word))
    # Attempts fail while the proxy refuses: the backoff delay grows.
    await mstates.wait_for(lambda s: isinstance(s, tw.ManagerState.WAITING) and s.attempt >= 3, timeout=10)
    waits = [s for s in mstates.items if isinstance(s, tw.ManagerState.WAITING)]
    assert [w.attempt for w in waits[:3]] == [1, 2, 3]
    assert all(0 < w.delay_ms <= 400 for w in waits)

    proxy.refuse = False
    back = await connected(socket, timeout=10)
    assert back.recovered and back.sid == first.sid
    assert await news.wait(4) == [[0], [1], [2], [3]]
    assert await echoes.wait(3) == [["a"], ["b"], ["c"]]
    assert socket.recovered()


async def test_server_killed_and_restarted_keeps_listeners_and_refreshes_auth(make_server, proxy_factory) -> None:
    server = make_server()
    proxy = proxy_factory(server.port)
    calls: list[int] = []

    class Token(tw.AuthProvider):
        def auth_json(self) -> str | None:
            calls.append(1)
            return json.dumps({"token": f"t{len(calls)}"})

    manager = tw.SocketManager(proxy.url, opts())
    socket = manager.socket("/", None, Token())
    states = States()
    socket.on_state(states)
    echoes = Recorder()
    socket.on("echo", echoes)
    await connected(socket)
    assert (await ack(socket, "whoami"))[0]["auth"] == {"token": "t1"}

    server.stop()
    server = make_server()
    proxy.upstream_port = server.port
    await states.wait_for(lambda s: isinstance(s, DISCONNECTED) and s.will_reconnect)
    await connected(socket, timeout=10)
    me = (await ack(socket, "whoami"))[0]
    assert me["auth"]["token"] == f"t{len(calls)}" and len(calls) >= 2
    socket.emit("echo", args("still listening"))
    assert await echoes.wait(1) == [["still listening"]]


async def test_black_holed_link_is_detected_within_the_heartbeat(make_server, proxy_factory) -> None:
    server = make_server(ping_interval=300, ping_timeout=300)
    proxy = proxy_factory(server.port)
    manager = tw.SocketManager(proxy.url, opts(transports=[tw.Transport.WEB_SOCKET]))
    socket = manager.socket("/", None, None)
    states = States()
    socket.on_state(states)
    await connected(socket)
    proxy.blackhole = True
    started = time.monotonic()
    lost = await states.wait_for(lambda s: isinstance(s, DISCONNECTED))
    elapsed = time.monotonic() - started
    assert lost.reason == "ping timeout" and lost.will_reconnect
    assert elapsed < 0.6 + 0.5, f"noticed after {elapsed:.2f}s"
    proxy.blackhole = False
    await connected(socket)
    assert await ack(socket, "echo", 1) == [1]


@pytest.mark.parametrize("transports", [None, [tw.Transport.WEB_SOCKET, tw.Transport.POLLING]])
async def test_websocket_refused_falls_back_to_polling(make_server, proxy_factory, transports) -> None:
    server = make_server()
    proxy = proxy_factory(server.port)
    proxy.refuse_websocket = True
    manager = tw.SocketManager(proxy.url, opts(transports=transports))
    socket = manager.socket("/", None, None)
    await connected(socket)
    assert await ack(socket, "echo", "over polling") == ["over polling"]
    echoes = Recorder()
    socket.on("echo", echoes)
    socket.emit("echo", args("pushed"))
    assert await echoes.wait(1) == [["pushed"]]
    await until(lambda: proxy.websocket_refused >= 1, what="a WebSocket attempt")
    assert manager.state() == tw.ManagerState.OPEN(transport=tw.Transport.POLLING)


async def test_polling_upgrades_to_websocket(make_server) -> None:
    server = make_server()
    manager = tw.SocketManager(server.url, opts())
    socket = manager.socket("/", None, None)
    await connected(socket)
    await until(lambda: manager.state() == tw.ManagerState.OPEN(transport=tw.Transport.WEB_SOCKET), what="upgrade")
    assert await ack(socket, "echo", "after upgrade") == ["after upgrade"]


async def test_binary_both_ways(make_server) -> None:
    server = make_server()
    manager = tw.SocketManager(server.url, opts())
    socket = manager.socket("/", None, None)
    await connected(socket)
    blob = bytes(range(256))
    sent = tw.Args(json='["x", {"_placeholder": true, "num": 0}, {"nested": {"_placeholder": true, "num": 1}}]',
                   binary=[blob, b"\x00"])
    reply = await socket.emit_with_ack("echo", sent, 5000)
    assert json.loads(reply.json) == json.loads(sent.json) and list(reply.binary) == [blob, b"\x00"]
    echoes = Recorder()
    socket.on("echo", echoes)
    socket.emit("echo", sent)
    await echoes.wait(1)
    assert echoes.items[0][2] == [blob, b"\x00"]
    with pytest.raises(tw.ClientError.InvalidArgument):
        socket.emit("echo", tw.Args(json='[{"_placeholder": true, "num": 3}]', binary=[]))


async def test_two_namespaces_share_one_connection(make_server, proxy_factory) -> None:
    server = make_server()
    proxy = proxy_factory(server.port)
    manager = tw.SocketManager(proxy.url, opts(transports=[tw.Transport.WEB_SOCKET]))
    main, chat = manager.socket("/", None, None), manager.socket("/chat", '{"who": "me"}', None)
    await connected(main)
    await connected(chat)
    assert (await ack(main, "whoami"))[0]["nsp"] == "/"
    me = (await ack(chat, "whoami"))[0]
    assert me["nsp"] == "/chat" and me["auth"] == {"who": "me"}
    assert proxy.accepted == 1 and proxy.open_connections() == 1
    # Leaving one namespace keeps the other.
    chat.disconnect()
    assert await ack(main, "echo", 2) == [2]
    assert manager.socket("/", None, None).id() == main.id()


async def test_server_acks_are_answered_by_listeners(make_server) -> None:
    server = make_server()
    manager = tw.SocketManager(server.url, opts())
    socket = manager.socket("/", None, None)
    await connected(socket)
    first, second, answers = Recorder(), Recorder(answer='["pong", 7]'), Recorder()
    socket.on("question", first)  # returns nothing: the next listener answers
    socket.on("question", second)
    socket.on("answer", answers)
    socket.emit("ask", args())
    assert await answers.wait(1) == [["pong"]]
    assert first.args() == [["ping?"]] and second.args() == [["ping?"]]


async def test_off_once_any_and_cancellation_stop_delivery(make_server) -> None:
    server = make_server()
    manager = tw.SocketManager(server.url, opts())
    socket = manager.socket("/", None, None)
    await connected(socket)
    kept, cancelled, once, any_ = Recorder(), Recorder(), Recorder(), Recorder()
    socket.on("echo", kept)
    sub = socket.on("echo", cancelled)
    socket.once("echo", once)
    any_sub = socket.on_any(any_)
    socket.emit("echo", args(1))
    await kept.wait(1)
    sub.cancel()
    sub.cancel()  # twice is harmless
    any_sub.cancel()
    socket.emit("echo", args(2))
    await kept.wait(2)
    assert cancelled.args() == [[1]] and once.args() == [[1]] and any_.args() == [[1]]
    socket.off("echo")
    probe = Recorder()
    socket.on_any(probe)
    socket.emit("echo", args(3))
    await probe.wait(1)
    assert kept.args() == [[1], [2]]
    socket.off_any()


async def test_releasing_the_client_closes_its_connection(make_server, proxy_factory) -> None:
    server = make_server()
    proxy = proxy_factory(server.port)
    manager = tw.SocketManager(proxy.url, opts(transports=[tw.Transport.WEB_SOCKET]))
    socket = manager.socket("/", None, None)
    socket.on("echo", Recorder())
    await connected(socket)
    assert proxy.open_connections() == 1
    del manager, socket
    gc.collect()
    await until(lambda: proxy.open_connections() == 0, what="the connection closed")


async def test_connect_errors_carry_their_data(make_server) -> None:
    server = make_server()
    manager = tw.SocketManager(server.url, opts())
    socket = manager.socket("/", '{"token": "bad"}', None)
    await until(lambda: isinstance(socket.state(), tw.SocketState.REFUSED), what="a refusal")
    state = socket.state()
    assert state.message == "unauthorized"
    if make_server.kind == "node":
        assert json.loads(state.data_json) == {"why": "bad token"}
    with pytest.raises(tw.ClientError.InvalidArgument):
        manager.socket("/chat", "[1]", None)


async def test_acks_time_out_and_fail_on_disconnect(make_server, proxy_factory) -> None:
    server = make_server()
    proxy = proxy_factory(server.port)
    manager = tw.SocketManager(proxy.url, opts(transports=[tw.Transport.WEB_SOCKET]))
    socket = manager.socket("/", None, None)
    await connected(socket)
    with pytest.raises(tw.ClientError.Timeout):
        await socket.emit_with_ack("nobody-answers", args(), 200)
    pending = asyncio.ensure_future(socket.emit_with_ack("nobody-answers", args(), None))
    await asyncio.sleep(0.2)
    proxy.cut()
    with pytest.raises(tw.ClientError.Disconnected):
        await asyncio.wait_for(pending, STEP)
    with pytest.raises(tw.ClientError.InvalidArgument):
        socket.emit("disconnect", args())


async def test_offline_buffer_is_bounded_and_volatile_emits_are_dropped(make_server, proxy_factory) -> None:
    server = make_server()
    proxy = proxy_factory(server.port)
    manager = tw.SocketManager(proxy.url, opts(send_buffer_capacity=2, transports=[tw.Transport.WEB_SOCKET]))
    socket = manager.socket("/", None, None)
    echoes = Recorder()
    socket.on("echo", echoes)
    await connected(socket)
    proxy.refuse = True
    proxy.cut()
    await until(lambda: isinstance(socket.state(), DISCONNECTED), what="offline")
    socket.emit_volatile("echo", args("dropped"))
    socket.emit("echo", args("one"))
    socket.emit("echo", args("two"))
    with pytest.raises(tw.ClientError.BufferFull) as full:
        socket.emit("echo", args("three"))
    assert full.value.capacity == 2
    proxy.refuse = False
    await connected(socket, timeout=10)
    assert await echoes.wait(2) == [["one"], ["two"]]
    await asyncio.sleep(0.2)
    assert echoes.args() == [["one"], ["two"]]


async def test_lifecycle_hints_reconnect_at_once(make_server, proxy_factory) -> None:
    server = make_server()
    proxy = proxy_factory(server.port)
    slow = opts(reconnection_delay_ms=20000, reconnection_delay_max_ms=30000, randomization_factor=0.0)
    manager = tw.SocketManager(proxy.url, slow)
    socket = manager.socket("/", None, None)
    states = States()
    socket.on_state(states)
    await connected(socket)
    manager.network_path_changed()
    await states.wait_for(lambda s: isinstance(s, DISCONNECTED) and s.reason == "network change")
    await connected(socket, timeout=2)  # not after the 20 s backoff

    # In the background nothing is attempted; back in the foreground, at once.
    manager.app_did_enter_background()
    proxy.cut()
    await until(lambda: isinstance(socket.state(), DISCONNECTED), what="the cut noticed")
    await asyncio.sleep(0.3)
    assert not isinstance(socket.state(), CONNECTED)
    manager.app_will_enter_foreground()
    await connected(socket, timeout=2)


@pytest.mark.parametrize(
    "mode,expect",
    [
        ("garbage-open", "connect error"),
        ("old-protocol", "connect error"),
        ("bad-handshake", "connect error"),
        ("http-error", "connect error"),
        ("garbage-frames", "parse error"),
        ("binary-first", "parse error"),
        ("oversize", "transport error"),
    ],
)
async def test_bad_server_input_gives_a_clean_error(mode: str, expect: str) -> None:
    from conftest import HERE, Server

    bad = Server(["node", str(HERE / "bad_server.mjs")])
    try:
        ws_modes = {"garbage-frames", "binary-first", "oversize"}
        transports = [tw.Transport.WEB_SOCKET] if mode in ws_modes else [tw.Transport.POLLING]
        manager = tw.SocketManager(
            bad.url, opts(path=f"/{mode}/", transports=transports, reconnection=False, max_payload=1 << 20)
        )
        socket = manager.socket("/", None, None)
        states = States()
        socket.on_state(states)
        lost = await states.wait_for(lambda s: isinstance(s, DISCONNECTED))
        assert lost.reason.startswith(expect), lost.reason
        assert not lost.will_reconnect
    finally:
        bad.stop()
    # The library still works.
    good = tidewire_server()
    try:
        socket = tw.SocketManager(good.url, opts()).socket("/", None, None)
        await connected(socket)
    finally:
        good.stop()


def test_options_and_urls_are_checked() -> None:
    with pytest.raises(tw.ClientError.InvalidUrl):
        tw.SocketManager("ftp://nowhere", opts())
    with pytest.raises(tw.ClientError.InvalidOption):
        tw.SocketManager("http://127.0.0.1:1", opts(randomization_factor=2.0))
    with pytest.raises(tw.ClientError.InvalidOption):
        tw.SocketManager("http://127.0.0.1:1", opts(pinned_keys=["not a pin"]))
    with pytest.raises(tw.ClientError.InvalidOption):
        tw.SocketManager("http://127.0.0.1:1", opts(extra_headers={"bad header": "x"}))
    defaults = tw.ManagerOptions()
    assert (defaults.reconnection_delay_ms, defaults.reconnection_delay_max_ms, defaults.timeout_ms) == (1000, 5000, 20000)
    assert defaults.randomization_factor == 0.5 and defaults.reconnection and defaults.path == "/socket.io/"
    assert tw.public_key_pin(b"not a certificate") is None
    assert tw.core_version()


async def test_query_and_headers_reach_the_server_and_a_closed_port_retries() -> None:
    server = node_server()
    try:
        manager = tw.SocketManager(server.url, opts(query={"room": "x y"}, extra_headers={"x-app": "demo"}))
        socket = manager.socket("/", None, None)
        await connected(socket)
    finally:
        server.stop()
    gone = tw.SocketManager(server.url, opts(reconnection_attempts=2))
    states = States()
    gone.on_state(states)
    sock = gone.socket("/", None, None)
    await states.wait_for(lambda s: s == tw.ManagerState.CLOSED(reason="reconnect failed"), timeout=10)
    assert sock.state() == DISCONNECTED(reason="reconnect failed", will_reconnect=False)
