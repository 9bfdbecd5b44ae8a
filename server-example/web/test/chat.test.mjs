// The web app in Chromium against the reference server: two users in two
// browser contexts chat in a room (history, live messages, presence,
// typing, delivery state), and bad input from the page gets the server's
// ack error shapes, shown in the UI, while what was saved stays.
import { test } from "node:test";
import assert from "node:assert/strict";
import { launch, startChat, openChat, say, shown, presence, messages, screenshot, eventually, UI_MS } from "./lib/browser.mjs";
import { connect, emitAck } from "../../e2e/node/lib/server.mjs";

const T = { timeout: 90_000 };

test("two browser contexts chat in a room", T, async () => {
  const server = await startChat();
  const browser = await launch();
  try {
    const alice = await openChat(await browser.newContext(), server.url, "alice");
    await say(alice, "hello from alice");
    await shown(alice, "hello from alice");
    const bob = await openChat(await browser.newContext(), server.url, "bob");
    // History: what was said before bob came.
    await shown(bob, "hello from alice");
    await presence(alice, ["alice", "bob"]);
    await presence(bob, ["alice", "bob"]);

    // Typing notices reach the other user, and stop.
    await bob.fill("#composer", "typing a reply");
    await alice.getByText("Bob is typing…").waitFor({ timeout: UI_MS });
    await screenshot(alice, "chat-typing");
    await bob.press("#composer", "Enter");
    await shown(bob, "typing a reply");
    await shown(alice, "typing a reply");
    await eventually("typing cleared", async () => (await alice.textContent('[data-testid="typing"]')) === "");

    await say(alice, "hi bob");
    await shown(bob, "hi bob");
    assert.deepEqual(
      (await messages(bob)).map((m) => `${m.sender}: ${m.content}`),
      ["alice: hello from alice", "bob: typing a reply", "alice: hi bob"],
    );
    await bob.fill("#composer", "one more thing");
    await alice.getByText("Bob is typing…").waitFor({ timeout: UI_MS });
    // The README's picture (docs/chat.png).
    await screenshot(alice, "chat-two-users");
    await screenshot(bob, "chat-two-users-bob");

    // A room of their own, away from general: presence per room.
    await bob.click('[data-testid="room-random"]');
    await presence(bob, ["bob"]);
    await presence(alice, ["alice"]);
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  } finally {
    await browser.close();
    await server.stop();
  }
});

test("bad input from the page gets the server's error shapes in the UI", T, async () => {
  const server = await startChat();
  const browser = await launch();
  try {
    const alice = await openChat(await browser.newContext(), server.url, "alice");
    await say(alice, "kept");
    await shown(alice, "kept");

    // Oversized: refused by the core's rules before the handler; failed, with a retry.
    await say(alice, "x".repeat(2001));
    const failed = alice.locator('[data-testid="message"][data-state="failed"]');
    await failed.waitFor({ timeout: UI_MS });
    const code = await failed.locator('[data-testid="error"]').getAttribute("data-code");
    assert.ok(["invalid_payload", "payload_too_large"].includes(code), code);
    await failed.getByRole("button", { name: "Retry" }).click();
    await alice.locator('[data-testid="message"][data-state="failed"]').waitFor({ timeout: UI_MS });
    await screenshot(alice, "bad-input-oversized");
    await failed.getByRole("button", { name: "Discard" }).click();
    await eventually("failed message discarded", async () => (await failed.count()) === 0);

    // Whitespace only: the handler's refusal.
    await say(alice, "   ");
    await alice.locator('[data-testid="message"][data-state="failed"]').waitFor({ timeout: UI_MS });
    assert.match(await failed.locator('[data-testid="error"]').textContent(), /non-empty/);
    await failed.getByRole("button", { name: "Discard" }).click();

    // A room name the server refuses, and a room the policy keeps out.
    for (const [room, why] of [
      ["no spaces", /roomId must be/],
      ["staff-ops", /you may not join staff-ops/],
    ]) {
      await alice.fill("#new-room", room);
      await alice.press("#new-room", "Enter");
      const error = alice.locator(".join-error");
      await error.waitFor({ timeout: UI_MS });
      assert.match(await error.textContent(), why);
      assert.equal(await alice.locator("#composer").isDisabled(), true);
      await screenshot(alice, `bad-input-room-${room.replace(/\W/g, "-")}`);
    }

    // Nothing saved was lost; the page still works.
    await alice.click('[data-testid="room-general"]');
    await shown(alice, "kept");
    await say(alice, "still here");
    await shown(alice, "still here");
    assert.deepEqual(
      (await messages(alice)).map((m) => m.content),
      ["kept", "still here"],
    );
    assert.deepEqual(alice.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});

test("history loads the newest page, and older pages on demand", T, async () => {
  const server = await startChat(["--rate-chat-message", "off"]);
  const browser = await launch();
  let seeder;
  try {
    // 35 messages from socket.io-client, before anyone opens the page.
    const token = await (await fetch(`${server.url}/dev/token?sub=seeder`)).text();
    const connection = connect(server.url, { token });
    seeder = connection.socket;
    await connection.ready;
    assert.equal((await emitAck(seeder, "chat:join", "general")).status, "ok");
    for (let i = 1; i <= 35; i++) {
      assert.equal((await emitAck(seeder, "chat:message", { roomId: "general", content: `m${i}` })).status, "ok");
    }
    const alice = await openChat(await browser.newContext(), server.url, "alice");
    await shown(alice, "m35");
    const numbers = async () => (await messages(alice)).map((m) => Number(m.content.slice(1)));
    assert.deepEqual(await numbers(), Array.from({ length: 30 }, (_, i) => i + 6), "the newest page, oldest first");
    await alice.getByRole("button", { name: "Load older messages" }).click();
    await eventually("35 messages", async () => (await messages(alice)).length === 35);
    assert.deepEqual(await numbers(), Array.from({ length: 35 }, (_, i) => i + 1));
    // The last page was short: nothing older to load.
    await alice.getByRole("button", { name: "Load older messages" }).waitFor({ state: "detached", timeout: UI_MS });
    // Live messages still come after the history.
    await emitAck(seeder, "chat:message", { roomId: "general", content: "m36" });
    await shown(alice, "m36");
    assert.equal((await messages(alice)).length, 36);
    assert.deepEqual(alice.errors, []);
  } finally {
    seeder?.disconnect();
    await browser.close();
    await server.stop();
  }
});
