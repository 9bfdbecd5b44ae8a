//! Tidewire's Socket.IO client for Swift (and every UniFFI language): a
//! thin layer over `tidewire::client`. Arguments cross as JSON text (an
//! array); the client's work runs on a runtime of its own, so callers may
//! await from any executor (Swift concurrency, Python asyncio, ...).
//!
//! Reconnection and offline buffering are not in this first cut: a
//! dropped connection ends in `ConnectionState::Disconnected`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tidewire::client::{self, Client, ClientConfig};
use tidewire::protocol::socketio::Payload;

uniffi::setup_scaffolding!();

/// The runtime the clients run on (two worker threads, started on first use).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tidewire-client")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tidewire client runtime: {e}"))
    })
}

/// Why a call failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ClientError {
    /// A bad argument (URL, JSON).
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong.
        message: String,
    },
    /// The connection could not be made.
    #[error("connection failed: {message}")]
    Connect {
        /// The cause.
        message: String,
    },
    /// The server refused to connect (its middleware said no).
    #[error("connection refused: {message}")]
    Refused {
        /// The server's message.
        message: String,
        /// The server's data, as JSON, if any.
        data_json: Option<String>,
    },
    /// The server broke the protocol.
    #[error("protocol error: {message}")]
    Protocol {
        /// What it did.
        message: String,
    },
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The client is disconnected.
    #[error("disconnected")]
    Disconnected,
}

impl From<client::ClientError> for ClientError {
    fn from(e: client::ClientError) -> ClientError {
        match e {
            client::ClientError::InvalidUrl(message) => ClientError::InvalidArgument { message },
            client::ClientError::Connect(message) => ClientError::Connect { message },
            client::ClientError::Refused { message, data } => {
                ClientError::Refused { message, data_json: data.map(|d| d.to_string()) }
            }
            client::ClientError::Protocol(message) => ClientError::Protocol { message },
            client::ClientError::Timeout => ClientError::Timeout,
            _ => ClientError::Disconnected,
        }
    }
}

/// Where a client stands.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectionState {
    /// Joined its namespace as socket `sid`.
    Connected {
        /// The socket id.
        sid: String,
    },
    /// The connection ended (`io client disconnect`, `io server
    /// disconnect`, `transport close`, ...).
    Disconnected {
        /// Why.
        reason: String,
    },
}

impl From<client::ClientState> for ConnectionState {
    fn from(s: client::ClientState) -> ConnectionState {
        match s {
            client::ClientState::Connected { sid } => ConnectionState::Connected { sid },
            client::ClientState::Disconnected { reason } => ConnectionState::Disconnected { reason },
        }
    }
}

/// Receives events (implemented in Swift).
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// `event` arrived with these arguments (a JSON array).
    fn on_event(&self, event: String, args_json: String);
}

/// Receives connection state changes (implemented in Swift).
#[uniffi::export(with_foreign)]
pub trait StateListener: Send + Sync {
    /// The state changed to `state`.
    fn on_state(&self, state: ConnectionState);
}

fn args(json: &str) -> Result<Payload, ClientError> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Array(data)) => Ok(Payload::json(data)),
        Ok(_) => Err(ClientError::InvalidArgument { message: "arguments must be a JSON array".into() }),
        Err(e) => Err(ClientError::InvalidArgument { message: format!("arguments are not JSON: {e}") }),
    }
}

fn to_json(payload: &Payload) -> String {
    serde_json::to_string(&payload.data).unwrap_or_else(|_| "[]".to_owned())
}

/// A Socket.IO client connected to one namespace.
#[derive(uniffi::Object)]
pub struct SocketClient {
    inner: Client,
}

#[uniffi::export]
impl SocketClient {
    /// Connects to `url` (`http(s)://` or `ws(s)://`), joins `namespace`
    /// (default `/`) with `auth_json` (a JSON object) as the auth payload.
    #[uniffi::constructor]
    pub async fn connect(
        url: String,
        namespace: Option<String>,
        auth_json: Option<String>,
        connect_timeout_ms: Option<u64>,
    ) -> Result<Arc<SocketClient>, ClientError> {
        let mut config = ClientConfig::new(url);
        if let Some(nsp) = namespace {
            config.namespace = nsp;
        }
        if let Some(auth) = auth_json {
            match serde_json::from_str::<Value>(&auth) {
                Ok(v @ Value::Object(_)) => config.auth = Some(v),
                _ => return Err(ClientError::InvalidArgument { message: "auth must be a JSON object".into() }),
            }
        }
        if let Some(ms) = connect_timeout_ms {
            config.connect_timeout = Duration::from_millis(ms);
        }
        let inner = runtime()
            .spawn(Client::connect(config))
            .await
            .map_err(|e| ClientError::Connect { message: e.to_string() })??;
        Ok(Arc::new(SocketClient { inner }))
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.inner.state().into()
    }

    /// Sends `event` with `args_json` (a JSON array).
    pub fn emit(&self, event: String, args_json: String) -> Result<(), ClientError> {
        Ok(self.inner.emit(&event, args(&args_json)?)?)
    }

    /// Sends `event` and returns the server's answer (a JSON array).
    pub async fn emit_with_ack(
        &self,
        event: String,
        args_json: String,
        timeout_ms: Option<u64>,
    ) -> Result<String, ClientError> {
        let payload = args(&args_json)?;
        let client = self.inner.clone();
        let timeout = timeout_ms.map(Duration::from_millis);
        let reply = runtime()
            .spawn(async move { client.emit_with_ack(&event, payload, timeout).await })
            .await
            .map_err(|_| ClientError::Disconnected)??;
        Ok(to_json(&reply))
    }

    /// Calls `listener` for each `event` (`*` for all).
    pub fn on(&self, event: String, listener: Arc<dyn EventListener>) {
        self.inner.on(event, move |name: &str, payload: Payload| listener.on_event(name.to_owned(), to_json(&payload)));
    }

    /// Calls `listener` with every state change from now on.
    pub fn watch_state(&self, listener: Arc<dyn StateListener>) {
        let mut rx = self.inner.watch_state();
        runtime().spawn(async move {
            while rx.changed().await.is_ok() {
                let state: ConnectionState = rx.borrow_and_update().clone().into();
                let done = matches!(state, ConnectionState::Disconnected { .. });
                listener.on_state(state);
                if done {
                    break;
                }
            }
        });
    }

    /// Leaves the namespace and closes the connection.
    pub fn disconnect(&self) {
        let client = self.inner.clone();
        // Inside the runtime: the client's queue is drained there.
        runtime().spawn(async move { client.disconnect() });
    }
}

/// The version of the Tidewire core.
#[uniffi::export]
pub fn core_version() -> String {
    tidewire::VERSION.to_owned()
}
