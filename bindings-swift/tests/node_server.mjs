// An official socket.io 4.8 server for the binding's tests. Usage:
// node node_server.mjs '{"pingInterval":300,"pingTimeout":300,"recovery":true,"maxHttpBufferSize":2000}'
// Prints "listening on http://127.0.0.1:<port>" once ready (port 0: a free one).
import { createServer } from "node:http";
import { createRequire } from "node:module";

// socket.io lives in the end-to-end tests' node_modules (NODE_PATH points there).
const require = createRequire(process.env.SOCKET_IO_NODE_MODULES + "/");
const { Server } = require("socket.io");

const opts = JSON.parse(process.argv[2] ?? "{}");
const http = createServer();
const io = new Server(http, {
  pingInterval: opts.pingInterval ?? 25000,
  pingTimeout: opts.pingTimeout ?? 20000,
  maxHttpBufferSize: opts.maxHttpBufferSize ?? 1e6,
  connectionStateRecovery: opts.recovery ? { maxDisconnectionDuration: 60000, skipMiddlewares: true } : undefined,
});

for (const name of ["/", "/chat"]) {
  const nsp = io.of(name);
  nsp.use((socket, next) => {
    if (socket.handshake.auth?.token === "bad") {
      const err = new Error("unauthorized");
      err.data = { why: "bad token" };
      return next(err);
    }
    next();
  });
  nsp.on("connection", (socket) => {
    socket.on("echo", (...args) => {
      const ack = typeof args.at(-1) === "function" ? args.pop() : null;
      if (ack) ack(...args);
      else socket.emit("echo", ...args);
    });
    socket.on("whoami", (ack) => {
      const { pid, offset, ...auth } = socket.handshake.auth ?? {};
      ack({ id: socket.id, nsp: socket.nsp.name, auth, recovered: socket.recovered });
    });
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack([...socket.rooms].sort());
    });
    socket.on("ask", async () => {
      try {
        const answer = await socket.timeout(5000).emitWithAck("question", "ping?");
        socket.emit("answer", answer);
      } catch {
        // not answered
      }
    });
    socket.on("hub-to", (spec, ack) => {
      nsp.to(spec.rooms).emit(spec.event, ...(spec.args ?? []));
      ack?.(1);
    });
    socket.on("disconnect-me", () => socket.disconnect());
  });
}

http.listen(0, "127.0.0.1", () => console.log(`listening on http://127.0.0.1:${http.address().port}`));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
