// The room component joins on mount and leaves on unmount, and removes
// exactly the listeners it attached: after many remounts the socket holds
// one listener per event and every message is shown once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { launch, startChat, openChat, joined, say, shown, messages, presence, screenshot } from "./lib/browser.mjs";

const T = { timeout: 120_000 };
const EVENTS = ["chat:new_message", "presence:join", "presence:leave", "chat:typing", "connect"];

/** How many listeners the page's socket holds for each event. */
function listenerCounts(page) {
  return page.evaluate(
    (events) => Object.fromEntries(events.map((e) => [e, window.tidewire.socket.listeners(e).length])),
    EVENTS,
  );
}

test("a room remounted many times shows each message once", T, async () => {
  const server = await startChat();
  const browser = await launch();
  try {
    const alice = await openChat(await browser.newContext(), server.url, "alice");
    const bob = await openChat(await browser.newContext(), server.url, "bob");
    await say(bob, "before the remounts");
    await shown(alice, "before the remounts");
    const before = await listenerCounts(alice);

    for (let i = 0; i < 20; i++) {
      await alice.click('[data-testid="room-random"]');
      await joined(alice, "random");
      await alice.click('[data-testid="room-general"]');
      await joined(alice, "general");
    }
    assert.deepEqual(await listenerCounts(alice), before, "no listener left behind by an unmounted room");
    // Joined once: bob sees alice once; the server kept one membership.
    await presence(bob, ["alice", "bob"]);

    await say(bob, "after the remounts");
    await shown(alice, "after the remounts");
    await say(alice, "alice answers");
    await shown(bob, "alice answers");
    // Give a duplicate time to show up.
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(
      (await messages(alice)).map((m) => m.content),
      ["before the remounts", "after the remounts", "alice answers"],
    );
    await screenshot(alice, "remounted-room");
    assert.deepEqual(alice.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
