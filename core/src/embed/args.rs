//! Event arguments across a language boundary: JSON text plus binary
//! attachments, both directions.
//!
//! # The format
//! The arguments are one JSON array. Each binary value anywhere inside it
//! (a Node `Buffer` or typed array, a Python `bytes`) is replaced by the
//! Socket.IO placeholder `{"_placeholder":true,"num":i}`, where `i` is its
//! index in the attachments, numbered in the order a depth-first walk meets
//! them. This is the shape the Socket.IO parser puts on the wire, so core
//! forwards it without copying binary data into JSON.
//!
//! # The host side
//! Core checks and converts the parts ([`payload_from_parts`],
//! [`payload_to_parts`]); the host only has to swap binary values for
//! placeholders while it serializes, and back while it parses. Walking the
//! values in Rust would cost a conversion of every value through the FFI,
//! so each binding uses its language's JSON hook instead, the same three
//! lines everywhere:
//!
//! * to JSON: serialize with a hook that, for a binary value, appends it to
//!   `attachments` and returns [`placeholder`]`(attachments.len() - 1)`
//!   (JavaScript: `JSON.stringify`'s replacer looking at `this[key]`;
//!   Python: `json.dumps(default=...)`);
//! * from JSON: parse with a hook that turns an object for which
//!   [`placeholder_index`] holds into `attachments[num]` (JavaScript:
//!   `JSON.parse`'s reviver; Python: `json.loads(object_hook=...)`).
//!
//! Placeholders coming from a client were checked by the parser, and those
//! from the host are checked by [`payload_from_parts`], so both hooks can
//! trust `num`.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::error::{EmbedError, invalid};
use crate::protocol::socketio::{Payload, referenced_attachments};

/// The placeholder of attachment `num`: `{"_placeholder":true,"num":num}`.
pub fn placeholder(num: usize) -> Value {
    Payload::placeholder(num)
}

/// The attachment index of `object` when it is a placeholder for one of
/// `attachments` attachments.
pub fn placeholder_index(object: &Map<String, Value>, attachments: usize) -> Option<usize> {
    if object.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    let num = usize::try_from(object.get("num")?.as_u64()?).ok()?;
    (num < attachments).then_some(num)
}

/// Arguments from another language: `json` must be a JSON array whose
/// placeholders (`{"_placeholder":true,"num":i}`) match `attachments`.
///
/// # Errors
/// [`EmbedError::InvalidArgument`] otherwise.
pub fn payload_from_parts(json: &str, attachments: Vec<Bytes>) -> Result<Payload, EmbedError> {
    let data: Vec<Value> =
        serde_json::from_str(json).map_err(|e| invalid(format!("arguments must be a JSON array: {e}")))?;
    let referenced = referenced_attachments(&data, attachments.len()).map_err(|e| invalid(e.to_string()))?;
    if referenced != attachments.len() {
        return Err(invalid("every attachment must be referenced by a placeholder"));
    }
    Ok(Payload { data, attachments })
}

/// Arguments for another language: the JSON array (placeholders in place
/// of binary parts) and the attachments.
pub fn payload_to_parts(payload: Payload) -> (String, Vec<Bytes>) {
    let json = serde_json::to_string(&payload.data).unwrap_or_else(|_| "[]".to_owned());
    (json, payload.attachments)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The host's parse hook, as the bindings write it.
    fn revive(value: Value, attachments: &[Bytes]) -> Result<Value, Bytes> {
        match value {
            Value::Object(o) => match placeholder_index(&o, attachments.len()) {
                Some(i) => Err(attachments[i].clone()),
                None => Ok(Value::Object(o)),
            },
            other => Ok(other),
        }
    }

    #[test]
    fn binary_arguments_round_trip() {
        let attachments = vec![Bytes::from_static(&[0, 1, 255]), Bytes::from_static(b"")];
        let json = format!(r#"["bin",{},{{"nested":[{}]}}]"#, placeholder(0), placeholder(1));
        let payload = payload_from_parts(&json, attachments.clone()).unwrap();
        assert_eq!(payload.data[1], placeholder(0));
        let (text, back) = payload_to_parts(payload);
        assert_eq!(back, attachments);
        let data: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(revive(data[1].clone(), &back), Err(Bytes::from_static(&[0, 1, 255])));
        assert_eq!(revive(data[2]["nested"][0].clone(), &back), Err(Bytes::new()));
        assert_eq!(revive(json!({"a": 1}), &back), Ok(json!({"a": 1})));
    }

    #[test]
    fn only_real_placeholders_are_indices() {
        let o = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(placeholder_index(&o(placeholder(2)), 3), Some(2));
        assert_eq!(placeholder_index(&o(placeholder(3)), 3), None);
        assert_eq!(placeholder_index(&o(json!({"_placeholder": "true", "num": 0})), 1), None);
        assert_eq!(placeholder_index(&o(json!({"_placeholder": true, "num": 0.5})), 1), None);
        assert_eq!(placeholder_index(&o(json!({"_placeholder": true, "num": -1})), 1), None);
    }

    #[test]
    fn parts_round_trip_and_bad_parts_are_refused() {
        let p = payload_from_parts(r#"[1,{"_placeholder":true,"num":0}]"#, vec![Bytes::from_static(b"x")]).unwrap();
        assert_eq!(p.data, vec![json!(1), Payload::placeholder(0)]);
        assert_eq!(
            payload_to_parts(p),
            (r#"[1,{"_placeholder":true,"num":0}]"#.to_owned(), vec![Bytes::from_static(b"x")])
        );
        for (json, n) in [("{}", 0), ("[1", 0), (r#"[{"_placeholder":true,"num":1}]"#, 1), ("[]", 1)] {
            let e = payload_from_parts(json, vec![Bytes::new(); n]).unwrap_err();
            assert_eq!(e.code().as_str(), "ERR_INVALID_ARG", "{json} with {n}");
        }
    }
}
