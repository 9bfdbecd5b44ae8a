//! Property tests for Engine.IO packets and long-polling payloads.

use bytes::Bytes;
use bytestring::ByteString;
use proptest::prelude::*;
use tidewire::protocol::engine::{Encoded, Frame, Packet, decode_payload, encode_payload};

/// Packet data: any string, or only strings without the record separator
/// when the packet goes into a polling payload.
fn data(in_payload: bool) -> BoxedStrategy<ByteString> {
    if in_payload {
        "[^\u{1e}]{0,32}".prop_map(ByteString::from).boxed()
    } else {
        any::<String>().prop_map(ByteString::from).boxed()
    }
}

fn packet(in_payload: bool) -> impl Strategy<Value = Packet> {
    prop_oneof![
        data(in_payload).prop_map(Packet::Open),
        Just(Packet::Close),
        data(in_payload).prop_map(Packet::Ping),
        data(in_payload).prop_map(Packet::Pong),
        data(in_payload).prop_map(|d| Packet::Message(Frame::Text(d))),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| Packet::Message(Frame::Binary(b.into()))),
        Just(Packet::Upgrade),
        Just(Packet::Noop),
    ]
}

proptest! {
    #[test]
    fn packets_round_trip(p in packet(false)) {
        let decoded = match p.encode() {
            Encoded::Text(text) => Packet::decode_text(text).unwrap(),
            Encoded::Binary(data) => Packet::decode_binary(data),
        };
        prop_assert_eq!(decoded, p);
    }

    #[test]
    fn payloads_round_trip(packets in prop::collection::vec(packet(true), 1..16)) {
        let encoded: Vec<Encoded> = packets.iter().map(Packet::encode).collect();
        let body = encode_payload(&encoded);
        prop_assert_eq!(decode_payload(body.clone(), packets.len()).unwrap(), packets.clone());
        if packets.len() > 1 {
            prop_assert!(decode_payload(body, packets.len() - 1).is_err());
        }
    }

    #[test]
    fn text_decoder_never_panics(text in any::<String>()) {
        let _ = Packet::decode_text(text.into());
    }

    #[test]
    fn text_decoder_never_panics_on_packet_like_text(text in "[0-9b]{1,2}.{0,16}") {
        if let Ok(p) = Packet::decode_text(text.clone().into()) {
            match p.encode() {
                // `b` + base64: a binary message, written back the same way.
                Encoded::Binary(data) => {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
                    prop_assert_eq!(format!("b{b64}"), text);
                }
                encoded => prop_assert_eq!(encoded, Encoded::Text(text.into())),
            }
        }
    }

    #[test]
    fn payload_decoder_never_panics(body in prop::collection::vec(any::<u8>(), 0..256), max in 0..8usize) {
        let _ = decode_payload(Bytes::from(body), max);
    }

    #[test]
    fn payload_decoder_never_panics_on_payload_like_bodies(
        records in prop::collection::vec("[0-6]{0,2}[a-z]{0,4}|b[A-Za-z0-9+/=]{0,12}|\u{1e}", 0..12),
        max in 0..16usize,
    ) {
        let body = records.join("\u{1e}");
        if let Ok(packets) = decode_payload(Bytes::from(body), max) {
            prop_assert!(packets.len() <= max);
        }
    }
}
