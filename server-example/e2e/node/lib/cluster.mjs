// Cluster helpers: a redis-server of the test's own, and socket.io nodes of
// two kinds on it, the official socket.io 4.8 + @socket.io/redis-adapter 8.x
// (lib/official-node.mjs) and tidewire-server (TIDEWIRE_SERVER_BIN).
import { spawn } from "node:child_process";
import { createServer, connect as netConnect } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, spawnReady, connect, emitAck, until } from "./server.mjs";

const OFFICIAL_NODE = fileURLToPath(new URL("./official-node.mjs", import.meta.url));
const OFFICIAL_READY = /^official-node listening on (http:\/\/127\.0\.0\.1:(\d+))$/;

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One PING over a raw socket; resolves true on `+PONG`. */
function ping(port) {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: "127.0.0.1" });
    let buf = "";
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once("error", () => done(false));
    s.once("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => {
      buf += d;
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
  });
}

/**
 * Starts a redis-server of its own on a free loopback port, without
 * persistence; resolves once it answers PING with `{url, port, stop()}`.
 */
/** A redis-server on a free loopback port, or on `port` (a restart). */
export async function startRedis({ port: wanted } = {}) {
  const port = wanted ?? (await freePort());
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  for (const s of [proc.stdout, proc.stderr]) {
    s.setEncoding("utf8");
    s.on("data", (d) => {
      if (log.length < 1 << 16) log += d;
    });
  }
  let exited = false;
  const exit = new Promise((resolve) =>
    proc.once("exit", (code, signal) => {
      exited = true;
      resolve(code ?? signal);
    }),
  );
  proc.once("error", (err) => {
    log += `\nspawn error: ${err.message}`;
  });
  const stop = async () => {
    if (exited) return;
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
    await exit;
    clearTimeout(t);
  };
  const deadline = Date.now() + 10_000;
  while (!(await ping(port))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not answer PING; output:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { url: `redis://127.0.0.1:${port}`, port, proc, stop };
}

/** Spawns lib/official-node.mjs and waits for its ready line; same shape as startServer. */
async function startOfficial({ redisUrl, prefix, name, requestsTimeoutMs, sharded }) {
  const args = [OFFICIAL_NODE, "--port", "0", "--redis-url", redisUrl, "--prefix", prefix, "--name", name];
  if (requestsTimeoutMs !== undefined) args.push("--requests-timeout", String(requestsTimeoutMs));
  if (sharded) args.push("--sharded");
  return spawnReady(process.execPath, args, { ready: OFFICIAL_READY, label: `official-node ${name}` });
}

let nodes = 0;

/**
 * Starts a cluster node of `kind` ("official" or "tidewire") on the Redis at
 * `redisUrl`. Resolves with `{url, proc, stop(), stderr(), kind, name}`.
 */
export async function startNode(kind, { redisUrl, prefix = "socket.io", name, requestsTimeoutMs, sharded = false } = {}) {
  if (!redisUrl) throw new Error("startNode: redisUrl is required");
  name ??= `${kind}-${process.pid}-${++nodes}`;
  let node;
  if (kind === "official") {
    node = await startOfficial({ redisUrl, prefix, name, requestsTimeoutMs, sharded });
  } else if (kind === "tidewire") {
    node = await startServer([
      "--redis-url",
      redisUrl,
      "--redis-prefix",
      prefix,
      "--node-name",
      name,
      "--request-timeout-ms",
      String(requestsTimeoutMs ?? 5000),
      ...(sharded ? ["--redis-sharded"] : []),
    ]);
  } else {
    throw new Error(`unknown node kind ${JSON.stringify(kind)}`);
  }
  return { ...node, kind, name };
}

/** Connects a client to `url` and polls `server-count` on `nsp` until it is `n`. */
export async function waitForServerCount(url, n, { nsp = "/", ms = 10_000 } = {}) {
  const { socket, ready } = connect(url + (nsp === "/" ? "" : nsp));
  try {
    await ready;
    let last;
    await until(
      `server-count ${n} at ${url}${nsp === "/" ? "" : nsp}`,
      async () => (last = await emitAck(socket, "server-count")) === n,
      ms,
    ).catch((err) => {
      err.message += ` (last: ${JSON.stringify(last)})`;
      throw err;
    });
  } finally {
    socket.disconnect();
  }
}

/**
 * An emitter of kind `"official"` (npm `@socket.io/redis-emitter` over
 * node-redis) or `"tidewire"` (the `tidewire-emit` binary next to
 * `TIDEWIRE_SERVER_BIN`), with one interface. A selection is
 * `{nsp = "/", rooms = [], except = []}`.
 */
export async function makeEmitter(kind, redisUrl, prefix = "socket.io") {
  if (kind === "official") {
    const { Emitter } = await import("@socket.io/redis-emitter");
    const { createClient } = await import("redis");
    const client = createClient({ url: redisUrl });
    await client.connect();
    const base = new Emitter(client, { key: prefix });
    const pick = ({ nsp = "/", rooms = [], except = [] } = {}) => {
      let op = base.of(nsp);
      if (rooms.length) op = op.to(rooms);
      if (except.length) op = op.except(except);
      return op;
    };
    return {
      kind,
      async emit(sel, event, ...args) {
        pick(sel).emit(event, ...args);
      },
      async join(sel, rooms) {
        pick(sel).socketsJoin(rooms);
      },
      async leave(sel, rooms) {
        pick(sel).socketsLeave(rooms);
      },
      async disconnect(sel, close = false) {
        pick(sel).disconnectSockets(close);
      },
      async serverSideEmit(sel, event, ...args) {
        base.of(sel?.nsp ?? "/").serverSideEmit(event, ...args);
      },
      async close() {
        await client.quit();
      },
    };
  }
  if (kind === "tidewire") {
    const bin = join(dirname(process.env.TIDEWIRE_SERVER_BIN), "tidewire-emit");
    const run = (sel = {}, ...command) =>
      new Promise((resolve, reject) => {
        const args = ["--redis-url", redisUrl, "--redis-prefix", prefix, "--nsp", sel.nsp ?? "/"];
        for (const r of sel.rooms ?? []) args.push("--to", r);
        for (const r of sel.except ?? []) args.push("--except", r);
        const proc = spawn(bin, [...args, ...command], { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        proc.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
        proc.once("error", reject);
        proc.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tidewire-emit exited ${code}: ${stderr}`))));
      });
    const json = (args) => args.map((a) => JSON.stringify(a));
    return {
      kind,
      emit: (sel, event, ...args) => run(sel, "emit", event, ...json(args)),
      join: (sel, rooms) => run(sel, "join", ...[rooms].flat()),
      leave: (sel, rooms) => run(sel, "leave", ...[rooms].flat()),
      disconnect: (sel, close = false) => run(sel, "disconnect", ...(close ? ["--close"] : [])),
      serverSideEmit: (sel, event, ...args) => run(sel, "server-side-emit", event, ...json(args)),
      async close() {},
    };
  }
  throw new Error(`unknown emitter kind ${JSON.stringify(kind)}`);
}
