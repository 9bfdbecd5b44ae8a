// socket.io-client 4.8.1 against the chat app (tidewire-server's default
// mode, no --conformance): JWT (HS256) handshake auth with the test's own
// signing, the /dev/token flow, chat:join / chat:leave / chat:message,
// chat:user_joined / chat:new_message fan-out, the staff room policy, several
// connections of one user, /healthz.
//
// Non-delivery is checked without sleeping: the server delivers to one socket
// in order, so a later message known to reach that socket (a "barrier") shows
// that an earlier one, had it been sent, would have arrived first.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startServer, within, once, signHs256, connect, emitAck } from "../lib/server.mjs";

const T = { timeout: 20_000 };
const SECRET = "e2e-" + randomBytes(16).toString("hex");
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

const now = () => Math.floor(Date.now() / 1000);
const token = (claims, secret = SECRET) => signHs256({ exp: now() + 600, ...claims }, secret);

let uniq = 0;
const roomId = (what) => `${what}-${process.pid}-${++uniq}`;

/** The connect_error message for `auth` (fails if the connection is accepted). */
async function refusal(url, auth) {
  const { socket, ready } = connect(url, auth);
  try {
    await ready;
  } catch (err) {
    assert.equal(socket.connected, false);
    return err.message;
  } finally {
    socket.disconnect();
  }
  assert.fail(`connected with auth ${JSON.stringify(auth)}`);
}


/** Tracks the sockets a test opens and closes them all at the end. */
function users(url) {
  const sockets = [];
  return {
    async as(claims, opts) {
      const { socket, ready } = connect(url, { token: token(claims) }, opts);
      sockets.push(socket);
      return ready;
    },
    async withToken(tok, opts) {
      const { socket, ready } = connect(url, { token: tok }, opts);
      sockets.push(socket);
      return ready;
    },
    close() {
      for (const s of sockets) s.disconnect();
    },
  };
}

/** Records every arrival of `event` on each socket. */
function recorder(sockets, event) {
  const got = new Map(sockets.map((s) => [s, []]));
  for (const s of sockets) s.on(event, (...args) => got.get(s).push(args));
  return (s) => got.get(s);
}

/** Waits for the first `event` on `socket` whose first argument satisfies `pred`. */
function next(socket, event, pred = () => true, ms = 5_000) {
  return within(
    ms,
    `${event} on ${socket.id}`,
    new Promise((resolve) => {
      const h = (arg) => {
        if (pred(arg)) {
          socket.off(event, h);
          resolve(arg);
        }
      };
      socket.on(event, h);
    }),
  );
}

describe("chat app with JWT_SECRET", () => {
  let server;
  before(async () => {
    server = await startServer([], { chat: true, env: { JWT_SECRET: SECRET } });
  });
  after(async () => {
    await server?.stop();
  });

  test("GET /healthz is 200 ok; /dev/token is not served with a secret", T, async () => {
    const health = await fetch(server.url + "/healthz");
    assert.equal(health.status, 200);
    assert.equal(await health.text(), "ok");
    const dev = await fetch(server.url + "/dev/token?sub=alice");
    assert.notEqual(dev.status, 200, "no dev tokens once JWT_SECRET is set");
    await dev.arrayBuffer();
  });

  test("handshake auth: missing, expired, forged and malformed tokens are refused", T, async () => {
    assert.match(await refusal(server.url, undefined), /authentication required/);
    assert.match(await refusal(server.url, { other: 1 }), /authentication required/);
    assert.match(await refusal(server.url, { token: 42 }), /authentication required/);
    assert.equal(await refusal(server.url, { token: token({ sub: "alice", exp: now() - 30 }) }), "token expired");
    assert.match(await refusal(server.url, { token: token({ sub: "alice" }, "not-the-secret") }), /^invalid token/);
    assert.match(await refusal(server.url, { token: "garbage" }), /^invalid token/);
    assert.match(await refusal(server.url, { token: token({ name: "no subject" }) }), /^invalid token/);
    assert.match(await refusal(server.url, { token: token({ sub: "" }) }), /^invalid token/);
    // alg "none" with the payload of a valid token
    const [, payload] = token({ sub: "mallory" }).split(".");
    const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    assert.match(await refusal(server.url, { token: none }), /^invalid token/);
  });

  test("a valid token connects; one without exp is refused", T, async () => {
    const u = users(server.url);
    try {
      const a = await u.as({ sub: "alice", name: "Alice" });
      assert.ok(a.connected);
    } finally {
      u.close();
    }
    // (--allow-tokens-without-exp accepts it: see hardening.test.mjs)
    assert.equal(
      await refusal(server.url, { token: signHs256({ sub: "bob" }, SECRET) }),
      "invalid token: no exp claim (tokens must expire)",
    );
  });

  test("chat:join acks ok; invalid room ids are errors", T, async () => {
    const u = users(server.url);
    try {
      const a = await u.as({ sub: "alice" });
      assert.deepEqual(await emitAck(a, "chat:join", roomId("general")), { status: "ok" });
      assert.deepEqual(await emitAck(a, "chat:join", "a-b_C9"), { status: "ok" });
      for (const bad of ["", "has space", "a:b", "x".repeat(65), 7, null, { roomId: "x" }]) {
        const res = await emitAck(a, "chat:join", bad);
        assert.equal(res.status, "error", JSON.stringify(bad));
        assert.equal(typeof res.message, "string");
        assert.ok(res.message.length > 0);
      }
      assert.equal((await emitAck(a, "chat:join")).status, "error", "no argument");
      assert.ok(a.connected);
    } finally {
      u.close();
    }
  });

  test("staff-* rooms need role staff", T, async () => {
    const u = users(server.url);
    try {
      const user = await u.as({ sub: "ursula", name: "Ursula" });
      const other = await u.as({ sub: "oscar", role: "admin" });
      const staff = await u.as({ sub: "stella", role: "staff" });
      const room = roomId("staff-ops");
      for (const s of [user, other]) {
        const res = await emitAck(s, "chat:join", room);
        assert.equal(res.status, "error");
        assert.equal(typeof res.message, "string");
      }
      assert.deepEqual(await emitAck(staff, "chat:join", room), { status: "ok" });
      // the refused user is not in the room: sending there is refused
      assert.equal((await emitAck(user, "chat:message", { roomId: room, content: "let me in" })).status, "error");
      // and does not get the room's messages
      const got = recorder([user], "chat:new_message");
      await emitAck(staff, "chat:message", { roomId: room, content: "staff only" });
      // barrier: a message to a room both are in
      const common = roomId("common");
      await emitAck(user, "chat:join", common);
      await emitAck(staff, "chat:join", common);
      const barrier = next(user, "chat:new_message", (m) => m.roomId === common);
      await emitAck(staff, "chat:message", { roomId: common, content: "barrier" });
      await barrier;
      assert.deepEqual(got(user).map(([m]) => m.content), ["barrier"]);
    } finally {
      u.close();
    }
  });

  test("chat:message is refused for rooms not joined and for bad content", T, async () => {
    const u = users(server.url);
    try {
      const a = await u.as({ sub: "alice" });
      const room = roomId("r");
      const notJoined = await emitAck(a, "chat:message", { roomId: room, content: "hi" });
      assert.equal(notJoined.status, "error");
      assert.equal(typeof notJoined.message, "string");
      assert.equal(notJoined.data, undefined);
      await emitAck(a, "chat:join", room);
      for (const body of [
        { roomId: room, content: "" },
        { roomId: room, content: "   " },
        { roomId: room },
        { roomId: room, content: 5 },
        { roomId: room, content: "x".repeat(2001) },
        { content: "no room" },
        { roomId: "bad room", content: "x" },
        "not an object",
      ]) {
        const res = await emitAck(a, "chat:message", body);
        assert.equal(res.status, "error", JSON.stringify(body).slice(0, 80));
        assert.equal(typeof res.message, "string");
      }
      // exactly the limit is fine (2000 characters, multi-byte ones too)
      const max = "é".repeat(2000);
      const ok = await emitAck(a, "chat:message", { roomId: room, content: max });
      assert.equal(ok.status, "ok");
      assert.equal(ok.data.content, max);
    } finally {
      u.close();
    }
  });

  test("chat:message: ack with the saved message; members get chat:new_message, the sender does not", T, async () => {
    const u = users(server.url);
    try {
      const alice = await u.as({ sub: "alice", name: "Alice" });
      const bob = await u.as({ sub: "bob", name: "Bob" });
      const carol = await u.as({ sub: "carol" });
      const dave = await u.as({ sub: "dave" }); // not in the room
      const room = roomId("flow");
      const side = roomId("side");
      for (const s of [alice, bob, carol]) assert.deepEqual(await emitAck(s, "chat:join", room), { status: "ok" });
      await emitAck(bob, "chat:join", side);
      await emitAck(dave, "chat:join", side);
      const got = recorder([alice, bob, carol, dave], "chat:new_message");

      const before = Date.now();
      const bobGets = next(bob, "chat:new_message", (m) => m.roomId === room);
      const carolGets = next(carol, "chat:new_message", (m) => m.roomId === room);
      const res = await emitAck(alice, "chat:message", { roomId: room, content: "hello 👋 <b>" });
      assert.equal(res.status, "ok");
      const m = res.data;
      assert.deepEqual(Object.keys(m).sort(), ["content", "createdAt", "id", "roomId", "senderId"]);
      assert.equal(m.roomId, room);
      assert.equal(m.senderId, "alice");
      assert.equal(m.content, "hello 👋 <b>");
      assert.equal(typeof m.id, "string");
      assert.ok(m.id.length > 0);
      assert.match(m.createdAt, ISO_8601);
      const at = Date.parse(m.createdAt);
      assert.ok(at >= before - 2_000 && at <= Date.now() + 2_000, `createdAt ${m.createdAt} is now`);
      assert.deepEqual(await bobGets, m);
      assert.deepEqual(await carolGets, m);

      // barriers: bob writes to the flow room (reaches alice) and to the side room (reaches dave)
      const aliceBarrier = next(alice, "chat:new_message", (x) => x.senderId === "bob");
      const daveBarrier = next(dave, "chat:new_message", (x) => x.senderId === "bob");
      await emitAck(bob, "chat:message", { roomId: room, content: "barrier" });
      await emitAck(bob, "chat:message", { roomId: side, content: "barrier" });
      await Promise.all([aliceBarrier, daveBarrier]);
      assert.deepEqual(got(alice).map(([x]) => x.senderId), ["bob"], "the sender does not get its own message");
      assert.deepEqual(got(dave).map(([x]) => x.roomId), [side], "non-members get nothing");
      assert.equal(got(bob).length, 1, "bob got alice's message once");
      assert.equal(got(carol).filter(([x]) => x.id === m.id).length, 1);

      // a second message gets a different id
      const res2 = await emitAck(alice, "chat:message", { roomId: room, content: "again" });
      assert.notEqual(res2.data.id, m.id);
    } finally {
      u.close();
    }
  });

  test("chat:user_joined reaches the room's other members (once); chat:user_left on leave", T, async () => {
    const u = users(server.url);
    try {
      const alice = await u.as({ sub: "alice", name: "Alice" });
      const bob = await u.as({ sub: "bob", name: "Bob" });
      const nameless = await u.as({ sub: "nemo" });
      const room = roomId("joins");
      const joined = recorder([alice, bob, nameless], "chat:user_joined");
      await emitAck(alice, "chat:join", room);
      const aliceSeesBob = next(alice, "chat:user_joined");
      assert.deepEqual(await emitAck(bob, "chat:join", room), { status: "ok" });
      assert.deepEqual(await aliceSeesBob, { userId: "bob", name: "Bob", roomId: room });
      // joining again: ok, no second announcement
      assert.deepEqual(await emitAck(bob, "chat:join", room), { status: "ok" });
      // a user without a name claim is announced under its id
      const bothSeeNemo = Promise.all([next(alice, "chat:user_joined"), next(bob, "chat:user_joined")]);
      await emitAck(nameless, "chat:join", room);
      for (const j of await bothSeeNemo) assert.deepEqual(j, { userId: "nemo", name: "nemo", roomId: room });
      assert.deepEqual(joined(alice).map(([j]) => j.userId), ["bob", "nemo"]);
      assert.deepEqual(joined(bob).map(([j]) => j.userId), ["nemo"], "bob is not told about himself");
      assert.deepEqual(joined(nameless), []);

      // leave: the others get chat:user_left; the leaver can no longer send
      const left = Promise.all([next(alice, "chat:user_left"), next(nameless, "chat:user_left")]);
      assert.deepEqual(await emitAck(bob, "chat:leave", room), { status: "ok" });
      for (const l of await left) assert.deepEqual(l, { userId: "bob", roomId: room });
      assert.equal((await emitAck(bob, "chat:message", { roomId: room, content: "x" })).status, "error");
      assert.equal((await emitAck(bob, "chat:leave", "bad room")).status, "error");
    } finally {
      u.close();
    }
  });

  test("two connections of one user join and receive independently", T, async () => {
    const u = users(server.url);
    try {
      const phone = await u.as({ sub: "alice", name: "Alice" });
      const laptop = await u.as({ sub: "alice", name: "Alice" }, { transports: ["polling"] });
      const bob = await u.as({ sub: "bob", name: "Bob" });
      const [r1, r2] = [roomId("both"), roomId("phone-only")];
      await emitAck(bob, "chat:join", r1);
      await emitAck(bob, "chat:join", r2);
      await emitAck(phone, "chat:join", r1);
      await emitAck(phone, "chat:join", r2);
      await emitAck(laptop, "chat:join", r1);
      const got = recorder([phone, laptop], "chat:new_message");

      const both = Promise.all([phone, laptop].map((s) => next(s, "chat:new_message", (m) => m.roomId === r1)));
      const sent = (await emitAck(bob, "chat:message", { roomId: r1, content: "to both" })).data;
      for (const m of await both) assert.deepEqual(m, sent);

      // r2: only the phone joined it
      const phoneGets = next(phone, "chat:new_message", (m) => m.roomId === r2);
      await emitAck(bob, "chat:message", { roomId: r2, content: "phone only" });
      await phoneGets;
      // the laptop may send to r1 but not to r2
      assert.equal((await emitAck(laptop, "chat:message", { roomId: r2, content: "x" })).status, "error");
      // a message from one connection of alice reaches her other connection
      const phoneSeesLaptop = next(phone, "chat:new_message", (m) => m.content === "from laptop");
      const fromLaptop = await emitAck(laptop, "chat:message", { roomId: r1, content: "from laptop" });
      assert.equal(fromLaptop.data.senderId, "alice");
      assert.deepEqual(await phoneSeesLaptop, fromLaptop.data);

      // the phone leaves r1; the laptop still gets r1's messages, the phone does not
      await emitAck(phone, "chat:leave", r1);
      const laptopGets = next(laptop, "chat:new_message", (m) => m.content === "after leave");
      await emitAck(bob, "chat:message", { roomId: r1, content: "after leave" });
      await laptopGets;
      const phoneBarrier = next(phone, "chat:new_message", (m) => m.content === "barrier");
      await emitAck(bob, "chat:message", { roomId: r2, content: "barrier" });
      await phoneBarrier;
      assert.deepEqual(
        got(phone).map(([m]) => m.content),
        ["to both", "phone only", "from laptop", "barrier"],
      );
      assert.deepEqual(got(laptop).map(([m]) => m.content), ["to both", "after leave"]);
    } finally {
      u.close();
    }
  });
});

describe("chat app without JWT_SECRET (development tokens)", () => {
  let server;
  before(async () => {
    server = await startServer([], { chat: true });
  });
  after(async () => {
    await server?.stop();
  });

  async function devToken(query) {
    const res = await fetch(`${server.url}/dev/token?${new URLSearchParams(query)}`);
    const body = await res.text();
    assert.equal(res.status, 200, body);
    return body;
  }

  test("GET /dev/token signs a one-hour token; without sub it is 400", T, async () => {
    const tok = await devToken({ sub: "alice", name: "Alice" });
    const [header, payload] = tok.split(".").slice(0, 2).map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
    assert.equal(header.alg, "HS256");
    assert.equal(payload.sub, "alice");
    assert.equal(payload.name, "Alice");
    assert.ok(Math.abs(payload.exp - (now() + 3600)) < 120, `exp ${payload.exp} is in about an hour`);
    const missing = await fetch(`${server.url}/dev/token`);
    assert.equal(missing.status, 400);
    await missing.arrayBuffer();
    const empty = await fetch(`${server.url}/dev/token?sub=`);
    assert.equal(empty.status, 400);
    await empty.arrayBuffer();
    const health = await fetch(server.url + "/healthz");
    assert.equal(health.status, 200);
    assert.equal(await health.text(), "ok");
  });

  test("dev tokens connect and chat; tokens signed with another secret do not", T, async () => {
    const u = users(server.url);
    try {
      const alice = await u.withToken(await devToken({ sub: "alice", name: "Alice" }));
      const bob = await u.withToken(await devToken({ sub: "bob", name: "Bob" }), { transports: ["polling"] });
      const room = roomId("dev");
      await emitAck(alice, "chat:join", room);
      const aliceSeesBob = next(alice, "chat:user_joined");
      assert.deepEqual(await emitAck(bob, "chat:join", room), { status: "ok" });
      assert.deepEqual(await aliceSeesBob, { userId: "bob", name: "Bob", roomId: room });
      const bobGets = next(bob, "chat:new_message");
      const res = await emitAck(alice, "chat:message", { roomId: room, content: "hi bob" });
      assert.equal(res.status, "ok");
      assert.equal(res.data.senderId, "alice");
      assert.deepEqual(await bobGets, res.data);

      assert.match(await refusal(server.url, { token: token({ sub: "eve" }, SECRET) }), /^invalid token/);
      assert.match(await refusal(server.url, {}), /authentication required/);
    } finally {
      u.close();
    }
  });

  test("a dev token with role=staff may join staff-* rooms", T, async () => {
    const u = users(server.url);
    try {
      const staff = await u.withToken(await devToken({ sub: "sam", role: "staff" }));
      const plain = await u.withToken(await devToken({ sub: "pat" }));
      const room = roomId("staff-dev");
      assert.deepEqual(await emitAck(staff, "chat:join", room), { status: "ok" });
      assert.equal((await emitAck(plain, "chat:join", room)).status, "error");
    } finally {
      u.close();
    }
  });
});
