//! A ready-made HTTP/1.1 listener that mounts engines at paths.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::admission::Admission;
use super::{Body, handle, plain};

/// Connections the kernel may hold before they are accepted (Linux caps
/// it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Connections accepted before the accept loop lets other tasks run.
const ACCEPT_SLICE: u32 = 8;

/// The default of [`ServerBuilder::max_connections_per_ip`]: twice the
/// hub's default cap of sessions per address (a long-polling session uses
/// two connections at times), so it only stops what no session accounts
/// for: connections that never finish a request.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 2048;
use crate::engine::Engine;

/// A plain HTTP endpoint served beside the engines (health checks,
/// metrics).
pub type Route = Arc<dyn Fn(&Request<Incoming>) -> Response<Body> + Send + Sync>;

/// Configures a [`Server`]: which engine answers which path, and the HTTP
/// limits that protect it.
#[derive(Clone)]
pub struct ServerBuilder {
    mounts: Vec<(String, Engine)>,
    routes: Vec<(String, Route)>,
    header_read_timeout: Duration,
    max_headers: usize,
    max_connections_per_ip: usize,
    admission_share: f64,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("mounts", &self.mounts.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>())
            .field("routes", &self.routes.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>())
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_headers", &self.max_headers)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("admission_share", &self.admission_share)
            .finish()
    }
}

impl Default for ServerBuilder {
    fn default() -> ServerBuilder {
        ServerBuilder {
            mounts: Vec::new(),
            routes: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            admission_share: 1.0,
        }
    }
}

impl ServerBuilder {
    /// Serves `engine` at `path` (e.g. `/socket.io/`). Requests whose path
    /// is `path`, with or without its trailing slash, go to the engine.
    pub fn mount(mut self, path: impl Into<String>, engine: Engine) -> Self {
        let mut path = path.into();
        if !path.ends_with('/') {
            path.push('/');
        }
        self.mounts.push((path, engine));
        self
    }

    /// Answers requests for exactly `path` with `handler` (e.g. `/healthz`).
    ///
    /// # Examples
    /// ```
    /// use tidewire::transport::{Server, text_response};
    /// let builder = Server::builder().route("/healthz", |_req| text_response(http::StatusCode::OK, "ok"));
    /// ```
    pub fn route(
        mut self,
        path: impl Into<String>,
        handler: impl Fn(&Request<Incoming>) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        self.routes.push((path.into(), Arc::new(handler)));
        self
    }

    /// How long a client may take to send a request head (default 10 s);
    /// slower connections are closed.
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Most request headers accepted (default 100); more get `431`.
    pub fn max_headers(mut self, n: usize) -> Self {
        self.max_headers = n;
        self
    }

    /// Most TCP connections open at once from one address (default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_IP`]; 0: no cap). Connections past it
    /// are closed as soon as they are accepted, before anything is read:
    /// clients that open connections and trickle their requests (slow
    /// headers, slow bodies) cannot take every descriptor of the process.
    /// Behind a reverse proxy every connection comes from the proxy's
    /// address: set 0 there and cap clients at the proxy.
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n;
        self
    }

    /// The most of the runtime's workers' time new connections may take
    /// while they arrive faster than they are served (default 1: no limit;
    /// [`RECOMMENDED_ADMISSION_SHARE`](super::RECOMMENDED_ADMISSION_SHARE),
    /// an eighth, is what the abuse campaign's server sets).
    ///
    /// New connections (the accept loop, a connection until a request of
    /// it has been answered other than with an error: a WebSocket's
    /// handshake, not its session) always wait behind the sessions already open,
    /// one step at a time. Below 1, they also take no more than this share
    /// of the time while busy: a reconnect storm or a handshake flood then
    /// cannot crowd the open sessions off the cores either, when other
    /// processes want them too; what waits meanwhile waits in the kernel's
    /// accept backlog. The price: the listener takes new connections no
    /// faster than the share allows, even when nothing else wants the time.
    ///
    /// # Panics
    /// When `share` is not above 0.
    pub fn admission_share(mut self, share: f64) -> Self {
        assert!(share > 0.0, "admission_share must be above 0, got {share}");
        self.admission_share = share;
        self
    }

    /// Binds `addr` and starts serving.
    ///
    /// # Errors
    /// The I/O error when the address cannot be bound.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> std::io::Result<Server> {
        // A deep accept backlog: a burst of connections waits in the kernel
        // instead of having SYNs dropped (and retried a second later).
        let mut last = None;
        for addr in tokio::net::lookup_host(addr).await? {
            let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.set_reuseaddr(true)?;
            match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
                Ok(listener) => return Ok(self.serve(listener)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")))
    }

    /// Serves connections accepted from `listener`. Must be called inside a
    /// tokio runtime.
    pub fn serve(self, listener: TcpListener) -> Server {
        let local_addr = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let shutdown = CancellationToken::new();
        let engines = self.mounts.iter().map(|(_, e)| e.clone()).collect();
        // The accept loop and each new connection run in the admission
        // lane: a burst of new connections waits behind the sessions
        // already open (see `admission`).
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let admission = Admission::new(workers, self.admission_share);
        // Held by every connection task: shutdown waits for their requests.
        let connections = Arc::new(());
        let listening = Listening {
            state: Arc::new(self),
            token: shutdown.clone(),
            admission: admission.clone(),
            connections: connections.clone(),
        };
        let task = tokio::spawn(async move { admission.run(listening.accept_loop(listener), None).await });
        Server { local_addr, shutdown, task: Some(task), engines, connections }
    }

    async fn dispatch(&self, req: Request<Incoming>, remote: SocketAddr) -> Response<Body> {
        let path = req.uri().path();
        if let Some((_, route)) = self.routes.iter().find(|(p, _)| p == path) {
            return route(&req);
        }
        for (mount, engine) in &self.mounts {
            if path == mount || path == &mount[..mount.len() - 1] {
                return handle(engine, req, remote).await;
            }
        }
        plain(StatusCode::NOT_FOUND, Bytes::from_static(b"Not Found"), "text/plain")
    }
}

/// What the accept loop shares with each connection's task.
#[derive(Clone)]
struct Listening {
    state: Arc<ServerBuilder>,
    token: CancellationToken,
    admission: Admission,
    /// One reference per connection task: shutdown waits for them.
    connections: Arc<()>,
}

impl Listening {
    async fn accept_loop(self, listener: TcpListener) {
        // The same counter as the hub's per-address caps, here for TCP
        // connections (no cap: one that admits everything).
        let cap = u32::try_from(self.state.max_connections_per_ip).unwrap_or(u32::MAX);
        let limits = crate::limits::ConnectionLimits::none().per_ip((cap > 0).then_some(cap));
        let open = crate::limits::ConnectionCounter::new(limits, crate::time::now());
        let mut accepted_since_yield = 0u32;
        loop {
            // A burst of connections (a reconnect storm) is accepted a
            // few at a time: the sessions already open get their turn
            // (their I/O is polled) between the burst's slices.
            accepted_since_yield += 1;
            if accepted_since_yield == ACCEPT_SLICE {
                accepted_since_yield = 0;
                tokio::task::yield_now().await;
            }
            let (stream, remote) = tokio::select! {
                () = self.token.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = open.acquire_ip(remote.ip(), crate::time::now()) else {
                tracing::debug!(%remote, "connection refused: too many open from this address");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(self.clone().connection(stream, remote, slot));
        }
    }

    /// Serves one connection: in the admission lane until a request of it
    /// has been answered other than with an error (a refusal, such as a
    /// storm's `503`s, stays in the lane until its client goes).
    async fn connection(self, stream: TcpStream, remote: SocketAddr, slot: crate::limits::IpPermit) {
        let Listening { state, token, admission, connections: _open } = self;
        let admitted = Arc::new(AtomicBool::new(false));
        // Each request carries the slot too: a WebSocket keeps it after
        // hyper hands its connection over.
        let slot = ConnectionSlot(Arc::new(slot));
        let svc_state = state.clone();
        let answered = admitted.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(slot.clone());
            let (state, answered) = (svc_state.clone(), answered.clone());
            async move {
                let res = state.dispatch(req, remote).await;
                if !res.status().is_client_error() && !res.status().is_server_error() {
                    answered.store(true, Ordering::Release);
                }
                Ok::<_, std::convert::Infallible>(res)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(state.header_read_timeout).max_headers(state.max_headers);
        let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let served = async move {
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r {
                    tracing::debug!(error = %e, %remote, "http connection error");
                },
                () = token.cancelled() => {
                    // The request in flight is answered first (a poll
                    // another node owns carries packets that node will not
                    // send again); idle connections close at once.
                    // `Server::shutdown` bounds it.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
        };
        admission.run(served, Some(&admitted)).await;
    }
}

/// The slot of the connection a request came on, in its extensions: a
/// WebSocket keeps it for as long as it is open.
#[derive(Clone)]
pub(crate) struct ConnectionSlot(#[allow(dead_code, reason = "held, not read")] Arc<crate::limits::IpPermit>);

/// A running listener. Dropping it does not stop it; call
/// [`shutdown`](Server::shutdown).
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    engines: Vec<Engine>,
    /// One reference per HTTP connection task, plus this one.
    connections: Arc<()>,
}

/// Longest time [`Server::shutdown`] waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl Server {
    /// A builder with the default limits.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every session with reason
    /// `server shutting down`, and waits for the accept loop to end and
    /// for the requests in flight to be answered (at most 30 s): among
    /// them the requests this node passed on to other nodes of a cluster,
    /// whose answers carry packets their owners will not send again.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for e in &self.engines {
            e.close_all();
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while Arc::strong_count(&self.connections) > 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}
