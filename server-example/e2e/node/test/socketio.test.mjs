// socket.io-client 4.8.1 against tidewire-server: WebSocket only, polling
// only, and polling with upgrade; text and binary events both ways; acks both
// ways; namespaces multiplexed on one Manager; connect errors.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io, Manager } from "socket.io-client";
import { startServer, within, once, norm } from "../lib/server.mjs";

const T = { timeout: 20_000 };

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** emit with an ack; resolves with all the ack's arguments. */
function ack(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(5_000).emit(event, ...args, (err, ...res) => (err ? reject(err) : resolve(res)));
  });
}

function connectSocket(opts, nsp = "/") {
  const socket = io(server.url + (nsp === "/" ? "" : nsp), {
    forceNew: true,
    reconnection: false,
    ...opts,
  });
  return socket;
}

async function connected(opts, nsp = "/") {
  const socket = connectSocket(opts, nsp);
  await within(5_000, "connect", new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  }));
  return socket;
}

/** Wait until the engine runs on WebSocket (after the upgrade). */
async function upgraded(socket) {
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") {
    await once(engine, "upgrade", 10_000);
  }
  assert.equal(socket.io.engine.transport.name, "websocket");
}

const VARIANTS = [
  { name: "websocket only", opts: { transports: ["websocket"] }, final: "websocket" },
  { name: "polling only", opts: { transports: ["polling"] }, final: "polling" },
  { name: "polling with upgrade", opts: {}, final: "websocket" },
];

for (const variant of VARIANTS) {
  describe(`socket.io-client, ${variant.name}`, () => {
    let socket;
    before(async () => {
      socket = await connected({ ...variant.opts, auth: { token: "t-" + variant.name } });
      if (variant.final === "websocket") await upgraded(socket);
    });
    after(() => socket?.disconnect());

    test("transport is as configured", T, () => {
      assert.equal(socket.io.engine.transport.name, variant.final);
      assert.ok(socket.connected);
      assert.equal(typeof socket.id, "string");
    });

    test("echo with ack returns exactly the args (text)", T, async () => {
      const args = ["a", 1, -2.5, true, null, { b: [1, { c: "ü😀\"\\" }] }, [], {}];
      assert.deepEqual(await ack(socket, "echo", ...args), args);
      assert.deepEqual(await ack(socket, "echo"), []);
    });

    test("echo without ack emits echo back (text)", T, async () => {
      const got = once(socket, "echo");
      socket.emit("echo", "x", { y: [2] });
      assert.deepEqual(await got, ["x", { y: [2] }]);
    });

    test("echo with ack returns binary (Buffer, Uint8Array, nested)", T, async () => {
      const big = Buffer.alloc(100_000, 7);
      const sent = [
        Buffer.from([0, 1, 2, 255]),
        new Uint8Array([4, 5, 6]),
        { nested: [Buffer.from("héllo"), { deep: new Uint8Array([9]) }], n: 1 },
        "text too",
        big,
        Buffer.alloc(0),
      ];
      const res = await ack(socket, "echo", ...sent);
      assert.deepEqual(norm(res), norm(sent));
    });

    test("echo without ack emits binary back", T, async () => {
      const got = once(socket, "echo");
      socket.emit("echo", { file: new Uint8Array([1, 2, 3]) }, Buffer.from([0xff]));
      assert.deepEqual(norm(await got), [{ file: Buffer.from([1, 2, 3]) }, Buffer.from([0xff])]);
    });

    test("whoami returns id, namespace and auth", T, async () => {
      const [me] = await ack(socket, "whoami");
      assert.deepEqual(me, { id: socket.id, nsp: "/", auth: { token: "t-" + variant.name } });
    });

    test("ask: server-to-client ack, then answer", T, async () => {
      socket.once("question", (q, cb) => {
        assert.equal(q, "ping?");
        cb({ pong: variant.name, bin: Buffer.from([1, 2]) });
      });
      const answer = once(socket, "answer");
      socket.emit("ask");
      assert.deepEqual(norm(await answer), [{ pong: variant.name, bin: Buffer.from([1, 2]) }]);
    });

    test("many events in a burst keep their order", T, async () => {
      const n = 200;
      const got = [];
      const done = new Promise((resolve) => {
        const h = (i) => {
          got.push(i);
          if (got.length === n) {
            socket.off("echo", h);
            resolve();
          }
        };
        socket.on("echo", h);
      });
      for (let i = 0; i < n; i++) socket.emit("echo", i);
      await within(10_000, "200 echoes", done);
      assert.deepEqual(got, [...Array(n).keys()]);
    });
  });

  describe(`namespaces, ${variant.name}`, () => {
    test("/ and /chat multiplexed on one Manager", T, async () => {
      const manager = new Manager(server.url, { reconnection: false, ...variant.opts });
      const root = manager.socket("/", { auth: { who: "root" } });
      const chat = manager.socket("/chat", { auth: { who: "chat" } });
      try {
        await Promise.all([once(root, "connect"), once(chat, "connect")]);
        assert.notEqual(root.id, chat.id);
        assert.equal(root.io, chat.io);
        const [[a], [b]] = await Promise.all([ack(root, "whoami"), ack(chat, "whoami")]);
        assert.deepEqual(a, { id: root.id, nsp: "/", auth: { who: "root" } });
        assert.deepEqual(b, { id: chat.id, nsp: "/chat", auth: { who: "chat" } });
        assert.deepEqual(norm(await ack(chat, "echo", Buffer.from("c"), 2)), [Buffer.from("c"), 2]);
        const answered = once(chat, "answer");
        chat.once("question", (_q, cb) => cb("from chat"));
        chat.emit("ask");
        assert.deepEqual(await answered, ["from chat"]);
        // leaving /chat keeps the connection for /
        chat.disconnect();
        assert.deepEqual(await ack(root, "echo", "still"), ["still"]);
      } finally {
        root.disconnect();
        chat.disconnect();
      }
    });

    test("unknown namespace gets connect_error 'Invalid namespace'", T, async () => {
      const socket = connectSocket(variant.opts, "/random");
      try {
        const [err] = await once(socket, "connect_error");
        assert.equal(err.message, "Invalid namespace");
        assert.equal(socket.connected, false);
      } finally {
        socket.disconnect();
        socket.io.engine?.close();
      }
    });

    test("auth rejection gets connect_error 'unauthorized' (/ and /chat)", T, async () => {
      for (const nsp of ["/", "/chat"]) {
        const socket = connectSocket({ ...variant.opts, auth: { token: "bad" } }, nsp);
        try {
          const [err] = await once(socket, "connect_error");
          assert.equal(err.message, "unauthorized", `on ${nsp}`);
          assert.equal(socket.connected, false);
        } finally {
          socket.disconnect();
          socket.io.engine?.close();
        }
      }
    });
  });
}

test("polling upgrades to websocket by default and traffic goes on", T, async () => {
  const socket = connectSocket({});
  let initial;
  socket.io.once("open", () => {
    initial = socket.io.engine.transport.name;
  });
  try {
    await once(socket, "connect");
    assert.equal(initial, "polling", "the session starts on long-polling");
    await upgraded(socket);
    assert.deepEqual(norm(await ack(socket, "echo", "after upgrade", Buffer.from([7]))), [
      "after upgrade",
      Buffer.from([7]),
    ]);
  } finally {
    socket.disconnect();
  }
});
