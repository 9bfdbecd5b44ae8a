import type { Refusal } from "../protocol";
import { Composer } from "./Composer";
import { useRoom } from "./useRoom";

function ErrorText({ error }: { error: Refusal }) {
  return (
    <span className="error" data-testid="error" data-code={error.code ?? ""}>
      {error.code ? `${error.code}: ` : ""}
      {error.message}
    </span>
  );
}

function time(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function RoomView({ roomId, me }: { roomId: string; me: string }) {
  const room = useRoom(roomId, me);
  const members = Object.values(room.members).sort((a, b) => a.userId.localeCompare(b.userId));
  const typing = Object.values(room.typing);

  return (
    <section className="room" data-testid="room" data-room={roomId} data-joined={String(room.joined)}>
      <div className="room-main">
        <h2># {roomId}</h2>
        {room.joinError && (
          <p className="join-error">
            Cannot join {roomId}: <ErrorText error={room.joinError} />
          </p>
        )}
        {room.historyError && (
          <p>
            History not loaded: <ErrorText error={room.historyError} />
          </p>
        )}
        {room.hasOlder && (
          <button className="older" onClick={() => void room.loadOlder()}>
            Load older messages
          </button>
        )}
        <ol className="messages">
          {room.messages.map((m) => (
            <li key={m.id} data-testid="message" data-id={m.id} data-state="sent" className={m.senderId === me ? "mine" : ""}>
              <span className="sender">{m.senderId}</span>
              <span className="content">{m.content}</span>
              <span className="meta">
                {time(m.createdAt)}
                {m.senderId === me && " · sent"}
              </span>
            </li>
          ))}
          {room.outgoing.map((o) => (
            <li key={o.key} data-testid="message" data-state={o.state} className={`mine ${o.state}`}>
              <span className="sender">{me}</span>
              <span className="content">{o.content}</span>
              <span className="meta">
                {o.state === "sending" ? (
                  "sending…"
                ) : (
                  <>
                    failed {o.error && <ErrorText error={o.error} />}{" "}
                    <button onClick={() => room.retry(o.key)}>Retry</button>
                    <button onClick={() => room.discard(o.key)}>Discard</button>
                  </>
                )}
              </span>
            </li>
          ))}
        </ol>
        <p className="typing" data-testid="typing">
          {typing.length === 1 && `${typing[0]} is typing…`}
          {typing.length > 1 && `${typing.join(", ")} are typing…`}
        </p>
        <Composer roomId={roomId} disabled={!room.joined} onSend={room.send} />
      </div>
      <aside className="presence">
        <h3 data-testid="online-count">{members.length} online</h3>
        <ul>
          {members.map((m) => (
            <li key={m.userId} data-testid="member" data-user={m.userId}>
              {m.name ?? m.userId}
            </li>
          ))}
        </ul>
      </aside>
    </section>
  );
}
