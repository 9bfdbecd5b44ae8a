// Side by side: the same socket.io app (server.mjs) on two nodes joined
// through a redis-server of its own, with the official
// @socket.io/redis-adapter or Tidewire's createAdapter (and, with
// --engine tidewire, Tidewire's Engine). An emitter on node A sends
// `fanout` to a room whose members are all on node B, at a fixed rate;
// the figure is deliveries per CPU-second of both server processes
// (utime + stime from /proc), the way loadgen's cluster scenario counts
// them. Runs alternate between the kinds.
//
//   node benches/node/adapter-fanout.mjs [--receivers 100] [--rate 300]
//        [--seconds 5] [--rounds 2] [--engine stock|tidewire]
//
// Needs the addon built (`make binding-node`, or `npx napi build --release`
// in bindings-node for release figures) and bindings-node's node_modules.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const { io: ioc } = require("../../bindings-node/node_modules/socket.io-client");

const { values } = parseArgs({
  options: {
    receivers: { type: "string", default: "100" },
    rate: { type: "string", default: "300" },
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "2" },
    engine: { type: "string", default: "stock" },
  },
});
const RECEIVERS = Number(values.receivers);
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const SERVER = fileURLToPath(new URL("./server.mjs", import.meta.url));
const TICKS = 100; // /proc's clock ticks per second on Linux

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  for (;;) {
    const up = await new Promise((r) => {
      const s = tcpConnect(port, "127.0.0.1", () => (s.end(), r(true)));
      s.once("error", () => r(false));
    });
    if (up) break;
    await sleep(20);
  }
  return { url: `redis://127.0.0.1:${port}`, proc };
}

function startNode(redisUrl, adapter) {
  const proc = spawn(process.execPath, [SERVER, "--redis", redisUrl, "--adapter", adapter, "--engine", values.engine], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], proc });
    });
    proc.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
}

function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

async function connect(url) {
  const socket = ioc(url, { transports: ["websocket"], forceNew: true });
  await new Promise((r) => socket.once("connect", r));
  return socket;
}

async function run(redisUrl, adapter) {
  const [a, b] = [await startNode(redisUrl, adapter), await startNode(redisUrl, adapter)];
  const receivers = [];
  for (let i = 0; i < RECEIVERS; i++) receivers.push(await connect(b.url));
  await Promise.all(receivers.map((s) => s.emitWithAck("join", "room")));
  let delivered = 0;
  for (const s of receivers) s.on("fanout", () => delivered++);
  const emitter = await connect(a.url);
  await sleep(500);
  const payload = { text: "x".repeat(64), n: 0 };
  const cpu0 = cpuSeconds(a.proc.pid) + cpuSeconds(b.proc.pid);
  delivered = 0;
  const start = Date.now();
  let sent = 0;
  while (Date.now() - start < SECONDS * 1000) {
    const due = Math.floor(((Date.now() - start) / 1000) * RATE);
    while (sent < due) {
      payload.n = sent++;
      emitter.emit("fanout", "room", payload);
    }
    await sleep(5);
  }
  await sleep(500);
  const cpu = cpuSeconds(a.proc.pid) + cpuSeconds(b.proc.pid) - cpu0;
  const result = { adapter, sent, delivered, expected: sent * RECEIVERS, cpu, perCpuSecond: delivered / cpu };
  emitter.disconnect();
  for (const s of receivers) s.disconnect();
  a.proc.kill("SIGTERM");
  b.proc.kill("SIGTERM");
  await sleep(300);
  return result;
}

const redis = await startRedis();
const results = { official: [], tidewire: [] };
try {
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const adapter of round % 2 ? ["tidewire", "official"] : ["official", "tidewire"]) {
      const r = await run(redis.url, adapter);
      results[adapter].push(r.perCpuSecond);
      console.log(
        `${adapter.padEnd(8)} sent ${r.sent}, delivered ${r.delivered}/${r.expected}, servers' CPU ${r.cpu.toFixed(2)} s: ${Math.round(r.perCpuSecond)} deliveries per CPU-second`,
      );
    }
  }
} finally {
  redis.proc.kill("SIGKILL");
}
const best = (xs) => Math.max(...xs);
console.log(
  `best: official ${Math.round(best(results.official))}, tidewire ${Math.round(best(results.tidewire))} deliveries per CPU-second (${(best(results.tidewire) / best(results.official)).toFixed(2)}x), engine ${values.engine}`,
);
process.exit(0);
