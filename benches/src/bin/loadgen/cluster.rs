//! Scenario `cluster`: two nodes of one cluster (Redis pub/sub between
//! them). N receivers join a room on node B; one emitter on node A emits
//! `fanout` to the room, which reaches them only through Redis.
//!
//! Two parts, on the same servers and receivers:
//! 1. **Latency of the Redis hop.** At a modest fixed rate, steps from the
//!    emitter on A (cross-node) alternate with steps from a second emitter
//!    on B itself (one node: same process, same receivers, same rate).
//!    One-way latency of each side, merged over its steps; the difference
//!    of the p50s is what the hop adds. Both nodes' CPU (and Redis's) is
//!    recorded per step.
//! 2. **Deliveries per second for two nodes.** The emitter on A through a
//!    rate ladder like the fanout scenario's (same pass rule: p99 within
//!    the bound, >= 99.9% delivered, no receiver lost).
//!
//! Before either, a probe from A must reach every receiver on B (node B
//! subscribes to a room's channel when the room gets its first member, in
//! the background).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::client::{self, Target};
use crate::fanout::{self, FanoutOpts, FanoutResult, Ladder, Shared, StepResult};
use crate::procfs::Sample;
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterOpts {
    /// Node A, where the emitter is (the receivers are on `--url`, node B).
    #[arg(long)]
    pub(crate) node_a: String,
    /// Node A's process id, to read its CPU time.
    #[arg(long)]
    pub(crate) node_a_pid: Option<u32>,
    /// The Redis server's process id, to read its CPU time.
    #[arg(long)]
    pub(crate) redis_pid: Option<u32>,
    /// Members of the room on node B.
    #[arg(long, default_value_t = 10)]
    pub(crate) receivers: usize,
    /// Deliveries per second of the latency comparison.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) latency_rate: u64,
    /// Steps of the latency comparison per side (cross-node, one node),
    /// alternated.
    #[arg(long, default_value_t = 2)]
    pub(crate) latency_steps: usize,
    /// How long each latency step emits.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub(crate) latency_step: Duration,
    /// The rate search of the emitter on node A.
    #[command(flatten)]
    pub(crate) ladder: Ladder,
    /// How long the first probe may take to get through.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) ready_timeout: Duration,
}

/// Which way a latency step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Path {
    /// Emitter on node A, receivers on node B: through Redis.
    Cross,
    /// Emitter and receivers on node B.
    Local,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ClusterStep {
    pub(crate) path: Path,
    /// `server_cpu_pct_each` is node A, node B.
    #[serde(flatten)]
    pub(crate) step: StepResult,
    pub(crate) redis_cpu_pct: f64,
}

/// Averages of a side's latency steps.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Side {
    /// Every delivery of the side's steps.
    pub(crate) latency: LatencySummary,
    pub(crate) completeness: f64,
    pub(crate) node_a_cpu_pct: f64,
    pub(crate) node_b_cpu_pct: f64,
    pub(crate) redis_cpu_pct: f64,
    pub(crate) loadgen_cpu_pct: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ClusterResult {
    pub(crate) receivers: usize,
    /// How long the first probe took to reach every receiver.
    pub(crate) ready_ms: f64,
    pub(crate) latency_rate: u64,
    pub(crate) latency_steps: Vec<ClusterStep>,
    /// Emitter on A, receivers on B.
    pub(crate) cross: Side,
    /// Emitter and receivers on B.
    pub(crate) local: Side,
    /// `cross.latency.p50_ms - local.latency.p50_ms`: what the Redis hop adds.
    pub(crate) hop_p50_ms: f64,
    /// The same for p99.
    pub(crate) hop_p99_ms: f64,
    /// The ladder (emitter on A). Its steps' `server_cpu_pct_each` is
    /// node A, node B; `deliveries_per_server_cpu_sec` counts both.
    pub(crate) ladder: FanoutResult,
    /// Redis's CPU in each ladder step, in order.
    pub(crate) ladder_redis_cpu_pct: Vec<f64>,
    /// Some step ran the load generator at >= 90% of its core.
    pub(crate) loadgen_bound: bool,
}

impl ClusterResult {
    /// Every latency step delivered everything, and so did every ladder
    /// step of fixed rates; a search ends on a miss by design, so it is
    /// complete when some step passed.
    pub(crate) fn complete(&self, opts: &ClusterOpts) -> bool {
        let latency = !self.latency_steps.is_empty() && self.latency_steps.iter().all(|s| s.step.completeness >= 1.0);
        let ladder = if opts.ladder.rates.is_empty() {
            self.ladder.best_rate > 0.0
        } else {
            !self.ladder.steps.is_empty() && self.ladder.steps.iter().all(|s| s.completeness >= 1.0)
        };
        latency && ladder
    }
}

/// Redis's CPU over a step.
struct RedisCpu(Option<u32>, Option<Sample>);

impl RedisCpu {
    fn start(pid: Option<u32>) -> RedisCpu {
        RedisCpu(pid, pid.and_then(|p| Sample::take(Some(p)).ok()))
    }

    fn pct(&self) -> f64 {
        match (self.0.and_then(|p| Sample::take(Some(p)).ok()), &self.1) {
            (Some(after), Some(before)) => after.cpu_pct_since(before),
            _ => 0.0,
        }
    }
}

impl ClusterOpts {
    fn room(&self, rate_search: bool) -> FanoutOpts {
        FanoutOpts {
            receivers: self.receivers,
            ladder: if rate_search {
                self.ladder.clone()
            } else {
                Ladder {
                    rates: vec![self.latency_rate],
                    step: self.latency_step,
                    p99_limit_ms: f64::INFINITY,
                    ..self.ladder.clone()
                }
            },
            concurrency: 256,
        }
    }
}

/// `node_b` holds the receivers (and the one-node emitter); `opts.node_a`
/// the cross-node emitter.
pub(crate) async fn run(
    node_b: &Target,
    node_b_pid: Option<u32>,
    opts: &ClusterOpts,
) -> Result<ClusterResult, client::Error> {
    let node_a = Target::parse(&opts.node_a)?;
    let pids = [opts.node_a_pid, node_b_pid];
    let shared = Shared::new();
    let mut receivers = JoinSet::new();
    let latency_opts = opts.room(false);
    let ladder_opts = opts.room(true);
    fanout::fill_room(node_b, &shared, &mut receivers, &latency_opts).await?;
    let mut emitter_a = client::connect(&node_a).await?;
    let mut emitter_b = client::connect(node_b).await?;
    let ready = fanout::probe(&mut emitter_a, &shared, opts.ready_timeout).await?;
    fanout::quiesce(&shared).await;
    let pad = "x".repeat(opts.ladder.payload_bytes);
    let mut result = ClusterResult {
        receivers: opts.receivers,
        ready_ms: ready.as_secs_f64() * 1000.0,
        latency_rate: opts.latency_rate,
        ..ClusterResult::default()
    };

    // Part 1: cross-node and one-node latency, alternated.
    let (mut cross, mut local) = (Latency::default(), Latency::default());
    for _ in 0..opts.latency_steps.max(1) {
        for path in [Path::Cross, Path::Local] {
            fanout::fill_room(node_b, &shared, &mut receivers, &latency_opts).await?;
            let emitter = match path {
                Path::Cross => &mut emitter_a,
                Path::Local => &mut emitter_b,
            };
            let redis = RedisCpu::start(opts.redis_pid);
            let step = fanout::step(emitter, &shared, &pids, opts.latency_rate, &latency_opts, &pad).await?;
            let redis_cpu_pct = redis.pct();
            let into = if path == Path::Cross { &mut cross } else { &mut local };
            into.merge(&shared.latency(step.index));
            eprintln!(
                "  cluster {:>5} {} receivers @ {:>7}/s: p50 {:.3} ms, p99 {:.3} ms, {:.4} complete, node A {:.0}% node B {:.0}% redis {:.0}% loadgen {:.0}%",
                format!("{path:?}").to_lowercase(),
                opts.receivers,
                opts.latency_rate,
                step.latency.p50_ms,
                step.latency.p99_ms,
                step.completeness,
                step.server_cpu_pct_each.first().copied().unwrap_or_default(),
                step.server_cpu_pct_each.get(1).copied().unwrap_or_default(),
                redis_cpu_pct,
                step.loadgen_cpu_pct,
            );
            result.latency_steps.push(ClusterStep { path, step, redis_cpu_pct });
            fanout::quiesce(&shared).await;
        }
    }
    drop(emitter_b);
    result.cross = side(&result.latency_steps, Path::Cross, &cross);
    result.local = side(&result.latency_steps, Path::Local, &local);
    result.hop_p50_ms = result.cross.latency.p50_ms - result.local.latency.p50_ms;
    result.hop_p99_ms = result.cross.latency.p99_ms - result.local.latency.p99_ms;
    eprintln!(
        "  cluster: cross-node p50 {:.3} ms, one node p50 {:.3} ms: the hop adds {:.3} ms (p99: {:+.3} ms)",
        result.cross.latency.p50_ms, result.local.latency.p50_ms, result.hop_p50_ms, result.hop_p99_ms
    );

    // Part 2: the ladder, emitter on A.
    let mut ladder = FanoutResult { receivers: opts.receivers, ..FanoutResult::default() };
    let mut ladder_redis = Vec::new();
    fanout::search(&ladder_opts, async |rate| {
        fanout::fill_room(node_b, &shared, &mut receivers, &ladder_opts).await?;
        let redis = RedisCpu::start(opts.redis_pid);
        let step = fanout::step(&mut emitter_a, &shared, &pids, rate, &ladder_opts, &pad).await?;
        let redis_cpu_pct = redis.pct();
        let passed = step.passed;
        eprintln!(
            "  cluster ladder {} receivers @ {:>8} offered: {:>8.0}/s delivered, p50 {:.2} ms, p99 {:.2} ms, {:.4} complete, node A {:.0}% node B {:.0}% redis {:.0}% loadgen {:.0}%{}",
            opts.receivers,
            rate,
            step.delivered_rate,
            step.latency.p50_ms,
            step.latency.p99_ms,
            step.completeness,
            step.server_cpu_pct_each.first().copied().unwrap_or_default(),
            step.server_cpu_pct_each.get(1).copied().unwrap_or_default(),
            redis_cpu_pct,
            step.loadgen_cpu_pct,
            if passed { "" } else { "  (missed)" },
        );
        if passed && step.delivered_rate > ladder.best_rate {
            ladder.best_rate = step.delivered_rate;
            ladder.best_latency = step.latency;
        }
        ladder.steps.push(step);
        ladder_redis.push(redis_cpu_pct);
        fanout::quiesce(&shared).await;
        Ok(passed)
    })
    .await?;
    ladder.conclude();
    result.loadgen_bound = ladder.loadgen_bound || result.latency_steps.iter().any(|s| s.step.loadgen_cpu_pct >= 90.0);
    result.ladder = ladder;
    result.ladder_redis_cpu_pct = ladder_redis;
    receivers.abort_all();
    Ok(result)
}

/// A side's figures: the merged latency, the mean of the rest.
fn side(steps: &[ClusterStep], path: Path, latency: &Latency) -> Side {
    let of: Vec<&ClusterStep> = steps.iter().filter(|s| s.path == path).collect();
    let n = of.len().max(1) as f64;
    let mean = |f: &dyn Fn(&ClusterStep) -> f64| of.iter().map(|s| f(s)).sum::<f64>() / n;
    let cpu = |s: &ClusterStep, i: usize| s.step.server_cpu_pct_each.get(i).copied().unwrap_or_default();
    Side {
        latency: latency.summary(),
        completeness: mean(&|s| s.step.completeness),
        node_a_cpu_pct: mean(&|s| cpu(s, 0)),
        node_b_cpu_pct: mean(&|s| cpu(s, 1)),
        redis_cpu_pct: mean(&|s| s.redis_cpu_pct),
        loadgen_cpu_pct: mean(&|s| s.step.loadgen_cpu_pct),
    }
}
