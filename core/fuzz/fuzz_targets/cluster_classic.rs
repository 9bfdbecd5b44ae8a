//! `@socket.io/redis-adapter`'s classic protocol as a node receives it from
//! Redis: a channel name and a payload. The channel is parsed as the
//! subscriber does, and the payload decoded as a broadcast, a request or a
//! response (with every request type a response may answer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewire::cluster::wire::channels::{broadcast_room, parse_channel};
use tidewire::cluster::wire::classic::{ClassicBroadcast, RawResponse, Request, RequestType};

// The input: the channel, a newline, the payload (as in `seeds/cluster_classic`).
fuzz_target!(|data: &[u8]| {
    let (channel, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    if let Ok(channel) = std::str::from_utf8(channel) {
        let _ = parse_channel("socket.io", channel);
        let _ = broadcast_room("socket.io", "/", channel);
    }
    let _ = ClassicBroadcast::peek_uid(payload);
    if let Ok(message) = ClassicBroadcast::decode(payload) {
        let bytes = message.encode();
        let again = ClassicBroadcast::decode(&bytes).expect("a decoded broadcast re-encodes to a valid one");
        assert_eq!(again.encode(), bytes);
        let _ = message.channel("socket.io");
    }
    if let Ok(request) = Request::decode(payload) {
        let _ = (request.request_type(), request.uid(), request.request_id());
        let bytes = request.encode();
        let again = Request::decode(&bytes).expect("a decoded request re-encodes to a valid one");
        assert_eq!(again.encode(), bytes);
    }
    if let Ok(raw) = RawResponse::decode(payload) {
        let _ = (raw.request_id(), raw.uid(), raw.response_type());
        for code in 0..=10 {
            if let Some(asked) = RequestType::from_code(code)
                && let Ok(response) = raw.clone().interpret(asked)
            {
                let _ = response.encode();
            }
        }
    }
});
