//! The raw Engine.IO echo (`/engine.io/`) and admission: the chat does not
//! mount it at all, and where it is mounted (`--conformance`) it goes
//! through the same connection caps and handshake rate as the hub's engine,
//! counted in `/metrics`.

mod common;

use common::*;

/// A polling handshake at `path`; the status.
async fn handshake(port: u16, path: &str) -> HttpResponse {
    http_get(port, path).await
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[tokio::test]
async fn the_chat_does_not_serve_the_raw_engine_io_echo() {
    run(async {
        let mut server = Server::start_chat(&[], &[("JWT_SECRET", "s3cret")]);
        let r = handshake(server.port, EIO_POLL).await;
        assert_eq!(r.status, 404, "/engine.io/ on the chat's public listener: {}", r.text());
        assert!(RawWs::try_connect(server.port, EIO_WS).await.is_err(), "no WebSocket at /engine.io/ either");
        let sio = handshake(server.port, SIO_POLL).await;
        assert_eq!(sio.status, 200, "Socket.IO is served");
        server.assert_running();
    })
    .await
}

#[tokio::test]
async fn the_echo_is_capped_per_ip_and_counted() {
    run(async {
        let server = Server::start_with(&["--max-conn-per-ip", "2"]);
        for i in 0..2 {
            let r = handshake(server.port, EIO_POLL).await;
            assert_eq!(r.status, 200, "echo session {i}: {}", r.text());
        }
        let refused = handshake(server.port, EIO_POLL).await;
        assert_eq!(refused.status, 429, "a third echo session from one address: {}", refused.text());
        assert_eq!(refused.json()["code"], "too_many_connections");
        let metrics = http_get(server.port, "/metrics").await.text();
        assert_eq!(metric(&metrics, "tidewire_handshakes_refused_total"), 1, "the refusal is counted");
        assert_eq!(metric(&metrics, "tidewire_connections"), 2, "echo sessions are counted");
    })
    .await
}

#[tokio::test]
async fn the_echo_handshake_rate_is_limited_per_ip() {
    run(async {
        let server = Server::start_with(&["--handshakes-per-ip", "5/m"]);
        for i in 0..5 {
            assert_eq!(handshake(server.port, EIO_POLL).await.status, 200, "handshake {i}");
        }
        let refused = handshake(server.port, EIO_POLL).await;
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert_eq!(refused.json()["code"], "rate_limited");
        assert!(refused.header("retry-after").is_some(), "Retry-After is sent");
    })
    .await
}

#[tokio::test]
async fn uncapped_conformance_mode_is_not_limited_twice() {
    run(async {
        // Conformance turns the caps off: neither engine may add defaults of
        // its own (the engine's default handshake rate is 50/s, bursts of 100).
        let server = Server::start();
        for path in [SIO_POLL, EIO_POLL] {
            for i in 0..150 {
                let r = handshake(server.port, path).await;
                assert_eq!(r.status, 200, "{path} handshake {i}: {}", r.text());
            }
        }
    })
    .await
}

/// Whether the server closes `s` (EOF or reset) within `limit`.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(limit, s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn max_tcp_per_ip_caps_open_connections_at_the_listener_even_behind_a_proxy() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    run(async {
        // Set, the flag holds behind a proxy too (where the default is no cap).
        for extra in [&[][..], &["--trusted-proxies", "1"][..]] {
            let mut args = vec!["--max-tcp-per-ip", "3"];
            args.extend_from_slice(extra);
            let mut server = Server::start_with(&args);
            // Three connections that send half a request head and stop.
            let mut loris = Vec::new();
            for _ in 0..3 {
                let mut s = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
                loris.push(s);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let mut fourth = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
            assert!(closed_within(&mut fourth, STEP).await, "{args:?}: the fourth is closed before anything is read");
            for s in &mut loris {
                assert!(!closed_within(s, std::time::Duration::from_millis(50)).await, "{args:?}: the held ones stay");
            }
            drop(loris.pop());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(http_get(server.port, "/healthz").await.status, 200, "{args:?}: a slot came back");
            server.assert_running();
        }
    })
    .await;
}

#[tokio::test]
async fn handshakes_in_total_are_rate_limited_from_every_address() {
    run(async {
        let mut server = Server::start_with(&["--handshakes-total", "3/s:3", "--handshakes-per-ip", "off"]);
        for _ in 0..3 {
            assert_eq!(handshake(server.port, SIO_POLL).await.status, 200);
        }
        let busy = handshake(server.port, SIO_POLL).await;
        assert_eq!(busy.status, 503, "{}", busy.text());
        let body: serde_json::Value = serde_json::from_str(&busy.text()).unwrap();
        assert_eq!(body["code"], "server_busy");
        assert_eq!(busy.header("retry-after"), Some("1"));
        // The rate refills: a third of a second later, one more.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(handshake(server.port, SIO_POLL).await.status, 200);
        let metrics = http_get(server.port, "/metrics").await.text();
        assert!(metric(&metrics, "tidewire_handshakes_refused_total") >= 1, "{metrics}");
        server.assert_running();
    })
    .await;
}

/// New connections run in the listener's admission lane (one step at a
/// time, within a share of the time): a burst of them must all be served
/// or refused, none left hanging, while an open session goes on answering,
/// and the refused ones' connections must be let go once their clients
/// go. (How long the open session waits is measured by `loadgen abuse`,
/// not here.)
#[tokio::test]
async fn a_burst_of_new_connections_is_served_in_full_while_open_sessions_answer() {
    use tokio::task::JoinSet;
    run_for(std::time::Duration::from_secs(60), async {
        let mut server = Server::start_with(&[
            "--handshakes-total",
            "20/s:20",
            "--handshakes-per-ip",
            "off",
            // A small share: the lane is slow.
            "--admission-share",
            "0.05",
        ]);
        let port = server.port;
        let (mut open, _) = SioWs::connected(port).await;
        let mut burst = JoinSet::new();
        for i in 0..200u32 {
            burst.spawn(async move {
                if i % 2 == 0 {
                    match WsClient::try_connect(port, SIO_WS).await {
                        Ok(mut ws) => {
                            parse_open(&ws.recv_text().await, &[]);
                            ws.send_text(&connect_packet("/", None)).await;
                            let reply = ws.recv_text().await;
                            assert!(reply.starts_with("40{"), "CONNECT answered: {reply}");
                            200
                        }
                        Err(tokio_tungstenite::tungstenite::Error::Http(refused)) => refused.status().as_u16(),
                        Err(e) => panic!("a new WebSocket neither served nor refused: {e}"),
                    }
                } else {
                    handshake(port, SIO_POLL).await.status
                }
            });
        }
        // The open session answers while the burst is on.
        let mut round_trips = 0u64;
        while !burst.is_empty() {
            round_trips += 1;
            let answer = open.call(round_trips, "echo", serde_json::json!(round_trips)).await;
            assert_eq!(answer, serde_json::json!(round_trips));
            while let Some(done) = burst.try_join_next() {
                let status = done.unwrap();
                assert!(status == 200 || status == 503, "every new connection served or refused: {status}");
            }
        }
        assert!(round_trips > 1, "the open session answered during the burst");
        let metrics = http_get(port, "/metrics").await.text();
        assert!(metric(&metrics, "tidewire_handshakes_refused_total") >= 1, "the total rate refused some: {metrics}");
        // The refused connections' clients are gone: so are their
        // connections (back to the open session's and this request's).
        let mut fds = 0;
        for _ in 0..50 {
            fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid())).unwrap().count();
            if fds < 40 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(fds < 40, "connections left open: {fds} descriptors");
        server.assert_running();
    })
    .await;
}

#[test]
fn the_admission_share_must_be_a_number_above_zero() {
    for bad in ["0", "-1", "abc", "NaN"] {
        let flag = format!("--admission-share={bad}");
        let (ok, stderr) = run_to_exit(chat_command(&[&flag], &[]), std::time::Duration::from_secs(20));
        assert!(!ok && stderr.contains("is not a share above 0"), "{bad}: {stderr}");
    }
}
