"""Fixtures: spawn tidewire-server (path from TIDEWIRE_SERVER_BIN) on an ephemeral port."""

import asyncio
import functools
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading

import pytest

READY = re.compile(r"^tidewire-server listening on (http://127\.0\.0\.1:(\d+))$")


class ServerProcess:
    """The server in --conformance mode, or with chat=True the chat app (the
    default mode). `env` is merged over this process's environment; in chat
    mode JWT_SECRET, TIDEWIRE_CONFORMANCE, TIDEWIRE_DATA_DIR and DATABASE_URL
    are not inherited, so only `env` decides whether a secret is set (none: a
    random development secret and /dev/token, as on loopback) and where
    messages are kept (unset: a data directory of the server's own)."""

    def __init__(self, args=(), chat=False, env=None):
        binary = os.environ.get("TIDEWIRE_SERVER_BIN")
        if not binary:
            raise RuntimeError("TIDEWIRE_SERVER_BIN is not set (path to the tidewire-server binary)")
        child_env = dict(os.environ)
        env = env or {}
        # A data directory of the server's own unless `env` names where
        # messages go; removed in stop().
        self._scratch = None
        if chat:
            for name in ("JWT_SECRET", "TIDEWIRE_CONFORMANCE", "TIDEWIRE_DATA_DIR", "DATABASE_URL"):
                child_env.pop(name, None)
            if "TIDEWIRE_DATA_DIR" not in env and "DATABASE_URL" not in env:
                self._scratch = tempfile.mkdtemp(prefix="tidewire-e2e-data-")
                child_env["TIDEWIRE_DATA_DIR"] = self._scratch
        child_env.update(env)
        mode = [] if chat else ["--conformance"]
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--host", "127.0.0.1", *mode, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
        )
        self._stderr = bytearray()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        line = self._read_ready_line(timeout=30)
        m = READY.match(line)
        if not m or int(m.group(2)) == 0:
            self.stop()
            raise RuntimeError(f"unexpected ready line {line!r}; stderr:\n{self.stderr()}")
        self.url = m.group(1)
        threading.Thread(target=self._drain_stdout, daemon=True).start()

    def _read_ready_line(self, timeout):
        result = {}

        def read():
            result["line"] = self.proc.stdout.readline().decode("utf-8", "replace")

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if "line" not in result:
            self.stop()
            raise RuntimeError(f"no ready line within {timeout} s; stderr:\n{self.stderr()}")
        return result["line"].rstrip("\r\n")

    def _drain_stdout(self):
        for _ in self.proc.stdout:
            pass

    def _drain_stderr(self):
        for chunk in iter(lambda: self.proc.stderr.read(4096), b""):
            if len(self._stderr) < (1 << 20):
                self._stderr += chunk

    def stderr(self):
        return self._stderr.decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)


@pytest.fixture(scope="session")
def server():
    srv = ServerProcess()
    yield srv
    srv.stop()
    assert srv.proc.returncode is not None


CHAT_SECRET = "e2e-" + secrets.token_hex(16)


@pytest.fixture(scope="session")
def chat_server():
    """The chat app with JWT_SECRET = CHAT_SECRET."""
    srv = ServerProcess(chat=True, env={"JWT_SECRET": CHAT_SECRET})
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def dev_chat_server():
    """The chat app without JWT_SECRET: a random development secret and GET /dev/token."""
    srv = ServerProcess(chat=True)
    yield srv
    srv.stop()


STEP = 5  # seconds for one expected reply
TEST_LIMIT = 30  # seconds for one test


def bounded(fn):
    """Give every test a deadline so it stops by itself."""

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        async with asyncio.timeout(TEST_LIMIT):
            return await fn(*args, **kwargs)

    return wrapper
