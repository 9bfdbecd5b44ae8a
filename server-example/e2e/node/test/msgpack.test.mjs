// socket.io-client 4.8.1 with npm socket.io-msgpack-parser against
// `tidewire-server --parser msgpack`: every packet is one msgpack binary
// message; binary values travel inline as msgpack `bin`.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import parser from "socket.io-msgpack-parser";
import { startServer, within } from "../lib/server.mjs";

const T = { timeout: 20_000 };

let server;
before(async () => {
  server = await startServer(["--parser", "msgpack"]);
});
after(async () => {
  await server?.stop();
});

async function connected(opts, nsp = "/") {
  const socket = io(server.url + (nsp === "/" ? "" : nsp), { forceNew: true, reconnection: false, parser, ...opts });
  await within(5_000, "connect", new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }));
  return socket;
}

/** emit with an ack; resolves with all the ack's arguments. */
function ack(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(5_000).emit(event, ...args, (err, ...res) => (err ? reject(err) : resolve(res)));
  });
}

for (const [name, opts, final] of [
  ["websocket only", { transports: ["websocket"] }, "websocket"],
  ["polling only", { transports: ["polling"] }, "polling"],
  ["polling with upgrade", {}, "websocket"],
]) {
  describe(`msgpack parser, ${name}`, () => {
    test("echo with ack: text, numbers, nested binary", T, async () => {
      const socket = await connected(opts);
      try {
        const sent = { s: "héllo", n: 1.5, i: -7, big: 2 ** 40, nil: null, list: [true, false], bin: Buffer.from([0, 1, 254, 255]) };
        const [got, second] = await ack(socket, "echo", sent, Buffer.from("raw"));
        assert.deepEqual(got, sent);
        assert.deepEqual(Object.keys(got), Object.keys(sent), "keys come back in the order they were sent");
        assert.ok(Buffer.isBuffer(got.bin));
        assert.deepEqual(second, Buffer.from("raw"));
        if (final === "websocket" && socket.io.engine.transport.name !== "websocket") {
          await new Promise((r) => socket.io.engine.once("upgrade", r));
        }
        assert.equal(socket.io.engine.transport.name, final);
      } finally {
        socket.disconnect();
      }
    });

    test("echo without ack comes back as an event", T, async () => {
      const socket = await connected(opts);
      try {
        const got = new Promise((resolve) => socket.once("echo", (...args) => resolve(args)));
        socket.emit("echo", "a", Buffer.from([9]));
        const args = await within(5_000, "echo", got);
        assert.deepEqual(args, ["a", Buffer.from([9])]);
      } finally {
        socket.disconnect();
      }
    });

    test("server-to-client ack, namespaces and connect errors", T, async () => {
      const socket = await connected(opts);
      const chat = await connected(opts, "/chat");
      try {
        socket.on("question", (q, cb) => cb({ reply: q, data: Buffer.from([1, 2]) }));
        const answer = new Promise((resolve) => socket.once("answer", resolve));
        socket.emit("ask");
        assert.deepEqual(await within(5_000, "answer", answer), { reply: "ping?", data: Buffer.from([1, 2]) });

        const [who] = await ack(chat, "whoami");
        assert.equal(who.nsp, "/chat");
        assert.equal(who.id, chat.id);

        const bad = io(server.url + "/nope", { forceNew: true, reconnection: false, parser, ...opts });
        const err = await within(5_000, "connect_error", new Promise((r) => bad.once("connect_error", r)));
        assert.equal(err.message, "Invalid namespace");
        bad.disconnect();

        const refused = io(server.url, { forceNew: true, reconnection: false, parser, auth: { token: "bad" }, ...opts });
        const err2 = await within(5_000, "connect_error", new Promise((r) => refused.once("connect_error", r)));
        assert.equal(err2.message, "unauthorized");
        refused.disconnect();
      } finally {
        socket.disconnect();
        chat.disconnect();
      }
    });
  });
}
