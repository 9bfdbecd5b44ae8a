//! [`Client`]: one namespace over WebSocket, connected before it is
//! returned, without reconnection. A shorthand over [`Manager`] for tests
//! and tools that want a connection or an error.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::protocol::socketio::Payload;

use super::{Auth, ClientError, Manager, ManagerOptions, Socket, SocketOptions, SocketState, TransportKind};

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http(s)://host:port` or `ws(s)://host:port`, optionally with the
    /// Engine.IO path (default `/socket.io/`) and a query.
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

/// Where a client stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    /// Joined the namespace, with this socket id.
    Connected {
        /// The socket id the server gave.
        sid: String,
    },
    /// The connection ended, for this reason.
    Disconnected {
        /// Why.
        reason: String,
    },
}

fn client_state(s: &SocketState) -> ClientState {
    match s {
        SocketState::Connected { sid, .. } => ClientState::Connected { sid: sid.clone() },
        SocketState::Disconnected { reason, .. } => ClientState::Disconnected { reason: reason.clone() },
        SocketState::Refused { message, .. } => ClientState::Disconnected { reason: message.clone() },
        SocketState::Connecting => ClientState::Disconnected { reason: "connecting".into() },
    }
}

/// A connected Socket.IO client; clones share the connection.
#[derive(Clone, Debug)]
pub struct Client {
    socket: Socket,
    _manager: Manager,
    ack_timeout: Duration,
}

impl Client {
    /// Connects and joins the namespace.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`], [`ClientError::Connect`],
    /// [`ClientError::Refused`] or [`ClientError::Timeout`].
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let mut opts = ManagerOptions {
            reconnection: false,
            transports: vec![TransportKind::WebSocket],
            timeout: config.connect_timeout,
            ack_timeout: Some(config.ack_timeout),
            ..ManagerOptions::default()
        };
        // This shorthand's URL path is the Engine.IO path.
        if let Some((_, rest)) = config.url.split_once("://")
            && let Some(i) = rest.find('/')
        {
            let path = rest[i..].split('?').next().unwrap_or("/");
            if path != "/" {
                opts.path = path.to_owned();
            }
        }
        let manager = Manager::new(&config.url, opts)?;
        let auth = config.auth.map_or(Auth::None, Auth::Value);
        let socket = manager.socket(&config.namespace, SocketOptions { auth });
        let mut rx = socket.watch_state();
        let outcome = tokio::time::timeout(config.connect_timeout, async {
            loop {
                let state = rx.borrow_and_update().clone();
                match state {
                    SocketState::Connected { .. } => return Ok(()),
                    SocketState::Refused { message, data } => return Err(ClientError::Refused { message, data }),
                    SocketState::Disconnected { reason, .. } if reason.starts_with("connect error") => {
                        return Err(ClientError::Connect(reason));
                    }
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return Err(ClientError::Disconnected);
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(Client { socket, _manager: manager, ack_timeout: config.ack_timeout }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        client_state(&self.socket.state())
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<ClientState> {
        let mut from = self.socket.watch_state();
        let (tx, rx) = watch::channel(client_state(&from.borrow_and_update()));
        tokio::spawn(async move {
            while from.changed().await.is_ok() {
                let s = client_state(&from.borrow_and_update());
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Whether the client is connected.
    pub fn is_connected(&self) -> bool {
        self.socket.is_connected()
    }

    /// Calls `listener` for each `event` (`*` for every event).
    pub fn on(&self, event: impl Into<String>, listener: impl Fn(&str, Payload) + Send + Sync + 'static) {
        let event = event.into();
        let call = move |name: &str, args: &Payload| {
            listener(name, args.clone());
            None
        };
        if event == "*" {
            self.socket.on_any(call);
        } else {
            self.socket.on(&event, call);
        }
    }

    /// The socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Sends `event` with `args`.
    ///
    /// # Errors
    /// [`ClientError::Disconnected`].
    pub fn emit(&self, event: &str, args: Payload) -> Result<(), ClientError> {
        if !self.is_connected() {
            return Err(ClientError::Disconnected);
        }
        self.socket.emit(event, args)
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
        if !self.is_connected() {
            return Err(ClientError::Disconnected);
        }
        self.socket.emit_with_ack(event, args, Some(timeout.unwrap_or(self.ack_timeout))).await
    }

    /// Leaves the namespace and closes the connection.
    pub fn disconnect(&self) {
        self.socket.disconnect();
    }
}
