//! Tidewire for Node.js: the Rust Socket.IO engine with JavaScript
//! handlers, through napi-rs.
//!
//! This is the native layer (`index.js`, generated). Arguments cross the
//! boundary as a JSON text plus the binary attachments its placeholders
//! point to, so binary data is never copied into JSON; `tidewire.js` turns
//! them back into ordinary JavaScript values and Buffers. Handler callbacks
//! are weak: only a listening server keeps Node alive (`tidewire.js` holds
//! a handle while it listens).

// Callback types are spelled out in full (see below), which clippy finds
// complex.
#![allow(clippy::type_complexity)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, FnArgs, Promise};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi::{Error, Status};
use napi_derive::napi;
use tidewire::embed::{self, EmbedError, EmbedOptions, Embedded};
use tidewire::hub::{self, ConnectError};
use tidewire::protocol::socketio::Payload;

// Callbacks into JavaScript are `ThreadsafeFunction<T, R, T, Status, false,
// true>`: weak (they do not keep Node alive) and called with plain arguments
// (no leading error). Spelled out so that napi types them in index.d.ts.

type Result<T> = std::result::Result<T, Error<String>>;

/// A JavaScript `Error` whose `code` is `code`.
fn error(code: &str, message: impl std::fmt::Display) -> Error<String> {
    Error::new(code.to_owned(), message.to_string())
}

/// The same for async methods, whose errors napi requires to carry a
/// `Status`: the code leads the message (`ERR_X: ...`) and `tidewire.js`
/// moves it to `code`.
fn async_error(e: Error<String>) -> Error {
    Error::new(Status::GenericFailure, format!("{}: {}", e.status, e.reason))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn embed_error(e: EmbedError) -> Error<String> {
    error(e.code(), e)
}

/// JSON text and attachments from JavaScript to a payload (checked).
fn payload_from_js(json: &str, attachments: Vec<Buffer>) -> Result<Payload> {
    let attachments = attachments.iter().map(|b| Bytes::copy_from_slice(b)).collect();
    embed::payload_from_parts(json, attachments).map_err(embed_error)
}

/// A payload as JSON text and Buffers for JavaScript.
fn payload_to_js(payload: Payload) -> (String, Vec<Buffer>) {
    let (json, attachments) = embed::payload_to_parts(payload);
    (json, attachments.into_iter().map(|b| Buffer::from(b.to_vec())).collect())
}

/// Options of a server (all optional).
#[napi(object)]
#[derive(Default)]
pub struct ServerOptions {
    /// Interface to listen on (default `127.0.0.1`).
    pub host: Option<String>,
    /// Port (default 0: any free port; see `listen`'s result).
    pub port: Option<u32>,
    /// Milliseconds between heartbeats (default 25000).
    pub ping_interval: Option<u32>,
    /// Milliseconds to wait for a heartbeat's answer (default 20000).
    pub ping_timeout: Option<u32>,
    /// Largest message in bytes (default 1000000).
    pub max_payload: Option<u32>,
    /// Milliseconds a client has to join a namespace (default 45000).
    pub connect_timeout: Option<u32>,
    /// Origins allowed by CORS (default: none).
    pub cors_origins: Option<Vec<String>>,
    /// Rate limits and connection caps, as the JSON of the core's
    /// `LimitsSpec` (applied over the defaults).
    pub limits: Option<String>,
    /// Connection-state recovery window in milliseconds (default: off).
    pub recovery_ms: Option<u32>,
}

/// How a server joins a cluster over Redis (wire-compatible with
/// `@socket.io/redis-adapter`'s `createAdapter`).
#[napi(object)]
pub struct ClusterOptions {
    /// `redis://host:port/db`; with `redisCluster`, seed nodes separated by
    /// commas.
    pub redis_url: String,
    /// Channel prefix (default `socket.io`, the official adapter's `key`).
    pub prefix: Option<String>,
    /// Milliseconds requests to the other nodes wait (default 5000).
    pub request_timeout: Option<u32>,
    /// `redisUrl` names nodes of a Redis Cluster.
    pub redis_cluster: Option<bool>,
}

/// The handshake a connect middleware sees.
#[napi(object)]
pub struct HandshakeInfo {
    /// The namespace being joined.
    pub nsp: String,
    /// The handshake as JSON (socket.io's `socket.handshake` shape).
    pub json: String,
}

/// The one callback into JavaScript for connections, disconnections and
/// events (see `set_dispatcher`): weak, so it never keeps Node alive.
type Dispatcher = ThreadsafeFunction<
    FnArgs<(String, String, Socket, String, String, Vec<Buffer>, Option<Ack>)>,
    UnknownReturnValue,
    FnArgs<(String, String, Socket, String, String, Vec<Buffer>, Option<Ack>)>,
    Status,
    false,
    true,
>;

/// A Socket.IO server.
#[napi]
pub struct Server {
    inner: Embedded,
    dispatcher: Mutex<Option<Arc<Dispatcher>>>,
}

#[napi]
impl Server {
    /// A server with `options`; it listens once `listen` is called.
    #[napi(constructor)]
    pub fn new(options: Option<ServerOptions>) -> Result<Server> {
        let o = options.unwrap_or_default();
        let options = EmbedOptions {
            host: o.host,
            port: o.port,
            ping_interval_ms: o.ping_interval.map(u64::from),
            ping_timeout_ms: o.ping_timeout.map(u64::from),
            max_payload: o.max_payload.map(u64::from),
            connect_timeout_ms: o.connect_timeout.map(u64::from),
            cors_origins: o.cors_origins.unwrap_or_default(),
            limits: o.limits,
            recovery_ms: o.recovery_ms.map(u64::from),
        };
        Ok(Server { inner: Embedded::new(options).map_err(embed_error)?, dispatcher: Mutex::new(None) })
    }

    fn namespace(&self, nsp: &str) -> Result<hub::Namespace> {
        self.inner.namespace(nsp).map_err(embed_error)
    }

    /// Adds a connect middleware on `nsp`. `callback(handshake)` resolves
    /// to JSON: `{}` to accept, `{"user": id, "data": ...}` to accept as a
    /// user (the socket joins `user:<id>`), `{"error": message, "data":
    /// ...}` to refuse with a CONNECT_ERROR.
    #[napi]
    pub fn use_middleware(
        &self,
        nsp: String,
        callback: ThreadsafeFunction<HandshakeInfo, Promise<String>, HandshakeInfo, Status, false, true>,
    ) -> Result<()> {
        let callback = Arc::new(callback);
        self.namespace(&nsp)?.use_middleware(move |handshake: Arc<hub::Handshake>| {
            let callback = callback.clone();
            let nsp = nsp.clone();
            async move {
                let json = serde_json::to_string(&*handshake).unwrap_or_else(|_| "{}".to_owned());
                let decision = match callback.call_async(HandshakeInfo { nsp, json }).await {
                    Ok(promise) => promise.await,
                    Err(e) => Err(e),
                };
                let text = decision.map_err(|e| ConnectError::new(format!("middleware failed: {}", e.reason)))?;
                embed::admission_from_decision(&text)
            }
        });
        Ok(())
    }

    /// Sets the one callback every connection, disconnection and event of
    /// every namespace goes to, in the order they happen:
    /// `dispatch(nsp, kind, socket, name, json, attachments, ack)` where
    /// `kind` is `connection`, `disconnect` (`name` is the reason) or
    /// `event` (`name` is the event; `ack` is null unless asked for). One
    /// queue keeps a socket's `connection` ahead of its events. Set it
    /// before subscribing; it can be set once.
    #[napi]
    pub fn set_dispatcher(
        &self,
        dispatch: ThreadsafeFunction<
            FnArgs<(String, String, Socket, String, String, Vec<Buffer>, Option<Ack>)>,
            UnknownReturnValue,
            FnArgs<(String, String, Socket, String, String, Vec<Buffer>, Option<Ack>)>,
            Status,
            false,
            true,
        >,
    ) -> Result<()> {
        let mut slot = lock(&self.dispatcher);
        if slot.is_some() {
            return Err(error("ERR_INVALID_ARG", "the dispatcher is already set"));
        }
        *slot = Some(Arc::new(dispatch));
        Ok(())
    }

    fn dispatcher(&self) -> Result<Arc<Dispatcher>> {
        lock(&self.dispatcher).clone().ok_or_else(|| error("ERR_INVALID_ARG", "set the dispatcher first"))
    }

    /// Forwards the connections of `nsp` to the dispatcher.
    #[napi]
    pub fn subscribe_connections(&self, nsp: String) -> Result<()> {
        let dispatch = self.dispatcher()?;
        let ns = self.namespace(&nsp)?;
        let for_connect = dispatch.clone();
        let name = nsp.clone();
        ns.on_connect(move |socket: hub::Socket| {
            let (dispatch, nsp) = (for_connect.clone(), name.clone());
            async move {
                let args = (
                    nsp,
                    "connection".to_owned(),
                    Socket { inner: socket },
                    String::new(),
                    String::new(),
                    vec![],
                    None,
                );
                dispatch.call(args.into(), ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        ns.on_disconnect(move |socket: hub::Socket, reason: hub::DisconnectReason| {
            let (dispatch, nsp) = (dispatch.clone(), nsp.clone());
            async move {
                let args = (
                    nsp,
                    "disconnect".to_owned(),
                    Socket { inner: socket },
                    reason.to_string(),
                    String::new(),
                    vec![],
                    None,
                );
                dispatch.call(args.into(), ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        Ok(())
    }

    /// Forwards `event` on `nsp` to the dispatcher.
    #[napi]
    pub fn subscribe_event(&self, nsp: String, event: String) -> Result<()> {
        let dispatch = self.dispatcher()?;
        let name = event.clone();
        self.namespace(&nsp)?.on(event, move |socket: hub::Socket, event: hub::Event| {
            let (dispatch, nsp, name) = (dispatch.clone(), nsp.clone(), name.clone());
            async move {
                let (json, attachments) = payload_to_js(event.args);
                let ack = event.ack.map(|a| Ack { inner: Mutex::new(Some(a)) });
                let args = (nsp, "event".to_owned(), Socket { inner: socket }, name, json, attachments, ack);
                dispatch.call(args.into(), ThreadsafeFunctionCallMode::NonBlocking);
            }
        });
        Ok(())
    }

    /// Starts listening; resolves to the address, e.g. `127.0.0.1:3000`.
    #[napi]
    pub async fn listen(&self) -> napi::Result<String> {
        self.inner.listen().await.map(|a| a.to_string()).map_err(|e| async_error(embed_error(e)))
    }

    /// Disconnects every client and stops listening. Calling it again does
    /// nothing; the server cannot be reused.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.inner.close().await;
        Ok(())
    }

    /// Emits `event` to the sockets of `nsp` in `rooms` (all when empty)
    /// but not in `except`. Returns how many sockets it was queued for.
    #[napi]
    pub fn broadcast(
        &self,
        nsp: String,
        rooms: Vec<String>,
        except: Vec<String>,
        event: String,
        json: String,
        attachments: Vec<Buffer>,
    ) -> Result<u32> {
        let payload = payload_from_js(&json, attachments)?;
        Ok(embed::broadcast(self.namespace(&nsp)?.broadcast(), rooms, except, &event, payload) as u32)
    }

    /// The number of sockets connected to `nsp`.
    #[napi]
    pub fn socket_count(&self, nsp: String) -> Result<u32> {
        Ok(self.namespace(&nsp)?.socket_count() as u32)
    }

    /// Joins a cluster over Redis: broadcasts reach every node's sockets,
    /// official socket.io nodes included.
    #[napi]
    pub async fn join_cluster(&self, options: ClusterOptions) -> napi::Result<()> {
        let options = embed::RedisOptions {
            url: options.redis_url,
            prefix: options.prefix,
            request_timeout_ms: options.request_timeout.map(u64::from),
            cluster: options.redis_cluster.unwrap_or(false),
        };
        self.inner.join_redis(options).await.map_err(|e| async_error(embed_error(e)))
    }

    /// How many nodes serve `nsp`, this one included (1 outside a cluster).
    #[napi]
    pub async fn server_count(&self, nsp: String) -> napi::Result<u32> {
        let ns = self.namespace(&nsp).map_err(async_error)?;
        match ns.server_count().await {
            Ok(n) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => Err(async_error(error("ERR_CLUSTER", e))),
        }
    }

    /// Limits `event` on `nsp`: its size in bytes and a JSON schema (JSON
    /// text) of its first argument; refused events never reach a handler.
    #[napi]
    pub fn limit_event(
        &self,
        nsp: String,
        event: String,
        max_bytes: Option<u32>,
        schema: Option<String>,
    ) -> Result<()> {
        embed::limit_event(&self.namespace(&nsp)?, &event, max_bytes.map(u64::from), schema.as_deref())
            .map_err(embed_error)
    }

    /// Turns presence on for the rooms of `nsp` whose name starts with
    /// `prefix` (every room but the sockets' own and user rooms when empty).
    #[napi]
    pub fn enable_presence(&self, nsp: String, prefix: String) -> Result<()> {
        self.namespace(&nsp)?.enable_presence(hub::PresenceOptions::rooms_with_prefix(prefix));
        Ok(())
    }

    /// The users present in `room` of `nsp`, as JSON.
    #[napi]
    pub fn presence(&self, nsp: String, room: String) -> Result<String> {
        Ok(embed::presence_json(&self.namespace(&nsp)?, &room))
    }

    /// Drains gracefully (refuse newcomers, notify in batches, wait for
    /// in-flight acks, close), then stops. Resolves to the report as JSON.
    #[napi]
    pub async fn drain(
        &self,
        batch_size: Option<u32>,
        batch_interval_ms: Option<u32>,
        ack_deadline_ms: Option<u32>,
    ) -> napi::Result<String> {
        let options = hub::DrainOptions::from_millis(
            batch_size.map(|n| n as usize),
            batch_interval_ms.map(u64::from),
            ack_deadline_ms.map(u64::from),
        );
        let report = self.inner.drain(options).await;
        Ok(serde_json::to_string(&report).unwrap_or_else(|_| "{}".to_owned()))
    }
}

/// The reply to an `emitWithAck`.
#[napi(object)]
pub struct AckReply {
    /// The arguments as JSON.
    pub json: String,
    /// Their binary parts.
    pub attachments: Vec<Buffer>,
}

/// One connected socket.
#[napi]
pub struct Socket {
    inner: hub::Socket,
}

#[napi]
impl Socket {
    /// The socket id.
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.inner.id().to_owned()
    }

    /// The namespace.
    #[napi(getter)]
    pub fn nsp(&self) -> String {
        self.inner.namespace().to_owned()
    }

    /// Whether it is still connected.
    #[napi(getter)]
    pub fn connected(&self) -> bool {
        self.inner.connected()
    }

    /// The user it was admitted as, if any.
    #[napi(getter)]
    pub fn user(&self) -> Option<String> {
        self.inner.user_id().map(str::to_owned)
    }

    /// The handshake as JSON.
    #[napi(getter)]
    pub fn handshake(&self) -> String {
        serde_json::to_string(self.inner.handshake()).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Joins `room`.
    #[napi]
    pub fn join(&self, room: String) -> Result<()> {
        if room.is_empty() {
            return Err(error("ERR_INVALID_ARG", "a room name cannot be empty"));
        }
        self.inner.join(room).map_err(|e| error("ERR_TOO_MANY_ROOMS", e))
    }

    /// Leaves `room`.
    #[napi]
    pub fn leave(&self, room: String) {
        self.inner.leave(&room);
    }

    /// The rooms it is in (its own id included), sorted.
    #[napi]
    pub fn rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self.inner.rooms().iter().map(|r| r.to_string()).collect();
        rooms.sort();
        rooms
    }

    /// Sends `event` to this socket.
    #[napi]
    pub fn emit(&self, event: String, json: String, attachments: Vec<Buffer>) -> Result<()> {
        let payload = payload_from_js(&json, attachments)?;
        self.inner.emit(&event, payload).map_err(|e| error("ERR_SEND", e))
    }

    /// Sends `event` and resolves to the client's answer; rejects with code
    /// `ERR_ACK_TIMEOUT` after `timeout` ms (default: the server's),
    /// `ERR_DISCONNECTED`, or `ERR_SEND`.
    #[napi]
    pub async fn emit_with_ack(
        &self,
        event: String,
        json: String,
        attachments: Vec<Buffer>,
        timeout: Option<u32>,
    ) -> napi::Result<AckReply> {
        let payload = payload_from_js(&json, attachments).map_err(async_error)?;
        let timeout = timeout.map(|ms| Duration::from_millis(ms.into()));
        match embed::emit_with_ack(&self.inner, &event, payload, timeout).await {
            Ok(reply) => {
                let (json, attachments) = payload_to_js(reply);
                Ok(AckReply { json, attachments })
            }
            Err(hub::AckError::Timeout) => {
                Err(async_error(error("ERR_ACK_TIMEOUT", "the client did not answer in time")))
            }
            Err(hub::AckError::Disconnected) => Err(async_error(error("ERR_DISCONNECTED", "the socket disconnected"))),
            Err(e) => Err(async_error(error("ERR_SEND", e))),
        }
    }

    /// Emits `event` to `rooms` (all of the namespace when empty) except
    /// `except` and this socket. Returns how many sockets it reached.
    #[napi]
    pub fn broadcast(
        &self,
        rooms: Vec<String>,
        except: Vec<String>,
        event: String,
        json: String,
        attachments: Vec<Buffer>,
    ) -> Result<u32> {
        let payload = payload_from_js(&json, attachments)?;
        Ok(embed::broadcast(self.inner.broadcast(), rooms, except, &event, payload) as u32)
    }

    /// Disconnects the socket (`close`: the whole connection).
    #[napi]
    pub fn disconnect(&self, close: Option<bool>) {
        self.inner.disconnect(close.unwrap_or(false));
    }
}

/// The acknowledgement a client asked for; answer it once.
#[napi]
pub struct Ack {
    inner: Mutex<Option<hub::AckResponder>>,
}

#[napi]
impl Ack {
    /// Sends the answer. Errors with `ERR_ACK_SENT` the second time.
    #[napi]
    pub fn send(&self, json: String, attachments: Vec<Buffer>) -> Result<()> {
        let payload = payload_from_js(&json, attachments)?;
        let responder =
            lock(&self.inner).take().ok_or_else(|| error("ERR_ACK_SENT", "this acknowledgement was already sent"))?;
        responder.send(payload).map_err(|e| error("ERR_SEND", e))
    }
}
