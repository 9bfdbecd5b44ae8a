//! Scenario `fanout`: one emitter, N receivers in one room. The emitter
//! offers a stepped rate of deliveries (emits/s x N); each step reports
//! what arrived, one-way latency, completeness and the CPU both sides
//! used. Without `--rates`, the rate grows by half each step until a step
//! misses the latency bound, then two bisections narrow the best rate.
//!
//! One emit to a 10,000-member room at a time is the same scenario with
//! a fixed low rate (`--receivers 10000 --rates 20000`: two emits a
//! second).
//!
//! The room, the steps and the search are shared with the `cluster`
//! scenario, whose emitter is on another node than its receivers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Inbound, Target, Ws};
use crate::procfs::Sample;
use crate::stats::{Latency, LatencySummary};

pub(crate) const ROOM: &str = "bench";

/// The rate ladder of a delivery scenario (fanout, burst, cluster).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Ladder {
    /// Offered deliveries per second, one step each (comma separated).
    /// Empty: search for the best rate.
    #[arg(long, value_delimiter = ',')]
    pub(crate) rates: Vec<u64>,
    /// First rate of the search.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) start_rate: u64,
    /// How long each step emits.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub(crate) step: Duration,
    /// A step passes when its p99 is at most this (and nothing is lost).
    #[arg(long, default_value_t = 100.0)]
    pub(crate) p99_limit_ms: f64,
    /// Bytes of padding in each message.
    #[arg(long, default_value_t = 32)]
    pub(crate) payload_bytes: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutOpts {
    /// Members of the room.
    #[arg(long, default_value_t = 1000)]
    pub(crate) receivers: usize,
    #[command(flatten)]
    pub(crate) ladder: Ladder,
    /// Handshakes in flight at once while the room fills.
    #[arg(long, default_value_t = 256)]
    pub(crate) concurrency: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StepResult {
    pub(crate) offered_rate: f64,
    pub(crate) emits: u64,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    /// Deliveries per second of the emitting window.
    pub(crate) delivered_rate: f64,
    pub(crate) completeness: f64,
    pub(crate) latency: LatencySummary,
    /// CPU of the server (of all the servers watched, summed), percent of
    /// one core.
    pub(crate) server_cpu_pct: f64,
    /// Each watched server's CPU, in the order given (one entry for a
    /// single server).
    pub(crate) server_cpu_pct_each: Vec<f64>,
    /// Deliveries per CPU-second the server (all of them) spent on the step.
    pub(crate) deliveries_per_server_cpu_sec: f64,
    pub(crate) loadgen_cpu_pct: f64,
    /// Receivers the server disconnected during the step.
    pub(crate) lost_receivers: usize,
    pub(crate) passed: bool,
    /// Where the step's deliveries are recorded in [`Shared`].
    #[serde(skip)]
    pub(crate) index: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FanoutResult {
    pub(crate) receivers: usize,
    pub(crate) steps: Vec<StepResult>,
    /// The highest delivered rate of a passing step (0 when none passed).
    pub(crate) best_rate: f64,
    /// That step's latency.
    pub(crate) best_latency: LatencySummary,
    /// The highest delivered rate of any step.
    pub(crate) saturation_rate: f64,
    /// Deliveries per server CPU-second in that step.
    pub(crate) saturation_deliveries_per_cpu_sec: f64,
    /// Some step this result rests on ran the load generator at >= 90% of
    /// its core: the figure may be the load generator's, not the server's.
    pub(crate) loadgen_bound: bool,
}

#[derive(Default)]
struct StepStats {
    received: u64,
    latency: Latency,
}

/// What the receivers saw, by step.
pub(crate) struct Shared {
    base: Instant,
    steps: RefCell<Vec<StepStats>>,
    total: Cell<u64>,
    alive: Cell<usize>,
}

type Payload = (IgnoredAny, (usize, u64, u64, IgnoredAny));

impl Shared {
    pub(crate) fn new() -> Rc<Shared> {
        Rc::new(Shared { base: Instant::now(), steps: RefCell::default(), total: Cell::new(0), alive: Cell::new(0) })
    }

    /// A new record of deliveries; its index goes in the messages.
    fn new_step(&self) -> usize {
        let mut steps = self.steps.borrow_mut();
        steps.push(StepStats::default());
        steps.len() - 1
    }

    fn received(&self, index: usize) -> u64 {
        self.steps.borrow().get(index).map_or(0, |s| s.received)
    }

    /// The latency of the deliveries recorded at `index`.
    pub(crate) fn latency(&self, index: usize) -> Latency {
        self.steps.borrow().get(index).map(|s| s.latency.clone()).unwrap_or_default()
    }

    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    fn record(&self, json: &str) {
        let Ok((_, (step, _seq, sent_us, _))) = serde_json::from_str::<Payload>(json) else { return };
        let latency = self.now_us().saturating_sub(sent_us);
        if let Some(s) = self.steps.borrow_mut().get_mut(step) {
            s.received += 1;
            s.latency.record_us(latency);
        }
        self.total.set(self.total.get() + 1);
    }
}

pub(crate) async fn run(target: &Target, pid: Option<u32>, opts: &FanoutOpts) -> Result<FanoutResult, client::Error> {
    let shared = Shared::new();
    let mut receivers = JoinSet::new();
    fill_room(target, &shared, &mut receivers, opts).await?;
    let mut emitter = client::connect(target).await?;
    let pad = "x".repeat(opts.ladder.payload_bytes);
    let mut result = FanoutResult { receivers: opts.receivers, ..FanoutResult::default() };

    let mut run_step = async |rate: u64, result: &mut FanoutResult| -> Result<bool, client::Error> {
        fill_room(target, &shared, &mut receivers, opts).await?;
        let step = step(&mut emitter, &shared, &[pid], rate, opts, &pad).await?;
        let passed = step.passed;
        eprintln!(
            "  fanout {} receivers @ {:>9} offered: {:>9.0}/s delivered, p50 {:.2} ms, p99 {:.2} ms, {:.4} complete, server {:.0}% loadgen {:.0}%{}",
            opts.receivers,
            rate,
            step.delivered_rate,
            step.latency.p50_ms,
            step.latency.p99_ms,
            step.completeness,
            step.server_cpu_pct,
            step.loadgen_cpu_pct,
            if passed { "" } else { "  (missed)" },
        );
        if passed && step.delivered_rate > result.best_rate {
            result.best_rate = step.delivered_rate;
            result.best_latency = step.latency;
        }
        result.steps.push(step);
        quiesce(&shared).await;
        Ok(passed)
    };

    search(opts, async |rate| run_step(rate, &mut result).await).await?;
    result.conclude();
    receivers.abort_all();
    Ok(result)
}

impl FanoutResult {
    /// The saturation figures and the load generator flag, from the steps.
    pub(crate) fn conclude(&mut self) {
        if let Some(sat) = self.steps.iter().max_by(|a, b| a.delivered_rate.total_cmp(&b.delivered_rate)) {
            self.saturation_rate = sat.delivered_rate;
            self.saturation_deliveries_per_cpu_sec = sat.deliveries_per_server_cpu_sec;
        }
        self.loadgen_bound = self.steps.iter().any(|s| s.loadgen_cpu_pct >= 90.0);
    }
}

/// Runs the steps of `opts`: its fixed rates, or without any, a search:
/// the rate grows by half per step from `start_rate` until a step misses,
/// then two bisections (geometric) between the last pass and the miss.
/// `run_step` runs one step and says whether it passed.
pub(crate) async fn search(
    opts: &FanoutOpts,
    mut run_step: impl AsyncFnMut(u64) -> Result<bool, client::Error>,
) -> Result<(), client::Error> {
    if opts.ladder.rates.is_empty() {
        let mut rate = opts.ladder.start_rate.max(1);
        let mut best = None;
        let mut fail = None;
        for _ in 0..24 {
            if run_step(rate).await? {
                best = Some(rate);
                rate = rate * 3 / 2;
            } else {
                fail = Some(rate);
                break;
            }
        }
        if let (Some(mut lo), Some(mut hi)) = (best, fail) {
            for _ in 0..2 {
                let mid = ((lo as f64) * (hi as f64)).sqrt() as u64;
                if run_step(mid).await? { lo = mid } else { hi = mid }
            }
        }
    } else {
        for &rate in &opts.ladder.rates {
            run_step(rate).await?;
        }
    }
    Ok(())
}

/// Tops the room up to `opts.receivers` live members.
pub(crate) async fn fill_room(
    target: &Target,
    shared: &Rc<Shared>,
    receivers: &mut JoinSet<()>,
    opts: &FanoutOpts,
) -> Result<(), client::Error> {
    let missing = opts.receivers.saturating_sub(shared.alive.get());
    if missing == 0 {
        return Ok(());
    }
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    for _ in 0..missing {
        let (target, shared, permits, tx) = (target.clone(), shared.clone(), permits.clone(), tx.clone());
        receivers.spawn_local(async move {
            let joined = async {
                let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                let mut ws = client::connect(&target).await.map_err(|e| e.to_string())?;
                join(&mut ws).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(ws)
            }
            .await;
            match joined {
                Ok(ws) => {
                    shared.alive.set(shared.alive.get() + 1);
                    let _ = tx.send(Ok(()));
                    drop(tx);
                    receive(ws, &shared).await;
                    shared.alive.set(shared.alive.get() - 1);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    }
    drop(tx);
    let mut first_error = None;
    while let Some(r) = rx.recv().await {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(format!("filling the room: {e}").into()),
        None => Ok(()),
    }
}

async fn join(ws: &mut Ws) -> Result<(), client::Error> {
    ws.send(Message::text(format!(r#"420["join","{ROOM}"]"#))).await?;
    while let Some(msg) = ws.next().await {
        match client::text_of(&msg?).map(client::classify) {
            Some(Inbound::Ack(0, _)) => return Ok(()),
            Some(Inbound::Ping) => ws.send(Message::text("3")).await?,
            _ => {}
        }
    }
    Err("closed before the join ack".into())
}

async fn receive(mut ws: Ws, shared: &Shared) {
    while let Some(Ok(msg)) = ws.next().await {
        match client::text_of(&msg).map(client::classify) {
            Some(Inbound::Event(json)) => shared.record(json),
            Some(Inbound::Ping) if ws.send(Message::text("3")).await.is_err() => return,
            _ => {}
        }
    }
}

/// Waits until deliveries stop arriving (a backlog from a step that
/// overloaded the server must not count against the next one).
pub(crate) async fn quiesce(shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = shared.total.get();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = shared.total.get();
        if now == last || Instant::now() > deadline {
            return;
        }
        last = now;
    }
}

/// Emits one message through `emitter` to the room and waits until every
/// receiver got it, again every 200 ms until one does, at most `timeout`:
/// the path from the emitter to the receivers works (with two nodes: the
/// receivers' node is subscribed to the room's channel). Returns how long
/// it took.
pub(crate) async fn probe(emitter: &mut Ws, shared: &Shared, timeout: Duration) -> Result<Duration, client::Error> {
    let start = Instant::now();
    let members = shared.alive.get() as u64;
    while start.elapsed() < timeout {
        let index = shared.new_step();
        emitter
            .send(Message::text(format!(r#"42["fanout","{ROOM}",[{index},0,{},"probe"]]"#, shared.now_us())))
            .await?;
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            if shared.received(index) >= members {
                return Ok(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Err(format!("no probe reached all {members} receivers within {timeout:?}").into())
}

/// One step at `rate` deliveries/s through `emitter`; `pids` are the
/// servers whose CPU it records (summed, and each).
pub(crate) async fn step(
    emitter: &mut Ws,
    shared: &Shared,
    pids: &[Option<u32>],
    rate: u64,
    opts: &FanoutOpts,
    pad: &str,
) -> Result<StepResult, client::Error> {
    let index = shared.new_step();
    let members = shared.alive.get();
    let emits_per_sec = rate as f64 / opts.receivers.max(1) as f64;
    let servers_before: Vec<Option<Sample>> = pids.iter().map(|p| p.and_then(|p| Sample::take(Some(p)).ok())).collect();
    let me_before = Sample::take(None).ok();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let elapsed = start.elapsed();
                if elapsed >= opts.ladder.step {
                    break;
                }
                let due = (elapsed.as_secs_f64() * emits_per_sec) as u64 + 1;
                while sent < due {
                    let text = format!(r#"42["fanout","{ROOM}",[{index},{sent},{},"{pad}"]]"#, shared.now_us());
                    emitter.feed(Message::text(text)).await?;
                    sent += 1;
                }
                emitter.flush().await?;
            }
            msg = emitter.next() => match msg {
                Some(Ok(msg)) => if client::text_of(&msg).map(client::classify) == Some(Inbound::Ping) {
                    emitter.send(Message::text("3")).await?;
                },
                Some(Err(e)) => return Err(e.into()),
                None => return Err("the server closed the emitter".into()),
            },
        }
    }
    let window = start.elapsed().as_secs_f64();
    let expected = sent * members as u64;
    // Stragglers get four times the latency bound, at least 2 s, at most 10 s.
    let deadline = Instant::now() + Duration::from_secs_f64((opts.ladder.p99_limit_ms / 1000.0 * 4.0).clamp(2.0, 10.0));
    while shared.steps.borrow()[index].received < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let servers_after: Vec<Option<Sample>> = pids.iter().map(|p| p.and_then(|p| Sample::take(Some(p)).ok())).collect();
    let me_after = Sample::take(None).ok();
    let steps = shared.steps.borrow();
    let stats = &steps[index];
    let latency = stats.latency.summary();
    let completeness = if expected == 0 { 0.0 } else { stats.received as f64 / expected as f64 };
    let each: Vec<Option<(f64, f64)>> = servers_after
        .iter()
        .zip(&servers_before)
        .map(|(after, before)| match (after, before) {
            (Some(a), Some(b)) => Some((a.cpu_secs_since(b), a.cpu_pct_since(b))),
            _ => None,
        })
        .collect();
    let server_cpu = each.iter().flatten().copied().reduce(|a, b| (a.0 + b.0, a.1 + b.1));
    let lost_receivers = members.saturating_sub(shared.alive.get());
    Ok(StepResult {
        offered_rate: rate as f64,
        emits: sent,
        expected,
        delivered: stats.received,
        delivered_rate: stats.received as f64 / window,
        completeness,
        latency,
        server_cpu_pct: server_cpu.map_or(0.0, |c| c.1),
        server_cpu_pct_each: each.iter().map(|c| c.map_or(0.0, |c| c.1)).collect(),
        deliveries_per_server_cpu_sec: server_cpu
            .filter(|c| c.0 > 0.0)
            .map_or(0.0, |(secs, _)| stats.received as f64 / secs),
        loadgen_cpu_pct: match (me_after, me_before) {
            (Some(a), Some(b)) => a.cpu_pct_since(&b),
            _ => 0.0,
        },
        lost_receivers,
        passed: completeness >= 0.999 && latency.p99_ms <= opts.ladder.p99_limit_ms && lost_receivers == 0,
        index,
    })
}
