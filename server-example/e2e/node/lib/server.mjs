// Spawns tidewire-server (path from TIDEWIRE_SERVER_BIN) on an ephemeral port
// and waits for its ready line. Helpers shared by the test files.
import { io } from "socket.io-client";
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const READY = /^tidewire-server listening on (http:\/\/127\.0\.0\.1:(\d+))$/;

/**
 * Start the server. By default in `--conformance` mode; with `{chat: true}`
 * the chat app (the default mode) instead. `env` is merged over the test
 * process's environment; in chat mode `JWT_SECRET`, `TIDEWIRE_CONFORMANCE`,
 * `TIDEWIRE_DATA_DIR` and `DATABASE_URL` are not inherited, so only `env`
 * decides whether a secret is set (none: a random development secret and
 * `GET /dev/token`, as on loopback) and where messages are kept (unset: a
 * data directory of the server's own, removed when it exits).
 */
export async function startServer(args = [], { chat = false, env = {} } = {}) {
  const bin = process.env.TIDEWIRE_SERVER_BIN;
  if (!bin) {
    throw new Error("TIDEWIRE_SERVER_BIN is not set (path to the tidewire-server binary)");
  }
  const childEnv = { ...process.env };
  let scratch = null;
  if (chat) {
    for (const name of ["JWT_SECRET", "TIDEWIRE_CONFORMANCE", "TIDEWIRE_DATA_DIR", "DATABASE_URL"]) {
      delete childEnv[name];
    }
    if (env.TIDEWIRE_DATA_DIR === undefined && env.DATABASE_URL === undefined) {
      scratch = mkdtempSync(join(tmpdir(), "tidewire-e2e-data-"));
      childEnv.TIDEWIRE_DATA_DIR = scratch;
    }
  }
  Object.assign(childEnv, env);
  const mode = chat ? [] : ["--conformance"];
  const removeScratch = () => scratch && rmSync(scratch, { recursive: true, force: true });
  let server;
  try {
    server = await spawnReady(bin, ["--port", "0", "--host", "127.0.0.1", ...mode, ...args], {
      env: childEnv,
      ready: READY,
      label: "tidewire-server",
    });
  } catch (err) {
    removeScratch();
    throw err;
  }
  server.proc.once("exit", removeScratch);
  return server;
}

/**
 * Spawns `command` and waits (30 s at most) for its first stdout line to
 * match `ready`, whose first group is the URL and second the port. Returns
 * `{url, proc, stderr(), stop()}`; `stop` sends SIGTERM (after SIGCONT, for a
 * process a test froze), then SIGKILL after 5 s.
 */
export async function spawnReady(command, args, { env = process.env, ready, label }) {
  const proc = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env });
  let stderr = "";
  proc.stderr.setEncoding("utf8");
  // TIDEWIRE_E2E_LOG_DIR: every process's whole stderr in a file of its own
  // (set RUST_LOG too), to read after a failure.
  const logDir = process.env.TIDEWIRE_E2E_LOG_DIR;
  const log = logDir ? createWriteStream(join(logDir, `${label}-${proc.pid}.log`)) : null;
  proc.stderr.on("data", (d) => {
    log?.write(d);
    if (stderr.length < 1 << 20) stderr += d;
  });

  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`no ready line from ${label} within 30 s; stderr:\n${stderr}`));
    }, 30_000);
    const lines = createInterface({ input: proc.stdout });
    lines.once("line", (line) => {
      clearTimeout(timer);
      const m = ready.exec(line);
      if (!m || Number(m[2]) === 0) {
        proc.kill("SIGKILL");
        reject(new Error(`unexpected ready line ${JSON.stringify(line)}`));
      } else {
        resolve(m[1]);
      }
      // keep draining stdout
      lines.on("line", () => {});
    });
    proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited early (${code ?? signal}); stderr:\n${stderr}`));
    });
    proc.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });

  return {
    url,
    proc,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGCONT");
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * A TCP proxy to `target` whose connections can all be cut at once, and
 * whose target can change (for the connections made after).
 */
export async function tcpProxy(target) {
  let upstream = new URL(target);
  const pairs = new Set();
  const server = createServer((down) => {
    const up = tcpConnect(Number(upstream.port), upstream.hostname);
    const pair = [down, up];
    pairs.add(pair);
    down.pipe(up).on("error", () => {});
    up.pipe(down).on("error", () => {});
    const drop = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on("close", drop).on("error", drop);
    up.on("close", drop).on("error", drop);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    retarget(url) {
      upstream = new URL(url);
    },
    cut() {
      for (const [down, up] of pairs) {
        down.destroy();
        up.destroy();
      }
      pairs.clear();
    },
    close() {
      this.cut();
      server.close();
    },
  };
}

export function within(ms, what, promise) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Wait for one event; resolves with its arguments as an array. */
export function once(emitter, event, ms = 5_000) {
  return within(
    ms,
    `event "${event}"`,
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
  );
}

/** Convert every ArrayBuffer / typed array in a value to a Buffer, for comparison. */
export function norm(v) {
  if (Buffer.isBuffer(v)) return Buffer.from(v);
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  }
  return v;
}

/** A compact HS256 JWT of `claims` signed with `secret` (node's crypto only). */
export function signHs256(claims, secret) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = createHmac("sha256", secret).update(input).digest("base64url");
  return `${input}.${sig}`;
}

/** Connect to `url` with `auth`; resolves with the socket or rejects with the connect_error. */
export function connect(url, auth, opts = {}) {
  const socket = io(url, { forceNew: true, reconnection: false, transports: ["websocket"], auth, ...opts });
  const ready = within(
    5_000,
    "connect",
    new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", (err) => {
        socket.disconnect();
        reject(err);
      });
    }),
  );
  return { socket, ready };
}

/** `emitWithAck` with a 5 s timeout. */
export function emitAck(socket, event, ...args) {
  return socket.timeout(5_000).emitWithAck(event, ...args);
}

/** Resolves once `cond()` (sync or async) is truthy, polling every 5 ms; fails after `ms`. */
export function until(what, cond, ms = 5_000) {
  return within(
    ms,
    what,
    (async () => {
      while (!(await cond())) await new Promise((r) => setTimeout(r, 5));
    })(),
  );
}
