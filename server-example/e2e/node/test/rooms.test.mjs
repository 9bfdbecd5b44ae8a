// socket.io-client 4.8.1 against tidewire-server --conformance: rooms and
// broadcasts (to / hub-to / except / union / socket ids), acks both ways with
// binary, broadcast acks (answered, silent, gone), connect and event
// middlewares, dynamic namespaces, and disconnect reasons as the client sees
// them.
//
// Non-delivery is checked without sleeping: after the broadcast under test,
// a "barrier" event is sent from the namespace to every socket involved (each
// socket's own-id room); the server delivers to one socket in order, so once
// the barrier has arrived anything the broadcast sent it has arrived too.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io, Manager } from "socket.io-client";
import { startServer, within, once, norm } from "../lib/server.mjs";

const T = { timeout: 20_000 };
const PacketType = { ACK: 3, BINARY_ACK: 6 };

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

let uniq = 0;
/** A room name unique within this run. */
const room = (what) => `${what}-${process.pid}-${++uniq}`;

/** emit with an ack; resolves with all the ack's arguments. */
function ack(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(5_000).emit(event, ...args, (err, ...res) => (err ? reject(err) : resolve(res)));
  });
}

/** emit with an ack; resolves with the ack's first argument. */
async function ack1(socket, event, ...args) {
  const res = await ack(socket, event, ...args);
  return res[0];
}

function connectSocket(opts = {}, nsp = "/") {
  return io(server.url + (nsp === "/" ? "" : nsp), {
    forceNew: true,
    reconnection: false,
    transports: ["websocket"],
    ...opts,
  });
}

function connectedOrError(socket) {
  return within(
    5_000,
    "connect",
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
  );
}

/** Tracks the sockets a test opens and closes them all at the end. */
function pool() {
  const sockets = [];
  const managers = [];
  return {
    async connect(opts = {}, nsp = "/") {
      const s = connectSocket(opts, nsp);
      sockets.push(s);
      await connectedOrError(s);
      return s;
    },
    async many(n, opts = {}, nsp = "/") {
      return Promise.all(Array.from({ length: n }, () => this.connect(opts, nsp)));
    },
    manager(opts = {}) {
      const m = new Manager(server.url, { reconnection: false, transports: ["websocket"], ...opts });
      managers.push(m);
      return m;
    },
    track(s) {
      sockets.push(s);
      return s;
    },
    close() {
      for (const s of sockets) s.disconnect();
      for (const m of managers) m.engine?.close();
    },
  };
}

/** Records every arrival of `event` on each socket. */
function recorder(sockets, event) {
  const got = new Map(sockets.map((s) => [s, []]));
  for (const s of sockets) s.on(event, (...args) => got.get(s).push(args));
  return (s) => got.get(s);
}

/**
 * Sends `barrier` from `via`'s namespace to each of `sockets` and waits until
 * all have it: everything broadcast to them before has been delivered then.
 */
async function barrier(via, sockets) {
  const tag = `b-${++uniq}`;
  const arrived = sockets.map((s) =>
    within(5_000, `barrier on ${s.id}`, new Promise((resolve) => {
      const h = (t) => {
        if (t === tag) {
          s.off("barrier", h);
          resolve();
        }
      };
      s.on("barrier", h);
    })),
  );
  const reached = await ack1(via, "hub-to", { rooms: sockets.map((s) => s.id), event: "barrier", args: [tag] });
  assert.equal(reached, sockets.length, "the barrier reaches each socket once");
  await Promise.all(arrived);
}

const sorted = (xs) => [...xs].sort();

describe("rooms: join / leave / rooms", () => {
  test("acks reflect membership; the own id is always there", T, async () => {
    const p = pool();
    try {
      const [s] = await p.many(1);
      assert.deepEqual(await ack1(s, "rooms"), [s.id]);
      const [a, b, c] = [room("a"), room("b"), room("c")];
      assert.deepEqual(await ack1(s, "join", a), sorted([s.id, a]));
      assert.deepEqual(await ack1(s, "join", [b, c]), sorted([s.id, a, b, c]));
      // joining again changes nothing
      assert.deepEqual(await ack1(s, "join", a), sorted([s.id, a, b, c]));
      assert.deepEqual(await ack1(s, "leave", b), sorted([s.id, a, c]));
      // leaving a room one is not in changes nothing
      assert.deepEqual(await ack1(s, "leave", room("never")), sorted([s.id, a, c]));
      assert.deepEqual(await ack1(s, "rooms"), sorted([s.id, a, c]));
      assert.deepEqual(await ack1(s, "leave", [a, c]), [s.id]);
    } finally {
      p.close();
    }
  });

  test("rooms are per socket: another socket's joins do not show", T, async () => {
    const p = pool();
    try {
      const [s1, s2] = await p.many(2);
      const r = room("mine");
      await ack1(s1, "join", r);
      assert.deepEqual(await ack1(s2, "rooms"), [s2.id]);
      assert.deepEqual(await ack1(s1, "rooms"), sorted([s1.id, r]));
    } finally {
      p.close();
    }
  });
});

describe("rooms: broadcasts", () => {
  test("`to` reaches the room's members but not the sender", T, async () => {
    const p = pool();
    try {
      const [sender, m1, m2, outsider] = await p.many(4);
      const all = [sender, m1, m2, outsider];
      const r = room("to");
      for (const s of [sender, m1, m2]) await ack1(s, "join", r);
      const got = recorder(all, "hello");
      const reached = await ack1(sender, "to", { rooms: [r], event: "hello", args: [1, { x: "y" }, [true]] });
      assert.equal(reached, 2, "two members besides the sender");
      await barrier(sender, all);
      assert.deepEqual(got(m1), [[1, { x: "y" }, [true]]]);
      assert.deepEqual(got(m2), [[1, { x: "y" }, [true]]]);
      assert.deepEqual(got(sender), [], "the sender is excluded");
      assert.deepEqual(got(outsider), [], "non-members get nothing");
    } finally {
      p.close();
    }
  });

  test("`to` a room the sender is not in still excludes nobody else", T, async () => {
    const p = pool();
    try {
      const [sender, m1] = await p.many(2);
      const r = room("to-other");
      await ack1(m1, "join", r);
      const got = recorder([sender, m1], "ev");
      assert.equal(await ack1(sender, "to", { rooms: [r], event: "ev", args: ["z"] }), 1);
      await barrier(sender, [sender, m1]);
      assert.deepEqual(got(m1), [["z"]]);
      assert.deepEqual(got(sender), []);
    } finally {
      p.close();
    }
  });

  test("`hub-to` (namespace broadcast) includes the sender", T, async () => {
    const p = pool();
    try {
      const [sender, m1, outsider] = await p.many(3);
      const all = [sender, m1, outsider];
      const r = room("hub");
      await ack1(sender, "join", r);
      await ack1(m1, "join", r);
      const got = recorder(all, "news");
      assert.equal(await ack1(sender, "hub-to", { rooms: [r], event: "news", args: ["n"] }), 2);
      await barrier(sender, all);
      assert.deepEqual(got(sender), [["n"]]);
      assert.deepEqual(got(m1), [["n"]]);
      assert.deepEqual(got(outsider), []);
    } finally {
      p.close();
    }
  });

  test("a union of rooms delivers once per socket", T, async () => {
    const p = pool();
    try {
      const [sender, inAll, inR1, inR2, inR3only, outsider] = await p.many(6);
      const everyone = [sender, inAll, inR1, inR2, inR3only, outsider];
      const [r1, r2, r3] = [room("u1"), room("u2"), room("u3")];
      await ack1(sender, "join", [r1, r2]);
      await ack1(inAll, "join", [r1, r2, r3]);
      await ack1(inR1, "join", r1);
      await ack1(inR2, "join", [r2]);
      await ack1(inR3only, "join", r3);
      const got = recorder(everyone, "multi");
      const reached = await ack1(sender, "to", { rooms: [r1, r2, r3], event: "multi", args: [42] });
      assert.equal(reached, 4);
      await barrier(sender, everyone);
      for (const s of [inAll, inR1, inR2, inR3only]) assert.deepEqual(got(s), [[42]], `once on ${s.id}`);
      assert.deepEqual(got(sender), []);
      assert.deepEqual(got(outsider), []);

      // the same through the namespace: the sender too, still once
      const got2 = recorder(everyone, "multi2");
      assert.equal(await ack1(sender, "hub-to", { rooms: [r1, r2, r3], event: "multi2", args: [] }), 5);
      await barrier(sender, everyone);
      for (const s of [sender, inAll, inR1, inR2, inR3only]) assert.deepEqual(got2(s), [[]], `once on ${s.id}`);
      assert.deepEqual(got2(outsider), []);
    } finally {
      p.close();
    }
  });

  test("`except` excludes the members of the excepted rooms", T, async () => {
    const p = pool();
    try {
      const [sender, keep, muted, mutedToo, byId] = await p.many(5);
      const everyone = [sender, keep, muted, mutedToo, byId];
      const [r, quiet] = [room("ex"), room("quiet")];
      for (const s of everyone) await ack1(s, "join", r);
      await ack1(muted, "join", quiet);
      await ack1(mutedToo, "join", quiet);
      const got = recorder(everyone, "ex");
      const reached = await ack1(sender, "to", { rooms: [r], except: [quiet, byId.id], event: "ex", args: ["k"] });
      assert.equal(reached, 1);
      await barrier(sender, everyone);
      assert.deepEqual(got(keep), [["k"]]);
      for (const s of [sender, muted, mutedToo, byId]) assert.deepEqual(got(s), [], `nothing on ${s.id}`);

      // hub-to with except: the sender is included unless excepted
      const got2 = recorder(everyone, "ex2");
      assert.equal(await ack1(sender, "hub-to", { rooms: [r], except: quiet, event: "ex2", args: [] }), 3);
      await barrier(sender, everyone);
      for (const s of [sender, keep, byId]) assert.equal(got2(s).length, 1, `once on ${s.id}`);
      for (const s of [muted, mutedToo]) assert.deepEqual(got2(s), []);
    } finally {
      p.close();
    }
  });

  test("a socket id as room reaches exactly that socket", T, async () => {
    const p = pool();
    try {
      const [sender, target, other] = await p.many(3);
      const everyone = [sender, target, other];
      const got = recorder(everyone, "dm");
      assert.equal(await ack1(sender, "to", { rooms: [target.id], event: "dm", args: ["psst"] }), 1);
      await barrier(sender, everyone);
      assert.deepEqual(got(target), [["psst"]]);
      assert.deepEqual(got(sender), []);
      assert.deepEqual(got(other), []);
      // an unknown id reaches nobody
      assert.equal(await ack1(sender, "to", { rooms: ["no-such-socket-id"], event: "dm", args: [] }), 0);
      // `to` one's own id from the socket reaches nobody (the sender is excluded)
      assert.equal(await ack1(sender, "to", { rooms: [sender.id], event: "dm", args: [] }), 0);
      await barrier(sender, everyone);
      assert.equal(got(sender).length, 0);
      assert.equal(got(target).length, 1);
    } finally {
      p.close();
    }
  });

  test("user rooms: every connection of a user, and no one else", T, async () => {
    const p = pool();
    try {
      const user = `u-${process.pid}-${++uniq}`;
      const tab1 = await p.connect({ auth: { user } });
      const tab2 = await p.connect({ auth: { user }, transports: ["polling"] });
      const stranger = await p.connect({ auth: { user: `${user}-other` } });
      const anonymous = await p.connect();
      const everyone = [tab1, tab2, stranger, anonymous];
      const got = recorder(everyone, "dm");
      assert.ok((await ack1(tab1, "rooms")).includes(`user:${user}`));
      assert.equal(await ack1(anonymous, "hub-to", { rooms: [`user:${user}`], event: "dm", args: ["to both tabs"] }), 2);
      await barrier(anonymous, everyone);
      assert.deepEqual(got(tab1), [["to both tabs"]]);
      assert.deepEqual(got(tab2), [["to both tabs"]]);
      assert.deepEqual(got(stranger), []);
      assert.deepEqual(got(anonymous), []);
      // From one of the user's own connections, `to` skips only that connection.
      assert.equal(await ack1(tab1, "to", { rooms: [`user:${user}`], event: "dm", args: ["sync"] }), 1);
      await barrier(anonymous, everyone);
      assert.deepEqual(got(tab2), [["to both tabs"], ["sync"]]);
      assert.equal(got(tab1).length, 1);
    } finally {
      p.close();
    }
  });

  test("one Manager, / and /chat: rooms and broadcasts are per namespace", T, async () => {
    const p = pool();
    try {
      const m = p.manager();
      const root = p.track(m.socket("/"));
      const chat = p.track(m.socket("/chat"));
      await Promise.all([connectedOrError(root), connectedOrError(chat)]);
      assert.equal(root.io, chat.io, "one connection");
      assert.notEqual(root.id, chat.id);
      const [otherRoot] = await p.many(1);
      const [otherChat] = await p.many(1, {}, "/chat");
      const r = room("nsp");
      await ack1(root, "join", r);
      assert.deepEqual(await ack1(chat, "rooms"), [chat.id], "/chat does not see /'s room");
      await ack1(otherChat, "join", r);

      const inRoot = recorder([root, otherRoot], "where");
      const inChat = recorder([chat, otherChat], "where");
      // from / to the room: only / members
      assert.equal(await ack1(otherRoot, "to", { rooms: [r], event: "where", args: ["/"] }), 1);
      // from /chat to the room: only /chat members
      assert.equal(await ack1(chat, "to", { rooms: [r], event: "where", args: ["/chat"] }), 1);
      await barrier(otherRoot, [root, otherRoot]);
      await barrier(chat, [chat, otherChat]);
      assert.deepEqual(inRoot(root), [["/"]]);
      assert.deepEqual(inRoot(otherRoot), []);
      assert.deepEqual(inChat(otherChat), [["/chat"]]);
      assert.deepEqual(inChat(chat), []);

      // a socket id is a room of its own namespace only
      assert.equal(await ack1(otherRoot, "to", { rooms: [chat.id], event: "where", args: [] }), 0);

      // leaving /chat keeps / working on the same connection
      chat.disconnect();
      assert.deepEqual(await ack1(root, "rooms"), sorted([root.id, r]));
    } finally {
      p.close();
    }
  });
});

describe("acks both ways, binary included", () => {
  test("echo with nested Buffers comes back as BINARY_ACK with Buffers", T, async () => {
    const p = pool();
    try {
      const [s] = await p.many(1);
      // socket.io-parser turns BINARY_ACK into ACK once decoded: look at the
      // Engine.IO messages for the packet header instead
      const frames = [];
      s.io.engine.on("packet", (pk) => {
        if (pk.type === "message") frames.push(pk.data);
      });
      const headers = () => frames.filter((f) => typeof f === "string").map((f) => /^(\d)(?:(\d+)-)?(\d+)?\[/.exec(f));
      const sent = [{ file: { name: "a.bin", data: Buffer.from([0, 1, 2, 253]) }, list: [Buffer.from("x"), 1] }, "t"];
      const res = await ack(s, "echo", ...sent);
      const acks = headers().filter((m) => m && (m[1] === "3" || m[1] === "6"));
      assert.equal(acks.length, 1, `one ack in ${JSON.stringify(frames.filter((f) => typeof f === "string"))}`);
      assert.equal(acks[0][1], "6", "an ack with binary is a BINARY_ACK (46)");
      assert.equal(acks[0][2], "2", "with two attachments");
      assert.equal(frames.filter((f) => typeof f !== "string").length, 2, "two binary frames");
      assert.ok(Buffer.isBuffer(res[0].file.data), "the client gets a Buffer");
      assert.ok(Buffer.isBuffer(res[0].list[0]));
      assert.deepEqual(norm(res), norm(sent));

      // text-only acks are plain ACKs (43)
      frames.length = 0;
      assert.deepEqual(await ack(s, "echo", { a: [1] }), [{ a: [1] }]);
      assert.deepEqual(headers().map((m) => m && m[1]), ["3"]);
    } finally {
      p.close();
    }
  });

  test("server-to-client ack via `ask` (binary answer round-trips)", T, async () => {
    const p = pool();
    try {
      const [s] = await p.many(1);
      const asked = [];
      s.on("question", (q, cb) => {
        asked.push(q);
        cb({ answer: 42, blob: Buffer.from([9, 8, 7]) });
      });
      const answer = once(s, "answer");
      s.emit("ask");
      const [a] = await answer;
      assert.deepEqual(asked, ["ping?"]);
      assert.equal(a.answer, 42);
      assert.ok(Buffer.isBuffer(a.blob));
      assert.deepEqual(norm(a.blob), Buffer.from([9, 8, 7]));
    } finally {
      p.close();
    }
  });

  test("broadcast ack: one answer, one silent (timed out), one gone (disconnected)", T, async () => {
    const p = pool();
    try {
      const [sender, answering, silent, gone] = await p.many(4);
      const r = room("poll");
      for (const s of [answering, silent, gone]) await ack1(s, "join", r);
      const polled = [];
      answering.on("poll", (q, cb) => {
        polled.push(q);
        cb({ vote: "yes" }, 2);
      });
      // `silent` has no poll handler at all; `sender` registers one to show
      // it is not asked
      sender.on("poll", (_q, cb) => cb("sender must not be asked"));
      const [silentId, goneId] = [silent.id, gone.id]; // ids are unset once disconnected
      const goneClosed = once(gone, "disconnect");
      gone.on("poll", () => gone.disconnect());
      const started = Date.now();
      const report = await ack1(sender, "broadcast-ack", { rooms: [r], timeoutMs: 800 });
      const elapsed = Date.now() - started;
      await goneClosed;
      assert.deepEqual(polled, ["?"]);
      assert.deepEqual(report.responses, [{ id: answering.id, args: [{ vote: "yes" }, 2] }]);
      assert.deepEqual(report.timedOut, [silentId]);
      assert.deepEqual(report.disconnected, [goneId]);
      assert.ok(elapsed >= 700, `the report waited for the timeout (${elapsed} ms)`);
    } finally {
      p.close();
    }
  });

  test("broadcast ack: a handler that never calls back times out", T, async () => {
    const p = pool();
    try {
      const [sender, a, b] = await p.many(3);
      const r = room("poll2");
      await ack1(a, "join", r);
      await ack1(b, "join", r);
      a.on("poll", (_q, cb) => cb("a"));
      const seen = once(b, "poll");
      b.on("poll", () => {}); // registered, never answers
      const report = await ack1(sender, "broadcast-ack", { rooms: [r], timeoutMs: 800 });
      await seen;
      assert.deepEqual(report.responses, [{ id: a.id, args: ["a"] }]);
      assert.deepEqual(report.timedOut, [b.id]);
      assert.deepEqual(report.disconnected, []);
    } finally {
      p.close();
    }
  });

  test("broadcast ack: all answer, so the report comes before the timeout", T, async () => {
    const p = pool();
    try {
      const [sender, a, b] = await p.many(3);
      const r = room("poll3");
      await ack1(a, "join", r);
      await ack1(b, "join", r);
      a.on("poll", (_q, cb) => cb("a", Buffer.from([1])));
      b.on("poll", (_q, cb) => cb("b"));
      const started = Date.now();
      const report = await ack1(sender, "broadcast-ack", { rooms: [r], timeoutMs: 4_000 });
      assert.ok(Date.now() - started < 3_000, "did not wait for the timeout");
      const byId = Object.fromEntries(report.responses.map((x) => [x.id, x.args]));
      assert.deepEqual(sorted(Object.keys(byId)), sorted([a.id, b.id]));
      assert.equal(byId[a.id][0], "a");
      assert.deepEqual(byId[b.id], ["b"]);
      assert.deepEqual(report.timedOut, []);
      assert.deepEqual(report.disconnected, []);
      // an empty room: an empty report at once
      const empty = await ack1(sender, "broadcast-ack", { rooms: [room("nobody")], timeoutMs: 4_000 });
      assert.deepEqual(empty, { responses: [], timedOut: [], disconnected: [] });
    } finally {
      p.close();
    }
  });
});

describe("middlewares", () => {
  test("connect middleware: {token: 'bad'} -> connect_error 'unauthorized'", T, async () => {
    for (const nsp of ["/", "/chat", "/dyn-5"]) {
      const s = connectSocket({ auth: { token: "bad" } }, nsp);
      try {
        const [err] = await once(s, "connect_error");
        assert.equal(err.message, "unauthorized", `on ${nsp}`);
        assert.equal(s.connected, false);
      } finally {
        s.disconnect();
        s.io.engine?.close();
      }
    }
  });

  test("event middleware: forbidden* acked with an error; the connection stays usable", T, async () => {
    const p = pool();
    try {
      const [s] = await p.many(1);
      const res = await s.timeout(5_000).emitWithAck("forbidden-x", { a: 1 });
      assert.equal(res.status, "error");
      assert.equal(res.code, "forbidden");
      assert.equal(typeof res.message, "string");
      assert.ok(res.message.length > 0);
      assert.deepEqual(Object.keys(res).sort(), ["code", "message", "status"]);
      // without an ack: silently dropped
      s.emit("forbidden");
      assert.ok(s.connected);
      assert.deepEqual(await ack(s, "echo", "still here", Buffer.from([1])), ["still here", Buffer.from([1])]);
      const again = await s.timeout(5_000).emitWithAck("forbiddenToo");
      assert.equal(again.code, "forbidden");
    } finally {
      p.close();
    }
  });
});

describe("dynamic namespaces", () => {
  test("/dyn-42 is created on demand and works", T, async () => {
    const p = pool();
    try {
      const [s] = await p.many(1, { auth: { k: "v" } }, "/dyn-42");
      assert.deepEqual(await ack1(s, "whoami"), { id: s.id, nsp: "/dyn-42", auth: { k: "v" } });
      assert.deepEqual(norm(await ack(s, "echo", Buffer.from([5]))), [Buffer.from([5])]);
      // a second socket shares /dyn-42's rooms; / does not
      const [s2] = await p.many(1, {}, "/dyn-42");
      const [root] = await p.many(1);
      const r = room("dyn");
      await ack1(s2, "join", r);
      await ack1(root, "join", r);
      assert.equal(await ack1(s, "to", { rooms: [r], event: "x", args: [] }), 1);
    } finally {
      p.close();
    }
  });

  test("/dyn-x does not match: connect_error 'Invalid namespace'", T, async () => {
    for (const nsp of ["/dyn-x", "/dyn-", "/dyn-4x"]) {
      const s = connectSocket({}, nsp);
      try {
        const [err] = await once(s, "connect_error");
        assert.equal(err.message, "Invalid namespace", nsp);
        assert.equal(s.connected, false);
      } finally {
        s.disconnect();
        s.io.engine?.close();
      }
    }
  });
});

for (const variant of [
  { name: "websocket", opts: { transports: ["websocket"] } },
  { name: "polling", opts: { transports: ["polling"] } },
]) {
  describe(`disconnect reasons (client side), ${variant.name}`, () => {
    test("disconnect-me(false): 'io server disconnect'; other namespaces stay", T, async () => {
      const p = pool();
      try {
        const m = p.manager(variant.opts);
        const root = p.track(m.socket("/"));
        const chat = p.track(m.socket("/chat"));
        await Promise.all([connectedOrError(root), connectedOrError(chat)]);
        const reason = once(root, "disconnect");
        root.emit("disconnect-me", false);
        assert.equal((await reason)[0], "io server disconnect");
        assert.equal(root.connected, false);
        assert.equal(m.engine.readyState, "open", "the connection stays open");
        assert.deepEqual(await ack(chat, "echo", "chat lives"), ["chat lives"]);
      } finally {
        p.close();
      }
    });

    test("disconnect-me(true): 'io server disconnect' and the connection closes", T, async () => {
      const p = pool();
      try {
        const [s] = await p.many(1, variant.opts);
        const engineClosed = once(s.io.engine, "close");
        const reason = once(s, "disconnect");
        s.emit("disconnect-me", true);
        // socket.io-client gets the DISCONNECT packet before the transport
        // closes, as socket.io's Socket#disconnect(true) sends it first
        assert.equal((await reason)[0], "io server disconnect");
        await engineClosed;
        assert.equal(s.connected, false);
      } finally {
        p.close();
      }
    });

    test("disconnect-me(true) on a multiplexed connection: every namespace gets 'io server disconnect'", T, async () => {
      // socket.io's disconnect(true) is client._disconnect(): a DISCONNECT
      // for each of the connection's namespaces, then the close.
      const p = pool();
      try {
        const m = p.manager(variant.opts);
        const root = p.track(m.socket("/"));
        const chat = p.track(m.socket("/chat"));
        await Promise.all([connectedOrError(root), connectedOrError(chat)]);
        const reasons = Promise.all([once(root, "disconnect"), once(chat, "disconnect")]);
        root.emit("disconnect-me", true);
        const [[r1], [r2]] = await reasons;
        assert.equal(r1, "io server disconnect", "/");
        assert.equal(r2, "io server disconnect", "/chat");
      } finally {
        p.close();
      }
    });

    test("client socket.disconnect(): 'io client disconnect'", T, async () => {
      const p = pool();
      try {
        const [s, watcher] = await p.many(2, variant.opts);
        const r = room("bye");
        await ack1(s, "join", r);
        const reason = once(s, "disconnect");
        s.disconnect();
        assert.equal((await reason)[0], "io client disconnect");
        // the server forgot it: a broadcast to its room reaches nobody
        await within(5_000, "the server to drop the socket", (async () => {
          while ((await ack1(watcher, "to", { rooms: [r], event: "x", args: [] })) !== 0) {
            await new Promise((res) => setTimeout(res, 50));
          }
        })());
      } finally {
        p.close();
      }
    });
  });
}

test("server killed (SIGKILL): 'transport close'", T, async () => {
  const own = await startServer();
  const s = io(own.url, { forceNew: true, reconnection: false, transports: ["websocket"] });
  try {
    await connectedOrError(s);
    assert.deepEqual(await ack(s, "echo", 1), [1]);
    const reason = once(s, "disconnect");
    own.proc.kill("SIGKILL");
    assert.equal((await reason)[0], "transport close");
  } finally {
    s.disconnect();
    await own.stop();
  }
});
