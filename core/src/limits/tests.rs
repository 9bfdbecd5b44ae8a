use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::gcra::SWEEP_FLOOR;
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn gcra_allows_burst_then_steady_rate() {
    let rate = Rate::per_second(10).burst(3);
    let cell = GcraCell::new();
    let t0 = 1_000_000_000u64;
    for _ in 0..3 {
        assert!(cell.check(&rate, t0).is_ok());
    }
    let refused = cell.check(&rate, t0).unwrap_err();
    assert_eq!(refused.retry_after, ms(100));
    // A refusal records nothing: one interval later exactly one fits.
    let t1 = t0 + 100_000_000;
    assert!(cell.check(&rate, t1).is_ok());
    assert!(cell.check(&rate, t1).is_err());
    // After a long pause the full burst is available again, not more.
    let t2 = t1 + 10_000_000_000;
    assert!(cell.is_idle(t2));
    for _ in 0..3 {
        assert!(cell.check(&rate, t2).is_ok());
    }
    assert!(cell.check(&rate, t2).is_err());
}

#[test]
fn rates_parse() {
    assert_eq!("10/s".parse::<Rate>().unwrap(), Rate::per_second(10));
    assert_eq!("10/s:20".parse::<Rate>().unwrap(), Rate::per_second(10).burst(20));
    assert_eq!("600/m:50".parse::<Rate>().unwrap(), Rate::per(Duration::from_secs(60), 600).burst(50));
    for bad in ["", "10", "0/s", "10/s:0", "10/d", "-1/s", "x/s", "10/s:", "99999999999/s"] {
        assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
    }
}

#[test]
fn gcra_long_run_rate_matches() {
    // 1,000 events offered at 100/s against a 10/s limit: about 10/s
    // pass, plus the burst.
    let rate = Rate::per_second(10).burst(5);
    let cell = GcraCell::new();
    let mut passed = 0;
    for i in 0..1000u64 {
        if cell.check(&rate, 1 + i * 10_000_000).is_ok() {
            passed += 1;
        }
    }
    // 10 s of traffic: 100 steady + the burst of 5, minus one interval.
    assert!((104..=105).contains(&passed), "passed {passed}");
}

#[test]
fn gcra_is_exact_under_contention() {
    let rate = Rate::per(Duration::from_secs(3600), 1000);
    let cell = Arc::new(GcraCell::new());
    let passed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (cell, passed) = (cell.clone(), passed.clone());
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if cell.check(&rate, 5).is_ok() {
                        passed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(passed.load(Ordering::Relaxed), 1000, "exactly the burst passes");
}

#[test]
fn keyed_limiter_separates_keys_and_sweeps_idle_ones() {
    let start = Instant::now();
    let limiter = KeyedLimiter::new(Rate::per_second(1), start);
    assert!(limiter.check(&"a", start).is_ok());
    assert!(limiter.check(&"a", start).is_err());
    assert!(limiter.check(&"b", start).is_ok());
    assert_eq!(limiter.len(), 2);
    limiter.sweep(start + ms(500));
    assert_eq!(limiter.len(), 2, "still within their interval");
    limiter.sweep(start + ms(1000));
    assert!(limiter.is_empty());
    // Growth triggers sweeps: 10k keys, each idle by the time the map doubles.
    for i in 0..10_000u32 {
        let _ = limiter.check(&"x", start);
        let key: &'static str = Box::leak(i.to_string().into_boxed_str());
        let _ = limiter.check(&key, start + Duration::from_secs(u64::from(i) * 2));
    }
    assert!(limiter.len() < 2 * SWEEP_FLOOR, "len {}", limiter.len());
}

#[test]
fn limiter_checks_event_rule_socket_user_ip() {
    let t = Instant::now();
    let rules = RateLimits::none()
        .socket(Some(Rate::per_second(100)))
        .user(Some(Rate::per_second(3)))
        .event("chat", Rate::per_second(1))
        .disconnect_after(3, Duration::from_secs(10));
    let limiter = RateLimiter::new(rules, t);
    let a = limiter.socket_rates();
    let b = limiter.socket_rates();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let alice: Arc<str> = "alice".into();
    assert_eq!(limiter.check(&a, "chat", Some(&alice), ip, t), Verdict::Allow);
    assert!(matches!(limiter.check(&a, "chat", Some(&alice), ip, t), Verdict::Refuse(_)));
    // The per-event rule is per socket; the user rule spans sockets.
    assert_eq!(limiter.check(&b, "chat", Some(&alice), ip, t), Verdict::Allow);
    assert_eq!(limiter.check(&b, "other", Some(&alice), ip, t), Verdict::Allow);
    assert!(matches!(limiter.check(&b, "other", Some(&alice), ip, t), Verdict::Refuse(_)));
    // Anonymous sockets skip the user rule.
    assert_eq!(limiter.check(&b, "other", None, ip, t), Verdict::Allow);
    // The third violation of socket `a` disconnects it.
    assert!(matches!(limiter.check(&a, "chat", Some(&alice), ip, t), Verdict::Refuse(_)));
    assert!(matches!(limiter.check(&a, "chat", Some(&alice), ip, t), Verdict::Disconnect(_)));
}

#[test]
fn violations_disconnect_only_when_dense() {
    let t = Instant::now();
    let rules = RateLimits::none()
        .event("e", Rate::per(Duration::from_secs(3600), 1))
        .disconnect_after(3, Duration::from_secs(10));
    let limiter = RateLimiter::new(rules, t);
    let s = limiter.socket_rates();
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(limiter.check(&s, "e", None, ip, t), Verdict::Allow);
    // One violation every 6 s: the window never holds three.
    for i in 0..10u64 {
        let at = t + Duration::from_secs(6 * i);
        assert!(matches!(limiter.check(&s, "e", None, ip, at), Verdict::Refuse(_)), "violation {i}");
    }
    // Three within a moment: the third disconnects.
    let later = t + Duration::from_secs(600);
    assert!(matches!(limiter.check(&s, "e", None, ip, later), Verdict::Refuse(_)));
    assert!(matches!(limiter.check(&s, "e", None, ip, later), Verdict::Refuse(_)));
    assert!(matches!(limiter.check(&s, "e", None, ip, later), Verdict::Disconnect(_)));
    // With a limit of one, the first violation disconnects; with none, never.
    let one = RateLimiter::new(
        RateLimits::none().socket(Some(Rate::per_second(1))).disconnect_after(1, Duration::from_secs(1)),
        t,
    );
    let s1 = one.socket_rates();
    assert_eq!(one.check(&s1, "x", None, ip, t), Verdict::Allow);
    assert!(matches!(one.check(&s1, "x", None, ip, t), Verdict::Disconnect(_)));
}

#[test]
fn connection_caps_and_permits() {
    let t = Instant::now();
    let limits = ConnectionLimits::none().per_ip(Some(2)).global(Some(3)).per_user(Some(1));
    let counter = ConnectionCounter::new(limits, t);
    let (x, y): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let p1 = counter.acquire_ip(x, t).unwrap();
    let _p2 = counter.acquire_ip(x, t).unwrap();
    assert_eq!(counter.acquire_ip(x, t).unwrap_err(), ConnectionRefused::PerIp);
    assert_eq!(counter.connections(), 2, "a refused attempt holds no slot");
    let p3 = counter.acquire_ip(y, t).unwrap();
    assert_eq!(counter.acquire_ip(y, t).unwrap_err(), ConnectionRefused::Global);
    drop(p1);
    assert_eq!(counter.connections_of_ip(x), 1);
    let _p4 = counter.acquire_ip(x, t).unwrap();
    drop(p3);
    assert_eq!(counter.connections_of_ip(y), 0);
    let bob: Arc<str> = "bob".into();
    let u = counter.acquire_user(&bob).unwrap();
    assert_eq!(counter.acquire_user(&bob).unwrap_err(), ConnectionRefused::PerUser);
    drop(u);
    assert!(counter.acquire_user(&bob).unwrap().is_some());
}

#[test]
fn handshake_rate_per_ip() {
    let t = Instant::now();
    let counter =
        ConnectionCounter::new(ConnectionLimits::none().handshakes_per_ip(Some(Rate::per_second(2).burst(2))), t);
    let ip: IpAddr = "192.0.2.9".parse().unwrap();
    let _a = counter.acquire_ip(ip, t).unwrap();
    let _b = counter.acquire_ip(ip, t).unwrap();
    let refused = counter.acquire_ip(ip, t).unwrap_err();
    assert_eq!(refused.code(), "rate_limited");
    assert_eq!(refused.retry_after(), Some(ms(500)));
    assert!(counter.acquire_ip("192.0.2.10".parse().unwrap(), t).is_ok());
}

#[test]
fn handshake_rate_in_total_from_every_address() {
    let t = Instant::now();
    let limits = ConnectionLimits::none()
        .handshakes_per_ip(Some(Rate::per_second(2).burst(2)))
        .handshakes_total(Some(Rate::per_second(4).burst(4)));
    let counter = ConnectionCounter::new(limits, t);
    let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
    let mut held = Vec::new();
    // One address past its own rate is refused as such, and takes nothing
    // from the total.
    held.push(counter.acquire_ip(ip(1), t).unwrap());
    held.push(counter.acquire_ip(ip(1), t).unwrap());
    assert_eq!(counter.acquire_ip(ip(1), t).unwrap_err().code(), "rate_limited");
    // Four in total, from any addresses; then every address waits.
    held.push(counter.acquire_ip(ip(2), t).unwrap());
    held.push(counter.acquire_ip(ip(3), t).unwrap());
    let refused = counter.acquire_ip(ip(4), t).unwrap_err();
    assert!(matches!(refused, ConnectionRefused::HandshakeRateTotal(_)), "{refused:?}");
    assert_eq!(refused.code(), "server_busy");
    assert_eq!(refused.retry_after(), Some(ms(250)));
    assert_eq!(counter.connections(), 4, "a refusal holds no slot");
    // A quarter of a second later, one more.
    assert!(counter.acquire_ip(ip(4), t + ms(250)).is_ok());
    assert!(counter.acquire_ip(ip(5), t + ms(250)).is_err());
}

#[test]
fn json_schema_reports_where_and_what() {
    let v = JsonSchema::first_arg(&serde_json::json!({
        "type": "object",
        "properties": { "text": { "type": "string", "maxLength": 3 } },
        "required": ["text"],
    }))
    .unwrap();
    assert_eq!(v.validate(&serde_json::json!([{ "text": "abc" }])), Ok(()));
    let err = v.validate(&serde_json::json!([{ "text": "abcd" }])).unwrap_err();
    assert!(err.starts_with("/0/text: "), "{err}");
    assert!(v.validate(&serde_json::json!([{ "text": "a" }, 2])).is_err(), "one argument only");
    assert!(JsonSchema::args(&serde_json::json!({ "type": 12 })).is_err());
}

#[test]
fn client_ip_trusts_only_configured_proxies() {
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    let xff = Some("203.0.113.9, 198.51.100.2");
    assert_eq!(ConnectionLimits::none().client_ip(peer, xff), peer, "untrusted header ignored");
    let one = ConnectionLimits::none().trusted_proxies(1);
    assert_eq!(one.client_ip(peer, xff), "198.51.100.2".parse::<IpAddr>().unwrap());
    let two = ConnectionLimits::none().trusted_proxies(2);
    assert_eq!(two.client_ip(peer, xff), "203.0.113.9".parse::<IpAddr>().unwrap());
    let five = ConnectionLimits::none().trusted_proxies(5);
    assert_eq!(five.client_ip(peer, xff), "203.0.113.9".parse::<IpAddr>().unwrap());
    assert_eq!(one.client_ip(peer, Some("garbage")), peer);
    assert_eq!(one.client_ip(peer, None), peer);
}
