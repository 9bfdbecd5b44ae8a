//! Scenario `abuse` (issue 22): healthy clients on the reference server
//! (`tidewire-server --conformance` with connection caps, started here)
//! while, in turn, other clients abuse it; the healthy clients' ack p99
//! in each phase against an undisturbed phase of the same load in the
//! same run, the server's memory and descriptors, and whether it survives.
//!
//! The healthy load is the soak's mix ([`crate::soak::Load`]) at a fixed
//! rate, on this thread. Each attack runs on a thread of its own (its own
//! runtime), from addresses of its own in 127.0.0.0/8:
//! * `slow-headers`: connections that send nothing, or a request head a
//!   header every second (slowloris), reopened when the server closes them;
//! * `slow-bodies`: a polling `POST` declaring 90 kB of body, sent a byte a
//!   second, reopened when the server gives up;
//! * `slow-consumers`: sockets in a room that never read (a small receive
//!   buffer), while another client broadcasts large messages to the room;
//! * `handshake-flood`: new sessions from tens of thousands of addresses,
//!   half long-polling handshakes left alone, half WebSockets that never
//!   join a namespace;
//! * `drain-storm`: `--storm` clients on a second server, which is drained
//!   (SIGTERM, all at once): every one of them reconnects to this server.
//!
//! Checked (`--check`): the server survives every phase (alive, serves a
//! fresh client, exits cleanly when drained at the end), every healthy
//! ack answered and no healthy client lost, its RSS never above
//! `--max-rss-mib`, the slow clients closed by the server, every storm
//! client back, and once the attacks stop, the sessions and descriptors
//! as before them. `--check-latency` adds the p99 criterion (each phase's
//! p99 within `--p99-factor` of the undisturbed one): not for shared CI.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Inbound, Target, Ws};
use crate::forward::{Conn, PATH};
use crate::procfs::{self, Sample};
use crate::server_proc;
use crate::soak::{self, Load, Reading};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AbuseOpts {
    /// The reference server's binary (`tidewire-server`, a release build).
    #[arg(long)]
    pub(crate) server_bin: PathBuf,
    /// Length of each phase.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) phase: Duration,
    /// Phases to run after the undisturbed one, in this order (default: all,
    /// once each): slow-headers, slow-bodies, slow-consumers,
    /// handshake-flood, drain-storm; one named again runs again.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Healthy WebSocket clients.
    #[arg(long, default_value_t = 100)]
    pub(crate) clients: usize,
    /// Healthy long-polling clients.
    #[arg(long, default_value_t = 10)]
    pub(crate) polling: usize,
    /// Rooms the healthy clients are spread over.
    #[arg(long, default_value_t = 10)]
    pub(crate) rooms: usize,
    /// Healthy operations per second (the soak's mix).
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) rate: f64,
    /// Slow-header connections.
    #[arg(long, default_value_t = 2000)]
    pub(crate) slow_headers: usize,
    /// Slow-body requests.
    #[arg(long, default_value_t = 500)]
    pub(crate) slow_bodies: usize,
    /// Sockets that never read.
    #[arg(long, default_value_t = 100)]
    pub(crate) slow_consumers: usize,
    /// Broadcasts per second to the slow consumers' room.
    #[arg(long, default_value_t = 100)]
    pub(crate) flood_emits: u32,
    /// Bytes of each of those broadcasts.
    #[arg(long, default_value_t = 16 * 1024)]
    pub(crate) flood_bytes: usize,
    /// New sessions per second in the handshake flood.
    #[arg(long, default_value_t = 2000)]
    pub(crate) handshakes: u32,
    /// Addresses the flood comes from.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) flood_addresses: u32,
    /// Clients drained from the other server onto this one.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) storm: usize,
    /// The server's RSS may never exceed this.
    #[arg(long, default_value_t = 1024)]
    pub(crate) max_rss_mib: u64,
    /// The p99 criterion: each phase's healthy p99 at most this many times
    /// the undisturbed one.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) p99_factor: f64,
    /// The control experiment: the attacks go to a second server (a
    /// bystander, started with the same flags) while the healthy load stays
    /// on the server under test, so a phase's p99 shows what the attack
    /// costs the machine (the shared cores, the load generator) rather than
    /// the server.
    #[arg(long)]
    pub(crate) bystander: bool,
    /// Fail (exit code 3) unless every criterion but latency holds.
    #[arg(long)]
    pub(crate) check: bool,
    /// With `--check`, the p99 criterion too.
    #[arg(long)]
    pub(crate) check_latency: bool,
    /// Where the run's JSON goes.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// The server's flags: caps as a public deployment sets them (per address,
/// in total, a handshake rate per address and in total), short timeouts.
const SERVER_FLAGS: &[&str] = &[
    "--conformance",
    "--port",
    "0",
    "--max-connections",
    "16000",
    "--max-conn-per-ip",
    "32",
    "--handshakes-per-ip",
    "20/s:40",
    "--handshakes-total",
    "1000/s:1000",
    "--admission-share",
    "0.125",
    "--connect-timeout-ms",
    "5000",
    "--ping-interval-ms",
    "5000",
    "--ping-timeout-ms",
    "5000",
    "--max-payload",
    "100000",
];

const ATTACKS: [&str; 5] = ["slow-headers", "slow-bodies", "slow-consumers", "handshake-flood", "drain-storm"];

/// What one attack did.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct AttackReport {
    /// Connections (or sessions) the attack opened.
    opened: u64,
    /// Of those, closed or answered by the server while the attack ran.
    closed_by_server: u64,
    /// Refused at once (closed before any answer, or a non-200 status).
    refused: u64,
    /// Could not connect at all.
    failed: u64,
    /// The longest an attacking connection stayed open before the server
    /// closed it, in seconds.
    longest_hold_s: f64,
    /// Drain storm: clients back on this server, and how long the last took
    /// after the drain began (seconds).
    reconnected: u64,
    storm_s: f64,
    first_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Phase {
    name: String,
    attack: AttackReport,
    healthy_acks: u64,
    healthy_p50_ms: f64,
    healthy_p99_ms: f64,
    p99_ratio: f64,
    rss_peak_kib: u64,
    /// Once the phase's healthy load settled (before the next phase).
    rss_after_kib: u64,
    fds_peak: usize,
    handshakes_refused: f64,
    connections_refused: f64,
    slow_consumer_disconnects: f64,
    load_avg_1m: f64,
    /// The healthy acks of each second of the phase: where in it the slow
    /// ones fall (a burst at the attack's start, a beat, all along).
    seconds: Vec<Second>,
}

/// The healthy acks of one second of a phase.
#[derive(Debug, Clone, Default, Serialize)]
struct Second {
    acks: u64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Default, Serialize)]
struct AbuseReport {
    rate: f64,
    clients: usize,
    polling: usize,
    before: Reading,
    after: Reading,
    phases: Vec<Phase>,
    healthy_sent: u64,
    healthy_answered: u64,
    healthy_mismatched: u64,
    failures: Vec<String>,
    fresh_client_served: bool,
    alive: bool,
    clean_exit: bool,
    verdicts: Vec<(String, bool)>,
    latency_verdicts: Vec<(String, bool)>,
    passed: bool,
}

/// An attack on its own thread: `ready` once set up, stops when `stop` is set.
struct Running {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<AttackReport>,
}

type Shared = Rc<RefCell<AttackReport>>;

fn launch(
    name: &'static str,
    b: Target,
    a: Option<Target>,
    opts: AbuseOpts,
) -> Result<(Running, std::sync::mpsc::Receiver<()>), client::Error> {
    let (stop, stopped) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return AttackReport { first_error: Some(e.to_string()), ..AttackReport::default() },
        };
        let report: Shared = Rc::default();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, {
            let report = report.clone();
            async move {
                match name {
                    "slow-headers" => slow_headers(&b, &opts, &report, ready_tx, stopped).await,
                    "slow-bodies" => slow_bodies(&b, &opts, &report, ready_tx, stopped).await,
                    "slow-consumers" => slow_consumers(&b, &opts, &report, ready_tx, stopped).await,
                    "handshake-flood" => flood(&b, &opts, &report, ready_tx, stopped).await,
                    "drain-storm" => {
                        if let Some(a) = a {
                            storm(&a, &b, &opts, &report, ready_tx, stopped).await;
                        }
                    }
                    _ => {}
                }
            }
        });
        report.borrow().clone()
    })?;
    Ok((Running { stop, thread }, ready_rx))
}

fn note(report: &Shared, e: impl std::fmt::Display) {
    let mut r = report.borrow_mut();
    if r.first_error.is_none() {
        r.first_error = Some(e.to_string());
    }
}

fn held(report: &Shared, since: Instant) {
    let mut r = report.borrow_mut();
    r.closed_by_server += 1;
    r.longest_hold_s = r.longest_hold_s.max(since.elapsed().as_secs_f64());
}

async fn until_stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Slowloris: even connections send nothing, odd ones a request head one
/// header a second; each is reopened once the server closes it.
async fn slow_headers(
    b: &Target,
    opts: &AbuseOpts,
    report: &Shared,
    ready: std::sync::mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
) {
    let _ = ready.send(());
    let mut tasks = JoinSet::new();
    for i in 0..opts.slow_headers {
        let (b, report, stop) = (b.clone(), report.clone(), stop.clone());
        let source = client::loopback_source(Ipv4Addr::new(127, 2, 0, 0), i as u32);
        tasks.spawn_local(async move {
            while !*stop.borrow() {
                let mut stream = match client::tcp(&b, Some(source)).await {
                    Ok(s) => s,
                    Err(e) => {
                        report.borrow_mut().failed += 1;
                        note(&report, e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                report.borrow_mut().opened += 1;
                let since = Instant::now();
                let trickle = i % 2 == 1;
                if trickle {
                    let head = format!("GET {PATH} HTTP/1.1\r\nHost: {}\r\n", b.addr());
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        held(&report, since);
                        continue;
                    }
                }
                let mut buf = [0u8; 512];
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        () = until_stopped(stop.clone()) => return,
                        _ = tick.tick() => {
                            if trickle && stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                                held(&report, since);
                                break;
                            }
                        }
                        n = stream.read(&mut buf) => {
                            // Closed, or answered (a 408 or 400): either way
                            // the server let go.
                            let _ = n;
                            held(&report, since);
                            break;
                        }
                    }
                }
            }
        });
    }
    until_stopped(stop).await;
    tasks.abort_all();
}

/// Opens a long-polling session from `source`: its sid.
async fn polling_session(b: &Target, source: std::net::SocketAddr) -> Result<Option<String>, client::Error> {
    let mut conn = Conn::open_from(b, Some(source)).await?;
    let (status, body) = conn.request("GET", PATH, "").await?;
    if status != 200 {
        return Ok(None);
    }
    let open: serde_json::Value = serde_json::from_str(body.get(1..).unwrap_or_default())?;
    Ok(open["sid"].as_str().map(str::to_owned))
}

/// Polling `POST`s whose declared body comes a byte a second.
async fn slow_bodies(
    b: &Target,
    opts: &AbuseOpts,
    report: &Shared,
    ready: std::sync::mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
) {
    let _ = ready.send(());
    let mut tasks = JoinSet::new();
    for i in 0..opts.slow_bodies {
        let (b, report, stop) = (b.clone(), report.clone(), stop.clone());
        let source = client::loopback_source(Ipv4Addr::new(127, 3, 0, 0), i as u32);
        tasks.spawn_local(async move {
            while !*stop.borrow() {
                let sid = match polling_session(&b, source).await {
                    Ok(Some(sid)) => sid,
                    Ok(None) => {
                        report.borrow_mut().refused += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(e) => {
                        report.borrow_mut().failed += 1;
                        note(&report, e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let Ok(mut stream) = client::tcp(&b, Some(source)).await else {
                    report.borrow_mut().failed += 1;
                    continue;
                };
                let head = format!(
                    "POST {PATH}&sid={sid} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 90000\r\n\r\n4",
                    b.addr()
                );
                report.borrow_mut().opened += 1;
                let since = Instant::now();
                if stream.write_all(head.as_bytes()).await.is_err() {
                    held(&report, since);
                    continue;
                }
                let mut buf = [0u8; 512];
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        () = until_stopped(stop.clone()) => return,
                        _ = tick.tick() => {
                            if stream.write_all(b"x").await.is_err() {
                                held(&report, since);
                                break;
                            }
                        }
                        _ = stream.read(&mut buf) => {
                            held(&report, since);
                            break;
                        }
                    }
                }
            }
        });
    }
    until_stopped(stop).await;
    tasks.abort_all();
}

/// Sockets in room `sink` that never read (4 KiB receive buffers), and a
/// client broadcasting large messages there, acked, paced.
async fn slow_consumers(
    b: &Target,
    opts: &AbuseOpts,
    report: &Shared,
    ready: std::sync::mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
) {
    let mut sinks: Vec<Ws> = Vec::new();
    for i in 0..opts.slow_consumers {
        let source = client::loopback_source(Ipv4Addr::new(127, 4, 0, 0), i as u32);
        let made: Result<Ws, client::Error> = async {
            let socket = TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(4096)?;
            socket.bind(source)?;
            let stream = socket.connect(b.addr()).await?;
            let (mut ws, _) = client::join_namespace(client::engine_over(b, stream).await?, None).await?;
            client::request(&mut ws, 0, r#""join","sink""#).await?;
            Ok(ws)
        }
        .await;
        match made {
            Ok(ws) => {
                report.borrow_mut().opened += 1;
                sinks.push(ws);
            }
            Err(e) => {
                report.borrow_mut().failed += 1;
                note(report, e);
            }
        }
    }
    let _ = ready.send(());
    let flooder = async {
        let source = client::loopback_source(Ipv4Addr::new(127, 4, 255, 1), 0);
        let mut ws = client::join_namespace(client::open_engine(b, Some(source)).await?, None).await?.0;
        let big = "x".repeat(opts.flood_bytes);
        let mut tick = tokio::time::interval(Duration::from_secs(1) / opts.flood_emits.max(1));
        let mut id = 1u64;
        loop {
            tick.tick().await;
            let args = format!(r#""hub-to",{{"rooms":["sink"],"event":"flood","args":["{big}"]}}"#);
            client::request(&mut ws, id, &args).await?;
            id += 1;
        }
        #[allow(unreachable_code)]
        Ok::<(), client::Error>(())
    };
    tokio::select! {
        () = until_stopped(stop) => {}
        r = flooder => if let Err(e) = r { note(report, e) },
    }
    // The server's count of slow consumers it closed says which went
    // (`Phase::slow_consumer_disconnects`); what they hold is dropped here.
    drop(sinks);
}

/// New sessions from many addresses, never used: long-polling handshakes
/// (the connection closed once answered) and WebSockets held without a
/// namespace.
async fn flood(
    b: &Target,
    opts: &AbuseOpts,
    report: &Shared,
    ready: std::sync::mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
) {
    let _ = ready.send(());
    // The load generator's own descriptors are limited too.
    let slots = std::sync::Arc::new(Semaphore::new(6000));
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let start = Instant::now();
    let mut issued = 0u64;
    while !*stop.borrow() {
        tick.tick().await;
        while (issued as f64) < f64::from(opts.handshakes) * start.elapsed().as_secs_f64() {
            let source =
                client::loopback_source(Ipv4Addr::new(127, 5, 0, 0), (issued % u64::from(opts.flood_addresses)) as u32);
            issued += 1;
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let (b, report, stop, websocket) = (b.clone(), report.clone(), stop.clone(), issued.is_multiple_of(2));
            tasks.spawn_local(async move {
                let _slot = slot;
                if websocket {
                    match client::open_engine(&b, Some(source)).await {
                        Ok(mut ws) => {
                            report.borrow_mut().opened += 1;
                            let since = Instant::now();
                            // Held without a CONNECT until the server lets go.
                            tokio::select! {
                                () = until_stopped(stop) => {}
                                () = async { while let Some(Ok(_)) = ws.next().await {} } => held(&report, since),
                            }
                        }
                        Err(e) => {
                            let mut r = report.borrow_mut();
                            if e.to_string().contains("closed") || e.to_string().contains("HTTP error") {
                                r.refused += 1;
                            } else {
                                r.failed += 1;
                            }
                            drop(r);
                            note(&report, e);
                        }
                    }
                } else {
                    match polling_session(&b, source).await {
                        Ok(Some(_)) => report.borrow_mut().opened += 1,
                        Ok(None) => report.borrow_mut().refused += 1,
                        Err(e) => {
                            report.borrow_mut().failed += 1;
                            note(&report, e);
                        }
                    }
                }
            });
            while tasks.try_join_next().is_some() {}
        }
    }
    tasks.abort_all();
}

/// `--storm` clients on server A, held (answering pings); once A drains
/// them, each reconnects to B at once and holds there.
async fn storm(
    a: &Target,
    b: &Target,
    opts: &AbuseOpts,
    report: &Shared,
    ready: std::sync::mpsc::Sender<()>,
    stop: watch::Receiver<bool>,
) {
    let permits = std::sync::Arc::new(Semaphore::new(256));
    let (connected_tx, mut connected) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let first_close: Rc<RefCell<Option<Instant>>> = Rc::default();
    let mut tasks = JoinSet::new();
    for _ in 0..opts.storm {
        let (a, b, report, stop, permits, connected_tx, first_close) = (
            a.clone(),
            b.clone(),
            report.clone(),
            stop.clone(),
            permits.clone(),
            connected_tx.clone(),
            first_close.clone(),
        );
        tasks.spawn_local(async move {
            let permit = permits.acquire_owned().await;
            let ws = match client::connect(&a).await {
                Ok(ws) => ws,
                Err(e) => {
                    note(&report, format!("storm client on the drained server: {e}"));
                    let _ = connected_tx.send(false);
                    return;
                }
            };
            drop(permit);
            report.borrow_mut().opened += 1;
            let _ = connected_tx.send(true);
            hold(ws).await;
            let since = *first_close.borrow_mut().get_or_insert_with(Instant::now);
            // Back at once, as socket.io-client does on a server close,
            // then after its reconnection delays while the server refuses
            // (the total handshake rate spreads the storm out).
            for attempt in 0..12 {
                if attempt > 0 {
                    tokio::time::sleep(client::reconnection_delay(attempt - 1)).await;
                }
                match client::connect(&b).await {
                    Ok(ws) => {
                        {
                            let mut r = report.borrow_mut();
                            r.reconnected += 1;
                            r.storm_s = r.storm_s.max(since.elapsed().as_secs_f64());
                        }
                        tokio::select! {
                            () = until_stopped(stop) => {}
                            () = hold(ws) => {}
                        }
                        return;
                    }
                    Err(e) => {
                        report.borrow_mut().refused += 1;
                        if !client::is_refusal(&e) {
                            note(&report, format!("storm reconnect: {e}"));
                        }
                    }
                }
            }
        });
    }
    drop(connected_tx);
    let mut seen = 0;
    while seen < opts.storm {
        match connected.recv().await {
            Some(ok) => {
                seen += 1;
                if !ok {
                    report.borrow_mut().failed += 1;
                }
            }
            None => break,
        }
    }
    let _ = ready.send(());
    until_stopped(stop).await;
    tasks.abort_all();
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

/// How long a phase lasts: slow clients are given time to meet the
/// server's timeouts (10 s for a request head; the ping interval plus
/// timeout, 10 s with `SERVER_FLAGS`, for a body or a silent socket).
fn phase_length(name: &str, phase: Duration) -> Duration {
    match name {
        "slow-headers" => phase.max(Duration::from_secs(15)),
        "slow-bodies" | "slow-consumers" => phase.max(Duration::from_secs(13)),
        // 10,000 clients back at the total handshake rate of SERVER_FLAGS
        // (1,000 a second) with socket.io-client's delays between tries.
        "drain-storm" => phase.max(Duration::from_secs(25)),
        _ => phase,
    }
}

/// Runs the healthy load for one phase, reading the server every second:
/// (acks, p50, p99, peak RSS, peak fds).
async fn measure(
    load: &mut Load,
    opts: &AbuseOpts,
    length: Duration,
    pid: u32,
) -> Result<(u64, f64, f64, u64, usize, Vec<Second>), String> {
    {
        let mut t = load.tally.borrow_mut();
        t.total = crate::stats::Latency::default();
        t.window = crate::stats::Latency::default();
        t.measuring = true;
    }
    let peaks = Rc::new(RefCell::new((0u64, 0usize)));
    let seconds = Rc::new(RefCell::new(Vec::new()));
    let p = peaks.clone();
    let secs = seconds.clone();
    let mut every = move |load: &Load| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        let w = std::mem::take(&mut load.tally.borrow_mut().window).summary();
        secs.borrow_mut().push(Second { acks: w.count, p99_ms: w.p99_ms, max_ms: w.max_ms });
        let rss = Sample::take(Some(pid)).map_or(0, |s| s.rss / 1024);
        let fds = procfs::open_fds(pid).unwrap_or(0);
        let mut peak = p.borrow_mut();
        *peak = (peak.0.max(rss), peak.1.max(fds));
        Box::pin(async {})
    };
    load.drive(opts.rate, 0.0, length, Duration::from_secs(1), &mut every).await?;
    let mut t = load.tally.borrow_mut();
    t.measuring = false;
    let s = t.total.summary();
    let (rss, fds) = *peaks.borrow();
    let seconds = seconds.take();
    Ok((s.count, s.p50_ms, s.p99_ms, rss, fds, seconds))
}

pub(crate) async fn run(opts: &AbuseOpts) -> Result<bool, client::Error> {
    let bin = opts.server_bin.to_string_lossy().into_owned();
    let program: Vec<String> =
        std::iter::once(bin.clone()).chain(SERVER_FLAGS.iter().map(|s| (*s).to_owned())).collect();
    let mut server = server_proc::spawn(&program, None).await?;
    let pid = server.pid.ok_or("the server has no pid")?;
    let target = server.target.clone();
    let since = Instant::now();
    eprintln!("abuse: server {} (pid {pid}); {} + {} polling healthy clients", server.url, opts.clients, opts.polling);
    let bystander = match opts.bystander {
        true => Some(server_proc::spawn(&program, None).await?),
        false => None,
    };
    // Where the attacks go: the server under test, or the bystander.
    let victim = bystander.as_ref().map_or_else(|| target.clone(), |b| b.target.clone());
    if let Some(b) = &bystander {
        eprintln!("abuse: the attacks go to a bystander, {}", b.url);
    }
    let mut load = Load::connect(&target, opts.clients, opts.rooms, opts.polling).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut report =
        AbuseReport { rate: opts.rate, clients: opts.clients, polling: opts.polling, ..AbuseReport::default() };
    report.before = soak::read(&target, pid, since).await;
    let counters = async |target: &Target| {
        let text = soak::scrape(target).await.unwrap_or_default();
        let m = |n| soak::metric(&text, n).unwrap_or(0.0);
        [m("tidewire_handshakes_refused"), m("tidewire_connections_refused"), m("tidewire_slow_consumer_disconnects")]
    };
    // `--only` in its order, repeats included (the same attack again shows
    // what it leaves behind); every attack once without it.
    let names: Vec<&str> = std::iter::once("undisturbed")
        .chain(match opts.only.is_empty() {
            true => ATTACKS.to_vec(),
            false => opts.only.iter().map(String::as_str).collect(),
        })
        .collect();
    for name in names {
        let mut drained: Option<server_proc::Running> = None;
        let attack = match name {
            "undisturbed" => None,
            "drain-storm" => {
                let a_program: Vec<String> = vec![
                    bin.clone(),
                    "--conformance".into(),
                    "--port".into(),
                    "0".into(),
                    "--drain-batch-size".into(),
                    opts.storm.max(1).to_string(),
                    "--drain-interval-ms".into(),
                    "10".into(),
                ];
                let a = server_proc::spawn(&a_program, None).await?;
                let launched = launch(ATTACKS[4], victim.clone(), Some(a.target.clone()), opts.clone())?;
                drained = Some(a);
                Some(launched)
            }
            other => {
                let name = ATTACKS.iter().copied().find(|a| *a == other).ok_or("unknown attack")?;
                Some(launch(name, victim.clone(), None, opts.clone())?)
            }
        };
        if let Some((_, ready)) = &attack {
            eprintln!("abuse: {name}: setting up");
            // Set-up (the storm's clients connecting to the other server)
            // is not measured; the healthy load idles meanwhile.
            while ready.try_recv().is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if let Some(a) = &drained {
            server_proc::signal(&a.child, "TERM").await;
        }
        let before = counters(&victim).await;
        eprintln!("abuse: {name}: {:?} of healthy load", phase_length(name, opts.phase));
        let measured = measure(&mut load, opts, phase_length(name, opts.phase), pid).await;
        let after = counters(&victim).await;
        let attack_report = match attack {
            Some((running, _)) => {
                let _ = running.stop.send(true);
                running.thread.join().unwrap_or_default()
            }
            None => AttackReport::default(),
        };
        if let Some(mut a) = drained {
            let _ = tokio::time::timeout(Duration::from_secs(20), a.child.wait()).await;
            let _ = a.child.kill().await;
        }
        let settled = load.settle(Duration::from_secs(30)).await;
        let (acks, p50, p99, rss, fds, seconds) = match measured {
            Ok(m) => m,
            Err(e) => {
                report.failures.push(format!("{name}: {e}"));
                break;
            }
        };
        if let Err(e) = settled {
            report.failures.push(format!("{name}: {e}"));
            break;
        }
        let base = report.phases.first().map_or(p99, |p| p.healthy_p99_ms);
        let rss_after_kib = Sample::take(Some(pid)).map_or(0, |s| s.rss / 1024);
        let phase = Phase {
            name: name.to_owned(),
            attack: attack_report,
            healthy_acks: acks,
            healthy_p50_ms: p50,
            healthy_p99_ms: p99,
            p99_ratio: if base > 0.0 { p99 / base } else { 0.0 },
            rss_peak_kib: rss,
            rss_after_kib,
            fds_peak: fds,
            handshakes_refused: after[0] - before[0],
            connections_refused: after[1] - before[1],
            slow_consumer_disconnects: after[2] - before[2],
            load_avg_1m: soak::load_avg(),
            seconds,
        };
        eprintln!(
            "abuse: {name}: healthy p99/max of each second, ms: {}",
            phase.seconds.iter().map(|s| format!("{:.1}/{:.0}", s.p99_ms, s.max_ms)).collect::<Vec<_>>().join(" ")
        );
        eprintln!(
            "abuse: {name}: healthy p99 {p99:.2} ms ({:.2}x), RSS peak {rss} KiB, after {rss_after_kib} KiB, fds peak {fds}; {:?}",
            phase.p99_ratio, phase.attack
        );
        report.phases.push(phase);
        // The attackers' leftovers time out (connect, ping, header timeouts).
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Everything the attacks left behind has timed out by now.
    tokio::time::sleep(Duration::from_secs(12)).await;
    report.after = soak::read(&target, pid, since).await;
    report.alive = matches!(server.child.try_wait(), Ok(None));
    report.fresh_client_served = match client::connect(&target).await {
        Ok(mut ws) => client::request(&mut ws, 7, r#""echo","fresh""#).await.is_ok_and(|j| j == r#"["fresh"]"#),
        Err(_) => false,
    };
    {
        let t = load.tally.borrow();
        report.healthy_sent = t.sent;
        report.healthy_answered = t.answered;
        report.healthy_mismatched = t.mismatched;
        report.failures.extend(t.failures.iter().cloned());
    }
    load.close().await;
    server_proc::signal(&server.child, "TERM").await;
    report.clean_exit = matches!(
        tokio::time::timeout(Duration::from_secs(30), server.child.wait()).await,
        Ok(Ok(status)) if status.success()
    );
    report.verdicts = verdicts(&report, opts);
    report.latency_verdicts = report
        .phases
        .iter()
        .skip(1)
        .map(|p| {
            (
                format!("{}: healthy p99 within {}x of undisturbed", p.name, opts.p99_factor),
                p.p99_ratio <= opts.p99_factor,
            )
        })
        .collect();
    report.passed = report.verdicts.iter().all(|(_, ok)| *ok)
        && (!opts.check_latency || report.latency_verdicts.iter().all(|(_, ok)| *ok));
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &opts.out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &text)?;
    }
    println!("{}", table(&report));
    Ok(report.passed || !opts.check)
}

fn verdicts(r: &AbuseReport, opts: &AbuseOpts) -> Vec<(String, bool)> {
    let phase = |n: &str| r.phases.iter().find(|p| p.name == n);
    let mut v = vec![
        ("every phase ran".to_owned(), r.failures.is_empty()),
        ("the server never stopped".to_owned(), r.alive),
        ("a fresh client served after the attacks".to_owned(), r.fresh_client_served),
        ("a clean exit on SIGTERM (drain)".to_owned(), r.clean_exit),
        ("every healthy ack answered".to_owned(), r.healthy_sent == r.healthy_answered),
        ("no healthy ack mismatched".to_owned(), r.healthy_mismatched == 0),
        (
            format!("RSS never above {} MiB", opts.max_rss_mib),
            r.phases.iter().all(|p| p.rss_peak_kib <= opts.max_rss_mib * 1024),
        ),
        ("sessions as before the attacks".to_owned(), r.after.sessions == r.before.sessions),
        ("descriptors as before the attacks".to_owned(), r.after.fds <= r.before.fds),
    ];
    if let Some(p) = phase("slow-headers") {
        v.push(("slow headers closed by the server".to_owned(), p.attack.closed_by_server > 0));
    }
    if let Some(p) = phase("slow-bodies") {
        v.push(("slow bodies closed by the server".to_owned(), p.attack.closed_by_server > 0));
    }
    if let Some(p) = phase("slow-consumers") {
        v.push((
            "slow consumers closed by the server as such".to_owned(),
            p.attack.opened > 0 && p.slow_consumer_disconnects >= p.attack.opened as f64,
        ));
    }
    if let Some(p) = phase("handshake-flood") {
        v.push(("the flood was served or refused, never hung".to_owned(), p.attack.opened + p.attack.refused > 0));
    }
    if let Some(p) = phase("drain-storm") {
        v.push((
            format!("every storm client back ({} of {})", p.attack.reconnected, opts.storm),
            p.attack.opened == opts.storm as u64 && p.attack.reconnected == opts.storm as u64,
        ));
    }
    v
}

/// The run as a Markdown table and its verdicts (what the repo records).
fn table(r: &AbuseReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| phase | healthy acks | p50 ms | p99 ms | p99 vs undisturbed | RSS peak MiB | fds peak | attack: opened / closed by server / refused / failed | notes |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---|---|");
    for p in &r.phases {
        let a = &p.attack;
        let mut notes = Vec::new();
        if a.longest_hold_s > 0.0 {
            notes.push(format!("longest hold {:.1} s", a.longest_hold_s));
        }
        if p.handshakes_refused > 0.0 {
            notes.push(format!("{} handshakes refused", p.handshakes_refused));
        }
        if p.connections_refused > 0.0 {
            notes.push(format!("{} connections refused", p.connections_refused));
        }
        if p.slow_consumer_disconnects > 0.0 {
            notes.push(format!("{} slow-consumer disconnects", p.slow_consumer_disconnects));
        }
        if a.reconnected > 0 {
            notes.push(format!("{} back within {:.1} s", a.reconnected, a.storm_s));
        }
        notes.push(format!("load avg {:.2}", p.load_avg_1m));
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {:.2} | {:.2}x | {:.0} | {} | {} / {} / {} / {} | {} |",
            p.name,
            p.healthy_acks,
            p.healthy_p50_ms,
            p.healthy_p99_ms,
            p.p99_ratio,
            p.rss_peak_kib as f64 / 1024.0,
            p.fds_peak,
            a.opened,
            a.closed_by_server,
            a.refused,
            a.failed,
            notes.join("; ")
        );
    }
    let _ = writeln!(
        s,
        "\nbefore / after: RSS {} / {} KiB, fds {} / {}, sessions {} / {}, threads {} / {}",
        r.before.rss_kib,
        r.after.rss_kib,
        r.before.fds,
        r.after.fds,
        r.before.sessions,
        r.after.sessions,
        r.before.threads,
        r.after.threads
    );
    for (what, ok) in r.verdicts.iter().chain(&r.latency_verdicts) {
        let _ = writeln!(s, "  [{}] {what}", if *ok { "ok" } else { "FAILED" });
    }
    s
}
