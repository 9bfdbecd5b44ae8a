//! The Tidewire reference server: the classic socket.io chat, done
//! properly (see [`chat`]), on the embedded default: one process, no Redis.
//!
//! Serves Socket.IO at `/socket.io/`, the chat's web app at `/` (see
//! [`web`]), `GET /healthz` (and `/readyz`), `GET /metrics` (on
//! `--admin-addr` when given), and, while no `JWT_SECRET` is set,
//! `GET /dev/token?sub=..` handing out development tokens signed with a
//! random per-process secret (only on a loopback address, or anywhere with
//! `--dev`). `--conformance` replaces the chat with the fixed handlers the
//! end-to-end tests drive (see [`conformance`]) and adds a raw Engine.IO
//! echo at `/engine.io/` and a plain WebSocket echo at `/ws-echo` (the
//! RFC 6455 suite's peer).

mod chat;
mod conformance;
mod metrics;
mod web;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use http::StatusCode;
use tidewire::bus::{RedisBus, RedisBusConfig};
use tidewire::cluster::wire::sharded::SubscriptionMode;
use tidewire::cluster::{ClusterConfig, Protocol};
use tidewire::engine::{CloseReason, Connection, Engine, EngineConfig, EngineHandler, RequestInfo, Session};
use tidewire::hub::{DrainOptions, Hub, HubConfig, Parser};
use tidewire::limits::{ConnectionLimits, LimitsSpec, RateLimits};
use tidewire::protocol::engine::Frame;
use tidewire::recovery::RecoveryConfig;
use tidewire::transport::{Server, text_response};
use tidewire_server::store::{SQLITE_FILE, SqlStore, StoreLimits};

/// Command-line options (each also readable from the environment).
#[derive(Debug, clap::Parser)]
#[command(name = "tidewire-server", version, about = "The Tidewire reference Socket.IO server")]
struct Options {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Origin of the web client allowed by CORS, with credentials
    /// (repeatable; `*` allows any other origin, answered with a literal `*`
    /// and without credentials).
    #[arg(long = "client-url", env = "CLIENT_URL", value_delimiter = ',')]
    client_urls: Vec<String>,
    /// HS256 secret of the access tokens. Required unless the server
    /// listens on a loopback address or `--dev` is given; then a random
    /// secret is made at startup and `GET /dev/token` hands out tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Development mode: without `JWT_SECRET`, sign with a random
    /// per-process secret and serve `GET /dev/token` (anyone who can reach
    /// it gets a token for any user) even on a public address.
    #[arg(long, env = "TIDEWIRE_DEV", value_parser = clap::builder::BoolishValueParser::new())]
    dev: bool,
    /// Accept access tokens without an `exp` claim. They never expire: a
    /// leaked one works until the secret changes.
    #[arg(long, env = "TIDEWIRE_ALLOW_TOKENS_WITHOUT_EXP", value_parser = clap::builder::BoolishValueParser::new())]
    allow_tokens_without_exp: bool,
    /// Milliseconds between server pings.
    #[arg(long, env = "TIDEWIRE_PING_INTERVAL_MS", default_value_t = 25_000)]
    ping_interval_ms: u64,
    /// Milliseconds to wait for a pong.
    #[arg(long, env = "TIDEWIRE_PING_TIMEOUT_MS", default_value_t = 20_000)]
    ping_timeout_ms: u64,
    /// Milliseconds a client may take to join a namespace.
    #[arg(long, env = "TIDEWIRE_CONNECT_TIMEOUT_MS", default_value_t = 45_000)]
    connect_timeout_ms: u64,
    /// Milliseconds a WebSocket upgrade may take.
    #[arg(long, env = "TIDEWIRE_UPGRADE_TIMEOUT_MS", default_value_t = 10_000)]
    upgrade_timeout_ms: u64,
    /// Largest message or polling body, in bytes.
    #[arg(long, env = "TIDEWIRE_MAX_PAYLOAD", default_value_t = 1_000_000)]
    max_payload: usize,
    /// Socket.IO parser: `default` (JSON text + binary attachments) or
    /// `msgpack` (npm socket.io-msgpack-parser).
    #[arg(long, env = "TIDEWIRE_PARSER", default_value = "default", value_parser = ["default", "msgpack"])]
    parser: String,
    /// Serve the protocol conformance handlers instead of the chat. They
    /// drive the protocol at full speed, so rate limits and connection caps
    /// are off unless set by the flags below.
    #[arg(long, env = "TIDEWIRE_CONFORMANCE")]
    conformance: bool,
    /// Events per socket, as COUNT/UNIT[:BURST] (e.g. 100/s:200), or `off`.
    #[arg(long, env = "TIDEWIRE_RATE_SOCKET")]
    rate_socket: Option<String>,
    /// Events per user across their sockets, or `off`.
    #[arg(long, env = "TIDEWIRE_RATE_USER")]
    rate_user: Option<String>,
    /// Events per IP address, or `off`.
    #[arg(long, env = "TIDEWIRE_RATE_IP")]
    rate_ip: Option<String>,
    /// `chat:message` events per socket, or `off`.
    #[arg(long, env = "TIDEWIRE_RATE_CHAT_MESSAGE", default_value = "10/s:20")]
    rate_chat_message: String,
    /// Rate-limit violations within 10 s that disconnect a socket (0: never).
    #[arg(long, env = "TIDEWIRE_MAX_VIOLATIONS")]
    max_violations: Option<u32>,
    /// Concurrent connections per IP address (0: no cap).
    #[arg(long, env = "TIDEWIRE_MAX_CONN_PER_IP")]
    max_conn_per_ip: Option<u32>,
    /// Open TCP connections per IP address at the listener, before any
    /// HTTP is read (slow-loris clients; 0: no cap). Default 2,048, or no
    /// cap with `--trusted-proxies` (every connection is the proxy's).
    #[arg(long, env = "TIDEWIRE_MAX_TCP_PER_IP")]
    max_tcp_per_ip: Option<usize>,
    /// The most of the server's time new connections may take while they
    /// arrive faster than they are served, e.g. during a reconnect storm
    /// (default 1: no limit; 0.125, an eighth of the workers' time, keeps
    /// a storm from crowding the open sessions off the cores). They wait
    /// behind the open sessions in any case.
    #[arg(long, env = "TIDEWIRE_ADMISSION_SHARE", value_parser = admission_share)]
    admission_share: Option<f64>,
    /// Concurrent connections per user (0: no cap).
    #[arg(long, env = "TIDEWIRE_MAX_CONN_PER_USER")]
    max_conn_per_user: Option<u32>,
    /// Concurrent connections in total (0: no cap).
    #[arg(long, env = "TIDEWIRE_MAX_CONNECTIONS")]
    max_connections: Option<u32>,
    /// New connections per IP address, as COUNT/UNIT[:BURST], or `off`.
    #[arg(long, env = "TIDEWIRE_HANDSHAKES_PER_IP")]
    handshakes_per_ip: Option<String>,
    /// New connections in total, from all addresses, as
    /// COUNT/UNIT[:BURST], or `off` (the default): past it handshakes get
    /// `503 server_busy` with a retry time, so a reconnect storm or a flood
    /// from many addresses cannot take the CPU from connected clients.
    #[arg(long, env = "TIDEWIRE_HANDSHAKES_TOTAL")]
    handshakes_total: Option<String>,
    /// Where the chat's messages are kept: a SQLite file (`chat.db`) in this
    /// directory, made on first start. Unused when `DATABASE_URL` is set.
    #[arg(long, env = "TIDEWIRE_DATA_DIR", default_value = "./data")]
    data_dir: std::path::PathBuf,
    /// Keep the chat's messages in this PostgreSQL database
    /// (`postgres://user:password@host:port/db`) instead of the SQLite file:
    /// nodes sharing it share their history.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// `chat:history` requests per socket, as COUNT/UNIT[:BURST], or `off`.
    #[arg(long, env = "TIDEWIRE_RATE_CHAT_HISTORY", default_value = "5/s:20")]
    rate_chat_history: String,
    /// `chat:typing` notices per socket, as COUNT/UNIT[:BURST], or `off`.
    #[arg(long, env = "TIDEWIRE_RATE_CHAT_TYPING", default_value = "2/s:6")]
    rate_chat_typing: String,
    /// Chat history: messages kept per room.
    #[arg(long, env = "TIDEWIRE_STORE_MESSAGES_PER_ROOM", default_value_t = 1000)]
    store_messages_per_room: usize,
    /// Chat history: most bytes kept in all (least recently used rooms are
    /// dropped first).
    #[arg(long, env = "TIDEWIRE_STORE_MAX_BYTES", default_value_t = 32 << 20)]
    store_max_bytes: usize,
    /// Chat history: most rooms kept (the least recently used goes first).
    #[arg(long, env = "TIDEWIRE_STORE_MAX_ROOMS", default_value_t = 10_000)]
    store_max_rooms: usize,
    /// Chat history: rooms one user may start (send the first kept message
    /// of) while their history is kept; past it, `chat:message` is acked
    /// with code `too_many_rooms`.
    #[arg(long, env = "TIDEWIRE_STORE_ROOMS_PER_USER", default_value_t = 20)]
    store_rooms_per_user: usize,
    /// Connection-state recovery: how long a disconnected client's session
    /// and missed packets are kept, in ms (0, the default: off, as in
    /// socket.io). Every event then carries its offset as a last argument,
    /// which clients without recovery support (python-socketio) pass to
    /// their handlers.
    #[arg(long, env = "TIDEWIRE_RECOVERY_MS", default_value_t = 0)]
    recovery_ms: u64,
    /// Graceful shutdown on SIGTERM: connections closed per batch.
    #[arg(long, env = "TIDEWIRE_DRAIN_BATCH_SIZE", default_value_t = 500)]
    drain_batch_size: usize,
    /// Graceful shutdown: time between batches, in ms.
    #[arg(long, env = "TIDEWIRE_DRAIN_INTERVAL_MS", default_value_t = 100)]
    drain_interval_ms: u64,
    /// Graceful shutdown: how long in-flight acks may take, in ms.
    #[arg(long, env = "TIDEWIRE_DRAIN_ACK_DEADLINE_MS", default_value_t = 5000)]
    drain_ack_deadline_ms: u64,
    /// Graceful shutdown in a cluster with recovery on: how long, at most,
    /// the drained node keeps serving the sessions it kept until the nodes
    /// its clients reconnected to have taken them, in ms.
    #[arg(long, env = "TIDEWIRE_DRAIN_HANDOFF_MS", default_value_t = 15000)]
    drain_handoff_ms: u64,
    /// Reverse proxies in front of the server whose `X-Forwarded-For` is
    /// trusted for the client's address (0: the header is ignored).
    #[arg(long, env = "TIDEWIRE_TRUSTED_PROXIES", default_value_t = 0)]
    trusted_proxies: usize,
    /// Join a cluster over this Redis (`redis://host:port/db`), with Tidewire
    /// and official socket.io nodes (`@socket.io/redis-adapter`). Unset: this
    /// node runs alone.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// `REDIS_URL` names nodes of a Redis Cluster (comma-separated seeds).
    #[arg(long, env = "TIDEWIRE_REDIS_CLUSTER")]
    redis_cluster: bool,
    /// The sharded protocol (`createShardedAdapter`, Redis 7 sharded
    /// pub/sub) instead of the classic one (`createAdapter`).
    #[arg(long, env = "TIDEWIRE_REDIS_SHARDED")]
    redis_sharded: bool,
    /// With `--redis-sharded`: `static`, `dynamic` (the default) or
    /// `dynamic-private`, as the sharded adapter's `subscriptionMode`.
    #[arg(long, env = "TIDEWIRE_REDIS_SUBSCRIPTION_MODE", default_value = "dynamic", value_parser = ["static", "dynamic", "dynamic-private"])]
    redis_subscription_mode: String,
    /// The cluster's channel prefix (the official adapter's `key`).
    #[arg(long, env = "TIDEWIRE_REDIS_PREFIX", default_value = "socket.io")]
    redis_prefix: String,
    /// How long requests to the other nodes wait for answers, in ms.
    #[arg(long, env = "TIDEWIRE_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    request_timeout_ms: u64,
    /// How often this node tells the other Tidewire nodes it is alive, in
    /// ms; its presence entries expire after three missed heartbeats.
    #[arg(long, env = "TIDEWIRE_CLUSTER_HEARTBEAT_MS", default_value_t = 5000)]
    cluster_heartbeat_ms: u64,
    /// Most connections of one user across the cluster (unset: no
    /// cluster-wide cap; each node's own caps apply either way).
    #[arg(long, env = "TIDEWIRE_CLUSTER_MAX_CONN_PER_USER")]
    cluster_max_conn_per_user: Option<u32>,
    /// Most connections from one IP address across the cluster.
    #[arg(long, env = "TIDEWIRE_CLUSTER_MAX_CONN_PER_IP")]
    cluster_max_conn_per_ip: Option<u32>,
    /// Events of one user across the cluster, as COUNT/UNIT[:BURST]
    /// (unset: per node only). One Redis round trip per event of a user.
    #[arg(long, env = "TIDEWIRE_CLUSTER_RATE_USER")]
    cluster_rate_user: Option<String>,
    /// Serve `GET /metrics` on this address (`HOST:PORT`, e.g.
    /// 127.0.0.1:9090) instead of the public listener; `GET /healthz` is
    /// then served on both, so load balancers keep probing the public port.
    /// Unset: both on the public listener.
    #[arg(long, env = "TIDEWIRE_ADMIN_ADDR")]
    admin_addr: Option<String>,
    /// This node's name in logs and in the conformance answers.
    #[arg(long, env = "TIDEWIRE_NODE_NAME", default_value = "tidewire")]
    node_name: String,
}

/// The hub's limits from the flags: the core's defaults for the chat, none
/// for the conformance handlers, each overridden by its flag.
fn limits(options: &Options) -> std::io::Result<(RateLimits, ConnectionLimits)> {
    let (rates, conns) = if options.conformance {
        (RateLimits::none(), ConnectionLimits::none())
    } else {
        (RateLimits::default(), ConnectionLimits::default())
    };
    let mut spec = LimitsSpec::default();
    spec.rate_socket.clone_from(&options.rate_socket);
    spec.rate_user.clone_from(&options.rate_user);
    spec.rate_ip.clone_from(&options.rate_ip);
    if !options.conformance {
        spec.events.insert("chat:message".to_owned(), options.rate_chat_message.clone());
        spec.events.insert("chat:history".to_owned(), options.rate_chat_history.clone());
        spec.events.insert("chat:typing".to_owned(), options.rate_chat_typing.clone());
    }
    spec.max_violations = options.max_violations;
    spec.max_conn_per_ip = options.max_conn_per_ip;
    spec.max_conn_per_user = options.max_conn_per_user;
    spec.max_connections = options.max_connections;
    spec.handshakes_per_ip.clone_from(&options.handshakes_per_ip);
    spec.handshakes_total.clone_from(&options.handshakes_total);
    spec.trusted_proxies = Some(options.trusted_proxies);
    spec.apply(rates, conns).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// `--admission-share`: a number above 0.
fn admission_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(share) if share > 0.0 && share.is_finite() => Ok(share),
        _ => Err(format!("{s:?} is not a share above 0 (e.g. 0.125; 1: no limit)")),
    }
}

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let served =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().and_then(|rt| rt.block_on(run(options)));
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message alone (configuration errors are read by people).
            eprintln!("tidewire-server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> std::io::Result<()> {
    let mut engine_config = EngineConfig::default()
        .ping_interval(Duration::from_millis(options.ping_interval_ms))
        .ping_timeout(Duration::from_millis(options.ping_timeout_ms))
        .upgrade_timeout(Duration::from_millis(options.upgrade_timeout_ms))
        .max_payload(options.max_payload);
    for origin in &options.client_urls {
        engine_config = engine_config.cors_origin(origin.clone()).cors_credentials(true);
    }
    let parser = match options.parser.as_str() {
        "msgpack" => Parser::Msgpack,
        _ => Parser::Default,
    };
    let (rate_limits, connection_limits) = limits(&options)?;
    let mut hub_config = HubConfig::default()
        .connect_timeout(Duration::from_millis(options.connect_timeout_ms))
        .parser(parser)
        .rate_limits(rate_limits)
        .connection_limits(connection_limits.clone());
    match options.recovery_ms {
        0 => {}
        ms => {
            let window = Duration::from_millis(ms);
            hub_config =
                hub_config.connection_state_recovery(RecoveryConfig::default().max_disconnection_duration(window));
        }
    }
    let hub = Hub::new(hub_config);

    let mut builder = Server::builder().route("/healthz", healthz(hub.clone())).route("/readyz", healthz(hub.clone()));
    match options.max_tcp_per_ip {
        Some(cap) => builder = builder.max_connections_per_ip(cap),
        // Every connection comes from a proxy's address: a per-address cap
        // would cap the whole site. The proxy caps its clients.
        None if options.trusted_proxies > 0 => builder = builder.max_connections_per_ip(0),
        None => {}
    }
    if let Some(share) = options.admission_share {
        builder = builder.admission_share(share);
    }
    // Engines served beside the hub's, for /metrics.
    let mut other_engines = Vec::new();
    // The chat's store, closed last (SQLite then checkpoints its WAL).
    let mut chat_store = None;
    if options.conformance {
        conformance::install(&hub, &options.node_name, options.redis_url.is_some());
        // The raw Engine.IO echo is a protocol test endpoint: never on the
        // chat's listener. Its engine applies the same connection caps as
        // the hub (its own count of them).
        let echo = Engine::new(engine_config.clone().connection_limits(Some(connection_limits)), Arc::new(EngineEcho));
        other_engines.push(echo.clone());
        builder = builder.mount("/engine.io/", echo);
        // A plain WebSocket echo on the same frame layer, with the same
        // limits, for the RFC 6455 suite (`make autobahn`).
        let ws_echo_config = engine_config.clone();
        builder = builder.route("/ws-echo", move |req| tidewire::transport::websocket_echo(&ws_echo_config, req));
    } else {
        let loopback = is_loopback(&options.host, options.port).await?;
        let tokens = match token_secret(options.jwt_secret.as_deref(), options.dev, loopback)? {
            TokenSecret::Configured(secret) => chat::Tokens::new(&secret),
            TokenSecret::Development(secret) => {
                tracing::warn!(
                    "JWT_SECRET is not set: development mode, signing with a random secret made at startup and \
                     serving /dev/token (tokens for any user)"
                );
                let tokens = chat::Tokens::new(&secret);
                builder = builder.route("/dev/token", dev_token(tokens.clone()));
                tokens
            }
        };
        let store = open_store(&options).await?;
        chat::install(
            &hub,
            tokens.allow_without_exp(options.allow_tokens_without_exp),
            Arc::new(store.clone()),
            Arc::new(chat::StaffRooms),
        );
        chat_store = Some(store);
        let (with_page, files) = web::routes(builder);
        builder = with_page;
        tracing::debug!(files, "web app served at /");
    }
    let bus = match &options.redis_url {
        Some(url) => Some(join_cluster(&hub, url, &options).await?),
        None => None,
    };
    let engine = hub.engine(engine_config);
    let metrics = metrics::route(hub.clone(), engine.clone(), other_engines, bus.clone());
    // /metrics tells how many users are on, what they send and how the
    // limits bite: with an admin address, only there.
    let admin = match &options.admin_addr {
        Some(addr) => {
            let admin = Server::builder()
                .route("/healthz", healthz(hub.clone()))
                .route("/readyz", healthz(hub.clone()))
                .route("/metrics", metrics);
            Some(admin.bind(addr.as_str()).await?)
        }
        None => {
            builder = builder.route("/metrics", metrics);
            None
        }
    };
    let server = builder.mount("/socket.io/", engine).bind((options.host.as_str(), options.port)).await?;

    let mut stdout = std::io::stdout();
    writeln!(stdout, "tidewire-server listening on http://{}", server.local_addr())?;
    if let Some(admin) = &admin {
        writeln!(stdout, "tidewire-server admin listening on http://{}", admin.local_addr())?;
    }
    stdout.flush()?;

    shutdown_signal().await;
    let drain = DrainOptions::default()
        .batch_size(options.drain_batch_size)
        .batch_interval(Duration::from_millis(options.drain_interval_ms))
        .ack_deadline(Duration::from_millis(options.drain_ack_deadline_ms));
    tracing::info!(connections = hub.connection_count(), "draining; a second signal stops at once");
    tokio::select! {
        report = hub.drain(drain) => tracing::info!(?report, "drained"),
        () = shutdown_signal() => tracing::warn!("second signal: stopping without draining"),
    }
    if bus.is_some() && options.recovery_ms > 0 {
        // The clients come back on other nodes, which ask this one for
        // their sessions: it serves them until they are all taken.
        let handoff = Duration::from_millis(options.drain_handoff_ms);
        let kept = hub.hand_off(handoff.min(Duration::from_millis(options.recovery_ms))).await;
        tracing::info!(kept, "sessions handed off to the other nodes");
    }
    hub.announce_leaving();
    server.shutdown().await;
    if let Some(admin) = admin {
        admin.shutdown().await;
    }
    if let Some(bus) = bus {
        // The other nodes hear of the departure now, not after missed heartbeats.
        bus.flush(Duration::from_secs(1)).await;
        bus.close();
    }
    if let Some(store) = chat_store {
        store.close().await;
    }
    Ok(())
}

/// The chat's message store: PostgreSQL at `DATABASE_URL` when set, else
/// the SQLite file in the data directory (made when missing).
async fn open_store(options: &Options) -> std::io::Result<SqlStore> {
    let limits = StoreLimits {
        messages_per_room: options.store_messages_per_room,
        max_bytes: options.store_max_bytes,
        max_rooms: options.store_max_rooms,
        rooms_per_user: options.store_rooms_per_user,
    };
    let (store, place) = match options.database_url.as_deref().filter(|url| !url.is_empty()) {
        Some(url) => (SqlStore::open_postgres(url, limits).await, "the PostgreSQL database at DATABASE_URL".to_owned()),
        None => {
            if options.redis_url.is_some() {
                // Message ids come from the store: nodes with files of their
                // own give one id to different messages, and each keeps a
                // different history.
                tracing::warn!(
                    "REDIS_URL joins a cluster but DATABASE_URL is unset: this node keeps its messages in a SQLite \
                     file of its own; the nodes of a cluster must share one database (set DATABASE_URL)"
                );
            }
            let place = options.data_dir.join(SQLITE_FILE).display().to_string();
            (SqlStore::open_sqlite(&options.data_dir, limits).await, place)
        }
    };
    let store = store.map_err(|e| std::io::Error::other(format!("cannot open the message store in {place}: {e}")))?;
    tracing::info!(backend = store.backend(), %place, "message store open");
    Ok(store)
}

/// `GET /healthz` and `GET /readyz`: `ok`, or 503 `draining` while
/// draining, so load balancers (a Kubernetes readiness probe) send new
/// clients elsewhere. The node still answers the requests other nodes
/// forward for its sessions until it stops.
fn healthz(
    hub: Hub,
) -> impl Fn(&http::Request<tidewire::transport::IncomingBody>) -> http::Response<tidewire::transport::Body>
+ Send
+ Sync
+ 'static {
    move |_req| {
        if hub.is_draining() {
            text_response(StatusCode::SERVICE_UNAVAILABLE, "draining")
        } else {
            text_response(StatusCode::OK, "ok")
        }
    }
}

/// Where the chat's token secret comes from.
#[derive(Debug, PartialEq, Eq)]
enum TokenSecret {
    /// `JWT_SECRET`.
    Configured(String),
    /// Made at startup, for development: `/dev/token` is served.
    Development(String),
}

/// The chat's token secret: `JWT_SECRET` when set; otherwise a random one
/// for development, allowed only on a loopback address or with `--dev` (a
/// server reachable from elsewhere would hand out tokens to anyone).
fn token_secret(configured: Option<&str>, dev: bool, loopback: bool) -> std::io::Result<TokenSecret> {
    match configured {
        Some(secret) if !secret.is_empty() => Ok(TokenSecret::Configured(secret.to_owned())),
        _ if dev || loopback => {
            // Two ids: 30 random bytes from a CSPRNG seeded by the OS.
            Ok(TokenSecret::Development(format!("{}{}", tidewire::engine::new_id(), tidewire::engine::new_id())))
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "JWT_SECRET is not set and the server listens on a non-loopback address: set JWT_SECRET (--jwt-secret), \
             or pass --dev (TIDEWIRE_DEV=1) to serve development tokens from a random secret",
        )),
    }
}

/// Whether every address `host` resolves to is a loopback address.
async fn is_loopback(host: &str, port: u16) -> std::io::Result<bool> {
    let mut addrs = tokio::net::lookup_host((host, port)).await?.peekable();
    let any = addrs.peek().is_some();
    Ok(any && addrs.all(|a| a.ip().is_loopback()))
}

/// Joins the cluster over Redis at `url`. Redis being down is not fatal:
/// the node serves its own clients and the bus keeps reconnecting.
async fn join_cluster(hub: &Hub, url: &str, options: &Options) -> std::io::Result<Arc<RedisBus>> {
    let invalid = |e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    let protocol = if options.redis_sharded {
        Protocol::Sharded(match options.redis_subscription_mode.as_str() {
            "static" => SubscriptionMode::Static,
            "dynamic-private" => SubscriptionMode::DynamicPrivate,
            _ => SubscriptionMode::Dynamic,
        })
    } else {
        Protocol::Classic
    };
    let config = ClusterConfig::default()
        .prefix(options.redis_prefix.clone())
        .request_timeout(Duration::from_millis(options.request_timeout_ms))
        .heartbeat_interval(Duration::from_millis(options.cluster_heartbeat_ms))
        .protocol(protocol)
        .connection_caps(options.cluster_max_conn_per_user, options.cluster_max_conn_per_ip)
        .user_rate(match &options.cluster_rate_user {
            Some(text) => Some(text.parse().map_err(|e| invalid(&format!("--cluster-rate-user: {e}")))?),
            None => None,
        });
    let bus_config = RedisBusConfig::default().sharded(options.redis_sharded);
    let bus = hub.join_redis(url, options.redis_cluster, bus_config, config).await.map_err(|e| invalid(&e))?;
    Ok(bus)
}

/// `GET /dev/token?sub=alice&name=Alice&role=staff`: a one-hour token
/// signed with the development secret (random, made at startup).
fn dev_token(
    tokens: chat::Tokens,
) -> impl Fn(&http::Request<tidewire::transport::IncomingBody>) -> http::Response<tidewire::transport::Body>
+ Send
+ Sync
+ 'static {
    move |req| {
        let query: Vec<(String, String)> =
            req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let Some(sub) = get("sub").filter(|s| !s.is_empty()) else {
            return text_response(StatusCode::BAD_REQUEST, "sub is required");
        };
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 3600)
            .unwrap_or_default();
        let claims = chat::Claims { sub, name: get("name"), role: get("role"), exp: Some(exp) };
        match tokens.sign(&claims) {
            Ok(token) => text_response(StatusCode::OK, token),
            Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Raw Engine.IO: every message is sent back unchanged.
struct EngineEcho;

struct EchoConnection(Session);

impl EngineHandler for EngineEcho {
    fn on_open(&self, session: &Session, _request: &RequestInfo) -> Box<dyn Connection> {
        Box::new(EchoConnection(session.clone()))
    }
}

impl Connection for EchoConnection {
    fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason> {
        let _ = self.0.send_frame(frame);
        Ok(())
    }

    fn on_close(&mut self, _reason: CloseReason) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_secret_is_used_anywhere() {
        for (dev, loopback) in [(false, false), (true, false), (false, true)] {
            assert_eq!(token_secret(Some("s3cret"), dev, loopback).unwrap(), TokenSecret::Configured("s3cret".into()));
        }
    }

    #[test]
    fn without_a_secret_only_loopback_or_dev_mode_starts_with_a_random_secret() {
        let err = token_secret(None, false, false).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET is not set"), "{err}");
        assert!(token_secret(Some(""), false, false).is_err(), "an empty secret is no secret");
        let (TokenSecret::Development(a), TokenSecret::Development(b)) =
            (token_secret(None, false, true).unwrap(), token_secret(None, true, false).unwrap())
        else {
            panic!("development secrets expected");
        };
        assert_ne!(a, b, "a fresh secret per process");
        assert!(a.len() >= 40, "{a}");
    }

    #[tokio::test]
    async fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1", 0).await.unwrap());
        assert!(is_loopback("::1", 0).await.unwrap());
        assert!(!is_loopback("0.0.0.0", 0).await.unwrap());
        assert!(!is_loopback("::", 0).await.unwrap());
        assert!(!is_loopback("192.0.2.1", 0).await.unwrap());
    }
}
