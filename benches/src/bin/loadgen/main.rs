//! `loadgen`: a Socket.IO load generator (WebSocket transport) that drives
//! scenarios against any server by URL, and `loadgen suite`, which runs
//! them all against Tidewire and Node socket.io side by side.
//!
//! It runs on one thread (pin it to a core of its own); every scenario
//! reports the CPU it used, and says so when it, rather than the server,
//! may have been the limit.

mod abuse;
mod acks;
mod client;
mod cluster;
mod fanout;
mod forward;
mod idle;
mod procfs;
mod redis_server;
mod server_proc;
mod soak;
mod stats;
mod suite;

use std::process::ExitCode;

use clap::Parser as _;

#[derive(Debug, clap::Parser)]
#[command(name = "loadgen", about = "Socket.IO load generator (Tidewire benches)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Hold N idle connections: connect rate, handshake latency, server memory.
    Idle {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: idle::IdleOpts,
    },
    /// One emitter, N receivers in a room, stepped rates.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: fanout::FanoutOpts,
    },
    /// Two nodes of a cluster: receivers on node B (`--url`), the emitter
    /// on node A (`--node-a`); the Redis hop's latency and the delivered rate.
    Cluster {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: cluster::ClusterOpts,
    },
    /// Long-polling requests served by a node that does not own the
    /// session (forwarded over the cluster) against the owner itself.
    Forward {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: forward::ForwardOpts,
    },
    /// K clients with D emits with ack in flight each.
    Acks {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        opts: acks::AcksOpts,
    },
    /// The reference server under a long mixed load with churn (started
    /// here): leaks of memory, descriptors, threads, sessions; every ack.
    Soak {
        #[command(flatten)]
        opts: soak::SoakOpts,
    },
    /// Healthy clients on the reference server (started here) while others
    /// abuse it in turn: slow headers, slow bodies, slow consumers, a
    /// handshake flood, a reconnect storm after a drain.
    Abuse {
        #[command(flatten)]
        opts: abuse::AbuseOpts,
    },
    /// Every scenario against Tidewire and Node socket.io, alternated.
    Suite {
        #[command(flatten)]
        opts: suite::SuiteOpts,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct Common {
    /// The server, e.g. http://127.0.0.1:3000 (Socket.IO at /socket.io/).
    #[arg(long)]
    url: String,
    /// The server's process id, to read its CPU time and memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Pin the load generator to this core.
    #[arg(long)]
    core: Option<usize>,
}

fn pin(core: Option<usize>) {
    if let Some(id) = core
        && !core_affinity::set_for_current(core_affinity::CoreId { id })
    {
        eprintln!("loadgen: could not pin to core {id}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let result: Result<bool, client::Error> = local.block_on(&runtime, async move {
        match cli.command {
            Cmd::Idle { common, opts } => {
                pin(common.core);
                let (r, _held) = idle::run(&client::Target::parse(&common.url)?, common.pid, &opts).await;
                println!("{}", serde_json::to_string_pretty(&r)?);
                Ok(r.failed == 0)
            }
            Cmd::Fanout { common, opts } => {
                pin(common.core);
                let r = fanout::run(&client::Target::parse(&common.url)?, common.pid, &opts).await?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                Ok(true)
            }
            Cmd::Cluster { common, opts } => {
                pin(common.core);
                let r = cluster::run(&client::Target::parse(&common.url)?, common.pid, &opts).await?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                Ok(r.complete(&opts))
            }
            Cmd::Forward { common, opts } => {
                pin(common.core);
                let r = forward::run(&client::Target::parse(&common.url)?, &opts).await?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                Ok(true)
            }
            Cmd::Acks { common, opts } => {
                pin(common.core);
                let r = acks::run(&client::Target::parse(&common.url)?, common.pid, &opts).await?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                Ok(r.mismatched == 0)
            }
            Cmd::Soak { opts } => soak::run(&opts).await,
            Cmd::Abuse { opts } => abuse::run(&opts).await,
            Cmd::Suite { opts } => {
                pin(Some(opts.loadgen_core()));
                suite::run(&opts).await
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
