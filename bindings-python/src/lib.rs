//! Tidewire for Python: the native module `tidewire._native` (PyO3).
//!
//! Thin on purpose: it wraps `tidewire::embed` and converts values and
//! errors. Options cross as JSON (checked by `embed::options`), arguments
//! as JSON text plus `bytes` attachments (`embed::args`), errors as the
//! exception class of their `embed::ErrorCode`, whose `code` is the same
//! string Node uses. The `tidewire` package (python/tidewire) turns JSON
//! into Python values and runs handlers on the caller's asyncio loop.
//! Callbacks registered here are plain callables, invoked from the engine's
//! threads with the GIL held; the package's callables only hand work to the
//! loop (`call_soon_threadsafe`).
//!
//! Sessions carried by the application's own ASGI server (`tidewire.ASGIApp`)
//! go through `Server.host_http` (long-polling requests) and
//! `Server.host_websocket` / `HostWebSocket` (WebSocket frames): core's
//! `embed::host` over `transport::host`.
//!
//! `RedisChannel` (module `pubsub`) carries python-socketio's manager
//! protocol over core's `RedisBus`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyType;
use tidewire::embed::host::{HttpAnswer, HttpRequest};
use tidewire::embed::{self, AckSlot, Delivery, Dialect, EmbedError, EmbedOptions, Embedded, ErrorCode, ListenerSlot};
use tidewire::hub::{self, ConnectError};
use tidewire::protocol::engine::Encoded;
use tidewire::protocol::socketio::Payload;
use tidewire::transport::host::{Inbound, Outbound, WebSocket};

mod pubsub;

create_exception!(_native, TidewireError, PyException, "Base class of Tidewire's errors.");
create_exception!(_native, InvalidArgument, TidewireError, "A bad argument (code ERR_INVALID_ARG).");
create_exception!(_native, TooManyRooms, InvalidArgument, "The socket is in too many rooms (ERR_TOO_MANY_ROOMS).");
create_exception!(_native, ServerClosed, TidewireError, "The server is closed (ERR_SERVER_CLOSED).");
create_exception!(_native, ListenError, TidewireError, "The server could not listen (ERR_LISTEN).");
create_exception!(_native, SendError, TidewireError, "The socket cannot take more (ERR_SEND).");
create_exception!(_native, AckTimeout, TidewireError, "The client did not answer in time (ERR_ACK_TIMEOUT).");
create_exception!(_native, Disconnected, TidewireError, "The socket disconnected (ERR_DISCONNECTED).");
create_exception!(_native, AckAlreadySent, TidewireError, "The ack was already sent (ERR_ACK_SENT).");
create_exception!(_native, ClusterError, TidewireError, "The cluster bus cannot answer (ERR_CLUSTER).");

/// The exception class of `code` (its `code` attribute is the same string).
fn class(py: Python<'_>, code: ErrorCode) -> Bound<'_, PyType> {
    match code {
        ErrorCode::InvalidArgument => py.get_type::<InvalidArgument>(),
        ErrorCode::TooManyRooms => py.get_type::<TooManyRooms>(),
        ErrorCode::ServerClosed => py.get_type::<ServerClosed>(),
        ErrorCode::Listen => py.get_type::<ListenError>(),
        ErrorCode::Send => py.get_type::<SendError>(),
        ErrorCode::AckTimeout => py.get_type::<AckTimeout>(),
        ErrorCode::Disconnected => py.get_type::<Disconnected>(),
        ErrorCode::AckAlreadySent => py.get_type::<AckAlreadySent>(),
        ErrorCode::Cluster => py.get_type::<ClusterError>(),
        _ => py.get_type::<TidewireError>(),
    }
}

fn error(e: EmbedError) -> PyErr {
    Python::attach(|py| PyErr::from_type(class(py, e.code()), e.to_string()))
}

fn payload(json: &str, attachments: Vec<Vec<u8>>) -> PyResult<Payload> {
    embed::payload_from_parts(json, attachments.into_iter().map(Bytes::from).collect()).map_err(error)
}

fn parts(payload: Payload) -> (String, Vec<Vec<u8>>) {
    let (json, attachments) = embed::payload_to_parts(payload);
    (json, attachments.into_iter().map(|b| b.to_vec()).collect())
}

/// Calls `f(*args)`; a Python exception there is printed (the engine's
/// threads have no caller to hand it to).
fn call<A: for<'py> pyo3::call::PyCallArgs<'py>>(f: &Py<PyAny>, args: A) {
    Python::attach(|py| {
        if let Err(e) = f.call1(py, args) {
            e.print(py);
        }
    });
}

/// A handler: any Python callable, shared by core's handler lists.
type Handler = Arc<Py<PyAny>>;

/// A delivery waiting for the loop to take it.
struct Pending {
    nsp: String,
    kind: &'static str,
    socket: hub::Socket,
    name: String,
    json: String,
    attachments: Vec<Bytes>,
    ack: Option<AckSlot>,
    handlers: Vec<Handler>,
}

/// What `take_deliveries` gives per delivery.
type Taken = (String, &'static str, Socket, String, String, Vec<Vec<u8>>, Option<Ack>, Vec<Py<PyAny>>);

/// Deliveries queue in one batch (core's `embed::Batch`, in order); the
/// first one since the loop last took them calls the package's `wake`,
/// which schedules one drain on the loop: one crossing into the loop per
/// batch, and the engine's threads only take the interpreter's lock for
/// that wake-up.
struct PyHost {
    wake: Py<PyAny>,
    batch: Arc<embed::Batch<Pending>>,
}

impl embed::Host<Handler> for PyHost {
    fn deliver(&self, socket: hub::Socket, delivery: Delivery, handlers: Vec<Handler>) {
        let embed::DeliveryParts { kind, name, json, attachments, ack, .. } = delivery.into_parts();
        // python-socketio has no `disconnecting` (this server never asks for it).
        if kind == embed::DeliveryKind::Disconnecting {
            return;
        }
        let kind = kind.as_str();
        let nsp = socket.namespace().to_owned();
        let pending = Pending { nsp, kind, socket, name, json, attachments, ack, handlers };
        if self.batch.push(pending) {
            Python::attach(|py| {
                if let Err(e) = self.wake.call0(py) {
                    e.print(py);
                    // Nobody will drain: drop them, so the next delivery
                    // wakes again.
                    drop(self.batch.take());
                }
            });
        }
    }
}

/// A Socket.IO server (not listening until `start`).
#[pyclass(frozen, module = "tidewire._native")]
struct Server {
    inner: Arc<Embedded>,
    listeners: ListenerSlot<Handler>,
    batch: Arc<embed::Batch<Pending>>,
}

#[pymethods]
impl Server {
    /// A server with `options`, the JSON of the keyword options (see
    /// `tidewire::embed::options`).
    #[new]
    fn new(options: &str) -> PyResult<Server> {
        let options = EmbedOptions::from_json(options, Dialect::Python).map_err(error)?;
        Ok(Server {
            inner: Arc::new(Embedded::new(options).map_err(error)?),
            listeners: ListenerSlot::default(),
            batch: Arc::default(),
        })
    }

    /// Adds a connect middleware on `nsp`: `callback(handshake_json,
    /// reply)`; the decision goes to `reply.resolve(json)` (see
    /// `tidewire::embed::decision` for its shape).
    fn use_middleware(&self, nsp: &str, callback: Py<PyAny>) -> PyResult<()> {
        let callback = Arc::new(callback);
        self.namespace(nsp)?.use_middleware(move |handshake: Arc<hub::Handshake>| {
            let callback = callback.clone();
            async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let reply = Reply { tx: Mutex::new(Some(tx)) };
                call(&callback, (embed::handshake_json(&handshake), reply));
                let text = rx.await.map_err(|_| ConnectError::new("the connect middleware did not answer"))?;
                embed::admission_from_decision(&text)
            }
        });
        Ok(())
    }

    /// Sets the one callback told when connections, disconnections and
    /// events are waiting: `wake()`, called on an engine thread once per
    /// batch; the package then calls `take_deliveries` on its loop.
    fn set_dispatcher(&self, wake: Py<PyAny>) -> PyResult<()> {
        self.listeners.set(Arc::new(PyHost { wake, batch: self.batch.clone() })).map_err(error)
    }

    /// Every delivery waiting, in order, as `(nsp, kind, socket, name,
    /// json, attachments, ack, handlers)`: `kind` is `connection`,
    /// `disconnect` (`name` is the reason) or `event`, `handlers` those
    /// added with `on`, in order. The next delivery calls `wake` again.
    fn take_deliveries(&self, py: Python<'_>) -> Vec<Taken> {
        self.batch
            .take()
            .into_iter()
            .map(|p| {
                let handlers = p.handlers.iter().map(|h| h.clone_ref(py)).collect();
                let attachments = p.attachments.into_iter().map(|b| b.to_vec()).collect();
                let ack = p.ack.map(|inner| Ack { inner });
                (p.nsp, p.kind, Socket { inner: p.socket }, p.name, p.json, attachments, ack, handlers)
            })
            .collect()
    }

    /// Delivers the connections and disconnections of `nsp` (once per
    /// namespace).
    fn watch(&self, nsp: &str) -> PyResult<()> {
        self.listeners.watch(&self.inner, nsp).map_err(error)
    }

    /// Adds `handler` for `name` on `nsp` (`connection`, `disconnect` or an
    /// event), after the ones already there.
    fn on(&self, nsp: &str, name: &str, handler: Py<PyAny>) -> PyResult<()> {
        self.listeners.add(&self.inner, nsp, name, Arc::new(handler)).map_err(error)
    }

    /// Starts listening; an awaitable of `"host:port"`.
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            inner.listen().await.map(|a| a.to_string()).map_err(error)
        })
    }

    /// Disconnects everyone and stops; an awaitable.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            inner.close().await;
            Ok(())
        })
    }

    /// A broadcast to every socket of `nsp`, to narrow with `to` and
    /// `except_`.
    fn broadcast(&self, nsp: &str) -> PyResult<BroadcastOperator> {
        Ok(BroadcastOperator { inner: embed::Broadcast::new(self.namespace(nsp)?.broadcast()) })
    }

    /// Sockets connected to `nsp`.
    fn socket_count(&self, nsp: &str) -> PyResult<usize> {
        Ok(self.namespace(nsp)?.socket_count())
    }

    /// Joins a cluster over Redis (`@socket.io/redis-adapter`'s protocol;
    /// `options`: the JSON of `redis_url`, `prefix`, `request_timeout`,
    /// `redis_cluster`); an awaitable.
    fn join_cluster<'py>(&self, py: Python<'py>, options: &str) -> PyResult<Bound<'py, PyAny>> {
        let options = embed::options::redis_options_from_json(options, Dialect::Python).map_err(error)?;
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move { inner.join_redis(options).await.map_err(error) })
    }

    /// How many nodes serve `nsp`, this one included; an awaitable.
    fn server_count<'py>(&self, py: Python<'py>, nsp: &str) -> PyResult<Bound<'py, PyAny>> {
        let ns = self.namespace(nsp)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move { embed::server_count(&ns).await.map_err(error) })
    }

    /// Limits `event` on `nsp` (`options`: the JSON of `max_bytes`,
    /// `schema`).
    fn limit_event(&self, nsp: &str, event: &str, options: &str) -> PyResult<()> {
        embed::limit_event(&self.namespace(nsp)?, event, options, Dialect::Python).map_err(error)
    }

    /// Turns presence on for the rooms of `nsp` starting with `prefix`.
    fn enable_presence(&self, nsp: &str, prefix: String) -> PyResult<()> {
        self.namespace(nsp)?.enable_presence(hub::PresenceOptions::rooms_with_prefix(prefix));
        Ok(())
    }

    /// The users present in `room` of `nsp`, as JSON.
    fn presence(&self, nsp: &str, room: &str) -> PyResult<String> {
        Ok(embed::presence_json(&self.namespace(nsp)?, room))
    }

    /// Drains gracefully, then stops (`options`: the JSON of `batch_size`,
    /// `batch_interval`, `ack_deadline`); an awaitable of
    /// `(connections, batches, acks_abandoned)`.
    fn drain<'py>(&self, py: Python<'py>, options: &str) -> PyResult<Bound<'py, PyAny>> {
        let options = embed::options::drain_options_from_json(options, Dialect::Python).map_err(error)?;
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let r = inner.drain(options).await;
            Ok((r.connections, r.batches, r.acks_abandoned))
        })
    }

    /// Answers a long-polling request carried by the host's HTTP server
    /// (`request`: `(method, target, headers, remote, secure)`, `body`
    /// complete); an awaitable of `(status, headers, body)`. A pending
    /// `GET` waits for packets: cancel it when the client goes away.
    fn host_http<'py>(&self, py: Python<'py>, request: HostRequest, body: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.host_engine()?;
        let request = host_request(request);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            embed::host::http(&engine, &request, Bytes::from(body)).await.map(host_answer).map_err(error)
        })
    }

    /// Decides a WebSocket request carried by the host's server: a
    /// started `HostWebSocket` to accept, or the HTTP answer `(status,
    /// headers, body)` to refuse with.
    fn host_websocket(
        &self,
        py: Python<'_>,
        request: HostRequest,
    ) -> PyResult<(Option<HostWebSocket>, Option<HostAnswer>)> {
        let engine = self.host_engine()?;
        let request = host_request(request);
        py.detach(|| {
            let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
            match embed::host::websocket(&engine, &request).map_err(error)? {
                Ok(accept) => Ok((Some(HostWebSocket { inner: Arc::new(accept.start()) }), None)),
                Err(answer) => Ok((None, Some(host_answer(answer)))),
            }
        })
    }
}

impl Server {
    fn namespace(&self, nsp: &str) -> PyResult<hub::Namespace> {
        self.inner.namespace(nsp).map_err(error)
    }

    fn host_engine(&self) -> PyResult<tidewire::engine::Engine> {
        // Made on first use: its heartbeats run on the binding's runtime.
        let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
        self.inner.host_engine().map_err(error)
    }
}

/// An HTTP request carried by the host's server: `(method, target,
/// headers, remote, secure)`, as the ASGI scope has them.
type HostRequest = (String, String, Vec<(Vec<u8>, Vec<u8>)>, Option<String>, bool);

/// An HTTP answer for the host's server: `(status, headers, body)`.
type HostAnswer = (u16, Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>);

fn host_request((method, target, headers, remote, secure): HostRequest) -> HttpRequest {
    HttpRequest { method, target, headers, remote, secure }
}

fn host_answer(answer: HttpAnswer) -> HostAnswer {
    let headers = answer.headers.into_iter().map(|(n, v)| (n.into_bytes(), v)).collect();
    (answer.status, headers, answer.body.to_vec())
}

/// A session's WebSocket carried by the host's server: feed it what the
/// client sends, write what `next_outgoing` gives.
#[pyclass(frozen, module = "tidewire._native")]
struct HostWebSocket {
    inner: Arc<WebSocket>,
}

impl HostWebSocket {
    fn receive(&self, py: Python<'_>, message: Inbound) {
        let ws = &self.inner;
        // The session's handlers may wait for locks a delivery holds while
        // it waits for the interpreter.
        py.detach(|| {
            let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
            ws.receive(message);
        });
    }
}

#[pymethods]
impl HostWebSocket {
    /// The Engine.IO session id (None for a refused second WebSocket).
    #[getter]
    fn sid(&self) -> Option<String> {
        self.inner.sid().map(str::to_owned)
    }

    /// A text message from the client.
    fn receive_text(&self, py: Python<'_>, text: String) {
        self.receive(py, Inbound::Text(Bytes::from(text)));
    }

    /// A binary message from the client.
    fn receive_bytes(&self, py: Python<'_>, data: Vec<u8>) {
        self.receive(py, Inbound::Binary(Bytes::from(data)));
    }

    /// The client closed the WebSocket or went away.
    fn receive_close(&self, py: Python<'_>) {
        self.receive(py, Inbound::Close);
    }

    /// An awaitable of the next frames to send (`str` for text frames,
    /// `bytes` for binary ones), or of `(code, reason)` (code 1000 for a
    /// plain close) when the WebSocket is to be closed; after that, every
    /// call gives `(1000, "")` at once.
    fn next_outgoing<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ws = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let outbound = ws.next_outgoing().await;
            Python::attach(|py| -> PyResult<Py<PyAny>> {
                Ok(match outbound {
                    Outbound::Frames(frames) => {
                        let list = pyo3::types::PyList::empty(py);
                        for frame in frames {
                            match frame {
                                Encoded::Text(text) => list.append(&*text)?,
                                Encoded::Binary(data) => list.append(pyo3::types::PyBytes::new(py, &data))?,
                            }
                        }
                        list.into_any().unbind()
                    }
                    Outbound::Close(frame) => {
                        let (code, reason) = frame.map_or((1000, String::new()), |f| (f.code, f.reason));
                        (code, reason).into_pyobject(py)?.into_any().unbind()
                    }
                    _ => (1000, String::new()).into_pyobject(py)?.into_any().unbind(),
                })
            })
        })
    }
}

/// Where a connect middleware's decision goes.
#[pyclass(frozen, module = "tidewire._native")]
struct Reply {
    tx: Mutex<Option<tokio::sync::oneshot::Sender<String>>>,
}

#[pymethods]
impl Reply {
    /// Answers with the decision (JSON); later calls do nothing.
    fn resolve(&self, json: String) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = tx.send(json);
        }
    }
}

/// One connected socket.
#[pyclass(frozen, module = "tidewire._native")]
struct Socket {
    inner: hub::Socket,
}

#[pymethods]
impl Socket {
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_owned()
    }

    #[getter]
    fn nsp(&self) -> String {
        self.inner.namespace().to_owned()
    }

    #[getter]
    fn connected(&self) -> bool {
        self.inner.connected()
    }

    #[getter]
    fn user(&self) -> Option<String> {
        self.inner.user_id().map(str::to_owned)
    }

    /// The data its connect middlewares gave it, as JSON.
    #[getter]
    fn data(&self) -> String {
        self.inner.data().to_string()
    }

    /// The handshake as JSON.
    #[getter]
    fn handshake(&self) -> String {
        embed::handshake_json(self.inner.handshake())
    }

    /// Joins `room`; TooManyRooms (an InvalidArgument) when full.
    fn join(&self, room: String) -> PyResult<()> {
        embed::join(&self.inner, room).map_err(error)
    }

    fn leave(&self, room: &str) {
        self.inner.leave(room);
    }

    /// The rooms, sorted (its own id included).
    fn rooms(&self) -> Vec<String> {
        embed::rooms(&self.inner)
    }

    fn emit(&self, event: &str, json: &str, attachments: Vec<Vec<u8>>) -> PyResult<()> {
        embed::emit(&self.inner, event, payload(json, attachments)?).map_err(error)
    }

    /// An awaitable of the answer `(json, attachments)`; raises AckTimeout,
    /// Disconnected or SendError.
    #[pyo3(signature = (event, json, attachments, timeout=None))]
    fn emit_with_ack<'py>(
        &self,
        py: Python<'py>,
        event: String,
        json: &str,
        attachments: Vec<Vec<u8>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let payload = payload(json, attachments)?;
        let timeout = match timeout {
            Some(t) if !(t.is_finite() && t >= 0.0) => {
                return Err(InvalidArgument::new_err("timeout must be a non-negative number of seconds"));
            }
            t => t.map(Duration::from_secs_f64),
        };
        let socket = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            embed::emit_with_ack(&socket, &event, payload, timeout).await.map(parts).map_err(error)
        })
    }

    /// A broadcast to the namespace without this socket, to narrow with
    /// `to` and `except_`.
    fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator { inner: embed::Broadcast::new(self.inner.broadcast()) }
    }

    #[pyo3(signature = (close=false))]
    fn disconnect(&self, close: bool) {
        self.inner.disconnect(close);
    }
}

/// Where a broadcast goes (socket.io's `BroadcastOperator`); each step
/// returns a new one.
#[pyclass(frozen, module = "tidewire._native")]
struct BroadcastOperator {
    inner: embed::Broadcast,
}

#[pymethods]
impl BroadcastOperator {
    /// Also to the members of `rooms`.
    fn to(&self, rooms: Vec<String>) -> PyResult<BroadcastOperator> {
        Ok(BroadcastOperator { inner: self.inner.to(rooms).map_err(error)? })
    }

    /// Not to the members of `rooms`.
    fn except_(&self, rooms: Vec<String>) -> PyResult<BroadcastOperator> {
        Ok(BroadcastOperator { inner: self.inner.except(rooms).map_err(error)? })
    }

    /// Makes the sockets it reaches leave `room`.
    fn leave(&self, room: &str) -> PyResult<()> {
        self.inner.leave(room).map_err(error)
    }

    /// Makes the sockets it reaches join `room` (every node's).
    fn join(&self, room: &str) -> PyResult<()> {
        self.inner.join(room).map_err(error)
    }

    /// Disconnects the sockets it reaches (every node's).
    #[pyo3(signature = (close=false))]
    fn disconnect(&self, close: bool) {
        self.inner.disconnect(close);
    }

    /// Emits `event`; returns how many sockets it was queued for.
    fn emit(&self, event: &str, json: &str, attachments: Vec<Vec<u8>>) -> PyResult<usize> {
        self.inner.emit(event, payload(json, attachments)?).map_err(error)
    }
}

/// The acknowledgement a client asked for; answer it once.
#[pyclass(frozen, module = "tidewire._native")]
struct Ack {
    inner: AckSlot,
}

#[pymethods]
impl Ack {
    /// Sends the answer; AckAlreadySent the second time.
    fn send(&self, json: &str, attachments: Vec<Vec<u8>>) -> PyResult<()> {
        self.inner.send(payload(json, attachments)?).map_err(error)
    }
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Server>()?;
    m.add_class::<Socket>()?;
    m.add_class::<Ack>()?;
    m.add_class::<Reply>()?;
    m.add_class::<BroadcastOperator>()?;
    m.add_class::<HostWebSocket>()?;
    m.add_class::<pubsub::RedisChannel>()?;
    m.add("TidewireError", py.get_type::<TidewireError>())?;
    for code in ErrorCode::ALL {
        let class = class(py, code);
        class.setattr("code", code.as_str())?;
        m.add(class.name()?, class)?;
    }
    m.add("__version__", tidewire::VERSION)?;
    Ok(())
}
