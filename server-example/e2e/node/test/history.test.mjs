// socket.io-client 4.8.1 against the chat's message store: messages sent
// through one server process are in `chat:history` after the binary is
// stopped and started again on the same data directory (the default SQLite
// store), with the same ids, oldest first, paged back with `before`; and
// only members of a room may read it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, signHs256, connect, emitAck } from "../lib/server.mjs";

const T = { timeout: 30_000 };
const SECRET = "e2e-" + randomBytes(16).toString("hex");
const token = (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);

async function member(url, sub, room) {
  const { socket, ready } = connect(url, { token: token(sub) });
  await ready;
  assert.deepEqual(await emitAck(socket, "chat:join", room), { status: "ok" });
  return socket;
}

test("history survives a restart of the server on the same data directory", T, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "tidewire-e2e-history-"));
  const env = { JWT_SECRET: SECRET, TIDEWIRE_DATA_DIR: join(dataDir, "data") };
  let server;
  const sockets = [];
  try {
    server = await startServer([], { chat: true, env });
    const alice = await member(server.url, "alice", "general");
    sockets.push(alice);
    const sent = [];
    for (const content of ["one", "two", "three"]) {
      const ack = await emitAck(alice, "chat:message", { roomId: "general", content });
      assert.equal(ack.status, "ok", JSON.stringify(ack));
      sent.push(ack.data);
    }
    assert.deepEqual(await emitAck(alice, "chat:history", { roomId: "general" }), { status: "ok", data: sent });
    alice.disconnect();
    // SIGTERM: the server drains and closes its store, as in production.
    await server.stop();

    server = await startServer([], { chat: true, env });
    const bob = await member(server.url, "bob", "general");
    sockets.push(bob);
    assert.deepEqual(await emitAck(bob, "chat:history", { roomId: "general" }), { status: "ok", data: sent });
    const page = await emitAck(bob, "chat:history", { roomId: "general", before: sent[2].id, limit: 1 });
    assert.deepEqual(page, { status: "ok", data: [sent[1]] });
    const next = await emitAck(bob, "chat:message", { roomId: "general", content: "four" });
    assert.ok(BigInt(next.data.id) > BigInt(sent[2].id), `${next.data.id} after ${sent[2].id}`);

    // Members only.
    const { socket: carol, ready } = connect(server.url, { token: token("carol") });
    sockets.push(carol);
    await ready;
    const refused = await emitAck(carol, "chat:history", { roomId: "general" });
    assert.equal(refused.status, "error");
    assert.equal(refused.code, "forbidden");
    const bad = await emitAck(carol, "chat:history", { roomId: "general", limit: 500 });
    assert.equal(bad.code, "invalid_payload");
  } finally {
    for (const s of sockets) s.disconnect();
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
