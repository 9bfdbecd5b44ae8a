// Every event the server handled gets its answer, even when the server then
// cuts the socket (issue 14): a client that bursts chat:message past its
// rate (Promise.all of emitWithAck, as a buggy client would) gets an answer
// for each message the server saved, and the saved messages are exactly
// those the room received; then the notice, then `io server disconnect`.
// Over WebSocket and over long-polling, with socket.io-client 4.8.1.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { startServer, signHs256, connect, emitAck, once, until } from "../lib/server.mjs";

const T = { timeout: 60_000 };
const SECRET = "e2e-answers-" + randomBytes(16).toString("hex");
const token = (sub) => signHs256({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, SECRET);
let uniq = 0;

describe("answers before a server-side cut (chat app)", () => {
  let server;
  before(async () => {
    server = await startServer([], { chat: true, env: { JWT_SECRET: SECRET } });
  });
  after(async () => {
    await server?.stop();
  });

  for (const transports of [["websocket"], ["polling"]]) {
    for (const burst of [30, 60, 200]) {
      test(`a burst of ${burst} over ${transports[0]}: an answer for every saved message, then the notice, then DISCONNECT`, T, async () => {
        const room = `answers-${process.pid}-${++uniq}`;
        const sender = await connect(server.url, { token: token(`burst-${uniq}`) }, { transports }).ready;
        const member = await connect(server.url, { token: token(`member-${uniq}`) }).ready;
        try {
          for (const s of [sender, member]) assert.deepEqual(await emitAck(s, "chat:join", room), { status: "ok" });
          const received = [];
          member.on("chat:new_message", (m) => received.push(m.content));
          // The order in which the client saw things.
          const seen = [];
          sender.on("tidewire:disconnect", (n) => seen.push(["notice", n.code]));
          const gone = new Promise((r) => sender.once("disconnect", (reason) => {
            seen.push(["disconnect", reason]);
            r(reason);
          }));
          // Callbacks, not promises: the order is recorded as packets arrive.
          const answers = await Promise.allSettled(
            Array.from({ length: burst }, (_, i) =>
              new Promise((resolve, reject) =>
                sender.timeout(15_000).emit("chat:message", { roomId: room, content: `m${i}` }, (err, a) => {
                  if (err) return reject(err);
                  seen.push(["answer", a.status]);
                  resolve(a);
                }),
              ),
            ),
          );
          const ok = [];
          const refused = [];
          const failed = [];
          answers.forEach((a, i) => {
            if (a.status === "rejected") failed.push([i, a.reason.message]);
            else if (a.value.status === "ok") ok.push(i);
            else refused.push(a.value);
          });
          // No message the server took waits for an answer that never comes.
          assert.deepEqual(failed.filter(([, why]) => /timed out/.test(why)), [], "no answer may time out");
          assert.equal(ok.length, 20, `the burst of 20 is saved (${ok.length} ok)`);
          for (const r of refused) assert.equal(r.code, "rate_limited", JSON.stringify(r));
          // Exactly the saved messages reached the room, in order.
          await until("the saved messages", () => received.length >= ok.length);
          await new Promise((r) => setTimeout(r, 200));
          assert.deepEqual(received, ok.map((i) => `m${i}`));
          if (burst - 20 >= 20) {
            // 20 violations: cut. Every answer came before the notice, the
            // notice before the DISCONNECT.
            assert.equal(await gone, "io server disconnect");
            const kinds = seen.map(([k]) => k);
            const notice = kinds.indexOf("notice");
            assert.ok(notice > 0, `the notice arrived: ${JSON.stringify(seen.slice(-5))}`);
            assert.equal(kinds.lastIndexOf("answer") < notice, true, "no answer after the notice");
            assert.deepEqual(seen[notice], ["notice", "rate_limited"]);
            assert.deepEqual(seen[notice + 1], ["disconnect", "io server disconnect"]);
            // Answers for what the server took before the cut (20 ok, 20
            // refusals at least); the rest of the burst was still on its way
            // and the client settles it itself ("socket has been disconnected").
            assert.ok(refused.length >= 20, `${refused.length} refusals`);
            for (const [, why] of failed) assert.match(why, /disconnected/);
          } else {
            assert.equal(refused.length, burst - 20);
            assert.ok(sender.connected, "under 20 violations: still connected");
          }
          // The server keeps serving everyone else.
          assert.equal((await emitAck(member, "chat:message", { roomId: room, content: "after" })).status, "ok");
        } finally {
          sender.disconnect();
          member.disconnect();
        }
      });
    }
  }
});
