//! Socket.IO v5 over a WebSocket, on the raw wire: CONNECT, namespaces,
//! middleware, the demo events (`echo`, `whoami`, `ask`), binary packets,
//! the connect timeout, and every malformed-packet case from our issue (each
//! must close the connection and leave the server serving other clients).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Start a server, open a WebSocket session, CONNECT to `/`.
async fn connected(server: &Server) -> SioWs {
    SioWs::connected(server.port).await.0
}

/// Send `input` on a session that is in `prepare` state and expect the
/// connection to be closed; then a fresh client must still be served.
async fn expect_close_after(server: &mut Server, s: &mut SioWs, what: &str) {
    let (_code, seen) = s.ws.expect_closed().await;
    for f in &seen {
        // Only an Engine.IO close packet or a CONNECT_ERROR notice may precede
        // the close; never a reply to the bad input.
        let ok = matches!(f, Frame::Text(t) if t == "1" || t.starts_with("44"));
        assert!(ok, "{what}: server sent {f:?} before closing (all frames: {seen:?})");
    }
    server.assert_running();
    assert_alive(server.port).await;
    server.assert_running();
}

// ---------------------------------------------------------------------------
// Connection and namespaces
// ---------------------------------------------------------------------------

#[tokio::test]
async fn connect_root_and_chat_multiplexed_on_one_connection() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        let root_sid = s.connect("/", Some(r#"{"who":"root"}"#)).await;
        let chat_sid = s.connect("/chat", Some(r#"{"who":"chat"}"#)).await;
        assert_ne!(root_sid, chat_sid, "each namespace socket has its own id");
        assert_ne!(root_sid, s.eio_sid, "socket id differs from the Engine.IO sid");

        s.send(r#"421["echo","on root"]"#).await;
        s.send(r#"42/chat,2["echo","on chat"]"#).await;
        let mut got = vec![s.recv_packet().await, s.recv_packet().await];
        got.sort_by_key(|p| p.id);
        assert_eq!(
            got,
            vec![
                SioPacket { ty: 3, attachments: None, nsp: "/".into(), id: Some(1), data: Some(json!(["on root"])) },
                SioPacket {
                    ty: 3,
                    attachments: None,
                    nsp: "/chat".into(),
                    id: Some(2),
                    data: Some(json!(["on chat"]))
                },
            ]
        );

        s.send(r#"42/chat,3["whoami"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!((p.ty, p.nsp.as_str(), p.id), (3, "/chat", Some(3)));
        assert_eq!(p.data, Some(json!([{"id": chat_sid, "nsp": "/chat", "auth": {"who": "chat"}}])));

        s.send(r#"424["whoami"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!(p.data, Some(json!([{"id": root_sid, "nsp": "/", "auth": {"who": "root"}}])));
    })
    .await
}

/// Contract: `auth` is "the CONNECT auth payload or null". A CONNECT without
/// a payload (`40`, `40/chat,`) must give `"auth": null`.
#[tokio::test]
/// Like socket.io, a CONNECT without a payload gives `handshake.auth` = `{}`.
async fn whoami_without_auth_payload_is_an_empty_object() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        let root_sid = s.connect("/", None).await;
        let chat_sid = s.connect("/chat", None).await;
        s.send(r#"421["whoami"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!(p.data, Some(json!([{"id": root_sid, "nsp": "/", "auth": {}}])), "after `40`");
        s.send(r#"42/chat,2["whoami"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!(p.data, Some(json!([{"id": chat_sid, "nsp": "/chat", "auth": {}}])), "after `40/chat,`");
    })
    .await
}

#[tokio::test]
async fn chat_namespace_alone_without_root() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        let sid = s.connect("/chat", Some(r#"{"room":"a"}"#)).await;
        s.send(r#"42/chat,7["whoami"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!((p.ty, p.nsp.as_str(), p.id), (3, "/chat", Some(7)));
        assert_eq!(p.data, Some(json!([{"id": sid, "nsp": "/chat", "auth": {"room": "a"}}])));
    })
    .await
}

#[tokio::test]
async fn unknown_namespace_gets_connect_error_and_connection_stays() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        s.send("40/random").await;
        s.ws.expect_text(r#"44/random,{"message":"Invalid namespace"}"#).await;
        // with a trailing comma and an auth payload: same answer
        s.send(r#"40/random,{"token":"x"}"#).await;
        s.ws.expect_text(r#"44/random,{"message":"Invalid namespace"}"#).await;
        // the connection is kept: CONNECT to `/` works afterwards
        s.connect("/", None).await;
        s.send(r#"425["echo","after invalid nsp"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!((p.ty, p.id, p.data), (3, Some(5), Some(json!(["after invalid nsp"]))));
    })
    .await
}

#[tokio::test]
async fn auth_middleware_rejects_bad_token_on_root() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        s.send(r#"40{"token":"bad"}"#).await;
        s.ws.expect_text(r#"44{"message":"unauthorized"}"#).await;
        // As in socket.io, the Engine.IO connection stays open and the client may retry.
        let sid = s.connect("/", Some(r#"{"token":"good"}"#)).await;
        s.send(r#"421["whoami"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!(p.data, Some(json!([{"id": sid, "nsp": "/", "auth": {"token": "good"}}])));
    })
    .await
}

#[tokio::test]
async fn auth_middleware_rejects_bad_token_on_chat() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        s.send(r#"40/chat,{"token":"bad"}"#).await;
        s.ws.expect_text(r#"44/chat,{"message":"unauthorized"}"#).await;
        s.connect("/chat", Some(r#"{"token":"ok"}"#)).await;
        s.send(r#"42/chat,1["echo",1]"#).await;
        let p = s.recv_packet().await;
        assert_eq!((p.nsp.as_str(), p.id, p.data), ("/chat", Some(1), Some(json!([1]))));
    })
    .await
}

#[tokio::test]
async fn whoami_returns_socket_id_namespace_and_auth() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        let auth = r#"{"token":"t-1","user":{"name":"zoë","tags":[1,2.5,null,true]}}"#;
        let sid = s.connect("/", Some(auth)).await;
        s.send(r#"4299["whoami"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!((p.ty, p.nsp.as_str(), p.id), (3, "/", Some(99)));
        let want: Value = json!([{
            "id": sid,
            "nsp": "/",
            "auth": serde_json::from_str::<Value>(auth).unwrap(),
        }]);
        assert_eq!(p.data, Some(want));
        let obj = p.data.unwrap()[0].as_object().unwrap().clone();
        let mut keys: Vec<_> = obj.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["auth", "id", "nsp"]);
    })
    .await
}

#[tokio::test]
async fn leaving_a_namespace_keeps_the_engine_session() {
    run(async {
        let server = Server::start();
        let (mut s, sid1) = SioWs::connected(server.port).await;
        s.send("41").await;
        s.ws.expect_silence(Duration::from_millis(300)).await;
        let sid2 = s.connect("/", None).await;
        assert_ne!(sid1, sid2, "a new CONNECT gets a new socket id");
        s.send(r#"421["echo","back"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!((p.id, p.data), (Some(1), Some(json!(["back"]))));
    })
    .await
}

#[tokio::test]
async fn connect_timeout_closes_a_client_that_never_connects() {
    run(async {
        let server = Server::start_with(&["--connect-timeout-ms", "400"]);
        let started = Instant::now();
        let mut s = SioWs::open(server.port).await;
        let (_code, seen) = s.ws.expect_closed_within(Duration::from_secs(4)).await;
        let elapsed = started.elapsed();
        assert!(seen.is_empty(), "nothing expected before the close: {seen:?}");
        assert!(elapsed >= Duration::from_millis(300), "closed too early ({elapsed:?}), connect timeout is 400 ms");
        assert!(elapsed <= Duration::from_millis(3000), "closed too late: {elapsed:?}");

        // A client that does CONNECT in time is not affected by the timeout.
        let (mut ok, _) = SioWs::connected(server.port).await;
        tokio::time::sleep(Duration::from_millis(900)).await;
        ok.send(r#"421["echo","late"]"#).await;
        let p = ok.recv_packet().await;
        assert_eq!((p.id, p.data), (Some(1), Some(json!(["late"]))));
    })
    .await
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

#[tokio::test]
async fn echo_with_ack_returns_exactly_the_args() {
    run(async {
        let server = Server::start();
        let mut s = connected(&server).await;
        let args = json!(["a", 1, -2.5, true, null, {"b": [1, {"c": "ü\u{1F600}\"\\"}]}, [], {}]);
        let mut payload = vec![json!("echo")];
        payload.extend(args.as_array().unwrap().iter().cloned());
        s.send(&format!("4212{}", Value::Array(payload))).await;
        let p = s.recv_packet().await;
        assert_eq!((p.ty, p.attachments, p.nsp.as_str(), p.id), (3, None, "/", Some(12)));
        assert_eq!(p.data, Some(args));

        // ack id 0 and an event with no args beyond the name
        s.send(r#"420["echo"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!((p.ty, p.id, p.data), (3, Some(0), Some(json!([]))));
    })
    .await
}

#[tokio::test]
async fn echo_without_ack_emits_echo_back() {
    run(async {
        let server = Server::start();
        let mut s = connected(&server).await;
        s.send(r#"42["echo","x",{"y":[2]}]"#).await;
        let p = s.recv_packet().await;
        assert_eq!(
            p,
            SioPacket {
                ty: 2,
                attachments: None,
                nsp: "/".into(),
                id: None,
                data: Some(json!(["echo", "x", {"y": [2]}]))
            }
        );
    })
    .await
}

#[tokio::test]
async fn echo_binary_with_ack_answers_binary_ack() {
    run(async {
        let server = Server::start();
        let mut s = connected(&server).await;
        let b0: &[u8] = &[0, 1, 2, 255];
        let b1: &[u8] = b"";
        let b2: &[u8] = &[7u8; 3000];
        let header = format!(
            "453-8{}",
            json!(["echo", "t", placeholder(0), {"nested": [placeholder(1), {"deep": placeholder(2)}]}])
        );
        s.send_with_attachments(&header, &[b0, b1, b2]).await;
        let p = s.recv_full().await;
        assert_eq!((p.ty, p.attachments, p.nsp.as_str(), p.id), (6, Some(3), "/", Some(8)), "BINARY_ACK");
        assert_eq!(p.data, Some(json!(["t", bin(b0), {"nested": [bin(b1), {"deep": bin(b2)}]}])));
    })
    .await
}

#[tokio::test]
async fn echo_binary_without_ack_emits_binary_event() {
    run(async {
        let server = Server::start();
        let mut s = connected(&server).await;
        s.send_with_attachments(&format!("451-{}", json!(["echo", placeholder(0), 5])), &[b"\x00hello\xff"]).await;
        let p = s.recv_full().await;
        assert_eq!((p.ty, p.attachments, p.nsp.as_str(), p.id), (5, Some(1), "/", None), "BINARY_EVENT");
        assert_eq!(p.data, Some(json!(["echo", bin(b"\x00hello\xff"), 5])));
    })
    .await
}

#[tokio::test]
async fn echo_binary_on_chat_namespace() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        s.connect("/chat", None).await;
        s.send_with_attachments(
            &format!("452-/chat,41{}", json!(["echo", [placeholder(1), placeholder(0)]])),
            &[b"A", b"B"],
        )
        .await;
        let p = s.recv_full().await;
        assert_eq!((p.ty, p.nsp.as_str(), p.id), (6, "/chat", Some(41)));
        assert_eq!(p.data, Some(json!([[bin(b"B"), bin(b"A")]])));
        s.send_with_attachments(&format!("451-/chat,{}", json!(["echo", {"f": placeholder(0)}])), &[b"C"]).await;
        let p = s.recv_full().await;
        assert_eq!((p.ty, p.nsp.as_str(), p.id), (5, "/chat", None));
        assert_eq!(p.data, Some(json!(["echo", {"f": bin(b"C")}])));
    })
    .await
}

#[tokio::test]
async fn ask_question_ack_then_answer() {
    run(async {
        let server = Server::start();
        let mut s = SioWs::open(server.port).await;
        s.connect("/", None).await;
        s.connect("/chat", None).await;
        for nsp in ["/", "/chat"] {
            let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
            s.send(&format!(r#"42{prefix}["ask"]"#)).await;
            let q = s.recv_packet().await;
            assert_eq!((q.ty, q.nsp.as_str()), (2, nsp), "question event: {q:?}");
            assert_eq!(q.data, Some(json!(["question", "ping?"])));
            let id = q.id.expect("question expects an ack (has an id)");
            let x = json!({"pong": [nsp, 42]});
            s.send(&format!("43{prefix}{id}{}", json!([x]))).await;
            let a = s.recv_packet().await;
            assert_eq!(
                a,
                SioPacket { ty: 2, attachments: None, nsp: nsp.into(), id: None, data: Some(json!(["answer", x])) }
            );
        }
    })
    .await
}

#[tokio::test]
async fn boundary_inputs_are_accepted() {
    run(async {
        let server = Server::start();
        let mut s = connected(&server).await;
        // largest ack id socket.io-client can produce: 2^53 - 1
        s.send(r#"429007199254740991["echo","max id"]"#).await;
        let p = s.recv_packet().await;
        assert_eq!((p.ty, p.id, p.data), (3, Some(9_007_199_254_740_991), Some(json!(["max id"]))));

        // exactly 10 attachments (socket.io-parser's default maxAttachments)
        let phs: Vec<Value> = (0..10).map(placeholder).collect();
        let bins: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let refs: Vec<&[u8]> = bins.iter().map(Vec::as_slice).collect();
        let mut arr = vec![json!("echo")];
        arr.extend(phs);
        s.send_with_attachments(&format!("4510-3{}", Value::Array(arr)), &refs).await;
        let p = s.recv_full().await;
        assert_eq!((p.ty, p.attachments, p.id), (6, Some(10), Some(3)));
        assert_eq!(p.data, Some(Value::Array(bins.iter().map(|b| bin(b)).collect())));

        // JSON nested 100 levels deep (under the 128 limit, counting the args array)
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        s.send(&format!(r#"424["echo",{deep}]"#)).await;
        let p = s.recv_packet().await;
        let want: Value = serde_json::from_str(&format!("[{deep}]")).unwrap();
        assert_eq!((p.id, p.data), (Some(4), Some(want)));

        // a namespace name of 200 bytes is fine: just unknown
        let nsp = format!("/{}", "n".repeat(199));
        s.send(&format!("40{nsp},")).await;
        s.ws.expect_text(&format!(r#"44{nsp},{{"message":"Invalid namespace"}}"#)).await;
    })
    .await
}

// ---------------------------------------------------------------------------
// Bad inputs: each closes the connection; the server keeps serving others
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_invalid_engine_packet_type_closes() {
    run(async {
        let mut server = Server::start();
        for bad in ["abc", "9", "", "x42[\"echo\"]"] {
            let mut s = connected(&server).await;
            s.send(bad).await;
            expect_close_after(&mut server, &mut s, bad).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_invalid_socketio_packet_type_closes() {
    run(async {
        let mut server = Server::start();
        for bad in ["4abc", "47", "49[\"echo\"]", "4-"] {
            let mut s = connected(&server).await;
            s.send(bad).await;
            expect_close_after(&mut server, &mut s, bad).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_event_payload_not_an_array_closes() {
    run(async {
        let mut server = Server::start();
        // `42{}` from the issue; socket.io-parser also rejects a missing payload,
        // an empty array and a non-string/number event name.
        for bad in ["42{}", r#"42"echo""#, "42", "42[]", "42[{}]", "421{}", "42[\"echo\""] {
            let mut s = connected(&server).await;
            s.send(bad).await;
            expect_close_after(&mut server, &mut s, bad).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_invalid_ack_id_closes() {
    run(async {
        let mut server = Server::start();
        for bad in [r#"42abc["x"]"#, r#"431x["x"]"#] {
            let mut s = connected(&server).await;
            s.send(bad).await;
            expect_close_after(&mut server, &mut s, bad).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_event_before_connect_closes() {
    run(async {
        let mut server = Server::start();
        for bad in [r#"42["x"]"#, r#"421["echo","x"]"#, r#"431["x"]"#, r#"42/chat,["echo"]"#] {
            let mut s = SioWs::open(server.port).await;
            s.send(bad).await;
            expect_close_after(&mut server, &mut s, bad).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_duplicate_connect_closes() {
    run(async {
        let mut server = Server::start();
        let mut s = connected(&server).await;
        s.send("40").await;
        expect_close_after(&mut server, &mut s, "second 40").await;

        let mut s = SioWs::open(server.port).await;
        s.connect("/chat", None).await;
        s.send("40/chat,").await;
        expect_close_after(&mut server, &mut s, "second 40/chat,").await;
    })
    .await
}

#[tokio::test]
async fn bad_attachment_counts_close() {
    run(async {
        let mut server = Server::start();
        let cases = [
            // more than 10 attachments
            format!("4511-{}", json!(["echo", placeholder(0)])),
            // zero attachments
            format!("450-{}", json!(["echo", "x"])),
            format!("460-1{}", json!(["x"])),
            // absurd counts
            format!("4599999999999999999999-{}", json!(["echo", placeholder(0)])),
            format!("45-1-{}", json!(["echo", placeholder(0)])),
            format!("45a-{}", json!(["echo", placeholder(0)])),
            // no `-` at all
            format!("451{}", json!(["echo", placeholder(0)])),
        ];
        for bad in &cases {
            let mut s = connected(&server).await;
            s.send(bad).await;
            // Whatever the server waits for, a few attachments do not make it valid.
            s.ws.send_binary_lossy(b"\x01").await;
            expect_close_after(&mut server, &mut s, bad).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_placeholder_numbers_close() {
    run(async {
        let mut server = Server::start();
        let nums = [
            json!("splice"),
            json!(-1),
            json!(0.5),
            json!(1), // out of range with one attachment
            json!(1e300),
            json!("0"),
            json!(null),
            json!([0]),
        ];
        for num in &nums {
            let header = format!("451-{}", json!(["echo", {"_placeholder": true, "num": num}]));
            let mut s = connected(&server).await;
            s.send(&header).await;
            s.ws.send_binary_lossy(b"\x01\x02").await;
            expect_close_after(&mut server, &mut s, &header).await;
        }
        // a placeholder without num
        let header = format!("451-{}", json!(["echo", {"_placeholder": true}]));
        let mut s = connected(&server).await;
        s.send(&header).await;
        s.ws.send_binary_lossy(b"\x01").await;
        expect_close_after(&mut server, &mut s, &header).await;
    })
    .await
}

#[tokio::test]
async fn bad_text_packet_while_attachments_pending_closes() {
    run(async {
        let mut server = Server::start();
        let mut s = connected(&server).await;
        s.send(&format!("452-1{}", json!(["echo", placeholder(0), placeholder(1)]))).await;
        s.ws.send_binary(b"first").await;
        s.send(r#"42["echo","interleaved"]"#).await;
        expect_close_after(&mut server, &mut s, "text while binary pending").await;
    })
    .await
}

#[tokio::test]
async fn bad_binary_frame_before_connect_closes() {
    run(async {
        let mut server = Server::start();
        let mut s = SioWs::open(server.port).await;
        s.ws.send_binary(b"\x00\x01\x02").await;
        expect_close_after(&mut server, &mut s, "binary before CONNECT").await;

        // a complete binary event before CONNECT
        let mut s = SioWs::open(server.port).await;
        s.send(&format!("451-{}", json!(["echo", placeholder(0)]))).await;
        s.ws.send_binary_lossy(b"\x09").await;
        expect_close_after(&mut server, &mut s, "binary event before CONNECT").await;

        // a binary frame that no header announced, after CONNECT
        let mut s = connected(&server).await;
        s.ws.send_binary(b"\x05").await;
        expect_close_after(&mut server, &mut s, "unannounced binary frame").await;
    })
    .await
}

#[tokio::test]
async fn bad_ack_id_above_2_pow_53_closes() {
    run(async {
        let mut server = Server::start();
        for bad in [
            r#"429007199254740992["echo","x"]"#,
            r#"4218446744073709551616["echo","x"]"#,
            r#"4299999999999999999999999999999999["echo","x"]"#,
            r#"439007199254740992["x"]"#,
        ] {
            let mut s = connected(&server).await;
            s.send(bad).await;
            expect_close_after(&mut server, &mut s, bad).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_deeply_nested_json_closes() {
    run(async {
        let mut server = Server::start();
        // 200,000-deep arrays in an event
        let n = 200_000;
        let bad = format!(r#"42["echo",{}{}]"#, "[".repeat(n), "]".repeat(n));
        let mut s = connected(&server).await;
        s.send(&bad).await;
        expect_close_after(&mut server, &mut s, "200000-deep array").await;

        // 200,000-deep unterminated objects in an ack'ed event
        let bad = format!(r#"421["echo",{}"#, r#"{"a":"#.repeat(n / 2));
        let mut s = connected(&server).await;
        s.send(&bad).await;
        expect_close_after(&mut server, &mut s, "200000-deep objects").await;

        // just over the limit: 200 levels
        let bad = format!(r#"42["echo",{}{}]"#, "[".repeat(200), "]".repeat(200));
        let mut s = connected(&server).await;
        s.send(&bad).await;
        expect_close_after(&mut server, &mut s, "200-deep array").await;

        // in the CONNECT auth payload
        let bad = format!("40{}{}", r#"{"a":["#.repeat(50_000), "]}".repeat(50_000));
        let mut s = SioWs::open(server.port).await;
        s.send(&bad).await;
        expect_close_after(&mut server, &mut s, "deep CONNECT auth").await;

        // in a binary event header
        let bad = format!(r#"451-["echo",{},{}{}]"#, placeholder(0), "[".repeat(n), "]".repeat(n));
        let mut s = connected(&server).await;
        s.send(&bad).await;
        s.ws.send_binary_lossy(b"\x00").await;
        expect_close_after(&mut server, &mut s, "deep binary header").await;
    })
    .await
}

#[tokio::test]
async fn bad_namespace_name_over_256_bytes_closes() {
    run(async {
        let mut server = Server::start();
        let long = format!("/{}", "a".repeat(300));
        for bad in [format!("40{long},"), format!("40{long}"), format!(r#"40{long},{{"token":"x"}}"#)] {
            let mut s = SioWs::open(server.port).await;
            s.send(&bad).await;
            expect_close_after(&mut server, &mut s, "long namespace").await;
        }
        // an event to a long namespace after a valid CONNECT
        let mut s = connected(&server).await;
        s.send(&format!(r#"42{long},["echo"]"#)).await;
        expect_close_after(&mut server, &mut s, "event to a long namespace").await;
    })
    .await
}

#[tokio::test]
async fn bad_event_to_a_namespace_not_joined_closes() {
    run(async {
        let mut server = Server::start();
        let mut s = connected(&server).await;
        s.send(r#"42/chat,["echo","nope"]"#).await;
        expect_close_after(&mut server, &mut s, "event to /chat without CONNECT").await;
    })
    .await
}

#[tokio::test]
async fn bad_connect_payload_not_an_object_closes() {
    run(async {
        let mut server = Server::start();
        for bad in [r#"40"token""#, "40[1]", r#"40/chat,"x""#, "40{"] {
            let mut s = SioWs::open(server.port).await;
            s.send(bad).await;
            expect_close_after(&mut server, &mut s, bad).await;
        }
    })
    .await
}

#[tokio::test]
async fn bad_client_sent_connect_error_closes() {
    run(async {
        let mut server = Server::start();
        // socket.io closes on a CONNECT_ERROR from the client (invalid state)
        let mut s = connected(&server).await;
        s.send(r#"44{"message":"x"}"#).await;
        expect_close_after(&mut server, &mut s, "client CONNECT_ERROR").await;
    })
    .await
}
