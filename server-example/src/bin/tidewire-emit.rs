//! `tidewire-emit`: publishes to a cluster's sockets from the command line
//! (a deploy script, a cron job), wire-compatible with npm
//! `@socket.io/redis-emitter`: official socket.io nodes and Tidewire nodes
//! deliver it alike.
//!
//! ```sh
//! tidewire-emit --redis-url redis://127.0.0.1:6379 --to room:general emit news '"hello"' '{"n": 1}'
//! tidewire-emit --redis-url redis://127.0.0.1:6379 --user 42 join vip
//! tidewire-emit --redis-url redis://127.0.0.1:6379 --nsp /admin server-side-emit reload
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use serde_json::Value;
use tidewire::bus::{RedisBus, RedisBusConfig};
use tidewire::cluster::Emitter;
use tidewire::protocol::socketio::Payload;

/// Publishes to a Socket.IO cluster's sockets over Redis.
#[derive(Debug, clap::Parser)]
#[command(name = "tidewire-emit", version)]
struct Options {
    /// The cluster's Redis (`redis://host:port/db`; seeds separated by
    /// commas with `--redis-cluster`).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: String,
    /// `--redis-url` names nodes of a Redis Cluster.
    #[arg(long, env = "TIDEWIRE_REDIS_CLUSTER")]
    redis_cluster: bool,
    /// The cluster's channel prefix (the official adapter's `key`).
    #[arg(long, env = "TIDEWIRE_REDIS_PREFIX", default_value = "socket.io")]
    redis_prefix: String,
    /// The namespace.
    #[arg(long, default_value = "/")]
    nsp: String,
    /// Sockets in this room (repeatable; every socket when none).
    #[arg(long = "to")]
    rooms: Vec<String>,
    /// Every connection of this user (repeatable).
    #[arg(long = "user")]
    users: Vec<String>,
    /// Not the sockets in this room (repeatable).
    #[arg(long)]
    except: Vec<String>,
    /// May be dropped for recipients that cannot take it now.
    #[arg(long)]
    volatile: bool,
    /// How long to wait for Redis, in ms.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Emits EVENT with ARGS (each a JSON value) to the chosen sockets.
    Emit { event: String, args: Vec<String> },
    /// Emits EVENT with ARGS to the server-side handlers of every node.
    ServerSideEmit { event: String, args: Vec<String> },
    /// Makes the chosen sockets join ROOMS.
    Join { rooms: Vec<String> },
    /// Makes the chosen sockets leave ROOMS.
    Leave { rooms: Vec<String> },
    /// Disconnects the chosen sockets (with `--close`, their connections).
    Disconnect {
        #[arg(long)]
        close: bool,
    },
}

fn json_args(args: &[String]) -> Result<Payload, String> {
    let values = args
        .iter()
        .map(|a| serde_json::from_str::<Value>(a).map_err(|e| format!("argument {a:?} is not JSON: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Payload::json(values))
}

fn main() -> ExitCode {
    let options = Options::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tidewire-emit: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidewire-emit: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let (bus, _inbound) = RedisBus::open(&options.redis_url, options.redis_cluster, RedisBusConfig::default())
        .map_err(|e| e.to_string())?;
    let bus = Arc::new(bus);
    let mut emitter = Emitter::new(bus.clone()).with_prefix(&options.redis_prefix).of(&options.nsp);
    for room in &options.rooms {
        emitter = emitter.to(room.as_str());
    }
    for user in &options.users {
        emitter = emitter.to_user(user);
    }
    for room in &options.except {
        emitter = emitter.except(room.as_str());
    }
    if options.volatile {
        emitter = emitter.volatile();
    }
    match &options.command {
        Command::Emit { event, args } => emitter.emit(event, &json_args(args)?),
        Command::ServerSideEmit { event, args } => emitter.server_side_emit(event, &json_args(args)?),
        Command::Join { rooms } => emitter.sockets_join(rooms.iter().cloned()),
        Command::Leave { rooms } => emitter.sockets_leave(rooms.iter().cloned()),
        Command::Disconnect { close } => emitter.disconnect_sockets(*close),
    }
    .map_err(|e| e.to_string())?;
    let waited = Duration::from_millis(options.timeout_ms);
    if !bus.flush(waited).await {
        return Err(format!("Redis at the given URL did not take the message within {waited:?}"));
    }
    bus.close();
    Ok(())
}
