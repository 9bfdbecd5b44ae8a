//! Engine.IO text packets: `Packet::decode_text` on arbitrary UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewire::protocol::engine::{Encoded, Packet};

fuzz_target!(|text: &str| {
    if let Ok(packet) = Packet::decode_text(text.into()) {
        // Decoding loses nothing: the packet encodes back to the same text.
        assert_eq!(packet.encode(), Encoded::Text(text.into()));
    }
});
