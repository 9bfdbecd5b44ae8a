// The reference chat's events (server-example/src/chat.rs) and their acks.
import type { Socket } from "socket.io-client";

/** A saved message, as the server sends it. Ids are decimal strings, increasing. */
export interface Message {
  id: string;
  roomId: string;
  senderId: string;
  content: string;
  createdAt: string;
}

/** A member of a room, once per user however many tabs they have open. */
export interface Member {
  userId: string;
  name?: string;
  connections?: number;
}

/** The error shape every refusal of the server has (`code` on most). */
export interface Refusal {
  status: "error";
  code?: string;
  message: string;
  /** With `rate_limited`: when the request may be made again. */
  retryAfterMs?: number;
}

export type Ack<T> = ({ status: "ok" } & T) | Refusal;

/** How long an acknowledgement may take before the request counts as failed. */
export const ACK_TIMEOUT_MS = 8000;
/** Messages per history page. */
export const PAGE = 30;

/**
 * Emits `event` and waits for its ack. A missing ack (timeout, or the
 * connection dropped) is a refusal with code `timeout`, so callers handle
 * one shape.
 */
export async function request<T = object>(socket: Socket, event: string, ...args: unknown[]): Promise<Ack<T>> {
  try {
    const answer = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, ...args);
    if (answer && typeof answer === "object" && (answer.status === "ok" || answer.status === "error")) return answer;
    return { status: "error", code: "bad_answer", message: `unexpected answer to ${event}` };
  } catch {
    return { status: "error", code: "timeout", message: "no answer from the server" };
  }
}

/** `a` before `b` by message id (decimal strings of any length). */
export function byId(a: Message, b: Message): number {
  return a.id.length - b.id.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** The longest wait for a rate limit that `retrying` accepts. */
const MAX_RETRY_WAIT_MS = 10_000;

/**
 * Makes an idempotent request (join, history, presence) again when the
 * server answers `rate_limited`, after the `retryAfterMs` it names, while
 * `wanted()` (the component that asked is still mounted) and at most
 * `tries` times. Any other answer is returned as it is.
 */
export async function retrying<A extends Ack<object>>(attempt: () => Promise<A>, wanted: () => boolean, tries = 5): Promise<A> {
  for (let i = 0; ; i++) {
    const ack = await attempt();
    if (ack.status === "ok" || ack.code !== "rate_limited" || i >= tries || !wanted()) return ack;
    const wait = Math.min(Math.max(ack.retryAfterMs ?? 1000, 50), MAX_RETRY_WAIT_MS);
    await new Promise((r) => setTimeout(r, wait));
    if (!wanted()) return ack;
  }
}

/** Whether message id `a` comes after `b`. */
export function idAfter(a: string, b: string): boolean {
  return a.length > b.length || (a.length === b.length && a > b);
}

/** `known` and `incoming` merged: each id once, oldest first. */
export function mergeMessages(known: Message[], incoming: Message[]): Message[] {
  const ids = new Set(known.map((m) => m.id));
  const fresh = incoming.filter((m) => !ids.has(m.id) && (ids.add(m.id), true));
  if (fresh.length === 0) return known;
  return [...known, ...fresh].sort(byId);
}
