// WebSocket blocked in the page (as by a proxy that refuses upgrades): the
// app stays on HTTP long-polling and chats with a user on WebSocket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { launch, startChat, openChat, say, shown, presence, screenshot } from "./lib/browser.mjs";

const T = { timeout: 90_000 };

test("with WebSocket blocked the app chats over long-polling", T, async () => {
  const server = await startChat();
  const browser = await launch();
  try {
    const blocked = await browser.newContext();
    let refused = 0;
    // Every WebSocket the page opens is closed at once, never reaching the server.
    await blocked.routeWebSocket(/.*/, (ws) => {
      refused++;
      ws.close({ code: 1008, reason: "blocked" });
    });
    const alice = await openChat(blocked, server.url, "alice");
    const bob = await openChat(await browser.newContext(), server.url, "bob");
    await presence(alice, ["alice", "bob"]);
    await say(alice, "over polling");
    await shown(bob, "over polling");
    await say(bob, "over websocket");
    await shown(alice, "over websocket");
    // The upgrade was tried and refused: alice is still on polling.
    assert.ok(refused >= 1, "the page tried a WebSocket");
    assert.equal(await alice.getAttribute('[data-testid="connection"]', "data-transport"), "polling");
    await bob.locator('[data-testid="connection"][data-transport="websocket"]').waitFor({ timeout: 5000 });
    await screenshot(alice, "long-polling");
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
