//! Codec micro-benchmarks: Engine.IO packets and polling payloads, Socket.IO
//! events with the JSON text parser (small, ~1 KiB, with binary
//! attachments) and with the msgpack parser. Each reports bytes/s of wire
//! data.
//!
//! `cargo bench -p tidewire-benches --bench codec` (add `-- --quick` for a
//! fast pass).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tidewire::protocol::engine::{self, Encoded, Frame};
use tidewire::protocol::msgpack;
use tidewire::protocol::socketio::{Decoder, Limits, Packet, Payload};

/// A chat message: `["chat", {...}]`, about 60 bytes of JSON.
fn small_args() -> Payload {
    Payload::json(vec![json!({"user": "alice", "text": "hello, world", "room": 7})])
}

/// About 1 KiB of JSON: a page of chat history.
fn kib_args() -> Payload {
    let messages: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "id": 1_700_000_000_000_u64 + i,
                "user": format!("user-{i}"),
                "text": "The quick brown fox jumps over the lazy dog",
                "tags": ["general", "news"],
                "edited": i % 3 == 0,
            })
        })
        .collect();
    Payload::json(vec![json!({"room": "lobby", "messages": messages})])
}

/// Two 4 KiB binary attachments plus some JSON around them.
fn binary_args() -> Payload {
    let mut args = Payload::json(vec![json!({"name": "photo.jpg", "type": "image/jpeg"})]);
    args.push_binary(Bytes::from(vec![0xab; 4096]));
    args.push_binary(Bytes::from(vec![0xcd; 4096]));
    args
}

fn wire_len(frames: &[Encoded]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

fn engine_io(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    let packet =
        engine::Packet::Message(Frame::Text(r#"2["chat",{"user":"alice","text":"hello, world","room":7}]"#.into()));
    let text = match packet.encode() {
        Encoded::Text(t) => t,
        Encoded::Binary(_) => unreachable!(),
    };
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("text_packet/encode", |b| b.iter(|| black_box(&packet).encode()));
    group.bench_function("text_packet/decode", |b| {
        b.iter(|| engine::Packet::decode_text(black_box(&text).clone()).unwrap())
    });

    // A polling payload: 12 text messages and 4 binary ones of 256 bytes.
    let packets: Vec<Encoded> = (0..16)
        .map(|i| {
            if i % 4 == 3 {
                Encoded::Binary(Bytes::from(vec![i as u8; 256]))
            } else {
                Encoded::message(&format!(r#"2["tick",{{"seq":{i},"value":"{}"}}]"#, "x".repeat(24)))
            }
        })
        .collect();
    let body = engine::encode_payload(&packets);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("payload/encode", |b| b.iter(|| engine::encode_payload(black_box(&packets))));
    group
        .bench_function("payload/decode", |b| b.iter(|| engine::decode_payload(black_box(&body).clone(), 16).unwrap()));
    group.finish();
}

/// Benchmarks encoding `packet` with the text parser and decoding its frames.
fn text_event(c: &mut Criterion, name: &str, packet: &Packet) {
    let mut group = c.benchmark_group("socketio");
    let frames = packet.encode();
    group.throughput(Throughput::Bytes(wire_len(&frames)));
    group.bench_function(format!("{name}/encode"), |b| b.iter(|| black_box(packet).encode()));
    // The text part without its Engine.IO `4`, then the attachments.
    let text: ByteString = match &frames[0] {
        Encoded::Text(t) => t.slice_ref(&t[1..]),
        Encoded::Binary(_) => unreachable!(),
    };
    let attachments: Vec<Bytes> = frames[1..]
        .iter()
        .map(|f| match f {
            Encoded::Binary(b) => b.clone(),
            Encoded::Text(_) => unreachable!(),
        })
        .collect();
    group.bench_function(format!("{name}/decode"), |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(Limits::default());
            let mut out = decoder.decode_text(black_box(&text).clone()).unwrap();
            for a in &attachments {
                out = decoder.decode_binary(a.clone()).unwrap();
            }
            out.unwrap()
        })
    });
    group.finish();
}

fn msgpack_event(c: &mut Criterion, name: &str, packet: &Packet) {
    let mut group = c.benchmark_group("msgpack");
    let wire = match msgpack::encode(packet) {
        Encoded::Binary(b) => b,
        Encoded::Text(_) => unreachable!(),
    };
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function(format!("{name}/encode"), |b| b.iter(|| msgpack::encode(black_box(packet))));
    group.bench_function(format!("{name}/decode"), |b| {
        b.iter(|| msgpack::decode(black_box(&wire).clone(), Limits::default()).unwrap())
    });
    group.finish();
}

fn socket_io(c: &mut Criterion) {
    let cases = [
        ("event_small", Packet::event("/", "chat", small_args(), None)),
        ("event_1k", Packet::event("/chat", "history", kib_args(), Some(42))),
        ("event_binary", Packet::event("/", "upload", binary_args(), Some(7))),
    ];
    for (name, packet) in &cases {
        text_event(c, name, packet);
    }
    for (name, packet) in &cases {
        msgpack_event(c, name, packet);
    }
}

criterion_group! {
    name = codec;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = engine_io, socket_io
}
criterion_main!(codec);
