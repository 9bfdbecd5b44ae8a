"""Fixtures of the binding's tests: the servers (tidewire-server and an
official Node socket.io 4.8), a TCP proxy that can cut, refuse and
black-hole connections, and recorders for listeners."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import tidewire_swift as tw

STEP = 5.0
HERE = Path(__file__).resolve().parent
NODE_MODULES = (HERE / "../../server-example/e2e/node/node_modules").resolve()
READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)$")


class Server:
    """A server process; `url` once it listens."""

    def __init__(self, argv: list[str]) -> None:
        env = dict(os.environ, SOCKET_IO_NODE_MODULES=str(NODE_MODULES))
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        match = READY.search(line)
        if not match:
            self.stop()
            raise AssertionError(f"server did not start: {line!r}")
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STEP)


def tidewire_server(
    ping_interval: int = 25000, ping_timeout: int = 20000, recovery: bool = False, max_payload: int = 1_000_000
) -> Server:
    binary = os.environ.get("TIDEWIRE_SERVER_BIN")
    if not binary:
        pytest.fail("TIDEWIRE_SERVER_BIN is not set (path to the tidewire-server binary)")
    argv = [binary, "--port", "0", "--host", "127.0.0.1", "--conformance"]
    argv += ["--ping-interval-ms", str(ping_interval), "--ping-timeout-ms", str(ping_timeout)]
    if recovery:
        argv += ["--recovery-ms", "60000"]
    argv += ["--max-payload", str(max_payload)]
    return Server(argv)


def node_server(
    ping_interval: int = 25000, ping_timeout: int = 20000, recovery: bool = False, max_payload: int = 1_000_000
) -> Server:
    if not (NODE_MODULES / "socket.io").is_dir():
        pytest.fail(f"socket.io is not installed in {NODE_MODULES} (make node-deps)")
    opts = {
        "pingInterval": ping_interval,
        "pingTimeout": ping_timeout,
        "recovery": recovery,
        "maxHttpBufferSize": max_payload,
    }
    return Server(["node", str(HERE / "node_server.mjs"), json.dumps(opts)])


SERVERS: dict[str, Callable[..., Server]] = {"tidewire": tidewire_server, "node": node_server}


@pytest.fixture(params=["tidewire", "node"])
def make_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., Server]]:
    """Starts servers of one kind (both kinds run every test using it)."""
    started: list[Server] = []

    def make(**kw: object) -> Server:
        s = SERVERS[request.param](**kw)
        started.append(s)
        return s

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for s in started:
        s.stop()


class Proxy:
    """A TCP proxy on a free loopback port in front of `upstream`.

    `cut()` closes every connection; `refuse` closes new ones at once;
    `blackhole` stops forwarding (connections stay open, bytes vanish);
    `refuse_websocket` closes connections whose first request asks for
    `transport=websocket`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refuse = False
        self.blackhole = False
        self.refuse_websocket = False
        self.accepted = 0
        self.websocket_refused = 0
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns) // 2

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            first = client.recv(65536)
            if self.refuse_websocket and b"transport=websocket" in first.split(b"\r\n", 1)[0]:
                self.websocket_refused += 1
                client.close()
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        with self._lock:
            self._conns |= {client, upstream}
        try:
            upstream.sendall(first)
        except OSError:
            pass
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self.blackhole:
                    dst.sendall(data)
        except OSError:
            pass
        if self.blackhole:
            # A black hole forwards no close either: the other side keeps
            # its connection open and must find out by itself (a server
            # that gives up on the silent client first must not tell it).
            src.close()
            with self._lock:
                self._conns.discard(src)
            return
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self._lock:
            self._conns -= {src, dst}

    def cut(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[int], Proxy]]:
    proxies: list[Proxy] = []

    def make(port: int) -> Proxy:
        p = Proxy(port)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.close()


class Recorder(tw.EventListener):
    """Records events (name, JSON arguments, binary attachments); answers
    acks with `answer` (JSON text) when given."""

    def __init__(self, answer: str | None = None) -> None:
        self.items: list[tuple[str, list, list[bytes]]] = []
        self.cond = threading.Condition()
        self.answer = answer

    def on_event(self, event: str, args: tw.Args) -> tw.Args | None:
        with self.cond:
            self.items.append((event, json.loads(args.json), list(args.binary)))
            self.cond.notify_all()
        return tw.Args(json=self.answer, binary=[]) if self.answer is not None else None

    def args(self) -> list[list]:
        with self.cond:
            return [a for _, a, _ in self.items]

    async def wait(self, n: int, timeout: float = STEP) -> list[list]:
        def until() -> bool:
            with self.cond:
                return self.cond.wait_for(lambda: len(self.items) >= n, timeout)

        assert await asyncio.to_thread(until), f"expected {n} events, got {self.items}"
        return self.args()


class States(tw.SocketStateListener, tw.ManagerStateListener):
    """Records state changes."""

    def __init__(self) -> None:
        self.items: list = []
        self.cond = threading.Condition()

    def on_state(self, state) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            self.items.append(state)
            self.cond.notify_all()

    async def wait_for(self, pred: Callable[[object], bool], timeout: float = STEP) -> object:
        found: list = []

        def until() -> bool:
            with self.cond:
                def check() -> bool:
                    for s in self.items:
                        if pred(s):
                            found.append(s)
                            return True
                    return False

                return self.cond.wait_for(check, timeout)

        assert await asyncio.to_thread(until), f"no matching state in {self.items}"
        return found[0]


def opts(**kw: object) -> tw.ManagerOptions:
    """Manager options with fast reconnection for tests."""
    base = dict(reconnection_delay_ms=100, reconnection_delay_max_ms=400, timeout_ms=3000)
    base.update(kw)
    return tw.ManagerOptions(**base)  # type: ignore[arg-type]


def args(*values: object) -> tw.Args:
    return tw.Args(json=json.dumps(list(values)), binary=[])


async def until(pred: Callable[[], bool], timeout: float = STEP, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def connected(socket: tw.Socket, timeout: float = STEP) -> tw.SocketState:
    await until(lambda: isinstance(socket.state(), tw.SocketState.CONNECTED), timeout, f"connected ({socket.state()})")
    return socket.state()


async def ack(socket: tw.Socket, event: str, *values: object, timeout_ms: int = 5000) -> list:
    reply = await asyncio.wait_for(socket.emit_with_ack(event, args(*values), timeout_ms), STEP + 1)
    return json.loads(reply.json)


@pytest.fixture(autouse=True)
def settle() -> Iterator[None]:
    """Lets released managers close, and their last state callbacks run,
    while the interpreter is fully alive."""
    yield
    gc.collect()
    time.sleep(0.2)
