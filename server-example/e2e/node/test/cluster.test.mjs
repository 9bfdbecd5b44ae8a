// A cluster over Redis pub/sub in the @socket.io/redis-adapter 8.x classic
// protocol: official socket.io 4.8 nodes (lib/official-node.mjs) and
// tidewire-server nodes, in the pairs named by CLUSTER_PAIRS (default
// `official+official,tidewire+official,official+tidewire,tidewire+tidewire`; a triple such as
// `official+official+official` works too). Each suite has a redis-server of
// its own, and checks every direction between its nodes: broadcasts (rooms,
// unions, all, except, binary, from a socket and from the namespace, per
// namespace), fetchSockets, socketsJoin / socketsLeave, disconnectSockets,
// serverSideEmit with and without acks, broadcasts with acks, serverCount as
// nodes come and go, emits to remote sockets, and a frozen node.
//
// Non-delivery is checked by waiting 300 ms after everything expected has
// arrived: deliveries across nodes have no order to hang a barrier on.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, emitAck, until, norm } from "../lib/server.mjs";
import { startRedis, startNode, waitForServerCount, makeEmitter } from "../lib/cluster.mjs";

const T = { timeout: 30_000 };
const REQUESTS_TIMEOUT_MS = 1000;
const NEGATIVE_MS = 300;
const NSPS = ["/", "/chat"];

const PAIRS = (process.env.CLUSTER_PAIRS ??
  "official+official,tidewire+official,official+tidewire,tidewire+tidewire,official+official@sharded,tidewire+official@sharded")
  .split(",")
  .map((p) => p.trim())
  .filter(Boolean);

let uniq = 0;
/** A room name unique within this run. */
const room = (what) => `${what}-${process.pid}-${++uniq}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sorted = (xs) => [...xs].sort();
/** The first argument of each answer of a `broadcast-ack` report, sorted. */
const firstArgs = (report) => sorted(report.responses.map((r) => r.args[0]));
const nspUrl = (node, nsp) => node.url + (nsp === "/" ? "" : nsp);

/** emit with an ack (5 s); resolves with the ack's first argument. */
const ack1 = (socket, event, ...args) => emitAck(socket, event, ...args);

/** Records every arrival of `event` on each socket. */
function recorder(sockets, event) {
  const got = new Map(sockets.map((s) => [s, []]));
  for (const s of sockets) s.on(event, (...args) => got.get(s).push(args));
  return (s) => got.get(s);
}

/** Tracks the clients a test opens and closes them all at the end. */
function pool() {
  const sockets = [];
  return {
    /** A connected client of `node` on `nsp`, labelled `label`. */
    async connect(node, label, { nsp = "/", auth } = {}) {
      const { socket, ready } = connect(nspUrl(node, nsp), auth);
      sockets.push(socket);
      await ready;
      socket.label = label;
      socket.node = node;
      return socket;
    },
    close() {
      for (const s of sockets) s.disconnect();
    },
  };
}

/**
 * Runs `fn(X, Y, nsp, pool)` for every ordered pair of distinct nodes and
 * every namespace, with a fresh pool of clients closed afterwards.
 */
async function eachDirection(nodes, fn) {
  for (const nsp of NSPS) await eachPair(nodes, (X, Y, p) => fn(X, Y, nsp, p));
}

/** Runs `fn(X, Y, pool)` for every ordered pair of distinct nodes, with a fresh pool. */
async function eachPair(nodes, fn) {
  for (const [X, Y] of directions(nodes)) {
    const p = pool();
    try {
      await fn(X, Y, p);
    } finally {
      p.close();
    }
  }
}

/** Every ordered pair of distinct nodes. */
function directions(nodes) {
  const out = [];
  for (const from of nodes) for (const to of nodes) if (from !== to) out.push([from, to]);
  return out;
}

/** Polls `rooms` on each socket until `pred(rooms)` holds. */
async function roomsUntil(what, sockets, pred) {
  for (const s of sockets) {
    let last;
    await until(`${what} on ${s.label}`, async () => pred((last = await ack1(s, "rooms")))).catch((err) => {
      err.message += ` (rooms: ${JSON.stringify(last)})`;
      throw err;
    });
  }
}

for (const entry of PAIRS) {
  // `a+b` runs the classic protocol (createAdapter), `a+b@sharded` the
  // sharded one (createShardedAdapter, Redis 7 sharded pub/sub).
  const [pair, protocol = "classic"] = entry.split("@");
  const sharded = protocol === "sharded";
  if (!["classic", "sharded"].includes(protocol)) throw new Error(`CLUSTER_PAIRS: unknown protocol ${protocol}`);
  const kinds = pair.split("+").map((k) => k.trim());
  const bad = kinds.find((k) => k !== "official" && k !== "tidewire");
  if (bad) throw new Error(`CLUSTER_PAIRS: unknown node kind ${JSON.stringify(bad)} in ${JSON.stringify(pair)}`);
  const skip =
    kinds.includes("tidewire") && !process.env.TIDEWIRE_SERVER_BIN
      ? `TIDEWIRE_SERVER_BIN is not set: cannot start the tidewire nodes of ${pair}`
      : false;

  describe(`cluster ${pair}${sharded ? " (sharded)" : ""}`, { skip }, () => {
    let redis;
    /** @type {Array<{url, proc, stop, stderr, kind, name}>} */
    let nodes = [];
    const extra = new Set();
    const N = kinds.length;

    const startExtra = async (kind, label) => {
      const node = await startNode(kind, {
        redisUrl: redis.url,
        name: `${label}-${kind}`,
        requestsTimeoutMs: REQUESTS_TIMEOUT_MS,
        sharded,
      });
      extra.add(node);
      return node;
    };
    const stopExtra = async (node) => {
      await node.stop();
      extra.delete(node);
    };

    before(async () => {
      redis = await startRedis();
      nodes = await Promise.all(
        kinds.map((kind, i) =>
          startNode(kind, {
            redisUrl: redis.url,
            name: `${String.fromCharCode(65 + i)}-${kind}`,
            requestsTimeoutMs: REQUESTS_TIMEOUT_MS,
            sharded,
          }),
        ),
      );
      for (const n of nodes) for (const nsp of NSPS) await waitForServerCount(n.url, N, { nsp });
    });

    after(async () => {
      for (const n of [...extra, ...nodes]) await n.stop();
      await redis?.stop();
    });

    describe("broadcasts", () => {
      for (const nsp of NSPS) {
        const other = nsp === "/" ? "/chat" : "/";
        test(`rooms, unions, all, except, binary; from a socket and the namespace, on ${nsp}`, T, async () => {
          await eachPair(nodes, async (X, Y, p) => {
            const dir = `${X.name}->${Y.name} ${nsp}`;
            const x1 = await p.connect(X, "x1", { nsp });
            const x2 = await p.connect(X, "x2", { nsp });
            const y1 = await p.connect(Y, "y1", { nsp });
            const y2 = await p.connect(Y, "y2", { nsp });
            const y3 = await p.connect(Y, "y3", { nsp });
            // the same room names in the other namespace, on both nodes
            const ox = await p.connect(X, "ox", { nsp: other });
            const oy = await p.connect(Y, "oy", { nsp: other });
            const mine = [x1, x2, y1, y2, y3];
            const everyone = [...mine, ox, oy];
            const [r, r1, r2, quiet] = [room("r"), room("r1"), room("r2"), room("quiet")];
            await ack1(x1, "join", [r]);
            await ack1(x2, "join", [r, r1]);
            await ack1(y1, "join", [r, r1, r2]);
            await ack1(y2, "join", [r, r2, quiet]);
            for (const o of [ox, oy]) await ack1(o, "join", [r, r1, r2, quiet]);

            const one = recorder(everyone, "one");
            const union = recorder(everyone, "union");
            const all = recorder(everyone, "all");
            const except = recorder(everyone, "except");
            const bin = recorder(everyone, "bin");
            const hub = recorder(everyone, "hub");
            const hubAll = recorder(everyone, "hub-all");

            // acks count this node's recipients only
            assert.equal(await ack1(x1, "to", { rooms: [r], event: "one", args: [1, { a: "b" }, [true, null]] }), 1, dir);
            assert.equal(await ack1(x1, "to", { rooms: [r1, r2], event: "union", args: ["u"] }), 1, dir);
            assert.equal(await ack1(x1, "to", { event: "all", args: ["everyone"] }) >= 1, true, dir);
            assert.equal(
              await ack1(x1, "to", { rooms: [r], except: [quiet, y1.id], event: "except", args: ["e"] }),
              1,
              dir,
            );
            const blob = Buffer.from([0, 1, 2, 253, 254, 255]);
            const sent = [blob, { nested: Buffer.from("xyz"), list: [Buffer.alloc(0), 7] }, "text"];
            assert.equal(await ack1(x1, "to", { rooms: [r2], event: "bin", args: sent }), 0, dir);
            assert.equal(await ack1(x1, "hub-to", { rooms: [r], except: quiet, event: "hub", args: ["h"] }), 2, dir);
            assert.equal(await ack1(x1, "hub-to", { event: "hub-all", args: [] }) >= 2, true, dir);

            // what must arrive
            const want = [
              [one, [x2, y1, y2], [1, { a: "b" }, [true, null]]],
              [union, [x2, y1, y2], ["u"]],
              [all, [x2, y1, y2, y3], ["everyone"]],
              [except, [x2], ["e"]],
              [hub, [x1, x2, y1], ["h"]],
              [hubAll, mine, []],
            ];
            for (const [got, to] of want) {
              for (const s of to) await until(`${dir}: arrival on ${s.label}`, () => got(s).length > 0);
            }
            for (const s of [y1, y2]) await until(`${dir}: binary on ${s.label}`, () => bin(s).length > 0);
            // ... and nothing more, anywhere
            await sleep(NEGATIVE_MS);
            for (const [got, to, args] of want) {
              for (const s of everyone) {
                assert.deepEqual(got(s), to.includes(s) ? [args] : [], `${dir}: on ${s.label}`);
              }
            }
            for (const s of everyone) assert.equal(bin(s).length, [y1, y2].includes(s) ? 1 : 0, `${dir}: bin on ${s.label}`);
            const [[a0, a1, a2]] = bin(y1);
            assert.ok(Buffer.isBuffer(a0), "a Buffer arrives as a Buffer");
            assert.ok(Buffer.isBuffer(a1.nested));
            assert.ok(Buffer.isBuffer(a1.list[0]));
            assert.deepEqual(norm([a0, a1, a2]), norm(sent));
            assert.deepEqual(norm(bin(y2)[0]), norm(sent));
          });
        });
      }

      test("a user room spans the nodes", T, async () => {
        await eachPair(nodes, async (X, Y, p) => {
          const user = `u-${process.pid}-${++uniq}`;
          const dir = `${X.name}->${Y.name}`;
          const tabX = await p.connect(X, "tabX", { auth: { user } });
          const tabY = await p.connect(Y, "tabY", { auth: { user } });
          const stranger = await p.connect(Y, "stranger", { auth: { user: `${user}-other` } });
          const anon = await p.connect(X, "anon");
          const got = recorder([tabX, tabY, stranger, anon], "dm");
          assert.equal(await ack1(anon, "hub-to", { rooms: [`user:${user}`], event: "dm", args: ["both"] }), 1, dir);
          await until(`${dir}: dm on tabX`, () => got(tabX).length > 0);
          await until(`${dir}: dm on tabY`, () => got(tabY).length > 0);
          await sleep(NEGATIVE_MS);
          assert.deepEqual(got(tabX), [["both"]]);
          assert.deepEqual(got(tabY), [["both"]]);
          assert.deepEqual(got(stranger), []);
          assert.deepEqual(got(anon), []);
        });
      });
    });

    describe("fetchSockets", () => {
      test("ids, rooms and data across nodes, with rooms / except filters", T, async () => {
        await eachDirection(nodes, async (X, Y, nsp, p) => {
          const dir = `${X.name}->${Y.name} ${nsp}`;
          const x1 = await p.connect(X, "x1", { nsp });
          const x2 = await p.connect(X, "x2", { nsp });
          const user = `fu-${process.pid}-${++uniq}`;
          const y1 = await p.connect(Y, "y1", { nsp, auth: { user } });
          const y2 = await p.connect(Y, "y2", { nsp });
          const oy = await p.connect(Y, "oy", { nsp: nsp === "/" ? "/chat" : "/" });
          const [r, q] = [room("f"), room("fq")];
          await ack1(x2, "join", [r]);
          await ack1(y1, "join", [r, q]);
          await ack1(y2, "join", [r]);
          await ack1(oy, "join", [r]);
          assert.equal(await ack1(x2, "set-data", { n: 2, tags: ["a", "b"], ok: true }), true);
          assert.equal(await ack1(y1, "set-data", "y-one"), true);
          // y2 sets nothing: data is null

          const entry = async (s, data) => ({ id: s.id, rooms: await ack1(s, "rooms"), data });
          const ex2 = await entry(x2, { n: 2, tags: ["a", "b"], ok: true });
          const ey1 = await entry(y1, "y-one");
          const ey2 = await entry(y2, null);
          assert.deepEqual(ey1.rooms, sorted([y1.id, r, q, `user:${user}`]));
          const byId = (xs) => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

          assert.deepEqual(await ack1(x1, "fetch", { rooms: [r] }), { sockets: byId([ex2, ey1, ey2]) }, dir);
          assert.deepEqual(await ack1(x1, "fetch", { rooms: r, except: [q] }), { sockets: byId([ex2, ey2]) }, dir);
          assert.deepEqual(await ack1(x1, "fetch", { rooms: [r], except: q }), { sockets: byId([ex2, ey2]) }, dir);
          assert.deepEqual(await ack1(x1, "fetch", { rooms: [y2.id] }), { sockets: [ey2] }, dir);
          assert.deepEqual(await ack1(x1, "fetch", { rooms: [q, y1.id] }), { sockets: [ey1] }, dir);
          assert.deepEqual(await ack1(x1, "fetch", { rooms: [room("nobody")] }), { sockets: [] }, dir);
          // everyone: ours are there (other tests' clients may linger)
          const { sockets: every } = await ack1(x1, "fetch", {});
          const ids = every.map((s) => s.id);
          assert.deepEqual(ids, sorted(ids), "sorted by id");
          for (const e of [ex2, ey1, ey2, await entry(x1, null)]) {
            assert.deepEqual(every.find((s) => s.id === e.id), e, `${dir}: ${e.id} in fetch({})`);
          }
          assert.ok(!ids.includes(oy.id), "another namespace's socket is not fetched");
          // data changes are seen on the next fetch
          assert.equal(await ack1(y2, "set-data", [1, "two"]), true);
          assert.deepEqual(await ack1(x1, "fetch", { rooms: [y2.id] }), { sockets: [{ ...ey2, data: [1, "two"] }] });
        });
      });
    });

    describe("socketsJoin / socketsLeave", () => {
      test("a joined room reaches sockets on both nodes; after leaving it does not", T, async () => {
        await eachDirection(nodes, async (X, Y, nsp, p) => {
          const dir = `${X.name}->${Y.name} ${nsp}`;
          const x1 = await p.connect(X, "x1", { nsp });
          const x2 = await p.connect(X, "x2", { nsp });
          const y1 = await p.connect(Y, "y1", { nsp });
          const y2 = await p.connect(Y, "y2", { nsp });
          const y3 = await p.connect(Y, "y3", { nsp });
          const oy = await p.connect(Y, "oy", { nsp: nsp === "/" ? "/chat" : "/" });
          const [r, j, j2] = [room("sj"), room("joined"), room("joined2")];
          for (const s of [x2, y1, y2, oy]) await ack1(s, "join", [r]);

          assert.equal(await ack1(x1, "sockets-join", { rooms: [r], except: [y2.id], join: j }), true);
          await roomsUntil(`${dir}: ${j} joined`, [x2, y1], (rs) => rs.includes(j));
          assert.equal(await ack1(x1, "sockets-join", { rooms: [y3.id], join: [j2, j] }), true);
          await roomsUntil(`${dir}: ${j2} joined`, [y3], (rs) => rs.includes(j) && rs.includes(j2));
          await sleep(NEGATIVE_MS);
          assert.deepEqual(await ack1(y2, "rooms"), sorted([y2.id, r]), "excepted: not joined");
          assert.deepEqual(await ack1(x1, "rooms"), [x1.id], "outside the selection: not joined");
          assert.deepEqual(await ack1(oy, "rooms"), sorted([oy.id, r]), "another namespace: not joined");

          const got = recorder([x1, x2, y1, y2, y3, oy], "to-joined");
          assert.equal(await ack1(x1, "hub-to", { rooms: [j], event: "to-joined", args: [1] }), 1);
          for (const s of [x2, y1, y3]) await until(`${dir}: to-joined on ${s.label}`, () => got(s).length > 0);
          await sleep(NEGATIVE_MS);
          for (const s of [x1, x2, y1, y2, y3, oy]) {
            assert.deepEqual(got(s), [x2, y1, y3].includes(s) ? [[1]] : [], `${dir}: on ${s.label}`);
          }

          // leave: by the joined room itself
          assert.equal(await ack1(x1, "sockets-leave", { rooms: [j], except: y3.id, leave: j }), true);
          await roomsUntil(`${dir}: ${j} left`, [x2, y1], (rs) => !rs.includes(j));
          await sleep(NEGATIVE_MS);
          assert.deepEqual(await ack1(y3, "rooms"), sorted([y3.id, j, j2]), "excepted: still in");
          assert.equal(await ack1(x1, "sockets-leave", { rooms: [y3.id], leave: [j, j2] }), true);
          await roomsUntil(`${dir}: y3 left`, [y3], (rs) => !rs.includes(j) && !rs.includes(j2));

          const got2 = recorder([x1, x2, y1, y2, y3, oy], "after-leave");
          assert.equal(await ack1(x1, "hub-to", { rooms: [j], event: "after-leave", args: [] }), 0);
          assert.equal(await ack1(x1, "hub-to", { rooms: [r], event: "after-leave", args: ["r"] }), 1);
          for (const s of [x2, y1, y2]) await until(`${dir}: after-leave on ${s.label}`, () => got2(s).length > 0);
          await sleep(NEGATIVE_MS);
          for (const s of [x1, x2, y1, y2, y3, oy]) {
            assert.deepEqual(got2(s), [x2, y1, y2].includes(s) ? [["r"]] : [], `${dir}: on ${s.label}`);
          }
        });
      });
    });

    describe("disconnectSockets", () => {
      test("a room's sockets on every node get 'io server disconnect'; the others stay", T, async () => {
        for (const [X, Y] of directions(nodes)) {
          for (const close of [false, true]) {
            const p = pool();
            try {
              const dir = `${X.name}->${Y.name} close=${close}`;
              const x1 = await p.connect(X, "x1");
              const x2 = await p.connect(X, "x2");
              const y1 = await p.connect(Y, "y1");
              const y2 = await p.connect(Y, "y2");
              const y3 = await p.connect(Y, "y3");
              const r = room("dc");
              for (const s of [x2, y1, y2]) await ack1(s, "join", [r]);
              const reasons = new Map();
              for (const s of [x1, x2, y1, y2, y3]) s.on("disconnect", (why) => reasons.set(s, why));
              const y2Id = y2.id;
              const y1Engine = y1.io.engine;
              assert.equal(await ack1(x1, "disconnect-sockets", { rooms: [r], except: [y2Id], close }), true);
              for (const s of [x2, y1]) await until(`${dir}: ${s.label} disconnected`, () => reasons.has(s));
              assert.equal(reasons.get(x2), "io server disconnect");
              assert.equal(reasons.get(y1), "io server disconnect");
              if (close) await until(`${dir}: y1's connection closed`, () => y1Engine.readyState === "closed");
              await sleep(NEGATIVE_MS);
              for (const s of [x1, y2, y3]) {
                assert.equal(reasons.has(s), false, `${dir}: ${s.label} stays`);
                assert.deepEqual(await ack1(s, "rooms"), s === y2 ? sorted([y2Id, r]) : [s.id]);
              }
              const { sockets } = await ack1(x1, "fetch", { rooms: [r] });
              assert.deepEqual(
                sockets.map((s) => s.id),
                [y2Id],
              );
            } finally {
              p.close();
            }
          }
        }
      });
    });

    describe("serverSideEmit", () => {
      test("without ack: every other node's listener runs, the sender's does not", T, async () => {
        for (const X of nodes) {
          for (const nsp of NSPS) {
            const p = pool();
            try {
              const dir = `${X.name} ${nsp}`;
              const clients = [];
              for (const n of nodes) clients.push(await p.connect(n, `c-${n.name}`, { nsp }));
              // the other namespace's listeners must not run
              const others = [];
              for (const n of nodes) others.push(await p.connect(n, `o-${n.name}`, { nsp: nsp === "/" ? "/chat" : "/" }));
              const got = recorder([...clients, ...others], "cluster-pinged");
              const sender = clients[nodes.indexOf(X)];
              const args = ["hi", 2, { deep: [null, true] }];
              assert.equal(await ack1(sender, "server-side-emit", { event: "cluster-ping", args }), true);
              const receivers = clients.filter((c) => c.node !== X);
              for (const c of receivers) await until(`${dir}: cluster-pinged on ${c.label}`, () => got(c).length > 0);
              await sleep(NEGATIVE_MS);
              for (const c of receivers) assert.deepEqual(got(c), [[{ node: c.node.name, args }]], `${dir}: on ${c.label}`);
              assert.deepEqual(got(sender), [], `${dir}: not on the sender's node`);
              for (const o of others) assert.deepEqual(got(o), [], `${dir}: not in the other namespace`);
            } finally {
              p.close();
            }
          }
        }
      });

      test("with ack: one response from every other node", T, async () => {
        for (const X of nodes) {
          for (const nsp of NSPS) {
            const p = pool();
            try {
              const dir = `${X.name} ${nsp}`;
              const sender = await p.connect(X, "sender", { nsp });
              const count = await ack1(sender, "server-count");
              assert.equal(count, nodes.length);
              const res = await ack1(sender, "server-side-emit", {
                event: "cluster-ping",
                args: ["q", 1],
                ack: true,
                timeoutMs: 1000,
              });
              assert.equal(res.error, null, `${dir}: ${JSON.stringify(res)}`);
              assert.equal(res.responses.length, count - 1);
              assert.deepEqual(
                [...res.responses].sort((a, b) => (a.node < b.node ? -1 : 1)),
                nodes.filter((n) => n !== X).map((n) => ({ node: n.name, args: ["q", 1] })),
                dir,
              );
            } finally {
              p.close();
            }
          }
        }
      });
    });

    describe("broadcast with acks", () => {
      test("every asked client on every node answers; the requester gets all answers", T, async () => {
        for (const X of nodes) {
          const p = pool();
          try {
            const r = room("poll");
            const requester = await p.connect(X, "requester");
            requester.on("poll", (_q, cb) => cb("requester must not be asked"));
            const answering = [];
            for (const n of nodes) {
              for (const i of [1, 2]) {
                const s = await p.connect(n, `${n.name}-${i}`);
                await ack1(s, "join", [r]);
                s.on("poll", (q, cb) => cb(`yes-${s.label}`, "second args are dropped"));
                answering.push(s);
              }
            }
            const outsider = await p.connect(nodes.find((n) => n !== X), "outsider");
            outsider.on("poll", (_q, cb) => cb("outsider must not be asked"));
            const started = Date.now();
            const report = await ack1(requester, "broadcast-ack", { rooms: [r], timeoutMs: 3000 });
            assert.ok(Date.now() - started < 2500, "every answer came: no wait for the timeout");
            const byAnswer = (a, b) => (a.args[0] < b.args[0] ? -1 : 1);
            if (X.kind === "official") {
              assert.deepEqual(
                { ...report, responses: [...report.responses].sort(byAnswer) },
                {
                  responses: answering.map((s) => ({ id: null, args: [`yes-${s.label}`] })).sort(byAnswer),
                  timedOut: [],
                  disconnected: [],
                },
                X.name,
              );
            } else {
              // Tidewire: every answer, with all of a local answer's
              // arguments and its socket id; the other nodes' answers carry
              // their first argument only and no id (the cluster protocol's).
              assert.deepEqual(firstArgs(report), sorted(answering.map((s) => `yes-${s.label}`)), X.name);
              assert.deepEqual([report.timedOut, report.disconnected, report.error], [[], [], undefined]);
              const local = answering.filter((s) => s.node === X);
              assert.deepEqual(
                sorted(report.responses.filter((r) => r.id !== null).map((r) => r.id)),
                sorted(local.map((s) => s.id)),
              );
              for (const r of report.responses) {
                assert.deepEqual(r.args.slice(1), r.id === null ? [] : ["second args are dropped"]);
              }
            }
          } finally {
            p.close();
          }
        }
      });

      test("a silent client on another node: an error after the timeout, with the answers", T, async () => {
        await eachPair(nodes, async (X, Y, p) => {
          const r = room("poll-silent");
          const requester = await p.connect(X, "requester");
          const x1 = await p.connect(X, "x1");
          const y1 = await p.connect(Y, "y1");
          const silent = await p.connect(Y, "silent");
          for (const s of [x1, y1, silent]) await ack1(s, "join", [r]);
          for (const s of [x1, y1]) s.on("poll", (_q, cb) => cb(`yes-${s.label}`));
          const asked = recorder([silent], "poll");
          const started = Date.now();
          const report = await ack1(requester, "broadcast-ack", { rooms: [r], timeoutMs: 800 });
          const elapsed = Date.now() - started;
          assert.ok(elapsed >= 700, `waited for the timeout (${elapsed} ms)`);
          assert.equal(asked(silent).length, 1, "the silent client was asked");
          assert.equal(report.error, "operation has timed out");
          if (X.kind === "official") {
            assert.deepEqual(
              [...report.responses].sort((a, b) => (a.args[0] < b.args[0] ? -1 : 1)),
              [
                { id: null, args: ["yes-x1"] },
                { id: null, args: ["yes-y1"] },
              ],
            );
            assert.deepEqual(Object.keys(report).sort(), ["error", "responses"]);
          } else {
            assert.deepEqual(firstArgs(report), ["yes-x1", "yes-y1"]);
            assert.deepEqual(sorted(Object.keys(report)), ["disconnected", "error", "responses", "timedOut"]);
            // The silent client is on the other node: counted there, not named here.
            assert.deepEqual(report.timedOut, []);
          }
        });
      });
    });

    describe("serverCount", () => {
      test("counts the nodes as they come and go", T, async () => {
        for (const n of nodes) for (const nsp of NSPS) await waitForServerCount(n.url, N, { nsp, ms: 2_000 });
        for (const kind of new Set(kinds)) {
          const third = await startExtra(kind, "third");
          try {
            for (const n of [...nodes, third]) {
              for (const nsp of NSPS) await waitForServerCount(n.url, N + 1, { nsp });
            }
            const p = pool();
            try {
              const s = await p.connect(nodes[0], "s");
              const rooms = await ack1(s, "all-rooms");
              assert.ok(rooms.includes(s.id), "all-rooms holds the own id room");
              assert.deepEqual(rooms, sorted(rooms));
            } finally {
              p.close();
            }
          } finally {
            await stopExtra(third);
          }
          for (const n of nodes) for (const nsp of NSPS) await waitForServerCount(n.url, N, { nsp });
        }
      });

      // The sharded protocol has no request for every room (allRooms is local there).
      test("all-rooms spans the nodes", { ...T, skip: sharded && "classic protocol only" }, async () => {
        await eachPair(nodes, async (X, Y, p) => {
          const x1 = await p.connect(X, "x1");
          const y1 = await p.connect(Y, "y1");
          const [rx, ry] = [room("arx"), room("ary")];
          await ack1(x1, "join", [rx]);
          await ack1(y1, "join", [ry]);
          const rooms = await ack1(x1, "all-rooms");
          assert.deepEqual(rooms, sorted(rooms));
          for (const want of [x1.id, y1.id, rx, ry]) assert.ok(rooms.includes(want), `${want} in all-rooms`);
        });
      });
    });

    // @socket.io/redis-emitter speaks the classic protocol only.
    describe("emitters", { skip: sharded && "classic protocol only" }, () => {
      // A process with no connections publishes; every node delivers.
      for (const emitterKind of ["official", "tidewire"]) {
        test(`${emitterKind} emitter: rooms, users, except, join/leave, server-side events, disconnect`, T, async (t) => {
          if (emitterKind === "tidewire" && !process.env.TIDEWIRE_SERVER_BIN) return t.skip("no tidewire-emit");
          const emitter = await makeEmitter(emitterKind, redis.url);
          const p = pool();
          try {
            const r = room("emitted");
            const members = [];
            const others = [];
            for (const n of nodes) {
              const m = await p.connect(n, `m-${n.name}`, { auth: { user: `u-${n.name}` } });
              await ack1(m, "join", [r]);
              members.push(m);
              others.push(await p.connect(n, `o-${n.name}`));
            }
            const chat = await p.connect(nodes[0], "chat", { nsp: "/chat" });
            const all = [...members, ...others, chat];
            const got = recorder(all, "emitted");
            // Room members on every node, binary included; nobody else.
            const bin = Buffer.from([7, 8, 9]);
            await emitter.emit({ rooms: [r] }, "emitted", "to-room", emitterKind === "official" ? bin : { n: 1 });
            for (const m of members) await until(`to-room on ${m.label}`, () => got(m).length === 1);
            if (emitterKind === "official") for (const m of members) assert.ok(Buffer.isBuffer(got(m)[0][1]));
            else for (const m of members) assert.deepEqual(got(m)[0], ["to-room", { n: 1 }]);
            // One user's connections, wherever they are.
            const target = members[members.length - 1];
            await emitter.emit({ rooms: [`user:u-${target.node.name}`] }, "emitted", "to-user");
            await until("to-user", () => got(target).length === 2);
            // Everyone but the room.
            await emitter.emit({ except: [r] }, "emitted", "not-room");
            for (const o of others) await until(`not-room on ${o.label}`, () => got(o).length === 1);
            await sleep(NEGATIVE_MS);
            for (const m of members) assert.equal(got(m).length, m === target ? 2 : 1, `${m.label}`);
            assert.deepEqual(got(chat), [], "another namespace hears nothing");
            for (const o of others) assert.deepEqual(got(o), [["not-room"]]);
            // Join and leave through the emitter, on every node.
            const r2 = room("emitter-joined");
            await emitter.join({ except: [r] }, [r2]);
            await roomsUntil("joined r2", others, (rooms) => rooms.includes(r2));
            await emitter.leave({ rooms: [r2] }, [r2]);
            await roomsUntil("left r2", others, (rooms) => !rooms.includes(r2));
            // Server-side events reach every node's handler.
            const pinged = recorder(others, "cluster-pinged");
            await emitter.serverSideEmit({}, "cluster-ping", "from-emitter");
            for (const o of others) {
              await until(`cluster-pinged on ${o.label}`, () => pinged(o).length === 1);
              assert.deepEqual(pinged(o), [[{ node: o.node.name, args: ["from-emitter"] }]]);
            }
            // Disconnect the room's members everywhere.
            const reasons = new Map();
            for (const m of members) m.on("disconnect", (why) => reasons.set(m, why));
            await emitter.disconnect({ rooms: [r] });
            for (const m of members) await until(`${m.label} disconnected`, () => reasons.get(m) === "io server disconnect");
            for (const o of others) assert.ok(o.connected, `${o.label} stays`);
          } finally {
            p.close();
            await emitter.close();
          }
        });
      }
    });

    describe("metrics", () => {
      test("a Tidewire node exports its cluster counters", T, async (t) => {
        const tw = nodes.filter((n) => n.kind === "tidewire");
        if (tw.length === 0) return t.skip("no Tidewire node in this pair");
        for (const n of tw) {
          const text = await (await fetch(`${n.url}/metrics`)).text();
          const value = (name) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
          for (const name of ["tidewire_cluster_published_total", "tidewire_cluster_received_total", "tidewire_cluster_answered_total"]) {
            assert.ok(value(name) > 0, `${n.name}: ${name} counts the traffic so far`);
          }
          assert.equal(value("tidewire_cluster_malformed_total"), 0, `${n.name}: every message from the official nodes decoded`);
          assert.equal(value("tidewire_bus_dropped_inbound_total"), 0);
        }
      });
    });

    describe("remote emit", () => {
      test("fetchSockets()[0].emit reaches a socket on the other node", T, async () => {
        await eachPair(nodes, async (X, Y, p) => {
          const dir = `${X.name}->${Y.name}`;
          const x1 = await p.connect(X, "x1");
          const x2 = await p.connect(X, "x2");
          const y1 = await p.connect(Y, "y1");
          const y2 = await p.connect(Y, "y2");
          const got = recorder([x1, x2, y1, y2], "direct");
          const args = ["hi", Buffer.from([1, 2, 3]), { n: 1 }];
          assert.equal(await ack1(x1, "remote-emit", { id: y1.id, event: "direct", args }), 1, dir);
          assert.equal(await ack1(x1, "remote-emit", { id: x2.id, event: "direct", args: ["local"] }), 1, dir);
          assert.equal(await ack1(x1, "remote-emit", { id: "no-such-socket", event: "direct", args: [] }), 0, dir);
          await until(`${dir}: direct on y1`, () => got(y1).length > 0);
          await until(`${dir}: direct on x2`, () => got(x2).length > 0);
          await sleep(NEGATIVE_MS);
          assert.equal(got(y1).length, 1);
          assert.ok(Buffer.isBuffer(got(y1)[0][1]));
          assert.deepEqual(norm(got(y1)[0]), norm(args));
          assert.deepEqual(got(x2), [["local"]]);
          assert.deepEqual(got(x1), []);
          assert.deepEqual(got(y2), []);
        });
      });
    });

    // The sharded adapter's requests wait a fixed 5 s (not requestsTimeout).
    describe("a frozen node", { skip: sharded && "classic protocol only" }, () => {
      test(`requests time out after requestsTimeout (${REQUESTS_TIMEOUT_MS} ms)`, T, async () => {
        const frozen = await startExtra(kinds[0], "frozen");
        const p = pool();
        try {
          for (const n of [...nodes, frozen]) await waitForServerCount(n.url, N + 1);
          const clients = [];
          for (const n of nodes) clients.push(await p.connect(n, `c-${n.name}`));
          const frozenUid = (await ack1(await p.connect(frozen, "f"), "whoami")).uid;
          frozen.proc.kill("SIGSTOP");
          for (const c of clients) {
            const official = c.node.kind === "official";
            const timed = async (event, spec) => {
              const t0 = Date.now();
              const res = await ack1(c, event, spec);
              return { res, ms: Date.now() - t0 };
            };
            // the frozen node is still subscribed, so counted, and never answers
            assert.equal(await ack1(c, "server-count"), N + 1, "the frozen node still counts");
            const [fetch, sse, rooms] = await Promise.all([
              timed("fetch", {}),
              timed("server-side-emit", { event: "cluster-ping", args: ["frozen?"], ack: true, timeoutMs: REQUESTS_TIMEOUT_MS }),
              timed("all-rooms"),
            ]);
            const where = `requester ${c.node.name}`;
            for (const [what, { res, ms }] of Object.entries({ fetch, sse, rooms })) {
              assert.ok(ms >= REQUESTS_TIMEOUT_MS - 100, `${where}: ${what} waited for the timeout (${ms} ms)`);
              assert.ok(ms < REQUESTS_TIMEOUT_MS + 500, `${where}: ${what} answered within ~1.5 s (${ms} ms)`);
              assert.equal(typeof res.error, "string", `${where}: ${what}: ${JSON.stringify(res)}`);
            }
            if (official) {
              assert.deepEqual(Object.keys(fetch.res), ["error"]);
              assert.deepEqual(Object.keys(rooms.res), ["error"]);
            } else {
              // Tidewire: partial results, not a bare timeout. What the
              // answering nodes hold is there, and who did not answer.
              for (const res of [fetch.res, rooms.res]) {
                assert.deepEqual(sorted(Object.keys(res)), sorted(["error", res.sockets ? "sockets" : "rooms", "replies"]));
                assert.equal(res.replies.expected, N, where);
                assert.equal(res.replies.received, N - 1, where);
                if (frozen.kind === "tidewire") assert.deepEqual(res.replies.silent, [frozenUid], where);
              }
              const ids = fetch.res.sockets.map((s) => s.id);
              for (const other of clients) assert.ok(ids.includes(other.id), `${where}: ${other.label} fetched`);
              for (const other of clients) assert.ok(rooms.res.rooms.includes(other.id), `${where}: ${other.label}'s room`);
            }
            // the nodes that do answer are in the partial responses
            assert.deepEqual(
              [...sse.res.responses].sort((a, b) => (a.node < b.node ? -1 : 1)),
              nodes.filter((n) => n !== c.node).map((n) => ({ node: n.name, args: ["frozen?"] })),
            );
            if (official) {
              assert.equal(fetch.res.error, "timeout reached while waiting for fetchSockets response");
              assert.equal(rooms.res.error, "timeout reached while waiting for allRooms response");
              assert.equal(sse.res.error, `timeout reached: only ${N - 1} responses received out of ${N}`);
            }
          }
        } finally {
          frozen.proc.kill("SIGCONT");
          p.close();
          await stopExtra(frozen);
        }
        for (const n of nodes) await waitForServerCount(n.url, N);
      });
    });
  });
}
