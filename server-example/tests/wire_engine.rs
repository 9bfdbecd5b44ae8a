//! Engine.IO v4 on the raw wire: handshakes, heartbeat, client-sent ping,
//! the raw `/engine.io/` echo endpoint, polling payloads, and the
//! polling-to-WebSocket upgrade dance. Also the process contract (ready
//! line, CLI options, exit on SIGTERM/SIGINT).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// Process and handshake
// ---------------------------------------------------------------------------

#[tokio::test]
async fn handshake_websocket_defaults_and_no_upgrades() {
    run(async {
        let server = Server::start();
        let s = SioWs::open(server.port).await;
        let hs = &s.handshake;
        assert_eq!(hs["pingInterval"], json!(25000));
        assert_eq!(hs["pingTimeout"], json!(20000));
        assert_eq!(hs["maxPayload"], json!(1_000_000));
        assert_eq!(hs["upgrades"], json!([]));

        let (_ws, hs) = RawWs::open(server.port, EIO_WS).await;
        assert_eq!(hs["upgrades"], json!([]), "raw engine.io websocket handshake");
    })
    .await
}

#[tokio::test]
async fn handshake_polling_offers_websocket_upgrade() {
    run(async {
        let server = Server::start();
        let p = Polling::open(server.port, SIO_POLL).await;
        assert_eq!(p.handshake["upgrades"], json!(["websocket"]));
        let q = Polling::open(server.port, EIO_POLL).await;
        assert_eq!(q.handshake["upgrades"], json!(["websocket"]));
        assert_ne!(p.sid, q.sid);
    })
    .await
}

#[tokio::test]
async fn handshake_reflects_cli_options() {
    run(async {
        let server = Server::start_with(&[
            "--ping-interval-ms",
            "1234",
            "--ping-timeout-ms",
            "567",
            "--max-payload",
            "4321",
            "--connect-timeout-ms",
            "9999",
            "--upgrade-timeout-ms",
            "777",
        ]);
        let s = SioWs::open(server.port).await;
        assert_eq!(s.handshake["pingInterval"], json!(1234));
        assert_eq!(s.handshake["pingTimeout"], json!(567));
        assert_eq!(s.handshake["maxPayload"], json!(4321));
    })
    .await
}

#[tokio::test]
async fn server_exits_on_sigterm_and_sigint() {
    run(async {
        for sig in ["TERM", "INT"] {
            let mut server = Server::start();
            // with a live connection that did some traffic
            let (mut s, _) = SioWs::connected(server.port).await;
            s.send(r#"421["echo","x"]"#).await;
            s.recv_packet().await;
            let _ = http_get(server.port, "/socket.io/?EIO=4&transport=nope").await;
            server.signal(sig);
            assert!(server.wait_exit(Duration::from_secs(10)), "server still running 10 s after SIG{sig}");
            // let the reader thread see EOF
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(server.extra_stdout(), "", "stdout must hold only the ready line (logs go to stderr)");
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// Heartbeat
// ---------------------------------------------------------------------------

#[tokio::test]
async fn heartbeat_client_that_never_answers_is_closed() {
    run(async {
        let server = Server::start_with(&["--ping-interval-ms", "300", "--ping-timeout-ms", "200"]);
        let mut ws = WsClient::connect(server.port, SIO_WS).await;
        let hs = parse_open(&ws.recv_text().await, &[]);
        let t0 = Instant::now();
        assert_eq!((hs["pingInterval"].clone(), hs["pingTimeout"].clone()), (json!(300), json!(200)));
        ws.send_text("40").await;
        check_connect_reply(&ws.recv_text().await, "/");

        // first ping after ~pingInterval
        ws.expect_text("2").await;
        let ping_at = t0.elapsed();
        assert!(
            ping_at >= Duration::from_millis(200) && ping_at <= Duration::from_millis(2000),
            "first ping at {ping_at:?}, pingInterval is 300 ms"
        );
        // never answer: closed ~pingTimeout after the ping
        let (_code, seen) = ws.expect_closed_within(Duration::from_secs(5)).await;
        let closed_at = t0.elapsed();
        assert!(seen.iter().all(|f| *f == Frame::Text("2".into())), "only pings expected before the close: {seen:?}");
        assert!(
            closed_at >= Duration::from_millis(400),
            "closed at {closed_at:?}: before pingInterval + pingTimeout (500 ms)"
        );
        assert!(
            closed_at <= Duration::from_millis(2500),
            "closed at {closed_at:?}: long after pingInterval + pingTimeout (500 ms)"
        );
    })
    .await
}

#[tokio::test]
async fn heartbeat_client_that_answers_stays_connected() {
    run(async {
        let server = Server::start_with(&["--ping-interval-ms", "300", "--ping-timeout-ms", "200"]);
        let (mut s, _) = SioWs::connected(server.port).await;
        let start = Instant::now();
        let mut pings = 0;
        while start.elapsed() < Duration::from_millis(2500) {
            match s.ws.recv_within(Duration::from_millis(100)).await {
                None => continue,
                Some(Frame::Text(t)) if t == "2" => {
                    pings += 1;
                    s.ws.send_text("3").await;
                }
                Some(other) => panic!("unexpected frame while heartbeating: {other:?}"),
            }
        }
        assert!(pings >= 4, "expected a ping every ~300 ms, got {pings} in 2.5 s");
        s.send(r#"421["echo","alive"]"#).await;
        loop {
            let t = s.ws.recv_text().await;
            if t == "2" {
                s.ws.send_text("3").await;
                continue;
            }
            let p = parse_sio(&t);
            assert_eq!((p.id, p.data), (Some(1), Some(json!(["alive"]))));
            break;
        }
    })
    .await
}

#[tokio::test]
async fn heartbeat_over_polling() {
    run(async {
        let server = Server::start_with(&["--ping-interval-ms", "300", "--ping-timeout-ms", "200"]);
        let p = Polling::open(server.port, SIO_POLL).await;
        // a pending GET is answered by the ping
        let t0 = Instant::now();
        let r = p.get_within(Duration::from_secs(3)).await.expect("GET answered by a ping");
        assert_eq!((r.status, r.text()), (200, "2".to_string()));
        assert!(t0.elapsed() <= Duration::from_millis(2000));
        p.post_ok("3").await;
        let r = p.get_within(Duration::from_secs(3)).await.expect("second ping");
        assert_eq!((r.status, r.text()), (200, "2".to_string()));
        // no pong now: the session is closed after pingTimeout
        tokio::time::sleep(Duration::from_millis(800)).await;
        p.assert_closed().await;
    })
    .await
}

#[tokio::test]
async fn client_sent_ping_closes_the_session_websocket() {
    run(async {
        let mut server = Server::start();
        let (mut s, _) = SioWs::connected(server.port).await;
        s.send("2").await;
        s.ws.expect_closed().await;
        server.assert_running();
        assert_alive(server.port).await;

        // also before any Socket.IO CONNECT, and on the raw engine.io endpoint
        let mut s = SioWs::open(server.port).await;
        s.send("2probe").await; // a probe is only valid during an upgrade
        s.ws.expect_closed().await;
        let mut ws = WsClient::connect(server.port, EIO_WS).await;
        ws.recv_text().await;
        ws.send_text("2").await;
        ws.expect_closed().await;
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn client_sent_ping_closes_the_session_polling() {
    run(async {
        let server = Server::start();
        let p = Polling::open(server.port, SIO_POLL).await;
        p.post_ok("40").await;
        let pk = p.get_packets().await;
        assert_eq!(pk.len(), 1);
        let PollPacket::Text(ref t) = pk[0] else { panic!("{pk:?}") };
        check_connect_reply(t, "/");
        let r = p.post("2").await;
        assert!(r.status == 200 || r.status == 400, "POST of a client ping: {} {:?}", r.status, r.text());
        p.assert_closed().await;
        assert_alive(server.port).await;
    })
    .await
}

// ---------------------------------------------------------------------------
// Raw Engine.IO echo endpoint
// ---------------------------------------------------------------------------

#[tokio::test]
async fn raw_engine_io_echo_over_websocket() {
    run(async {
        let server = Server::start();
        let mut ws = WsClient::connect(server.port, EIO_WS).await;
        parse_open(&ws.recv_text().await, &[]);
        for msg in ["4hello", "4", "4ünï\u{1F680}code", "4{\"not\":\"socket.io\"}", "4abc"] {
            ws.send_text(msg).await;
            ws.expect_text(msg).await;
        }
        let blob: Vec<u8> = (0..=255u8).collect();
        ws.send_binary(&blob).await;
        assert_eq!(ws.recv_binary().await, blob);
        ws.send_binary(b"").await;
        assert_eq!(ws.recv_binary().await, b"");
        let big = vec![0xabu8; 200_000];
        ws.send_binary(&big).await;
        assert_eq!(ws.recv_binary().await, big);
    })
    .await
}

#[tokio::test]
async fn raw_engine_io_echo_over_polling() {
    run(async {
        let server = Server::start();
        let p = Polling::open(server.port, EIO_POLL).await;
        let body = format!("4hello\x1eb{}\x1e4wörld\x1e4", b64(&[1, 2, 3, 0, 255]));
        p.post_ok(&body).await;
        let want = vec![
            PollPacket::Text("4hello".into()),
            PollPacket::Binary(vec![1, 2, 3, 0, 255]),
            PollPacket::Text("4wörld".into()),
            PollPacket::Text("4".into()),
        ];
        let mut got = Vec::new();
        while got.len() < want.len() {
            got.extend(p.get_packets().await);
        }
        assert_eq!(got, want);
    })
    .await
}

// ---------------------------------------------------------------------------
// Socket.IO over polling
// ---------------------------------------------------------------------------

#[tokio::test]
async fn polling_payload_with_several_packets_and_base64_binary() {
    run(async {
        let server = Server::start();
        let p = Polling::open(server.port, SIO_POLL).await;
        p.post_ok("40\x1e40/chat,").await;
        let mut replies = Vec::new();
        while replies.len() < 2 {
            replies.extend(p.get_packets().await);
        }
        let texts: Vec<String> = replies
            .iter()
            .map(|r| match r {
                PollPacket::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        check_connect_reply(&texts[0], "/");
        check_connect_reply(&texts[1], "/chat");

        let body = [
            r#"420["echo","a"]"#.to_string(),
            r#"42/chat,1["echo","b",{"c":1}]"#.to_string(),
            format!("452-2{}", json!(["echo", placeholder(0), {"x": placeholder(1)}])),
            format!("b{}", b64(b"\x00\x01\x02")),
            format!("b{}", b64(&[0xff; 10])),
            format!("451-{}", json!(["echo", placeholder(0)])),
            format!("b{}", b64(b"no ack")),
            r#"42["echo","plain"]"#.to_string(),
        ]
        .join("\x1e");
        p.post_ok(&body).await;

        // Collect everything the server sends back, across as many GETs as needed.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = Vec::new();
        while events.len() < 5 && Instant::now() < deadline {
            got.extend(p.get_packets().await);
            // assemble packets with their attachments
            events.clear();
            let mut i = 0;
            while i < got.len() {
                let PollPacket::Text(ref t) = got[i] else { panic!("binary packet without a header at {i}: {got:?}") };
                let mut pk = parse_sio(t);
                i += 1;
                if let Some(n) = pk.attachments {
                    if got.len() < i + n {
                        break; // attachments still to come
                    }
                    let bins: Vec<Vec<u8>> = got[i..i + n]
                        .iter()
                        .map(|b| match b {
                            PollPacket::Binary(b) => b.clone(),
                            other => panic!("expected b<base64>, got {other:?}"),
                        })
                        .collect();
                    check_placeholders(pk.data.as_ref().unwrap(), n);
                    pk.data = Some(fill_placeholders(pk.data.as_ref().unwrap(), &bins));
                    i += n;
                }
                events.push(pk);
            }
        }
        let want = vec![
            SioPacket { ty: 3, attachments: None, nsp: "/".into(), id: Some(0), data: Some(json!(["a"])) },
            SioPacket {
                ty: 3,
                attachments: None,
                nsp: "/chat".into(),
                id: Some(1),
                data: Some(json!(["b", {"c": 1}])),
            },
            SioPacket {
                ty: 6,
                attachments: Some(2),
                nsp: "/".into(),
                id: Some(2),
                data: Some(json!([bin(b"\x00\x01\x02"), {"x": bin(&[0xff; 10])}])),
            },
            SioPacket {
                ty: 5,
                attachments: Some(1),
                nsp: "/".into(),
                id: None,
                data: Some(json!(["echo", bin(b"no ack")])),
            },
            SioPacket { ty: 2, attachments: None, nsp: "/".into(), id: None, data: Some(json!(["echo", "plain"])) },
        ];
        assert_eq!(events, want, "raw packets: {got:?}");
    })
    .await
}

// ---------------------------------------------------------------------------
// Upgrade
// ---------------------------------------------------------------------------

#[tokio::test]
async fn polling_upgrade_dance() {
    run(async {
        let mut server = Server::start();
        let p = Polling::open(server.port, SIO_POLL).await;
        p.post_ok("40").await;
        let pk = p.get_packets().await;
        let PollPacket::Text(ref t) = pk[0] else { panic!("{pk:?}") };
        let socket_sid = check_connect_reply(t, "/");

        // A pending GET, as engine.io-client keeps one open while probing.
        let req = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", p.url(), server.port);
        let mut pending = tcp(server.port).await;
        pending.write_all(req.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut ws = WsClient::connect(server.port, &format!("{SIO_WS}&sid={}", p.sid)).await;
        ws.send_text("2probe").await;
        ws.expect_text("3probe").await;

        // the pending GET is answered with a noop
        let r = tokio::time::timeout(STEP, read_response(&mut pending))
            .await
            .expect("pending GET not answered after the probe")
            .expect("pending GET: connection closed without a response");
        assert_eq!((r.status, r.text()), (200, "6".to_string()), "pending GET during upgrade");

        ws.send_text("5").await;
        ws.send_text(r#"427["whoami"]"#).await;
        let reply = parse_sio(&ws.recv_text().await);
        assert_eq!(reply.id, Some(7));
        assert_eq!(reply.data.unwrap()[0]["id"], json!(socket_sid), "same Socket.IO socket after the upgrade");

        // polling on an upgraded sid: 400 Bad request (code 3)
        let r = p.get().await;
        r.assert_eio_error(3, "Bad request");
        let r = p.post(r#"42["echo","via polling"]"#).await;
        r.assert_eio_error(3, "Bad request");

        // a second WebSocket for the same sid is refused or closed
        match RawWs::try_connect(server.port, &format!("{SIO_WS}&sid={}", p.sid)).await {
            Err(resp) => {
                if let Some(resp) = resp {
                    assert_eq!(resp.status, 400, "second WebSocket upgrade refusal");
                }
            }
            Ok(mut second) => {
                second.send_frame(true, 1, b"2probe").await.ok();
                let code = second.expect_closed_within(STEP).await;
                let _ = code;
            }
        }

        // the upgraded connection still works
        ws.send_text(r#"428["echo","still here"]"#).await;
        let reply = parse_sio(&ws.recv_text().await);
        assert_eq!((reply.id, reply.data), (Some(8), Some(json!(["still here"]))));
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn polling_upgrade_on_raw_engine_io_endpoint() {
    run(async {
        let server = Server::start();
        let p = Polling::open(server.port, EIO_POLL).await;
        let mut ws = WsClient::connect(server.port, &format!("{EIO_WS}&sid={}", p.sid)).await;
        ws.send_text("2probe").await;
        ws.expect_text("3probe").await;
        ws.send_text("5").await;
        ws.send_text("4after upgrade").await;
        ws.expect_text("4after upgrade").await;
        ws.send_binary(&[9, 8, 7]).await;
        assert_eq!(ws.recv_binary().await, vec![9, 8, 7]);
    })
    .await
}

#[tokio::test]
async fn messages_posted_during_upgrade_are_not_lost() {
    run(async {
        let server = Server::start();
        let p = Polling::open(server.port, SIO_POLL).await;
        p.post_ok("40").await;
        let pk = p.get_packets().await;
        let PollPacket::Text(ref t) = pk[0] else { panic!("{pk:?}") };
        check_connect_reply(t, "/");

        let mut ws = WsClient::connect(server.port, &format!("{SIO_WS}&sid={}", p.sid)).await;
        ws.send_text("2probe").await;
        ws.expect_text("3probe").await;
        // still polling until `5`: this event's reply may come on either transport
        p.post_ok(r#"421["echo","mid-upgrade"]"#).await;
        let r = p.get_within(STEP).await.expect("GET answered");
        assert_eq!(r.status, 200);
        let mut got: Vec<PollPacket> =
            decode_payload(&r.text()).into_iter().filter(|x| *x != PollPacket::Text("6".into())).collect();
        ws.send_text("5").await;
        if got.is_empty() {
            got.push(PollPacket::Text(ws.recv_text().await));
        }
        let PollPacket::Text(ref t) = got[0] else { panic!("{got:?}") };
        let reply = parse_sio(t);
        assert_eq!((reply.id, reply.data), (Some(1), Some(json!(["mid-upgrade"]))));
    })
    .await
}

#[tokio::test]
async fn upgrade_timeout_closes_an_unfinished_upgrade() {
    run(async {
        let server = Server::start_with(&["--upgrade-timeout-ms", "300"]);
        let p = Polling::open(server.port, SIO_POLL).await;
        p.post_ok("40").await;
        p.get_packets().await;
        let mut ws = WsClient::connect(server.port, &format!("{SIO_WS}&sid={}", p.sid)).await;
        ws.send_text("2probe").await;
        ws.expect_text("3probe").await;
        // never send `5`: the probe WebSocket is closed after the upgrade timeout
        ws.expect_closed_within(Duration::from_secs(4)).await;
        // and the session goes on over polling
        p.post_ok(r#"423["echo","still polling"]"#).await;
        let deadline = Instant::now() + STEP;
        loop {
            assert!(Instant::now() < deadline, "no echo over polling after a failed upgrade");
            let got = p.get_packets().await;
            if let Some(PollPacket::Text(t)) = got.iter().find(|x| **x != PollPacket::Text("6".into())) {
                let reply = parse_sio(t);
                assert_eq!((reply.id, reply.data), (Some(3), Some(json!(["still polling"]))));
                break;
            }
        }
    })
    .await
}
