//! `loadgen suite`: every scenario against the Tidewire bench server and
//! the reference Node socket.io server in one run, alternated (A, B, A, B)
//! because the machine is shared and noisy, each server pinned to one core
//! and the load generator to another. Prints one table with both figures
//! and their ratio per row, writes the whole run as JSON, flags any
//! Tidewire figure more than 10% worse than the one recorded in
//! `benches/RESULTS.md`, and with `--record` writes this run there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::acks::{self, AcksOpts};
use crate::client;
use crate::cluster::{self, ClusterOpts};
use crate::fanout::{self, FanoutOpts, Ladder};
use crate::idle::{self, IdleOpts};
use crate::redis_server::RedisServer;
use crate::server_proc::{self, Running, has_taskset, stop};
use crate::stats::median;

const BEGIN: &str = "<!-- results:begin (written by `make bench RECORD=1`) -->";
const END: &str = "<!-- results:end -->";
/// A checked figure may be this much worse than the recorded one.
const TOLERANCE: f64 = 0.10;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SuiteOpts {
    /// Runs of each scenario against each server (alternated).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Small, short runs: checks the tooling and both servers' contract,
    /// measures nothing worth keeping.
    #[arg(long)]
    quick: bool,
    /// Fail unless every run was complete (every connection made, every
    /// message and ack delivered).
    #[arg(long)]
    check: bool,
    /// Scenarios to run (default: all): idle, fanout, burst, acks, cluster.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the run's JSON goes.
    #[arg(long, default_value = "benches/results/latest.json")]
    out: PathBuf,
    /// The results file holding the recorded figures.
    #[arg(long, default_value = "benches/RESULTS.md")]
    results: PathBuf,
    /// Write this run into the results file as the new recorded figures.
    #[arg(long)]
    record: bool,
    /// The reference Node server's directory (with node_modules installed).
    #[arg(long, default_value = "benches/node")]
    node_dir: PathBuf,
    /// The core each server is pinned to.
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    /// The core the load generator is pinned to.
    #[arg(long, default_value_t = 1)]
    loadgen_core: usize,
    /// Connections held in the idle scenario.
    #[arg(long, default_value_t = 19_000)]
    idle_connections: usize,
    /// Another pair of peers: the command (split on spaces, `--port 0`
    /// appended) that replaces the Tidewire bench server on side A, e.g.
    /// `python3 benches/python/server.py tidewire-native`. With either
    /// side replaced, no figure is compared with the recorded ones and no
    /// target applies; the ratios stay.
    #[arg(long)]
    a_cmd: Option<String>,
    /// The command that replaces the Node server on side B.
    #[arg(long)]
    b_cmd: Option<String>,
    /// The fanout ladder's first rate (deliveries/s); slower peers need a
    /// lower one (a first step that misses finds nothing).
    #[arg(long, default_value_t = 20_000)]
    fanout_start: u64,
    /// Side A's name in the table.
    #[arg(long, default_value = "Tidewire")]
    a_label: String,
    /// Side B's name in the table.
    #[arg(long, default_value = "Node socket.io")]
    b_label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Server {
    Tidewire,
    Node,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Copy)]
enum Goal {
    /// Tidewire at least this many times better than Node.
    Ratio(f64),
    AtMost(f64),
    AtLeast(f64),
}

struct Metric {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    better: Better,
    /// Compared with the recorded figure (latency medians of fast paths
    /// are too noisy here to gate on).
    checked: bool,
    goal: Option<Goal>,
}

const METRICS: &[Metric] = &[
    Metric {
        key: "idle.rss_per_conn_kib",
        label: "idle: server memory per connection",
        unit: "KiB",
        better: Better::Lower,
        checked: true,
        goal: Some(Goal::AtMost(4.0)),
    },
    Metric {
        key: "idle.connect_rate",
        label: "idle: connections accepted per second",
        unit: "conn/s",
        better: Better::Higher,
        checked: true,
        goal: Some(Goal::Ratio(5.0)),
    },
    Metric {
        key: "idle.handshake_p50_ms",
        label: "idle: handshake p50",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "idle.handshake_p99_ms",
        label: "idle: handshake p99",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "fanout.best_rate",
        label: "fanout 1k room: deliveries/s with p99 <= 100 ms",
        unit: "msg/s",
        better: Better::Higher,
        checked: true,
        goal: Some(Goal::Ratio(8.0)),
    },
    Metric {
        key: "fanout.best_p99_ms",
        label: "fanout 1k room: p99 at that rate",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "fanout.saturation_rate",
        label: "fanout 1k room: deliveries/s at saturation",
        unit: "msg/s",
        better: Better::Higher,
        checked: true,
        goal: None,
    },
    Metric {
        key: "fanout.deliveries_per_cpu_sec",
        label: "fanout 1k room: deliveries per server CPU-second at saturation",
        unit: "msg/cpu-s",
        better: Better::Higher,
        checked: true,
        goal: Some(Goal::AtLeast(1_000_000.0)),
    },
    Metric {
        key: "burst.p50_ms",
        label: "one emit to a 10k room: latency p50",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "burst.p99_ms",
        label: "one emit to a 10k room: latency p99",
        unit: "ms",
        better: Better::Lower,
        checked: true,
        goal: Some(Goal::AtMost(100.0)),
    },
    Metric {
        key: "acks.rate",
        label: "acks 100 x 16 in flight: round trips/s",
        unit: "rt/s",
        better: Better::Higher,
        checked: true,
        goal: Some(Goal::Ratio(6.0)),
    },
    Metric {
        key: "acks.p99_ms",
        label: "acks 100 x 16 in flight: latency p99",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "cluster.best_rate",
        label: "cluster, 2 nodes, 10-member room on B, emitter on A: deliveries/s with p99 <= 100 ms",
        unit: "msg/s",
        better: Better::Higher,
        checked: true,
        goal: None,
    },
    Metric {
        key: "cluster.best_p99_ms",
        label: "cluster, 2 nodes: p99 at that rate",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "cluster.saturation_rate",
        label: "cluster, 2 nodes: deliveries/s at saturation",
        unit: "msg/s",
        better: Better::Higher,
        // A saturated step sheds load (Tidewire's bus refuses past its
        // bound): what it still delivers swings by half from run to run.
        checked: false,
        goal: None,
    },
    Metric {
        key: "cluster.deliveries_per_cpu_sec",
        label: "cluster, 2 nodes: deliveries per server CPU-second (A + B) at saturation",
        unit: "msg/cpu-s",
        better: Better::Higher,
        checked: true,
        goal: None,
    },
    Metric {
        key: "cluster.cross_p50_ms",
        label: "cluster at 1k emits/s (10k deliveries/s): latency p50, emitter on A, room on B",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "cluster.local_p50_ms",
        label: "cluster at 1k emits/s (10k deliveries/s): latency p50, emitter and room on B",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "cluster.hop_p50_ms",
        label: "cluster: latency the Redis hop adds (difference of those p50s)",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: Some(Goal::AtMost(1.0)),
    },
    Metric {
        key: "cluster.cross_p99_ms",
        label: "cluster at 1k emits/s (10k deliveries/s): latency p99, emitter on A, room on B",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "cluster.local_p99_ms",
        label: "cluster at 1k emits/s (10k deliveries/s): latency p99, emitter and room on B",
        unit: "ms",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "cluster.node_a_cpu_pct",
        label: "cluster at 1k emits/s, emitter on A: node A CPU",
        unit: "%",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
    Metric {
        key: "cluster.node_b_cpu_pct",
        label: "cluster at 1k emits/s, emitter on A: node B CPU",
        unit: "%",
        better: Better::Lower,
        checked: false,
        goal: None,
    },
];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Run {
    scenario: String,
    server: Server,
    round: usize,
    /// The scenario's figures, or the error that stopped it.
    result: Value,
    /// Flattened figures (metric key -> value).
    figures: Vec<(String, f64)>,
    complete: bool,
    loadgen_bound: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    tidewire: Option<f64>,
    node: Option<f64>,
    /// How many times better Tidewire is (>1 is better).
    ratio: Option<f64>,
    goal: Option<String>,
    goal_met: Option<bool>,
    recorded: Option<f64>,
    regression: bool,
}

struct Scenarios {
    idle: IdleOpts,
    fanout: FanoutOpts,
    burst: FanoutOpts,
    acks: AcksOpts,
    cluster: ClusterOpts,
}

fn scenarios(opts: &SuiteOpts) -> Scenarios {
    let ladder = Ladder {
        rates: vec![],
        start_rate: opts.fanout_start,
        step: Duration::from_secs(3),
        p99_limit_ms: 100.0,
        payload_bytes: 32,
    };
    let fanout = FanoutOpts { receivers: 1000, ladder: ladder.clone(), concurrency: 256 };
    let mut s = Scenarios {
        idle: IdleOpts { connections: opts.idle_connections, concurrency: 256, settle: Duration::from_secs(3) },
        burst: FanoutOpts {
            receivers: 10_000,
            ladder: Ladder {
                rates: vec![20_000],
                step: Duration::from_secs(10),
                p99_limit_ms: f64::INFINITY,
                ..ladder.clone()
            },
            ..fanout.clone()
        },
        fanout,
        acks: AcksOpts {
            clients: 100,
            in_flight: 16,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            payload_bytes: 32,
        },
        // 10 receivers: a small room, so that what each message costs on
        // its way through Redis, not the fan-out on node B, is what
        // limits the rate; the latency at 1k emits/s (10k deliveries/s),
        // far below what either server saturates at.
        cluster: ClusterOpts {
            node_a: String::new(),
            node_a_pid: None,
            redis_pid: None,
            receivers: 10,
            latency_rate: 10_000,
            latency_steps: 2,
            latency_step: Duration::from_secs(3),
            ladder,
            ready_timeout: Duration::from_secs(10),
        },
    };
    if opts.quick {
        s.idle.connections = 300;
        s.idle.settle = Duration::from_millis(200);
        s.fanout.receivers = 50;
        s.fanout.ladder.rates = vec![2_000, 5_000];
        s.fanout.ladder.step = Duration::from_secs(1);
        s.burst.receivers = 500;
        s.burst.ladder.rates = vec![1_000];
        s.burst.ladder.step = Duration::from_secs(2);
        s.acks.clients = 10;
        s.acks.in_flight = 4;
        s.acks.warmup = Duration::from_millis(200);
        s.acks.duration = Duration::from_secs(1);
        s.cluster.latency_rate = 2_000;
        s.cluster.latency_steps = 1;
        s.cluster.latency_step = Duration::from_secs(1);
        s.cluster.ladder.rates = vec![4_000];
        s.cluster.ladder.step = Duration::from_secs(1);
    }
    s
}

/// Starts `server` with `extra` arguments, pinned to the server core.
async fn start(server: Server, opts: &SuiteOpts, extra: &[String]) -> Result<Running, client::Error> {
    let replaced = match server {
        Server::Tidewire => opts.a_cmd.as_deref(),
        Server::Node => opts.b_cmd.as_deref(),
    };
    let mut program: Vec<String> = match server {
        _ if let Some(cmd) = replaced => {
            cmd.split_whitespace().map(str::to_owned).chain(["--port".to_owned(), "0".to_owned()]).collect()
        }
        Server::Tidewire => {
            let exe = std::env::current_exe()?.with_file_name("tidewire-bench-server");
            vec![exe.to_string_lossy().into_owned(), "--port".into(), "0".into()]
        }
        Server::Node => {
            let script = opts.node_dir.join("server.mjs");
            vec!["node".into(), script.to_string_lossy().into_owned(), "--port".into(), "0".into()]
        }
    };
    program.extend_from_slice(extra);
    server_proc::spawn(&program, Some(opts.server_core)).await.map_err(|e| format!("{server:?} server: {e}").into())
}

async fn run_one(name: &str, server: Server, round: usize, s: &Scenarios, opts: &SuiteOpts) -> Run {
    eprintln!("== {name} on {server:?} (round {})", round + 1);
    let mut run = Run {
        scenario: name.to_owned(),
        server,
        round,
        result: Value::Null,
        figures: vec![],
        complete: false,
        loadgen_bound: false,
    };
    if name == "cluster" {
        let outcome = run_cluster(server, &s.cluster, opts, &mut run).await;
        run.result = outcome.unwrap_or_else(|e| json!({ "error": e.to_string() }));
        if let Some(e) = run.result.get("error") {
            eprintln!("   {server:?}: {e}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        return run;
    }
    let mut running = match start(server, opts, &[]).await {
        Ok(r) => r,
        Err(e) => {
            run.result = json!({ "error": e.to_string() });
            return run;
        }
    };
    let (target, pid) = (running.target.clone(), running.pid);
    let mut fig = |k: &str, v: f64| run.figures.push((k.to_owned(), v));
    let outcome: Result<Value, client::Error> = match name {
        "idle" => {
            let (r, held) = idle::run(&target, pid, &s.idle).await;
            drop(held);
            fig("idle.rss_per_conn_kib", r.rss_per_conn_kib);
            fig("idle.connect_rate", r.connect_rate);
            fig("idle.handshake_p50_ms", r.handshake.p50_ms);
            fig("idle.handshake_p99_ms", r.handshake.p99_ms);
            run.complete = r.failed == 0 && r.connections == s.idle.connections;
            run.loadgen_bound = r.loadgen_cpu_pct >= 90.0;
            serde_json::to_value(&r).map_err(Into::into)
        }
        "fanout" => fanout::run(&target, pid, &s.fanout).await.and_then(|r| {
            fig("fanout.best_rate", r.best_rate);
            fig("fanout.best_p99_ms", r.best_latency.p99_ms);
            fig("fanout.saturation_rate", r.saturation_rate);
            fig("fanout.deliveries_per_cpu_sec", r.saturation_deliveries_per_cpu_sec);
            // A search ends on a missed step by design: it is complete when
            // some step passed. Fixed rates must each deliver everything.
            run.complete = if s.fanout.ladder.rates.is_empty() {
                r.best_rate > 0.0
            } else {
                r.steps.iter().all(|st| st.completeness >= 1.0)
            };
            run.loadgen_bound = r.loadgen_bound;
            Ok(serde_json::to_value(&r)?)
        }),
        "burst" => fanout::run(&target, pid, &s.burst).await.and_then(|r| {
            let step = r.steps.first().cloned().unwrap_or_default();
            fig("burst.p50_ms", step.latency.p50_ms);
            fig("burst.p99_ms", step.latency.p99_ms);
            run.complete = step.completeness >= 1.0;
            run.loadgen_bound = r.loadgen_bound;
            Ok(serde_json::to_value(&r)?)
        }),
        "acks" => acks::run(&target, pid, &s.acks).await.and_then(|r| {
            fig("acks.rate", r.rate);
            fig("acks.p99_ms", r.latency.p99_ms);
            run.complete = r.round_trips > 0 && r.mismatched == 0;
            run.loadgen_bound = r.loadgen_bound;
            Ok(serde_json::to_value(&r)?)
        }),
        other => Err(format!("unknown scenario {other}").into()),
    };
    run.result = outcome.unwrap_or_else(|e| json!({ "error": e.to_string() }));
    if let Some(e) = run.result.get("error") {
        eprintln!("   {server:?}: {e}");
    }
    let _ = running.child.kill().await;
    // Let the kernel reap the server's sockets before the next run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run
}

/// The channel every node of the cluster subscribes to (the official
/// adapter's request channel; `serverCount()` counts its subscribers).
const CLUSTER_REQUEST_CHANNEL: &str = "socket.io-request#/#";

/// The cluster scenario: a Redis server of its own (with the load
/// generator's core), two nodes of `server` joined through it (both on the
/// server core), ready when both subscribed and a probe from A reaches
/// every receiver on B.
async fn run_cluster(server: Server, c: &ClusterOpts, opts: &SuiteOpts, run: &mut Run) -> Result<Value, client::Error> {
    let core = has_taskset().then_some(opts.loadgen_core);
    let mut redis = RedisServer::start(core).await?;
    let extra = ["--redis".to_owned(), redis.url()];
    let mut a = start(server, opts, &extra).await?;
    let mut b = start(server, opts, &extra).await?;
    redis.wait_subscribers(CLUSTER_REQUEST_CHANNEL, 2, Duration::from_secs(10)).await?;
    let c = ClusterOpts { node_a: a.url.clone(), node_a_pid: a.pid, redis_pid: redis.pid, ..c.clone() };
    let outcome = cluster::run(&b.target, b.pid, &c).await;
    for (node, running) in [("A", &mut a), ("B", &mut b)] {
        if server == Server::Tidewire {
            eprint!("   node {node}: ");
        }
        stop(&mut running.child).await;
    }
    let _ = redis.child.kill().await;
    let r = outcome?;
    let mut fig = |k: &str, v: f64| run.figures.push((k.to_owned(), v));
    fig("cluster.best_rate", r.ladder.best_rate);
    fig("cluster.best_p99_ms", r.ladder.best_latency.p99_ms);
    fig("cluster.saturation_rate", r.ladder.saturation_rate);
    fig("cluster.deliveries_per_cpu_sec", r.ladder.saturation_deliveries_per_cpu_sec);
    fig("cluster.cross_p50_ms", r.cross.latency.p50_ms);
    fig("cluster.local_p50_ms", r.local.latency.p50_ms);
    fig("cluster.hop_p50_ms", r.hop_p50_ms);
    fig("cluster.cross_p99_ms", r.cross.latency.p99_ms);
    fig("cluster.local_p99_ms", r.local.latency.p99_ms);
    fig("cluster.node_a_cpu_pct", r.cross.node_a_cpu_pct);
    fig("cluster.node_b_cpu_pct", r.cross.node_b_cpu_pct);
    run.complete = r.complete(&c);
    run.loadgen_bound = r.loadgen_bound;
    Ok(serde_json::to_value(&r)?)
}

impl SuiteOpts {
    pub(crate) fn loadgen_core(&self) -> usize {
        self.loadgen_core
    }

    /// Whether either side is not the default pair (Tidewire's bench
    /// server, Node socket.io): recorded figures and targets are theirs.
    fn other_peers(&self) -> bool {
        self.a_cmd.is_some() || self.b_cmd.is_some()
    }
}

pub(crate) async fn run(opts: &SuiteOpts) -> Result<bool, client::Error> {
    let s = scenarios(opts);
    let names: Vec<&str> = ["idle", "fanout", "burst", "acks", "cluster"]
        .into_iter()
        .filter(|n| opts.only.is_empty() || opts.only.iter().any(|o| o == n))
        .collect();
    let rounds = if opts.quick { 1 } else { opts.rounds.max(1) };
    let mut runs = vec![];
    for name in &names {
        for round in 0..rounds {
            for server in [Server::Tidewire, Server::Node] {
                runs.push(run_one(name, server, round, &s, opts).await);
            }
        }
    }
    // Quick figures are not comparable with recorded ones.
    let recorded = if opts.quick || opts.other_peers() { None } else { read_recorded(&opts.results) };
    let mut rows = summarize(&runs, recorded.as_ref());
    if opts.other_peers() {
        for r in &mut rows {
            (r.goal, r.goal_met) = (None, None);
        }
    }
    let info = machine_info(opts, &names).await;
    let table = render(&rows, &info, &runs, rounds);
    println!("{table}");

    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let report = json!({ "info": info, "rounds": rounds, "quick": opts.quick, "summary": rows, "runs": runs });
    std::fs::write(&opts.out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("wrote {}", opts.out.display());

    if opts.record && !opts.quick && !opts.other_peers() {
        record(&opts.results, &table, &rows)?;
        eprintln!("recorded this run in {}", opts.results.display());
    }
    let mut ok = true;
    if opts.check {
        for r in runs.iter().filter(|r| !r.complete) {
            eprintln!(
                "CHECK FAILED: {} on {:?} (round {}) was not complete: {}",
                r.scenario,
                r.server,
                r.round + 1,
                r.result
            );
            ok = false;
        }
    }
    let regressions: Vec<&Row> = rows.iter().filter(|r| r.regression).collect();
    let recorded_node = if opts.quick || opts.other_peers() { None } else { read_recorded_node(&opts.results) };
    for r in &regressions {
        // Node's figure in the same two runs tells machine noise from a
        // real regression.
        let node_then = recorded_node.as_ref().and_then(|n| n.get(r.key)).and_then(Value::as_f64);
        eprintln!(
            "REGRESSION: {} is {:.1} {}, recorded {:.1} (more than {:.0}% worse); Node: {} now, {} recorded",
            r.label,
            r.tidewire.unwrap_or_default(),
            r.unit,
            r.recorded.unwrap_or_default(),
            TOLERANCE * 100.0,
            r.node.map_or("-".to_owned(), fmt_num),
            node_then.map_or("-".to_owned(), fmt_num),
        );
    }
    Ok(ok && regressions.is_empty())
}

fn summarize(runs: &[Run], recorded: Option<&Value>) -> Vec<Row> {
    let figure = |server: Server, key: &str| {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| r.server == server)
            .flat_map(|r| r.figures.iter().filter(|(k, _)| k == key).map(|(_, v)| *v))
            .collect();
        median(&values)
    };
    METRICS
        .iter()
        .filter_map(|m| {
            let (tidewire, node) = (figure(Server::Tidewire, m.key), figure(Server::Node, m.key));
            if tidewire.is_none() && node.is_none() {
                return None;
            }
            let ratio = match (tidewire, node, m.better) {
                (Some(t), Some(n), Better::Higher) if n > 0.0 => Some(t / n),
                (Some(t), Some(n), Better::Lower) if t > 0.0 => Some(n / t),
                _ => None,
            };
            let goal_met = m.goal.and_then(|g| match g {
                Goal::Ratio(x) => ratio.map(|r| r >= x),
                Goal::AtMost(x) => tidewire.map(|t| t <= x),
                Goal::AtLeast(x) => tidewire.map(|t| t >= x),
            });
            let recorded = recorded.and_then(|r| r.get(m.key)).and_then(Value::as_f64);
            let regression = m.checked && is_regression(m.better, tidewire, recorded);
            Some(Row {
                key: m.key,
                label: m.label,
                unit: m.unit,
                tidewire,
                node,
                ratio,
                goal: m.goal.map(|g| match g {
                    Goal::Ratio(x) => format!(">= {x}x Node"),
                    Goal::AtMost(x) => format!("<= {} {}", fmt_num(x), m.unit),
                    Goal::AtLeast(x) => format!(">= {} {}", fmt_num(x), m.unit),
                }),
                goal_met,
                recorded,
                regression,
            })
        })
        .collect()
}

fn is_regression(better: Better, now: Option<f64>, recorded: Option<f64>) -> bool {
    match (now, recorded) {
        (Some(now), Some(rec)) => match better {
            Better::Higher => now < rec * (1.0 - TOLERANCE),
            Better::Lower => now > rec / (1.0 - TOLERANCE),
        },
        // A figure that was recorded and is now missing is a regression.
        (None, Some(_)) => true,
        _ => false,
    }
}

fn fmt_num(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn render(rows: &[Row], info: &Value, runs: &[Run], rounds: usize) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let _ = writeln!(
        out,
        "Run {} on {} ({} cores), kernel {}.",
        s(&info["date"]),
        s(&info["cpu"]),
        info["cores"],
        s(&info["kernel"])
    );
    let (a, b) = (s(&info["a_label"]), s(&info["b_label"]));
    if info["a_cmd"].is_null() && info["b_cmd"].is_null() {
        let _ = writeln!(
            out,
            "Tidewire {} vs Node {} with socket.io {}; {rounds} round(s) per scenario, alternated; median of rounds.",
            s(&info["tidewire"]),
            s(&info["node"]),
            s(&info["socket_io"])
        );
    } else {
        let cmd = |k: &str| info[k].as_str().map_or_else(|| "(default)".to_owned(), |c| format!("`{c}`"));
        let _ = writeln!(
            out,
            "{a} ({}) vs {b} ({}); {rounds} round(s) per scenario, alternated; median of rounds.",
            cmd("a_cmd"),
            cmd("b_cmd")
        );
    }
    let _ = writeln!(out, "{}\n", s(&info["pinning"]));
    if info["quick"] == json!(true) {
        let _ = writeln!(out, "QUICK RUN: tiny sizes and short steps; a check of the tooling, not a measurement.\n");
    }
    let _ = writeln!(out, "| figure | unit | {a} | {b} | {a} vs {b} | target | recorded |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|---:|");
    for r in rows {
        let v = |x: Option<f64>| x.map_or("-".to_owned(), fmt_num);
        let goal = match (&r.goal, r.goal_met) {
            (Some(g), Some(true)) => format!("{g}: met"),
            (Some(g), Some(false)) => format!("{g}: **not met**"),
            (Some(g), None) => g.clone(),
            (None, _) => String::new(),
        };
        let recorded = match (r.recorded, r.regression) {
            (Some(x), true) => format!("{} **REGRESSION**", fmt_num(x)),
            (Some(x), false) => fmt_num(x),
            (None, _) => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.unit,
            v(r.tidewire),
            v(r.node),
            r.ratio.map_or("-".to_owned(), |x| format!("{x:.1}x")),
            goal,
            recorded
        );
    }
    let bound: Vec<String> = runs
        .iter()
        .filter(|r| r.loadgen_bound)
        .map(|r| format!("{} on {:?} (round {})", r.scenario, r.server, r.round + 1))
        .collect();
    if !bound.is_empty() {
        let _ = writeln!(
            out,
            "\nThe load generator used >= 90% of its core in: {}. Those figures may be the load generator's limit, not the server's.",
            bound.join(", ")
        );
    }
    let incomplete: Vec<String> = runs
        .iter()
        .filter(|r| !r.complete)
        .map(|r| format!("{} on {:?} (round {})", r.scenario, r.server, r.round + 1))
        .collect();
    if !incomplete.is_empty() {
        let _ = writeln!(out, "\nIncomplete runs (see the JSON): {}.", incomplete.join(", "));
    }
    out
}

async fn machine_info(opts: &SuiteOpts, names: &[&str]) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()).unwrap_or_default();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .await
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let socket_io = package_version(&opts.node_dir.join("node_modules/socket.io/package.json"));
    let pinning = if has_taskset() {
        let mut p = format!(
            "Servers pinned to core {} (taskset), the load generator to core {}.",
            opts.server_core, opts.loadgen_core
        );
        if names.contains(&"cluster") {
            p.push_str(&format!(
                " Cluster: both nodes on core {}, redis-server {} on core {} with the load generator.",
                opts.server_core,
                redis_version().unwrap_or_default(),
                opts.loadgen_core
            ));
        }
        p
    } else {
        "taskset not found: nothing pinned.".to_owned()
    };
    json!({
        "date": httpdate::fmt_http_date(SystemTime::now()),
        "cpu": cpu,
        "cores": std::fs::read_to_string("/proc/cpuinfo").map_or(0, |c| c.lines().filter(|l| l.starts_with("processor")).count()),
        "kernel": kernel,
        "tidewire": env!("CARGO_PKG_VERSION"),
        "node": node,
        "socket_io": socket_io,
        "pinning": pinning,
        "quick": opts.quick,
        "a_label": opts.a_label,
        "b_label": opts.b_label,
        "a_cmd": opts.a_cmd,
        "b_cmd": opts.b_cmd,
    })
}

/// `redis-server --version`'s `v=X.Y.Z`.
fn redis_version() -> Option<String> {
    let out = std::process::Command::new("redis-server").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().find_map(|w| w.strip_prefix("v=")).map(str::to_owned)
}

fn package_version(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The recorded Tidewire figures: the JSON block between the markers.
fn read_recorded(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_recorded(&text)
}

/// The Node figures recorded with them.
fn read_recorded_node(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_recorded_side(&text, "node")
}

fn parse_recorded(text: &str) -> Option<Value> {
    parse_recorded_side(text, "tidewire")
}

fn parse_recorded_side(text: &str, side: &str) -> Option<Value> {
    let section = &text[text.find(BEGIN)? + BEGIN.len()..];
    let section = &section[..section.find(END)?];
    let json = &section[section.find("```json")? + "```json".len()..];
    let json = &json[..json.find("```")?];
    serde_json::from_str::<Value>(json).ok()?.get(side).cloned()
}

fn record(path: &Path, table: &str, rows: &[Row]) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let figures: serde_json::Map<String, Value> = rows
        .iter()
        .filter_map(|r| r.tidewire.map(|t| (r.key.to_owned(), json!((t * 1000.0).round() / 1000.0))))
        .collect();
    let node: serde_json::Map<String, Value> =
        rows.iter().filter_map(|r| r.node.map(|t| (r.key.to_owned(), json!((t * 1000.0).round() / 1000.0)))).collect();
    let block = format!(
        "{BEGIN}\n{table}\nRecorded figures (the next `make bench` flags any checked Tidewire figure more than {:.0}% worse):\n\n```json\n{}\n```\n{END}",
        TOLERANCE * 100.0,
        serde_json::to_string_pretty(&json!({ "tidewire": figures, "node": node })).unwrap_or_default()
    );
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &text[..b], &text[e + END.len()..]),
        _ => format!("{text}\n{block}\n"),
    };
    std::fs::write(path, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regressions_respect_direction_and_tolerance() {
        assert!(!is_regression(Better::Higher, Some(95.0), Some(100.0)));
        assert!(is_regression(Better::Higher, Some(89.0), Some(100.0)));
        assert!(!is_regression(Better::Lower, Some(11.0), Some(10.0)));
        assert!(is_regression(Better::Lower, Some(11.2), Some(10.0)));
        assert!(is_regression(Better::Higher, None, Some(1.0)));
        assert!(!is_regression(Better::Higher, Some(1.0), None));
    }

    #[test]
    fn recorded_figures_round_trip_through_the_results_file() {
        let dir = std::env::temp_dir().join(format!("tidewire-loadgen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("RESULTS.md");
        std::fs::write(&path, "# Results\n\nProse stays.\n").unwrap();
        let row = |key, t: Option<f64>| Row {
            key,
            label: "x",
            unit: "u",
            tidewire: t,
            node: Some(1.0),
            ratio: None,
            goal: None,
            goal_met: None,
            recorded: None,
            regression: false,
        };
        record(&path, "| table |", &[row("a.b", Some(1.5)), row("c.d", None)]).unwrap();
        record(&path, "| table |", &[row("a.b", Some(2.5))]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Results\n\nProse stays.\n"));
        assert_eq!(text.matches(BEGIN).count(), 1, "{text}");
        assert_eq!(parse_recorded(&text).unwrap(), json!({ "a.b": 2.5 }));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn summary_takes_medians_and_ratios_in_the_better_direction() {
        let run = |server, figures: Vec<(&str, f64)>| Run {
            scenario: "x".into(),
            server,
            round: 0,
            result: Value::Null,
            figures: figures.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            complete: true,
            loadgen_bound: false,
        };
        let runs = vec![
            run(Server::Tidewire, vec![("acks.rate", 600.0), ("idle.rss_per_conn_kib", 3.0)]),
            run(Server::Tidewire, vec![("acks.rate", 800.0), ("idle.rss_per_conn_kib", 5.0)]),
            run(Server::Node, vec![("acks.rate", 100.0), ("idle.rss_per_conn_kib", 12.0)]),
        ];
        let rows = summarize(&runs, Some(&json!({ "acks.rate": 1000.0 })));
        let acks = rows.iter().find(|r| r.key == "acks.rate").unwrap();
        assert_eq!((acks.tidewire, acks.node, acks.ratio), (Some(700.0), Some(100.0), Some(7.0)));
        assert_eq!(acks.goal_met, Some(true));
        assert!(acks.regression, "700 is more than 10% below the recorded 1000");
        let mem = rows.iter().find(|r| r.key == "idle.rss_per_conn_kib").unwrap();
        assert_eq!((mem.tidewire, mem.ratio, mem.goal_met), (Some(4.0), Some(3.0), Some(true)));
        assert_eq!(rows.len(), 2, "rows without figures are left out");
    }
}
