import { useState, type FormEvent } from "react";

export function RoomList({
  rooms,
  current,
  onOpen,
}: {
  rooms: string[];
  current: string;
  onOpen(roomId: string): void;
}) {
  const [name, setName] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    // The server decides what a valid room is (and who may enter it).
    if (name) onOpen(name);
    setName("");
  };
  return (
    <nav className="rooms">
      <h2>Rooms</h2>
      <ul>
        {rooms.map((room) => (
          <li key={room}>
            <button
              className={room === current ? "current" : ""}
              data-testid={`room-${room}`}
              onClick={() => onOpen(room)}
            >
              # {room}
            </button>
          </li>
        ))}
      </ul>
      <form onSubmit={submit}>
        <input id="new-room" placeholder="room name" value={name} onChange={(e) => setName(e.target.value)} />
        <button type="submit">Join</button>
      </form>
    </nav>
  );
}
