// Graceful shutdown (SIGTERM) with socket.io-client 4.8.1: new handshakes and
// /healthz get 503 at once, connected clients get `tidewire:drain` in
// batches (2 per 300 ms here) and are then closed ("transport close", so
// socket.io clients reconnect elsewhere), and the server exits by itself.
// Clients chatting through the drain get an answer for every message the
// server saved, before the notice, and the notice before the close.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startServer, connect, emitAck, signHs256, within, until } from "../lib/server.mjs";

const T = { timeout: 30_000 };

describe("graceful drain", () => {
  test("SIGTERM: refuse newcomers, tell clients in batches, close, exit", T, async () => {
    const server = await startServer(["--drain-batch-size", "2", "--drain-interval-ms", "300"]);
    const clients = await Promise.all(Array.from({ length: 6 }, () => connect(server.url).ready));
    const start = Date.now();
    const seen = clients.map((c) => {
      const record = { notice: null, at: null, reason: null };
      c.once("tidewire:drain", (n) => {
        record.notice = n;
        record.at = Date.now() - start;
      });
      c.once("disconnect", (reason) => {
        record.reason = reason;
      });
      return record;
    });
    const exited = new Promise((r) => server.proc.once("exit", (code, signal) => r({ code, signal })));
    server.proc.kill("SIGTERM");
    await within(5_000, "healthz 503", (async () => {
      for (;;) {
        const res = await fetch(server.url + "/healthz").catch(() => null);
        if (res?.status === 503) return;
        await new Promise((r) => setTimeout(r, 5));
      }
    })());
    const refused = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(refused.status, 503);
    assert.deepEqual(await refused.json(), { code: "server_shutting_down", message: "server shutting down" });

    assert.deepEqual(await within(15_000, "the server to exit", exited), { code: 0, signal: null });
    await until("every client to see the close", () => seen.every((r) => r.reason !== null));
    for (const r of seen) {
      assert.equal(r.notice?.reason, "server shutting down");
      assert.ok(Number.isInteger(r.notice.reconnectAfterMs) && r.notice.reconnectAfterMs < 5000);
      assert.equal(r.reason, "transport close");
    }
    // Three batches: the notices come in pairs, about 300 ms apart.
    const times = seen.map((r) => r.at).sort((a, b) => a - b);
    assert.ok(times[2] - times[1] >= 200 && times[4] - times[3] >= 200, `notice times ${times}`);
    assert.ok(times[1] - times[0] < 200 && times[3] - times[2] < 200 && times[5] - times[4] < 200, `${times}`);
  });

  test("chatting through the drain: every saved message answered, then the notice, then the close", T, async () => {
    const secret = "e2e-drain-" + randomBytes(16).toString("hex");
    const token = (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, secret);
    const server = await startServer(["--drain-batch-size", "1", "--drain-interval-ms", "300"], {
      chat: true,
      env: { JWT_SECRET: secret },
    });
    const room = `drain-${process.pid}`;
    const senders = await Promise.all(
      [["websocket"], ["polling"], ["websocket"]].map((transports, i) => connect(server.url, { token: token(`d${i}`) }, { transports }).ready),
    );
    for (const s of senders) assert.deepEqual(await emitAck(s, "chat:join", room), { status: "ok" });
    // What each client saw, in the order its packets arrived.
    const seen = senders.map(() => []);
    const received = senders.map(() => []);
    const oks = senders.map(() => new Set());
    const gone = senders.map(
      (s, i) =>
        new Promise((resolve) => {
          s.on("chat:new_message", (m) => received[i].push(m.content));
          s.once("tidewire:drain", () => seen[i].push("notice"));
          s.once("disconnect", (reason) => (seen[i].push(`disconnect:${reason}`), resolve()));
        }),
    );
    // Each sender posts every 60 ms (within the chat's 10/s) until it is cut.
    let n = 0;
    const sending = senders.map((s, i) =>
      (async () => {
        const pending = [];
        while (s.connected) {
          const content = `s${i}-${n++}`;
          pending.push(
            new Promise((resolve) =>
              s.timeout(10_000).emit("chat:message", { roomId: room, content }, (err, a) => {
                if (err) return resolve(err.message);
                seen[i].push(`answer:${a.status === "ok" ? "ok" : a.code}`);
                if (a.status === "ok") oks[i].add(content);
                resolve(a.status);
              }),
            ),
          );
          await new Promise((r) => setTimeout(r, 60));
        }
        return Promise.all(pending);
      })(),
    );
    await new Promise((r) => setTimeout(r, 300));
    const exited = new Promise((r) => server.proc.once("exit", (code) => r(code)));
    server.proc.kill("SIGTERM");
    assert.equal(await within(15_000, "the server to exit", exited), 0);
    await within(5_000, "every client to see the close", Promise.all(gone));
    const outcomes = await Promise.all(sending);
    const saved = new Set(oks.flatMap((o) => [...o]));
    for (let i = 0; i < senders.length; i++) {
      const kinds = seen[i];
      const notice = kinds.indexOf("notice");
      assert.ok(notice > 0, `client ${i} saw answers, then the notice: ${kinds.slice(-6)}`);
      assert.ok(kinds.lastIndexOf("answer:ok") < notice, `no saved message answered after the notice: ${kinds.slice(-6)}`);
      assert.deepEqual(kinds.slice(notice + 1).filter((k) => !k.startsWith("answer:")), ["disconnect:transport close"]);
      // Answered (saved or refused), or never handled (the client's own
      // "socket has been disconnected"): never a timeout.
      for (const o of outcomes[i]) assert.ok(["ok", "error"].includes(o) || /disconnected/.test(o), o);
      // Whatever reached the room was answered to its sender.
      for (const content of received[i]) assert.ok(saved.has(content), `${content} reached the room without its answer`);
    }
    assert.ok(saved.size >= senders.length * 3, `the clients chatted meanwhile (${saved.size} saved)`);
  });
});
