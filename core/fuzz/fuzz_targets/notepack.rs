//! The notepack layer every cluster codec reads through:
//! `notepack::Data::from_msgpack` on arbitrary bytes, then the hub's form
//! (JSON plus binary attachments) and back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewire::cluster::wire::notepack::{Data, args_from_json, args_to_json};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = Data::from_msgpack(data) else { return };
    // What was accepted encodes to bytes that decode again, and encoding
    // is then stable (compared as bytes: a NaN float is not equal to itself).
    let bytes = value.to_msgpack();
    let again = Data::from_msgpack(&bytes).expect("a decoded value re-encodes to a valid one");
    assert_eq!(again.to_msgpack(), bytes);
    // The hub's form: placeholders numbered across the arguments, and back.
    let (json, attachments) = args_to_json(std::slice::from_ref(&value));
    let back = args_from_json(&json, &attachments).expect("placeholders made here point at their attachments");
    assert_eq!(back.len(), 1);
    let _ = value.to_json_string();
});
