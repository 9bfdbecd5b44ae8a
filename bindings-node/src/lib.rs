//! Tidewire for Node.js: the Rust Socket.IO engine with JavaScript
//! handlers, through napi-rs.
//!
//! This is the native layer (`index.js`, generated): it converts values
//! and errors, and everything else lives in `tidewire::embed`. Options
//! cross as JSON (checked by `embed::options`), arguments as a JSON text
//! plus the binary attachments its placeholders point to (`embed::args`),
//! errors as a JavaScript `Error` whose `code` comes from
//! `embed::ErrorCode`. Handler callbacks are weak: only a listening server
//! keeps Node alive (`tidewire.js` holds a handle while it listens).

// Callback types are spelled out in full (see below), which clippy finds
// complex.
#![allow(clippy::type_complexity)]

pub mod adapter;
pub mod fanout;
pub mod host;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Error, Status};
use napi_derive::napi;
use tidewire::embed::{
    self, AckSlot, Delivery, DeliveryKind, DeliveryParts, Dialect, EmbedError, EmbedOptions, Embedded, ListenerSlot,
};
use tidewire::hub::{self, ConnectError};
use tidewire::protocol::socketio::Payload;

use crate::host::{EngineHost, Queue, Wake};

// Callbacks into JavaScript are `ThreadsafeFunction<T, R, T, Status, false,
// true>`: weak (they do not keep Node alive) and called with plain arguments
// (no leading error). Spelled out so that napi types them in index.d.ts.

type Result<T> = std::result::Result<T, Error<String>>;

/// A JavaScript `Error` whose `code` is the error's code.
fn error(e: EmbedError) -> Error<String> {
    Error::new(e.code().as_str().to_owned(), e.to_string())
}

/// The same for async methods, whose errors napi requires to carry a
/// `Status`: the code leads the message (`ERR_X: ...`) and `tidewire.js`
/// moves it to `code`.
fn async_error(e: EmbedError) -> Error {
    Error::new(Status::GenericFailure, format!("{}: {}", e.code(), e))
}

/// JSON text and attachments from JavaScript to a payload (checked).
fn payload_from_js(json: &str, attachments: Vec<Buffer>) -> std::result::Result<Payload, EmbedError> {
    let attachments = attachments.iter().map(|b| Bytes::copy_from_slice(b)).collect();
    embed::payload_from_parts(json, attachments)
}

/// A payload as JSON text and Buffers for JavaScript.
fn payload_to_js(payload: Payload) -> (String, Vec<Buffer>) {
    let (json, attachments) = embed::payload_to_parts(payload);
    (json, attachments.into_iter().map(|b| Buffer::from(b.to_vec())).collect())
}

/// The handshake a connect middleware sees.
#[napi(object)]
pub struct HandshakeInfo {
    /// The namespace being joined.
    pub nsp: String,
    /// The handshake as JSON (socket.io's `socket.handshake` shape).
    pub json: String,
}

/// An event another node sent with `serverSideEmit`.
#[napi(object)]
pub struct ServerEvent {
    /// Its arguments as JSON (binary parts as placeholders).
    pub json: String,
    /// Their binary parts.
    pub attachments: Vec<Buffer>,
    /// Whether the sender waits for an answer.
    pub ack: bool,
}

/// The answers to a `serverSideEmit` with an acknowledgement.
#[napi(object)]
pub struct ServerAnswers {
    /// Every answer that came, as one JSON array.
    pub json: String,
    /// Whether every other node answered in time.
    pub complete: bool,
    /// How many other nodes were asked.
    pub expected: u32,
}

/// A namespace a client asks for, as a dynamic namespace's matcher sees it.
#[napi(object)]
pub struct NamespaceRequest {
    /// The namespace's name.
    pub name: String,
    /// The client's auth payload as JSON.
    pub auth: String,
}

/// One connection, disconnection or event waiting for JavaScript.
struct Pending {
    nsp: String,
    sid: String,
    /// For `connection` and `disconnect`: JavaScript keeps the handle by
    /// id; the others name their socket by `sid` only.
    socket: Option<hub::Socket>,
    parts: DeliveryParts,
    handlers: Vec<u32>,
}

/// A batch of deliveries for JavaScript (see [`Server::take_deliveries`]):
/// three values for the whole batch, whatever its size, because each
/// value napi makes costs far more than the same bytes inside one JSON
/// text V8 parses.
#[napi(object, object_from_js = false)]
pub struct Deliveries {
    /// `[[kind, nsp, sid, name, handlers, ack, args, attachments, rooms],
    /// ...]`, in order: `kind` core's `DeliveryKind` (0 `connection`, 1
    /// `disconnect`, 2 an event, 3 `disconnecting`); `name` the event or the reason; `handlers` the ids
    /// given to `on`, in order; `ack` the number to answer with `answer`
    /// (0: none asked); `args` the event's arguments (null otherwise);
    /// `attachments` how many of `attachments` below are its binary parts;
    /// `rooms` what a `disconnecting` socket was in (null otherwise).
    pub json: String,
    /// The sockets of the `connection` and `disconnect` deliveries, in order.
    pub sockets: Vec<Socket>,
    /// The events' binary parts, in order.
    pub attachments: Vec<Buffer>,
}

/// Deliveries queue in order, and cross into the event loop once per
/// batch, not once per event.
struct NodeHost(Arc<Queue<Pending>>);

impl embed::Host<u32> for NodeHost {
    fn deliver(&self, socket: hub::Socket, delivery: Delivery, handlers: Vec<u32>) {
        let parts = delivery.into_parts();
        let (nsp, sid) = (socket.namespace().to_owned(), socket.id().to_owned());
        let socket = matches!(parts.kind, DeliveryKind::Connection | DeliveryKind::Disconnect).then_some(socket);
        let item = Pending { nsp, sid, socket, parts, handlers };
        self.0.push(item);
    }
}

/// The acknowledgements handed to JavaScript by number, until answered
/// (`Server::answer`) or dropped unanswered (`Server::drop_ack`, when
/// JavaScript collects the answer function).
#[derive(Default)]
struct Acks {
    last: u32,
    slots: HashMap<u32, AckSlot>,
}

impl Acks {
    fn insert(&mut self, slot: AckSlot) -> u32 {
        loop {
            self.last = self.last.wrapping_add(1).max(1);
            if let std::collections::hash_map::Entry::Vacant(e) = self.slots.entry(self.last) {
                e.insert(slot);
                return self.last;
            }
        }
    }
}

/// Writes `items` as the JSON of [`Deliveries`], numbering their acks.
fn deliveries(items: Vec<Pending>, acks: &Mutex<Acks>) -> Deliveries {
    let mut out = Vec::with_capacity(items.len() * 96);
    let mut sockets = Vec::new();
    let mut attachments = Vec::new();
    let mut acks = acks.lock().unwrap_or_else(PoisonError::into_inner);
    out.push(b'[');
    for (i, p) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let d = p.parts;
        let ack = d.ack.map_or(0, |slot| acks.insert(slot));
        let args = if d.json.is_empty() { "null" } else { d.json.as_str() };
        // Strings and numbers only: serializing them cannot fail.
        let _ = write!(out, "[{},", d.kind as u32);
        let _ = serde_json::to_writer(&mut out, &p.nsp);
        out.push(b',');
        let _ = serde_json::to_writer(&mut out, &p.sid);
        out.push(b',');
        let _ = serde_json::to_writer(&mut out, &d.name);
        out.push(b',');
        let _ = serde_json::to_writer(&mut out, &p.handlers);
        let _ = write!(out, ",{ack},{args},{},", d.attachments.len());
        let _ = serde_json::to_writer(&mut out, &d.rooms);
        out.push(b']');
        sockets.extend(p.socket.map(|inner| Socket { inner }));
        attachments.extend(d.attachments.into_iter().map(|b| Buffer::from(b.to_vec())));
    }
    out.push(b']');
    // Built from JSON texts only.
    let json = String::from_utf8(out).unwrap_or_else(|_| "[]".to_owned());
    Deliveries { json, sockets, attachments }
}

/// A Socket.IO server.
#[napi]
pub struct Server {
    inner: Embedded,
    listeners: ListenerSlot<u32>,
    /// Set with the dispatcher.
    deliveries: OnceLock<Arc<Queue<Pending>>>,
    acks: Mutex<Acks>,
}

#[napi]
impl Server {
    /// A server with `options`, the JSON of socket.io-style options (see
    /// `tidewire::embed::options`); it listens once `listen` is called.
    #[napi(constructor)]
    pub fn new(options: String) -> Result<Server> {
        let options = EmbedOptions::from_json(&options, Dialect::Node).map_err(error)?;
        Ok(Server {
            inner: Embedded::new(options).map_err(error)?,
            listeners: ListenerSlot::default(),
            deliveries: OnceLock::new(),
            acks: Mutex::default(),
        })
    }

    fn namespace(&self, nsp: &str) -> Result<hub::Namespace> {
        self.inner.namespace(nsp).map_err(error)
    }

    /// Adds a connect middleware on `nsp`. `callback(handshake)` resolves
    /// to the decision as JSON: `{"admit": result}` or `{"refuse":
    /// message, "data": ...}` (see `tidewire::embed::decision`).
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
                let json = embed::handshake_json(&handshake);
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

    /// Makes a dynamic namespace (socket.io's `io.of(regex)` / `io.of(fn)`)
    /// and returns its name (`/_0`, ...), by which the other methods find
    /// it. `matcher({name, auth})` resolves to whether a client may create
    /// namespace `name`; a rejection counts as no. A child starts with a
    /// copy of the parent's middlewares and handlers.
    #[napi]
    pub fn dynamic(
        &self,
        matcher: ThreadsafeFunction<NamespaceRequest, Promise<bool>, NamespaceRequest, Status, false, true>,
    ) -> Result<String> {
        let matcher = Arc::new(matcher);
        self.inner
            .dynamic(move |name: &str, auth: &serde_json::Value| {
                let matcher = matcher.clone();
                let request = NamespaceRequest { name: name.to_owned(), auth: auth.to_string() };
                async move {
                    match matcher.call_async(request).await {
                        Ok(promise) => promise.await.unwrap_or(false),
                        Err(_) => false,
                    }
                }
            })
            .map_err(error)
    }

    /// Sends `event` to the other nodes of the cluster (socket.io's
    /// `serverSideEmit`).
    #[napi]
    pub fn server_side_emit(&self, nsp: String, event: String, json: String, attachments: Vec<Buffer>) -> Result<()> {
        let payload = payload_from_js(&json, attachments).map_err(error)?;
        embed::server_side_emit(&self.namespace(&nsp)?, &event, &payload).map_err(error)
    }

    /// `server_side_emit` asking every other node for an answer: resolves,
    /// once all answered or after `timeout` ms (the cluster's request
    /// timeout when absent), to the answers and whether all came.
    #[napi]
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: String,
        event: String,
        json: String,
        attachments: Vec<Buffer>,
        timeout: Option<u32>,
    ) -> napi::Result<ServerAnswers> {
        let payload = payload_from_js(&json, attachments).map_err(async_error)?;
        let ns = self.inner.namespace(&nsp).map_err(async_error)?;
        let timeout = timeout.map(|ms| Duration::from_millis(ms.into()));
        let (json, replies) =
            embed::server_side_emit_with_ack(&ns, &event, &payload, timeout).await.map_err(async_error)?;
        let expected = u32::try_from(replies.expected).unwrap_or(u32::MAX);
        Ok(ServerAnswers { json, complete: replies.complete(), expected })
    }

    /// Handles `event` sent by other nodes: `callback(event)` resolves to
    /// the answer's JSON ("" for none). One callback per event; a second
    /// replaces the first.
    #[napi]
    pub fn on_server_event(
        &self,
        nsp: String,
        event: String,
        callback: ThreadsafeFunction<ServerEvent, Promise<String>, ServerEvent, Status, false, true>,
    ) -> Result<()> {
        let callback = Arc::new(callback);
        let ns = self.namespace(&nsp)?;
        embed::on_server_event(&ns, &event, move |args: Payload, ack: bool| {
            let callback = callback.clone();
            let (json, attachments) = payload_to_js(args);
            async move {
                match callback.call_async(ServerEvent { json, attachments, ack }).await {
                    Ok(promise) => promise.await.unwrap_or_default(),
                    Err(_) => String::new(),
                }
            }
        })
        .map_err(error)
    }

    /// The children of dynamic namespace `nsp` that exist now.
    #[napi]
    pub fn children(&self, nsp: String) -> Result<Vec<String>> {
        self.inner.children(&nsp).map_err(error)
    }

    /// Sets the one callback told when connections, disconnections and
    /// events of any namespace are waiting: `wake()`, once per batch;
    /// JavaScript then calls `take_deliveries`. Set it once, first.
    #[napi]
    pub fn set_dispatcher(&self, wake: Wake) -> Result<()> {
        let queue = Arc::new(Queue::new(wake));
        self.listeners.set(Arc::new(NodeHost(queue.clone()))).map_err(error)?;
        // Set once: the slot above refuses a second dispatcher.
        let _ = self.deliveries.set(queue);
        Ok(())
    }

    /// Every delivery waiting, in the order they happened (one queue keeps
    /// a socket's `connection` ahead of its events); the next one calls
    /// `wake` again.
    #[napi]
    pub fn take_deliveries(&self) -> Deliveries {
        deliveries(self.deliveries.get().map(|q| q.take()).unwrap_or_default(), &self.acks)
    }

    /// Answers acknowledgement `ack` of `take_deliveries`. Errors with
    /// `ERR_ACK_SENT` when it was answered (or dropped) already.
    #[napi]
    pub fn answer(&self, ack: u32, json: String, attachments: Vec<Buffer>) -> Result<()> {
        let slot = self.lock_acks().slots.remove(&ack).ok_or_else(|| error(EmbedError::AckAlreadySent))?;
        let payload = payload_from_js(&json, attachments).map_err(error)?;
        slot.send(payload).map_err(error)
    }

    /// Forgets acknowledgement `ack` unanswered (JavaScript collected its
    /// answer function without calling it).
    #[napi]
    pub fn drop_ack(&self, ack: u32) {
        self.lock_acks().slots.remove(&ack);
    }

    /// How many acknowledgements JavaScript holds unanswered.
    #[napi(getter)]
    pub fn acks_pending(&self) -> u32 {
        u32::try_from(self.lock_acks().slots.len()).unwrap_or(u32::MAX)
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, Acks> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The requests and WebSockets of an `http.Server` this server is
    /// attached to go through this (see `js/engine.js`): its sessions are
    /// this server's, in the same hub as its own listener's. `wake` and
    /// `wakeWrites` as `EngineHost`'s.
    #[napi]
    pub fn host_engine(&self, wake: Wake, wake_writes: Wake) -> Result<EngineHost> {
        Ok(EngineHost::over(self.inner.host_engine().map_err(error)?, wake, wake_writes))
    }

    /// Delivers the connections, disconnectings and disconnections of
    /// `nsp` (once per namespace).
    #[napi]
    pub fn watch(&self, nsp: String) -> Result<()> {
        self.listeners.watch(&self.inner, &nsp).map_err(error)?;
        self.listeners.watch_disconnecting(&self.inner, &nsp).map_err(error)
    }

    /// Adds handler `id` for `name` on `nsp` (`connection`, `disconnect`
    /// or an event), after the ones already there.
    #[napi]
    pub fn on(&self, nsp: String, name: String, id: u32) -> Result<()> {
        self.listeners.add(&self.inner, &nsp, &name, id).map_err(error)
    }

    /// Starts listening; resolves to the address, e.g. `127.0.0.1:3000`.
    #[napi]
    pub async fn listen(&self) -> napi::Result<String> {
        self.inner.listen().await.map(|a| a.to_string()).map_err(async_error)
    }

    /// Disconnects every client and stops listening. Calling it again does
    /// nothing; the server cannot be reused.
    #[napi]
    pub async fn close(&self) -> napi::Result<()> {
        self.inner.close().await;
        Ok(())
    }

    /// A broadcast to every socket of `nsp`, to narrow with `to` and
    /// `except`.
    #[napi]
    pub fn broadcast(&self, nsp: String) -> Result<BroadcastOperator> {
        Ok(BroadcastOperator { inner: embed::Broadcast::new(self.namespace(&nsp)?.broadcast()) })
    }

    /// The number of sockets connected to `nsp`.
    #[napi]
    pub fn socket_count(&self, nsp: String) -> Result<u32> {
        Ok(self.namespace(&nsp)?.socket_count() as u32)
    }

    /// Joins a cluster over Redis (`options`: the JSON of `{redisUrl,
    /// prefix, requestTimeout, redisCluster}`): broadcasts reach every
    /// node's sockets, official socket.io nodes included.
    #[napi]
    pub async fn join_cluster(&self, options: String) -> napi::Result<()> {
        let options = embed::options::redis_options_from_json(&options, Dialect::Node).map_err(async_error)?;
        self.inner.join_redis(options).await.map_err(async_error)
    }

    /// How many nodes serve `nsp`, this one included (1 outside a cluster).
    #[napi]
    pub async fn server_count(&self, nsp: String) -> napi::Result<u32> {
        let ns = self.inner.namespace(&nsp).map_err(async_error)?;
        let n = embed::server_count(&ns).await.map_err(async_error)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Limits `event` on `nsp` with `options`, the JSON of `{maxBytes,
    /// schema}`; refused events never reach a handler.
    #[napi]
    pub fn limit_event(&self, nsp: String, event: String, options: String) -> Result<()> {
        embed::limit_event(&self.namespace(&nsp)?, &event, &options, Dialect::Node).map_err(error)
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
    /// in-flight acks, close), then stops. `options` is the JSON of
    /// `{batchSize, batchInterval, ackDeadline}`. Resolves to the report as
    /// JSON.
    #[napi]
    pub async fn drain(&self, options: String) -> napi::Result<String> {
        let options = embed::options::drain_options_from_json(&options, Dialect::Node).map_err(async_error)?;
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
        embed::handshake_json(self.inner.handshake())
    }

    /// `socket.data` as JSON: what the middleware gave, or the recovered
    /// session's.
    #[napi(getter)]
    pub fn data(&self) -> String {
        self.inner.data().to_string()
    }

    /// Replaces `socket.data` (JSON), kept with the session for recovery.
    #[napi]
    pub fn set_data(&self, json: String) -> Result<()> {
        let value = serde_json::from_str(&json)
            .map_err(|e| error(EmbedError::InvalidArgument(format!("data must be JSON: {e}"))))?;
        self.inner.set_data(value);
        Ok(())
    }

    /// Whether the client got its previous session back.
    #[napi(getter)]
    pub fn recovered(&self) -> bool {
        self.inner.recovered()
    }

    /// Joins `room`.
    #[napi]
    pub fn join(&self, room: String) -> Result<()> {
        embed::join(&self.inner, room).map_err(error)
    }

    /// Leaves `room`.
    #[napi]
    pub fn leave(&self, room: String) {
        self.inner.leave(&room);
    }

    /// The rooms it is in (its own id included), sorted.
    #[napi]
    pub fn rooms(&self) -> Vec<String> {
        embed::rooms(&self.inner)
    }

    /// Sends `event` to this socket.
    #[napi]
    pub fn emit(&self, event: String, json: String, attachments: Vec<Buffer>) -> Result<()> {
        let payload = payload_from_js(&json, attachments).map_err(error)?;
        embed::emit(&self.inner, &event, payload).map_err(error)
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
        let reply = embed::emit_with_ack(&self.inner, &event, payload, timeout).await.map_err(async_error)?;
        let (json, attachments) = payload_to_js(reply);
        Ok(AckReply { json, attachments })
    }

    /// A broadcast to the namespace without this socket, to narrow with
    /// `to` and `except`.
    #[napi]
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator { inner: embed::Broadcast::new(self.inner.broadcast()) }
    }

    /// Disconnects the socket (`close`: the whole connection).
    #[napi]
    pub fn disconnect(&self, close: Option<bool>) {
        self.inner.disconnect(close.unwrap_or(false));
    }
}

/// Where a broadcast goes (socket.io's `BroadcastOperator`); each step
/// returns a new one.
#[napi]
pub struct BroadcastOperator {
    inner: embed::Broadcast,
}

#[napi]
impl BroadcastOperator {
    /// Also to the members of `rooms`.
    #[napi]
    pub fn to(&self, rooms: Vec<String>) -> Result<BroadcastOperator> {
        Ok(BroadcastOperator { inner: self.inner.to(rooms).map_err(error)? })
    }

    /// Not to the members of `rooms`.
    #[napi]
    pub fn except(&self, rooms: Vec<String>) -> Result<BroadcastOperator> {
        Ok(BroadcastOperator { inner: self.inner.except(rooms).map_err(error)? })
    }

    /// Emits `event`; returns how many sockets it was queued for.
    #[napi]
    pub fn emit(&self, event: String, json: String, attachments: Vec<Buffer>) -> Result<u32> {
        let payload = payload_from_js(&json, attachments).map_err(error)?;
        Ok(self.inner.emit(&event, payload).map_err(error)? as u32)
    }

    /// Emits `event` asking every recipient for an answer; resolves, once
    /// all answered or after `timeout` ms, to the answers that came and
    /// whether every recipient answered.
    #[napi]
    pub async fn emit_with_ack(
        &self,
        event: String,
        json: String,
        attachments: Vec<Buffer>,
        timeout: u32,
    ) -> napi::Result<BroadcastAcks> {
        let payload = payload_from_js(&json, attachments).map_err(async_error)?;
        let timeout = Duration::from_millis(timeout.into());
        let (answers, complete) = self.inner.emit_with_ack(&event, payload, timeout).await.map_err(async_error)?;
        let responses = answers
            .into_iter()
            .map(|answer| {
                let (json, attachments) = payload_to_js(answer);
                AckReply { json, attachments }
            })
            .collect();
        Ok(BroadcastAcks { responses, complete })
    }

    /// Skipped for sockets whose queue is backed up.
    #[napi]
    pub fn volatile(&self) -> BroadcastOperator {
        BroadcastOperator { inner: self.inner.volatile() }
    }

    /// This node's sockets only.
    #[napi]
    pub fn local(&self) -> BroadcastOperator {
        BroadcastOperator { inner: self.inner.local() }
    }

    /// Compressed or not.
    #[napi]
    pub fn compress(&self, yes: bool) -> BroadcastOperator {
        BroadcastOperator { inner: self.inner.compress(yes) }
    }

    /// The sockets it reaches join `room` (every node's).
    #[napi]
    pub fn sockets_join(&self, room: String) -> Result<()> {
        self.inner.join(&room).map_err(error)
    }

    /// The sockets it reaches leave `room` (every node's).
    #[napi]
    pub fn sockets_leave(&self, room: String) -> Result<()> {
        self.inner.leave(&room).map_err(error)
    }

    /// Disconnects the sockets it reaches (every node's).
    #[napi]
    pub fn disconnect_sockets(&self, close: bool) {
        self.inner.disconnect(close);
    }

    /// The sockets it reaches, every node's: `[{id, handshake, rooms,
    /// data}]` as JSON, and whether every node answered.
    #[napi]
    pub async fn fetch_sockets(&self) -> FetchedSockets {
        let (json, complete) = self.inner.fetch_sockets().await;
        FetchedSockets { json, complete }
    }
}

/// The answers to a broadcast with an acknowledgement.
#[napi(object)]
pub struct BroadcastAcks {
    /// Each answer's arguments, in arrival order.
    pub responses: Vec<AckReply>,
    /// Whether every recipient answered in time.
    pub complete: bool,
}

/// What `fetchSockets` found.
#[napi(object)]
pub struct FetchedSockets {
    /// `[{id, handshake, rooms, data}]`.
    pub json: String,
    /// Whether every node answered in time.
    pub complete: bool,
}
