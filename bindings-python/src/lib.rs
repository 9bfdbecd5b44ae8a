//! Tidewire for Python: the native module `tidewire._native` (PyO3).
//!
//! Thin on purpose: it wraps `tidewire::embed` and converts values and
//! errors. Arguments cross as JSON text plus `bytes` attachments; the
//! `tidewire` package (python/tidewire) turns them into Python values and
//! runs handlers on the caller's asyncio loop. Callbacks registered here are
//! plain callables, invoked from the engine's threads with the GIL held; the
//! package's callables only hand work to the loop (`call_soon_threadsafe`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use tidewire::embed::{self, EmbedError, EmbedOptions, Embedded};
use tidewire::hub::{self, ConnectError};
use tidewire::protocol::socketio::Payload;

create_exception!(_native, TidewireError, PyException, "Base class of Tidewire's errors.");
create_exception!(_native, InvalidArgument, TidewireError, "A bad argument (code ERR_INVALID_ARG).");
create_exception!(_native, ServerClosed, TidewireError, "The server is closed (ERR_SERVER_CLOSED).");
create_exception!(_native, ListenError, TidewireError, "The server could not listen (ERR_LISTEN).");
create_exception!(_native, SendError, TidewireError, "The socket cannot take more (ERR_SEND).");
create_exception!(_native, AckTimeout, TidewireError, "The client did not answer in time (ERR_ACK_TIMEOUT).");
create_exception!(_native, Disconnected, TidewireError, "The socket disconnected (ERR_DISCONNECTED).");
create_exception!(_native, AckAlreadySent, TidewireError, "The ack was already sent (ERR_ACK_SENT).");
create_exception!(_native, ClusterError, TidewireError, "The cluster bus cannot answer (ERR_CLUSTER).");

fn embed_error(e: EmbedError) -> PyErr {
    match e {
        EmbedError::InvalidArgument(m) => InvalidArgument::new_err(m),
        EmbedError::Closed => ServerClosed::new_err("the server is closed"),
        other => ListenError::new_err(other.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn payload(json: &str, attachments: Vec<Vec<u8>>) -> PyResult<Payload> {
    embed::payload_from_parts(json, attachments.into_iter().map(Bytes::from).collect()).map_err(embed_error)
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

/// A Socket.IO server (not listening until `start`).
#[pyclass(frozen, module = "tidewire._native")]
struct Server {
    inner: Arc<Embedded>,
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (host=None, port=None, ping_interval_ms=None, ping_timeout_ms=None, max_payload=None, connect_timeout_ms=None, cors_origins=None, limits=None, recovery_ms=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: Option<String>,
        port: Option<u32>,
        ping_interval_ms: Option<u64>,
        ping_timeout_ms: Option<u64>,
        max_payload: Option<u64>,
        connect_timeout_ms: Option<u64>,
        cors_origins: Option<Vec<String>>,
        limits: Option<String>,
        recovery_ms: Option<u64>,
    ) -> PyResult<Server> {
        let options = EmbedOptions {
            host,
            port,
            ping_interval_ms,
            ping_timeout_ms,
            max_payload,
            connect_timeout_ms,
            cors_origins: cors_origins.unwrap_or_default(),
            limits,
            recovery_ms,
        };
        Ok(Server { inner: Arc::new(Embedded::new(options).map_err(embed_error)?) })
    }

    /// Adds a connect middleware on `nsp`: `callback(handshake_json,
    /// reply)`; the decision goes to `reply.resolve(json)` (see
    /// `tidewire.embed::admission_from_decision` for its shape).
    fn use_middleware(&self, nsp: &str, callback: Py<PyAny>) -> PyResult<()> {
        let callback = Arc::new(callback);
        self.inner.namespace(nsp).map_err(embed_error)?.use_middleware(move |handshake: Arc<hub::Handshake>| {
            let callback = callback.clone();
            async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let reply = Reply { tx: Mutex::new(Some(tx)) };
                let json = handshake_json(&handshake);
                call(&callback, (json, reply));
                let text = rx.await.map_err(|_| ConnectError::new("the connect middleware did not answer"))?;
                embed::admission_from_decision(&text)
            }
        });
        Ok(())
    }

    /// `callback(socket)` for each socket that joins `nsp`.
    fn on_connection(&self, nsp: &str, callback: Py<PyAny>) -> PyResult<()> {
        let callback = Arc::new(callback);
        self.inner.namespace(nsp).map_err(embed_error)?.on_connect(move |socket: hub::Socket| {
            let callback = callback.clone();
            async move { call(&callback, (Socket { inner: socket },)) }
        });
        Ok(())
    }

    /// `callback(socket, reason)` when a socket of `nsp` has left.
    fn on_disconnect(&self, nsp: &str, callback: Py<PyAny>) -> PyResult<()> {
        let callback = Arc::new(callback);
        self.inner.namespace(nsp).map_err(embed_error)?.on_disconnect(
            move |socket: hub::Socket, reason: hub::DisconnectReason| {
                let callback = callback.clone();
                async move { call(&callback, (Socket { inner: socket }, reason.to_string())) }
            },
        );
        Ok(())
    }

    /// `callback(socket, json, attachments, ack)` for each `event` on
    /// `nsp`; `ack` is None unless the client asked for one.
    fn on_event(&self, nsp: &str, event: String, callback: Py<PyAny>) -> PyResult<()> {
        let callback = Arc::new(callback);
        self.inner.namespace(nsp).map_err(embed_error)?.on(event, move |socket: hub::Socket, event: hub::Event| {
            let callback = callback.clone();
            async move {
                let (json, attachments) = parts(event.args);
                let ack = event.ack.map(|a| Ack { inner: Mutex::new(Some(a)) });
                call(&callback, (Socket { inner: socket }, json, attachments, ack));
            }
        });
        Ok(())
    }

    /// Starts listening; an awaitable of `"host:port"`.
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            inner.listen().await.map(|a| a.to_string()).map_err(embed_error)
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

    /// Emits to the sockets of `nsp` in `rooms` (all when empty), except
    /// those in `except_rooms`. Returns how many it reached.
    fn broadcast(
        &self,
        nsp: &str,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        event: &str,
        json: &str,
        attachments: Vec<Vec<u8>>,
    ) -> PyResult<usize> {
        let payload = payload(json, attachments)?;
        let op = self.inner.namespace(nsp).map_err(embed_error)?.broadcast();
        Ok(embed::broadcast(op, rooms, except_rooms, event, payload))
    }

    /// Sockets connected to `nsp`.
    fn socket_count(&self, nsp: &str) -> PyResult<usize> {
        Ok(self.inner.namespace(nsp).map_err(embed_error)?.socket_count())
    }

    /// Joins a cluster over Redis (`@socket.io/redis-adapter`'s protocol);
    /// an awaitable.
    #[pyo3(signature = (url, prefix=None, request_timeout_ms=None, cluster=false))]
    fn join_cluster<'py>(
        &self,
        py: Python<'py>,
        url: String,
        prefix: Option<String>,
        request_timeout_ms: Option<u64>,
        cluster: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        let options = embed::RedisOptions { url, prefix, request_timeout_ms, cluster };
        pyo3_async_runtimes::tokio::future_into_py(
            py,
            async move { inner.join_redis(options).await.map_err(embed_error) },
        )
    }

    /// How many nodes serve `nsp`, this one included; an awaitable.
    fn server_count<'py>(&self, py: Python<'py>, nsp: &str) -> PyResult<Bound<'py, PyAny>> {
        let ns = self.inner.namespace(nsp).map_err(embed_error)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            ns.server_count().await.map_err(|e| ClusterError::new_err(e.to_string()))
        })
    }

    /// Limits `event` on `nsp`: size in bytes, JSON schema (text) of its
    /// first argument.
    #[pyo3(signature = (nsp, event, max_bytes=None, schema=None))]
    fn limit_event(&self, nsp: &str, event: &str, max_bytes: Option<u64>, schema: Option<&str>) -> PyResult<()> {
        embed::limit_event(&self.inner.namespace(nsp).map_err(embed_error)?, event, max_bytes, schema)
            .map_err(embed_error)
    }

    /// Turns presence on for the rooms of `nsp` starting with `prefix`.
    fn enable_presence(&self, nsp: &str, prefix: String) -> PyResult<()> {
        self.inner
            .namespace(nsp)
            .map_err(embed_error)?
            .enable_presence(hub::PresenceOptions::rooms_with_prefix(prefix));
        Ok(())
    }

    /// The users present in `room` of `nsp`, as JSON.
    fn presence(&self, nsp: &str, room: &str) -> PyResult<String> {
        Ok(embed::presence_json(&self.inner.namespace(nsp).map_err(embed_error)?, room))
    }

    /// Drains gracefully, then stops; an awaitable of
    /// `(connections, batches, acks_abandoned)`.
    #[pyo3(signature = (batch_size=None, batch_interval_ms=None, ack_deadline_ms=None))]
    fn drain<'py>(
        &self,
        py: Python<'py>,
        batch_size: Option<usize>,
        batch_interval_ms: Option<u64>,
        ack_deadline_ms: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = hub::DrainOptions::from_millis(batch_size, batch_interval_ms, ack_deadline_ms);
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let r = inner.drain(options).await;
            Ok((r.connections, r.batches, r.acks_abandoned))
        })
    }
}

fn handshake_json(handshake: &hub::Handshake) -> String {
    serde_json::to_string(handshake).unwrap_or_else(|_| "{}".to_owned())
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
        if let Some(tx) = lock(&self.tx).take() {
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

    /// The handshake as JSON.
    #[getter]
    fn handshake(&self) -> String {
        handshake_json(self.inner.handshake())
    }

    fn join(&self, room: String) -> PyResult<()> {
        if room.is_empty() {
            return Err(InvalidArgument::new_err("a room name cannot be empty"));
        }
        self.inner.join(room).map_err(|e| InvalidArgument::new_err(e.to_string()))
    }

    fn leave(&self, room: &str) {
        self.inner.leave(room);
    }

    /// The rooms, sorted (its own id included).
    fn rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self.inner.rooms().iter().map(|r| r.to_string()).collect();
        rooms.sort();
        rooms
    }

    fn emit(&self, event: &str, json: &str, attachments: Vec<Vec<u8>>) -> PyResult<()> {
        let payload = payload(json, attachments)?;
        self.inner.emit(event, payload).map_err(|e| SendError::new_err(e.to_string()))
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
            match embed::emit_with_ack(&socket, &event, payload, timeout).await {
                Ok(reply) => Ok(parts(reply)),
                Err(hub::AckError::Timeout) => Err(AckTimeout::new_err("the client did not answer in time")),
                Err(hub::AckError::Disconnected) => Err(Disconnected::new_err("the socket disconnected")),
                Err(e) => Err(SendError::new_err(e.to_string())),
            }
        })
    }

    /// Emits to `rooms` (the namespace when empty) except `except_rooms`
    /// and this socket. Returns how many sockets it reached.
    fn broadcast(
        &self,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        event: &str,
        json: &str,
        attachments: Vec<Vec<u8>>,
    ) -> PyResult<usize> {
        let payload = payload(json, attachments)?;
        Ok(embed::broadcast(self.inner.broadcast(), rooms, except_rooms, event, payload))
    }

    #[pyo3(signature = (close=false))]
    fn disconnect(&self, close: bool) {
        self.inner.disconnect(close);
    }
}

/// The acknowledgement a client asked for; answer it once.
#[pyclass(frozen, module = "tidewire._native")]
struct Ack {
    inner: Mutex<Option<hub::AckResponder>>,
}

#[pymethods]
impl Ack {
    /// Sends the answer; AckAlreadySent the second time.
    fn send(&self, json: &str, attachments: Vec<Vec<u8>>) -> PyResult<()> {
        let payload = payload(json, attachments)?;
        let responder = lock(&self.inner).take().ok_or_else(|| AckAlreadySent::new_err("already sent"))?;
        responder.send(payload).map_err(|e| SendError::new_err(e.to_string()))
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
    m.add("TidewireError", py.get_type::<TidewireError>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("ServerClosed", py.get_type::<ServerClosed>())?;
    m.add("ListenError", py.get_type::<ListenError>())?;
    m.add("SendError", py.get_type::<SendError>())?;
    m.add("AckTimeout", py.get_type::<AckTimeout>())?;
    m.add("Disconnected", py.get_type::<Disconnected>())?;
    m.add("AckAlreadySent", py.get_type::<AckAlreadySent>())?;
    m.add("ClusterError", py.get_type::<ClusterError>())?;
    m.add("__version__", tidewire::VERSION)?;
    Ok(())
}
