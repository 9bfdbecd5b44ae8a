// Where the rooms of Tidewire's socket.io adapter should live: socket.io-
// adapter's JavaScript maps (a join is a Map update), or the core's room
// index (a join is a crossing into Rust plus the index update). Measures a
// join + leave of one socket in socket.io-adapter's in-memory Adapter
// against the bare napi crossing such a join would need at least (a call
// with the namespace and the room), with the addon built
// (`make binding-node`, or `napi build --release` in bindings-node).
//
//   node benches/node/adapter-rooms.mjs [N]
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Adapter } = require("../../bindings-node/node_modules/socket.io-adapter");
const native = require("../../bindings-node/index.js");

const N = Number(process.argv[2] || 1_000_000);
const nsp = { name: "/", server: { encoder: {} } };

function measure(label, fn) {
  for (let i = 0; i < N / 10; i++) fn(i); // warm up
  const start = process.hrtime.bigint();
  for (let i = 0; i < N; i++) fn(i);
  const ns = Number(process.hrtime.bigint() - start) / N;
  console.log(`${label}: ${ns.toFixed(1)} ns per join + leave`);
  return ns;
}

const adapter = new Adapter(nsp);
const rooms = Array.from({ length: 1024 }, (_, i) => `room-${i}`);
const js = measure("socket.io-adapter Map", (i) => {
  const room = rooms[i & 1023];
  adapter.addAll("sid", new Set([room]));
  adapter.del("sid", room);
});

// A link to a Redis nobody answers: the bus retries in the background,
// which these calls never wait for.
const link = new native.AdapterLink(
  { url: "redis://127.0.0.1:1", key: "bench", requestsTimeout: 1000, specificResponseChannel: false, redisCluster: false },
  () => {},
);
const crossing = measure("napi crossing (two calls, no work)", (i) => {
  const room = rooms[i & 1023];
  link.roomsChanged("/", [], []);
  link.roomsChanged(room, [], []);
});
console.log(`crossing / Map: ${(crossing / js).toFixed(2)}x`);
process.exit(0);
