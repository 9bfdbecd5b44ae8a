// Connection-state recovery never gives back what the client lost the right
// to (issue 15), with socket.io-client 4.8.1 against the chat app:
// - a user who joined a staff room and reconnects with a token without the
//   role gets their session back (same id) but not the staff room, and
//   cannot join another one;
// - another user presenting the victim's pid gets a new session, and the
//   victim still recovers theirs afterwards.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { io } from "socket.io-client";
import { startServer, signHs256, connect, emitAck, once, until, tcpProxy } from "../lib/server.mjs";

const T = { timeout: 30_000 };
const SECRET = "e2e-recovery-security-" + randomBytes(16).toString("hex");
const token = (sub, role) => signHs256({ sub, role, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);

/** A client through `url` that reconnects by itself after 100 ms. */
async function reconnecting(url, auth) {
  const socket = io(url, {
    forceNew: true,
    transports: ["websocket"],
    auth,
    reconnectionDelay: 100,
    reconnectionDelayMax: 100,
    randomizationFactor: 0,
  });
  await once(socket, "connect");
  return socket;
}

describe("recovery and authorization (chat app)", () => {
  let server;
  before(async () => {
    server = await startServer(["--recovery-ms", "60000"], { chat: true, env: { JWT_SECRET: SECRET } });
  });
  after(async () => {
    await server?.stop();
  });

  test("a recovered session does not keep a room whose right is gone", T, async () => {
    const p = await tcpProxy(server.url);
    const client = await reconnecting(p.url, { token: token("sam", "staff") });
    const colleague = await connect(server.url, { token: token("kim", "staff") }).ready;
    try {
      for (const room of ["staff-ops", "general"]) {
        assert.deepEqual(await emitAck(client, "chat:join", room), { status: "ok" });
        assert.deepEqual(await emitAck(colleague, "chat:join", room), { status: "ok" });
      }
      const id = client.id;
      // The role is withdrawn: the next connection presents a token without it.
      client.auth = { token: token("sam") };
      p.cut();
      await once(client, "connect", 10_000);
      assert.equal(client.recovered, true, "the session itself comes back");
      assert.equal(client.id, id);
      // Still in the room it may be in...
      assert.equal((await emitAck(client, "chat:message", { roomId: "general", content: "back" })).status, "ok");
      // ...but not in the staff room, and no new staff room either.
      const posted = await emitAck(client, "chat:message", { roomId: "staff-ops", content: "still here?" });
      assert.equal(posted.status, "error", JSON.stringify(posted));
      assert.match(posted.message, /join staff-ops/);
      const joined = await emitAck(client, "chat:join", "staff-secret");
      assert.equal(joined.status, "error", JSON.stringify(joined));
    } finally {
      client.disconnect();
      colleague.disconnect();
      p.close();
    }
  });

  test("another user's pid gets a new session and leaves the owner's", T, async () => {
    const p = await tcpProxy(server.url);
    const victim = await reconnecting(p.url, { token: token("vic") });
    try {
      assert.deepEqual(await emitAck(victim, "chat:join", "lobby"), { status: "ok" });
      const { _pid: pid, id } = victim;
      assert.ok(pid, "the server gave a pid");
      // The victim cannot reconnect for a while.
      victim.io.opts.reconnectionDelay = victim.io.opts.reconnectionDelayMax = 1500;
      victim.io.reconnectionDelay(1500);
      victim.io.reconnectionDelayMax(1500);
      p.cut();
      await until("the server to drop the victim", async () => {
        const probe = await connect(server.url, { token: token("probe") }).ready;
        probe.disconnect();
        return true;
      });
      await new Promise((r) => setTimeout(r, 200));
      const thief = await connect(server.url, { token: token("mallory"), pid }).ready;
      try {
        assert.notEqual(thief.id, id);
        assert.equal(thief.recovered, false);
        const stolen = await emitAck(thief, "chat:message", { roomId: "lobby", content: "hi" });
        assert.equal(stolen.status, "error", "not in the victim's rooms");
      } finally {
        thief.disconnect();
      }
      await once(victim, "connect", 10_000);
      assert.equal(victim.recovered, true, "the owner still recovers");
      assert.equal(victim.id, id);
      assert.equal((await emitAck(victim, "chat:message", { roomId: "lobby", content: "mine" })).status, "ok");
    } finally {
      victim.disconnect();
      p.close();
    }
  });
});
