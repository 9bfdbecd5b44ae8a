"""Fixtures: spawn tidewire-server (path from TIDEWIRE_SERVER_BIN) on an ephemeral port."""

import os
import re
import subprocess
import threading

import pytest

READY = re.compile(r"^tidewire-server listening on (http://127\.0\.0\.1:(\d+))$")


class ServerProcess:
    def __init__(self, args=()):
        binary = os.environ.get("TIDEWIRE_SERVER_BIN")
        if not binary:
            raise RuntimeError("TIDEWIRE_SERVER_BIN is not set (path to the tidewire-server binary)")
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--host", "127.0.0.1", "--conformance", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
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


@pytest.fixture(scope="session")
def server():
    srv = ServerProcess()
    yield srv
    srv.stop()
    assert srv.proc.returncode is not None
