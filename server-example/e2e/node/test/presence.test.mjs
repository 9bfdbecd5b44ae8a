// Presence in the chat app with socket.io-client 4.8.1: a user with two tabs
// is one present user (one presence:join, one presence:leave after the second
// tab closes), presence:list for members only, other users unaffected.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startServer, signHs256, connect, emitAck, until } from "../lib/server.mjs";

const T = { timeout: 20_000 };
const SECRET = "e2e-presence-" + randomBytes(16).toString("hex");
const token = (sub, name) => signHs256({ sub, name, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
const user = (url, sub, name) => connect(url, { token: token(sub, name) }).ready;

describe("presence (chat app)", () => {
  let server;
  before(async () => {
    server = await startServer([], { chat: true, env: { JWT_SECRET: SECRET } });
  });
  after(async () => {
    await server?.stop();
  });

  test("two tabs of one user: one join, one leave after both close", T, async () => {
    const room = `presence-${process.pid}`;
    const watcher = await user(server.url, "wendy", "Wendy");
    const events = [];
    for (const e of ["presence:join", "presence:leave", "presence:update"]) watcher.on(e, (p) => events.push([e, p]));
    const [tab1, tab2] = [await user(server.url, "ann", "Ann"), await user(server.url, "ann", "Ann")];
    try {
      assert.deepEqual(await emitAck(watcher, "chat:join", room), { status: "ok" });
      assert.deepEqual(await emitAck(tab1, "chat:join", room), { status: "ok" });
      assert.deepEqual(await emitAck(tab2, "chat:join", room), { status: "ok" });
      await until("ann's join", () => events.some(([e, p]) => e === "presence:join" && p.userId === "ann"));

      const list = await emitAck(watcher, "presence:list", room);
      assert.deepEqual(list, {
        status: "ok",
        roomId: room,
        users: [
          { userId: "wendy", connections: 1, name: "Wendy" },
          { userId: "ann", connections: 2, name: "Ann" },
        ],
      });
      const outsider = await user(server.url, "eve", "Eve");
      const refused = await emitAck(outsider, "presence:list", room);
      assert.equal(refused.code, "forbidden");
      outsider.disconnect();

      tab1.disconnect();
      // Still present with one tab: the list says so, and no leave is sent.
      for (;;) {
        const now = await emitAck(watcher, "presence:list", room);
        const ann = now.users.find((u) => u.userId === "ann");
        assert.ok(ann, "ann stays present while a tab is open");
        if (ann.connections === 1) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      tab2.disconnect();
      await until("ann's leave", () => events.some(([e]) => e === "presence:leave"));
      assert.deepEqual(events, [
        ["presence:join", { roomId: room, userId: "wendy", name: "Wendy" }],
        ["presence:join", { roomId: room, userId: "ann", name: "Ann" }],
        ["presence:leave", { roomId: room, userId: "ann" }],
      ]);
      const last = await emitAck(watcher, "presence:list", room);
      assert.deepEqual(last.users, [{ userId: "wendy", connections: 1, name: "Wendy" }]);
    } finally {
      for (const s of [watcher, tab1, tab2]) s.disconnect();
    }
  });
});
