"""python-socketio's exceptions, under the same names (`import tidewire as
socketio` then `socketio.exceptions.ConnectionRefusedError`)."""

from __future__ import annotations

from typing import Any


class SocketIOError(Exception):
    pass


class ConnectionError(SocketIOError):  # noqa: A001 - python-socketio's name
    pass


class ConnectionRefusedError(ConnectionError):  # noqa: A001 - python-socketio's name
    """Raise in a `connect` handler to refuse the connection: the client gets
    a connect error with the first argument as its message and the others
    as its data (one argument: that value; several: their list)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if len(args) == 0:
            self.error_args: dict[str, Any] = {"message": "Connection rejected by server"}
        else:
            self.error_args = {"message": str(args[0])}
            if len(args) == 2:
                self.error_args["data"] = args[1]
            elif len(args) > 2:
                self.error_args["data"] = list(args[1:])


class TimeoutError(SocketIOError):  # noqa: A001 - python-socketio's name
    pass


class BadNamespaceError(SocketIOError):
    pass


class DisconnectedError(SocketIOError):
    pass
