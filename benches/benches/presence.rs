//! User-level presence micro-benchmarks, on the pure [`Presence`] index (no
//! hub, no lock). The fixture is 5 rooms of 1,000 users each, every user with
//! one connection in all 5 rooms, and a two-key metadata object
//! (`{"device":"web","status":"online"}`) per connection; each timed join
//! clones one such object, as the hub hands over an owned value.
//!
//! * `presence/join_leave`: a new user's connection joins a 1,000-user room
//!   and leaves it again (a `Join` and a `Leave` diff).
//! * `presence/multi_tab`: a second connection of a present user joins and
//!   leaves the same room (no diffs).
//! * `presence/remove_connection_5_rooms`: the disconnect of a user's only
//!   connection, present in 5 rooms of 1,000 users (5 `Leave` diffs); the
//!   joins that set it up are not timed.
//! * `presence/list_1k`: the list of a 1,000-user room. Throughput is the
//!   users listed, so results read as users/s.
//!
//! `cargo bench -p tidewire-benches --bench presence` (add
//! `-- --measurement-time 3 --warm-up-time 1` for a fast pass).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tidewire::presence::{ConnId, NodeId, Presence, PresenceDiff, UserId};
use tidewire::rooms::Room;

/// Users per room.
const USERS: usize = 1_000;
/// Rooms of the fixture; every user is in all of them.
const ROOMS: usize = 5;
/// How many connections one timed chunk of `remove_connection_5_rooms`
/// removes.
const CHUNK: u64 = 100;

fn meta() -> Value {
    json!({"device": "web", "status": "online"})
}

struct Fixture {
    presence: Presence,
    rooms: Vec<Room>,
    users: Vec<UserId>,
    node: NodeId,
}

fn fixture() -> Fixture {
    let rooms: Vec<Room> = (0..ROOMS).map(|r| format!("room-{r}").into()).collect();
    let users: Vec<UserId> = (0..USERS).map(|u| format!("user-{u}").into()).collect();
    let node: NodeId = "node-1".into();
    let mut presence = Presence::new();
    for (u, user) in users.iter().enumerate() {
        let conn: ConnId = format!("conn-{u}").into();
        for room in &rooms {
            presence.join(room, user, &conn, &node, meta());
        }
    }
    assert_eq!(presence.user_count(&rooms[0]), USERS);
    Fixture { presence, rooms, users, node }
}

fn presence(c: &mut Criterion) {
    let Fixture { mut presence, rooms, users, node } = fixture();
    let room = &rooms[0];
    let meta = meta();
    let mut group = c.benchmark_group("presence");

    let (newcomer, newcomer_conn): (UserId, ConnId) = ("newcomer".into(), "newcomer-conn".into());
    assert!(matches!(
        presence.join(room, &newcomer, &newcomer_conn, &node, meta.clone()),
        Some(PresenceDiff::Join { .. })
    ));
    assert!(matches!(presence.leave(room, &newcomer_conn), Some(PresenceDiff::Leave { .. })));
    group.bench_function("join_leave", |b| {
        b.iter(|| {
            black_box(presence.join(room, &newcomer, &newcomer_conn, &node, meta.clone()));
            black_box(presence.leave(room, &newcomer_conn))
        });
    });

    let tab: ConnId = "conn-0-tab-2".into();
    assert_eq!(presence.join(room, &users[0], &tab, &node, meta.clone()), None);
    assert_eq!(presence.leave(room, &tab), None);
    group.bench_function("multi_tab", |b| {
        b.iter(|| {
            black_box(presence.join(room, &users[0], &tab, &node, meta.clone()));
            black_box(presence.leave(room, &tab))
        });
    });

    // Chunks of fresh users, each with one connection in every room: joined
    // untimed, then removed timed.
    let movers: Vec<(UserId, ConnId)> =
        (0..CHUNK).map(|k| (format!("mover-{k}").into(), format!("mover-conn-{k}").into())).collect();
    group.bench_function("remove_connection_5_rooms", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let chunk = &movers[..CHUNK.min(iters - done) as usize];
                for (user, conn) in chunk {
                    for room in &rooms {
                        presence.join(room, user, conn, &node, meta.clone());
                    }
                }
                let start = Instant::now();
                for (_, conn) in chunk {
                    black_box(presence.remove_connection(black_box(conn)));
                }
                total += start.elapsed();
                done += chunk.len() as u64;
            }
            total
        });
    });

    group.throughput(Throughput::Elements(USERS as u64));
    group.bench_function("list_1k", |b| b.iter(|| black_box(presence.list(black_box(room)))));
    group.finish();

    // Every timed join was undone.
    assert_eq!(presence.remove_connection(&movers[0].1), vec![]);
    assert_eq!((presence.user_count(room), presence.connection_count(room)), (USERS, USERS));
}

criterion_group!(benches, presence);
criterion_main!(benches);
