//! Socket.IO v5 packets and the default (JSON text) parser.
//!
//! A packet is written `<type>[<attachments>-][<nsp>,][<ack id>][<json>]`:
//! `2/chat,12["message","hi"]` is an EVENT on `/chat` with ack id 12. A
//! packet whose arguments hold binary data is a BINARY_EVENT or BINARY_ACK:
//! the text part holds placeholders `{"_placeholder":true,"num":i}` and the
//! `n` attachments follow as binary frames, in order.
//!
//! # Canonical form
//! Arguments are kept the way they travel: a JSON array with placeholders
//! plus the list of attachments ([`Payload`]). Encoding is then a single
//! `serde_json` write, and a binding can hand the JSON text and the buffers
//! to its language unchanged (socket.io's own reconstructor does the rest).
//! Objects keep their keys in the order the client wrote them, as
//! JavaScript objects do, so a payload echoed back reads the same.
//!
//! # Limits
//! Decoding never panics and never recurses over client data: `serde_json`
//! stops at 128 levels of nesting, and placeholder validation walks the
//! value with an explicit stack. Namespace names, attachment counts and ack
//! ids are bounded (see [`Limits`]).

use bytes::Bytes;
use bytestring::ByteString;
use serde_json::Value;

use super::engine::Encoded;

/// The largest ack id a JavaScript client can produce (2^53 - 1).
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// `0`: connect to a namespace (auth from the client, `{sid}` from the server).
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event.
    Event = 2,
    /// `3`: an acknowledgement.
    Ack = 3,
    /// `4`: the server refused a CONNECT.
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    fn from_digit(d: u8) -> Option<PacketType> {
        Some(match d {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }
}

/// Event and ack arguments in canonical form: a JSON array whose binary parts
/// are placeholders `{"_placeholder":true,"num":i}` pointing into
/// `attachments`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Payload {
    /// The JSON values (for an event, the first is the event name).
    pub data: Vec<Value>,
    /// The binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
}

impl Payload {
    /// A payload without binary parts.
    pub fn json(data: Vec<Value>) -> Payload {
        Payload { data, attachments: Vec::new() }
    }

    /// The placeholder that stands for attachment `num`.
    pub fn placeholder(num: usize) -> Value {
        serde_json::json!({ "_placeholder": true, "num": num })
    }

    /// Appends a binary argument (as a placeholder plus an attachment).
    pub fn push_binary(&mut self, data: Bytes) {
        self.data.push(Payload::placeholder(self.attachments.len()));
        self.attachments.push(data);
    }
}

/// A Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The namespace (`/` for the main namespace).
    pub nsp: ByteString,
    /// What the packet carries.
    pub kind: PacketKind,
}

/// The body of a [`Packet`].
#[derive(Debug, Clone, PartialEq)]
pub enum PacketKind {
    /// CONNECT: the client's auth payload, or the server's `{"sid": ...}`.
    Connect(Option<Value>),
    /// DISCONNECT.
    Disconnect,
    /// EVENT or BINARY_EVENT: `[name, ...args]`, with an ack id when the
    /// sender wants an answer.
    Event {
        /// The event name and arguments.
        payload: Payload,
        /// The ack id, if an acknowledgement is expected.
        id: Option<u64>,
    },
    /// ACK or BINARY_ACK: the answer to an event with ack id `id`.
    Ack {
        /// The acknowledgement's arguments.
        payload: Payload,
        /// The ack id being answered.
        id: u64,
    },
    /// CONNECT_ERROR: why a CONNECT was refused (`{"message": ...}`).
    ConnectError(Value),
}

impl Packet {
    /// A CONNECT reply for socket `sid`.
    pub fn connect_ok(nsp: impl Into<ByteString>, sid: &str) -> Packet {
        Packet { nsp: nsp.into(), kind: PacketKind::Connect(Some(serde_json::json!({ "sid": sid }))) }
    }

    /// A CONNECT reply with the socket id and the private session id that
    /// connection-state recovery uses (`{"sid":..,"pid":..}`).
    pub fn connect_ok_with_pid(nsp: impl Into<ByteString>, sid: &str, pid: &str) -> Packet {
        Packet { nsp: nsp.into(), kind: PacketKind::Connect(Some(serde_json::json!({ "sid": sid, "pid": pid }))) }
    }

    /// A CONNECT_ERROR with `message` and optional `data`.
    pub fn connect_error(nsp: impl Into<ByteString>, message: &str, data: Option<Value>) -> Packet {
        let mut body = serde_json::json!({ "message": message });
        if let Some(data) = data {
            body["data"] = data;
        }
        Packet { nsp: nsp.into(), kind: PacketKind::ConnectError(body) }
    }

    /// An EVENT (or BINARY_EVENT when `args` has attachments).
    pub fn event(nsp: impl Into<ByteString>, event: &str, args: Payload, id: Option<u64>) -> Packet {
        let mut payload = args;
        payload.data.insert(0, Value::String(event.to_owned()));
        Packet { nsp: nsp.into(), kind: PacketKind::Event { payload, id } }
    }

    /// An ACK (or BINARY_ACK when `args` has attachments).
    pub fn ack(nsp: impl Into<ByteString>, id: u64, args: Payload) -> Packet {
        Packet { nsp: nsp.into(), kind: PacketKind::Ack { payload: args, id } }
    }

    /// A DISCONNECT.
    pub fn disconnect(nsp: impl Into<ByteString>) -> Packet {
        Packet { nsp: nsp.into(), kind: PacketKind::Disconnect }
    }

    /// The wire type of this packet.
    pub fn packet_type(&self) -> PacketType {
        match &self.kind {
            PacketKind::Connect(_) => PacketType::Connect,
            PacketKind::Disconnect => PacketType::Disconnect,
            PacketKind::Event { payload, .. } if payload.attachments.is_empty() => PacketType::Event,
            PacketKind::Event { .. } => PacketType::BinaryEvent,
            PacketKind::Ack { payload, .. } if payload.attachments.is_empty() => PacketType::Ack,
            PacketKind::Ack { .. } => PacketType::BinaryAck,
            PacketKind::ConnectError(_) => PacketType::ConnectError,
        }
    }

    /// Encodes this packet as Engine.IO messages: one text message (the
    /// Engine.IO `4` included) followed by one binary message per attachment.
    ///
    /// # Examples
    /// ```
    /// use tidewire::protocol::engine::Encoded;
    /// use tidewire::protocol::socketio::{Packet, Payload};
    /// let p = Packet::event("/chat", "hi", Payload::json(vec![1.into()]), Some(3));
    /// assert_eq!(p.encode(), vec![Encoded::Text(r#"42/chat,3["hi",1]"#.into())]);
    /// ```
    pub fn encode(&self) -> Vec<Encoded> {
        let mut out = String::with_capacity(64);
        out.push('4');
        let ty = self.packet_type();
        out.push((b'0' + ty as u8) as char);
        let attachments = match &self.kind {
            PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } => &payload.attachments[..],
            _ => &[],
        };
        if !attachments.is_empty() {
            out.push_str(itoa(attachments.len() as u64).as_str());
            out.push('-');
        }
        if &*self.nsp != "/" {
            out.push_str(&self.nsp);
            out.push(',');
        }
        let id = match &self.kind {
            PacketKind::Event { id, .. } => *id,
            PacketKind::Ack { id, .. } => Some(*id),
            _ => None,
        };
        if let Some(id) = id {
            out.push_str(itoa(id).as_str());
        }
        // Writing JSON values into a String cannot fail.
        let mut buf = out.into_bytes();
        match &self.kind {
            PacketKind::Connect(Some(v)) | PacketKind::ConnectError(v) => {
                let _ = serde_json::to_writer(&mut buf, v);
            }
            PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } => {
                let _ = serde_json::to_writer(&mut buf, &payload.data);
            }
            PacketKind::Connect(None) | PacketKind::Disconnect => {}
        }
        let text = ByteString::try_from(buf).unwrap_or_default();
        let mut frames = Vec::with_capacity(1 + attachments.len());
        frames.push(Encoded::Text(text));
        frames.extend(attachments.iter().cloned().map(Encoded::Binary));
        frames
    }
}

fn itoa(n: u64) -> String {
    n.to_string()
}

/// Bounds the decoder enforces on client data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most binary attachments one packet may announce (default 10).
    pub max_attachments: usize,
    /// Longest namespace name in bytes (default 256).
    pub max_namespace_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_attachments: 10, max_namespace_len: 256 }
    }
}

/// Why a Socket.IO packet was rejected. Any of these closes the connection
/// with reason `parse error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The packet was empty.
    #[error("empty packet")]
    Empty,
    /// The type digit is unknown.
    #[error("unknown packet type")]
    UnknownType,
    /// A client may not send this packet type.
    #[error("packet type not allowed from a client")]
    TypeNotAllowed,
    /// The attachment count is missing, zero, or over the limit.
    #[error("illegal attachments")]
    IllegalAttachments,
    /// The namespace name is too long or malformed.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// The ack id is not an integer in `0..=2^53-1`.
    #[error("invalid ack id")]
    InvalidAckId,
    /// The JSON part is malformed or nested too deeply.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The JSON part has the wrong shape for the packet type.
    #[error("invalid payload")]
    InvalidPayload,
    /// A placeholder is malformed or points past the attachments.
    #[error("invalid placeholder")]
    InvalidPlaceholder,
    /// A binary frame arrived while no binary packet was being reconstructed.
    #[error("unexpected binary data")]
    UnexpectedBinary,
    /// A text packet arrived while binary attachments were still expected.
    #[error("unexpected text data while reconstructing a binary packet")]
    UnexpectedText,
    /// The msgpack encoding is malformed (truncated, trailing bytes, invalid
    /// UTF-8, a non-string map key, an unsupported extension type or too
    /// much nesting).
    #[error("invalid msgpack: {0}")]
    InvalidMsgpack(String),
}

/// Event names a client may not use (socket.io reserves them).
pub const RESERVED_EVENTS: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// Decoder for the default parser. Stateful: a BINARY_EVENT or BINARY_ACK
/// header is held until its attachments have arrived.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    /// A binary packet waiting for attachments (boxed: rare, and every
    /// connection holds a decoder).
    pending: Option<Box<(Packet, usize)>>,
    /// Decoding a server's packets (a client's decoder): CONNECT_ERROR is
    /// allowed.
    from_server: bool,
}

impl Decoder {
    /// A decoder of a client's packets with the given limits.
    pub fn new(limits: Limits) -> Decoder {
        Decoder { limits, pending: None, from_server: false }
    }

    /// A decoder of a server's packets (for a client): CONNECT_ERROR is
    /// allowed too.
    pub fn for_client(limits: Limits) -> Decoder {
        Decoder { limits, pending: None, from_server: true }
    }

    /// Whether attachments are still expected.
    pub fn is_reconstructing(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes a text message (the Engine.IO message payload, without its
    /// `4`). Returns `None` while binary attachments are awaited.
    ///
    /// # Errors
    /// [`ParseError`] describing the first problem found.
    ///
    /// # Examples
    /// ```
    /// use tidewire::protocol::socketio::{Decoder, PacketKind};
    /// let mut d = Decoder::default();
    /// let p = d.decode_text("2/chat,7[\"hi\",1]".into()).unwrap().unwrap();
    /// assert!(matches!(p.kind, PacketKind::Event { id: Some(7), .. }));
    /// assert!(d.decode_text("2{}".into()).is_err());
    /// ```
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking ownership lets callers hand over a received frame; the result shares its buffer"
    )]
    pub fn decode_text(&mut self, text: ByteString) -> Result<Option<Packet>, ParseError> {
        if self.pending.is_some() {
            return Err(ParseError::UnexpectedText);
        }
        let (packet, attachments) = decode_header(&text, self.limits, self.from_server)?;
        if attachments > 0 {
            self.pending = Some(Box::new((packet, attachments)));
            Ok(None)
        } else {
            Ok(Some(packet))
        }
    }

    /// Decodes a binary message: the next attachment of the pending packet.
    /// Returns the packet once its last attachment has arrived.
    ///
    /// # Errors
    /// [`ParseError::UnexpectedBinary`] when no binary packet is pending.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, ParseError> {
        let Some((packet, expected)) = self.pending.as_deref_mut() else {
            return Err(ParseError::UnexpectedBinary);
        };
        let payload = match &mut packet.kind {
            PacketKind::Event { payload, .. } | PacketKind::Ack { payload, .. } => payload,
            _ => return Err(ParseError::UnexpectedBinary),
        };
        payload.attachments.push(data);
        if payload.attachments.len() == *expected { Ok(self.pending.take().map(|b| b.0)) } else { Ok(None) }
    }
}

/// Decodes a packet's text part and returns it with its attachment count.
fn decode_header(text: &ByteString, limits: Limits, from_server: bool) -> Result<(Packet, usize), ParseError> {
    let s = text.as_bytes();
    let ty = PacketType::from_digit(*s.first().ok_or(ParseError::Empty)?).ok_or(ParseError::UnknownType)?;
    let mut i = 1;

    let mut attachments = 0;
    if matches!(ty, PacketType::BinaryEvent | PacketType::BinaryAck) {
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 4 || s.get(i) != Some(&b'-') {
            return Err(ParseError::IllegalAttachments);
        }
        attachments = text[start..i].parse::<usize>().map_err(|_| ParseError::IllegalAttachments)?;
        if attachments == 0 || attachments > limits.max_attachments {
            return Err(ParseError::IllegalAttachments);
        }
        i += 1;
    }

    let nsp = if s.get(i) == Some(&b'/') {
        let start = i;
        while i < s.len() && s[i] != b',' {
            i += 1;
            if i - start > limits.max_namespace_len {
                return Err(ParseError::InvalidNamespace);
            }
        }
        let nsp = text.slice_ref(&text[start..i]);
        if i < s.len() {
            i += 1; // the comma
        }
        nsp
    } else {
        ByteString::from_static("/")
    };

    let mut id = None;
    if s.get(i).is_some_and(u8::is_ascii_digit) {
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
            if i - start > 16 {
                return Err(ParseError::InvalidAckId);
            }
        }
        let n: u64 = text[start..i].parse().map_err(|_| ParseError::InvalidAckId)?;
        if n > MAX_ACK_ID {
            return Err(ParseError::InvalidAckId);
        }
        id = Some(n);
    }

    let json = &text[i..];
    let value: Option<Value> = if json.is_empty() {
        None
    } else {
        Some(serde_json::from_str(json).map_err(|e| ParseError::InvalidJson(e.to_string()))?)
    };

    let kind = match (ty, value) {
        (PacketType::Connect, v) if id.is_none() => match v {
            None => PacketKind::Connect(None),
            Some(v @ Value::Object(_)) => PacketKind::Connect(Some(v)),
            Some(_) => return Err(ParseError::InvalidPayload),
        },
        (PacketType::Disconnect, None) if id.is_none() => PacketKind::Disconnect,
        (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(data))) => {
            match data.first() {
                Some(Value::String(name)) if !RESERVED_EVENTS.contains(&name.as_str()) => {}
                Some(Value::Number(_)) => {}
                _ => return Err(ParseError::InvalidPayload),
            }
            check_placeholders(&data, attachments)?;
            PacketKind::Event { payload: Payload::json(data), id }
        }
        (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(data))) => {
            let id = id.ok_or(ParseError::InvalidAckId)?;
            check_placeholders(&data, attachments)?;
            PacketKind::Ack { payload: Payload::json(data), id }
        }
        (PacketType::ConnectError, Some(v @ Value::Object(_))) if from_server && id.is_none() => {
            PacketKind::ConnectError(v)
        }
        (PacketType::ConnectError, _) if !from_server => return Err(ParseError::TypeNotAllowed),
        _ => return Err(ParseError::InvalidPayload),
    };
    Ok((Packet { nsp, kind }, attachments))
}

/// Whether `map` is meant as a placeholder (`"_placeholder": true`), as
/// socket.io's reconstructor decides it; its `num` may still be invalid.
pub(crate) fn is_placeholder(map: &serde_json::Map<String, Value>) -> bool {
    map.get("_placeholder") == Some(&Value::Bool(true))
}

/// Checks every placeholder: `num` must be an integer in `0..attachments`.
/// A packet without attachments may hold no placeholder at all. Iterative,
/// so hostile nesting cannot overflow the stack.
pub fn check_placeholders(data: &[Value], attachments: usize) -> Result<(), ParseError> {
    referenced_attachments(data, attachments).map(|_| ())
}

/// Checks the placeholders like [`check_placeholders`] and returns how many
/// distinct attachments they point to (an outgoing payload must point to
/// every one).
///
/// # Errors
/// [`ParseError::InvalidPlaceholder`] for a placeholder whose `num` is not
/// an integer below `attachments`.
pub fn referenced_attachments(data: &[Value], attachments: usize) -> Result<usize, ParseError> {
    let mut seen = vec![false; attachments];
    let mut stack: Vec<&Value> = data.iter().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if is_placeholder(map) {
                    match map.get("num").and_then(Value::as_u64) {
                        Some(n) if (n as usize) < attachments && map["num"].is_u64() => seen[n as usize] = true,
                        _ => return Err(ParseError::InvalidPlaceholder),
                    }
                } else {
                    stack.extend(map.values());
                }
            }
            _ => {}
        }
    }
    Ok(seen.iter().filter(|s| **s).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(s: &str) -> Result<Option<Packet>, ParseError> {
        Decoder::default().decode_text(s.into())
    }

    #[test]
    fn decodes_connects() {
        let p = decode("0").unwrap().unwrap();
        assert_eq!(p, Packet { nsp: "/".into(), kind: PacketKind::Connect(None) });
        let p = decode(r#"0/chat,{"token":"x"}"#).unwrap().unwrap();
        assert_eq!(p.nsp, "/chat");
        assert_eq!(p.kind, PacketKind::Connect(Some(json!({"token": "x"}))));
        let p = decode("0/chat").unwrap().unwrap();
        assert_eq!(p.kind, PacketKind::Connect(None));
        assert_eq!(decode("0[]"), Err(ParseError::InvalidPayload));
        assert_eq!(decode("1/chat,").unwrap().unwrap().kind, PacketKind::Disconnect);
    }

    #[test]
    fn decodes_events_and_acks() {
        let p = decode(r#"2["a",1,{"b":null}]"#).unwrap().unwrap();
        assert_eq!(
            p.kind,
            PacketKind::Event { payload: Payload::json(vec![json!("a"), json!(1), json!({"b": null})]), id: None }
        );
        let p = decode(r#"2/x,9007199254740991["a"]"#).unwrap().unwrap();
        assert!(matches!(p.kind, PacketKind::Event { id: Some(MAX_ACK_ID), .. }));
        let p = decode(r#"312[]"#).unwrap().unwrap();
        assert_eq!(p.kind, PacketKind::Ack { payload: Payload::default(), id: 12 });
        assert!(decode(r#"2[42]"#).is_ok(), "numeric event names are allowed");
    }

    #[test]
    fn keys_keep_the_client_order() {
        let text = r#"2["echo",{"b":1,"a":{"z":null,"y":[{"d":1,"c":2}]}}]"#;
        let p = decode(text).unwrap().unwrap();
        assert_eq!(p.encode()[0], Encoded::Text(format!("4{text}").into()));
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(decode(""), Err(ParseError::Empty));
        assert_eq!(decode("9"), Err(ParseError::UnknownType));
        assert_eq!(decode("a"), Err(ParseError::UnknownType));
        assert_eq!(decode("2{}"), Err(ParseError::InvalidPayload));
        assert_eq!(decode("2"), Err(ParseError::InvalidPayload));
        assert_eq!(decode("2[]"), Err(ParseError::InvalidPayload));
        assert_eq!(decode(r#"2["connect"]"#), Err(ParseError::InvalidPayload));
        assert!(matches!(decode(r#"2abc["x"]"#), Err(ParseError::InvalidJson(_))));
        assert_eq!(decode(r#"29007199254740992["x"]"#), Err(ParseError::InvalidAckId));
        assert_eq!(decode(r#"299999999999999999999["x"]"#), Err(ParseError::InvalidAckId));
        assert_eq!(decode("3[]"), Err(ParseError::InvalidAckId));
        assert_eq!(decode("4{}"), Err(ParseError::TypeNotAllowed));
        // A client's decoder takes the server's CONNECT_ERROR (an object).
        let mut client = Decoder::for_client(Limits::default());
        let p = client.decode_text(r#"4/chat,{"message":"no"}"#.into()).unwrap().unwrap();
        assert_eq!(p.kind, PacketKind::ConnectError(serde_json::json!({"message": "no"})));
        assert_eq!(client.decode_text("4\"no\"".into()), Err(ParseError::InvalidPayload));
        assert_eq!(decode("1[]"), Err(ParseError::InvalidPayload));
        let long = format!("0/{}", "a".repeat(300));
        assert_eq!(decode(&long), Err(ParseError::InvalidNamespace));
        let deep = format!("2[\"x\",{}]", "[".repeat(200_000));
        assert!(matches!(decode(&deep), Err(ParseError::InvalidJson(_))));
    }

    #[test]
    fn binary_reconstruction() {
        let mut d = Decoder::default();
        let header = r#"52-["up",{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}]"#;
        assert_eq!(d.decode_text(header.into()), Ok(None));
        assert!(d.is_reconstructing());
        assert_eq!(d.decode_text("2[\"x\"]".into()), Err(ParseError::UnexpectedText));
        assert_eq!(d.decode_binary(Bytes::from_static(b"a")), Ok(None));
        let p = d.decode_binary(Bytes::from_static(b"b")).unwrap().unwrap();
        let PacketKind::Event { payload, .. } = &p.kind else { panic!("not an event") };
        assert_eq!(payload.attachments, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert_eq!(p.packet_type(), PacketType::BinaryEvent);
        let frames = p.encode();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0], Encoded::Text(format!("4{header}").into()));
        assert_eq!(d.decode_binary(Bytes::from_static(b"c")), Err(ParseError::UnexpectedBinary));
    }

    #[test]
    fn rejects_bad_attachments_and_placeholders() {
        assert_eq!(decode(r#"50-["x"]"#), Err(ParseError::IllegalAttachments));
        assert_eq!(decode(r#"511-["x"]"#), Err(ParseError::IllegalAttachments));
        assert_eq!(decode(r#"5["x"]"#), Err(ParseError::IllegalAttachments));
        assert_eq!(decode(r#"5a-["x"]"#), Err(ParseError::IllegalAttachments));
        for num in [r#""splice""#, "-1", "0.5", "1", "1e0", "null"] {
            let s = format!(r#"51-["x",{{"_placeholder":true,"num":{num}}}]"#);
            assert_eq!(decode(&s), Err(ParseError::InvalidPlaceholder), "{num}");
        }
        assert_eq!(decode(r#"2["x",{"_placeholder":true,"num":0}]"#), Err(ParseError::InvalidPlaceholder));
    }

    #[test]
    fn encodes_every_kind() {
        assert_eq!(Packet::connect_ok("/", "abc").encode()[0], Encoded::Text(r#"40{"sid":"abc"}"#.into()));
        assert_eq!(
            Packet::connect_error("/random", "Invalid namespace", None).encode()[0],
            Encoded::Text(r#"44/random,{"message":"Invalid namespace"}"#.into())
        );
        assert_eq!(Packet::disconnect("/chat").encode()[0], Encoded::Text("41/chat,".into()));
        let mut args = Payload::default();
        args.push_binary(Bytes::from_static(&[1]));
        let frames = Packet::ack("/", 5, args).encode();
        assert_eq!(frames[0], Encoded::Text(r#"461-5[{"_placeholder":true,"num":0}]"#.into()));
        assert_eq!(frames[1], Encoded::Binary(Bytes::from_static(&[1])));
    }
}
