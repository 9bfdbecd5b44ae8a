//! A connect middleware written in another language answers with a
//! decision, JSON text in one of two shapes:
//!
//! * `{"admit": result}`: the middleware returned `result` (whatever it
//!   was: `null`, or an object with the optional keys `user`, `data`,
//!   `presence`). The socket is admitted; with `user` (a string, or any
//!   other value turned into its text) as that user (it joins
//!   `user:<id>`), with `data` as its data and `presence` as its presence
//!   metadata. Other keys and non-object results are ignored.
//! * `{"refuse": message, "data": data}`: the middleware threw or raised;
//!   the client gets a CONNECT_ERROR with `message` and `data` (if given).
//!
//! The host wraps the middleware's outcome and nothing else: picking the
//! keys, turning the user into text and building the refusal happen here.

use serde_json::Value;

use crate::hub::{Admission, ConnectError};

/// The admission or refusal `json` (see the [module](self)) stands for.
///
/// # Errors
/// The refusal, or a refusal saying the decision was not valid.
pub fn admission_from_decision(json: &str) -> Result<Admission, ConnectError> {
    let decision: Value = serde_json::from_str(json)
        .map_err(|e| ConnectError::new(format!("the connect middleware answered invalid JSON: {e}")))?;
    if let Some(message) = decision.get("refuse") {
        let message = message.as_str().map_or_else(|| message.to_string(), str::to_owned);
        let mut refusal = ConnectError::new(message);
        if let Some(data) = decision.get("data") {
            refusal = refusal.with_data(data.clone());
        }
        return Err(refusal);
    }
    let Some(result) = decision.get("admit") else {
        return Err(ConnectError::new("the connect middleware answered neither admit nor refuse"));
    };
    let mut admission = match result.get("user") {
        None | Some(Value::Null) => Admission::accept(),
        Some(Value::String(user)) => Admission::user(user.clone()),
        Some(other) => Admission::user(other.to_string()),
    };
    if let Some(data) = result.get("data") {
        admission = admission.with_data(data.clone());
    }
    if let Some(meta) = result.get("presence") {
        admission = admission.with_presence(meta.clone());
    }
    Ok(admission)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn admissions() {
        for json in [r#"{"admit":null}"#, r#"{"admit":{}}"#, r#"{"admit":7}"#, r#"{"admit":{"user":null}}"#] {
            assert_eq!(admission_from_decision(json).unwrap(), Admission::accept(), "{json}");
        }
        let a =
            admission_from_decision(r#"{"admit":{"user":"alice","data":{"a":1},"presence":{"n":"A"},"x":1}}"#).unwrap();
        assert_eq!(a.user_id.as_deref(), Some("alice"));
        assert_eq!(a.data, Some(json!({"a": 1})));
        assert_eq!(a.presence, Some(json!({"n": "A"})));
        assert_eq!(admission_from_decision(r#"{"admit":{"user":42}}"#).unwrap().user_id.as_deref(), Some("42"));
    }

    #[test]
    fn refusals() {
        let refusal = admission_from_decision(r#"{"refuse":"nope","data":{"why":1}}"#).unwrap_err();
        assert_eq!((refusal.message.as_str(), refusal.data), ("nope", Some(json!({"why": 1}))));
        assert_eq!(admission_from_decision(r#"{"refuse":"no"}"#).unwrap_err().data, None);
        assert!(admission_from_decision("not json").is_err());
        assert!(admission_from_decision("{}").is_err());
        assert!(admission_from_decision(r#"{"error":"old shape"}"#).is_err());
    }
}
