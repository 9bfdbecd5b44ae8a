import { useState, type FormEvent } from "react";
import { useAuth } from "./auth";

export function SignIn() {
  const { signIn } = useAuth();
  const [userId, setUserId] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await signIn(userId.trim(), name.trim() || userId.trim());
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setBusy(false);
    }
  };

  return (
    <form className="sign-in" onSubmit={submit}>
      <h1>Tidewire chat</h1>
      <p>Development sign-in: the server hands out a token for any user.</p>
      <label>
        User id
        <input id="user" value={userId} onChange={(e) => setUserId(e.target.value)} required autoFocus />
      </label>
      <label>
        Display name
        <input id="name" value={name} onChange={(e) => setName(e.target.value)} />
      </label>
      <button type="submit" disabled={busy || !userId.trim()}>
        Sign in
      </button>
      {error && (
        <p className="error" data-testid="error">
          {error}
        </p>
      )}
    </form>
  );
}
