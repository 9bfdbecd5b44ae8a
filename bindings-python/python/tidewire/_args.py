"""Event arguments as JSON text plus binary attachments (core's
`embed::args` documents the format): the one conversion every API of the
package uses."""

from __future__ import annotations

import json
from typing import Any, Iterable

from ._native import InvalidArgument

_BINARY = (bytes, bytearray, memoryview)


# Core's `embed::args` documents the format; these are its two JSON hooks.
def encode(args: Iterable[Any]) -> tuple[str, list[bytes]]:
    """Arguments to JSON text plus attachments (binary parts become
    socket.io placeholders)."""
    attachments: list[bytes] = []

    def placeholder(value: Any) -> Any:
        if isinstance(value, _BINARY):
            attachments.append(bytes(value))
            return {"_placeholder": True, "num": len(attachments) - 1}
        raise TypeError(f"{type(value).__name__} is not a JSON value")

    try:
        text = json.dumps(list(args), default=placeholder, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidArgument(f"arguments must be JSON values or bytes: {e}") from None
    return text, attachments


def decode(text: str, attachments: list[bytes]) -> list[Any]:
    """JSON text plus attachments back to arguments."""

    def revive(value: dict[str, Any]) -> Any:
        num = value.get("num")
        if value.get("_placeholder") is True and type(num) is int and 0 <= num < len(attachments):
            return attachments[num]
        return value

    result: list[Any] = json.loads(text, object_hook=revive)
    return result
