"""The native module (PyO3). Use the `tidewire` package instead."""

from typing import Any, Awaitable, Callable, Optional, final

__all__ = [
    "Ack",
    "AckAlreadySent",
    "AckTimeout",
    "BroadcastOperator",
    "ClusterError",
    "Disconnected",
    "InvalidArgument",
    "ListenError",
    "Reply",
    "SendError",
    "Server",
    "ServerClosed",
    "Socket",
    "TidewireError",
    "TooManyRooms",
    "__version__",
]

__version__: str

class TidewireError(Exception): ...

# Each class's `code` is its string in core's `embed::ErrorCode` table (the
# same as Node's `err.code`).
class InvalidArgument(TidewireError):
    code: str

class TooManyRooms(InvalidArgument):
    code: str

class ServerClosed(TidewireError):
    code: str

class ListenError(TidewireError):
    code: str

class SendError(TidewireError):
    code: str

class AckTimeout(TidewireError):
    code: str

class Disconnected(TidewireError):
    code: str

class AckAlreadySent(TidewireError):
    code: str

class ClusterError(TidewireError):
    code: str

@final
class Reply:
    def resolve(self, json: str) -> None: ...

@final
class Ack:
    def send(self, json: str, attachments: list[bytes]) -> None: ...

@final
class BroadcastOperator:
    def to(self, rooms: list[str]) -> BroadcastOperator: ...
    def except_(self, rooms: list[str]) -> BroadcastOperator: ...
    def emit(self, event: str, json: str, attachments: list[bytes]) -> int: ...

@final
class Socket:
    @property
    def id(self) -> str: ...
    @property
    def nsp(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    @property
    def user(self) -> Optional[str]: ...
    @property
    def handshake(self) -> str: ...
    def join(self, room: str) -> None: ...
    def leave(self, room: str) -> None: ...
    def rooms(self) -> list[str]: ...
    def emit(self, event: str, json: str, attachments: list[bytes]) -> None: ...
    def emit_with_ack(
        self, event: str, json: str, attachments: list[bytes], timeout: Optional[float] = None
    ) -> Awaitable[tuple[str, list[bytes]]]: ...
    def broadcast(self) -> BroadcastOperator: ...
    def disconnect(self, close: bool = False) -> None: ...

@final
class Server:
    def __new__(cls, options: str) -> Server: ...
    def use_middleware(self, nsp: str, callback: Callable[[str, Reply], Any]) -> None: ...
    def set_dispatcher(
        self, dispatch: Callable[[str, str, Socket, str, str, list[bytes], Optional[Ack], list[Callable[..., Any]]], Any]
    ) -> None: ...
    def watch(self, nsp: str) -> None: ...
    def on(self, nsp: str, name: str, handler: Callable[..., Any]) -> None: ...
    def start(self) -> Awaitable[str]: ...
    def close(self) -> Awaitable[None]: ...
    def broadcast(self, nsp: str) -> BroadcastOperator: ...
    def socket_count(self, nsp: str) -> int: ...
    def join_cluster(self, options: str) -> Awaitable[None]: ...
    def server_count(self, nsp: str) -> Awaitable[int]: ...
    def limit_event(self, nsp: str, event: str, options: str) -> None: ...
    def enable_presence(self, nsp: str, prefix: str) -> None: ...
    def presence(self, nsp: str, room: str) -> str: ...
    def drain(self, options: str) -> Awaitable[tuple[int, int, int]]: ...
