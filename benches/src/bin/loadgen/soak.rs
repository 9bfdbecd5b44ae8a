//! Scenario `soak` (issue 22): the reference server (`tidewire-server
//! --conformance`, started here with recovery on) under a steady mix of
//! work for a long time, with churn, checked for leaks.
//!
//! The mix, per operation: 70% `echo` with ack on a long-lived WebSocket
//! client, 8% a broadcast to the sender's room (`to`, acked with the number
//! reached), 10% a room move (`leave` + `join`, both acked), 10% an `echo`
//! with ack on a long-polling client, 2% a short-lived client (connect,
//! `join`, `echo`, `leave`, each acked, then a clean or an abrupt
//! disconnect); besides, `--recoveries-per-sec` long-lived clients drop
//! their connection and come back with `{pid, offset}` (connection-state
//! recovery). The rate is `--rate`, or `--load-share` of the capacity
//! measured first on the same mix (the highest rate whose acks keep a p99
//! under `--capacity-p99` with every ack answered in its step).
//!
//! Readings every `--sample-every`: the server's RSS, open descriptors and
//! threads (`/proc`), and its `/metrics` gauges (sessions, sockets, rooms).
//! The server exports no task count: its sessions, sockets and rooms (each
//! session holds its tasks) and its threads stand for it.
//!
//! The verdict (`--check` makes it the exit code): every ack answered and
//! none mismatched, no long-lived client lost, RSS at the end within
//! `--rss-tolerance` of its level after the warm-up, and, once the load
//! stops and the recovery window has passed, the same descriptors,
//! threads, sessions and sockets as before the load, a fresh client
//! served, and a clean exit on SIGTERM (the drain).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rand::Rng as _;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Inbound, Target, Ws};
use crate::forward::{Conn, PATH, broken};
use crate::procfs::{self, Sample};
use crate::server_proc;
use crate::stats::{Latency, LatencySummary};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakOpts {
    /// The reference server's binary (`tidewire-server`, a release build).
    #[arg(long)]
    pub(crate) server_bin: PathBuf,
    /// More arguments for the server (repeatable).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub(crate) server_args: Vec<String>,
    /// Pin the server to this core (with taskset).
    #[arg(long)]
    pub(crate) server_core: Option<usize>,
    /// The measured soak.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Load before the reference reading of RSS.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub(crate) warmup: Duration,
    /// Time between readings.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) sample_every: Duration,
    /// Operations per second; unset: `--load-share` of the measured capacity.
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Share of the measured capacity to run at.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) load_share: f64,
    /// Each step of the capacity search.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) capacity_step: Duration,
    /// The capacity search's latency bound (ack p99, ms).
    #[arg(long, default_value_t = 50.0)]
    pub(crate) capacity_p99: f64,
    /// Long-lived WebSocket clients.
    #[arg(long, default_value_t = 200)]
    pub(crate) clients: usize,
    /// Rooms they are spread over.
    #[arg(long, default_value_t = 20)]
    pub(crate) rooms: usize,
    /// Long-lived long-polling clients.
    #[arg(long, default_value_t = 20)]
    pub(crate) polling: usize,
    /// Recovery reconnects per second.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) recoveries_per_sec: f64,
    /// How long the server keeps a dropped session (its `--recovery-ms`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) recovery_window: Duration,
    /// RSS at the end may exceed the level after the warm-up by this share.
    #[arg(long, default_value_t = 0.05)]
    pub(crate) rss_tolerance: f64,
    /// Fail (exit code 3) unless every criterion holds.
    #[arg(long)]
    pub(crate) check: bool,
    /// Where the run's JSON goes.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// Share of each kind of operation, in percent.
const MIX: [(Op, u32); 5] = [(Op::Echo, 70), (Op::Broadcast, 8), (Op::Move, 10), (Op::Poll, 10), (Op::Churn, 2)];
/// Short-lived clients in flight at most (past it, one is skipped and counted).
const CHURN_IN_FLIGHT: usize = 256;
/// Scheduler tick.
const TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Echo,
    Broadcast,
    Move,
    Poll,
    Churn,
    Recover,
}

/// What every client reports, shared on the load generator's one thread.
#[derive(Default)]
pub(crate) struct Tally {
    /// Acks asked for and answered (every client, every kind).
    pub(crate) sent: u64,
    pub(crate) answered: u64,
    /// Acks whose payload was not the one expected.
    pub(crate) mismatched: u64,
    /// Ack latency since the last reading.
    pub(crate) window: Latency,
    /// Ack latency over the measured phase.
    pub(crate) total: Latency,
    pub(crate) measuring: bool,
    broadcasts: u64,
    reached: u64,
    delivered: u64,
    recoveries: u64,
    recoveries_missed: u64,
    churned: u64,
    churn_failed: u64,
    churn_skipped: u64,
    /// Long-lived clients that failed, with why.
    pub(crate) failures: Vec<String>,
}

impl Tally {
    fn answer(&mut self, sent: Instant) {
        self.answered += 1;
        let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.window.record_us(us);
        if self.measuring {
            self.total.record_us(us);
        }
    }
}

type Shared = Rc<RefCell<Tally>>;

/// What an ack in flight should carry.
enum Expect {
    /// Exactly this JSON array.
    Exactly(String),
    /// The number of sockets a broadcast reached.
    Reached,
    /// Anything (a room list).
    Any,
}

fn check_ack(t: &mut Tally, expect: &Expect, json: &str) {
    match expect {
        Expect::Exactly(want) if want != json => t.mismatched += 1,
        Expect::Reached => match serde_json::from_str::<Vec<u64>>(json).ok().and_then(|v| v.first().copied()) {
            Some(n) => {
                t.broadcasts += 1;
                t.reached += n;
            }
            None => t.mismatched += 1,
        },
        _ => {}
    }
}

/// A long-lived WebSocket client: does what the scheduler asks, answers
/// pings, counts what arrives. Ends when its channel closes.
async fn steady(
    target: Target,
    mut room: usize,
    rooms: usize,
    mut ops: mpsc::UnboundedReceiver<Op>,
    tally: Shared,
) -> Result<(), String> {
    let err = |e: client::Error| e.to_string();
    let (mut ws, reply) = client::connect_with(&target, None).await.map_err(err)?;
    let mut sid = reply["sid"].as_str().unwrap_or_default().to_owned();
    let mut pid = reply["pid"].as_str().map(str::to_owned);
    let mut offset: Option<String> = None;
    let mut next_id = 0u64;
    let mut pending: HashMap<u64, (Instant, Expect)> = HashMap::new();
    let mut recover_wanted = false;
    let mut send =
        async |ws: &mut Ws, pending: &mut HashMap<u64, (Instant, Expect)>, what: &dyn Fn(u64) -> (String, Expect)| {
            let id = next_id;
            next_id += 1;
            let (args, e) = what(id);
            pending.insert(id, (Instant::now(), e));
            tally.borrow_mut().sent += 1;
            ws.send(Message::text(format!("42{id}[{args}]"))).await.map_err(|e| e.to_string())
        };
    send(&mut ws, &mut pending, &|_| (format!(r#""join","r{room}""#), Expect::Any)).await?;
    loop {
        if recover_wanted && pending.is_empty() {
            recover_wanted = false;
            // An abrupt drop (no close frame, no DISCONNECT), then back with
            // the session's pid and the last offset seen.
            drop(ws);
            let mut auth = json!({ "pid": pid });
            if let Some(o) = &offset {
                auth["offset"] = json!(o);
            }
            let (back, reply) = client::connect_with(&target, Some(&auth.to_string())).await.map_err(err)?;
            ws = back;
            let recovered = reply["sid"].as_str() == Some(sid.as_str());
            {
                let mut t = tally.borrow_mut();
                if recovered { t.recoveries += 1 } else { t.recoveries_missed += 1 }
            }
            if !recovered {
                sid = reply["sid"].as_str().unwrap_or_default().to_owned();
                send(&mut ws, &mut pending, &|_| (format!(r#""join","r{room}""#), Expect::Any)).await?;
            }
            pid = reply["pid"].as_str().map(str::to_owned);
        }
        tokio::select! {
            op = ops.recv(), if !recover_wanted => match op {
                None => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                Some(Op::Echo) => {
                    let echo = |id| (format!(r#""echo","e{id}""#), Expect::Exactly(format!(r#"["e{id}"]"#)));
                    send(&mut ws, &mut pending, &echo).await?;
                }
                Some(Op::Broadcast) => {
                    let to = |id| (format!(r#""to",{{"rooms":["r{room}"],"event":"soak","args":[{id}]}}"#), Expect::Reached);
                    send(&mut ws, &mut pending, &to).await?;
                }
                Some(Op::Move) => {
                    send(&mut ws, &mut pending, &|_| (format!(r#""leave","r{room}""#), Expect::Any)).await?;
                    room = (room + 1) % rooms;
                    send(&mut ws, &mut pending, &|_| (format!(r#""join","r{room}""#), Expect::Any)).await?;
                }
                Some(Op::Recover) => recover_wanted = pid.is_some(),
                Some(_) => {}
            },
            msg = ws.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return Err(format!("client {sid}: {e}")),
                    None => return Err(format!("client {sid}: closed by the server")),
                };
                match client::text_of(&msg).map(client::classify) {
                    Some(Inbound::Ping) => ws.send(Message::text("3")).await.map_err(|e| e.to_string())?,
                    Some(Inbound::Ack(id, json)) => {
                        let mut t = tally.borrow_mut();
                        match pending.remove(&id) {
                            Some((sent, expect)) => {
                                check_ack(&mut t, &expect, json);
                                t.answer(sent);
                            }
                            None => t.mismatched += 1,
                        }
                    }
                    Some(Inbound::Event(json)) => {
                        tally.borrow_mut().delivered += 1;
                        // With recovery on, an event's last argument is its offset.
                        if let Ok(Value::Array(args)) = serde_json::from_str::<Value>(json)
                            && let Some(Value::String(o)) = args.last()
                        {
                            offset = Some(o.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A long-lived long-polling client: one connection holds the `GET`, the
/// other `POST`s what the scheduler asks (batched) and the pongs.
async fn long_polling(target: Target, mut ops: mpsc::UnboundedReceiver<Op>, tally: Shared) -> Result<(), String> {
    let err = |e: client::Error| e.to_string();
    let mut get = Conn::open(&target).await.map_err(err)?;
    let mut post = Conn::open(&target).await.map_err(err)?;
    let (_, open) = get.request("GET", PATH, "").await.map_err(err)?;
    let open: Value = serde_json::from_str(open.get(1..).unwrap_or_default()).map_err(|e| e.to_string())?;
    let sid = open["sid"].as_str().ok_or("no sid in the polling handshake")?.to_owned();
    let url = format!("{PATH}&sid={sid}");
    post.request("POST", &url, "40").await.map_err(err)?;
    let pending: Rc<RefCell<HashMap<u64, Instant>>> = Rc::default();
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<()>();
    let getter = {
        let (pending, tally, url) = (pending.clone(), tally.clone(), url.clone());
        async move {
            loop {
                let (status, body) = get.request("GET", &url, "").await.map_err(err)?;
                if status != 200 {
                    return Err(format!("polling GET: {status} {body}"));
                }
                for packet in body.split('\u{1e}') {
                    match client::classify(packet) {
                        Inbound::Ping => {
                            let _ = pong_tx.send(());
                        }
                        Inbound::Ack(id, json) => {
                            let mut t = tally.borrow_mut();
                            match pending.borrow_mut().remove(&id) {
                                Some(sent) => {
                                    check_ack(&mut t, &Expect::Exactly(format!(r#"["p{id}"]"#)), json);
                                    t.answer(sent);
                                }
                                None => t.mismatched += 1,
                            }
                        }
                        _ if packet.starts_with('1') => return Err(format!("polling session {sid} closed")),
                        _ => {}
                    }
                }
            }
        }
    };
    let poster = async move {
        let mut next_id = 0u64;
        loop {
            let mut body: Vec<String> = Vec::new();
            tokio::select! {
                op = ops.recv() => if op.is_none() {
                    // Closes the session (the pending GET then ends).
                    let _ = post.request("POST", &url, "1").await;
                    return Ok(());
                },
                Some(()) = pong_rx.recv() => body.push("3".into()),
            }
            // Whatever else is queued goes in the same body.
            while pong_rx.try_recv().is_ok() {
                body.push("3".into());
            }
            let mut echoes = if body.is_empty() { 1 } else { 0 };
            while ops.try_recv().is_ok() {
                echoes += 1;
            }
            for _ in 0..echoes {
                let id = next_id;
                next_id += 1;
                pending.borrow_mut().insert(id, Instant::now());
                tally.borrow_mut().sent += 1;
                body.push(format!(r#"42{id}["echo","p{id}"]"#));
            }
            let (status, answer) = post.request("POST", &url, &body.join("\u{1e}")).await.map_err(err)?;
            if status != 200 {
                return Err(format!("polling POST: {status} {answer}"));
            }
        }
    };
    tokio::select! {
        r = getter => r,
        r = poster => r,
    }
}

/// A short-lived client: connect, join, echo, leave (each acked), then a
/// clean or an abrupt disconnect.
async fn churn(target: Target, room: usize, clean: bool, tally: Shared) {
    let outcome: Result<(), client::Error> = async {
        // A handshake refused for now (a cap, the total handshake rate) is
        // tried again, as socket.io-client does (it never gives up; here 10
        // tries, about 40 s: a reconnect storm of 10,000 clients holds the
        // total handshake rate for 11-13 s, and 5 tries, 6-12 s, could run
        // out while it did).
        let mut ws = client::connect_retrying(&target, 10).await?;
        for (id, args, want) in [
            (0, format!(r#""join","r{room}""#), None),
            (1, r#""echo","c""#.to_owned(), Some(r#"["c"]"#)),
            (2, format!(r#""leave","r{room}""#), None),
        ] {
            tally.borrow_mut().sent += 1;
            let sent = Instant::now();
            let json = client::request(&mut ws, id, &args).await?;
            let mut t = tally.borrow_mut();
            if want.is_some_and(|w| w != json) {
                t.mismatched += 1;
            }
            t.answer(sent);
        }
        if clean {
            ws.send(Message::text("41")).await?;
            ws.close(None).await?;
            // Read to the server's close.
            while let Some(Ok(_)) = ws.next().await {}
        }
        Ok(())
    }
    .await;
    let mut t = tally.borrow_mut();
    match outcome {
        Ok(()) => t.churned += 1,
        Err(e) => {
            t.churn_failed += 1;
            if t.churn_failed <= 5 {
                t.failures.push(format!("short-lived client: {e}"));
            }
        }
    }
}

/// The clients and the scheduler that drives them.
pub(crate) struct Load {
    target: Target,
    rooms: usize,
    steady: Vec<mpsc::UnboundedSender<Op>>,
    polling: Vec<mpsc::UnboundedSender<Op>>,
    clients: JoinSet<Result<(), String>>,
    churners: JoinSet<()>,
    churn_slots: std::sync::Arc<Semaphore>,
    pub(crate) tally: Shared,
    churn_next: usize,
}

impl Load {
    /// Connects `clients` WebSocket and `polling` long-polling clients.
    pub(crate) async fn connect(target: &Target, clients: usize, rooms: usize, polling: usize) -> Result<Load, String> {
        let tally: Shared = Rc::default();
        let mut load = Load {
            target: target.clone(),
            rooms: rooms.max(1),
            steady: Vec::new(),
            polling: Vec::new(),
            clients: JoinSet::new(),
            churners: JoinSet::new(),
            churn_slots: std::sync::Arc::new(Semaphore::new(CHURN_IN_FLIGHT)),
            tally: tally.clone(),
            churn_next: 0,
        };
        for i in 0..clients {
            let (tx, rx) = mpsc::unbounded_channel();
            load.steady.push(tx);
            load.clients.spawn_local(steady(target.clone(), i % load.rooms, load.rooms, rx, tally.clone()));
            if i % 64 == 63 {
                load.settle(Duration::from_secs(10)).await?;
            }
        }
        for _ in 0..polling {
            let (tx, rx) = mpsc::unbounded_channel();
            load.polling.push(tx);
            load.clients.spawn_local(long_polling(target.clone(), rx, tally.clone()));
        }
        load.settle(Duration::from_secs(10)).await?;
        Ok(load)
    }

    /// Waits until every ack asked for is answered (at most `limit`);
    /// fails if a long-lived client failed.
    pub(crate) async fn settle(&mut self, limit: Duration) -> Result<bool, String> {
        let start = Instant::now();
        loop {
            if let Some(r) = self.clients.try_join_next() {
                let e = match r {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "a client ended".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.tally.borrow_mut().failures.push(e.clone());
                return Err(e);
            }
            let done = {
                let t = self.tally.borrow();
                t.sent == t.answered
            };
            if done {
                return Ok(true);
            }
            if start.elapsed() >= limit {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn issue(&mut self, op: Op, rng: &mut impl rand::Rng) {
        match op {
            Op::Echo | Op::Broadcast | Op::Move | Op::Recover => {
                if !self.steady.is_empty() {
                    let i = rng.random_range(0..self.steady.len());
                    let _ = self.steady[i].send(op);
                }
            }
            Op::Poll => {
                if !self.polling.is_empty() {
                    let i = rng.random_range(0..self.polling.len());
                    let _ = self.polling[i].send(op);
                } else if !self.steady.is_empty() {
                    self.issue(Op::Echo, rng);
                }
            }
            Op::Churn => {
                let Ok(slot) = self.churn_slots.clone().try_acquire_owned() else {
                    self.tally.borrow_mut().churn_skipped += 1;
                    return;
                };
                self.churn_next += 1;
                let (target, tally) = (self.target.clone(), self.tally.clone());
                let (room, clean) = (self.churn_next % self.rooms, self.churn_next.is_multiple_of(2));
                self.churners.spawn_local(async move {
                    churn(target, room, clean, tally).await;
                    drop(slot);
                });
                while self.churners.try_join_next().is_some() {}
            }
        }
    }

    /// Issues `rate` operations per second of the mix (open loop) and
    /// `recoveries` recovery reconnects per second, for `length`, calling
    /// `every` after each `period`.
    pub(crate) async fn drive(
        &mut self,
        rate: f64,
        recoveries: f64,
        length: Duration,
        period: Duration,
        every: Hook<'_>,
    ) -> Result<(), String> {
        let mut rng = rand::rng();
        let total: u32 = MIX.iter().map(|(_, w)| w).sum();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let start = Instant::now();
        let (mut issued, mut recovered) = (0u64, 0u64);
        let mut next_reading = period;
        while start.elapsed() < length {
            tick.tick().await;
            let elapsed = start.elapsed().as_secs_f64();
            while (issued as f64) < rate * elapsed {
                let mut pick = rng.random_range(0..total);
                let op = MIX
                    .iter()
                    .find(|(_, w)| {
                        if pick < *w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .map_or(Op::Echo, |(op, _)| *op);
                self.issue(op, &mut rng);
                issued += 1;
            }
            while (recovered as f64) < recoveries * elapsed {
                self.issue(Op::Recover, &mut rng);
                recovered += 1;
            }
            if start.elapsed() >= next_reading {
                next_reading += period;
                every(self).await;
            }
            if let Some(r) = self.clients.try_join_next() {
                let e = match r {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "a client ended".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.tally.borrow_mut().failures.push(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Waits for the short-lived clients, then closes the others.
    pub(crate) async fn close(mut self) {
        while self.churners.join_next().await.is_some() {}
        self.steady.clear();
        self.polling.clear();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), async { while self.clients.join_next().await.is_some() {} })
                .await;
    }

    /// Waits for the short-lived clients in flight.
    pub(crate) async fn finish_churn(&mut self) {
        while self.churners.join_next().await.is_some() {}
    }
}

/// What [`Load::drive`] calls after each period.
pub(crate) type Hook<'a> = &'a mut dyn FnMut(&Load) -> Pin<Box<dyn Future<Output = ()>>>;

/// A hook that does nothing.
fn idle(_: &Load) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async {})
}

/// The server's state at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Reading {
    pub(crate) t_s: f64,
    pub(crate) rss_kib: u64,
    pub(crate) fds: usize,
    pub(crate) threads: usize,
    pub(crate) sessions: f64,
    pub(crate) sockets: f64,
    pub(crate) rooms: f64,
    /// Acks answered since the previous reading, per second, and their p99.
    pub(crate) acks_per_s: f64,
    pub(crate) ack_p99_ms: f64,
    pub(crate) load_avg_1m: f64,
}

/// The value of an OpenMetrics gauge or counter in `text`.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest.strip_prefix("_total").unwrap_or(rest);
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// `GET /metrics` on a fresh connection.
pub(crate) async fn scrape(target: &Target) -> Result<String, client::Error> {
    let mut conn = Conn::open(target).await?;
    let (status, body) = conn.request("GET", "/metrics", "").await?;
    if status != 200 {
        return Err(broken(format!("/metrics: {status}")));
    }
    Ok(body)
}

/// The 1-minute load average of the machine.
pub(crate) fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Reads the server (descriptors first: the scrape opens one).
pub(crate) async fn read(target: &Target, pid: u32, since: Instant) -> Reading {
    let fds = procfs::open_fds(pid).unwrap_or(0);
    let threads = procfs::threads(pid).unwrap_or(0);
    let rss_kib = Sample::take(Some(pid)).map_or(0, |s| s.rss / 1024);
    let text = scrape(target).await.unwrap_or_default();
    let gauge = |n| metric(&text, n).unwrap_or(f64::NAN);
    Reading {
        t_s: since.elapsed().as_secs_f64(),
        rss_kib,
        fds,
        threads,
        sessions: gauge("tidewire_connections"),
        sockets: gauge("tidewire_sockets"),
        rooms: gauge("tidewire_rooms"),
        acks_per_s: 0.0,
        ack_p99_ms: 0.0,
        load_avg_1m: load_avg(),
    }
}

#[derive(Debug, Clone, Default, Serialize)]
struct Step {
    rate: f64,
    answered_share: f64,
    p99_ms: f64,
    passed: bool,
    /// CPU in the step, percent of one core: which side was the limit.
    server_cpu_pct: f64,
    loadgen_cpu_pct: f64,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct SoakReport {
    capacity: Option<f64>,
    capacity_steps: Vec<Step>,
    rate: f64,
    duration_s: f64,
    clients: usize,
    polling: usize,
    rooms: usize,
    acks_sent: u64,
    acks_answered: u64,
    acks_mismatched: u64,
    ack_latency: LatencySummary,
    broadcasts: u64,
    broadcast_reached: u64,
    events_delivered: u64,
    recoveries: u64,
    recoveries_missed: u64,
    short_lived_clients: u64,
    short_lived_failed: u64,
    short_lived_skipped: u64,
    failures: Vec<String>,
    before: Reading,
    after_warmup: Reading,
    readings: Vec<Reading>,
    after: Reading,
    rss_end_kib: u64,
    rss_max_kib: u64,
    rss_end_ratio: f64,
    rss_max_ratio: f64,
    server_recoveries: f64,
    server_slow_consumers: f64,
    fresh_client_served: bool,
    clean_exit: bool,
    verdicts: Vec<(String, bool)>,
    passed: bool,
}

/// Runs the capacity search on the connected load: doubles the rate until
/// a step fails, then halves the gap three times.
async fn capacity(load: &mut Load, opts: &SoakOpts, pid: u32, steps: &mut Vec<Step>) -> Result<f64, String> {
    let mut step = async |load: &mut Load, rate: f64| -> Result<bool, String> {
        let before = { load.tally.borrow().answered };
        {
            let mut t = load.tally.borrow_mut();
            t.window = Latency::default();
        }
        let sent_before = { load.tally.borrow().sent };
        let cpu_before = (Sample::take(Some(pid)).ok(), Sample::take(None).ok());
        load.drive(rate, 0.0, opts.capacity_step, Duration::MAX, &mut idle).await?;
        let (sent, answered_in_step, p99) = {
            let t = load.tally.borrow();
            (t.sent - sent_before, t.answered - before, t.window.summary().p99_ms)
        };
        let cpu = |after: Option<Sample>, before: Option<Sample>| match (after, before) {
            (Some(a), Some(b)) => a.cpu_pct_since(&b),
            _ => 0.0,
        };
        let server_cpu_pct = cpu(Sample::take(Some(pid)).ok(), cpu_before.0);
        let loadgen_cpu_pct = cpu(Sample::take(None).ok(), cpu_before.1);
        let share = if sent == 0 { 0.0 } else { answered_in_step as f64 / sent as f64 };
        let passed = share >= 0.99 && p99 <= opts.capacity_p99;
        eprintln!(
            "soak: capacity step {rate:.0} ops/s: {:.1}% answered in the step, p99 {p99:.1} ms; CPU: server \
             {server_cpu_pct:.0}%, load generator {loadgen_cpu_pct:.0}%",
            share * 100.0
        );
        steps.push(Step { rate, answered_share: share, p99_ms: p99, passed, server_cpu_pct, loadgen_cpu_pct });
        // Let the backlog of a failed step clear before the next.
        load.settle(Duration::from_secs(30)).await?;
        load.finish_churn().await;
        Ok(passed)
    };
    let (mut good, mut bad) = (0.0, 0.0);
    let mut rate = 1000.0;
    while rate <= 1_000_000.0 {
        if step(load, rate).await? {
            good = rate;
            rate *= 2.0;
        } else {
            bad = rate;
            break;
        }
    }
    if bad == 0.0 {
        return Ok(good);
    }
    for _ in 0..3 {
        let mid = f64::midpoint(good, bad);
        if step(load, mid).await? { good = mid } else { bad = mid }
    }
    Ok(good)
}

pub(crate) async fn run(opts: &SoakOpts) -> Result<bool, client::Error> {
    let mut program = vec![opts.server_bin.to_string_lossy().into_owned()];
    let recovery_ms = opts.recovery_window.as_millis().to_string();
    program.extend(["--conformance", "--port", "0", "--recovery-ms", &recovery_ms].map(str::to_owned));
    program.extend(opts.server_args.iter().cloned());
    let mut server = server_proc::spawn(&program, opts.server_core).await?;
    let pid = server.pid.ok_or("the server has no pid")?;
    let target = server.target.clone();
    let since = Instant::now();
    eprintln!("soak: server {} (pid {pid}); {} + {} polling clients", server.url, opts.clients, opts.polling);
    let mut load = Load::connect(&target, opts.clients, opts.rooms, opts.polling).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut report = SoakReport {
        clients: opts.clients,
        polling: opts.polling,
        rooms: opts.rooms,
        before: read(&target, pid, since).await,
        ..SoakReport::default()
    };
    let rate = match opts.rate {
        Some(r) => r,
        None => {
            let cap = capacity(&mut load, opts, pid, &mut report.capacity_steps).await?;
            report.capacity = Some(cap);
            cap * opts.load_share
        }
    };
    report.rate = rate;
    eprintln!("soak: warm-up {:?} at {rate:.0} ops/s", opts.warmup);
    load.drive(rate, opts.recoveries_per_sec, opts.warmup, Duration::MAX, &mut idle).await?;
    report.after_warmup = read(&target, pid, since).await;
    eprintln!("soak: after warm-up: RSS {} KiB, {} fds", report.after_warmup.rss_kib, report.after_warmup.fds);
    load.tally.borrow_mut().measuring = true;
    let readings: Rc<RefCell<Vec<Reading>>> = Rc::default();
    let mut last = (Instant::now(), load.tally.borrow().answered);
    let (r2, t2) = (readings.clone(), target.clone());
    let mut every = move |load: &Load| -> Pin<Box<dyn Future<Output = ()>>> {
        let (window, answered) = {
            let mut t = load.tally.borrow_mut();
            (std::mem::take(&mut t.window), t.answered)
        };
        let elapsed = last.0.elapsed().as_secs_f64();
        let acks_per_s = (answered - last.1) as f64 / elapsed.max(1e-9);
        last = (Instant::now(), answered);
        let (r2, t2) = (r2.clone(), t2.clone());
        Box::pin(async move {
            let mut r = read(&t2, pid, since).await;
            r.acks_per_s = acks_per_s;
            r.ack_p99_ms = window.summary().p99_ms;
            eprintln!(
                "soak: t={:.0}s RSS {} KiB, {} fds, {} threads, {} sessions, {:.0} acks/s p99 {:.1} ms, load {:.2}",
                r.t_s, r.rss_kib, r.fds, r.threads, r.sessions, r.acks_per_s, r.ack_p99_ms, r.load_avg_1m
            );
            r2.borrow_mut().push(r);
        })
    };
    let soak_start = Instant::now();
    let driven = load.drive(rate, opts.recoveries_per_sec, opts.duration, opts.sample_every, &mut every).await;
    report.duration_s = soak_start.elapsed().as_secs_f64();
    load.tally.borrow_mut().measuring = false;
    if let Err(e) = &driven {
        eprintln!("soak: the load stopped: {e}");
    }
    // The end: every ack answered, the short-lived clients done, the
    // recovery window past (dropped sessions forgotten), then the reading.
    let settled = load.settle(Duration::from_secs(30)).await.unwrap_or(false);
    load.finish_churn().await;
    tokio::time::sleep(opts.recovery_window + Duration::from_secs(3)).await;
    report.after = read(&target, pid, since).await;
    let metrics = scrape(&target).await.unwrap_or_default();
    report.server_recoveries = metric(&metrics, "tidewire_recoveries").unwrap_or(f64::NAN);
    report.server_slow_consumers = metric(&metrics, "tidewire_slow_consumer_disconnects").unwrap_or(f64::NAN);
    report.fresh_client_served = match client::connect(&target).await {
        Ok(mut ws) => client::request(&mut ws, 7, r#""echo","fresh""#).await.is_ok_and(|j| j == r#"["fresh"]"#),
        Err(_) => false,
    };
    {
        let t = load.tally.borrow();
        report.acks_sent = t.sent;
        report.acks_answered = t.answered;
        report.acks_mismatched = t.mismatched;
        report.ack_latency = t.total.summary();
        report.broadcasts = t.broadcasts;
        report.broadcast_reached = t.reached;
        report.events_delivered = t.delivered;
        report.recoveries = t.recoveries;
        report.recoveries_missed = t.recoveries_missed;
        report.short_lived_clients = t.churned;
        report.short_lived_failed = t.churn_failed;
        report.short_lived_skipped = t.churn_skipped;
        report.failures = t.failures.clone();
    }
    load.close().await;
    // The drain: SIGTERM, and the server exits by itself.
    server_proc::signal(&server.child, "TERM").await;
    report.clean_exit = matches!(
        tokio::time::timeout(Duration::from_secs(30), server.child.wait()).await,
        Ok(Ok(status)) if status.success()
    );
    report.readings = readings.borrow().clone();
    let rss: Vec<u64> = report.readings.iter().map(|r| r.rss_kib).collect();
    let mut tail: Vec<u64> = rss.iter().rev().take(3).copied().collect();
    tail.sort_unstable();
    report.rss_end_kib = tail.get(tail.len() / 2).copied().unwrap_or(report.after.rss_kib);
    report.rss_max_kib = rss.iter().copied().max().unwrap_or(0);
    let warm = report.after_warmup.rss_kib.max(1) as f64;
    report.rss_end_ratio = report.rss_end_kib as f64 / warm;
    report.rss_max_ratio = report.rss_max_kib as f64 / warm;
    let (b, a) = (&report.before, &report.after);
    report.verdicts = vec![
        ("the load ran to its end".to_owned(), driven.is_ok()),
        ("every ack answered".to_owned(), settled && report.acks_sent == report.acks_answered),
        ("no ack mismatched".to_owned(), report.acks_mismatched == 0),
        ("no client failed".to_owned(), report.failures.is_empty() && report.short_lived_failed == 0),
        (
            format!("RSS at the end within {:.0}% of the level after warm-up", opts.rss_tolerance * 100.0),
            report.rss_end_ratio <= 1.0 + opts.rss_tolerance,
        ),
        // No more: fewer is no leak (the polling clients' keep-alive
        // connections, idle since the load stopped, close at the server's
        // 10 s request-head timeout, 20 of them in a `make soak`).
        ("no more open descriptors than before the load".to_owned(), a.fds <= b.fds),
        ("threads as before the load".to_owned(), a.threads == b.threads),
        ("sessions and sockets as before the load".to_owned(), a.sessions == b.sessions && a.sockets == b.sockets),
        ("no more rooms than before the load".to_owned(), a.rooms <= b.rooms),
        ("a fresh client served".to_owned(), report.fresh_client_served),
        ("a clean exit on SIGTERM (drain)".to_owned(), report.clean_exit),
    ];
    report.passed = report.verdicts.iter().all(|(_, ok)| *ok);
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &opts.out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &text)?;
    }
    println!("{}", summary(&report));
    Ok(report.passed || !opts.check)
}

/// The run in a few lines (what `benches/RESULTS.md` records).
fn summary(r: &SoakReport) -> String {
    let mut s = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "soak: {:.0} s at {:.0} ops/s{}; {} + {} polling clients in {} rooms",
        r.duration_s,
        r.rate,
        r.capacity.map_or(String::new(), |c| format!(" (capacity {c:.0} ops/s)")),
        r.clients,
        r.polling,
        r.rooms
    );
    if let Some(step) = r.capacity_steps.iter().rev().find(|st| st.passed) {
        let _ = writeln!(
            s,
            "capacity step at {:.0} ops/s: server CPU {:.0}%, load generator CPU {:.0}% (of one core)",
            step.rate, step.server_cpu_pct, step.loadgen_cpu_pct
        );
    }
    let _ = writeln!(
        s,
        "acks: {} sent, {} answered, {} mismatched; p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        r.acks_sent,
        r.acks_answered,
        r.acks_mismatched,
        r.ack_latency.p50_ms,
        r.ack_latency.p99_ms,
        r.ack_latency.max_ms
    );
    let _ = writeln!(
        s,
        "broadcasts {} reaching {} (delivered {}); recoveries {} (missed {}); short-lived clients {} (failed {}, skipped {})",
        r.broadcasts,
        r.broadcast_reached,
        r.events_delivered,
        r.recoveries,
        r.recoveries_missed,
        r.short_lived_clients,
        r.short_lived_failed,
        r.short_lived_skipped
    );
    let _ = writeln!(
        s,
        "RSS: {} KiB after warm-up, {} KiB at the end ({:+.1}%), {} KiB at most ({:+.1}%)",
        r.after_warmup.rss_kib,
        r.rss_end_kib,
        (r.rss_end_ratio - 1.0) * 100.0,
        r.rss_max_kib,
        (r.rss_max_ratio - 1.0) * 100.0
    );
    let _ = writeln!(
        s,
        "before / after the load: fds {} / {}, threads {} / {}, sessions {} / {}, sockets {} / {}, rooms {} / {}",
        r.before.fds,
        r.after.fds,
        r.before.threads,
        r.after.threads,
        r.before.sessions,
        r.after.sessions,
        r.before.sockets,
        r.after.sockets,
        r.before.rooms,
        r.after.rooms
    );
    let loads: Vec<f64> = r.readings.iter().map(|x| x.load_avg_1m).collect();
    if !loads.is_empty() {
        let _ = writeln!(
            s,
            "machine load average (1 min): {:.2} to {:.2}",
            loads.iter().copied().fold(f64::INFINITY, f64::min),
            loads.iter().copied().fold(0.0, f64::max)
        );
    }
    for (what, ok) in &r.verdicts {
        let _ = writeln!(s, "  [{}] {what}", if *ok { "ok" } else { "FAILED" });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metrics() {
        let text = "# TYPE tidewire_connections gauge\ntidewire_connections 12\ntidewire_connections_refused_total 3\n";
        assert_eq!(metric(text, "tidewire_connections"), Some(12.0));
        assert_eq!(metric(text, "tidewire_connections_refused"), Some(3.0));
        assert_eq!(metric(text, "tidewire_sockets"), None);
    }

    #[test]
    fn the_mix_adds_up() {
        assert_eq!(MIX.iter().map(|(_, w)| w).sum::<u32>(), 100);
    }
}
