import { useConnection } from "../socket";

/** A banner while the connection is down (or refused). */
export function ConnectionBanner() {
  const { status, error } = useConnection();
  if (status === "reconnecting") {
    return (
      <div className="banner" role="status" data-testid="banner">
        Connection lost: reconnecting…
      </div>
    );
  }
  if (status === "refused") {
    return (
      <div className="banner refused" role="alert" data-testid="banner">
        The server refused the connection: {error}
      </div>
    );
  }
  return null;
}

/** The connection's state and transport, in the header. */
export function ConnectionStatus() {
  const { status, transport, recovered } = useConnection();
  return (
    <span
      className={`status ${status}`}
      data-testid="connection"
      data-status={status}
      data-transport={transport ?? ""}
      data-recovered={String(recovered)}
    >
      {status === "connected" ? `connected over ${transport}` : status}
    </span>
  );
}
