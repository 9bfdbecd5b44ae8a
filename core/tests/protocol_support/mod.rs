//! Proptest strategies shared by the `protocol_*` property tests.
#![allow(dead_code, reason = "each test file uses a different part of this module")]

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};
use tidewire::protocol::socketio::{Limits, MAX_ACK_ID, Packet, PacketKind, Payload, RESERVED_EVENTS};

/// Limits roomy enough for every generated packet.
pub(crate) const LIMITS: Limits = Limits { max_attachments: 16, max_namespace_len: 256 };

/// A namespace: `/` or `/` followed by up to 20 characters other than `,`.
pub(crate) fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[^,]{0,20}", "/[a-z0-9]{1,8}"]
}

/// Any ack id a JavaScript client can send, with the edges weighted in.
pub(crate) fn ack_id() -> impl Strategy<Value = u64> {
    prop_oneof![0..=MAX_ACK_ID, Just(0), Just(MAX_ACK_ID), 0..1000u64]
}

/// Any finite float (JSON has no NaN or infinities).
pub(crate) fn float() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NORMAL, SUBNORMAL, ZERO};
    NORMAL | SUBNORMAL | ZERO
}

/// An object key; never `_placeholder`, which would make a map a
/// placeholder.
fn key() -> impl Strategy<Value = String> {
    any::<String>().prop_filter("not a placeholder key", |k| k != "_placeholder")
}

/// Any JSON value at most `depth` containers deep.
pub(crate) fn json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One argument of an event or ack.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Json(Value),
    /// A binary argument.
    Binary(Vec<u8>),
    /// `{key: <binary>}`.
    NestedBinary(String, Vec<u8>),
}

fn arg() -> impl Strategy<Value = Arg> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        3 => json(3).prop_map(Arg::Json),
        1 => bytes().prop_map(Arg::Binary),
        1 => (key(), bytes()).prop_map(|(k, b)| Arg::NestedBinary(k, b)),
    ]
}

/// Arguments with at most `LIMITS.max_attachments` binary parts, numbered
/// in document order.
pub(crate) fn args() -> impl Strategy<Value = Payload> {
    prop::collection::vec(arg(), 0..8).prop_map(|args| {
        let mut payload = Payload::default();
        for arg in args {
            match arg {
                Arg::Json(v) => payload.data.push(v),
                Arg::Binary(b) => payload.push_binary(b.into()),
                Arg::NestedBinary(k, b) => {
                    let mut map = Map::new();
                    map.insert(k, Payload::placeholder(payload.attachments.len()));
                    payload.attachments.push(Bytes::from(b));
                    payload.data.push(Value::Object(map));
                }
            }
        }
        payload
    })
}

/// An event name a client may send: a non-reserved string or a number.
pub(crate) fn event_name() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => any::<String>().prop_filter("reserved", |s| !RESERVED_EVENTS.contains(&s.as_str())).prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => float().prop_map(Value::from),
    ]
}

/// Any packet a client may send (everything but CONNECT_ERROR).
pub(crate) fn client_packet() -> impl Strategy<Value = Packet> {
    let auth = prop::collection::btree_map(key(), json(3), 0..6).prop_map(|m| Value::Object(m.into_iter().collect()));
    let kind = prop_oneof![
        1 => Just(PacketKind::Connect(None)),
        1 => auth.prop_map(|a| PacketKind::Connect(Some(a))),
        1 => Just(PacketKind::Disconnect),
        4 => (event_name(), args(), prop::option::of(ack_id())).prop_map(|(name, mut payload, id)| {
            payload.data.insert(0, name);
            PacketKind::Event { payload, id }
        }),
        2 => (args(), ack_id()).prop_map(|(payload, id)| PacketKind::Ack { payload, id }),
    ];
    (namespace(), kind).prop_map(|(nsp, kind)| Packet { nsp: nsp.into(), kind })
}

/// A frame as the transport hands it over.
#[derive(Debug, Clone)]
pub(crate) enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// Text shaped like Socket.IO packets (type digit, attachment count,
/// namespace, id, JSON-ish data), to reach past the first checks.
pub(crate) fn packet_like_text() -> impl Strategy<Value = String> {
    let json_ish = prop_oneof![
        "[\\[\\]{}\",:0-9a-z_ .eE+-]{0,40}",
        r#"\["[a-z]{1,5}",\{"_placeholder":(true|false|1),"num":(0|1|-1|0\.5|"0"|1e0|99)\}\]"#,
        json(3).prop_map(|v| v.to_string()),
    ];
    ("[0-9a]", "([0-9]{0,5}-)?", "(/[^,]{0,8},?)?", "[0-9]{0,20}", json_ish)
        .prop_map(|(t, a, n, i, j)| format!("{t}{a}{n}{i}{j}"))
}

/// Any sequence of text and binary frames, text often packet-like.
pub(crate) fn frames() -> impl Strategy<Value = Vec<Frame>> {
    let frame = prop_oneof![
        2 => packet_like_text().prop_map(Frame::Text),
        1 => any::<String>().prop_map(Frame::Text),
        2 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Frame::Binary),
    ];
    prop::collection::vec(frame, 0..12)
}
