// Behind any load balancer: nginx (Debian package) round-robin in front of
// three tidewire-server nodes on one Redis, no ip_hash, no sticky cookie.
// Every request of a client may land on any node: long-polling requests for
// a session another node owns are answered from the owner over the bus, and
// WebSocket upgrades are relayed to it. Rolling restarts (drain) and a node
// killed; per-IP limits that see clients once the proxy is trusted.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { Agent } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";
import { startServer, emitAck, within, until } from "../lib/server.mjs";
import { startRedis } from "../lib/cluster.mjs";
import { startNginx } from "../lib/balancer.mjs";

const T = { timeout: 120_000 };
const HERE = dirname(fileURLToPath(import.meta.url));
const PY_CLIENT = join(HERE, "..", "..", "lb", "chat_client.py");
const PYTHON = process.env.TIDEWIRE_PYTHON ?? join(HERE, "..", "..", "..", "..", ".venv", "bin", "python");

/** Three nodes on `redis` with `args`, and nginx in front. */
async function startCluster(redis, args = [], { workerConnections = 1024 } = {}) {
  const nodes = [];
  for (let i = 0; i < 3; i++) {
    nodes.push(
      await startServer([
        "--redis-url",
        redis.url,
        "--node-name",
        `n${i}`,
        "--cluster-heartbeat-ms",
        "200",
        "--request-timeout-ms",
        "1000",
        ...args,
      ]),
    );
  }
  // Every node knows the others (heartbeats) before clients come.
  await new Promise((r) => setTimeout(r, 600));
  const lb = await startNginx(
    nodes.map((n) => n.url),
    { workerConnections },
  );
  return {
    nodes,
    lb,
    async stop() {
      await lb.stop();
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

/** A client through the balancer; `record` collects `msg` events by sender. */
function client(url, opts = {}) {
  const socket = io(url, { forceNew: true, reconnection: false, ...opts });
  const got = new Map();
  socket.on("msg", (m) => {
    if (!got.has(m.from)) got.set(m.from, []);
    got.get(m.from).push(m.n);
  });
  const ready = within(
    10_000,
    "connect",
    new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", reject);
    }),
  );
  return { socket, got, ready };
}

/** Each client sends `count` numbered messages to room `chat`, in turn. */
async function chat(clients, count) {
  await Promise.all(
    clients.map(async (c, from) => {
      for (let n = 0; n < count; n++) {
        const reached = await emitAck(c.socket, "to", { rooms: ["chat"], event: "msg", args: [{ from, n }] });
        assert.equal(typeof reached, "number");
      }
    }),
  );
}

/** Every client got every other client's messages, in order. */
async function assertDeliveredInOrder(clients, count) {
  const expected = Array.from({ length: count }, (_, n) => n);
  await until(
    "every message delivered",
    () => clients.every((c, me) => clients.every((_, from) => from === me || c.got.get(from)?.length >= count)),
    20_000,
  ).catch(() => {});
  clients.forEach((c, me) =>
    clients.forEach((_, from) => {
      if (from !== me) assert.deepEqual(c.got.get(from), expected, `client ${me} from ${from}`);
    }),
  );
}

/** Session ids that the balancer sent to more than one node. */
function spreadSessions(lb) {
  const upstreams = new Map();
  for (const line of lb.accessLog()) {
    if (line.sid === "-" || !line.sid) continue;
    if (!upstreams.has(line.sid)) upstreams.set(line.sid, new Set());
    upstreams.get(line.sid).add(line.upstream);
  }
  return [...upstreams.values()].filter((s) => s.size > 1).length;
}

describe("behind a round-robin balancer", () => {
  let redis;
  let cluster;
  before(async () => {
    redis = await startRedis();
    cluster = await startCluster(redis);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
  });

  for (const [name, transports] of [
    ["polling only", ["polling"]],
    ["polling then upgrade", ["polling", "websocket"]],
  ]) {
    test(`socket.io-client, ${name}: chat across nodes, every message in order`, T, async () => {
      const clients = Array.from({ length: 6 }, () => client(cluster.lb.url, { transports }));
      await Promise.all(clients.map((c) => c.ready));
      if (transports.length === 2) {
        // Every client upgrades, whichever node its WebSocket reached.
        await until("every upgrade", () => clients.every((c) => c.socket.io.engine.transport.name === "websocket"), 10_000);
      }
      for (const c of clients) assert.deepEqual(await emitAck(c.socket, "join", ["chat"]), ["chat", c.socket.id].sort());
      const owners = new Set(await Promise.all(clients.map(async (c) => (await emitAck(c.socket, "whoami")).node)));
      assert.ok(owners.size >= 2, `sessions on several nodes: ${[...owners]}`);
      await chat(clients, 25);
      await assertDeliveredInOrder(clients, 25);
      assert.ok(spreadSessions(cluster.lb) >= 3, "requests of one session went to several nodes");
      for (const c of clients) c.socket.disconnect();
    });
  }

  test("python-socketio, polling only and polling then upgrade, chats across nodes", T, async () => {
    assert.ok(existsSync(PYTHON), `python with python-socketio at ${PYTHON} (make python-deps, or TIDEWIRE_PYTHON)`);
    const count = 20;
    const run = (id, transports) => {
      const proc = spawn(PYTHON, [PY_CLIENT, cluster.lb.url, String(id), String(count), transports], {
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stderr = "";
      proc.stderr.on("data", (d) => (stderr += d));
      // Lines are queued as they come: none is missed between two reads.
      const queued = [];
      let waiting = null;
      createInterface({ input: proc.stdout }).on("line", (line) => (waiting ? (waiting(line), (waiting = null)) : queued.push(line)));
      const line = () => (queued.length ? Promise.resolve(queued.shift()) : new Promise((r) => (waiting = r)));
      const next = (stage) =>
        within(30_000, `python client ${id} (${stage})`, line()).catch((e) => {
          throw new Error(`${e.message}; its stderr:\n${stderr}`);
        });
      return { proc, next };
    };
    const py = [run(0, "polling"), run(1, "polling,websocket"), run(2, "polling"), run(3, "polling,websocket")];
    for (const p of py) assert.equal(await p.next("ready"), "ready");
    for (const p of py) p.proc.stdin.write("go\n");
    const results = await Promise.all(py.map(async (p) => JSON.parse(await p.next("result"))));
    const expected = Array.from({ length: count }, (_, n) => n);
    results.forEach((r, me) => {
      for (const from of [0, 1, 2, 3].filter((f) => f !== me)) {
        assert.deepEqual(r.got[from], expected, `python client ${me} from ${from}`);
      }
    });
    assert.deepEqual(
      results.map((r) => r.transport),
      ["polling", "websocket", "polling", "websocket"],
    );
    for (const p of py) p.proc.stdin.end();
  });
});

describe("rolling restarts and failures behind the balancer", () => {
  test("a node drained and stopped under traffic: its clients resume elsewhere", T, async () => {
    const redis = await startRedis();
    const cluster = await startCluster(redis, [
      "--recovery-ms",
      "30000",
      "--drain-batch-size",
      "3",
      "--drain-interval-ms",
      "100",
      "--ping-interval-ms",
      "2000",
    ]);
    try {
      const opts = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500 };
      // The producer talks to a node that stays; the listeners go through
      // the balancer, some of them owned by the node that drains.
      const producer = client(cluster.nodes[0].url, { transports: ["websocket"] });
      await producer.ready;
      await emitAck(producer.socket, "join", ["chat"]);
      const listeners = Array.from({ length: 12 }, (_, i) =>
        client(cluster.lb.url, { ...opts, transports: i % 2 ? ["polling"] : ["polling", "websocket"] }),
      );
      await Promise.all(listeners.map((l) => l.ready));
      for (const l of listeners) await emitAck(l.socket, "join", ["chat"]);
      const owners = await Promise.all(listeners.map(async (l) => (await emitAck(l.socket, "whoami")).node));
      const moved = listeners.filter((_, i) => owners[i] === "n2");
      assert.ok(moved.length >= 1, `some listeners on the drained node: ${owners}`);
      const recoveredOnReconnect = [];
      for (const l of moved) l.socket.on("connect", () => recoveredOnReconnect.push(l.socket.recovered));

      const total = 150;
      const exited = new Promise((r) => cluster.nodes[2].proc.once("exit", (code) => r(code)));
      const sending = (async () => {
        for (let n = 0; n < total; n++) {
          await emitAck(producer.socket, "to", { rooms: ["chat"], event: "msg", args: [{ from: "p", n }] });
          await new Promise((r) => setTimeout(r, 15));
          if (n === 30) cluster.nodes[2].proc.kill("SIGTERM");
        }
      })();
      await sending;
      assert.equal(await within(30_000, "the drained node to exit", exited), 0);
      const expected = Array.from({ length: total }, (_, n) => n);
      await until("every message delivered", () => listeners.every((l) => (l.got.get("p")?.length ?? 0) >= total), 20_000).catch(
        () => {},
      );
      const states = listeners.map((l, i) => `${i}:${owners[i]}:${l.socket.connected}:${l.socket.recovered}:${l.got.get("p")?.length}`);
      // The clients of the other nodes lost nothing, whichever node their
      // requests went through (the drained one included).
      listeners.forEach((l, i) => {
        if (owners[i] !== "n2") assert.deepEqual(l.got.get("p"), expected, `listener ${i} (on ${owners[i]}); ${states}`);
      });
      // (A client may reconnect twice: its new session's WebSocket relayed
      // through the drained node while that node hands off, then closed.)
      assert.ok(recoveredOnReconnect.length >= moved.length, `every client of the drained node reconnected: ${states}`);
      assert.ok(recoveredOnReconnect.every(Boolean), `sessions resumed: ${recoveredOnReconnect}`);
      for (const l of moved) assert.notEqual((await emitAck(l.socket, "whoami")).node, "n2");
      // The moved clients: in order, no duplicate, everything before the
      // drain and everything once back.
      for (const l of moved) {
        const got = l.got.get("p");
        assert.deepEqual(got, [...new Set(got)].sort((a, b) => a - b), "in order, once each");
        assert.deepEqual(got.slice(0, 31), expected.slice(0, 31));
        assert.equal(got.at(-1), total - 1);
      }
      // Nothing falls between the drained node and the one a client comes
      // back to (the hand-off of cluster::recovery).
      for (const l of moved) assert.deepEqual(l.got.get("p"), expected, "the moved clients lost nothing");
      producer.socket.disconnect();
      for (const l of listeners) l.socket.disconnect();
    } finally {
      await cluster.stop();
      await redis.stop();
    }
  });

  test("a node killed: its clients reconnect elsewhere", T, async () => {
    const redis = await startRedis();
    const cluster = await startCluster(redis, ["--ping-interval-ms", "1000", "--ping-timeout-ms", "1000"]);
    try {
      const opts = { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500 };
      const clients = Array.from({ length: 9 }, (_, i) =>
        client(cluster.lb.url, { ...opts, transports: i % 2 ? ["polling"] : ["polling", "websocket"] }),
      );
      await Promise.all(clients.map((c) => c.ready));
      const owners = await Promise.all(clients.map(async (c) => (await emitAck(c.socket, "whoami")).node));
      const victims = clients.filter((_, i) => owners[i] === "n1");
      assert.ok(victims.length >= 1, `${owners}`);
      const reconnected = victims.map((v) => new Promise((r) => v.socket.io.once("reconnect", r)));
      cluster.nodes[1].proc.kill("SIGKILL");
      await within(20_000, "the clients of the killed node to reconnect", Promise.all(reconnected));
      for (const v of victims) {
        await until("connected", () => v.socket.connected, 10_000);
        assert.notEqual((await emitAck(v.socket, "whoami")).node, "n1");
      }
      // And everyone chats again.
      for (const c of clients) await emitAck(c.socket, "join", ["chat"]);
      await chat(clients, 5);
      await assertDeliveredInOrder(clients, 5);
      for (const c of clients) c.socket.disconnect();
    } finally {
      await cluster.stop();
      await redis.stop();
    }
  });
});

describe("per-IP limits behind the balancer", () => {
  const N = 2000;
  const limits = ["--max-conn-per-ip", "1000", "--handshakes-per-ip", "50/s:100"];

  /** Connects N clients from 100 loopback addresses; counts the refused. */
  async function connectMany(url) {
    const agents = Array.from({ length: 100 }, (_, i) => new Agent({ localAddress: `127.0.0.${i + 2}` }));
    const sockets = [];
    const outcomes = await Promise.all(
      Array.from({ length: N }, (_, i) => {
        const socket = io(url, { forceNew: true, reconnection: false, transports: ["websocket"], agent: agents[i % 100] });
        sockets.push(socket);
        return new Promise((resolve) => {
          const t = setTimeout(() => resolve("timeout"), 60_000);
          socket.once("connect", () => (clearTimeout(t), resolve("ok")));
          socket.once("connect_error", () => (clearTimeout(t), resolve("refused")));
        });
      }),
    );
    for (const s of sockets) s.disconnect();
    for (const a of agents) a.destroy();
    return { ok: outcomes.filter((o) => o === "ok").length, refused: outcomes.filter((o) => o === "refused").length };
  }

  test("2,000 clients are not refused once the proxy is trusted", T, async () => {
    const redis = await startRedis();
    const cluster = await startCluster(redis, [...limits, "--trusted-proxies", "1"], { workerConnections: 8192 });
    try {
      const { ok, refused } = await connectMany(cluster.lb.url);
      assert.deepEqual({ ok, refused }, { ok: N, refused: 0 });
    } finally {
      await cluster.stop();
      await redis.stop();
    }
  });

  test("untrusted, they are refused as one address, and the server says why in its log", T, async () => {
    const redis = await startRedis();
    const cluster = await startCluster(redis, limits, { workerConnections: 8192 });
    try {
      const { ok, refused } = await connectMany(cluster.lb.url);
      assert.ok(refused > N / 2, `most refused as the balancer's one address: ${ok} ok, ${refused} refused`);
      const warned = cluster.nodes.map((n) => n.stderr().split("X-Forwarded-For but no proxy is trusted").length - 1);
      assert.ok(warned.every((w) => w === 1), `one warning per node (rate-limited): ${warned}`);
    } finally {
      await cluster.stop();
      await redis.stop();
    }
  });
});
