// The web app against two reference-server nodes over a Redis of the
// test's own, sharing a PostgreSQL database (one the test creates and
// drops, on TIDEWIRE_TEST_POSTGRES_URL as in server-example/tests): users
// on different nodes chat and see each other's presence and typing, and a
// new tab on either node loads the one history.
//
// The nodes share the database because message ids come from the store:
// two nodes on SQLite files of their own would give the same ids to
// different messages (and keep different histories).
import { test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { launch, startChat, startRedis, openChat, say, shown, presence, messages, screenshot, UI_MS } from "./lib/browser.mjs";

const T = { timeout: 120_000 };
/** As server-example/tests/common/postgres.rs: where the tests may create databases. */
const POSTGRES = process.env.TIDEWIRE_TEST_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";

/**
 * Runs `body(nodes, databaseUrl)` with two chat nodes on a Redis and a
 * PostgreSQL database of their own, removed afterwards.
 */
async function withCluster(body) {
  const admin = new pg.Client({ connectionString: POSTGRES });
  await admin.connect().catch((err) => {
    throw new Error(`cannot reach PostgreSQL at ${POSTGRES} (set TIDEWIRE_TEST_POSTGRES_URL): ${err.message}`);
  });
  const name = `tidewire_web_${process.pid}_${Date.now()}`;
  const nodes = [];
  let redis;
  try {
    await admin.query(`CREATE DATABASE ${name}`);
    const url = new URL(POSTGRES);
    url.pathname = `/${name}`;
    redis = await startRedis();
    const env = { DATABASE_URL: url.toString() };
    for (const node of ["node-a", "node-b"]) {
      nodes.push(await startChat(["--redis-url", redis.url, "--node-name", node], env));
    }
    await body(nodes, url.toString());
  } finally {
    for (const node of nodes) await node.stop();
    await redis?.stop();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

/** Alice on node a and bob on node b chat; returns their pages. */
async function chatAcross(browser, [a, b]) {
  const alice = await openChat(await browser.newContext(), a.url, "alice");
  const bob = await openChat(await browser.newContext(), b.url, "bob");
  await presence(alice, ["alice", "bob"]);
  await presence(bob, ["alice", "bob"]);
  await say(alice, "hello from node a");
  await shown(bob, "hello from node a");
  await bob.fill("#composer", "typing on node b");
  await alice.getByText("Bob is typing…").waitFor({ timeout: UI_MS });
  await bob.press("#composer", "Enter");
  await shown(alice, "typing on node b");
  return [alice, bob];
}

test("users on two nodes over Redis chat and see each other's presence", T, async () => {
  const browser = await launch();
  try {
    await withCluster(async (nodes) => {
      const [alice, bob] = await chatAcross(browser, nodes);
      await screenshot(alice, "cluster-node-a");
      await screenshot(bob, "cluster-node-b");
      // Bob leaves: alice, on the other node, sees him go.
      await bob.close();
      await presence(alice, ["alice"]);
      assert.deepEqual(alice.errors, []);
    });
  } finally {
    await browser.close();
  }
});

test("two nodes sharing a PostgreSQL database serve one history", T, async () => {
  const browser = await launch();
  try {
    await withCluster(async (nodes, databaseUrl) => {
      const [alice] = await chatAcross(browser, nodes);
      await say(alice, "kept in postgres");
      await shown(alice, "kept in postgres");
      const want = ["hello from node a", "typing on node b", "kept in postgres"];
      // A new tab on each node reads the one history, in the order it was saved.
      for (const [node, user] of [[nodes[0], "carol"], [nodes[1], "dave"]]) {
        const page = await openChat(await browser.newContext(), node.url, user);
        for (const content of want) await shown(page, content);
        assert.deepEqual((await messages(page)).map((m) => m.content), want);
        assert.deepEqual(page.errors, []);
      }
      // And it is in the database the test made.
      const db = new pg.Client({ connectionString: databaseUrl });
      await db.connect();
      try {
        const { rows } = await db.query("SELECT content FROM messages WHERE room_id = 'general' ORDER BY seq");
        assert.deepEqual(
          rows.map((r) => r.content),
          want,
        );
      } finally {
        await db.end();
      }
    });
  } finally {
    await browser.close();
  }
});
