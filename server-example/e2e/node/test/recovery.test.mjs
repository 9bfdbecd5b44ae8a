// Connection-state recovery with socket.io-client 4.8.1 (which tracks `pid`
// and offsets by itself): the client talks to the server through a TCP proxy
// the test cuts, reconnects on its own, and gets its id, rooms and the
// packets it missed back, in order, with `socket.recovered === true`. Also
// when it had received no event before the cut (socket.io itself fails
// there), and an explicit `recovered === false` once the window has passed.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, connect, emitAck, once, until, tcpProxy } from "../lib/server.mjs";

const T = { timeout: 30_000 };


/** A client through the proxy that reconnects by itself after `delay` ms. */
async function reconnecting(url, delay = 100) {
  const socket = io(url, {
    forceNew: true,
    transports: ["websocket"],
    reconnectionDelay: delay,
    reconnectionDelayMax: delay,
    randomizationFactor: 0,
  });
  await once(socket, "connect");
  return socket;
}

/** Every `msg` received, without the offset socket.io appends. */
function inbox(socket) {
  const got = [];
  socket.on("msg", (...args) => got.push(args[0]));
  return got;
}

/** Resolves once the server has seen the cut: `room` has no member left. */
function serverSawCut(sender, room) {
  return until("the server to see the cut", async () => (await sendToRoom(sender, room, "probe", "probe")) === 0);
}

async function sendToRoom(sender, room, n, event = "msg") {
  const reached = await emitAck(sender, "hub-to", { rooms: [room], event, args: [n] });
  return reached;
}

/**
 * A server with a recovery window of `windowMs`, a client through a proxy
 * (reconnecting after `delay` ms) and a sender connected directly.
 */
async function setup(windowMs, delay = 100) {
  const server = await startServer(["--recovery-ms", String(windowMs)]);
  const p = await tcpProxy(server.url);
  const sender = await connect(server.url).ready;
  const client = await reconnecting(p.url, delay);
  return {
    p,
    sender,
    client,
    async close() {
      client.disconnect();
      sender.disconnect();
      p.close();
      await server.stop();
    },
  };
}

describe("connection state recovery", () => {
  test("missed packets come back in order with the same id and rooms", T, async () => {
    const t = await setup(60_000);
    const { p, sender, client } = t;
    try {
      const got = inbox(client);
      const room = "rec-" + process.pid;
      await emitAck(client, "join", room);
      assert.equal(await sendToRoom(sender, room, 1), 1);
      await until("msg 1", () => got.length >= 1);
      const id = client.id;
      const gone = once(client, "disconnect");
      p.cut();
      assert.equal((await gone)[0], "transport close");
      // Once the server has seen the cut, the room is empty; these are missed.
      await serverSawCut(sender, room);
      for (const n of [2, 3, 4]) assert.equal(await sendToRoom(sender, room, n), 0);
      await once(client, "connect", 10_000);
      assert.equal(client.recovered, true);
      assert.equal(client.id, id);
      await until("the missed messages", () => got.length >= 4);
      assert.deepEqual(got, [1, 2, 3, 4]);
      assert.deepEqual(await emitAck(client, "rooms"), [id, room].sort());
      // And it is live again.
      assert.equal(await sendToRoom(sender, room, 5), 1);
      await until("msg 5", () => got.length >= 5);
      assert.deepEqual(got, [1, 2, 3, 4, 5]);
    } finally {
      await t.close();
    }
  });

  test("recovers a client that had received no event before the cut", T, async () => {
    const t = await setup(60_000);
    const { p, sender, client } = t;
    try {
      const got = inbox(client);
      const room = "quiet-" + process.pid;
      await emitAck(client, "join", room); // an ack, not an event: no offset yet
      const id = client.id;
      p.cut();
      await serverSawCut(sender, room);
      assert.equal(await sendToRoom(sender, room, 1), 0);
      await once(client, "connect", 10_000);
      assert.equal(client.recovered, true);
      assert.equal(client.id, id);
      await until("the missed message", () => got.length >= 1);
      assert.deepEqual(got, [1]);
    } finally {
      await t.close();
    }
  });

  test("after the window the client gets a new session, recovered === false", T, async () => {
    const t = await setup(200, 1_000);
    const { p, client } = t;
    try {
      const id = client.id;
      await emitAck(client, "join", "late");
      p.cut();
      await once(client, "connect", 10_000);
      assert.equal(client.recovered, false);
      assert.notEqual(client.id, id);
      assert.deepEqual(await emitAck(client, "rooms"), [client.id]);
    } finally {
      await t.close();
    }
  });
});
