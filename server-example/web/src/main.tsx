import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { AuthProvider } from "./auth";
import { developmentIdentity } from "./identity";
import { SocketProvider } from "./socket";
import "./styles.css";

// The identity provider: development tokens from the server that serves
// this page. Replace with your own IdentityProvider (see identity.ts).
const identity = developmentIdentity();

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <AuthProvider identity={identity}>
      <SocketProvider>
        <App />
      </SocketProvider>
    </AuthProvider>
  </StrictMode>,
);
