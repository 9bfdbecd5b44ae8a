//! The notepack value layer against notepack.io 3.0.1: its goldens, the other msgpack forms it reads, its limits,
//! and the JSON forms of values.

use super::*;
use crate::cluster::wire::tests::{GOLDEN_SPECIAL, hex, map, to_hex};

#[test]
fn notepack_special_values() {
    let golden = hex(GOLDEN_SPECIAL);
    let decoded = Data::from_msgpack(&golden).expect("decode");
    let expected = Data::Array(vec![
        Data::Date(1_735_787_045_678),
        Data::Date(0),
        Data::Date(-1),
        Data::Date(16_725_225_600_000),
        Data::UInt((1 << 53) + 2),
        Data::Int(-(1 << 40)),
        Data::UInt(0x35c9_adc5_dea0_0000), // notepack's wrapped 1e21
        Data::Float(0.5),
        Data::UInt(0),
        Data::Float(f64::NAN),
        Data::Null,
        Data::Bin(Bytes::from_static(&[4, 5])),
    ]);
    // NaN != NaN: compare the encodings, which are exactly notepack's.
    assert_eq!(to_hex(&decoded.to_msgpack()), to_hex(&golden));
    assert_eq!(to_hex(&expected.to_msgpack()), to_hex(&golden));
    let (Data::Array(items), Data::Array(expected)) = (&decoded, &expected) else { panic!("arrays") };
    assert!(matches!(items[9], Data::Float(f) if f.is_nan()));
    assert_eq!(items[..9], expected[..9]);
    assert_eq!(items[10..], expected[10..]);
    // Where Tidewire differs on purpose: 1e21 stays a float64.
    assert_eq!(to_hex(&Data::Float(1e21).to_msgpack()), "cb444b1ae4d6e2ef50");
    assert_eq!(to_hex(&Data::Float(-0.0).to_msgpack()), "00");
    assert_eq!(to_hex(&Data::Float(-(2f64.powi(63))).to_msgpack()), "d38000000000000000");
    assert_eq!(to_hex(&Data::Float(300.0).to_msgpack()), "cd012c");
    assert_eq!(
        Data::Date(1_735_787_045_678).to_json_string(),
        "1735787045678",
        "a Date goes into JSON as its milliseconds (JSON.stringify writes its ISO string)"
    );
}

#[test]
fn decodes_other_msgpack_forms() {
    let cases: Vec<(&str, Data)> = vec![
        ("ca3fc00000", Data::Float(1.5)),               // float32
        ("ca3dcccccd", Data::Float(f64::from(0.1f32))), // float32, not exactly 0.1
        ("cfffffffffffffffff", Data::UInt(u64::MAX)),   // uint64 max
        ("d38000000000000000", Data::Int(i64::MIN)),    // int64 min
        ("d005", Data::UInt(5)),                        // signed form, positive: normalized
        ("d1ff38", Data::Int(-200)),
        ("d2ffffffff", Data::Int(-1)),
        ("cd0100", Data::UInt(256)),
        ("ce00010000", Data::UInt(65536)),
        ("d6ff00000001", Data::Date(1000)),                // timestamp 32
        ("d7000000000000000002", Data::Date(2)),           // notepack 2.x Date
        ("d7fffffffffc00000000", Data::Date(1073)),        // timestamp 64, ns = 2^30 - 1
        ("c70cff000000000000000000000000", Data::Date(0)), // timestamp 96
        ("c70cff00000000ffffffffffffffff", Data::Date(-1000)),
        ("c70cff000000007fffffffffffffff", Data::Null), // out of Date range: invalid
        ("c70200abcd", Data::Bin(Bytes::from_static(&[0xab, 0xcd]))), // ext type 0: ArrayBuffer
        ("d40501", Data::Array(vec![Data::UInt(5), Data::Bin(Bytes::from_static(&[1]))])),
        ("d5ff0102", Data::Array(vec![Data::Int(-1), Data::Bin(Bytes::from_static(&[1, 2]))])),
        ("c8000103aa", Data::Array(vec![Data::UInt(3), Data::Bin(Bytes::from_static(&[0xaa]))])),
        ("92d40000c0", Data::Array(vec![Data::Null, Data::Null])), // undefined in an array
        ("82a161d40000a16201", map(vec![("b", Data::UInt(1))])),   // undefined value: key dropped
        ("83a16101a16202a16103", map(vec![("a", Data::UInt(3)), ("b", Data::UInt(2))])), // last wins
        ("82a16101a161d40000", map(vec![])),                       // undefined overrides
        // Wire order is kept (a JS object would list the integer-like keys "1", "123" first).
        ("8301a178c3a1797ba17a", map(vec![("1", "x".into()), ("true", "y".into()), ("123", "z".into())])),
        ("81cb3ff8000000000000c0", map(vec![("1.5", Data::Null)])),
        ("a2ff61", Data::Str("\u{fffd}a".into())), // invalid UTF-8 replaced
        ("a3c3a961", Data::Str("éa".into())),
        ("d90161", Data::Str("a".into())),
        ("da000161", Data::Str("a".into())),
        ("db0000000161", Data::Str("a".into())),
        ("c5000161", Data::Bin(Bytes::from_static(b"a"))),
        ("dc000101", Data::Array(vec![Data::UInt(1)])),
        ("de0001a16101", map(vec![("a", Data::UInt(1))])),
        ("d40000", Data::Null),
    ];
    for (h, expected) in cases {
        assert_eq!(Data::from_msgpack(&hex(h)).expect(h), expected, "{h}");
    }
    // A large map of repeated keys goes through the index.
    let mut big = vec![0xde, 0x01, 0x00];
    for i in 0..256u32 {
        big.extend_from_slice(&[0xa1, b'k', 0xcd]);
        big.extend_from_slice(&(i as u16).to_be_bytes());
    }
    assert_eq!(Data::from_msgpack(&big).expect("big"), map(vec![("k", Data::UInt(255))]));
}

#[test]
fn malformed_msgpack_is_refused() {
    // The reserved byte reads as null, as rmpv reads it (notepack throws; see the module notes).
    assert_eq!(Data::from_msgpack(&[0xc1]).expect("c1"), Data::Null);
    assert!(matches!(Data::from_msgpack(&[0x01, 0x02]), Err(DecodeError::TrailingBytes(1))));
    assert!(matches!(Data::from_msgpack(&hex("c70aff00")), Err(DecodeError::Truncated)));
    assert!(matches!(Data::from_msgpack(&hex("c70aff00000000000000000000")), Err(DecodeError::BadTimestamp)));
    assert!(matches!(Data::from_msgpack(&hex("81c40161c0")), Err(DecodeError::UnsupportedKey)));
}

#[test]
fn nesting_is_capped() {
    let nested = |levels: usize| {
        let mut v = vec![0x91; levels - 1];
        v.push(0x90);
        v
    };
    assert!(Data::from_msgpack(&nested(MAX_DEPTH)).is_ok());
    assert!(matches!(Data::from_msgpack(&nested(MAX_DEPTH + 1)), Err(DecodeError::TooDeep { .. })));
    assert!(matches!(Data::from_msgpack(&nested(200_000)), Err(DecodeError::TooDeep { .. })));
    // The innermost allowed container may hold leaves of any kind (rmpv's own budget counts those too).
    let mut leafy = vec![0x91; MAX_DEPTH - 1];
    leafy.extend_from_slice(&[0x81, 0xa1, b'k', 0xd6, 0xff, 0, 0, 0, 1]);
    assert!(Data::from_msgpack(&leafy).is_ok());
    let mut maps = Vec::new();
    for _ in 0..100_000 {
        maps.extend_from_slice(&[0x81, 0xa1, b'k']);
    }
    maps.push(0xc0);
    assert!(matches!(Data::from_msgpack(&maps), Err(DecodeError::TooDeep { .. })));
}

#[test]
fn huge_declared_lengths_fail_without_allocating() {
    for h in ["ddffffffff", "dfffffffff", "dbffffffff61", "c6ffffffff", "c9ffffffff05", "dcffff", "deffff"] {
        assert!(matches!(Data::from_msgpack(&hex(h)), Err(DecodeError::Truncated)), "{h}");
    }
}

#[test]
fn json_conversions_with_attachments() {
    let value = Data::Array(vec![
        "ev".into(),
        Data::Bin(Bytes::from_static(b"a")),
        map(vec![("nested", vec![Data::Bin(Bytes::from_static(b"b")), Data::Float(2.0)].into())]),
        Data::Date(0),
        Data::Float(f64::INFINITY),
    ]);
    let (json, attachments) = value.to_json_with_attachments();
    assert_eq!(
        json,
        serde_json::json!([
            "ev",
            {"_placeholder": true, "num": 0},
            {"nested": [{"_placeholder": true, "num": 1}, 2]},
            0,
            null
        ])
    );
    assert_eq!(attachments, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
    let back = Data::from_json_with_attachments(&json, &attachments).expect("back");
    let Data::Array(items) = back else { panic!("array") };
    assert_eq!(items[1], Data::Bin(Bytes::from_static(b"a")));
    assert_eq!(items[2], map(vec![("nested", vec![Data::Bin(Bytes::from_static(b"b")), Data::UInt(2)].into())]));

    let (args, atts) = args_to_json(&[Data::Bin(Bytes::from_static(b"x")), Data::Bin(Bytes::from_static(b"y"))]);
    assert_eq!(args[1], serde_json::json!({"_placeholder": true, "num": 1}));
    assert_eq!(args_from_json(&args, &atts).expect("args")[1], Data::Bin(Bytes::from_static(b"y")));

    for bad in [
        serde_json::json!({"_placeholder": true, "num": 2}),
        serde_json::json!({"_placeholder": true, "num": 0.5}),
        serde_json::json!({"_placeholder": true, "num": -1}),
        serde_json::json!({"_placeholder": true}),
        serde_json::json!([{"_placeholder": true, "num": "0"}]),
    ] {
        assert!(matches!(Data::from_json_with_attachments(&bad, &attachments), Err(DecodeError::BadPlaceholder)));
    }
    // `_placeholder` other than true is an ordinary object.
    let plain = serde_json::json!({"_placeholder": 1, "num": 0});
    assert_eq!(Data::from_json_with_attachments(&plain, &[]).expect("plain").to_json(), plain);
    // Without attachments, binary becomes Node's Buffer JSON.
    assert_eq!(Data::Bin(Bytes::from_static(&[1, 2])).to_json(), serde_json::json!({"type": "Buffer", "data": [1, 2]}));
    assert_eq!(Data::Float(3.0).to_json(), serde_json::json!(3));
    assert_eq!(Data::Float(-0.0).to_json(), serde_json::json!(0));
    assert_eq!(Data::Float(-2.5).to_json(), serde_json::json!(-2.5));
    assert_eq!(Data::Float(1e19).to_json().to_string(), "10000000000000000000");
    assert_eq!(
        Data::from_json(&serde_json::json!([1, -1, 1.5, "s", null, {"a": true}])).to_json(),
        serde_json::json!([1, -1, 1.5, "s", null, {"a": true}])
    );
}

/// Expectations printed by Node 20 (`JSON.stringify`): serde_json may spell a number differently, but it must
/// parse to the same value, and integers and strings are printed alike.
#[test]
fn javascript_number_and_date_formatting() {
    for (f, js) in [
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (123.456, "123.456"),
        (-0.0, "0"),
        (2f64.powi(60), "1152921504606847000"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-1.5e-10, "-1.5e-10"),
        (1e20, "100000000000000000000"),
        (123_456_789_012_345_680_000.0, "123456789012345680000"),
        (4.35, "4.35"),
        (1.0 / 3.0, "0.3333333333333333"),
    ] {
        let ours = Data::Float(f).to_json_string();
        let parse = |s: &str| serde_json::from_str::<Value>(s).expect(s).as_f64();
        assert_eq!(parse(&ours), parse(js), "{f:e}: {ours} vs {js}");
    }
    assert_eq!(Data::Float(2f64.powi(60)).to_json_string(), "1152921504606846976", "an integer, exactly");
    assert_eq!(Data::Float(f64::NAN).to_json_string(), "null");
    // Dates go into JSON as milliseconds (see the module notes); an invalid one is null, as in JSON.stringify.
    for ms in [0, -1, 8_640_000_000_000_000, -8_640_000_000_000_000, 1_735_787_045_678] {
        assert_eq!(Data::Date(ms).to_json_string(), ms.to_string());
    }
    assert_eq!(Data::Date(8_640_000_000_000_001).to_json_string(), "null");
    assert_eq!(Data::Date(i64::MIN).to_json_string(), "null");
    // String escapes as JSON.stringify prints them.
    let s = Data::Str("a\"b\\c\n\t\u{1}\u{1f}\u{7f}\u{2028}é😀/\u{8}\u{c}\r".into());
    assert_eq!(s.to_json_string(), "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\u{7f}\u{2028}é😀/\\b\\f\\r\"");
    // Numbers as room names: JavaScript's String(x) up to exponent spelling.
    assert_eq!(
        [1.5, 42.0, -0.0, f64::NAN, f64::NEG_INFINITY].map(number_string),
        ["1.5", "42", "0", "NaN", "-Infinity"]
    );
}

#[test]
fn msgpack_length_forms_follow_notepack() {
    let s31 = "x".repeat(31);
    let s32 = "x".repeat(32);
    assert_eq!(Data::Str(s31.clone()).to_msgpack()[0], 0xbf);
    assert_eq!(Data::Str(s32).to_msgpack()[..2], [0xd9, 32]);
    assert_eq!(Data::Str("x".repeat(256)).to_msgpack()[..3], [0xda, 1, 0]);
    assert_eq!(Data::Str("x".repeat(65536)).to_msgpack()[..5], [0xdb, 0, 1, 0, 0]);
    assert_eq!(Data::Bin(Bytes::from(vec![0; 256])).to_msgpack()[..3], [0xc5, 1, 0]);
    assert_eq!(Data::Bin(Bytes::from(vec![0; 65536])).to_msgpack()[..5], [0xc6, 0, 1, 0, 0]);
    assert_eq!(Data::Array(vec![Data::Null; 16]).to_msgpack()[..3], [0xdc, 0, 16]);
    let m: Vec<(String, Data)> = (0..16).map(|i| (i.to_string(), Data::Null)).collect();
    assert_eq!(Data::Map(m).to_msgpack()[..3], [0xde, 0, 16]);
    for (v, h) in [
        (-32i64, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32768, "d18000"),
        (-32769, "d2ffff7fff"),
        (-2_147_483_648, "d280000000"),
        (-2_147_483_649, "d3ffffffff7fffffff"),
        (127, "7f"),
        (128, "cc80"),
        (65535, "cdffff"),
        (4_294_967_296, "cf0000000100000000"),
    ] {
        assert_eq!(to_hex(&Data::from(v).to_msgpack()), h, "{v}");
        assert_eq!(to_hex(&Data::Float(v as f64).to_msgpack()), h, "{v} as float");
        assert_eq!(Data::from_msgpack(&hex(h)).expect(h), Data::from(v));
    }
    assert_eq!(Data::from_msgpack(&Data::Str(s31.clone()).to_msgpack()).expect("s"), Data::Str(s31));
}
