//! The whole in-process broadcast path: a [`Hub`] with N connected sockets
//! in one room, `hub.to(room).emit(event, small payload)`: target
//! resolution, encoding once, and queueing a shared copy on each socket's
//! Engine.IO session. Throughput is N deliveries per broadcast, so results
//! read as deliveries/s.
//!
//! Each socket is a session driven like a transport drives it, through the
//! transport driver API: a CONNECT packet goes in with
//! [`Session::receive`], and every session's queue is emptied with
//! [`Session::drain`] after each broadcast, so queues stay as short as
//! behind a writer that keeps up.
//!
//! * `to_room_emit`: the broadcast alone (the drain is not timed).
//! * `to_room_emit_drain`: the broadcast plus every session's drain, i.e.
//!   the in-process work of a delivery up to the socket write.
//! * `to_room_emit_drain_cpu_time`: the same, timing the bench thread's
//!   on-CPU time instead of wall time. The fan-out target (>= 1M
//!   deliveries per CPU-second) reads on this one; on an idle machine it
//!   agrees with wall time.
//!
//! `cargo bench -p tidewire-benches --bench broadcast` (add
//! `-- --measurement-time 3 --warm-up-time 1` for a fast pass).

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tidewire::engine::{Engine, EngineConfig, RequestInfo, Session, TransportKind};
use tidewire::hub::Hub;
use tidewire::protocol::engine::{Encoded, Frame, Packet};
use tidewire::protocol::socketio::Payload;

const ROOM: &str = "bench";

/// A chat message: `["chat", {...}]`, about 60 bytes of JSON.
fn small_args() -> Payload {
    Payload::json(vec![json!({"user": "alice", "text": "hello, world", "room": 7})])
}

fn request() -> RequestInfo {
    RequestInfo {
        headers: http::HeaderMap::new(),
        query: Vec::new(),
        uri: http::Uri::from_static("/socket.io/?EIO=4&transport=websocket"),
        remote_addr: ([127, 0, 0, 1], 4000).into(),
        time: SystemTime::now(),
        secure: false,
    }
}

/// A hub with `n` sockets connected to `/`, all in [`ROOM`].
struct Fixture {
    hub: Hub,
    engine: Engine,
    sessions: Vec<Session>,
    // Last: dropping the runtime drops the sessions' heartbeat tasks. It is
    // never driven, so they never run (no pings while measuring).
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(n: usize) -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let _guard = runtime.enter();
        let hub = Hub::default();
        let engine = hub.engine(EngineConfig::default());
        let sessions: Vec<Session> =
            (0..n).map(|_| engine.open_session(&request(), TransportKind::WebSocket)).collect();
        for s in &sessions {
            s.receive(Packet::Message(Frame::Text("0".into())));
            let reply = s.drain();
            assert!(
                matches!(&reply[..], [Encoded::Text(t)] if t.starts_with("40{")),
                "CONNECT accepted at once: {reply:?}"
            );
        }
        let sockets = hub.of("/").sockets();
        assert_eq!(sockets.len(), n);
        for s in &sockets {
            s.join(ROOM).unwrap();
        }
        Fixture { hub, engine, sessions, runtime }
    }

    /// Empties every session's queue, as each connection's writer would.
    fn drain(&self) -> usize {
        self.sessions.iter().map(|s| s.drain().len()).sum()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _guard = self.runtime.enter();
        self.engine.close_all();
        assert_eq!(self.hub.of("/").socket_count(), 0, "every socket left");
    }
}

/// What a measurement counts.
#[derive(Clone, Copy)]
enum Clock {
    /// Wall time: what criterion normally measures.
    Wall,
    /// Time the bench thread spent on a CPU (Linux: the scheduler's
    /// `/proc/thread-self/schedstat`; wall time elsewhere).
    Cpu,
}

impl Clock {
    /// Time since an arbitrary origin.
    fn now(self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let wall = || ORIGIN.get_or_init(Instant::now).elapsed();
        match self {
            Clock::Wall => wall(),
            Clock::Cpu => std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .map_or_else(wall, Duration::from_nanos),
        }
    }
}

fn broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast");
    group.sample_size(20);
    for n in [1_000usize, 10_000] {
        let fixture = Fixture::new(n);
        assert_eq!(fixture.hub.to(ROOM).emit("chat", small_args()), n);
        assert_eq!(fixture.drain(), n, "one packet each");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("to_room_emit", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    black_box(fixture.hub.to(ROOM).emit("chat", small_args()));
                    total += start.elapsed();
                    fixture.drain();
                }
                total
            });
        });
        for (name, clock) in [("to_room_emit_drain", Clock::Wall), ("to_room_emit_drain_cpu_time", Clock::Cpu)] {
            group.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_custom(|iters| {
                    let start = clock.now();
                    for _ in 0..iters {
                        black_box(fixture.hub.to(ROOM).emit("chat", small_args()));
                        black_box(fixture.drain());
                    }
                    clock.now() - start
                });
            });
        }
        assert!(fixture.sessions.iter().all(|s| !s.is_closed()), "no queue overflowed");
    }
    group.finish();
}

criterion_group!(benches, broadcast);
criterion_main!(benches);
