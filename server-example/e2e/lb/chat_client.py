"""A python-socketio client for the load-balancer end-to-end test
(server-example/e2e/node/test/loadbalancer.test.mjs drives it).

    chat_client.py URL ID COUNT TRANSPORTS

Connects through the balancer with TRANSPORTS (comma-separated), joins room
`chat`, prints `ready`; on a `go` line sends COUNT numbered messages to the
room, then waits (up to 20 s) for the other clients' and prints one JSON
line: {"got": {sender: [n, ...]}, "transport": ...}.
"""

import asyncio
import json
import sys

import socketio


async def main() -> None:
    url, me, count, transports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
    got: dict[int, list[int]] = {}
    client = socketio.AsyncClient(reconnection=False)

    @client.on("msg")
    async def on_msg(m, *_offset):  # noqa: ANN001
        got.setdefault(m["from"], []).append(m["n"])

    await client.connect(url, transports=transports, wait_timeout=10)
    if "websocket" in transports:
        for _ in range(100):
            if client.eio.current_transport == "websocket":
                break
            await asyncio.sleep(0.05)
    await client.call("join", ["chat"], timeout=10)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for n in range(count):
        await client.call("to", {"rooms": ["chat"], "event": "msg", "args": [{"from": me, "n": n}]}, timeout=10)
    for _ in range(400):
        if all(len(got.get(f, [])) >= count for f in range(4) if f != me):
            break
        await asyncio.sleep(0.05)
    print(json.dumps({"got": got, "transport": client.eio.current_transport}), flush=True)
    await client.disconnect()


asyncio.run(main())
