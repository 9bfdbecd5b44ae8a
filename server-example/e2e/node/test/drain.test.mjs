// Graceful shutdown (SIGTERM) with socket.io-client 4.8.1: new handshakes and
// /healthz get 503 at once, connected clients get `tidewire:drain` in
// batches (2 per 300 ms here) and are then closed ("transport close", so
// socket.io clients reconnect elsewhere), and the server exits by itself.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, within, until } from "../lib/server.mjs";

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
});
