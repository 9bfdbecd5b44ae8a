//! The host transport (`transport::host`): Engine.IO sessions carried by
//! somebody else's HTTP server, driven here through the host API only, no
//! socket and no HTTP server: requests in, answers out; WebSocket frames
//! pushed in and pulled out.

mod host_common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use host_common::{Answer, addr, error_code, send_within, text};
use serde_json::{Value, json};
use tidewire::engine::{CloseReason, Connection, Engine, EngineConfig, EngineHandler, RequestInfo, Session};
use tidewire::hub::{Event, Hub, Socket};
use tidewire::limits::{ConnectionLimits, Rate};
use tidewire::protocol::engine::{Encoded, Frame};
use tidewire::transport::host::{self, CloseFrame, Inbound, Outbound, RequestBody, WebSocket};

// --- a raw Engine.IO echo ----------------------------------------------------

struct Echo;
struct EchoConn(Session);

impl EngineHandler for Echo {
    fn on_open(&self, session: &Session, _: &RequestInfo) -> Box<dyn Connection> {
        Box::new(EchoConn(session.clone()))
    }
}

impl Connection for EchoConn {
    fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason> {
        let _ = self.0.send_frame(frame);
        Ok(())
    }
    fn on_close(&mut self, _: CloseReason) {}
}

fn echo(config: EngineConfig) -> Engine {
    Engine::new(config, Arc::new(Echo))
}

/// A hub whose `echo` event acks its arguments.
fn hub_engine() -> Engine {
    let hub = Hub::default();
    hub.of("/").on("echo", |_socket: Socket, event: Event| async move {
        if let Some(ack) = event.ack {
            let _ = ack.send(event.args);
        }
    });
    hub.engine(EngineConfig::default())
}

// --- requests ----------------------------------------------------------------

async fn send(engine: &Engine, req: http::Request<RequestBody>) -> Answer {
    send_within(Duration::from_secs(5), engine, req).await
}

async fn get(engine: &Engine, uri: &str) -> Answer {
    send(engine, http::Request::get(uri).body(RequestBody::empty()).unwrap()).await
}

async fn post(engine: &Engine, uri: &str, body: impl Into<RequestBody>) -> Answer {
    send(engine, http::Request::post(uri).body(body.into()).unwrap()).await
}

/// Opens a polling session; returns its handshake and its request URI.
async fn open_polling(engine: &Engine) -> (Value, String) {
    let res = get(engine, "/engine.io/?EIO=4&transport=polling").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=UTF-8");
    let body = text(&res);
    assert!(body.starts_with('0'), "{body}");
    let handshake: Value = serde_json::from_str(&body[1..]).unwrap();
    let uri = format!("/engine.io/?EIO=4&transport=polling&sid={}", handshake["sid"].as_str().unwrap());
    (handshake, uri)
}

fn spawn_get(engine: &Engine, uri: &str) -> tokio::task::JoinHandle<Answer> {
    let (engine, uri) = (engine.clone(), uri.to_owned());
    tokio::spawn(async move { get(&engine, &uri).await })
}

/// Lets a spawned request reach its wait.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

// --- WebSocket frames --------------------------------------------------------

fn ws_request(query: &str) -> http::Request<()> {
    http::Request::get(format!("/engine.io/?{query}")).header("upgrade", "websocket").body(()).unwrap()
}

fn accept(engine: &Engine, query: &str) -> host::WebSocketAccept {
    host::accept_websocket(engine, &ws_request(query), addr()).expect("accepted")
}

/// The answer to a WebSocket request the engine refuses.
fn refuse(engine: &Engine, query: &str) -> Answer {
    host::accept_websocket(engine, &ws_request(query), addr()).expect_err("refused")
}

async fn outgoing(ws: &WebSocket) -> Outbound {
    tokio::time::timeout(Duration::from_secs(5), ws.next_outgoing()).await.expect("an outgoing item in time")
}

/// The next batch of frames, as text.
async fn frames(ws: &WebSocket) -> Vec<String> {
    match outgoing(ws).await {
        Outbound::Frames(frames) => frames
            .into_iter()
            .map(|f| match f {
                Encoded::Text(t) => t.to_string(),
                Encoded::Binary(b) => format!("<binary {b:?}>"),
            })
            .collect(),
        other => panic!("expected frames, got {other:?}"),
    }
}

async fn text_in(ws: &WebSocket, text: &str) {
    ws.receive(Inbound::Text(Bytes::copy_from_slice(text.as_bytes())));
}

// --- long-polling ------------------------------------------------------------

#[tokio::test]
async fn polling_handshake_has_the_five_keys_and_offers_websocket() {
    let engine = echo(EngineConfig::default());
    let (handshake, _) = open_polling(&engine).await;
    let keys: Vec<&str> = handshake.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]);
    assert_eq!(handshake["upgrades"], json!(["websocket"]));
    assert_eq!(handshake["pingInterval"], 25000);
    assert_eq!(handshake["maxPayload"], 1_000_000);
    assert_eq!(engine.session_count(), 1);
}

#[tokio::test]
async fn post_and_get_round_trip_through_the_raw_echo() {
    let engine = echo(EngineConfig::default());
    let (_, uri) = open_polling(&engine).await;

    let res = post(&engine, &uri, "4hello\x1e4world\x1ebAQID").await;
    assert_eq!((res.status(), text(&res)), (http::StatusCode::OK, "ok"));
    assert_eq!(res.headers()["content-type"], "text/html");

    let res = get(&engine, &uri).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=UTF-8");
    assert_eq!(text(&res), "4hello\x1e4world\x1ebAQID");
}

#[tokio::test]
async fn a_pending_get_is_a_long_poll_answered_when_packets_come() {
    let engine = echo(EngineConfig::default());
    let (_, uri) = open_polling(&engine).await;
    let pending = spawn_get(&engine, &uri);
    settle().await;
    assert!(!pending.is_finished(), "the GET waits for packets");
    assert_eq!(text(&post(&engine, &uri, "4ping").await), "ok");
    assert_eq!(text(&pending.await.unwrap()), "4ping");
}

#[tokio::test]
async fn a_streamed_body_is_read_chunk_by_chunk() {
    let engine = echo(EngineConfig::default());
    let (_, uri) = open_polling(&engine).await;
    let chunks = futures_util::stream::iter(
        ["4he", "llo\x1e", "4there"].map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c.as_bytes()))),
    );
    assert_eq!(text(&post(&engine, &uri, RequestBody::from_stream(chunks)).await), "ok");
    assert_eq!(text(&get(&engine, &uri).await), "4hello\x1e4there");
}

#[tokio::test]
async fn a_body_that_breaks_off_is_a_bad_request_and_closes_the_session() {
    let engine = echo(EngineConfig::default());
    let (_, uri) = open_polling(&engine).await;
    let chunks = futures_util::stream::iter([Ok(Bytes::from_static(b"4he")), Err(std::io::Error::other("reset"))]);
    assert_eq!(error_code(&post(&engine, &uri, RequestBody::from_stream(chunks)).await), 3);
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn a_body_that_never_completes_is_cut_off() {
    let config =
        EngineConfig::default().ping_interval(Duration::from_millis(100)).ping_timeout(Duration::from_millis(100));
    let engine = echo(config);
    let (_, uri) = open_polling(&engine).await;
    let stalled = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
    assert_eq!(error_code(&post(&engine, &uri, RequestBody::from_stream(stalled)).await), 3);
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn socketio_connect_event_and_ack_through_the_hub() {
    let engine = hub_engine();
    let res = get(&engine, "/socket.io/?EIO=4&transport=polling").await;
    let sid = serde_json::from_str::<Value>(&text(&res)[1..]).unwrap()["sid"].as_str().unwrap().to_owned();
    let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");

    assert_eq!(text(&post(&engine, &uri, "40").await), "ok");
    let connect = get(&engine, &uri).await;
    let connect = text(&connect);
    assert!(connect.starts_with("40{\"sid\":"), "{connect}");

    assert_eq!(text(&post(&engine, &uri, r#"421["echo","back",{"n":1}]"#).await), "ok");
    assert_eq!(text(&get(&engine, &uri).await), r#"431["back",{"n":1}]"#);
}

// --- the error table ---------------------------------------------------------

#[tokio::test]
async fn every_error_of_the_table_is_answered_as_engine_io_does() {
    let engine = echo(EngineConfig::default());
    assert_eq!(error_code(&get(&engine, "/engine.io/?EIO=4&transport=carrier-pigeon").await), 0);
    assert_eq!(error_code(&get(&engine, "/engine.io/?EIO=4").await), 0);
    assert_eq!(error_code(&get(&engine, "/engine.io/?EIO=4&transport=polling&sid=nope").await), 1);
    assert_eq!(error_code(&post(&engine, "/engine.io/?EIO=4&transport=polling", "").await), 2);
    assert_eq!(error_code(&get(&engine, "/engine.io/?EIO=3&transport=polling").await), 5);
    assert_eq!(error_code(&get(&engine, "/engine.io/?transport=polling").await), 5);
    // A WebSocket handshake that is not an upgrade.
    assert_eq!(error_code(&get(&engine, "/engine.io/?EIO=4&transport=websocket").await), 3);
    assert_eq!(engine.session_count(), 0, "no error opened a session");

    let (handshake, uri) = open_polling(&engine).await;
    let sid = handshake["sid"].as_str().unwrap();
    // Transport mismatch: a polling session asked over `websocket`.
    let mismatch = format!("/engine.io/?EIO=4&transport=websocket&sid={sid}");
    assert_eq!(error_code(&get(&engine, &mismatch).await), 3);
    // A method other than GET and POST.
    let put = http::Request::put(&uri).body(RequestBody::empty()).unwrap();
    assert_eq!(error_code(&send(&engine, put).await), 3);
    // A binary polling body is not Engine.IO v4.
    let binary = http::Request::post(&uri)
        .header("content-type", "application/octet-stream")
        .body(RequestBody::from(&b"4hi"[..]))
        .unwrap();
    assert_eq!(error_code(&send(&engine, binary).await), 3);
    assert_eq!(engine.session_count(), 1, "those do not close the session");
    // A body that is not an Engine.IO payload closes it.
    assert_eq!(error_code(&post(&engine, &uri, "9nonsense").await), 3);
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn a_body_over_max_payload_gets_413_and_closes_the_session() {
    let engine = echo(EngineConfig::default().max_payload(100));
    let (_, uri) = open_polling(&engine).await;
    let res = post(&engine, &uri, vec![b'4'; 101]).await;
    assert_eq!(res.status(), 413);
    assert!(res.body().is_empty());
    assert_eq!(engine.session_count(), 0);

    // Declared too large by Content-Length, streamed: refused the same way.
    let (_, uri) = open_polling(&engine).await;
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"4a"))]);
    let req =
        http::Request::post(&uri).header("content-length", "5000").body(RequestBody::from_stream(chunks)).unwrap();
    assert_eq!(send(&engine, req).await.status(), 413);
    assert_eq!(engine.session_count(), 0);

    // Exactly max_payload passes.
    let (_, uri) = open_polling(&engine).await;
    assert_eq!(text(&post(&engine, &uri, vec![b'4'; 100]).await), "ok");
}

#[tokio::test]
async fn overlapping_gets_are_a_bad_request_and_close_the_session() {
    let engine = echo(EngineConfig::default());
    let (_, uri) = open_polling(&engine).await;
    let first = spawn_get(&engine, &uri);
    settle().await;
    assert_eq!(error_code(&get(&engine, &uri).await), 3);
    // The first GET learns of the close with a close packet.
    assert_eq!(text(&first.await.unwrap()), "1");
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn overlapping_posts_are_a_bad_request() {
    let engine = echo(EngineConfig::default());
    let (_, uri) = open_polling(&engine).await;
    let stalled = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
    let (e, u) = (engine.clone(), uri.clone());
    let first = tokio::spawn(async move { post(&e, &u, RequestBody::from_stream(stalled)).await });
    settle().await;
    assert_eq!(error_code(&post(&engine, &uri, "4x").await), 3);
    assert_eq!(error_code(&first.await.unwrap()), 3, "the stalled POST ends with its session");
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn a_client_close_answers_the_pending_get_with_a_noop() {
    let engine = echo(EngineConfig::default());
    let (_, uri) = open_polling(&engine).await;
    let pending = spawn_get(&engine, &uri);
    settle().await;
    assert_eq!(text(&post(&engine, &uri, "1").await), "ok");
    assert_eq!(text(&pending.await.unwrap()), "6");

    // The GET sent before the close but arriving after it: a noop too.
    let (_, uri) = open_polling(&engine).await;
    assert_eq!(text(&post(&engine, &uri, "1").await), "ok");
    let late = get(&engine, &uri).await;
    assert_eq!((late.status(), text(&late)), (http::StatusCode::OK, "6"));
    // Only once.
    assert_eq!(error_code(&get(&engine, &uri).await), 1);
}

/// socket.io closes a session that sends an EVENT before its CONNECT. As
/// engine.io: a GET waiting at that moment gets the close packet; a GET
/// that comes after gets a noop then the close (socket.io's own
/// `close.ts` "protocol violations" tests check these bodies).
#[tokio::test]
async fn a_server_close_over_polling_is_answered_as_engine_io_does() {
    let engine = hub_engine();
    let (_, uri) = open_polling(&engine).await;
    let waiting = spawn_get(&engine, &uri);
    settle().await;
    assert_eq!(text(&post(&engine, &uri, r#"42["early"]"#).await), "ok");
    assert_eq!(text(&waiting.await.unwrap()), "1");

    let (_, uri) = open_polling(&engine).await;
    assert_eq!(text(&post(&engine, &uri, r#"42["early"]"#).await), "ok");
    settle().await;
    assert_eq!(text(&get(&engine, &uri).await), "6\u{1e}1");

    // A second CONNECT: the first one's answer, then noop and close.
    let (_, uri) = open_polling(&engine).await;
    assert_eq!(text(&post(&engine, &uri, "40").await), "ok");
    assert_eq!(text(&post(&engine, &uri, "40").await), "ok");
    settle().await;
    assert!(text(&get(&engine, &uri).await).starts_with("40{"));
    assert_eq!(text(&get(&engine, &uri).await), "6\u{1e}1");
}
#[tokio::test]
async fn a_refused_handshake_gets_its_status_and_retry_after() {
    let limits = ConnectionLimits::none().per_ip(Some(1));
    let engine = echo(EngineConfig::default().connection_limits(Some(limits)));
    open_polling(&engine).await;
    let res = get(&engine, "/engine.io/?EIO=4&transport=polling").await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_slice(res.body()).unwrap();
    assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
    // Over WebSocket: the same answer instead of the 101.
    let refused = refuse(&engine, "EIO=4&transport=websocket");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.body(), res.body());
    assert_eq!(engine.stats().refused.load(std::sync::atomic::Ordering::Relaxed), 2);

    // A handshake rate says when to come back.
    let limits = ConnectionLimits::none().handshakes_per_ip(Some(Rate::per_second(1).burst(1)));
    let engine = echo(EngineConfig::default().connection_limits(Some(limits)));
    open_polling(&engine).await;
    let res = get(&engine, "/engine.io/?EIO=4&transport=polling").await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    let refused = refuse(&engine, "EIO=4&transport=websocket");
    assert_eq!((refused.status(), &refused.headers()["retry-after"]), (res.status(), &res.headers()["retry-after"]));
}

/// A request from a page at `origin`.
fn from_origin(method: http::Method, uri: &str, origin: &str) -> http::request::Builder {
    http::Request::builder().method(method).uri(uri).header("origin", origin)
}

#[tokio::test]
async fn cors_headers_and_preflight_as_on_the_listener() {
    let engine = echo(EngineConfig::default().cors_origin("https://app.example").cors_credentials(true));
    let open = "/engine.io/?EIO=4&transport=polling";
    let preflight = from_origin(http::Method::OPTIONS, open, "https://app.example")
        .header("access-control-request-headers", "content-type")
        .body(RequestBody::empty())
        .unwrap();
    let res = send(&engine, preflight).await;
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    assert_eq!(res.headers()["access-control-allow-methods"], "GET,HEAD,PUT,PATCH,POST,DELETE");
    assert_eq!(res.headers()["access-control-allow-headers"], "content-type");

    let res =
        send(&engine, from_origin(http::Method::GET, open, "https://app.example").body(RequestBody::empty()).unwrap())
            .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(res.headers()["vary"], "Origin");

    // Errors carry them too; other origins get none.
    let bad = "/engine.io/?EIO=3&transport=polling";
    let res =
        send(&engine, from_origin(http::Method::GET, bad, "https://app.example").body(RequestBody::empty()).unwrap())
            .await;
    assert_eq!(error_code(&res), 5);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example");
    let res =
        send(&engine, from_origin(http::Method::GET, bad, "https://evil.example").body(RequestBody::empty()).unwrap())
            .await;
    assert_eq!(error_code(&res), 5);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // And the refusals of WebSocket requests.
    let ws = from_origin(http::Method::GET, "/engine.io/?EIO=3&transport=websocket", "https://app.example")
        .body(())
        .unwrap();
    let res = host::accept_websocket(&engine, &ws, addr()).expect_err("refused");
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example");
}

// --- WebSocket ---------------------------------------------------------------

#[tokio::test]
async fn a_websocket_session_fed_frame_by_frame() {
    let engine = echo(EngineConfig::default());
    let accepted = accept(&engine, "EIO=4&transport=websocket");
    assert_eq!(accepted.sid(), None, "a new session");
    assert_eq!(engine.session_count(), 0, "opened only once the host's handshake is done");
    let ws = accepted.start();
    assert_eq!(engine.session_count(), 1);

    let open = frames(&ws).await;
    let handshake: Value = serde_json::from_str(&open[0][1..]).unwrap();
    assert_eq!(handshake["upgrades"], json!([]));
    assert_eq!(Some(handshake["sid"].as_str().unwrap()), ws.sid());

    text_in(&ws, "4hello").await;
    ws.receive(Inbound::Binary(Bytes::from_static(&[1, 2, 3])));
    assert_eq!(frames(&ws).await, ["4hello".to_owned(), "<binary b\"\\x01\\x02\\x03\">".to_owned()]);

    // The client closes.
    ws.receive(Inbound::Close);
    assert_eq!(outgoing(&ws).await, Outbound::Close(None));
    assert_eq!(outgoing(&ws).await, Outbound::Close(None), "and stays closed");
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn socketio_over_a_host_websocket() {
    let engine = hub_engine();
    let ws = host::accept_websocket(&engine, &ws_request("EIO=4&transport=websocket"), addr()).unwrap().start();
    assert!(frames(&ws).await[0].starts_with("0{"));
    text_in(&ws, "40").await;
    assert!(frames(&ws).await[0].starts_with("40{\"sid\":"));
    text_in(&ws, r#"427["echo",1,"two"]"#).await;
    assert_eq!(frames(&ws).await, [r#"437[1,"two"]"#]);
}

#[tokio::test]
async fn a_server_close_delivers_the_queue_then_closes() {
    let engine = echo(EngineConfig::default());
    let ws = accept(&engine, "EIO=4&transport=websocket").start();
    frames(&ws).await;
    let session = engine.session(ws.sid().unwrap()).unwrap();
    session.send([Encoded::message("bye")]).unwrap();
    session.close_after_flush(CloseReason::ForcedClose);
    assert_eq!(frames(&ws).await, ["4bye"]);
    assert_eq!(outgoing(&ws).await, Outbound::Close(None));
    assert!(session.is_closed());
}

#[tokio::test]
async fn a_websocket_error_or_a_dropped_websocket_closes_the_session() {
    let engine = echo(EngineConfig::default());
    let ws = accept(&engine, "EIO=4&transport=websocket").start();
    let session = engine.session(ws.sid().unwrap()).unwrap();
    ws.receive(Inbound::Error);
    assert_eq!(session.close_reason(), Some(CloseReason::TransportError));

    let ws = accept(&engine, "EIO=4&transport=websocket").start();
    let session = engine.session(ws.sid().unwrap()).unwrap();
    drop(ws);
    assert_eq!(session.close_reason(), Some(CloseReason::TransportClose));
}

#[tokio::test]
async fn a_message_over_max_payload_closes_with_1009() {
    let engine = echo(EngineConfig::default().max_payload(10));
    let ws = accept(&engine, "EIO=4&transport=websocket").start();
    frames(&ws).await;
    text_in(&ws, "4short").await;
    assert_eq!(frames(&ws).await, ["4short"]);
    ws.receive(Inbound::Binary(Bytes::from(vec![0; 11])));
    match outgoing(&ws).await {
        Outbound::Close(Some(CloseFrame { code, .. })) => assert_eq!(code, 1009),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn invalid_utf8_or_a_bad_packet_closes_as_a_parse_error() {
    let engine = echo(EngineConfig::default());
    let ws = accept(&engine, "EIO=4&transport=websocket").start();
    let session = engine.session(ws.sid().unwrap()).unwrap();
    ws.receive(Inbound::Text(Bytes::from_static(&[b'4', 0xff, 0xfe])));
    assert_eq!(session.close_reason(), Some(CloseReason::ParseError));
    assert_eq!(frames(&ws).await.len(), 1, "the OPEN packet still goes out");
    assert_eq!(outgoing(&ws).await, Outbound::Close(None));
}

#[tokio::test]
async fn a_slow_host_is_a_slow_consumer() {
    let config = EngineConfig::default().max_buffered_packets(4);
    let engine = echo(config);
    let ws = accept(&engine, "EIO=4&transport=websocket").start();
    frames(&ws).await;
    let session = engine.session(ws.sid().unwrap()).unwrap();
    // The host reads messages but never writes: the queue overflows.
    for i in 0..10 {
        text_in(&ws, &format!("4m{i}")).await;
    }
    assert_eq!(session.close_reason(), Some(CloseReason::SlowConsumer));
    // What fitted is still handed over before the close.
    assert_eq!(frames(&ws).await, ["4m0", "4m1", "4m2", "4m3"]);
    assert_eq!(outgoing(&ws).await, Outbound::Close(None));
}

#[tokio::test]
async fn upgrade_of_a_polling_session_with_the_probe_dance() {
    let engine = echo(EngineConfig::default());
    let (handshake, uri) = open_polling(&engine).await;
    let sid = handshake["sid"].as_str().unwrap();
    let pending = spawn_get(&engine, &uri);
    settle().await;

    let accepted = accept(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    assert_eq!(accepted.sid(), Some(sid));
    let ws = accepted.start();
    text_in(&ws, "2probe").await;
    assert_eq!(frames(&ws).await, ["3probe"]);
    // The pending GET is released with a noop.
    assert_eq!(text(&pending.await.unwrap()), "6");
    // A second WebSocket while upgrading is accepted and closed at once.
    let second = accept(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    assert_eq!(second.sid(), None);
    assert_eq!(outgoing(&second.start()).await, Outbound::Close(None));

    text_in(&ws, "5").await;
    // From now on the session's traffic is on the WebSocket only.
    text_in(&ws, "4over ws").await;
    assert_eq!(frames(&ws).await, ["4over ws"]);
    assert_eq!(error_code(&get(&engine, &uri).await), 3, "polling is over");
    let again = accept(&engine, &format!("EIO=4&transport=websocket&sid={sid}"));
    assert_eq!(outgoing(&again.start()).await, Outbound::Close(None));

    ws.receive(Inbound::Close);
    assert_eq!(outgoing(&ws).await, Outbound::Close(None));
    assert_eq!(engine.session_count(), 0);
}

#[tokio::test]
async fn a_failed_probe_leaves_the_session_on_polling() {
    let engine = echo(EngineConfig::default());
    let (handshake, uri) = open_polling(&engine).await;
    let sid = handshake["sid"].as_str().unwrap();
    let ws = accept(&engine, &format!("EIO=4&transport=websocket&sid={sid}")).start();
    text_in(&ws, "2probe").await;
    assert_eq!(frames(&ws).await, ["3probe"]);
    text_in(&ws, "4not five").await;
    assert_eq!(outgoing(&ws).await, Outbound::Close(None));
    assert_eq!(text(&post(&engine, &uri, "4still polling").await), "ok");
    assert_eq!(text(&get(&engine, &uri).await), "4still polling");
}

#[tokio::test]
async fn an_upgrade_that_does_not_finish_in_time_is_abandoned() {
    let engine = echo(EngineConfig::default().upgrade_timeout(Duration::from_millis(100)));
    let (handshake, uri) = open_polling(&engine).await;
    let sid = handshake["sid"].as_str().unwrap();
    let ws = accept(&engine, &format!("EIO=4&transport=websocket&sid={sid}")).start();
    text_in(&ws, "2probe").await;
    assert_eq!(frames(&ws).await, ["3probe"]);
    assert_eq!(outgoing(&ws).await, Outbound::Close(None), "closed at the deadline");
    // The session goes on polling, and may try again.
    assert_eq!(text(&post(&engine, &uri, "4hi").await), "ok");
    assert_eq!(text(&get(&engine, &uri).await), "4hi");
    assert!(accept(&engine, &format!("EIO=4&transport=websocket&sid={sid}")).sid().is_some());
}

#[tokio::test]
async fn websocket_requests_are_checked_as_on_the_listener() {
    let engine = echo(EngineConfig::default());
    assert_eq!(error_code(&refuse(&engine, "EIO=3&transport=websocket")), 5);
    assert_eq!(error_code(&refuse(&engine, "EIO=4&transport=websocket&sid=nope")), 1);
    assert_eq!(error_code(&refuse(&engine, "EIO=4&transport=flying")), 0);
    assert_eq!(error_code(&refuse(&engine, "EIO=4&transport=polling")), 3);
    let (handshake, _) = open_polling(&engine).await;
    let sid = handshake["sid"].as_str().unwrap();
    // The upgrade's EIO must be the session's.
    assert_eq!(error_code(&refuse(&engine, &format!("EIO=3&transport=websocket&sid={sid}"))), 3);
    // A WebSocket request at the polling entry point.
    let upgrade = http::Request::get("/engine.io/?EIO=4&transport=websocket")
        .header("upgrade", "websocket")
        .body(RequestBody::empty())
        .unwrap();
    assert_eq!(error_code(&send(&engine, upgrade).await), 3);
    assert_eq!(engine.session_count(), 1);

    let no_websocket = echo(EngineConfig::default().transports(true, false));
    assert_eq!(error_code(&refuse(&no_websocket, "EIO=4&transport=websocket")), 0);
}

#[tokio::test]
async fn without_upgrades_polling_stays_polling_and_websocket_sessions_still_open() {
    let engine = echo(EngineConfig::default().allow_upgrades(false));
    let (handshake, _) = open_polling(&engine).await;
    assert_eq!(handshake["upgrades"], json!([]), "no upgrade offered");
    let sid = handshake["sid"].as_str().unwrap();
    assert_eq!(error_code(&refuse(&engine, &format!("EIO=4&transport=websocket&sid={sid}"))), 3);
    assert!(accept(&engine, "EIO=4&transport=websocket").sid().is_none(), "a new WebSocket session is fine");
}
