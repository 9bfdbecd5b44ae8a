// A server that breaks the protocol, one way per Engine.IO path:
//   /garbage-open/   polling handshake that is not an OPEN packet
//   /old-protocol/   an Engine.IO v3 style payload (length-prefixed)
//   /bad-handshake/  an OPEN packet whose JSON lacks the sid
//   /http-error/     HTTP 500
//   /garbage-frames/ a valid WebSocket session, then malformed Socket.IO packets
//   /oversize/       a valid WebSocket session, then a 2 MiB message
//   /binary-first/   a valid WebSocket session, then a binary frame out of place
// Prints "listening on http://127.0.0.1:<port>".
import { createServer } from "node:http";
import { createRequire } from "node:module";

const require = createRequire(process.env.SOCKET_IO_NODE_MODULES + "/");
const { WebSocketServer } = require("ws");

const handshake = (sid) =>
  "0" + JSON.stringify({ sid, upgrades: [], pingInterval: 25000, pingTimeout: 20000, maxPayload: 1000000 });

const http = createServer((req, res) => {
  const mode = req.url.split("/")[1];
  if (mode === "garbage-open") return res.end("hello\x1eworld");
  if (mode === "old-protocol") return res.end('96:0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":5000}2:40');
  if (mode === "bad-handshake") return res.end('0{"upgrades":[]}');
  if (mode === "http-error") {
    res.statusCode = 500;
    return res.end("boom");
  }
  res.statusCode = 400;
  res.end("websocket only");
});

const wss = new WebSocketServer({ noServer: true });
http.on("upgrade", (req, socket, head) => {
  const mode = req.url.split("/")[1];
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.send(handshake("s" + Date.now()));
    ws.on("message", (data, binary) => {
      const text = binary ? "" : data.toString();
      if (!text.startsWith("40")) return;
      ws.send('40{"sid":"abc"}');
      if (mode === "garbage-frames") {
        ws.send("42garbage[");
      } else if (mode === "oversize") {
        ws.send("42" + JSON.stringify(["big", "x".repeat(2 << 20)]));
      } else if (mode === "binary-first") {
        ws.send(Buffer.from([1, 2, 3]));
      }
    });
  });
});

http.listen(0, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${http.address().port}`));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
