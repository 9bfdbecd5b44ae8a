//! The default Socket.IO parser: an arbitrary sequence of text and binary
//! frames into one stateful `Decoder`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tidewire::protocol::engine::Encoded;
use tidewire::protocol::socketio::{Decoder, Limits, Packet};

#[derive(Debug, Arbitrary)]
enum Frame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// Decodes what `packet` encodes to with a fresh decoder.
fn re_decode(packet: &Packet, limits: Limits) -> Packet {
    let mut decoder = Decoder::new(limits);
    let mut out = None;
    for frame in packet.encode() {
        out = match frame {
            Encoded::Text(t) => decoder.decode_text(t.slice_ref(&t[1..])),
            Encoded::Binary(b) => decoder.decode_binary(b),
        }
        .expect("a decoded packet re-encodes to a valid one");
    }
    out.expect("the last frame completes the packet")
}

fuzz_target!(|input: (u8, Vec<Frame<'_>>)| {
    let (max_attachments, frames) = input;
    let limits = Limits { max_attachments: usize::from(max_attachments % 16), ..Limits::default() };
    let mut decoder = Decoder::new(limits);
    for frame in frames {
        let result = match frame {
            Frame::Text(text) => decoder.decode_text(text.into()),
            Frame::Binary(data) => decoder.decode_binary(Bytes::copy_from_slice(data)),
        };
        if let Ok(Some(packet)) = result {
            assert_eq!(re_decode(&packet, limits), packet);
        }
    }
});
