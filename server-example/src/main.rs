//! The Tidewire reference server.
//!
//! Serves Socket.IO at `/socket.io/` (namespaces `/` and `/chat`) and a raw
//! Engine.IO echo at `/engine.io/`. With no arguments it listens on
//! 127.0.0.1:3000 with socket.io's default settings and needs nothing else
//! (no Redis).
//!
//! Events, in both namespaces:
//! * `echo`: acknowledged with the same arguments, or, without an ack,
//!   emitted back as `echo`;
//! * `whoami`: acknowledged with `{id, nsp, auth}` (`auth` is `{}` when the
//!   CONNECT carried none, as in socket.io);
//! * `ask`: the server emits `question` with an ack and, once the client
//!   answers `x`, emits `answer` with `x`.
//!
//! A CONNECT whose auth is `{"token":"bad"}` is refused with
//! `{"message":"unauthorized"}`.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use serde_json::{Value, json};
use tidewire::engine::{CloseReason, Connection, Engine, EngineConfig, EngineHandler, RequestInfo, Session};
use tidewire::hub::{Admission, ConnectError, Event, Handshake, Hub, HubConfig, Namespace, Parser, Socket};
use tidewire::protocol::engine::Frame;
use tidewire::protocol::socketio::Payload;
use tidewire::transport::Server;

/// Command-line options (each also readable from the environment).
#[derive(Debug, clap::Parser)]
#[command(name = "tidewire-server", version, about = "The Tidewire reference Socket.IO server")]
struct Options {
    /// Address to listen on.
    #[arg(long, env = "TIDEWIRE_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "TIDEWIRE_PORT", default_value_t = 3000)]
    port: u16,
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
    /// Allowed CORS origin for browser pages on other origins (repeatable; `*` for any).
    #[arg(long = "cors-origin", env = "TIDEWIRE_CORS_ORIGIN")]
    cors_origins: Vec<String>,
}

fn main() -> std::io::Result<()> {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(options))
}

async fn run(options: Options) -> std::io::Result<()> {
    let mut engine_config = EngineConfig::default()
        .ping_interval(Duration::from_millis(options.ping_interval_ms))
        .ping_timeout(Duration::from_millis(options.ping_timeout_ms))
        .upgrade_timeout(Duration::from_millis(options.upgrade_timeout_ms))
        .max_payload(options.max_payload);
    for origin in &options.cors_origins {
        engine_config = engine_config.cors_origin(origin.clone());
    }

    let parser = match options.parser.as_str() {
        "msgpack" => Parser::Msgpack,
        _ => Parser::Default,
    };
    let hub = Hub::new(
        HubConfig::default().connect_timeout(Duration::from_millis(options.connect_timeout_ms)).parser(parser),
    );
    for name in ["/", "/chat"] {
        chat_namespace(&hub.of(name));
    }

    let server = Server::builder()
        .mount("/socket.io/", hub.engine(engine_config.clone()))
        .mount("/engine.io/", Engine::new(engine_config, Arc::new(EngineEcho)))
        .bind((options.host.as_str(), options.port))
        .await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "tidewire-server listening on http://{}", server.local_addr())?;
    stdout.flush()?;

    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
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

/// The demo handlers of one namespace.
fn chat_namespace(ns: &Namespace) {
    ns.use_middleware(|handshake: Arc<Handshake>| async move {
        if handshake.auth.get("token") == Some(&json!("bad")) {
            return Err(ConnectError::new("unauthorized"));
        }
        Ok(Admission::accept())
    });
    ns.on("echo", |socket: Socket, event: Event| async move {
        let result = match event.ack {
            Some(ack) => ack.send(event.args),
            None => socket.emit("echo", event.args),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "echo not delivered");
        }
    });
    ns.on("whoami", |socket: Socket, event: Event| async move {
        if let Some(ack) = event.ack {
            let me = json!({ "id": socket.id(), "nsp": socket.namespace(), "auth": socket.handshake().auth });
            let _ = ack.send(Payload::json(vec![me]));
        }
    });
    ns.on("ask", |socket: Socket, _event: Event| async move {
        match socket.emit_with_ack("question", Payload::json(vec![json!("ping?")]), None).await {
            Ok(answer) => {
                let first = answer.data.into_iter().next().unwrap_or(Value::Null);
                let mut args = Payload::json(vec![first]);
                args.attachments = answer.attachments;
                let _ = socket.emit("answer", args);
            }
            Err(e) => tracing::debug!(error = %e, "question not answered"),
        }
    });
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
