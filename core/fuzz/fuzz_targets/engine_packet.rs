//! Engine.IO text packets: `Packet::decode_text` on arbitrary UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewire::protocol::engine::{Encoded, Packet, decode_payload, encode_payload};

fuzz_target!(|text: &str| {
    if let Ok(packet) = Packet::decode_text(text.into()) {
        match packet.encode() {
            // Decoding loses nothing: the packet encodes back to the same text.
            Encoded::Text(encoded) => assert_eq!(encoded, text),
            // `b` + base64 is binary (as engine.io reads it, on either
            // transport): it goes out as a binary frame, or as `b` + base64
            // in a polling payload, which decodes to the same packet.
            binary @ Encoded::Binary(_) => {
                assert_eq!(decode_payload(encode_payload(&[binary]), 1), Ok(vec![packet]));
            }
        }
    }
});
