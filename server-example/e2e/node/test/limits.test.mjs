// Production limits with socket.io-client 4.8.1: per-event rate limits and
// repeated-violation disconnects (chat:message, 10/s burst 20), JSON-schema
// validation of chat:message, connection caps per IP and per user, the
// handshake rate per IP, and the refusals' exact shapes (acks, CONNECT_ERROR,
// HTTP 429 with Retry-After). Each test also checks that everyone else keeps
// being served.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startServer, signHs256, connect, emitAck, once, until } from "../lib/server.mjs";

const T = { timeout: 30_000 };
const SECRET = "e2e-limits-" + randomBytes(16).toString("hex");
const token = (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
let uniq = 0;
const roomId = () => `limits-${process.pid}-${++uniq}`;

/** Connects with `auth`, retrying until a slot is free; every socket tried goes to `opened`. */
async function connectOnceFree(url, auth, opened) {
  let socket;
  await until("a free slot", async () => {
    const c = connect(url, auth);
    opened.push(c.socket);
    socket = await c.ready.catch(() => null);
    return socket !== null;
  });
  return socket;
}

function chatUser(url, sub) {
  return connect(url, { token: token(sub) }).ready;
}

describe("rate limits and payload validation (chat app)", () => {
  let server;
  before(async () => {
    server = await startServer(["--max-violations", "20"], { chat: true, env: { JWT_SECRET: SECRET } });
  });
  after(async () => {
    await server?.stop();
  });

  test("a flooding client is limited, then disconnected; others are unaffected", T, async () => {
    const room = roomId();
    const [flooder, bob, carol] = await Promise.all(["flooder", "bob", "carol"].map((u) => chatUser(server.url, u)));
    try {
      for (const s of [flooder, bob, carol]) assert.deepEqual(await emitAck(s, "chat:join", room), { status: "ok" });
      const carolGot = [];
      carol.on("chat:new_message", (m) => carolGot.push(m));
      const notice = once(flooder, "tidewire:disconnect", 10_000);
      const gone = once(flooder, "disconnect", 10_000);

      // 1,000 events/s for up to one second, each with an ack.
      const answers = [];
      for (let i = 0; i < 1000 && flooder.connected; i++) {
        const answer = emitAck(flooder, "chat:message", { roomId: room, content: `flood ${i}` });
        // An event still in flight when the server's DISCONNECT arrives was
        // never handled: the client rejects its ack (counted below, not an
        // unhandled rejection).
        answer.catch(() => {});
        answers.push(answer);
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 10));
      }
      // Meanwhile bob talks at a human pace: every message goes through.
      for (let i = 0; i < 5; i++) {
        const res = await emitAck(bob, "chat:message", { roomId: room, content: `bob ${i}` });
        assert.equal(res.status, "ok", JSON.stringify(res));
      }

      const [reason] = await notice;
      assert.deepEqual(reason, { code: "rate_limited", message: "too many rate-limit violations" });
      assert.equal((await gone)[0], "io server disconnect");
      const settled = await Promise.allSettled(answers);
      const acks = settled.filter((s) => s.status === "fulfilled").map((s) => s.value);
      const ok = acks.filter((a) => a.status === "ok");
      const limited = acks.filter((a) => a.code === "rate_limited");
      assert.ok(ok.length >= 20 && ok.length <= 25, `burst of 20 then ~10/s, got ${ok.length} ok`);
      assert.ok(limited.length >= 19, `refusals before the disconnect: ${limited.length}`);
      for (const r of limited) {
        assert.equal(r.status, "error");
        if (r.message === "too many rate-limit violations") {
          // Answered while the socket is being cut: no retry on this socket.
          assert.deepEqual(Object.keys(r).sort(), ["code", "message", "status"]);
          continue;
        }
        assert.deepEqual(Object.keys(r).sort(), ["code", "message", "retryAfterMs", "status"]);
        assert.equal(r.message, "rate limit exceeded");
        assert.ok(Number.isInteger(r.retryAfterMs) && r.retryAfterMs > 0 && r.retryAfterMs <= 100, r.retryAfterMs);
      }
      // Only accepted messages reached the room, bob's included, in order.
      await until("bob's last message", () => carolGot.some((m) => m.content === "bob 4"));
      const fromBob = carolGot.filter((m) => m.senderId === "bob").map((m) => m.content);
      assert.deepEqual(fromBob, ["bob 0", "bob 1", "bob 2", "bob 3", "bob 4"]);
      assert.equal(carolGot.filter((m) => m.senderId === "flooder").length, ok.length);
    } finally {
      for (const s of [flooder, bob, carol]) s.disconnect();
    }
  });

  test("chat:message is checked against its schema before the handler runs", T, async () => {
    const room = roomId();
    const [alice, bob] = await Promise.all(["alice", "bob"].map((u) => chatUser(server.url, u)));
    try {
      for (const s of [alice, bob]) assert.deepEqual(await emitAck(s, "chat:join", room), { status: "ok" });
      const bobGot = [];
      bob.on("chat:new_message", (m) => bobGot.push(m.content));
      const cases = [
        [{ roomId: room }, /content/],
        [{ roomId: 5, content: "x" }, /\/0\/roomId/],
        [{ roomId: room, content: "" }, /\/0\/content/],
        [{ roomId: room, content: "x".repeat(2001) }, /\/0\/content/],
        ["just a string", /object/],
      ];
      for (const [body, why] of cases) {
        const res = await emitAck(alice, "chat:message", body);
        assert.equal(res.status, "error");
        assert.equal(res.code, "invalid_payload", JSON.stringify(res));
        assert.match(res.message, why);
      }
      const extra = await emitAck(alice, "chat:message", { roomId: room, content: "a" }, "second argument");
      assert.equal(extra.code, "invalid_payload");
      const huge = await emitAck(alice, "chat:message", { roomId: room, content: "y".repeat(9000) });
      assert.deepEqual(huge, { status: "error", code: "payload_too_large", message: "event larger than 8512 bytes" });
      // A valid message still goes through, and is the only one bob sees.
      assert.equal((await emitAck(alice, "chat:message", { roomId: room, content: "valid" })).status, "ok");
      await until("bob's message", () => bobGot.length > 0);
      assert.deepEqual(bobGot, ["valid"]);
      assert.ok(alice.connected, "invalid payloads do not disconnect");
    } finally {
      alice.disconnect();
      bob.disconnect();
    }
  });
});

describe("metrics", () => {
  test("/metrics counts refusals, connections and presence (OpenMetrics text)", T, async () => {
    const server = await startServer([], { chat: true, env: { JWT_SECRET: SECRET } });
    const sockets = [];
    try {
      const read = async () => {
        const res = await fetch(server.url + "/metrics");
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type"), /^application\/openmetrics-text/);
        const values = {};
        for (const line of (await res.text()).split("\n")) {
          const m = /^(tidewire_\w+) (\d+)$/.exec(line);
          if (m) values[m[1]] = Number(m[2]);
        }
        return values;
      };
      const room = roomId();
      for (const u of ["m1", "m1", "m2"]) {
        const s = await chatUser(server.url, u);
        sockets.push(s);
        assert.deepEqual(await emitAck(s, "chat:join", room), { status: "ok" });
      }
      assert.equal((await emitAck(sockets[0], "chat:message", { roomId: room })).code, "invalid_payload");
      const m = await read();
      assert.equal(m.tidewire_connections, 3);
      assert.equal(m.tidewire_presence_users, 2);
      assert.equal(m.tidewire_presence_connections, 3);
      assert.equal(m.tidewire_invalid_payloads_total, 1);
      assert.ok(m.tidewire_handshakes_total >= 3);
      assert.ok(m.tidewire_events_in_total >= 4);
      assert.equal(m.tidewire_rate_limited_total, 0);
      assert.ok(m.tidewire_bytes_out_total > 0 && m.tidewire_packets_out_total >= 4);
    } finally {
      for (const s of sockets) s.disconnect();
      await server.stop();
    }
  });
});

describe("connection caps", () => {
  test("200 concurrent connections from one IP with a cap of 50: 50 served, the rest refused", T, async () => {
    const server = await startServer(["--max-conn-per-ip", "50", "--handshakes-per-ip", "off"]);
    const opened = [];
    try {
      const attempts = Array.from({ length: 200 }, () => {
        const c = connect(server.url, undefined);
        opened.push(c.socket);
        return c.ready;
      });
      const results = await Promise.allSettled(attempts);
      const served = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
      assert.equal(served.length, 50);
      for (const r of results.filter((r) => r.status === "rejected")) {
        assert.equal(r.reason.message, "websocket error");
      }
      // Polling handshakes see the refusal itself.
      const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
      assert.equal(res.status, 429);
      assert.deepEqual(await res.json(), { code: "too_many_connections", message: "too many connections from this address" });
      // The served clients still work, and a freed slot can be taken again.
      assert.equal(await emitAck(served[0], "echo", "still here"), "still here");
      served[1].disconnect();
      const again = await connectOnceFree(server.url, undefined, opened);
      assert.ok(again.connected);
      const health = await fetch(server.url + "/healthz");
      assert.equal(health.status, 200);
    } finally {
      for (const s of opened) s.disconnect();
      await server.stop();
    }
  });

  test("handshakes per IP are rate-limited with 429 and Retry-After", T, async () => {
    const server = await startServer(["--handshakes-per-ip", "5/m:5"]);
    try {
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
        assert.equal(res.status, 200);
        await res.text();
      }
      const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
      assert.equal(res.status, 429);
      assert.equal(res.headers.get("retry-after"), "12");
      assert.equal((await res.json()).code, "rate_limited");
    } finally {
      await server.stop();
    }
  });

  test("a user's connections are capped; a third tab gets CONNECT_ERROR", T, async () => {
    const server = await startServer(["--max-conn-per-user", "2"], { chat: true, env: { JWT_SECRET: SECRET } });
    const sockets = [];
    try {
      sockets.push(await chatUser(server.url, "dana"), await chatUser(server.url, "dana"));
      const third = connect(server.url, { token: token("dana") });
      sockets.push(third.socket);
      await assert.rejects(third.ready, (err) => {
        assert.equal(err.message, "too many connections for this user");
        assert.deepEqual(err.data, { code: "too_many_connections" });
        return true;
      });
      // Other users are not affected, and closing a tab frees a slot.
      sockets.push(await chatUser(server.url, "erin"));
      sockets[0].disconnect();
      await connectOnceFree(server.url, { token: token("dana") }, sockets);
    } finally {
      for (const s of sockets) s.disconnect();
      await server.stop();
    }
  });
});
