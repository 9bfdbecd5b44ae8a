import { useState } from "react";
import { useAuth } from "./auth";
import { ConnectionBanner, ConnectionStatus } from "./chat/Connection";
import { RoomList } from "./chat/RoomList";
import { RoomView } from "./chat/RoomView";
import { SignIn } from "./SignIn";

const DEFAULT_ROOMS = ["general", "random"];

export function App() {
  const { session, signOut } = useAuth();
  const [rooms, setRooms] = useState<string[]>(DEFAULT_ROOMS);
  const [current, setCurrent] = useState(DEFAULT_ROOMS[0]);

  if (!session) return <SignIn />;

  const open = (roomId: string) => {
    setRooms((prev) => (prev.includes(roomId) ? prev : [...prev, roomId]));
    setCurrent(roomId);
  };

  return (
    <div className="app">
      <ConnectionBanner />
      <header>
        <h1>Tidewire chat</h1>
        <ConnectionStatus />
        <span className="me" data-testid="me">
          {session.name} <small>({session.userId})</small>
        </span>
        <button onClick={signOut}>Sign out</button>
      </header>
      <div className="main">
        <RoomList rooms={rooms} current={current} onOpen={open} />
        {/* Keyed by room: another room is another mount (join), the old one unmounts (leave). */}
        <RoomView key={current} roomId={current} me={session.userId} />
      </div>
    </div>
  );
}
