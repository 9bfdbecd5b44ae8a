//! The msgpack parser: `msgpack::decode` on arbitrary bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tidewire::protocol::engine::Encoded;
use tidewire::protocol::msgpack;
use tidewire::protocol::socketio::Limits;

fn encode(packet: &tidewire::protocol::socketio::Packet) -> Bytes {
    match msgpack::encode(packet) {
        Encoded::Binary(b) => b,
        Encoded::Text(_) => panic!("msgpack packets are binary"),
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(packet) = msgpack::decode(Bytes::copy_from_slice(data), limits) {
        // What was accepted encodes to bytes that decode to the same packet
        // (maps compare regardless of key order) and encode to the same
        // bytes again (which checks the order too).
        let first = encode(&packet);
        let again = msgpack::decode(first.clone(), limits).expect("a decoded packet re-encodes to a valid one");
        assert_eq!(again, packet);
        assert_eq!(encode(&again), first);
    }
});
