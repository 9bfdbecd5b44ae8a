// socket.io-client against the chat app's hardening: tokens must expire
// unless --allow-tokens-without-exp; one user may start only so many rooms
// in the message store.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, emitAck, signHs256 } from "../lib/server.mjs";

const T = { timeout: 20_000 };
const SECRET = "hardening-secret";

/** The connect_error message for `auth`, or "connected". */
async function attempt(url, auth) {
  const { socket, ready } = connect(url, auth);
  try {
    await ready;
    return "connected";
  } catch (err) {
    return err.message;
  } finally {
    socket.disconnect();
  }
}

describe("tokens without exp", () => {
  const servers = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  test("are refused by default, accepted with --allow-tokens-without-exp", T, async () => {
    const strict = await startServer([], { chat: true, env: { JWT_SECRET: SECRET } });
    servers.push(strict);
    const relaxed = await startServer(["--allow-tokens-without-exp"], { chat: true, env: { JWT_SECRET: SECRET } });
    servers.push(relaxed);
    const token = signHs256({ sub: "bob" }, SECRET);
    assert.equal(await attempt(strict.url, { token }), "invalid token: no exp claim (tokens must expire)");
    assert.equal(await attempt(relaxed.url, { token }), "connected");
    const expiring = signHs256({ sub: "bob", exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
    assert.equal(await attempt(strict.url, { token: expiring }), "connected");
  });
});

describe("rooms started per user", () => {
  let server;
  after(async () => {
    await server?.stop();
  });

  test("past --store-rooms-per-user a new room is acked too_many_rooms", T, async () => {
    server = await startServer(["--store-rooms-per-user", "2"], { chat: true, env: { JWT_SECRET: SECRET } });
    const exp = Math.floor(Date.now() / 1000) + 600;
    const sockets = [];
    const as = async (sub) => {
      const { socket, ready } = connect(server.url, { token: signHs256({ sub, exp }, SECRET) });
      sockets.push(socket);
      return ready;
    };
    const say = async (socket, roomId) => {
      assert.deepEqual(await emitAck(socket, "chat:join", roomId), { status: "ok" });
      return emitAck(socket, "chat:message", { roomId, content: `hi ${roomId}` });
    };
    try {
      const mallory = await as("mallory");
      assert.equal((await say(mallory, "m1")).status, "ok");
      assert.equal((await say(mallory, "m2")).status, "ok");
      const refused = await say(mallory, "m3");
      assert.equal(refused.status, "error");
      assert.equal(refused.code, "too_many_rooms");
      assert.match(refused.message, /2 rooms/);
      assert.equal((await say(mallory, "m1")).status, "ok", "her rooms stay usable");
      const alice = await as("alice");
      assert.equal((await say(alice, "m3")).status, "ok", "alice starts her own");
      assert.equal((await say(mallory, "m3")).status, "ok", "a room with history is open to all");
    } finally {
      sockets.forEach((s) => s.disconnect());
    }
  });
});
