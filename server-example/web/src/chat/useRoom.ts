// One chat room, as a hook: joins the room when the component using it
// mounts (and again after every reconnection that did not recover the
// session), leaves it when it unmounts, loads history, follows live
// messages, presence and typing notices, and sends with acknowledgements.
//
// Listeners are attached in an effect and exactly those are removed in its
// cleanup, so a component mounted and unmounted many times never
// accumulates them; state is only changed through functional updates, so
// no handler reads a stale copy.
import { useCallback, useEffect, useRef, useState } from "react";
import { useSocket } from "../socket";
import { idAfter, mergeMessages, PAGE, request, retrying, type Member, type Message, type Refusal } from "../protocol";

/** A message of this tab's user that the server has not confirmed yet. */
export interface Outgoing {
  key: string;
  content: string;
  state: "sending" | "failed";
  error?: Refusal;
}

/** Gaps longer than this many pages after a drop are not filled (the user can page back). */
const MAX_CATCH_UP_PAGES = 10;
/** A typing notice not renewed within this long is dropped. */
const TYPING_TTL_MS = 6000;

export interface Room {
  joined: boolean;
  joinError?: Refusal;
  messages: Message[];
  outgoing: Outgoing[];
  members: Record<string, Member>;
  typing: Record<string, string>;
  hasOlder: boolean;
  historyError?: Refusal;
  loadOlder(): Promise<void>;
  send(content: string): void;
  retry(key: string): void;
  discard(key: string): void;
}

let sequence = 0;

export function useRoom(roomId: string, me: string): Room {
  const socket = useSocket();
  const [joined, setJoined] = useState(false);
  const [joinError, setJoinError] = useState<Refusal>();
  const [messages, setMessages] = useState<Message[]>([]);
  const [outgoing, setOutgoing] = useState<Outgoing[]>([]);
  const [members, setMembers] = useState<Record<string, Member>>({});
  const [typing, setTyping] = useState<Record<string, string>>({});
  const [hasOlder, setHasOlder] = useState(false);
  const [historyError, setHistoryError] = useState<Refusal>();
  // What is shown, for async code and callbacks to read (the catch-up
  // after a drop, paging back, retries); written only from the state it
  // mirrors.
  const shown = useRef({ messages, outgoing });
  useEffect(() => {
    shown.current = { messages, outgoing };
  }, [messages, outgoing]);

  // Join on mount (and after a reconnection that lost the session's rooms),
  // leave on unmount.
  useEffect(() => {
    if (!socket) return;
    let live = true;
    const wanted = () => live;
    const enter = async () => {
      const ack = await retrying(() => request(socket, "chat:join", roomId), wanted);
      if (!live) return;
      if (ack.status !== "ok") {
        setJoinError(ack);
        setJoined(false);
        return;
      }
      setJoinError(undefined);
      setJoined(true);
      const list = await retrying(() => request<{ users: Member[] }>(socket, "presence:list", roomId), wanted);
      if (live && list.status === "ok") {
        setMembers(Object.fromEntries(list.users.map((u) => [u.userId, u])));
      }
      await catchUp();
    };
    // The newest page, then older pages until they meet what is shown: the
    // messages missed while disconnected (or all of the first page).
    const catchUp = async () => {
      const known = shown.current.messages.at(-1)?.id;
      let before: string | undefined;
      for (let pages = 0; pages < MAX_CATCH_UP_PAGES; pages++) {
        const ack = await retrying(
          () => request<{ data: Message[] }>(socket, "chat:history", { roomId, before, limit: PAGE }),
          wanted,
        );
        if (!live) return;
        if (ack.status !== "ok") {
          setHistoryError(ack);
          return;
        }
        setHistoryError(undefined);
        const page = ack.data;
        setMessages((prev) => mergeMessages(prev, page));
        if (known === undefined) {
          setHasOlder(page.length === PAGE);
          return;
        }
        if (page.length < PAGE || !idAfter(page[0].id, known)) return;
        before = page[0].id;
      }
    };
    const onConnect = () => {
      // A recovered session is still in its rooms and got what it missed.
      if (!socket.recovered) void enter();
    };
    if (socket.connected) void enter();
    socket.on("connect", onConnect);
    return () => {
      live = false;
      socket.off("connect", onConnect);
      socket.emit("chat:leave", roomId);
    };
  }, [socket, roomId]);

  // Live events of this room.
  useEffect(() => {
    if (!socket) return;
    const timers = new Map<string, ReturnType<typeof setTimeout>>();
    const onMessage = (m: Message) => {
      if (m.roomId !== roomId) return;
      setMessages((prev) => mergeMessages(prev, [m]));
      stopTyping(m.senderId);
    };
    const onPresenceJoin = (p: Member & { roomId: string }) => {
      if (p.roomId !== roomId) return;
      setMembers((prev) => ({ ...prev, [p.userId]: { userId: p.userId, name: p.name } }));
    };
    const onPresenceLeave = (p: { roomId: string; userId: string }) => {
      if (p.roomId !== roomId) return;
      setMembers((prev) => {
        const { [p.userId]: _gone, ...rest } = prev;
        return rest;
      });
      stopTyping(p.userId);
    };
    const stopTyping = (userId: string) => {
      clearTimeout(timers.get(userId));
      timers.delete(userId);
      setTyping((prev) => {
        if (!(userId in prev)) return prev;
        const { [userId]: _gone, ...rest } = prev;
        return rest;
      });
    };
    const onTyping = (t: { roomId: string; userId: string; name?: string; typing: boolean }) => {
      if (t.roomId !== roomId || t.userId === me) return;
      if (!t.typing) return stopTyping(t.userId);
      clearTimeout(timers.get(t.userId));
      timers.set(
        t.userId,
        setTimeout(() => stopTyping(t.userId), TYPING_TTL_MS),
      );
      setTyping((prev) => ({ ...prev, [t.userId]: t.name ?? t.userId }));
    };
    socket.on("chat:new_message", onMessage);
    socket.on("presence:join", onPresenceJoin);
    socket.on("presence:leave", onPresenceLeave);
    socket.on("chat:typing", onTyping);
    return () => {
      socket.off("chat:new_message", onMessage);
      socket.off("presence:join", onPresenceJoin);
      socket.off("presence:leave", onPresenceLeave);
      socket.off("chat:typing", onTyping);
      for (const timer of timers.values()) clearTimeout(timer);
    };
  }, [socket, roomId, me]);

  const deliver = useCallback(
    async (key: string, content: string) => {
      if (!socket) return;
      const ack = await request<{ data: Message }>(socket, "chat:message", { roomId, content });
      if (ack.status === "ok") {
        setOutgoing((prev) => prev.filter((o) => o.key !== key));
        setMessages((prev) => mergeMessages(prev, [ack.data]));
      } else {
        setOutgoing((prev) => prev.map((o) => (o.key === key ? { ...o, state: "failed", error: ack } : o)));
      }
    },
    [socket, roomId],
  );

  const send = useCallback(
    (content: string) => {
      const key = `out-${++sequence}`;
      setOutgoing((prev) => [...prev, { key, content, state: "sending" }]);
      void deliver(key, content);
    },
    [deliver],
  );

  const retry = useCallback(
    (key: string) => {
      const item = shown.current.outgoing.find((o) => o.key === key);
      if (!item) return;
      setOutgoing((prev) => prev.map((o) => (o.key === key ? { ...o, state: "sending", error: undefined } : o)));
      void deliver(key, item.content);
    },
    [deliver],
  );

  const discard = useCallback((key: string) => setOutgoing((prev) => prev.filter((o) => o.key !== key)), []);

  const loadOlder = useCallback(async () => {
    if (!socket) return;
    const oldest = shown.current.messages[0]?.id;
    const ack = await request<{ data: Message[] }>(socket, "chat:history", { roomId, before: oldest, limit: PAGE });
    if (ack.status !== "ok") return setHistoryError(ack);
    setHistoryError(undefined);
    setMessages((prev) => mergeMessages(prev, ack.data));
    setHasOlder(ack.data.length === PAGE);
  }, [socket, roomId]);

  return { joined, joinError, messages, outgoing, members, typing, hasOlder, historyError, loadOlder, send, retry, discard };
}
