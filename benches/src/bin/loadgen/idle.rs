//! Scenario `idle`: open N connections (C at a time), hold them; the
//! connect rate, handshake latency and the server's memory per connection.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Inbound, Target, Ws};
use crate::procfs::Sample;
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct IdleOpts {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub(crate) concurrency: usize,
    /// Wait this long once all are connected before reading the server's memory.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub(crate) settle: Duration,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct IdleResult {
    pub(crate) connections: usize,
    pub(crate) failed: usize,
    pub(crate) first_error: Option<String>,
    /// Connections per second, first attempt to last CONNECT.
    pub(crate) connect_rate: f64,
    /// TCP connect to the namespace CONNECT reply.
    pub(crate) handshake: LatencySummary,
    pub(crate) server_rss_before_kib: f64,
    pub(crate) server_rss_after_kib: f64,
    /// Server resident memory added per held connection.
    pub(crate) rss_per_conn_kib: f64,
    /// Server CPU while connecting, percent of one core.
    pub(crate) server_cpu_pct: f64,
    /// This process's CPU while connecting, percent of one core.
    pub(crate) loadgen_cpu_pct: f64,
}

/// Holds the connections (answering pings) until dropped.
pub(crate) struct Held(#[allow(dead_code)] JoinSet<()>);

pub(crate) async fn run(target: &Target, pid: Option<u32>, opts: &IdleOpts) -> (IdleResult, Held) {
    let before = pid.and_then(|p| Sample::take(Some(p)).ok());
    let me_before = Sample::take(None).ok();
    let handshakes = Rc::new(RefCell::new(Latency::default()));
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for _ in 0..opts.connections {
        let (target, permits, handshakes, errors, done) =
            (target.clone(), permits.clone(), handshakes.clone(), errors.clone(), done_tx.clone());
        tasks.spawn_local(async move {
            let Ok(permit) = permits.acquire_owned().await else { return };
            let t0 = Instant::now();
            let ws = match client::connect(&target).await {
                Ok(ws) => ws,
                Err(e) => {
                    errors.borrow_mut().push(e.to_string());
                    let _ = done.send(false);
                    return;
                }
            };
            handshakes.borrow_mut().record_us(t0.elapsed().as_micros() as u64);
            drop(permit);
            let _ = done.send(true);
            drop(done);
            hold(ws).await;
        });
    }
    drop(done_tx);
    let mut ok = 0;
    let mut failed = 0;
    // Each task reports once, then keeps its sender while it holds on.
    while ok + failed < opts.connections {
        match done_rx.recv().await {
            Some(true) => ok += 1,
            Some(false) => failed += 1,
            None => break,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let me_after = Sample::take(None).ok();
    let mid = pid.and_then(|p| Sample::take(Some(p)).ok());
    tokio::time::sleep(opts.settle).await;
    let after = pid.and_then(|p| Sample::take(Some(p)).ok());
    let kib = |s: &Option<Sample>| s.map_or(0.0, |s| s.rss as f64 / 1024.0);
    let result = IdleResult {
        connections: ok,
        failed,
        first_error: errors.borrow().first().cloned(),
        connect_rate: if elapsed > 0.0 { ok as f64 / elapsed } else { 0.0 },
        handshake: handshakes.borrow().summary(),
        server_rss_before_kib: kib(&before),
        server_rss_after_kib: kib(&after),
        rss_per_conn_kib: if ok > 0 { (kib(&after) - kib(&before)) / ok as f64 } else { 0.0 },
        server_cpu_pct: match (mid, before) {
            (Some(m), Some(b)) => m.cpu_pct_since(&b),
            _ => 0.0,
        },
        loadgen_cpu_pct: match (me_after, me_before) {
            (Some(a), Some(b)) => a.cpu_pct_since(&b),
            _ => 0.0,
        },
    };
    (result, Held(tasks))
}

/// Answers pings until the connection ends.
async fn hold(mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        if client::text_of(&msg).map(client::classify) == Some(Inbound::Ping)
            && ws.send(Message::text("3")).await.is_err()
        {
            return;
        }
    }
}
