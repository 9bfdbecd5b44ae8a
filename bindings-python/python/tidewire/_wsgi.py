"""What python-socketio's handlers see of a connection: a WSGI-style
`environ` and python-socketio's disconnect reasons."""

from __future__ import annotations

from typing import Any

# Core's disconnect reasons (socket.io's) in python-socketio's words.
_REASONS = {
    "server namespace disconnect": "server disconnect",
    "server shutting down": "server disconnect",
    "client namespace disconnect": "client disconnect",
    "ping timeout": "ping timeout",
    "transport close": "transport close",
    "transport error": "transport error",
    "forced close": "server disconnect",
    "forced server close": "server disconnect",
    "parse error": "transport error",
}

class _Reason:
    """python-socketio's `AsyncServer.reason` constants."""

    SERVER_DISCONNECT = "server disconnect"
    CLIENT_DISCONNECT = "client disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


def _environ(handshake: dict[str, Any]) -> dict[str, Any]:
    """A WSGI-style environ from the handshake of the connection, as
    python-engineio builds it from the request that opened the session."""
    url = handshake.get("url") or ""
    path, _, query = url.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "RAW_URI": url,
        "SCRIPT_NAME": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": handshake.get("address"),
        "wsgi.url_scheme": "https" if handshake.get("secure") else "http",
    }
    headers = handshake.get("headers") or {}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    return environ
