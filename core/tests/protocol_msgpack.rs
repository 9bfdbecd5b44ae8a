//! Property tests for the msgpack parser, including a differential check
//! against `rmpv`'s msgpack reader.
#![cfg(feature = "msgpack")]

mod protocol_support;

use bytes::Bytes;
use proptest::prelude::*;
use protocol_support::{LIMITS, client_packet};
use rmpv::Value as Mp;
use serde_json::Value;
use tidewire::protocol::engine::Encoded;
use tidewire::protocol::msgpack;
use tidewire::protocol::socketio::{Packet, PacketKind, ParseError, Payload};

fn encode(p: &Packet) -> Bytes {
    match msgpack::encode(p) {
        Encoded::Binary(b) => b,
        Encoded::Text(_) => panic!("msgpack packets are binary"),
    }
}

fn write(v: &Mp) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).unwrap();
    out
}

/// Any msgpack value the canonical form can hold: string keys, no
/// extensions.
fn mp_value() -> impl Strategy<Value = Mp> {
    let leaf = prop_oneof![
        Just(Mp::Nil),
        any::<bool>().prop_map(Mp::Boolean),
        any::<i64>().prop_map(Mp::from),
        any::<u64>().prop_map(Mp::from),
        any::<f32>().prop_map(Mp::F32),
        any::<f64>().prop_map(Mp::F64),
        any::<String>().prop_map(Mp::from),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Mp::Binary),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Mp::Array),
            prop::collection::vec(("[a-z]{0,4}|.{0,6}", inner), 0..6)
                .prop_map(|kv| Mp::Map(kv.into_iter().map(|(k, v)| (Mp::from(k), v)).collect())),
        ]
    })
}

/// Any msgpack value at all, extensions and odd keys included.
fn any_mp_value() -> impl Strategy<Value = Mp> {
    let leaf = prop_oneof![
        mp_value(),
        (any::<i8>(), prop::collection::vec(any::<u8>(), 0..17)).prop_map(|(t, d)| Mp::Ext(t, d)),
        prop::collection::vec(any::<u8>(), 0..8)
            .prop_map(|b| Mp::String(rmpv::Utf8String::from(String::from_utf8_lossy(&b).into_owned()))),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Mp::Array),
            prop::collection::vec((inner.clone(), inner), 0..5).prop_map(Mp::Map),
        ]
    })
}

/// The reference conversion to the canonical form (recursive: test data is
/// shallow): maps as JavaScript objects (a repeated key overrides the
/// earlier value in its place), binary values as placeholders numbered in
/// the order they appear in the result.
fn reference(v: &Mp, attachments: &mut Vec<Bytes>) -> Value {
    match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(*b),
        Mp::Integer(i) => i.as_u64().map(Value::from).or_else(|| i.as_i64().map(Value::from)).unwrap(),
        Mp::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Mp::String(s) => Value::String(s.as_str().unwrap().to_owned()),
        Mp::Binary(b) => {
            attachments.push(Bytes::from(b.clone()));
            Payload::placeholder(attachments.len() - 1)
        }
        Mp::Array(items) => Value::Array(items.iter().map(|v| reference(v, attachments)).collect()),
        Mp::Map(kv) => {
            let mut entries: Vec<(&str, &Mp)> = Vec::new();
            for (k, v) in kv {
                let k = k.as_str().unwrap();
                match entries.iter_mut().find(|(e, _)| *e == k) {
                    Some(entry) => entry.1 = v,
                    None => entries.push((k, v)),
                }
            }
            Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), reference(v, attachments))).collect())
        }
        Mp::Ext(..) => unreachable!("not generated"),
    }
}

/// How many binary values `v` holds on the wire, overridden ones included.
fn binaries(v: &Mp) -> usize {
    match v {
        Mp::Binary(_) => 1,
        Mp::Array(items) => items.iter().map(binaries).sum(),
        Mp::Map(kv) => kv.iter().map(|(_, v)| binaries(v)).sum(),
        _ => 0,
    }
}

fn event_map(args: Vec<Mp>, extra: Vec<(Mp, Mp)>) -> Mp {
    let mut data = vec![Mp::from("ev")];
    data.extend(args);
    let mut fields = vec![(Mp::from("type"), Mp::from(2)), (Mp::from("data"), Mp::Array(data))];
    fields.extend(extra);
    fields.push((Mp::from("nsp"), Mp::from("/")));
    Mp::Map(fields)
}

/// Decodes `wire`; whatever it accepts must encode to bytes that decode to
/// the same packet and encode to the same bytes again.
fn check_decode(wire: Vec<u8>) -> Result<(), TestCaseError> {
    if let Ok(p) = msgpack::decode(Bytes::from(wire), LIMITS) {
        let first = encode(&p);
        let again = msgpack::decode(first.clone(), LIMITS).unwrap();
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(encode(&again), first);
    }
    Ok(())
}

proptest! {
    #[test]
    fn packets_round_trip(p in client_packet()) {
        prop_assert_eq!(msgpack::decode(encode(&p), LIMITS).unwrap(), p);
    }

    #[test]
    fn agrees_with_the_text_parser(p in client_packet()) {
        // Same canonical packet whichever parser carried it.
        let mut decoder = tidewire::protocol::socketio::Decoder::new(LIMITS);
        let mut via_text = None;
        for frame in p.encode() {
            via_text = match frame {
                Encoded::Text(t) => decoder.decode_text(t.slice_ref(&t[1..])).unwrap(),
                Encoded::Binary(b) => decoder.decode_binary(b).unwrap(),
            };
        }
        prop_assert_eq!(via_text.unwrap(), msgpack::decode(encode(&p), LIMITS).unwrap());
    }

    #[test]
    fn decodes_what_rmpv_writes(args in prop::collection::vec(mp_value(), 0..6), id in prop::option::of(0..=(1u64 << 53) - 1)) {
        let extra = id.map(|id| vec![(Mp::from("id"), Mp::from(id))]).unwrap_or_default();
        let wire = write(&event_map(args.clone(), extra));
        let mut attachments = Vec::new();
        let mut data = vec![Value::from("ev")];
        data.extend(args.iter().map(|a| reference(a, &mut attachments)));
        let decoded = msgpack::decode(Bytes::from(wire), LIMITS);
        if args.iter().map(binaries).sum::<usize>() > LIMITS.max_attachments {
            prop_assert_eq!(decoded, Err(ParseError::IllegalAttachments));
        } else {
            let expected = Packet { nsp: "/".into(), kind: PacketKind::Event { payload: Payload { data, attachments }, id } };
            let decoded = decoded.unwrap();
            // Maps compare regardless of key order; their encodings do not.
            prop_assert_eq!(encode(&decoded), encode(&expected));
            prop_assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn ignores_unknown_keys(args in prop::collection::vec(mp_value(), 0..3), key in "[a-z]{1,8}", value in any_mp_value()) {
        prop_assume!(!["type", "data", "nsp", "id"].contains(&key.as_str()));
        let plain = msgpack::decode(Bytes::from(write(&event_map(args.clone(), vec![]))), LIMITS);
        let with_key = msgpack::decode(Bytes::from(write(&event_map(args, vec![(Mp::from(key), value.clone())]))), LIMITS);
        // An unknown key's value is skipped, but must still be valid msgpack
        // without unsupported extensions.
        if write_has_ext(&value) {
            prop_assert!(with_key.is_err());
        } else {
            prop_assert_eq!(with_key, plain);
        }
    }

    #[test]
    fn never_panics_on_bytes(wire in prop::collection::vec(any::<u8>(), 0..128)) {
        check_decode(wire)?;
    }

    #[test]
    fn never_panics_on_arbitrary_msgpack(v in any_mp_value()) {
        check_decode(write(&v))?;
    }

    #[test]
    fn never_panics_on_packet_shaped_msgpack(ty in any_mp_value(), nsp in any_mp_value(), data in any_mp_value(), id in any_mp_value()) {
        for fields in [
            vec![("type", ty.clone()), ("data", data.clone()), ("nsp", nsp.clone()), ("id", id.clone())],
            vec![("type", Mp::from(2)), ("data", data.clone()), ("nsp", Mp::from("/"))],
            vec![("type", Mp::from(3)), ("data", data.clone()), ("nsp", Mp::from("/a")), ("id", id.clone())],
            vec![("type", Mp::from(0)), ("data", data), ("nsp", nsp)],
        ] {
            let map = Mp::Map(fields.into_iter().map(|(k, v)| (Mp::from(k), v)).collect());
            check_decode(write(&map))?;
        }
    }

    #[test]
    fn never_panics_on_mutated_packets(p in client_packet(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut wire = encode(&p).to_vec();
        let i = at.index(wire.len());
        wire[i] = byte;
        let keep = wire.len() - cut.index(wire.len()) / 4;
        wire.truncate(keep);
        check_decode(wire)?;
    }
}

/// Whether `v` holds an extension this parser refuses: type 0 is
/// `notepack.io`'s undefined (fixext 1), Date (fixext 8) or ArrayBuffer
/// (ext 8/16/32, which rmpv writes for every other length than the fixext
/// ones), type -1 a timestamp if its nanoseconds are in range.
fn write_has_ext(v: &Mp) -> bool {
    match v {
        Mp::Ext(0, d) => matches!(d.len(), 2 | 4 | 16),
        Mp::Ext(-1, d) => match d.len() {
            4 => false,
            8 => u64::from_be_bytes(d[..8].try_into().unwrap()) >> 34 >= 1_000_000_000,
            12 => u32::from_be_bytes(d[..4].try_into().unwrap()) >= 1_000_000_000,
            _ => true,
        },
        Mp::Ext(..) => true,
        Mp::Array(items) => items.iter().any(write_has_ext),
        Mp::Map(kv) => kv.iter().any(|(k, v)| write_has_ext(k) || write_has_ext(v)),
        _ => false,
    }
}
