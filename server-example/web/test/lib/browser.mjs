// Browser helpers for the web app's tests: Debian's Chromium driven by
// playwright-core (no browser download: CHROMIUM_BIN, by default
// /usr/bin/chromium), the reference server from TIDEWIRE_SERVER_BIN (the
// e2e suite's helpers), and the app's pages.
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer } from "../../../e2e/node/lib/server.mjs";

export { startServer };
export { startRedis } from "../../../e2e/node/lib/cluster.mjs";
export { tcpProxy, within } from "../../../e2e/node/lib/server.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
/** Screenshots of each scenario (gitignored). */
export const ARTIFACTS = join(HERE, "..", "..", "test-artifacts");

/** How long a UI expectation may take. */
export const UI_MS = 15_000;

/** Headless Chromium; the caller closes it. */
export async function launch() {
  const executablePath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath} (Debian: apt-get install chromium; or set CHROMIUM_BIN)`);
  }
  // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
  return chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
}

/** The chat server in chat mode (development tokens), with `env` and `args`. */
export function startChat(args = [], env = {}) {
  return startServer(args, { chat: true, env });
}

/**
 * Opens the app at `url` in a new page of `context` and signs in as
 * `userId`; resolves once the socket is connected and `room` joined. Page
 * errors fail the test through `errors`.
 */
export async function openChat(context, url, userId, { name = userId[0].toUpperCase() + userId.slice(1), room = "general" } = {}) {
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (err) => page.errors.push(err));
  await page.goto(`${url}/?debug`);
  await page.fill("#user", userId);
  await page.fill("#name", name);
  await page.click("button[type=submit]");
  await connected(page);
  if (room !== "general") await page.click(`[data-testid="room-${room}"]`);
  await joined(page, room);
  return page;
}

/** Waits until the page's socket is connected. */
export async function connected(page) {
  await page.locator('[data-testid="connection"][data-status="connected"]').waitFor({ timeout: UI_MS });
}

/** Waits until the page shows `room`, joined. */
export async function joined(page, room) {
  await page.locator(`[data-testid="room"][data-room="${room}"][data-joined="true"]`).waitFor({ timeout: UI_MS });
}

/** Types `content` in the composer and sends it with Enter. */
export async function say(page, content) {
  await page.fill("#composer", content);
  await page.press("#composer", "Enter");
}

/** The shown messages: `[{sender, content, state}]`, in order. */
export function messages(page) {
  return page.$$eval('[data-testid="message"]', (items) =>
    items.map((li) => ({
      sender: li.querySelector(".sender")?.textContent,
      content: li.querySelector(".content")?.textContent,
      state: li.dataset.state,
    })),
  );
}

/** The user ids the presence list shows. */
export function members(page) {
  return page.$$eval('[data-testid="member"]', (items) => items.map((li) => li.dataset.user));
}

/** Resolves once `check()` is truthy (polling); fails after `ms` with `what` and the last value. */
export async function eventually(what, check, ms = UI_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until the message `content` is shown exactly once, with `state`. */
export async function shown(page, content, state = "sent") {
  let last;
  await eventually(`"${content}" shown once (${state})`, async () => {
    last = (await messages(page)).filter((m) => m.content === content);
    return last.length === 1 && last[0].state === state;
  }).catch((err) => {
    err.message += `; found ${JSON.stringify(last)}`;
    throw err;
  });
}

/** Waits until the presence list of `page` is exactly `users` (sorted). */
export async function presence(page, users) {
  let last;
  await eventually(`presence ${users}`, async () => {
    last = await members(page);
    return JSON.stringify(last) === JSON.stringify([...users].sort());
  }).catch((err) => {
    err.message += `; shown ${JSON.stringify(last)}`;
    throw err;
  });
}

/** Saves a screenshot of `page` as `<name>.png` among the test artefacts. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}
