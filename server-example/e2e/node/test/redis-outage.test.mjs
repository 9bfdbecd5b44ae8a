// Short Redis outages between two chat nodes (issue 14, item 2), with
// socket.io-client 4.8.1 and a real redis-server killed (SIGKILL) and
// restarted on the same port: a member of a room on node A gets, in order,
// every message a sender on node B had acked `ok`, round after round.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startServer, signHs256, connect, emitAck, until } from "../lib/server.mjs";
import { startRedis } from "../lib/cluster.mjs";

const ROUNDS = 3;
const SECRET = "e2e-outage-" + randomBytes(16).toString("hex");
const token = (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function member(url, sub, room) {
  const { socket, ready } = connect(url, { token: token(sub) });
  await ready;
  assert.deepEqual(await emitAck(socket, "chat:join", room), { status: "ok" });
  return socket;
}

test("every message acked ok reaches a member on another node across short Redis outages", { timeout: 180_000 }, async () => {
  let redis = await startRedis();
  const { port } = redis;
  const nodes = [];
  const sockets = [];
  try {
    for (const name of ["a", "b"]) {
      nodes.push(
        await startServer(["--redis-url", redis.url, "--node-name", name, "--cluster-heartbeat-ms", "200"], {
          chat: true,
          env: { JWT_SECRET: SECRET },
        }),
      );
    }
    await sleep(500);
    const room = `outage-${process.pid}`;
    const listener = await member(nodes[0].url, "listener", room);
    const sender = await member(nodes[1].url, "sender", room);
    sockets.push(listener, sender);
    const received = [];
    listener.on("chat:new_message", (m) => received.push(m.content));
    for (let round = 0; round < ROUNDS; round++) {
      // 8 messages a second for 8 s; Redis killed 2.5 s in, back 1.5 s later.
      const acked = [];
      const answers = [];
      const sending = (async () => {
        for (let i = 0; i < 64; i++) {
          const content = `r${round}-m${i}`;
          answers.push(
            new Promise((resolve) =>
              sender.timeout(30_000).emit("chat:message", { roomId: room, content }, (err, a) => {
                if (!err && a.status === "ok") acked.push(content);
                resolve(err ? err.message : a.status === "ok" ? "ok" : a.code);
              }),
            ),
          );
          await sleep(125);
        }
      })();
      await sleep(2500);
      const died = new Promise((r) => redis.proc.once("exit", r));
      redis.proc.kill("SIGKILL");
      await died;
      await sleep(1500);
      redis = await startRedis({ port });
      await sending;
      const outcomes = await Promise.all(answers);
      assert.ok(acked.length >= 48, `round ${round}: most messages are taken (${JSON.stringify(outcomes)})`);
      const order = new Map(acked.map((c, i) => [c, i]));
      await until(
        `round ${round}: every acked message at the listener`,
        () => acked.every((c) => received.includes(c)),
        20_000,
      ).catch(() => {});
      const missing = acked.filter((c) => !received.includes(c));
      assert.deepEqual(missing, [], `round ${round}: acked ok, never delivered`);
      const mine = received.filter((c) => c.startsWith(`r${round}-`) && order.has(c));
      assert.deepEqual(mine, acked, `round ${round}: once each, in order`);
    }
  } finally {
    for (const s of sockets) s.disconnect();
    for (const n of nodes) await n.stop();
    await redis.stop();
  }
});
