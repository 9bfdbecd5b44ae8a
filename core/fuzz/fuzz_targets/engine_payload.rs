//! Long-polling payloads: `decode_payload` on arbitrary bytes, the first
//! byte choosing the packet limit.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tidewire::protocol::engine::{Packet, decode_payload, encode_payload};

fuzz_target!(|data: &[u8]| {
    let Some((&max, body)) = data.split_first() else { return };
    let max = usize::from(max % 32);
    if let Ok(packets) = decode_payload(Bytes::copy_from_slice(body), max) {
        assert!(packets.len() <= max);
        let encoded: Vec<_> = packets.iter().map(Packet::encode).collect();
        assert_eq!(decode_payload(encode_payload(&encoded), max).as_ref(), Ok(&packets));
    }
});
