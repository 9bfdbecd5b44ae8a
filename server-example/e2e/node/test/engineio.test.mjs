// engine.io-client 6.6 against tidewire-server's raw Engine.IO endpoint
// (/engine.io/): every message is echoed back unchanged, text and binary.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "engine.io-client";
import { startServer, within, once, norm } from "../lib/server.mjs";

const T = { timeout: 20_000 };

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const VARIANTS = [
  { name: "websocket only", opts: { transports: ["websocket"] }, final: "websocket" },
  { name: "polling only", opts: { transports: ["polling"] }, final: "polling" },
  { name: "polling with upgrade", opts: {}, final: "websocket" },
];

/** Collect the next `n` messages. */
function nextMessages(socket, n) {
  return within(
    10_000,
    `${n} messages`,
    new Promise((resolve) => {
      const got = [];
      const h = (m) => {
        got.push(m);
        if (got.length === n) {
          socket.off("message", h);
          resolve(got);
        }
      };
      socket.on("message", h);
    }),
  );
}

for (const variant of VARIANTS) {
  describe(`engine.io-client, ${variant.name}`, () => {
    let socket;
    before(async () => {
      socket = new Socket(server.url, { path: "/engine.io/", ...variant.opts });
      await once(socket, "open");
      if (variant.final === "websocket" && socket.transport.name !== "websocket") {
        await once(socket, "upgrade", 10_000);
      }
    });
    after(() => socket?.close());

    test("transport is as configured", T, () => {
      assert.equal(socket.transport.name, variant.final);
    });

    test("text messages are echoed", T, async () => {
      // (an empty message is left out: engine.io-parser decodes "4" as data undefined)
      const msgs = ["hello", "ünïcode 🚀", '{"not":"socket.io"}', "42[\"x\"]", "x".repeat(50_000)];
      const got = nextMessages(socket, msgs.length);
      for (const m of msgs) socket.send(m);
      const res = await got;
      assert.deepEqual(res.slice(0, 4), msgs.slice(0, 4));
      assert.ok(res[4] === msgs[4], `50 kB message echoed intact (got length ${res[4]?.length})`);
    });

    test("binary messages are echoed", T, async () => {
      const msgs = [Buffer.from([0, 1, 2, 255]), new Uint8Array([9, 8, 7]), Buffer.alloc(70_000, 3)];
      const got = nextMessages(socket, msgs.length);
      for (const m of msgs) socket.send(m);
      assert.deepEqual(norm(await got), norm(msgs));
    });

    test("mixed text and binary keep their order", T, async () => {
      const msgs = ["a", Buffer.from("b"), "c", Buffer.from([0xfe])];
      const got = nextMessages(socket, msgs.length);
      for (const m of msgs) socket.send(m);
      assert.deepEqual(norm(await got), norm(msgs));
    });
  });
}
