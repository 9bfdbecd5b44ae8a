"""The Swift binding's C ABI, exercised through UniFFI's Python bindings
generated from the same library (Swift cannot be compiled here), against
the reference server in conformance mode."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
from typing import Iterator

import pytest

import tidewire_swift as tw

STEP = 5.0
READY = re.compile(r"^tidewire-server listening on (http://127\.0\.0\.1:\d+)$")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    binary = os.environ.get("TIDEWIRE_SERVER_BIN")
    if not binary:
        pytest.fail("TIDEWIRE_SERVER_BIN is not set (path to the tidewire-server binary)")
    proc = subprocess.Popen(
        [binary, "--port", "0", "--host", "127.0.0.1", "--conformance"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        match = READY.match(line)
        assert match, f"unexpected first line {line!r}"
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=STEP)


async def connect(url: str, auth: dict | None = None) -> tw.SocketClient:
    return await asyncio.wait_for(
        tw.SocketClient.connect(url, None, json.dumps(auth) if auth is not None else None, 5000), STEP
    )


async def test_connect_emit_ack_and_events(server_url: str) -> None:
    client = await connect(server_url, {"who": "swift"})
    state = client.state()
    assert isinstance(state, tw.ConnectionState.CONNECTED) and len(state.sid) == 20
    assert json.loads(await client.emit_with_ack("echo", '["a",1,{"b":null}]', 5000)) == ["a", 1, {"b": None}]
    me = json.loads(await client.emit_with_ack("whoami", "[]", 5000))[0]
    assert me["nsp"] == "/" and me["auth"] == {"who": "swift"} and me["id"] == state.sid

    got: list[tuple[str, str]] = []
    arrived = threading.Event()

    class Listener(tw.EventListener):
        def on_event(self, event: str, args_json: str) -> None:
            got.append((event, args_json))
            arrived.set()

    client.on("echo", Listener())
    client.emit("echo", '["back", 2]')
    assert await asyncio.to_thread(arrived.wait, STEP), "the echo event did not arrive"
    assert [(e, json.loads(a)) for e, a in got] == [("echo", ["back", 2])]

    states: list[tw.ConnectionState] = []
    changed = threading.Event()

    class States(tw.StateListener):
        def on_state(self, state: tw.ConnectionState) -> None:
            states.append(state)
            changed.set()

    client.watch_state(States())
    client.disconnect()
    assert await asyncio.to_thread(changed.wait, STEP)
    assert states == [tw.ConnectionState.DISCONNECTED("io client disconnect")]
    with pytest.raises(tw.ClientError.Disconnected):
        client.emit("echo", "[]")


async def test_errors_cross_as_client_errors(server_url: str) -> None:
    with pytest.raises(tw.ClientError.Refused) as refused:
        await connect(server_url, {"token": "bad"})
    assert refused.value.message == "unauthorized"
    with pytest.raises(tw.ClientError.InvalidArgument):
        await tw.SocketClient.connect("ftp://nowhere", None, None, 1000)
    with pytest.raises(tw.ClientError.InvalidArgument):
        await tw.SocketClient.connect(server_url, None, "[1, 2]", 1000)

    client = await connect(server_url)
    with pytest.raises(tw.ClientError.InvalidArgument):
        client.emit("echo", '{"not": "an array"}')
    with pytest.raises(tw.ClientError.InvalidArgument):
        client.emit("echo", "not json")
    with pytest.raises(tw.ClientError.Timeout):
        await client.emit_with_ack("no-such-event-with-ack", "[]", 100)
    # The server disconnects the socket: the state says so.
    client.emit("disconnect-me", "[]")
    for _ in range(100):
        if isinstance(client.state(), tw.ConnectionState.DISCONNECTED):
            break
        await asyncio.sleep(0.02)
    assert client.state() == tw.ConnectionState.DISCONNECTED("io server disconnect")
    assert tw.core_version()
