// Who the user is, and the access token the socket's handshake carries.
//
// The app asks an IdentityProvider for both. The one used by default,
// `developmentIdentity`, gets tokens from the reference server's
// development endpoint (`GET /dev/token?sub=..&name=..`), served only while
// the server runs without JWT_SECRET. To use a real identity provider,
// implement this interface and pass it to <AuthProvider identity={...}>
// in main.tsx: `signIn` runs your provider's login (a redirect to an OIDC
// authorization endpoint, a form posting to your backend...) and `token`
// returns a current access token, refreshing it when needed. The server
// verifies HS256 tokens signed with JWT_SECRET (`sub` the user id, `name`
// the display name, `exp` required): issue them from your backend after
// your provider's login, or verify your provider's tokens in
// `server-example/src/chat.rs` (`Tokens::verify`).

/** A signed-in user. */
export interface Session {
  userId: string;
  name: string;
}

/** Signs users in and hands out the tokens the socket connects with. */
export interface IdentityProvider {
  /** Signs a user in; rejects with a message for the sign-in form. */
  signIn(userId: string, name: string): Promise<Session>;
  /**
   * A current access token of `session`. Called on every (re)connection of
   * the socket, so a token that expired, or a server restarted with a new
   * development secret, never locks the user out.
   */
  token(session: Session): Promise<string>;
  /** Forgets the user (optional). */
  signOut?(session: Session): Promise<void>;
}

/** Tokens from the reference server's development endpoint. */
export function developmentIdentity(baseUrl = ""): IdentityProvider {
  const fetchToken = async (userId: string, name: string): Promise<string> => {
    const query = new URLSearchParams({ sub: userId, name });
    const res = await fetch(`${baseUrl}/dev/token?${query}`);
    const text = await res.text();
    if (!res.ok) {
      throw new Error(res.status === 404 ? "this server has no development tokens (JWT_SECRET is set)" : text);
    }
    return text;
  };
  return {
    async signIn(userId, name) {
      // Asks for a token once, so a server without the endpoint says so here.
      await fetchToken(userId, name);
      return { userId, name };
    },
    token: (session) => fetchToken(session.userId, session.name),
  };
}
