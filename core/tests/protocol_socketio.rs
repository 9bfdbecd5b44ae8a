//! Property tests for Socket.IO packets and the default (JSON text) parser.

mod protocol_support;

use bytes::Bytes;
use proptest::prelude::*;
use protocol_support::{Frame, LIMITS, client_packet, float, frames, packet_like_text};
use tidewire::protocol::engine::Encoded;
use tidewire::protocol::socketio::{Decoder, Packet, PacketKind, ParseError, Payload};

/// Feeds `p.encode()` to a fresh decoder as the transport would.
fn decode_encoded(p: &Packet) -> Result<Packet, ParseError> {
    let frames = p.encode();
    let mut decoder = Decoder::new(LIMITS);
    let mut out = None;
    for (i, frame) in frames.into_iter().enumerate() {
        let result = match frame {
            Encoded::Text(text) => {
                assert_eq!(i, 0, "the text part comes first");
                assert!(text.starts_with('4'), "an Engine.IO message");
                decoder.decode_text(text.slice_ref(&text[1..]))?
            }
            Encoded::Binary(data) => decoder.decode_binary(data)?,
        };
        assert!(out.is_none(), "a packet came out before its last frame");
        out = result;
    }
    assert!(!decoder.is_reconstructing());
    Ok(out.expect("the last frame completes the packet"))
}

proptest! {
    #[test]
    fn packets_round_trip(p in client_packet()) {
        prop_assert_eq!(decode_encoded(&p).unwrap(), p);
    }

    #[test]
    fn floats_survive_the_text_parser(f in float()) {
        let p = Packet::event("/", "f", Payload::json(vec![f.into()]), None);
        prop_assert_eq!(decode_encoded(&p).unwrap(), p);
    }

    #[test]
    fn attachments_follow_the_text_part(p in client_packet()) {
        let frames = p.encode();
        let attachments = match &p.kind {
            PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } => payload.attachments.len(),
            _ => 0,
        };
        prop_assert_eq!(frames.len(), 1 + attachments);
    }

    #[test]
    fn decoder_never_panics_on_text(text in any::<String>()) {
        let _ = Decoder::new(LIMITS).decode_text(text.into());
    }

    #[test]
    fn decoded_text_re_encodes_to_a_decodable_packet(text in packet_like_text()) {
        let mut decoder = Decoder::new(LIMITS);
        if let Ok(Some(p)) = decoder.decode_text(text.into()) {
            prop_assert_eq!(decode_encoded(&p).unwrap(), p);
        }
    }

    #[test]
    fn decoder_never_panics_on_frame_sequences(frames in frames()) {
        let mut decoder = Decoder::new(LIMITS);
        for frame in frames {
            let result = match frame {
                Frame::Text(text) => decoder.decode_text(text.into()),
                Frame::Binary(data) => decoder.decode_binary(Bytes::from(data)),
            };
            if let Ok(Some(p)) = result {
                // Whatever comes out is a valid packet that encodes to itself.
                prop_assert_eq!(decode_encoded(&p).unwrap(), p);
            }
        }
    }

    #[test]
    fn decoder_never_panics_on_mutated_packets(p in client_packet(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let Encoded::Text(text) = &p.encode()[0] else { unreachable!() };
        let mut bytes = text.as_bytes()[1..].to_vec();
        if !bytes.is_empty() {
            let i = cut.index(bytes.len());
            bytes[i] = byte;
            bytes.truncate(bytes.len() - i / 2);
        }
        if let Ok(text) = String::from_utf8(bytes) {
            let _ = Decoder::new(LIMITS).decode_text(text.into());
        }
    }
}
