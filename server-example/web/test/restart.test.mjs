// Connection trouble under the page. Each user reaches the server through
// a TCP proxy of the test's own, so one user can be cut off while the
// other is not.
// * The server restarted on the same data directory: the banner shows,
//   the app reconnects by itself (with a fresh token from the new
//   process), history is intact from SQLite, and a message sent while one
//   user was still away reaches them when they are back.
// * A short drop with connection-state recovery on: the session is
//   recovered and the missed message is replayed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launch, startChat, tcpProxy, openChat, connected, joined, say, shown, messages, presence, screenshot, UI_MS } from "./lib/browser.mjs";
import { freePort } from "../../e2e/node/lib/cluster.mjs";

const T = { timeout: 120_000 };

/** An address where nothing listens: a proxy pointed there refuses every connection. */
async function nowhere() {
  return `http://127.0.0.1:${await freePort()}`;
}

test("the server restarted under the page: banner, reconnection, history intact, missed messages", T, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "tidewire-web-restart-"));
  const env = { TIDEWIRE_DATA_DIR: join(dataDir, "data") };
  let server = await startChat([], env);
  const proxies = [await tcpProxy(server.url), await tcpProxy(server.url)];
  const browser = await launch();
  try {
    const [toAlice, toBob] = proxies;
    const alice = await openChat(await browser.newContext(), toAlice.url, "alice");
    const bob = await openChat(await browser.newContext(), toBob.url, "bob");
    await say(alice, "before the restart");
    await say(bob, "me too");
    await shown(alice, "me too");
    await shown(bob, "before the restart");

    // Alice is cut off for longer than the restart.
    toAlice.retarget(await nowhere());
    await server.stop();
    for (const page of [alice, bob]) {
      await page.locator('[data-testid="banner"]').waitFor({ timeout: UI_MS });
      assert.match(await page.textContent('[data-testid="banner"]'), /reconnecting/);
    }
    await screenshot(alice, "restart-banner");

    server = await startChat([], env);
    toBob.retarget(server.url);
    toBob.cut();
    await connected(bob);
    await bob.locator('[data-testid="banner"]').waitFor({ state: "detached", timeout: UI_MS });
    await joined(bob, "general");
    await say(bob, "while alice was away");
    await shown(bob, "while alice was away");

    toAlice.retarget(server.url);
    await connected(alice);
    await alice.locator('[data-testid="banner"]').waitFor({ state: "detached", timeout: UI_MS });
    await shown(alice, "while alice was away");
    await presence(alice, ["alice", "bob"]);
    await presence(bob, ["alice", "bob"]);
    await say(alice, "back");
    await shown(bob, "back");
    const want = ["before the restart", "me too", "while alice was away", "back"];
    assert.deepEqual((await messages(alice)).map((m) => m.content), want);
    assert.deepEqual((await messages(bob)).map((m) => m.content), want);

    // A new tab loads the history from the new process's SQLite file.
    const carol = await openChat(await browser.newContext(), server.url, "carol");
    for (const content of want) await shown(carol, content);
    assert.deepEqual((await messages(carol)).map((m) => m.content), want);
    await screenshot(alice, "restart-reconnected");
    assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors], []);
  } finally {
    await browser.close();
    for (const p of proxies) p.close();
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test("a short drop with connection-state recovery: the session is recovered, the missed message replayed", T, async () => {
  const server = await startChat([], { TIDEWIRE_RECOVERY_MS: "60000" });
  const toAlice = await tcpProxy(server.url);
  const browser = await launch();
  try {
    const alice = await openChat(await browser.newContext(), toAlice.url, "alice");
    const bob = await openChat(await browser.newContext(), server.url, "bob");
    await say(bob, "before the drop");
    await shown(alice, "before the drop");

    toAlice.retarget(await nowhere());
    toAlice.cut();
    await alice.locator('[data-testid="banner"]').waitFor({ timeout: UI_MS });
    await say(bob, "during the drop");
    await shown(bob, "during the drop");

    toAlice.retarget(server.url);
    await alice.locator('[data-testid="connection"][data-status="connected"][data-recovered="true"]').waitFor({ timeout: UI_MS });
    await shown(alice, "during the drop");
    await say(alice, "recovered");
    await shown(bob, "recovered");
    assert.deepEqual(
      (await messages(alice)).map((m) => m.content),
      ["before the drop", "during the drop", "recovered"],
    );
    await screenshot(alice, "recovered-after-drop");
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  } finally {
    await browser.close();
    toAlice.close();
    await server.stop();
  }
});
