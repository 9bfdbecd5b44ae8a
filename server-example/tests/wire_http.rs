//! HTTP-level behaviour on raw TCP: Engine.IO error answers (JSON bodies with
//! socket.io's codes), `__proto__` lookups, polling body limits and content
//! types, overlapping polling requests, slow request heads and header floods.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[tokio::test]
async fn unknown_transport_is_code_0() {
    run(async {
        let mut server = Server::start();
        for path in [
            "/socket.io/?EIO=4&transport=foo",
            "/socket.io/?EIO=4",
            "/socket.io/?EIO=4&transport=",
            "/socket.io/?EIO=4&transport=__proto__",
            "/socket.io/?EIO=4&transport=constructor",
            "/socket.io/?EIO=4&transport=webtransport",
            "/engine.io/?EIO=4&transport=__proto__",
        ] {
            let r = http_get(server.port, path).await;
            r.assert_eio_error(0, "Transport unknown");
        }
        // also with a sid, and on POST
        let r = http_post(server.port, "/socket.io/?EIO=4&transport=__proto__&sid=x", "text/plain", b"40").await;
        r.assert_eio_error(0, "Transport unknown");
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn unknown_sid_is_code_1() {
    run(async {
        let mut server = Server::start();
        for sid in ["nope", "__proto__", "constructor", "toString", "hasOwnProperty", "%00"] {
            let r = http_get(server.port, &format!("{SIO_POLL}&sid={sid}")).await;
            r.assert_eio_error(1, "Session ID unknown");
            let r = http_post(server.port, &format!("{SIO_POLL}&sid={sid}"), "text/plain", b"40").await;
            r.assert_eio_error(1, "Session ID unknown");
        }
        let r = http_get(server.port, &format!("{EIO_POLL}&sid=__proto__")).await;
        r.assert_eio_error(1, "Session ID unknown");
        // A WebSocket upgrade with an unknown sid is refused with 400 (socket.io
        // answers upgrades in plain text) or closed right after the upgrade.
        for sid in ["__proto__", "nope"] {
            match RawWs::try_connect(server.port, &format!("{SIO_WS}&sid={sid}")).await {
                Err(Some(resp)) => assert_eq!(resp.status, 400, "upgrade with sid={sid}"),
                Err(None) => {}
                Ok(mut ws) => {
                    ws.expect_closed_within(STEP).await;
                }
            }
        }
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn handshake_must_be_get_code_2() {
    run(async {
        let server = Server::start();
        let r = http_post(server.port, SIO_POLL, "text/plain;charset=UTF-8", b"40").await;
        r.assert_eio_error(2, "Bad handshake method");
        let req = format!("PUT {SIO_POLL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        let r = http_raw(server.port, req.as_bytes()).await;
        r.assert_eio_error(2, "Bad handshake method");
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn websocket_transport_without_upgrade_is_code_3() {
    run(async {
        let server = Server::start();
        let r = http_get(server.port, SIO_WS).await;
        r.assert_eio_error(3, "Bad request");
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn polling_on_a_websocket_session_is_code_3() {
    run(async {
        let server = Server::start();
        let s = SioWs::open(server.port).await;
        let r = http_get(server.port, &format!("{SIO_POLL}&sid={}", s.eio_sid)).await;
        r.assert_eio_error(3, "Bad request");
        let r = http_post(server.port, &format!("{SIO_POLL}&sid={}", s.eio_sid), "text/plain", b"40").await;
        r.assert_eio_error(3, "Bad request");
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn unsupported_protocol_is_code_5() {
    run(async {
        let server = Server::start();
        for path in [
            "/socket.io/?EIO=3&transport=polling",
            "/socket.io/?transport=polling",
            "/socket.io/?EIO=5&transport=polling",
            "/engine.io/?EIO=3&transport=polling",
        ] {
            let r = http_get(server.port, path).await;
            r.assert_eio_error(5, "Unsupported protocol version");
        }
        // over a WebSocket upgrade: refused (400) or closed
        match RawWs::try_connect(server.port, "/socket.io/?EIO=3&transport=websocket").await {
            Err(Some(resp)) => assert_eq!(resp.status, 400),
            Err(None) => {}
            Ok(mut ws) => {
                ws.expect_closed_within(STEP).await;
            }
        }
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn post_with_octet_stream_content_type_is_400_promptly() {
    run(async {
        let mut server = Server::start();
        for base in [SIO_POLL, EIO_POLL] {
            let p = Polling::open(server.port, base).await;
            let started = Instant::now();
            let r = http_post(server.port, &p.url(), "application/octet-stream", b"\x04hello").await;
            assert_eq!(r.status, 400, "octet-stream POST: body {:?}", String::from_utf8_lossy(&r.body));
            assert!(started.elapsed() < Duration::from_secs(2), "400 took {:?}", started.elapsed());
        }
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn post_over_max_payload_is_413_and_closes_the_session() {
    run(async {
        let mut server = Server::start_with(&["--max-payload", "1000"]);
        // exactly maxPayload bytes is fine (raw echo endpoint)
        let p = Polling::open(server.port, EIO_POLL).await;
        assert_eq!(p.handshake["maxPayload"], serde_json::json!(1000));
        let at_limit = format!("4{}", "a".repeat(999));
        p.post_ok(&at_limit).await;
        assert_eq!(p.get_packets().await, vec![PollPacket::Text(at_limit.clone())]);
        // one byte more: 413, session closed
        let over = format!("4{}", "a".repeat(1000));
        let r = p.post(&over).await;
        assert_eq!(r.status, 413, "POST of maxPayload+1 bytes");
        p.assert_closed().await;

        // much larger on /socket.io/
        let p = Polling::open(server.port, SIO_POLL).await;
        let r = p.post(&format!(r#"42["echo","{}"]"#, "x".repeat(50_000))).await;
        assert_eq!(r.status, 413);
        p.assert_closed().await;

        server.assert_running();
        // the well-behaved client (small messages) is still served
        let (mut s, _) = SioWs::connected(server.port).await;
        s.send(r#"421["echo","ok"]"#).await;
        let pk = s.recv_packet().await;
        assert_eq!(pk.id, Some(1));
    })
    .await
}

#[tokio::test]
async fn two_concurrent_polling_gets_are_400_and_close_the_session() {
    run(async {
        let mut server = Server::start();
        for base in [SIO_POLL, EIO_POLL] {
            let p = Polling::open(server.port, base).await;
            let req =
                format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", p.url(), server.port);
            let mut first = tcp(server.port).await;
            first.write_all(req.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;

            let second = p.get_within(STEP).await.expect("second GET must be answered");
            assert_eq!(second.status, 400, "overlapping GET: {:?}", second.text());

            // the first GET is released (e.g. with the close packet), not left hanging
            let r = tokio::time::timeout(STEP, read_response(&mut first))
                .await
                .expect("first GET still hanging after the overlap closed the session");
            if let Some(r) = r {
                assert!(r.status == 200 || r.status == 400, "first GET: {} {:?}", r.status, r.text());
            }
            p.assert_closed().await;
        }
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn slow_request_head_is_disconnected_within_10s() {
    run_for(Duration::from_secs(40), async {
        let mut server = Server::start();
        let mut stalled = tcp(server.port).await;
        stalled.write_all(b"GET /socket.io/?EIO=4&tra").await.unwrap();
        // a client that dribbles one byte of the head every 500 ms
        let mut dribbler = tcp(server.port).await;
        let started = Instant::now();
        let dribble = async {
            let head = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            for b in head.iter() {
                if dribbler.write_all(&[*b]).await.is_err() {
                    return started.elapsed();
                }
                // a read with a short timeout doubles as the pause and the EOF check
                let mut buf = [0u8; 512];
                match tokio::time::timeout(Duration::from_millis(500), dribbler.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                    Ok(Ok(_)) => {} // e.g. a 408 response; EOF follows
                    Err(_) => {}
                }
            }
            Duration::MAX
        };
        let stall = async {
            let mut buf = [0u8; 512];
            loop {
                match stalled.read(&mut buf).await {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(_) => continue, // a 408 is fine; EOF must follow
                }
            }
        };
        let (dribble_closed, stall_closed) = tokio::time::timeout(Duration::from_secs(14), async {
            tokio::join!(dribble, stall)
        })
        .await
        .expect("a slow request head was not disconnected within 14 s");
        assert!(stall_closed <= Duration::from_secs(11), "stalled head closed after {stall_closed:?}");
        assert!(
            dribble_closed <= Duration::from_secs(11),
            "dribbling head closed after {dribble_closed:?} (the limit is for the whole head)"
        );
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn more_than_100_request_headers_is_431_or_closed() {
    run(async {
        let mut server = Server::start();
        // 50 extra headers are fine
        let mut req = format!("GET {SIO_POLL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        for i in 0..50 {
            req.push_str(&format!("X-Filler-{i}: v\r\n"));
        }
        req.push_str("\r\n");
        let r = http_raw(server.port, req.as_bytes()).await;
        assert_eq!(r.status, 200, "a request with 50 extra headers");

        for count in [150, 5000] {
            let mut req = format!("GET {SIO_POLL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
            for i in 0..count {
                req.push_str(&format!("X-Filler-{i}: v\r\n"));
            }
            req.push_str("\r\n");
            let mut s = tcp(server.port).await;
            let _ = s.write_all(req.as_bytes()).await; // may fail if the server closes early
            let r = tokio::time::timeout(STEP, read_response(&mut s))
                .await
                .expect("no answer to a header flood within 5 s");
            if let Some(r) = r {
                assert_eq!(r.status, 431, "{count} headers");
            }
        }
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn garbage_request_line_is_rejected_and_server_alive() {
    run(async {
        let mut server = Server::start();
        for junk in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET\r\n\r\n",
            b"GET /socket.io/?EIO=4&transport=polling HTTP/9.9\r\n\r\n",
        ] {
            let mut s = tcp(server.port).await;
            let _ = s.write_all(junk).await;
            let r = tokio::time::timeout(STEP, read_response(&mut s))
                .await
                .expect("no answer to a garbage request within 5 s");
            if let Some(r) = r {
                assert!((400..500).contains(&r.status) || r.status == 505, "junk {junk:?} got {}", r.status);
            }
        }
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}
