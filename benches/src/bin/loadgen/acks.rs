//! Scenario `acks`: K clients each keep D `echo` emits with ack in flight;
//! round trips per second and their latency.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Inbound, Target, Ws};
use crate::procfs::Sample;
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AcksOpts {
    /// Clients.
    #[arg(long, default_value_t = 100)]
    pub(crate) clients: usize,
    /// Emits with ack each client keeps in flight.
    #[arg(long, default_value_t = 16)]
    pub(crate) in_flight: usize,
    /// Unmeasured warm-up.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) warmup: Duration,
    /// Measured window.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Bytes of padding in each emit.
    #[arg(long, default_value_t = 32)]
    pub(crate) payload_bytes: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AcksResult {
    pub(crate) clients: usize,
    pub(crate) in_flight: usize,
    /// Round trips completed in the measured window.
    pub(crate) round_trips: u64,
    pub(crate) rate: f64,
    pub(crate) latency: LatencySummary,
    /// Acks whose id matched nothing in flight, or whose payload differed.
    pub(crate) mismatched: u64,
    pub(crate) server_cpu_pct: f64,
    pub(crate) loadgen_cpu_pct: f64,
    pub(crate) loadgen_bound: bool,
}

#[derive(Default)]
struct Tally {
    measuring: bool,
    round_trips: u64,
    mismatched: u64,
    latency: Latency,
}

pub(crate) async fn run(target: &Target, pid: Option<u32>, opts: &AcksOpts) -> Result<AcksResult, client::Error> {
    let mut conns = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        conns.push(client::connect(target).await?);
    }
    let tally: Rc<RefCell<Tally>> = Rc::default();
    let payload = format!(r#""{}""#, "x".repeat(opts.payload_bytes));
    let mut tasks = JoinSet::new();
    for ws in conns {
        tasks.spawn_local(drive(ws, opts.in_flight.max(1), payload.clone(), tally.clone()));
    }
    tokio::time::sleep(opts.warmup).await;
    let server_before = pid.and_then(|p| Sample::take(Some(p)).ok());
    let me_before = Sample::take(None).ok();
    tally.borrow_mut().measuring = true;
    let start = Instant::now();
    tokio::time::sleep(opts.duration).await;
    tally.borrow_mut().measuring = false;
    let window = start.elapsed().as_secs_f64();
    let server_after = pid.and_then(|p| Sample::take(Some(p)).ok());
    let me_after = Sample::take(None).ok();
    // A client that stopped early (its connection failed) spoils the run.
    let stopped = tasks.try_join_next();
    tasks.abort_all();
    if let Some(r) = stopped {
        let e = match r {
            Ok(Err(e)) => e,
            Ok(Ok(())) => "a client stopped".to_owned(),
            Err(e) => e.to_string(),
        };
        return Err(format!("a client failed during the run: {e}").into());
    }
    let t = tally.borrow();
    let loadgen_cpu_pct = match (me_after, me_before) {
        (Some(a), Some(b)) => a.cpu_pct_since(&b),
        _ => 0.0,
    };
    Ok(AcksResult {
        clients: opts.clients,
        in_flight: opts.in_flight,
        round_trips: t.round_trips,
        rate: t.round_trips as f64 / window,
        latency: t.latency.summary(),
        mismatched: t.mismatched,
        server_cpu_pct: match (server_after, server_before) {
            (Some(a), Some(b)) => a.cpu_pct_since(&b),
            _ => 0.0,
        },
        loadgen_cpu_pct,
        loadgen_bound: loadgen_cpu_pct >= 90.0,
    })
}

/// Keeps `depth` emits in flight on one connection. Acks of one socket
/// come back in order, so the pending ones are a queue.
async fn drive(mut ws: Ws, depth: usize, payload: String, tally: Rc<RefCell<Tally>>) -> Result<(), String> {
    let expected = format!("[{payload}]");
    let mut next_id = 0u64;
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    let mut send = async |ws: &mut Ws, pending: &mut VecDeque<(u64, Instant)>| -> Result<(), String> {
        pending.push_back((next_id, Instant::now()));
        let text = format!(r#"42{next_id}["echo",{payload}]"#);
        next_id += 1;
        ws.feed(Message::text(text)).await.map_err(|e| e.to_string())
    };
    for _ in 0..depth {
        send(&mut ws, &mut pending).await?;
    }
    ws.flush().await.map_err(|e| e.to_string())?;
    loop {
        let mut msg = ws.next().await;
        loop {
            let m = match msg {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the server closed a client".into()),
            };
            match client::text_of(&m).map(client::classify) {
                Some(Inbound::Ack(id, json)) => {
                    {
                        let mut t = tally.borrow_mut();
                        match pending.front() {
                            Some(&(want, sent)) if want == id && json == expected => {
                                pending.pop_front();
                                if t.measuring {
                                    t.round_trips += 1;
                                    t.latency.record_us(sent.elapsed().as_micros() as u64);
                                }
                            }
                            _ => {
                                t.mismatched += 1;
                                pending.retain(|&(p, _)| p != id);
                            }
                        }
                    }
                    send(&mut ws, &mut pending).await?;
                }
                Some(Inbound::Ping) => ws.feed(Message::text("3")).await.map_err(|e| e.to_string())?,
                _ => {}
            }
            // Answer everything already read with one flush.
            match ws.next().now_or_never() {
                Some(next) => msg = next,
                None => break,
            }
        }
        ws.flush().await.map_err(|e| e.to_string())?;
    }
}
