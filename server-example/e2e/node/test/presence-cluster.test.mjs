// Presence of the chat app across two tidewire-server nodes joined over a
// redis-server of the test's own: a user with a tab on each node is one
// present user (one presence:join and one presence:leave for every member,
// wherever they are connected), the list is the same from both nodes, and
// when a node is killed its users leave within the lease.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startServer, signHs256, connect, emitAck, until } from "../lib/server.mjs";
import { startRedis } from "../lib/cluster.mjs";

const T = { timeout: 30_000 };
const SECRET = "e2e-presence-cluster-" + randomBytes(16).toString("hex");
const HEARTBEAT_MS = 200;
const token = (sub, name) => signHs256({ sub, name, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
const user = (url, sub, name) => connect(url, { token: token(sub, name) }).ready;
const byUser = (users) => [...users].sort((a, b) => (a.userId < b.userId ? -1 : 1));

describe("presence across two nodes (chat app over Redis)", () => {
  let redis;
  let nodes = [];
  before(async () => {
    redis = await startRedis();
    const args = ["--redis-url", redis.url, "--cluster-heartbeat-ms", String(HEARTBEAT_MS)];
    nodes = [
      await startServer(args, { chat: true, env: { JWT_SECRET: SECRET } }),
      await startServer(args, { chat: true, env: { JWT_SECRET: SECRET } }),
    ];
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    await redis?.stop();
  });

  test("one user with a tab on each node: one join, one list, one leave; a killed node's users leave", T, async () => {
    const room = `presence-cluster-${process.pid}`;
    const [a, b] = nodes;
    const watchers = [await user(a.url, "wendy", "Wendy"), await user(b.url, "walt", "Walt")];
    const events = watchers.map(() => []);
    watchers.forEach((w, i) => {
      for (const e of ["presence:join", "presence:leave"]) w.on(e, (p) => events[i].push([e, p.userId]));
    });
    const clients = [...watchers];
    try {
      for (const w of watchers) assert.deepEqual(await emitAck(w, "chat:join", room), { status: "ok" });
      // Wendy hears walt arrive from the other node (walt, arriving later, only himself).
      await until("walt's join heard on both nodes", () => events.every((ev) => ev.some(([, u]) => u === "walt")));
      const tab1 = await user(a.url, "ann", "Ann");
      const tab2 = await user(b.url, "ann", "Ann");
      clients.push(tab1, tab2);
      assert.deepEqual(await emitAck(tab1, "chat:join", room), { status: "ok" });
      assert.deepEqual(await emitAck(tab2, "chat:join", room), { status: "ok" });
      await until("ann's join on both nodes", () => events.every((ev) => ev.some(([e, u]) => e === "presence:join" && u === "ann")));

      // The same list from both nodes.
      const want = [
        { userId: "ann", connections: 2, name: "Ann" },
        { userId: "walt", connections: 1, name: "Walt" },
        { userId: "wendy", connections: 1, name: "Wendy" },
      ];
      for (const w of watchers) {
        await until("ann's second tab counted", async () => {
          const list = await emitAck(w, "presence:list", room);
          return list.users.find((u) => u.userId === "ann")?.connections === 2;
        });
        const list = await emitAck(w, "presence:list", room);
        assert.deepEqual(byUser(list.users), want);
      }

      // A message from one node reaches the room's members on the other.
      const got = [];
      watchers[1].on("chat:new_message", (m) => got.push(m.content));
      assert.equal((await emitAck(watchers[0], "chat:message", { roomId: room, content: "across" })).status, "ok");
      await until("the message on the other node", () => got.includes("across"));

      // Closing one tab changes nothing visible; the second makes one leave.
      tab1.disconnect();
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(events.every((ev) => !ev.some(([e]) => e === "presence:leave")), "no leave while a tab is open");
      tab2.disconnect();
      await until("ann's leave on both nodes", () => events.every((ev) => ev.some(([e, u]) => e === "presence:leave" && u === "ann")));
      for (const ev of events) {
        assert.deepEqual(ev.filter(([, u]) => u === "ann"), [["presence:join", "ann"], ["presence:leave", "ann"]]);
      }

      // Node b is killed (no goodbye): walt leaves for wendy within the lease.
      const killed = Date.now();
      b.proc.kill("SIGKILL");
      await until("walt's leave after b died", () => events[0].some(([e, u]) => e === "presence:leave" && u === "walt"));
      const took = Date.now() - killed;
      assert.ok(took < HEARTBEAT_MS * 3 + 2000, `within the lease (${took} ms)`);
      const list = await emitAck(watchers[0], "presence:list", room);
      assert.deepEqual(list.users, [{ userId: "wendy", connections: 1, name: "Wendy" }]);
    } finally {
      for (const s of clients) s.disconnect();
    }
  });
});
