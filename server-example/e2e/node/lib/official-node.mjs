// An official socket.io 4.8 node in a @socket.io/redis-adapter 8.x classic
// cluster (createAdapter, node-redis v4 clients), implementing the same
// conformance contract as tidewire-server --conformance (see
// server-example/src/conformance.rs) on the namespaces `/` and `/chat`, plus
// the cluster events the cluster tests drive.
//
//   node lib/official-node.mjs --port 0 --redis-url redis://127.0.0.1:PORT
//        [--prefix socket.io] [--name NAME] [--requests-timeout MS]
//
// Prints one line, `official-node listening on http://127.0.0.1:<port>`, once
// the HTTP server listens and every namespace's adapter is subscribed; exits
// on SIGTERM / SIGINT after closing socket.io and the Redis clients.
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    "redis-url": { type: "string" },
    prefix: { type: "string", default: "socket.io" },
    name: { type: "string", default: `official-${process.pid}` },
    "requests-timeout": { type: "string", default: "5000" },
    // createShardedAdapter (Redis 7 sharded pub/sub) instead of createAdapter.
    sharded: { type: "boolean", default: false },
    "subscription-mode": { type: "string", default: "dynamic" },
  },
});
if (!opts["redis-url"]) {
  console.error("official-node: --redis-url is required");
  process.exit(2);
}
const NAME = opts.name;
const NAMESPACES = ["/", "/chat"];

const pubClient = createClient({ url: opts["redis-url"] });
const subClient = pubClient.duplicate();
for (const c of [pubClient, subClient]) c.on("error", (err) => console.error(`official-node ${NAME}: redis: ${err.message}`));
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: opts.sharded
    ? createShardedAdapter(pubClient, subClient, {
        channelPrefix: opts.prefix,
        subscriptionMode: opts["subscription-mode"],
      })
    : createAdapter(pubClient, subClient, {
        key: opts.prefix,
        requestsTimeout: Number(opts["requests-timeout"]),
      }),
});

/** A room name or a list of them, as a list of strings (anything else: none). */
function strings(v) {
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v.filter((x) => typeof x === "string");
  return [];
}

const sortedRooms = (socket) => [...socket.rooms].sort();

/** Splits a trailing ack callback off an event's arguments. */
function splitAck(args) {
  return typeof args.at(-1) === "function" ? [args.slice(0, -1), args.at(-1)] : [args, () => {}];
}

/** `nsp.in(rooms).except(except)`; no rooms means every socket. */
function select(nsp, spec) {
  return nsp.in(strings(spec?.rooms)).except(strings(spec?.except));
}

function install(nsp) {
  nsp.use((socket, next) => {
    const auth = socket.handshake.auth ?? {};
    if (auth.token === "bad") return next(new Error("unauthorized"));
    if (typeof auth.user === "string") socket.data.user = auth.user;
    next();
  });

  // a server-side event from another node of the cluster
  nsp.on("cluster-ping", (...args) => {
    const cb = typeof args.at(-1) === "function" ? args.pop() : null;
    nsp.local.emit("cluster-pinged", { node: NAME, args });
    cb?.({ node: NAME, args });
  });

  nsp.on("connection", (socket) => {
    if (typeof socket.data.user === "string") socket.join(`user:${socket.data.user}`);

    // event middleware: forbidden* is refused, with an error ack if one is asked
    socket.use(([event, ...args], next) => {
      if (typeof event === "string" && event.startsWith("forbidden")) {
        const cb = args.at(-1);
        if (typeof cb === "function") {
          cb({ status: "error", code: "forbidden", message: `${event} is not allowed` });
        }
        return; // dropped
      }
      next();
    });

    socket.on("echo", (...all) => {
      if (typeof all.at(-1) === "function") {
        const cb = all.pop();
        cb(...all);
      } else {
        socket.emit("echo", ...all);
      }
    });

    socket.on("whoami", (...all) => {
      const [, cb] = splitAck(all);
      cb({ id: socket.id, nsp: nsp.name, auth: socket.handshake.auth, node: NAME, uid: nsp.adapter.uid });
    });

    socket.on("ask", () => {
      socket.emit("question", "ping?", (answer) => socket.emit("answer", answer));
    });

    socket.on("join", (...all) => {
      const [[rooms], cb] = splitAck(all);
      socket.join(strings(rooms));
      cb(sortedRooms(socket));
    });

    socket.on("leave", (...all) => {
      const [[rooms], cb] = splitAck(all);
      for (const r of strings(rooms)) socket.leave(r);
      cb(sortedRooms(socket));
    });

    socket.on("rooms", (...all) => {
      const [, cb] = splitAck(all);
      cb(sortedRooms(socket));
    });

    // `to` (from the socket, sender excluded) / `hub-to` (from the namespace):
    // acked with the number of recipients on this node
    for (const [name, fromSocket] of [["to", true], ["hub-to", false]]) {
      socket.on(name, async (...all) => {
        const [[spec], cb] = splitAck(all);
        const event = typeof spec?.event === "string" ? spec.event : "message";
        const args = Array.isArray(spec?.args) ? spec.args : [];
        const base = fromSocket ? socket.broadcast : nsp;
        base.to(strings(spec?.rooms)).except(strings(spec?.except)).emit(event, ...args);
        const local = await select(nsp, spec).local.fetchSockets();
        cb(local.filter((s) => !fromSocket || s.id !== socket.id).length);
      });
    }

    socket.on("broadcast-ack", (...all) => {
      const [[spec], cb] = splitAck(all);
      const timeoutMs = Number.isFinite(spec?.timeoutMs) ? spec.timeoutMs : 1000;
      socket.broadcast
        .to(strings(spec?.rooms))
        .timeout(timeoutMs)
        .emit("poll", "?", (err, responses) => {
          // socket.io hands over each client's first ack argument only, and
          // no socket ids
          const rs = (responses ?? []).map((value) => ({ id: null, args: [value] }));
          if (err) cb({ error: err.message, responses: rs });
          else cb({ responses: rs, timedOut: [], disconnected: [] });
        });
    });

    socket.on("disconnect-me", (close) => {
      socket.disconnect(close === true);
    });

    // ---- cluster events ----

    socket.on("set-data", (...all) => {
      const [[value], cb] = splitAck(all);
      socket.data.app = value;
      cb(true);
    });

    socket.on("fetch", async (...all) => {
      const [[spec], cb] = splitAck(all);
      try {
        const sockets = await select(nsp, spec).fetchSockets();
        const list = sockets
          .map((s) => ({ id: s.id, rooms: [...s.rooms].sort(), data: s.data?.app ?? null }))
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        cb({ sockets: list });
      } catch (err) {
        cb({ error: err.message });
      }
    });

    socket.on("sockets-join", (...all) => {
      const [[spec], cb] = splitAck(all);
      select(nsp, spec).socketsJoin(strings(spec?.join));
      cb(true);
    });

    socket.on("sockets-leave", (...all) => {
      const [[spec], cb] = splitAck(all);
      select(nsp, spec).socketsLeave(strings(spec?.leave));
      cb(true);
    });

    socket.on("disconnect-sockets", (...all) => {
      const [[spec], cb] = splitAck(all);
      cb(true);
      select(nsp, spec).disconnectSockets(spec?.close === true);
    });

    socket.on("remote-emit", async (...all) => {
      const [[spec], cb] = splitAck(all);
      try {
        const [s] = typeof spec?.id === "string" ? await nsp.in(spec.id).fetchSockets() : [];
        s?.emit(typeof spec?.event === "string" ? spec.event : "message", ...(Array.isArray(spec?.args) ? spec.args : []));
        cb(s ? 1 : 0);
      } catch (err) {
        cb({ error: err.message });
      }
    });

    socket.on("server-side-emit", (...all) => {
      const [[spec], cb] = splitAck(all);
      const event = typeof spec?.event === "string" ? spec.event : "cluster-ping";
      const args = Array.isArray(spec?.args) ? spec.args : [];
      if (spec?.ack !== true) {
        nsp.serverSideEmit(event, ...args);
        cb(true);
        return;
      }
      // Namespace#timeout() gives a BroadcastOperator, which has no
      // serverSideEmit: the adapter's requestsTimeout is the only timeout
      // (spec.timeoutMs is not used by this node).
      nsp.serverSideEmit(event, ...args, (err, responses) => {
        cb({ error: err ? err.message : null, responses: responses ?? [] });
      });
    });

    socket.on("server-count", async (...all) => {
      const [, cb] = splitAck(all);
      cb(await nsp.adapter.serverCount());
    });

    socket.on("all-rooms", async (...all) => {
      const [, cb] = splitAck(all);
      try {
        // The sharded adapter (a ClusterAdapter) has no allRooms: this node's rooms.
        const rooms = typeof nsp.adapter.allRooms === "function" ? await nsp.adapter.allRooms() : nsp.adapter.rooms.keys();
        cb([...rooms].sort());
      } catch (err) {
        cb({ error: err.message });
      }
    });
  });
}

for (const name of NAMESPACES) install(io.of(name));

// The adapter subscribes without waiting; each adapter subscribes last to a
// channel of its own (`<prefix>-response#<nsp>#<uid>#`) on the one subscriber
// connection, after its pattern and request channels: once Redis counts a
// subscriber there, the namespace receives everything.
const deadline = Date.now() + 10_000;
for (const name of NAMESPACES) {
  const adapter = io.of(name).adapter;
  const channel = opts.sharded ? adapter.responseChannel : adapter.specificResponseChannel;
  for (;;) {
    const [, count] = await pubClient.sendCommand(["PUBSUB", opts.sharded ? "SHARDNUMSUB" : "NUMSUB", channel]);
    if (Number(count) >= 1) break;
    if (Date.now() > deadline) {
      console.error(`official-node ${NAME}: ${channel} never subscribed`);
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

await new Promise((resolve, reject) => {
  httpServer.once("error", reject);
  httpServer.listen(Number(opts.port), opts.host, resolve);
});
const { port } = httpServer.address();
process.stdout.write(`official-node listening on http://${opts.host}:${port}\n`);

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  const hard = setTimeout(() => process.exit(0), 3_000);
  hard.unref();
  try {
    await io.close();
  } catch {}
  await Promise.allSettled([pubClient.quit(), subClient.quit()]);
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
