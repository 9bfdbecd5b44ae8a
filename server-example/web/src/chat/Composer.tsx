import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { useSocket } from "../socket";

/** How often a continuing "typing" notice is repeated. */
const TYPING_REPEAT_MS = 2500;
/** Idle time after which the user no longer counts as typing. */
const TYPING_IDLE_MS = 3000;

export function Composer({
  roomId,
  disabled,
  onSend,
}: {
  roomId: string;
  disabled: boolean;
  onSend(content: string): void;
}) {
  const socket = useSocket();
  const [text, setText] = useState("");
  // When the last "typing" notice went out (0: not typing), and the idle timer.
  const typing = useRef({ sentAt: 0, idle: undefined as ReturnType<typeof setTimeout> | undefined });

  // Typing notices are volatile: dropped rather than queued while offline.
  const stopTyping = () => {
    clearTimeout(typing.current.idle);
    if (typing.current.sentAt && socket?.connected) socket.volatile.emit("chat:typing", { roomId, typing: false });
    typing.current.sentAt = 0;
  };

  // Stop typing in this room when the composer goes (room change, sign-out).
  useEffect(() => stopTyping, [socket, roomId]);

  const changed = (value: string) => {
    setText(value);
    if (!socket?.connected) return;
    const now = Date.now();
    if (value && now - typing.current.sentAt > TYPING_REPEAT_MS) {
      socket.volatile.emit("chat:typing", { roomId, typing: true });
      typing.current.sentAt = now;
    }
    clearTimeout(typing.current.idle);
    typing.current.idle = setTimeout(stopTyping, value ? TYPING_IDLE_MS : 0);
  };

  const submit = (e?: FormEvent) => {
    e?.preventDefault();
    // Sent as typed: the server checks length and content, and its refusal is shown.
    if (!text) return;
    onSend(text);
    setText("");
    stopTyping();
  };

  const key = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      submit();
    }
  };

  return (
    <form className="composer" onSubmit={submit}>
      <textarea
        id="composer"
        rows={2}
        placeholder={disabled ? "joining…" : `Message #${roomId}`}
        value={text}
        disabled={disabled}
        onChange={(e) => changed(e.target.value)}
        onKeyDown={key}
      />
      <button type="submit" disabled={disabled || !text}>
        Send
      </button>
    </form>
  );
}
