//! A Socket.IO v5 client over WebSocket (`ws://`, and `wss://` through
//! rustls), the same one Rust programs, tests and the Swift binding use.
//!
//! [`Client::connect`] opens the Engine.IO session and joins a namespace
//! with an auth payload; then [`emit`](Client::emit),
//! [`emit_with_ack`](Client::emit_with_ack) and listeners registered with
//! [`on`](Client::on). The connection's state is observable
//! ([`state`](Client::state), [`watch_state`](Client::watch_state)). This
//! first version does not reconnect: a dropped connection ends in
//! [`ClientState::Disconnected`] with the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytestring::ByteString;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::engine::{self, Encoded, Frame};
use crate::protocol::socketio::{Decoder, Limits, Packet, PacketKind, Payload};
use crate::ws_message::to_message;

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http(s)://host:port` or `ws(s)://host:port`, optionally with a path
    /// (default `/socket.io/`).
    pub url: String,
    /// The namespace to join (default `/`).
    pub namespace: String,
    /// The CONNECT packet's auth payload.
    pub auth: Option<Value>,
    /// How long the WebSocket, the handshake and the CONNECT may take.
    pub connect_timeout: Duration,
    /// The default for [`Client::emit_with_ack`].
    pub ack_timeout: Duration,
}

impl ClientConfig {
    /// Defaults for `url`: namespace `/`, no auth, 20 s connect, 30 s acks.
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            namespace: "/".to_owned(),
            auth: None,
            connect_timeout: Duration::from_secs(20),
            ack_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not a `http(s)://` or `ws(s)://` URL.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The connection could not be made (network, TLS, HTTP upgrade).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The server refused the namespace (CONNECT_ERROR), with its message
    /// and data.
    #[error("connection refused: {message}")]
    Refused {
        /// The server's message.
        message: String,
        /// The server's data, if any.
        data: Option<Value>,
    },
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The client is disconnected.
    #[error("disconnected")]
    Disconnected,
}

/// Where a client stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    /// Joined the namespace, with this socket id.
    Connected {
        /// The socket id the server gave.
        sid: String,
    },
    /// The connection ended, for this reason (socket.io's reason strings:
    /// `io client disconnect`, `io server disconnect`, `transport close`,
    /// `ping timeout`, ...).
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// Receives events.
pub trait Listener: Send + Sync + 'static {
    /// Called on the client's task for each matching event; keep it short.
    fn on_event(&self, event: &str, args: Payload);
}

impl<F: Fn(&str, Payload) + Send + Sync + 'static> Listener for F {
    fn on_event(&self, event: &str, args: Payload) {
        self(event, args);
    }
}

type Listeners = HashMap<String, Vec<Arc<dyn Listener>>>;

struct Inner {
    nsp: ByteString,
    outbound: mpsc::UnboundedSender<Vec<Encoded>>,
    acks: Mutex<HashMap<u64, oneshot::Sender<Payload>>>,
    next_ack: AtomicU64,
    listeners: Mutex<Listeners>,
    state: watch::Sender<ClientState>,
    ack_timeout: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connected Socket.IO client; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("nsp", &self.inner.nsp).field("state", &self.state()).finish()
    }
}

/// The Socket.IO WebSocket URL for `url`.
fn websocket_url(url: &str) -> Result<String, ClientError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| ClientError::InvalidUrl(url.to_owned()))?;
    let scheme = match scheme {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(ClientError::InvalidUrl(url.to_owned())),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/socket.io/"),
    };
    if authority.is_empty() {
        return Err(ClientError::InvalidUrl(url.to_owned()));
    }
    let path = if path == "/" { "/socket.io/" } else { path };
    let sep = if path.contains('?') { '&' } else { '?' };
    Ok(format!("{scheme}://{authority}{path}{sep}EIO=4&transport=websocket"))
}

fn tls_connector() -> tokio_tungstenite::Connector {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(c) => tokio_tungstenite::Connector::Rustls(Arc::new(c)),
        Err(_) => tokio_tungstenite::Connector::Plain,
    }
}

impl Client {
    /// Connects and joins the namespace.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`], [`ClientError::Connect`],
    /// [`ClientError::Refused`], [`ClientError::Protocol`] or
    /// [`ClientError::Timeout`].
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let url = websocket_url(&config.url)?;
        let nsp: ByteString = if config.namespace.is_empty() { "/".into() } else { config.namespace.as_str().into() };
        let handshake = async {
            let connector = url.starts_with("wss://").then(tls_connector);
            let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, false, connector)
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?;
            let mut decoder = Decoder::for_client(Limits::default());
            // Engine.IO open, then our CONNECT, then its answer.
            let mut opened = false;
            let connect = Packet { nsp: nsp.clone(), kind: PacketKind::Connect(config.auth.clone()) };
            loop {
                let msg = ws
                    .next()
                    .await
                    .ok_or(ClientError::Disconnected)?
                    .map_err(|e| ClientError::Connect(e.to_string()))?;
                let Message::Text(text) = msg else { continue };
                let packet = engine::Packet::decode_text(ByteString::from(text.as_str()))
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                match packet {
                    engine::Packet::Open(_) if !opened => {
                        opened = true;
                        for e in connect.encode() {
                            ws.send(to_message(e)).await.map_err(|e| ClientError::Connect(e.to_string()))?;
                        }
                    }
                    engine::Packet::Ping(data) => {
                        let pong = engine::Packet::Pong(data).encode();
                        ws.send(to_message(pong)).await.map_err(|e| ClientError::Connect(e.to_string()))?;
                    }
                    engine::Packet::Message(Frame::Text(t)) => {
                        let Some(p) = decoder.decode_text(t).map_err(|e| ClientError::Protocol(e.to_string()))? else {
                            continue;
                        };
                        if p.nsp != nsp {
                            continue;
                        }
                        match p.kind {
                            PacketKind::Connect(Some(v)) => {
                                let sid = v.get("sid").and_then(Value::as_str).unwrap_or_default().to_owned();
                                return Ok((ws, decoder, sid));
                            }
                            PacketKind::ConnectError(v) => {
                                let message = v.get("message").and_then(Value::as_str).unwrap_or("refused").to_owned();
                                return Err(ClientError::Refused { message, data: v.get("data").cloned() });
                            }
                            _ => {}
                        }
                    }
                    engine::Packet::Close => return Err(ClientError::Disconnected),
                    _ => {}
                }
            }
        };
        let (ws, decoder, sid) =
            tokio::time::timeout(config.connect_timeout, handshake).await.map_err(|_| ClientError::Timeout)??;
        let (tx, rx) = mpsc::unbounded_channel();
        let (state, _) = watch::channel(ClientState::Connected { sid });
        let inner = Arc::new(Inner {
            nsp,
            outbound: tx,
            acks: Mutex::new(HashMap::new()),
            next_ack: AtomicU64::new(0),
            listeners: Mutex::new(HashMap::new()),
            state,
            ack_timeout: config.ack_timeout,
        });
        tokio::spawn(drive(inner.clone(), ws, decoder, rx));
        Ok(Client { inner })
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.inner.state.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<ClientState> {
        self.inner.state.subscribe()
    }

    /// Whether the client is connected.
    pub fn is_connected(&self) -> bool {
        matches!(*self.inner.state.borrow(), ClientState::Connected { .. })
    }

    /// Calls `listener` for each `event` (`*` for every event).
    pub fn on(&self, event: impl Into<String>, listener: impl Listener) {
        lock(&self.inner.listeners).entry(event.into()).or_default().push(Arc::new(listener));
    }

    fn send(&self, packet: &Packet) -> Result<(), ClientError> {
        if !self.is_connected() {
            return Err(ClientError::Disconnected);
        }
        self.inner.outbound.send(packet.encode()).map_err(|_| ClientError::Disconnected)
    }

    /// Sends `event` with `args`.
    ///
    /// # Errors
    /// [`ClientError::Disconnected`].
    pub fn emit(&self, event: &str, args: Payload) -> Result<(), ClientError> {
        self.send(&Packet::event(self.inner.nsp.clone(), event, args, None))
    }

    /// Sends `event` and waits for the server's acknowledgement.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] or [`ClientError::Disconnected`].
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, ClientError> {
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.acks).insert(id, tx);
        if let Err(e) = self.send(&Packet::event(self.inner.nsp.clone(), event, args, Some(id))) {
            lock(&self.inner.acks).remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(timeout.unwrap_or(self.inner.ack_timeout), rx).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                lock(&self.inner.acks).remove(&id);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Leaves the namespace and closes the connection.
    pub fn disconnect(&self) {
        let _ = self.send(&Packet::disconnect(self.inner.nsp.clone()));
        // An empty batch asks the driver to close after what is queued.
        let _ = self.inner.outbound.send(Vec::new());
        self.inner.finish("io client disconnect");
    }
}

impl Inner {
    fn finish(&self, reason: &str) {
        self.state.send_if_modified(|s| {
            if matches!(s, ClientState::Connected { .. }) {
                *s = ClientState::Disconnected { reason: reason.to_owned() };
                true
            } else {
                false
            }
        });
        // Pending acks fail with `Disconnected` as their senders drop.
        lock(&self.acks).clear();
    }

    fn dispatch(&self, packet: Packet) -> Option<&'static str> {
        if packet.nsp != self.nsp {
            return None;
        }
        match packet.kind {
            PacketKind::Event { mut payload, id } => {
                let name = match payload.data.first().and_then(Value::as_str) {
                    Some(n) => n.to_owned(),
                    None => return None,
                };
                payload.data.remove(0);
                if let Some(id) = id {
                    // No handler answers here: acknowledge with no arguments,
                    // as socket.io-client does without a callback.
                    let _ = self.outbound.send(Packet::ack(self.nsp.clone(), id, Payload::default()).encode());
                }
                let listeners: Vec<Arc<dyn Listener>> = {
                    let all = lock(&self.listeners);
                    all.get(&name).into_iter().chain(all.get("*")).flatten().cloned().collect()
                };
                for l in listeners {
                    l.on_event(&name, payload.clone());
                }
                None
            }
            PacketKind::Ack { payload, id } => {
                if let Some(tx) = lock(&self.acks).remove(&id) {
                    let _ = tx.send(payload);
                }
                None
            }
            PacketKind::Disconnect => Some("io server disconnect"),
            _ => None,
        }
    }
}

async fn drive(
    inner: Arc<Inner>,
    mut ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    mut decoder: Decoder,
    mut outbound: mpsc::UnboundedReceiver<Vec<Encoded>>,
) {
    let reason = loop {
        tokio::select! {
            batch = outbound.recv() => match batch {
                Some(batch) if batch.is_empty() => break "io client disconnect",
                Some(batch) => {
                    let mut failed = false;
                    for e in batch {
                        failed |= ws.feed(to_message(e)).await.is_err();
                    }
                    if failed || ws.flush().await.is_err() {
                        break "transport error";
                    }
                }
                None => break "io client disconnect",
            },
            msg = ws.next() => {
                let packet = match msg {
                    Some(Ok(Message::Text(t))) => engine::Packet::decode_text(ByteString::from(t.as_str())).ok(),
                    Some(Ok(Message::Binary(b))) => Some(engine::Packet::decode_binary(b)),
                    Some(Ok(Message::Close(_))) | None => break "transport close",
                    Some(Ok(_)) => None,
                    Some(Err(_)) => break "transport error",
                };
                let decoded = match packet {
                    Some(engine::Packet::Ping(data)) => {
                        if ws.send(to_message(engine::Packet::Pong(data).encode())).await.is_err() {
                            break "transport error";
                        }
                        None
                    }
                    Some(engine::Packet::Close) => break "transport close",
                    Some(engine::Packet::Message(Frame::Text(t))) => decoder.decode_text(t).ok().flatten(),
                    Some(engine::Packet::Message(Frame::Binary(b))) => decoder.decode_binary(b).ok().flatten(),
                    _ => None,
                };
                if let Some(reason) = decoded.and_then(|p| inner.dispatch(p)) {
                    break reason;
                }
            }
        }
    };
    let _ = ws.close(None).await;
    inner.finish(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls() {
        assert_eq!(websocket_url("http://h:1").unwrap(), "ws://h:1/socket.io/?EIO=4&transport=websocket");
        assert_eq!(websocket_url("https://h/").unwrap(), "wss://h/socket.io/?EIO=4&transport=websocket");
        assert_eq!(websocket_url("ws://h:2/custom/?x=1").unwrap(), "ws://h:2/custom/?x=1&EIO=4&transport=websocket");
        assert!(matches!(websocket_url("ftp://h"), Err(ClientError::InvalidUrl(_))));
        assert!(matches!(websocket_url("http://"), Err(ClientError::InvalidUrl(_))));
        assert!(matches!(websocket_url("nonsense"), Err(ClientError::InvalidUrl(_))));
    }
}
