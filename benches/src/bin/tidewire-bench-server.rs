//! The Tidewire side of the load generator's test contract (the Node side
//! is `benches/node/server.mjs`; the two must stay identical on the wire).
//!
//! On the main namespace, with the stock configuration:
//! * `join` `(room)`: joins `room`, acks `true`;
//! * `fanout` `(room, ...args)`: emits `fanout` `(...args)` to `room`,
//!   sender excluded;
//! * `echo` `(...args)`: acks with the same arguments.
//!
//! With `--redis URL` the hub joins a cluster over Redis (the
//! `@socket.io/redis-adapter` classic protocol, channel prefix
//! `--redis-prefix`): broadcasts reach every node's members, Tidewire or
//! Node socket.io with the official adapter alike.
//!
//! Prints `listening on http://ADDR` on stdout once it accepts connections
//! (and, with `--redis`, once it is subscribed). On SIGINT, a clustered
//! server prints its cluster counters on stderr before it stops.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use tidewire::bus::{RedisBus, RedisBusConfig};
use tidewire::cluster::ClusterConfig;
use tidewire::engine::EngineConfig;
use tidewire::hub::{Event, Hub, HubConfig, Socket};
use tidewire::limits::{Rate, RateLimits};
use tidewire::protocol::socketio::Payload;
use tidewire::transport::Server;

#[derive(Debug, clap::Parser)]
#[command(name = "tidewire-bench-server", about = "Tidewire server for the load generator's contract")]
struct Options {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// No rate limits and no connection caps at all (to measure what the
    /// checks cost; the suite runs with them).
    #[arg(long)]
    no_limits: bool,
    /// Join a cluster over the Redis server at this URL
    /// (`redis://127.0.0.1:6379`).
    #[arg(long)]
    redis: Option<String>,
    /// The cluster's channel prefix (the official adapter's `key`).
    #[arg(long, default_value = "socket.io")]
    redis_prefix: String,
}

fn main() -> std::io::Result<()> {
    let options = Options::parse();
    // Worker threads follow the CPU affinity (`taskset -c 0` gives one).
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(options))
}

async fn run(options: Options) -> std::io::Result<()> {
    // Stock configuration, except that the rate limits are far above what
    // the load generator offers: every event still pays for its checks, but
    // none is refused (socket.io has no limits to compare with).
    let unrefusable = Some(Rate::per_second(1_000_000_000).burst(1_000_000_000));
    let limits = RateLimits::default().socket(unrefusable).user(unrefusable).ip(unrefusable);
    let config = HubConfig::default().rate_limits(limits);
    let hub = Hub::new(if options.no_limits { config.unlimited() } else { config });
    let ns = hub.of("/");
    ns.on("join", |socket: Socket, event: Event| async move {
        if let Some(room) = event.args.data.first().and_then(|v| v.as_str())
            && socket.join(room.to_owned()).is_err()
        {
            return;
        }
        if let Some(ack) = event.ack {
            let _ = ack.send(Payload::json(vec![serde_json::Value::Bool(true)]));
        }
    });
    ns.on("fanout", |socket: Socket, event: Event| async move {
        let mut args = event.args;
        let Some(room) = args.data.first().and_then(|v| v.as_str()).map(str::to_owned) else { return };
        args.data.remove(0);
        socket.to(room).emit("fanout", args);
    });
    ns.on("echo", |_socket: Socket, event: Event| async move {
        if let Some(ack) = event.ack {
            let _ = ack.send(event.args);
        }
    });
    let mut bus = None;
    if let Some(url) = &options.redis {
        let (redis, inbound) = RedisBus::connect(url, RedisBusConfig::default()).map_err(std::io::Error::other)?;
        let redis = Arc::new(redis);
        bus = Some(redis.clone());
        let bus = redis;
        hub.join_cluster(bus.clone(), inbound, ClusterConfig::default().prefix(options.redis_prefix.clone()))
            .await
            .map_err(std::io::Error::other)?;
        if !bus.wait_connected(Duration::from_secs(5)).await {
            return Err(std::io::Error::other(format!("{url}: not subscribed within 5 s")));
        }
    }
    let server = Server::builder()
        .mount("/socket.io/", hub.engine(EngineConfig::default()))
        .bind((options.host.as_str(), options.port))
        .await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{}", server.local_addr())?;
    stdout.flush()?;
    let _ = tokio::signal::ctrl_c().await;
    if let (Some(bus), Some(stats)) = (&bus, hub.cluster_stats()) {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "cluster: published {} (refused {}), received {} (malformed {}); redis bus: dropped outbound {}, dropped inbound {}, subscriber connections made {}",
            n(&stats.published),
            n(&stats.publish_failed),
            n(&stats.received),
            n(&stats.malformed),
            bus.dropped_outbound(),
            bus.dropped_inbound(),
            bus.connections_made()
        );
    }
    server.shutdown().await;
    Ok(())
}
