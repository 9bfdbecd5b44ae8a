// One socket per app, as socket.io's React guide teaches: SocketProvider
// creates it when a user is signed in and closes it when the user changes
// or the provider unmounts. Components read it with useSocket() and attach
// their listeners in effects, removing exactly those in the cleanup.
import { createContext, useContext, useEffect, useState, type ReactNode } from "react";
import { io, type Socket } from "socket.io-client";
import { useAuth } from "./auth";

const SocketContext = createContext<Socket | null>(null);

declare global {
  interface Window {
    /** With `?debug` in the page's URL: the app's socket, for tests and devtools. */
    tidewire?: { socket: Socket };
  }
}

export function SocketProvider({ url, children }: { url?: string; children: ReactNode }) {
  const { session, identity } = useAuth();
  const [socket, setSocket] = useState<Socket | null>(null);

  useEffect(() => {
    if (!session) return;
    const options = {
      // Asked on every (re)connection: a fresh token each time.
      auth: (send: (data: object) => void) => {
        identity.token(session).then(
          (token) => send({ token }),
          () => send({}), // the server answers "authentication required"
        );
      },
    };
    const created = url ? io(url, options) : io(options);
    setSocket(created);
    if (new URLSearchParams(location.search).has("debug")) window.tidewire = { socket: created };
    return () => {
      created.disconnect();
      setSocket(null);
      if (window.tidewire?.socket === created) delete window.tidewire;
    };
  }, [session, identity, url]);

  return <SocketContext.Provider value={socket}>{children}</SocketContext.Provider>;
}

/** The app's socket; null while nobody is signed in. */
export function useSocket(): Socket | null {
  return useContext(SocketContext);
}

/** What the connection banner shows. */
export interface Connection {
  /** `connecting` before the first connection, `reconnecting` after a drop. */
  status: "connecting" | "connected" | "reconnecting" | "refused";
  /** The transport in use: `polling` or `websocket`. */
  transport?: string;
  /** Whether the last reconnection recovered the session (missed packets replayed). */
  recovered: boolean;
  /** Why the server refused the connection, or the last connection error. */
  error?: string;
}

export function useConnection(): Connection {
  const socket = useSocket();
  const [state, setState] = useState<Connection>({ status: "connecting", recovered: false });

  useEffect(() => {
    if (!socket) return;
    const engineName = () => socket.io.engine?.transport?.name;
    const onConnect = () => {
      setState({ status: "connected", transport: engineName(), recovered: socket.recovered });
      socket.io.engine.once("upgrade", onUpgrade);
    };
    const onUpgrade = () => setState((prev) => ({ ...prev, transport: engineName() }));
    const onDisconnect = (reason: string) => {
      setState((prev) => ({ ...prev, status: socket.active ? "reconnecting" : "refused", error: reason }));
    };
    const onConnectError = (err: Error) => {
      // Not active: the server refused the handshake (a bad token); the
      // client does not retry by itself.
      setState((prev) => ({
        ...prev,
        status: socket.active ? (prev.status === "connecting" ? "connecting" : "reconnecting") : "refused",
        error: err.message,
      }));
    };
    if (socket.connected) onConnect();
    socket.on("connect", onConnect);
    socket.on("disconnect", onDisconnect);
    socket.on("connect_error", onConnectError);
    return () => {
      socket.off("connect", onConnect);
      socket.off("disconnect", onDisconnect);
      socket.off("connect_error", onConnectError);
      socket.io.engine?.off("upgrade", onUpgrade);
    };
  }, [socket]);

  return state;
}
