// The signed-in user, shared through a context. Changing it (sign-in,
// sign-out) is what makes SocketProvider close the old socket and open a
// new one.
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";
import type { IdentityProvider, Session } from "./identity";

interface Auth {
  session: Session | null;
  identity: IdentityProvider;
  signIn(userId: string, name: string): Promise<void>;
  signOut(): void;
}

const AuthContext = createContext<Auth | null>(null);

/** Where this tab remembers who signed in (per tab: two tabs may be two users). */
const STORAGE_KEY = "tidewire.session";

function remembered(): Session | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export function AuthProvider({ identity, children }: { identity: IdentityProvider; children: ReactNode }) {
  const [session, setSession] = useState<Session | null>(remembered);
  const signIn = useCallback(
    async (userId: string, name: string) => {
      const next = await identity.signIn(userId, name);
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify(next));
      setSession(next);
    },
    [identity],
  );
  const signOut = useCallback(() => {
    setSession((current) => {
      if (current) void identity.signOut?.(current);
      return null;
    });
    sessionStorage.removeItem(STORAGE_KEY);
  }, [identity]);
  const value = useMemo(() => ({ session, identity, signIn, signOut }), [session, identity, signIn, signOut]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside <AuthProvider>");
  return auth;
}
