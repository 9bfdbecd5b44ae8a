// Connection-state recovery across two tidewire-server nodes joined over a
// redis-server of the test's own, with socket.io-client 4.8.1: the client's
// connection to node A is cut and it reconnects (through a proxy now
// pointing at node B) to B, which gets its session and the packets it
// missed from A: same id, same rooms, every missed message in order,
// `recovered === true`. After the window, and for a session no node holds
// (which fails fast), `recovered === false`.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, connect, emitAck, once, until, tcpProxy } from "../lib/server.mjs";
import { startRedis } from "../lib/cluster.mjs";

const T = { timeout: 30_000 };


describe("connection state recovery across nodes", () => {
  let redis;
  let a;
  let b;
  before(async () => {
    redis = await startRedis();
    const args = ["--recovery-ms", "60000", "--redis-url", redis.url];
    [a, b] = [await startServer(args), await startServer(args)];
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.stop();
  });

  test("cut on node A, back on node B: same id, same rooms, every missed message in order", T, async () => {
    const p = await tcpProxy(a.url);
    const sender = await connect(b.url).ready;
    const client = io(p.url, {
      forceNew: true,
      transports: ["websocket"],
      reconnectionDelay: 100,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
    });
    try {
      await once(client, "connect");
      const got = [];
      client.on("msg", (...args) => got.push(args[0]));
      const room = `rec-cluster-${process.pid}`;
      await emitAck(client, "join", room);
      const send = (n, event = "msg") => emitAck(sender, "hub-to", { rooms: [room], event, args: [n] });
      // Node A listens to the room's channel once its member joined.
      let probed = false;
      client.on("probe", () => (probed = true));
      await until("the room reachable from node B", async () => {
        await send(0, "probe");
        return probed;
      });
      await send(1);
      await until("msg 1 from the other node", () => got.length >= 1);
      const id = client.id;

      p.retarget(b.url);
      const gone = once(client, "disconnect");
      p.cut();
      assert.equal((await gone)[0], "transport close");
      // Node A has seen the cut once its socket is gone from the room.
      await until("node A to see the cut", async () => (await emitAck(sender, "fetch", { rooms: [room] })).sockets.length === 0);
      for (const n of [2, 3, 4]) await send(n);

      await once(client, "connect", 10_000);
      assert.equal(client.recovered, true, "recovered on the other node");
      assert.equal(client.id, id);
      await until("the missed messages", () => got.length >= 4);
      assert.deepEqual(got.slice(0, 4), [1, 2, 3, 4]);
      assert.deepEqual(await emitAck(client, "rooms"), [id, room].sort());
      assert.equal((await emitAck(client, "whoami")).id, id);
      // Live again, on node B now.
      assert.equal(await send(5), 1, "the socket is on node B");
      await until("msg 5", () => got.length >= 5);
      assert.deepEqual(got, [1, 2, 3, 4, 5]);
    } finally {
      client.disconnect();
      sender.disconnect();
      p.close();
    }
  });

  test("back on node B after the window: a new session, recovered === false", T, async () => {
    // Nodes of their own with a 300 ms window.
    const args = ["--recovery-ms", "300", "--redis-url", redis.url, "--redis-prefix", `short-${process.pid}`];
    const [sa, sb] = [await startServer(args), await startServer(args)];
    const p = await tcpProxy(sa.url);
    const client = io(p.url, {
      forceNew: true,
      transports: ["websocket"],
      reconnectionDelay: 1_000,
      reconnectionDelayMax: 1_000,
      randomizationFactor: 0,
    });
    try {
      await once(client, "connect");
      const id = client.id;
      await emitAck(client, "join", "late");
      p.retarget(sb.url);
      p.cut();
      await once(client, "connect", 10_000);
      assert.equal(client.recovered, false);
      assert.notEqual(client.id, id);
    } finally {
      client.disconnect();
      p.close();
      await sa.stop();
      await sb.stop();
    }
  });

  test("a session no node holds: a new one, recovered === false, without waiting", T, async () => {
    const started = Date.now();
    const { socket, ready } = connect(b.url, { pid: "0123456789abcdef0123456789abcdef", offset: "x" });
    try {
      await ready;
      assert.equal(socket.recovered, false);
      assert.ok(Date.now() - started < 3000, "no wait for a request timeout");
    } finally {
      socket.disconnect();
    }
  });
});
