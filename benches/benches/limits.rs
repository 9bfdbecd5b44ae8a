//! Rate-limit micro-benchmarks (`tidewire::limits`):
//!
//! * `limits/cell`: one GCRA check on a socket's own cell (no lookup).
//! * `limits/event`: a full [`RateLimiter::check`] as the hub makes it for
//!   every event: the event's rule, the socket's rule, the user's and the
//!   IP address's cells (two sharded-map lookups).
//! * `limits/keyed_contended`: the same IP cell checked from two threads at
//!   once (both cores), per check.
//!
//! `cargo bench -p tidewire-benches --bench limits`.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tidewire::limits::{GcraCell, KeyedLimiter, Rate, RateLimiter, RateLimits};

fn benches(c: &mut Criterion) {
    // Rates high enough that every check is allowed: the common path.
    let rate = Rate::per_second(1_000_000_000).burst(1_000_000_000);
    let start = Instant::now();

    let cell = GcraCell::new();
    let mut now = 1u64;
    c.bench_function("limits/cell", |b| {
        b.iter(|| {
            now += 1;
            black_box(cell.check(&rate, now)).ok();
        })
    });

    let rules = RateLimits::none().socket(Some(rate)).user(Some(rate)).ip(Some(rate)).event("chat:message", rate);
    let limiter = RateLimiter::new(rules, start);
    let socket = limiter.socket_rates();
    let user: Arc<str> = "user-42".into();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    c.bench_function("limits/event", |b| {
        b.iter(|| black_box(limiter.check(&socket, black_box("chat:message"), Some(&user), ip, Instant::now())))
    });

    let shared = Arc::new(KeyedLimiter::new(rate, start));
    c.bench_function("limits/keyed_contended", |b| {
        b.iter_custom(|iters| {
            let other = {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for _ in 0..iters {
                        let _ = black_box(shared.check(&ip, Instant::now()));
                    }
                })
            };
            let t = Instant::now();
            for _ in 0..iters {
                let _ = black_box(shared.check(&ip, Instant::now()));
            }
            let elapsed = t.elapsed();
            other.join().unwrap();
            elapsed
        })
    });
}

criterion_group! {
    name = limits;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(limits);
