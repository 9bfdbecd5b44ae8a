//! Room index and ack bookkeeping micro-benchmarks, on the pure data
//! structures (no hub, no sessions):
//!
//! * `rooms/*`: join and leave in an index of 10k members across 100 rooms,
//!   `remove_member` of a socket in 5 rooms (one op per element).
//! * `resolve/*`: target resolution counting visits, for a 1k-member and a
//!   100k-member room, without `except`, except a 10-member room, except a
//!   room overlapping 50%; and the union of two 50k rooms overlapping 25k.
//!   Throughput is the members reached (visit calls), so results read as
//!   members/s.
//! * `acks/*`: `AckTable` (limit 1,024) insert + resolve, `InboundAcks`
//!   (window 128) begin + answered, `AckCollector` with 1k recipients.
//!
//! `cargo bench -p tidewire-benches --bench rooms` (add
//! `-- --measurement-time 3 --warm-up-time 1` for a fast pass).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tidewire::ack::{AckCollector, AckTable, Inbound, InboundAcks, next_ack_id};
use tidewire::engine::new_id;
use tidewire::protocol::engine::Encoded;
use tidewire::rooms::{Room, RoomIndex, Target};

/// Members of the join/leave index.
const MEMBERS: u64 = 10_000;
/// Rooms of the join/leave index; member `m` is in room `m % ROOMS`.
const ROOMS: u64 = 100;
/// How many members one timed chunk of a join/leave benchmark handles:
/// small, so the 100-member room being joined stays about that size.
const CHUNK: u64 = 100;

fn room(name: &str) -> Room {
    name.into()
}

/// 10k members across 100 rooms of 100 members each.
fn populated() -> (RoomIndex<u64>, Vec<Room>) {
    let rooms: Vec<Room> = (0..ROOMS).map(|r| room(&format!("room-{r}"))).collect();
    let mut index = RoomIndex::new();
    for m in 0..MEMBERS {
        index.join(m, [rooms[(m % ROOMS) as usize].clone()]);
    }
    (index, rooms)
}

/// Runs `iters` timed operations in chunks of [`CHUNK`] fresh members
/// (keys from `MEMBERS` up): `prepare` and `clean` run untimed around each
/// chunk, `op` is timed.
fn chunked(
    index: &mut RoomIndex<u64>,
    iters: u64,
    mut prepare: impl FnMut(&mut RoomIndex<u64>, u64),
    mut op: impl FnMut(&mut RoomIndex<u64>, u64),
    mut clean: impl FnMut(&mut RoomIndex<u64>, u64),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let keys = MEMBERS..MEMBERS + CHUNK.min(iters - done);
        for k in keys.clone() {
            prepare(index, k);
        }
        let start = Instant::now();
        for k in keys.clone() {
            op(index, k);
        }
        total += start.elapsed();
        for k in keys.clone() {
            clean(index, k);
        }
        done += keys.end - keys.start;
    }
    total
}

fn join_leave(c: &mut Criterion) {
    let mut group = c.benchmark_group("rooms");
    group.throughput(Throughput::Elements(1));
    let (mut index, rooms) = populated();
    let target = rooms[42].clone();
    // Per-chunk room names for the "new room" cases (a socket's own room).
    let solo: Vec<Room> = (0..CHUNK).map(|_| room(&new_id())).collect();
    let solo_of = |k: u64| solo[(k - MEMBERS) as usize].clone();

    // A connected socket (already a member) joins / leaves a 100-member room.
    group.bench_function("join_existing_room", |b| {
        b.iter_custom(|iters| {
            chunked(
                &mut index,
                iters,
                |ix, k| ix.add_member(k),
                |ix, k| drop(black_box(ix.join(k, [target.clone()]))),
                |ix, k| drop(ix.remove_member(k)),
            )
        });
    });
    group.bench_function("leave_existing_room", |b| {
        b.iter_custom(|iters| {
            chunked(
                &mut index,
                iters,
                |ix, k| drop(ix.join(k, [target.clone()])),
                |ix, k| drop(black_box(ix.leave(k, &target))),
                |ix, k| drop(ix.remove_member(k)),
            )
        });
    });
    // Creating and deleting a room (a socket's own-id room on connect and
    // disconnect).
    group.bench_function("join_new_room", |b| {
        b.iter_custom(|iters| {
            chunked(
                &mut index,
                iters,
                |ix, k| ix.add_member(k),
                |ix, k| drop(black_box(ix.join(k, [solo_of(k)]))),
                |ix, k| drop(ix.remove_member(k)),
            )
        });
    });
    group.bench_function("leave_last_member", |b| {
        b.iter_custom(|iters| {
            chunked(
                &mut index,
                iters,
                |ix, k| drop(ix.join(k, [solo_of(k)])),
                |ix, k| drop(black_box(ix.leave(k, &solo_of(k)))),
                |ix, k| drop(ix.remove_member(k)),
            )
        });
    });
    // A socket in 5 rooms (4 shared 100-member rooms and its own) goes away.
    let five: Vec<Room> = [0, 20, 40, 60].iter().map(|&r| rooms[r].clone()).collect();
    group.bench_function("remove_member_5_rooms", |b| {
        b.iter_custom(|iters| {
            chunked(
                &mut index,
                iters,
                |ix, k| drop(ix.join(k, five.iter().cloned().chain([solo_of(k)]))),
                |ix, k| drop(black_box(ix.remove_member(k))),
                |_, _| {},
            )
        });
    });
    group.finish();
    assert_eq!(index.member_count() as u64, MEMBERS, "every chunk cleaned up");
}

/// One index per size `n`: `big` (keys 0..n), `small` (10 members of
/// `big`), `half` (n members, n/2 of them in `big`).
fn resolution_index(n: u64) -> RoomIndex<u64> {
    let mut index = RoomIndex::new();
    for m in 0..n {
        index.join(m, [room("big")]);
    }
    for m in 0..10 {
        index.join(m, [room("small")]);
    }
    for m in n / 2..n + n / 2 {
        index.join(m, [room("half")]);
    }
    index
}

fn target(rooms: &[&str], except: &[&str]) -> Target {
    Target { rooms: rooms.iter().map(|r| room(r)).collect(), except: except.iter().map(|r| room(r)).collect() }
}

fn resolve(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    for (label, n) in [("1k", 1_000u64), ("100k", 100_000)] {
        let index = resolution_index(n);
        for (case, except) in [("all", &[][..]), ("except_10", &["small"][..]), ("except_half", &["half"][..])] {
            let t = target(&["big"], except);
            let reached = index.count(&t) as u64;
            assert_eq!(
                reached,
                n - if case == "except_10" {
                    10
                } else if case == "except_half" {
                    n / 2
                } else {
                    0
                }
            );
            group.throughput(Throughput::Elements(reached));
            group.bench_with_input(BenchmarkId::new(case, label), &t, |b, t| b.iter(|| index.count(black_box(t))));
        }
    }
    // Two 50k rooms overlapping by 25k: 75k distinct members.
    let mut index = RoomIndex::new();
    for m in 0..50_000u64 {
        index.join(m, [room("a")]);
        index.join(m + 25_000, [room("b")]);
    }
    let t = target(&["a", "b"], &[]);
    let reached = index.count(&t) as u64;
    assert_eq!(reached, 75_000);
    group.throughput(Throughput::Elements(reached));
    group.bench_function("union_2x50k_overlap_25k", |b| b.iter(|| index.count(black_box(&t))));
    group.finish();
}

/// Roughly what a socket's ack table holds: a channel sender.
type Sink = [usize; 2];

fn acks(c: &mut Criterion) {
    let mut group = c.benchmark_group("acks");
    group.throughput(Throughput::Elements(1));
    for pending in [0usize, 1000] {
        let counter = AtomicU64::new(0);
        let mut table = AckTable::<Sink>::new(1024);
        for _ in 0..pending {
            table.insert(next_ack_id(&counter), [0; 2]).unwrap();
        }
        group.bench_function(BenchmarkId::new("table_insert_resolve", format!("{pending}_pending")), |b| {
            b.iter(|| {
                let id = next_ack_id(&counter);
                table.insert(id, [id as usize; 2]).unwrap();
                black_box(table.resolve(black_box(id)))
            });
        });
        assert_eq!(table.len(), pending);
    }

    // A socket receiving events with acks: each new id enters the window
    // (evicting the oldest), then its answer is recorded.
    let frames: Arc<[Encoded]> = Arc::from(vec![Encoded::Text(r#"431[{"ok":true}]"#.into())]);
    let mut inbound = InboundAcks::<Option<Arc<[Encoded]>>>::new(128);
    let mut next = 0u64;
    for _ in 0..128 {
        inbound.begin(next);
        inbound.answered(next, Some(frames.clone()));
        next += 1;
    }
    group.bench_function("inbound_begin_answered_window_128", |b| {
        b.iter(|| {
            let id = next;
            next += 1;
            assert!(matches!(inbound.begin(black_box(id)), Inbound::New));
            inbound.answered(id, Some(frames.clone()));
        });
    });
    // A client retrying an answered event: the stored answer comes back.
    group.bench_function("inbound_retry_answered_window_128", |b| {
        b.iter(|| black_box(inbound.begin(black_box(next - 64))));
    });

    // A broadcast with ack to 1k sockets: build the collector from their
    // ids, take every answer, report.
    let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("collector_1k_respond_all_finish", |b| {
        b.iter(|| {
            let mut acks = AckCollector::new(ids.iter().cloned());
            for id in &ids {
                acks.respond(id, 1u32);
            }
            assert!(acks.is_complete());
            black_box(acks.finish())
        });
    });
    // Half the recipients time out (the report lists them, sorted).
    group.bench_function("collector_1k_half_timed_out", |b| {
        b.iter(|| {
            let mut acks = AckCollector::new(ids.iter().cloned());
            for id in &ids[..500] {
                acks.respond(id, 1u32);
            }
            black_box(acks.finish())
        });
    });
    group.finish();
}

criterion_group!(benches, join_leave, resolve, acks);
criterion_main!(benches);
