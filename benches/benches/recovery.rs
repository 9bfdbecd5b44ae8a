//! Connection-state recovery micro-benchmarks, on the pure data structures
//! (no hub, no sessions), with `P = Bytes` packets of 100 bytes:
//!
//! * `recovery/append`: `next_offset` (which renders the offset string) plus
//!   `append` into a full log of 10k packets, so every append evicts one.
//! * `recovery/since_100_of_10k`: collect the packets missed by a socket in 3
//!   rooms (plus its id room) from a 10k log where 1% of the packets reach
//!   it: 100 packets returned, 10k audiences checked.
//! * `recovery/restore`: `persist` a session in 3 rooms, then `restore` it
//!   with an offset 1,000 packets back in the same 10k log (10 missed
//!   packets): offset parsing, session lookup and the scan of 1,000 entries.
//!
//! `cargo bench -p tidewire-benches --bench recovery` (add
//! `-- --measurement-time 3 --warm-up-time 1` for a fast pass).

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use tidewire::recovery::{PacketLog, RecoveryConfig, Restore, SessionStore, StoredSession, restore};
use tidewire::rooms::{Room, Target};

/// Packets in the log.
const LOG: usize = 10_000;
/// Bytes per packet.
const SIZE: usize = 100;
/// Rooms packets are sent to besides the socket's; 99 of every 100 packets
/// go to one of these.
const OTHER_ROOMS: usize = 50;

fn room(name: &str) -> Room {
    name.into()
}

/// The rooms of the benchmarked socket, its id room included.
fn socket_rooms() -> Vec<Room> {
    vec![room("sock"), room("a"), room("b"), room("c")]
}

/// A full log where packet `i` goes to one of the socket's rooms when
/// `i % 100 == 0` and to another room otherwise.
fn full_log(config: &RecoveryConfig, now: Instant) -> PacketLog<Bytes> {
    let mine = ["a", "b", "c"];
    let others: Vec<Room> = (0..OTHER_ROOMS).map(|i| room(&format!("other-{i}"))).collect();
    let mut log = PacketLog::new(config);
    for i in 0..LOG {
        let audience = if i % 100 == 0 {
            Target { rooms: vec![room(mine[i / 100 % 3])], except: vec![] }
        } else {
            Target { rooms: vec![others[i % OTHER_ROOMS].clone()], except: vec![] }
        };
        let (offset, _) = log.next_offset();
        log.append(offset, Bytes::from(vec![b'x'; SIZE]), audience, SIZE, now);
    }
    log
}

fn bench_recovery(c: &mut Criterion) {
    let config = RecoveryConfig::default().max_packets(LOG);
    let now = Instant::now();
    let mut group = c.benchmark_group("recovery");

    {
        let mut log = full_log(&config, now);
        let packet = Bytes::from(vec![b'x'; SIZE]);
        let audience = Target { rooms: vec![room("news")], except: vec![] };
        group.bench_function("append", |b| {
            b.iter(|| {
                let (offset, text) = log.next_offset();
                black_box(&text);
                log.append(offset, packet.clone(), audience.clone(), SIZE, now);
            });
        });
        assert_eq!(log.len(), LOG);
    }

    let log = full_log(&config, now);
    let rooms = socket_rooms();
    assert_eq!(log.since(None, &rooms).map(|m| m.len()), Ok(LOG / 100));
    group.bench_function("since_100_of_10k", |b| b.iter(|| log.since(black_box(None), black_box(&rooms))));

    let mut store = SessionStore::new(&config);
    let pid = SessionStore::new_pid();
    let session = StoredSession {
        id: "sock".into(),
        rooms: vec![room("a"), room("b"), room("c")],
        data: Default::default(),
        user_id: None,
        base: None,
    };
    // Render the offset 1,000 packets back from the log's own offset strings.
    let (last, text) = log.next_offset();
    let (epoch, seq) = text.split_once('-').expect("offsets are <epoch>-<seq>");
    let offset = format!("{epoch}-{}", seq.parse::<u64>().expect("numeric seq") - 1_001);
    assert!(log.parse_offset(&offset).is_some_and(|o| o < last));
    group.bench_function("restore", |b| {
        b.iter(|| {
            store.persist(&pid, session.clone(), now);
            match restore(&mut store, &log, &pid, None, Some(black_box(&offset)), now) {
                Restore::Recovered { missed, .. } => missed.len(),
                Restore::Failed(f) => panic!("{f:?}"),
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench_recovery);
criterion_main!(benches);
