//! WebSocket framing with hand-made frames on raw TCP: invalid UTF-8, frames
//! that declare huge lengths, endless continuation fragments, oversize
//! messages, fragmentation that must work, and RFC 6455 violations.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::time::Instant;

/// RSS may not grow by this much from one hostile frame.
const RSS_SLACK_KIB: u64 = 32 * 1024;

async fn raw_connected(port: u16) -> RawWs {
    let (mut ws, _hs) = RawWs::open(port, SIO_WS).await;
    ws.send_frame(true, 1, b"40").await.unwrap();
    let f = ws.read_frame_within(STEP).await.expect("CONNECT reply in time").expect("CONNECT reply");
    check_connect_reply(&String::from_utf8(f.payload).unwrap(), "/");
    ws
}

async fn read_text(ws: &mut RawWs) -> String {
    let f = ws.read_frame_within(STEP).await.expect("frame in time").expect("connection closed unexpectedly");
    assert_eq!(f.opcode, 1, "expected a text frame, got {f:?}");
    assert!(f.fin, "server frames here are unfragmented");
    String::from_utf8(f.payload).expect("server text is UTF-8")
}

#[tokio::test]
async fn invalid_utf8_text_frame_is_closed_with_1007() {
    run(async {
        let mut server = Server::start();
        // after CONNECT
        let mut ws = raw_connected(server.port).await;
        ws.send_frame(true, 1, b"42[\"echo\",\"\xff\xfe\"]").await.unwrap();
        assert_eq!(ws.expect_closed_within(STEP).await, Some(1007), "invalid UTF-8 after CONNECT");

        // right after the handshake
        let (mut ws, _) = RawWs::open(server.port, SIO_WS).await;
        ws.send_frame(true, 1, b"40\xc0\xaf").await.unwrap();
        assert_eq!(ws.expect_closed_within(STEP).await, Some(1007), "overlong encoding");

        // split across fragments, and a surrogate half (CESU-8)
        let (mut ws, _) = RawWs::open(server.port, EIO_WS).await;
        ws.send_frame(false, 1, b"4ok\xed").await.unwrap();
        ws.send_frame(true, 0, b"\xa0\x80").await.unwrap();
        assert_eq!(ws.expect_closed_within(STEP).await, Some(1007), "surrogate in fragments");

        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

/// Frames that arrive with the upgrade request (left in the HTTP layer's
/// buffer) and messages far larger than the connection's small read buffer
/// arrive intact and in order.
#[tokio::test]
async fn frames_pipelined_with_the_upgrade_and_large_messages_arrive_intact() {
    run(async {
        let server = Server::start();
        let big: String = (0..300_000u32).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let mut frames = encode_frame(true, 1, b"40");
        frames.extend(encode_frame(true, 1, b"421[\"echo\",\"first\"]"));
        frames.extend(encode_frame(true, 1, format!("422[\"echo\",\"{big}\"]").as_bytes()));
        frames.extend(encode_frame(true, 1, b"423[\"echo\",\"last\"]"));
        let mut ws = RawWs::try_connect_pipelined(server.port, SIO_WS, &frames).await.expect("upgrade");
        let open = read_text(&mut ws).await;
        parse_open(&open, &[]);
        check_connect_reply(&read_text(&mut ws).await, "/");
        for (id, want) in [(1, json!(["first"])), (2, json!([big])), (3, json!(["last"]))] {
            let p = parse_sio(&read_text(&mut ws).await);
            assert_eq!((p.ty, p.id), (3, Some(id)));
            assert_eq!(p.data, Some(want), "ack {id}");
        }
        assert_alive(server.port).await;
    })
    .await
}

/// Far more messages in one write than the server handles before it
/// writes: every one is answered, in order.
#[tokio::test]
async fn a_long_burst_in_one_write_is_answered_in_full_and_in_order() {
    run(async {
        let server = Server::start();
        let mut ws = raw_connected(server.port).await;
        let n = 1000u64;
        let mut burst = Vec::new();
        for i in 1..=n {
            burst.extend(encode_frame(true, 1, format!("42{i}[\"echo\",{i}]").as_bytes()));
        }
        ws.send_raw(&burst).await.unwrap();
        for i in 1..=n {
            let p = parse_sio(&read_text(&mut ws).await);
            assert_eq!((p.ty, p.id, p.data), (3, Some(i), Some(json!([i]))), "ack {i} of {n}");
        }
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn fragmented_messages_are_reassembled() {
    run(async {
        let server = Server::start();
        let mut ws = raw_connected(server.port).await;
        // "ü" (c3 bc) split across two fragments, a ping between fragments
        ws.send_frame(false, 1, b"421[\"echo\",\"\xc3").await.unwrap();
        ws.send_frame(true, 9, b"mid").await.unwrap();
        ws.send_frame(false, 0, b"\xbc\",").await.unwrap();
        ws.send_frame(true, 0, b"7]").await.unwrap();
        let mut got_pong = false;
        let text = loop {
            let f = ws.read_frame_within(STEP).await.expect("reply in time").expect("reply");
            match f.opcode {
                0xA => {
                    assert_eq!(f.payload, b"mid");
                    got_pong = true;
                }
                1 => break String::from_utf8(f.payload).unwrap(),
                other => panic!("unexpected opcode {other}"),
            }
        };
        let p = parse_sio(&text);
        assert_eq!((p.ty, p.id, p.data), (3, Some(1), Some(json!(["ü", 7]))));
        if !got_pong {
            let f = ws.read_frame_within(STEP).await.expect("pong in time").expect("pong");
            assert_eq!((f.opcode, f.payload), (0xA, b"mid".to_vec()));
        }

        // binary attachment sent in fragments
        ws.send_frame(true, 1, format!("451-2{}", json!(["echo", placeholder(0)])).as_bytes()).await.unwrap();
        ws.send_frame(false, 2, &[1, 2]).await.unwrap();
        ws.send_frame(false, 0, &[3]).await.unwrap();
        ws.send_frame(true, 0, &[4, 5]).await.unwrap();
        let p = parse_sio(&read_text(&mut ws).await);
        assert_eq!((p.ty, p.attachments, p.id), (6, Some(1), Some(2)));
        let f = ws.read_frame_within(STEP).await.unwrap().unwrap();
        assert_eq!((f.opcode, f.payload), (2, vec![1, 2, 3, 4, 5]));
    })
    .await
}

#[tokio::test]
async fn websocket_ping_gets_pong() {
    run(async {
        let server = Server::start();
        let (mut ws, _) = RawWs::open(server.port, SIO_WS).await;
        ws.send_frame(true, 9, b"hello?").await.unwrap();
        let f = ws.read_frame_within(STEP).await.expect("pong in time").expect("pong");
        assert_eq!((f.opcode, f.payload), (0xA, b"hello?".to_vec()));
        // an unsolicited pong is ignored
        ws.send_frame(true, 0xA, b"x").await.unwrap();
        ws.send_frame(true, 1, b"40").await.unwrap();
        check_connect_reply(&read_text(&mut ws).await, "/");
    })
    .await
}

#[tokio::test]
async fn huge_declared_frame_length_is_rejected_without_allocating() {
    run(async {
        let mut server = Server::start();
        let base = server.rss_kib();
        for (declared, opcode, what) in [
            (1u64 << 62, 2u8, "2^62 binary"),
            (1u64 << 62, 1u8, "2^62 text"),
            ((1u64 << 63) - 1, 2u8, "2^63-1"),
            (1u64 << 30, 2u8, "1 GiB"),
            (64u64 << 20, 2u8, "64 MiB"),
            (16u64 << 20, 1u8, "16 MiB"),
            (1_000_001u64, 2u8, "maxPayload + 1"),
        ] {
            let mut ws = raw_connected(server.port).await;
            let mut bytes = frame_header(true, opcode, declared);
            bytes.extend_from_slice(b"4abcdefgh"); // a little payload, not the rest
            ws.send_raw(&bytes).await.unwrap();
            let started = Instant::now();
            let code = ws.expect_closed_within(STEP).await;
            assert!(
                code.is_none() || code == Some(1009),
                "{what}: want close 1009 or a dropped connection, got close {code:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(3), "{what}: rejection took {:?}", started.elapsed());
            server.assert_running();
            let rss = server.rss_kib();
            assert!(rss < base + RSS_SLACK_KIB, "{what}: server RSS jumped from {base} KiB to {rss} KiB");
        }
        // the same in the middle of a fragmented message
        let mut ws = raw_connected(server.port).await;
        ws.send_frame(false, 1, b"42[\"echo\",\"").await.unwrap();
        ws.send_raw(&frame_header(true, 0, 1u64 << 62)).await.unwrap();
        let code = ws.expect_closed_within(STEP).await;
        assert!(code.is_none() || code == Some(1009), "continuation 2^62: close {code:?}");
        let rss = server.rss_kib();
        assert!(rss < base + RSS_SLACK_KIB, "RSS jumped from {base} KiB to {rss} KiB");
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn message_over_max_payload_is_closed_with_1009() {
    run(async {
        let mut server = Server::start_with(&["--max-payload", "10000"]);
        // exactly maxPayload bytes: echoed by the raw engine.io endpoint
        let (mut ws, hs) = RawWs::open(server.port, EIO_WS).await;
        assert_eq!(hs["maxPayload"], json!(10000));
        let at_limit = format!("4{}", "z".repeat(9_999));
        ws.send_frame(true, 1, at_limit.as_bytes()).await.unwrap();
        assert_eq!(read_text(&mut ws).await, at_limit);
        // one byte more in one frame
        let over = format!("4{}", "z".repeat(10_000));
        ws.send_frame(true, 1, over.as_bytes()).await.unwrap();
        let code = ws.expect_closed_within(STEP).await;
        assert!(code.is_none() || code == Some(1009), "oversize frame: close {code:?}");
        // one byte more across two fragments
        let (mut ws, _) = RawWs::open(server.port, EIO_WS).await;
        ws.send_frame(false, 2, &[0u8; 6000]).await.unwrap();
        let _ = ws.send_frame(true, 0, &[0u8; 4001]).await;
        let code = ws.expect_closed_within(STEP).await;
        assert!(code.is_none() || code == Some(1009), "oversize fragmented: close {code:?}");
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn endless_continuation_fragments_are_cut_at_max_payload() {
    run(async {
        let mut server = Server::start_with(&["--max-payload", "100000"]);
        let base = server.rss_kib();
        for path in [EIO_WS, SIO_WS] {
            let (mut ws, _) = RawWs::open(server.port, path).await;
            let chunk = vec![b'a'; 16 * 1024];
            let mut sent = 0usize;
            let mut write_ok = ws.send_frame(false, 1, b"4").await.is_ok();
            // up to 8x the cap, paced so the server reads as we go
            while write_ok && sent < 800_000 {
                if ws.send_frame(false, 0, &chunk).await.is_err() {
                    write_ok = false;
                    continue;
                }
                sent += chunk.len();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // never sent a final fragment: a server without a message cap would wait forever
            let code = ws.expect_closed_within(STEP).await;
            assert!(
                code.is_none() || code == Some(1009),
                "{path}: endless fragments: want close 1009 or a dropped connection, got {code:?}"
            );
            server.assert_running();
        }
        let rss = server.rss_kib();
        assert!(rss < base + RSS_SLACK_KIB, "RSS jumped from {base} KiB to {rss} KiB");
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn rfc6455_violations_fail_the_connection() {
    run(async {
        let mut server = Server::start();
        let mut rsv = encode_frame(true, 1, b"40");
        rsv[0] |= 0x40; // RSV1 without an extension
        let mut two = encode_frame(false, 1, b"4a");
        two.extend(encode_frame(true, 1, b"4b")); // new data frame while one is open
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", vec![0x81, 0x02, b'4', b'0']),
            ("orphan continuation", encode_frame(true, 0, b"40")),
            ("opcode 3", encode_frame(true, 3, b"x")),
            ("opcode 0xB", encode_frame(true, 0xB, b"x")),
            ("RSV1", rsv),
            ("big ping", encode_frame(true, 9, &[0u8; 126])),
            ("fragmented ping", encode_frame(false, 9, b"x")),
            ("interleaved data frames", two),
        ];
        for (what, bytes) in cases {
            let (mut ws, _) = RawWs::open(server.port, SIO_WS).await;
            ws.send_raw(&bytes).await.unwrap();
            let code = ws.expect_closed_within(STEP).await;
            assert!(
                code.is_none() || code == Some(1002),
                "{what}: want close 1002 or a dropped connection, got {code:?}"
            );
        }
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}

#[tokio::test]
async fn client_close_frame_is_answered_and_server_alive() {
    run(async {
        let mut server = Server::start();
        let mut ws = raw_connected(server.port).await;
        ws.send_frame(true, 8, &1000u16.to_be_bytes()).await.unwrap();
        let code = ws.expect_closed_within(STEP).await;
        assert!(code.is_none() || code == Some(1000), "close handshake echo: {code:?}");
        // abrupt TCP close in the middle of a frame
        let mut ws = raw_connected(server.port).await;
        ws.send_raw(&frame_header(true, 1, 500)).await.unwrap();
        ws.send_raw(b"42[\"ech").await.unwrap();
        drop(ws);
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.assert_running();
        assert_alive(server.port).await;
    })
    .await
}
