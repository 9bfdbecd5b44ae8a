//! The classic codec against the real adapter: goldens it published, round trips, tolerance, robustness.

use bytes::Bytes;

use super::*;
use crate::cluster::wire::channels::DEFAULT_PREFIX;
use crate::cluster::wire::tests::{GOLDEN_SPECIAL, hex, map, to_hex};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// Goldens: published by the real @socket.io/redis-adapter 8.3.0 (socket.io 4.8.4, notepack.io 3.0.1) driven
// with fake Redis clients and uid2 stubbed to "uidAAA" (first adapter), "req002", "req003", ... Each comment is
// the call that produced it. tests/fixtures/classic/generate-goldens.js regenerates them.

/// `io.to("room1").except("sid9").compress(false).emit("hello", "world", Buffer.from([1, 2, 3]),
/// { a: 1.5, n: -200, big: 2 ** 40, f: 0.1, u: undefined, z: null, t: true })` on channel `socket.io#/#room1#`.
const GOLDEN_BROADCAST_ROOM: &str = "93a675696441414183a47479706502a46461746194a568656c6c6fa5776f726c64c403010203\
    86a161cb3ff8000000000000a16ed1ff38a3626967cf0000010000000000a166cb3fb999999999999aa17ac0a174c3a36e7370a12f83a5\
    726f6f6d7391a5726f6f6d31a665786365707491a473696439a5666c61677381a8636f6d7072657373c2";

/// `io.of("/chat").to(["a", "b"]).volatile.emit("multi")` (adapter uid "req002") on `socket.io#/chat#`.
const GOLDEN_BROADCAST_MULTI: &str = "93a672657130303283a47479706502a46461746191a56d756c7469a36e7370a52f63686174\
    83a5726f6f6d7392a161a162a665786365707490a5666c61677381a8766f6c6174696c65c3";

/// `io.emit("plain", 1)` on `socket.io#/#`.
const GOLDEN_BROADCAST_ALL: &str = "93a675696441414183a47479706502a46461746192a5706c61696e01a36e7370a12f83a5726f\
    6f6d7390a665786365707490a5666c61677380";

/// `io.timeout(5000).emit("ask", Buffer.from("hi"), () => {})` on `socket.io-request#/#` (BROADCAST request).
const GOLDEN_BROADCAST_REQUEST: &str = "85a3756964a6756964414141a9726571756573744964a6726571303033a47479706507a6\
    7061636b657483a47479706502a46461746192a361736bc4026869a36e7370a12fa46f70747383a5726f6f6d7390a665786365707490\
    a5666c61677381a774696d656f7574cd1388";

/// `notepack.encode({ type: 9, requestId: "rq0003", packet: { ok: Buffer.from([7]) } })` (the adapter's
/// BROADCAST_ACK answer expression).
const GOLDEN_BROADCAST_ACK: &str = "83a47479706509a9726571756573744964a6727130303033a67061636b657481a26f6bc40107";

/// Same with `packet: undefined` (key omitted).
const GOLDEN_BROADCAST_ACK_UNDEFINED: &str = "82a47479706509a9726571756573744964a6727130303033";

#[test]
fn the_uid_is_read_without_decoding_the_rest() {
    let message = golden_room();
    assert_eq!(ClassicBroadcast::peek_uid(&message.encode()), Some(message.uid.as_str()));
    assert_eq!(ClassicBroadcast::peek_uid(b""), None);
    assert_eq!(ClassicBroadcast::peek_uid(&Data::from("not an array").to_msgpack()), None);
    assert_eq!(
        ClassicBroadcast::peek_uid(&Data::Array(vec![Data::from(1i64), Data::Null, Data::Null]).to_msgpack()),
        None
    );
}

fn golden_room() -> ClassicBroadcast {
    ClassicBroadcast {
        uid: "uidAAA".into(),
        packet: Packet::event(
            "/",
            vec![
                "hello".into(),
                "world".into(),
                Data::Bin(Bytes::from_static(&[1, 2, 3])),
                map(vec![
                    ("a", Data::Float(1.5)),
                    ("n", Data::from(-200i64)),
                    ("big", Data::from(1u64 << 40)),
                    ("f", Data::Float(0.1)),
                    ("z", Data::Null),
                    ("t", Data::Bool(true)),
                ]),
            ],
        ),
        opts: BroadcastOpts {
            rooms: strings(&["room1"]),
            except: strings(&["sid9"]),
            flags: Flags { compress: Some(false), ..Flags::default() },
        },
    }
}

fn golden_multi() -> ClassicBroadcast {
    ClassicBroadcast {
        uid: "req002".into(),
        packet: Packet::event("/chat", vec!["multi".into()]),
        opts: BroadcastOpts {
            rooms: strings(&["a", "b"]),
            except: vec![],
            flags: Flags { volatile: Some(true), ..Flags::default() },
        },
    }
}

fn golden_all() -> ClassicBroadcast {
    ClassicBroadcast {
        uid: "uidAAA".into(),
        packet: Packet::event("/", vec!["plain".into(), Data::from(1u64)]),
        opts: BroadcastOpts::default(),
    }
}

#[test]
fn broadcasts_match_notepack_goldens() {
    for (value, golden, channel) in [
        (golden_room(), GOLDEN_BROADCAST_ROOM, "socket.io#/#room1#"),
        (golden_multi(), GOLDEN_BROADCAST_MULTI, "socket.io#/chat#"),
        (golden_all(), GOLDEN_BROADCAST_ALL, "socket.io#/#"),
    ] {
        let golden = hex(golden);
        assert_eq!(to_hex(&value.encode()), to_hex(&golden));
        assert_eq!(ClassicBroadcast::decode(&golden).expect("decode"), value);
        assert_eq!(value.channel(DEFAULT_PREFIX), channel);
    }
}

#[test]
fn broadcast_request_matches_golden() {
    let request = Request::Broadcast {
        uid: "uidAAA".into(),
        request_id: "req003".into(),
        packet: Packet::event("/", vec!["ask".into(), Data::Bin(Bytes::from_static(b"hi"))]),
        opts: BroadcastOpts { flags: Flags { timeout: Some(5000), ..Flags::default() }, ..BroadcastOpts::default() },
    };
    let golden = hex(GOLDEN_BROADCAST_REQUEST);
    assert_eq!(to_hex(&request.encode()), to_hex(&golden));
    assert_eq!(Request::decode(&golden).expect("decode"), request);
    assert_eq!(request.request_id(), Some("req003"));
    assert_eq!(request.uid(), Some("uidAAA"));
}

#[test]
fn broadcast_ack_responses_match_goldens() {
    let ack = Response::BroadcastAck {
        request_id: "rq0003".into(),
        packet: Some(map(vec![("ok", Data::Bin(Bytes::from_static(&[7])))])),
    };
    assert_eq!(to_hex(&ack.encode()), GOLDEN_BROADCAST_ACK);
    let raw = RawResponse::decode(&hex(GOLDEN_BROADCAST_ACK)).expect("decode");
    assert_eq!((raw.request_id(), raw.response_type()), (Some("rq0003"), Some(9)));
    assert_eq!(raw.interpret(RequestType::Broadcast).expect("interpret"), ack);

    let none = Response::BroadcastAck { request_id: "rq0003".into(), packet: None };
    assert_eq!(to_hex(&none.encode()), GOLDEN_BROADCAST_ACK_UNDEFINED);
    let raw = RawResponse::decode(&hex(GOLDEN_BROADCAST_ACK_UNDEFINED)).expect("decode");
    assert_eq!(raw.interpret(RequestType::Broadcast).expect("interpret"), none);
}

/// JSON requests exactly as the adapter's `JSON.stringify` printed them (adapter uid "uidAAA").
#[test]
fn json_requests_match_goldens() {
    let cases: Vec<(&str, Request)> = vec![
        // io.serverSideEmit("sse", 1, "x", { k: [true] })
        (
            r#"{"uid":"uidAAA","type":6,"data":["sse",1,"x",{"k":[true]}]}"#,
            Request::ServerSideEmit {
                uid: "uidAAA".into(),
                request_id: None,
                data: vec!["sse".into(), Data::from(1u64), "x".into(), map(vec![("k", vec![true.into()].into())])],
            },
        ),
        // io.serverSideEmit("sse2", 2, () => {})
        (
            r#"{"uid":"uidAAA","requestId":"req004","type":6,"data":["sse2",2]}"#,
            Request::ServerSideEmit {
                uid: "uidAAA".into(),
                request_id: Some("req004".into()),
                data: vec!["sse2".into(), Data::from(2u64)],
            },
        ),
        // io.fetchSockets()
        (
            r#"{"uid":"uidAAA","requestId":"req005","type":5,"opts":{"rooms":[],"except":[]}}"#,
            Request::RemoteFetch { uid: "uidAAA".into(), request_id: "req005".into(), opts: RoomOpts::default() },
        ),
        // io.in("r1").except("r2").socketsJoin(["j1", "j2"])
        (
            r#"{"uid":"uidAAA","type":2,"opts":{"rooms":["r1"],"except":["r2"]},"rooms":["j1","j2"]}"#,
            Request::RemoteJoin {
                uid: "uidAAA".into(),
                opts: RoomOpts { rooms: strings(&["r1"]), except: strings(&["r2"]) },
                rooms: strings(&["j1", "j2"]),
            },
        ),
        // io.in("r1").socketsLeave("l1")
        (
            r#"{"uid":"uidAAA","type":3,"opts":{"rooms":["r1"],"except":[]},"rooms":["l1"]}"#,
            Request::RemoteLeave {
                uid: "uidAAA".into(),
                opts: RoomOpts { rooms: strings(&["r1"]), except: vec![] },
                rooms: strings(&["l1"]),
            },
        ),
        // io.in("r3").disconnectSockets(true)
        (
            r#"{"uid":"uidAAA","type":4,"opts":{"rooms":["r3"],"except":[]},"close":true}"#,
            Request::RemoteDisconnect {
                uid: "uidAAA".into(),
                opts: RoomOpts { rooms: strings(&["r3"]), except: vec![] },
                close: true,
            },
        ),
        // io.of("/").adapter.allRooms()
        (
            r#"{"uid":"uidAAA","requestId":"req006","type":1}"#,
            Request::AllRooms { uid: "uidAAA".into(), request_id: "req006".into() },
        ),
    ];
    for (json, request) in cases {
        assert_eq!(String::from_utf8(request.encode()).expect("utf8"), json);
        assert_eq!(Request::decode(json.as_bytes()).expect(json), request);
    }
}

/// JSON responses exactly as the adapter printed them when fed requests from a peer (`onrequest`), and the
/// REMOTE_FETCH expression applied to a handshake as socket.io builds it.
#[test]
fn json_responses_match_goldens() {
    let handshake = Handshake {
        headers: map(vec![("host", "localhost:3000".into()), ("user-agent", "node".into())]),
        time: "Thu Jan 02 2025 03:04:05 GMT+0000 (Coordinated Universal Time)".into(),
        address: Some("::1".into()),
        xdomain: false,
        secure: false,
        issued: 1_735_787_045_678,
        url: Some("/socket.io/?EIO=4&transport=websocket".into()),
        query: map(vec![("EIO", "4".into()), ("transport", "websocket".into())]),
        auth: map(vec![("token", "t".into())]),
        extra: vec![],
    };
    let cases: Vec<(&str, RequestType, Response)> = vec![
        (
            r#"{"requestId":"rq0001","rooms":["s1","roomX"]}"#,
            RequestType::AllRooms,
            Response::AllRooms { request_id: "rq0001".into(), rooms: strings(&["s1", "roomX"]) },
        ),
        (
            r#"{"requestId":"rq0002","sockets":[]}"#,
            RequestType::Sockets,
            Response::Sockets { request_id: "rq0002".into(), sockets: vec![] },
        ),
        (
            r#"{"type":8,"requestId":"rq0003","clientCount":0}"#,
            RequestType::Broadcast,
            Response::BroadcastClientCount { request_id: "rq0003".into(), client_count: 0 },
        ),
        (
            concat!(
                r#"{"requestId":"rq0005","sockets":[{"id":"s1","#,
                r#""handshake":{"headers":{"host":"localhost:3000","user-agent":"node"},"#,
                r#""time":"Thu Jan 02 2025 03:04:05 GMT+0000 (Coordinated Universal Time)","#,
                r#""address":"::1","xdomain":false,"secure":false,"issued":1735787045678,"#,
                r#""url":"/socket.io/?EIO=4&transport=websocket","#,
                r#""query":{"EIO":"4","transport":"websocket"},"auth":{"token":"t"}},"#,
                r#""rooms":["s1","roomX"],"data":{"user":"u1","n":2.5}}]}"#,
            ),
            RequestType::RemoteFetch,
            Response::Fetch {
                request_id: "rq0005".into(),
                sockets: vec![FetchedSocket {
                    id: "s1".into(),
                    handshake,
                    rooms: strings(&["s1", "roomX"]),
                    data: Some(map(vec![("user", "u1".into()), ("n", Data::Float(2.5))])),
                }],
            },
        ),
        (r#"{"requestId":"rq0009"}"#, RequestType::RemoteJoin, Response::Done { request_id: "rq0009".into() }),
    ];
    for (json, asked, response) in cases {
        assert_eq!(String::from_utf8(response.encode()).expect("utf8"), json);
        let raw = RawResponse::decode(json.as_bytes()).expect(json);
        assert_eq!(raw.interpret(asked).expect(json), response);
    }

    // The server-side-emit answer to `cb({ ok: Buffer.from([9]) })`: JSON.stringify turns the Buffer into an
    // object, and so does Tidewire's encoder.
    let golden = r#"{"type":6,"requestId":"rq0004","data":{"ok":{"type":"Buffer","data":[9]}}}"#;
    let sent = Response::ServerSideEmit {
        request_id: "rq0004".into(),
        data: Some(map(vec![("ok", Data::Bin(Bytes::from_static(&[9])))])),
    };
    assert_eq!(String::from_utf8(sent.encode()).expect("utf8"), golden);
    let received = RawResponse::decode(golden.as_bytes()).expect("decode").interpret(RequestType::ServerSideEmit);
    let expected = map(vec![("ok", map(vec![("type", "Buffer".into()), ("data", vec![Data::from(9u64)].into())]))]);
    assert_eq!(
        received.expect("interpret"),
        Response::ServerSideEmit { request_id: "rq0004".into(), data: Some(expected) }
    );
    let undefined = Response::ServerSideEmit { request_id: "r".into(), data: None };
    assert_eq!(undefined.encode(), br#"{"type":6,"requestId":"r"}"#);
}

#[test]
fn every_request_round_trips() {
    let opts = RoomOpts { rooms: strings(&["a#b", "c"]), except: strings(&["sid"]) };
    let requests = vec![
        Request::Sockets { uid: None, request_id: "r0".into(), rooms: strings(&["x"]) },
        Request::Sockets { uid: Some("u".into()), request_id: "r0".into(), rooms: vec![] },
        Request::AllRooms { uid: "u".into(), request_id: "r1".into() },
        Request::RemoteJoin { uid: "u".into(), opts: opts.clone(), rooms: strings(&["j"]) },
        Request::RemoteLeave { uid: "u".into(), opts: opts.clone(), rooms: strings(&["l"]) },
        Request::RemoteDisconnect { uid: "u".into(), opts: opts.clone(), close: false },
        Request::LegacyRemoteJoin { uid: None, request_id: "r2".into(), sid: "s".into(), room: "x".into() },
        Request::LegacyRemoteLeave {
            uid: Some("u".into()),
            request_id: "r3".into(),
            sid: "s".into(),
            room: "y".into(),
        },
        Request::LegacyRemoteDisconnect { uid: None, request_id: "r4".into(), sid: "s".into(), close: true },
        Request::RemoteFetch { uid: "u".into(), request_id: "r5".into(), opts: opts.clone() },
        Request::ServerSideEmit {
            uid: "u".into(),
            request_id: Some("r6".into()),
            data: vec!["e".into(), Data::Float(0.25), Data::from(-3i64), Data::Null, map(vec![])],
        },
        Request::Broadcast {
            uid: "u".into(),
            request_id: "r7".into(),
            packet: Packet { kind: 2, nsp: "/n".into(), data: vec!["e".into()], id: Some(7) },
            opts: BroadcastOpts {
                rooms: opts.rooms.clone(),
                except: opts.except.clone(),
                flags: Flags {
                    volatile: Some(true),
                    compress: Some(true),
                    local: Some(false),
                    broadcast: Some(true),
                    binary: Some(false),
                    timeout: Some(1234),
                    expect_single_response: Some(true),
                },
            },
        },
    ];
    for request in requests {
        let bytes = request.encode();
        assert_eq!(bytes[0] == b'{', !matches!(request, Request::Broadcast { .. }));
        assert_eq!(Request::decode(&bytes).expect("decode"), request);
    }
    // Legacy forms as pre-8 nodes printed them (no uid).
    let legacy = br#"{"requestId":"abc","type":2,"sid":"s1","room":"r"}"#;
    assert_eq!(
        Request::decode(legacy).expect("decode"),
        Request::LegacyRemoteJoin { uid: None, request_id: "abc".into(), sid: "s1".into(), room: "r".into() }
    );
    assert_eq!(
        Request::LegacyRemoteJoin { uid: None, request_id: "abc".into(), sid: "s1".into(), room: "r".into() }.encode(),
        legacy
    );
}

#[test]
fn every_response_round_trips() {
    let responses = vec![
        (RequestType::Sockets, Response::Sockets { request_id: "a".into(), sockets: strings(&["s1", "s2"]) }),
        (RequestType::AllRooms, Response::AllRooms { request_id: "b".into(), rooms: strings(&["r"]) }),
        (
            RequestType::RemoteFetch,
            Response::Fetch {
                request_id: "c".into(),
                sockets: vec![FetchedSocket {
                    id: "s".into(),
                    handshake: Handshake { extra: vec![("custom".into(), Data::from(5u64))], ..Handshake::default() },
                    rooms: strings(&["s"]),
                    data: None,
                }],
            },
        ),
        (RequestType::RemoteLeave, Response::Done { request_id: "d".into() }),
        (RequestType::ServerSideEmit, Response::ServerSideEmit { request_id: "e".into(), data: Some(Data::Null) }),
        (RequestType::Broadcast, Response::BroadcastClientCount { request_id: "f".into(), client_count: 3 }),
        (
            RequestType::Broadcast,
            Response::BroadcastAck { request_id: "g".into(), packet: Some(Data::Date(1_735_787_045_678)) },
        ),
    ];
    for (asked, response) in responses {
        let raw = RawResponse::decode(&response.encode()).expect("decode");
        assert_eq!(raw.request_id(), Some(response.request_id()));
        assert_eq!(raw.interpret(asked).expect("interpret"), response);
    }
    let count = RawResponse::decode(br#"{"type":8,"requestId":"f","clientCount":3}"#).expect("decode");
    assert!(matches!(count.interpret(RequestType::AllRooms), Err(DecodeError::MissingField("rooms"))));
    let other = RawResponse::decode(br#"{"requestId":"f"}"#).expect("decode");
    assert!(matches!(other.interpret(RequestType::Broadcast), Err(DecodeError::UnexpectedResponse { .. })));
}

#[test]
fn response_channels() {
    let done = Response::Done { request_id: "r".into() };
    assert_eq!(done.channel("socket.io", "/", "abc", false), "socket.io-response#/#");
    assert_eq!(done.channel("socket.io", "/", "abc", true), "socket.io-response#/#abc#");
    let sse = Response::ServerSideEmit { request_id: "r".into(), data: None };
    assert_eq!(sse.channel("socket.io", "/", "abc", true), "socket.io-response#/#");
}

#[test]
fn channel_of_a_broadcast() {
    let mut b = golden_all();
    assert_eq!(b.channel("p"), "p#/#");
    b.opts.rooms = strings(&["r", "r"]);
    assert_eq!(b.channel("p"), "p#/#r#", "a set of one room");
    b.opts.rooms = strings(&["r", "s"]);
    assert_eq!(b.channel("p"), "p#/#");
}

#[test]
fn decoding_is_tolerant_of_node_variations() {
    // Reordered keys, extra keys and elements, no nsp, no rooms / except / flags, ints of other widths.
    let msg = Data::Array(vec![
        "peer".into(),
        map(vec![
            ("extra", "x".into()),
            ("data", vec!["e".into()].into()),
            ("id", Data::Float(12.0)),
            ("type", Data::UInt(2)),
        ]),
        map(vec![("flags", map(vec![("timeout", Data::Float(99.7)), ("other", Data::Bool(true))]))]),
        "more".into(),
    ])
    .to_msgpack();
    let decoded = ClassicBroadcast::decode(&msg).expect("decode");
    assert_eq!(decoded.packet, Packet { kind: 2, nsp: "/".into(), data: vec!["e".into()], id: Some(12) });
    assert_eq!(decoded.opts.rooms, Vec::<String>::new());
    assert_eq!(decoded.opts.flags, Flags { timeout: Some(99), ..Flags::default() });
    // Numeric rooms, as Node holds them after `io.to(42)`.
    let msg = Data::Array(vec![
        "peer".into(),
        map(vec![("type", Data::UInt(2)), ("data", vec![].into()), ("nsp", "/".into())]),
        map(vec![("rooms", vec![Data::UInt(42), Data::Float(1.5), Data::Int(-1)].into()), ("except", Data::Null)]),
    ])
    .to_msgpack();
    assert_eq!(ClassicBroadcast::decode(&msg).expect("decode").opts.rooms, strings(&["42", "1.5", "-1"]));
    // Broken shapes are errors, not panics.
    for bad in [
        Data::Array(vec!["u".into(), map(vec![])]),
        Data::Array(vec![Data::UInt(1), map(vec![]), map(vec![])]),
        Data::Array(vec!["u".into(), map(vec![("type", Data::UInt(2))]), map(vec![])]),
        Data::Array(vec!["u".into(), map(vec![("type", Data::UInt(999)), ("data", vec![].into())]), map(vec![])]),
        Data::Array(vec!["u".into(), map(vec![("type", Data::UInt(2)), ("data", "x".into())]), map(vec![])]),
        map(vec![]),
    ] {
        assert!(ClassicBroadcast::decode(&bad.to_msgpack()).is_err(), "{bad:?}");
    }
    assert!(matches!(Request::decode(br#"{"type":8,"requestId":"x"}"#), Err(DecodeError::UnknownRequestType(8))));
    assert!(matches!(Request::decode(br#"{"type":42}"#), Err(DecodeError::UnknownRequestType(42))));
    assert!(matches!(Request::decode(br#"{"uid":"x"}"#), Err(DecodeError::MissingField("type"))));
    assert!(matches!(Request::decode(b""), Err(DecodeError::Empty)));
    assert!(matches!(Request::decode(b"{"), Err(DecodeError::Json(_))));
    // Malformed msgpack fails with notepack's error.
    assert!(matches!(
        ClassicBroadcast::decode(&[0x93, 0xa1]),
        Err(DecodeError::Notepack(notepack::DecodeError::Truncated))
    ));
}

#[test]
fn json_nesting_is_capped() {
    let deep_json = format!("{{\"type\":6,\"uid\":\"u\",\"data\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(Request::decode(deep_json.as_bytes()), Err(DecodeError::Json(_))));
}

/// A small deterministic generator (xorshift), so the fuzz-style tests need no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_truncated_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let goldens: Vec<Vec<u8>> = [
        GOLDEN_BROADCAST_ROOM,
        GOLDEN_BROADCAST_MULTI,
        GOLDEN_BROADCAST_ALL,
        GOLDEN_BROADCAST_REQUEST,
        GOLDEN_BROADCAST_ACK,
        GOLDEN_SPECIAL,
    ]
    .iter()
    .map(|h| hex(h))
    .collect();
    let exercise = |bytes: &[u8]| {
        let _ = ClassicBroadcast::decode(bytes);
        let _ = Request::decode(bytes);
        if let Ok(raw) = RawResponse::decode(bytes) {
            for asked in [RequestType::Sockets, RequestType::RemoteFetch, RequestType::Broadcast] {
                let _ = raw.clone().interpret(asked);
            }
        }
        if let Ok(d) = Data::from_msgpack(bytes) {
            // Whatever decodes re-encodes and decodes to the same encoding.
            let again = d.to_msgpack();
            assert_eq!(Data::from_msgpack(&again).expect("re-decode").to_msgpack(), again);
            let _ = d.to_json_string();
            let _ = d.to_json_with_attachments();
        }
    };
    for golden in &goldens {
        for cut in 0..golden.len() {
            exercise(&golden[..cut]);
            assert!(ClassicBroadcast::decode(&golden[..cut]).is_err(), "a strict prefix is truncated");
        }
        // Single-byte corruptions.
        for _ in 0..2000 {
            let mut m = golden.clone();
            let i = (rng.next() as usize) % m.len();
            m[i] = rng.next() as u8;
            exercise(&m);
        }
    }
    for _ in 0..20_000 {
        let len = (rng.next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&bytes);
    }
}
