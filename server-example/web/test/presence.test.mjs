// Presence in the browser counts users, not tabs: a third tab of the same
// user does not add them twice, closing one of their tabs keeps them
// present, closing the last one removes them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { launch, startChat, openChat, presence, say, shown, screenshot, members, eventually } from "./lib/browser.mjs";

const T = { timeout: 90_000 };

test("a user with several tabs is present once, until their last tab closes", T, async () => {
  const server = await startChat();
  const browser = await launch();
  try {
    const bob = await openChat(await browser.newContext(), server.url, "bob");
    const aliceContext = await browser.newContext();
    const tabs = [];
    for (let i = 0; i < 3; i++) {
      tabs.push(await openChat(aliceContext, server.url, "alice"));
      await presence(bob, ["alice", "bob"]);
    }
    for (const tab of tabs) await presence(tab, ["alice", "bob"]);
    assert.equal(await bob.textContent('[data-testid="online-count"]'), "2 online");
    // Each tab of alice gets what bob says, and what another of her tabs says.
    await say(bob, "to every tab");
    await say(tabs[0], "from tab one");
    for (const tab of tabs) {
      await shown(tab, "to every tab");
      await shown(tab, "from tab one");
    }
    await screenshot(bob, "presence-three-tabs");

    await tabs[2].close();
    // Still present: give a wrongly sent presence:leave time to arrive.
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await members(bob), ["alice", "bob"]);
    await presence(tabs[0], ["alice", "bob"]);

    await tabs[1].close();
    await tabs[0].close();
    await presence(bob, ["bob"]);
    await eventually("1 online", async () => (await bob.textContent('[data-testid="online-count"]')) === "1 online");
    await screenshot(bob, "presence-after-tabs-closed");
    assert.deepEqual(bob.errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
