//! Binary attachment reconstruction: packets the default parser accepts
//! from arbitrary text and binary frames, read as a handler reads them
//! (`Payload::arg` as JSON, bytes, strings), converted to the cluster's
//! notepack values and to a binding's JSON-plus-attachments form, and back.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tidewire::cluster::wire::notepack::{args_from_json, args_to_json};
use tidewire::embed::{payload_from_parts, payload_to_parts};
use tidewire::protocol::socketio::{Decoder, Limits, PacketKind, Payload};

#[derive(Debug, Arbitrary)]
enum Frame<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

fn read(payload: &Payload) {
    for i in 0..payload.data.len() + 1 {
        let _ = payload.arg::<Value>(i);
        let _ = payload.arg::<Bytes>(i);
        let _ = payload.arg::<Option<String>>(i);
        let _ = payload.arg::<(u64, Vec<Value>)>(i);
    }
    let _ = payload.args_as::<(String, Option<Bytes>)>();
    // To the cluster's values and back: the same JSON and attachments.
    if let Ok(values) = args_from_json(&payload.data, &payload.attachments) {
        let (data, attachments) = args_to_json(&values);
        let again = args_from_json(&data, &attachments).expect("placeholders made here point at their attachments");
        assert_eq!(args_to_json(&again), (data, attachments));
    }
    // To a binding and back.
    let (json, attachments) = payload_to_parts(payload.clone());
    let _ = payload_from_parts(&json, attachments);
}

fuzz_target!(|frames: Vec<Frame<'_>>| {
    let mut decoder = Decoder::new(Limits { max_attachments: 8, ..Limits::default() });
    for frame in frames {
        let packet = match frame {
            Frame::Text(text) => decoder.decode_text(text.into()),
            Frame::Binary(data) => decoder.decode_binary(Bytes::copy_from_slice(data)),
        };
        if let Ok(Some(packet)) = packet {
            match &packet.kind {
                PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } => read(payload),
                _ => {}
            }
        }
    }
});
