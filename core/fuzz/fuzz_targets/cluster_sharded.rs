//! `@socket.io/redis-adapter`'s sharded protocol (socket.io-adapter's
//! `ClusterAdapter` messages, JSON or msgpack) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewire::cluster::wire::sharded::{Message, SubscriptionMode};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else { return };
    let _ = (message.body.message_type(), message.body.is_response());
    for mode in [SubscriptionMode::Static, SubscriptionMode::Dynamic, SubscriptionMode::DynamicPrivate] {
        let _ = message.channel("socket.io", mode, Some("requester"));
    }
    // What was accepted encodes to a valid message, and encoding is then stable.
    let bytes = message.encode();
    let again = Message::decode(&bytes).expect("a decoded message re-encodes to a valid one");
    assert_eq!(again.encode(), bytes);
});
