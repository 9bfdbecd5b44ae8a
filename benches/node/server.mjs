// The Node socket.io side of the load generator's contract; the Tidewire
// side is benches/src/bin/tidewire-bench-server.rs. Stock configuration.
//
// On the main namespace:
//   join (room) -> joins room, acks true
//   fanout (room, ...args) -> emits fanout (...args) to room, sender excluded
//   echo (...args) -> acks with the same arguments
//
// Usage: node server.mjs [--port N] [--host H] [--redis URL] [--redis-prefix KEY]
//        [--adapter official|tidewire] [--engine stock|tidewire] [--fast-path on|off]
//        [--hand-off on|off]
//        node server.mjs --engine native [--port N] [--host H] [--redis URL] [--redis-prefix KEY]
// With --redis, the official @socket.io/redis-adapter (classic mode,
// createAdapter) joins the nodes; --redis-prefix is its `key` (default
// "socket.io"). With --adapter tidewire, Tidewire's createAdapter
// (bindings-node, built) takes the official one's place, same clients and
// options: the side-by-side of the two adapters (without --redis,
// --adapter tidewire is Tidewire's createAdapter() for one node); with
// --engine tidewire, Tidewire's Engine carries the connections
// (io.bind(engine)). Both: the drop-in, whose broadcasts take the fast
// path (the core writes to every recipient); --fast-path off keeps
// socket.io's path with both (the before of that fast path). With
// --engine tidewire, --hand-off off keeps every WebSocket on npm ws (the
// Engine's `handOff: false`) instead of handing the connection to the core.
// With --engine native, the same handlers run on the `tidewire` package's
// own Server (its listener, Socket.IO in the core; rate limits off as in
// the Rust bench server): the native API's figures beside the drop-in's.
// Prints "listening on http://ADDR" on stdout once it accepts connections.

import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    redis: { type: "string" },
    "redis-prefix": { type: "string", default: "socket.io" },
    adapter: { type: "string", default: "official" },
    engine: { type: "string", default: "stock" },
    "fast-path": { type: "string", default: "on" },
    "hand-off": { type: "string", default: "on" },
  },
});

if (values.engine === "native") {
  const { Server: NativeServer } = await import("../../bindings-node/tidewire.js");
  const io = new NativeServer({
    host: values.host,
    port: Number(values.port),
    limits: { rateSocket: "off", rateUser: "off", rateIp: "off" },
  });
  handlers(io);
  if (values.redis) await io.joinCluster({ redisUrl: values.redis, prefix: values["redis-prefix"] });
  const { url } = await io.listen();
  process.stdout.write(`listening on ${url}\n`);
  stopOnSignal(() => io.close());
} else {
  await stock();
}

function handlers(io) {
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack(true);
    });
    socket.on("fanout", (room, ...args) => {
      socket.to(room).emit("fanout", ...args);
    });
    socket.on("echo", (...args) => {
      const ack = args.pop();
      if (typeof ack === "function") ack(...args);
    });
  });
}

function stopOnSignal(close) {
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, async () => {
      await close();
      process.exit(0);
    });
  }
}

async function stock() {
  const httpServer = createServer();
  let io;
  if (values.engine === "tidewire") {
    const { Engine } = await import("../../bindings-node/socket.io.mjs");
    io = new Server();
    const engine = new Engine({ handOff: values["hand-off"] !== "off" });
    engine.attach(httpServer, { path: "/socket.io/" });
    io.bind(engine);
  } else {
    io = new Server(httpServer);
  }

  if (values.redis) {
    const { createClient } = await import("redis");
    const { createAdapter } =
      values.adapter === "tidewire"
        ? await import("../../bindings-node/socket.io.mjs")
        : await import("@socket.io/redis-adapter");
    const pub = createClient({ url: values.redis });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub, { key: values["redis-prefix"] }));
  } else if (values.adapter === "tidewire") {
    // One node: Tidewire's adapter without Redis.
    const { createAdapter } = await import("../../bindings-node/socket.io.mjs");
    io.adapter(createAdapter());
  }

  if (values["fast-path"] === "off") {
    // The "before" of the fast path, in the same build: Tidewire's adapter
    // decides on its first socket; told now, it keeps socket.io's path
    // (a broadcast written to each socket by socket.io-adapter).
    io.of("/").adapter._fanout = null;
  }

  handlers(io);

  httpServer.listen(Number(values.port), values.host, () => {
    const { address, port } = httpServer.address();
    process.stdout.write(`listening on http://${address}:${port}\n`);
  });

  stopOnSignal(() => io.close());
}
