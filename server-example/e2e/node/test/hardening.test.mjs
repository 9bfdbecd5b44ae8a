// socket.io-client against the chat app's hardening: tokens must expire
// unless --allow-tokens-without-exp.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, signHs256 } from "../lib/server.mjs";

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
