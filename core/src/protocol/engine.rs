//! Engine.IO v4 packets.
//!
//! On a WebSocket, each text frame is one packet: a one-digit type followed
//! by its data (`4hello` is a message `hello`), and each binary frame is one
//! binary message with no type prefix. Over HTTP long-polling, a payload
//! holds several packets joined by the record separator `\x1e`, with binary
//! messages written as `b` followed by their base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use serde::Serialize;

/// The record separator between packets of a long-polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// A decoded Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake, sent by the server.
    Open(ByteString),
    /// `1`: close the session.
    Close,
    /// `2`: ping, with optional data (`probe` during an upgrade).
    Ping(ByteString),
    /// `3`: pong, echoing the ping's data.
    Pong(ByteString),
    /// `4` or a binary frame: an application message.
    Message(Frame),
    /// `5`: the client switches the session to the probed transport.
    Upgrade,
    /// `6`: no operation (used to release a pending polling request).
    Noop,
}

/// An application message: text or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A UTF-8 text message.
    Text(ByteString),
    /// A binary message.
    Binary(Bytes),
}

impl Frame {
    /// The message's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(s) => s.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An Engine.IO packet encoded for the wire, cheap to clone and share between
/// sessions (a broadcast is encoded once and every recipient gets a clone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// A complete text packet, type digit included (`4hello`, `2`, `6`).
    Text(ByteString),
    /// A binary message (no type prefix on a WebSocket).
    Binary(Bytes),
}

impl Encoded {
    /// The number of bytes this packet takes on a WebSocket.
    pub fn len(&self) -> usize {
        match self {
            Encoded::Text(s) => s.len(),
            Encoded::Binary(b) => b.len(),
        }
    }

    /// Whether the encoded packet is empty (never true for a valid packet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A text message packet: `4` followed by `text`.
    pub fn message(text: &str) -> Encoded {
        let mut s = String::with_capacity(text.len() + 1);
        s.push('4');
        s.push_str(text);
        Encoded::Text(s.into())
    }
}

/// Why an Engine.IO packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet was empty.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type.
    #[error("invalid packet type")]
    InvalidType,
    /// A packet type that carries no data had data.
    #[error("unexpected data after packet type")]
    UnexpectedData,
    /// The polling payload was not valid UTF-8.
    #[error("payload is not valid UTF-8")]
    InvalidUtf8,
    /// A `b`-prefixed packet (a binary message as base64) was not valid base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// The polling payload held more packets than allowed.
    #[error("too many packets in payload")]
    TooManyPackets,
}

impl Packet {
    /// Decodes one text packet (a WebSocket text frame or one record of a
    /// polling payload). Takes the string by value so that message data is a
    /// zero-copy slice of it.
    ///
    /// # Errors
    /// [`DecodeError`] when the type digit is missing or unknown, when a
    /// type without data carries some, or when a `b` (base64 binary
    /// message) is not valid base64.
    ///
    /// # Examples
    /// ```
    /// use tidewire::protocol::engine::{Frame, Packet};
    /// let p = Packet::decode_text("4hello".into()).unwrap();
    /// assert_eq!(p, Packet::Message(Frame::Text("hello".into())));
    /// assert!(Packet::decode_text("abc".into()).is_err());
    /// let b = Packet::decode_text("b4OHi".into()).unwrap();
    /// assert_eq!(b, Packet::Message(Frame::Binary(vec![0xe0, 0xe1, 0xe2].into())));
    /// ```
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taking ownership lets callers hand over a received frame; the result shares its buffer"
    )]
    pub fn decode_text(text: ByteString) -> Result<Packet, DecodeError> {
        let first = *text.as_bytes().first().ok_or(DecodeError::Empty)?;
        let data = || text.slice_ref(&text[1..]);
        let no_data = |p: Packet| {
            if text.len() == 1 { Ok(p) } else { Err(DecodeError::UnexpectedData) }
        };
        match first {
            b'0' => Ok(Packet::Open(data())),
            b'1' => no_data(Packet::Close),
            b'2' => Ok(Packet::Ping(data())),
            b'3' => Ok(Packet::Pong(data())),
            b'4' => Ok(Packet::Message(Frame::Text(data()))),
            b'5' => no_data(Packet::Upgrade),
            b'6' => no_data(Packet::Noop),
            // A binary message as base64 text, on every transport (as
            // engine.io-parser's decodePacket reads it).
            b'b' => {
                let data = BASE64.decode(&text[1..]).map_err(|_| DecodeError::InvalidBase64)?;
                Ok(Packet::Message(Frame::Binary(data.into())))
            }
            _ => Err(DecodeError::InvalidType),
        }
    }

    /// A binary WebSocket frame: always a binary message.
    pub fn decode_binary(data: Bytes) -> Packet {
        Packet::Message(Frame::Binary(data))
    }

    /// Encodes this packet for the wire.
    ///
    /// # Examples
    /// ```
    /// use tidewire::protocol::engine::{Encoded, Packet};
    /// assert_eq!(Packet::Ping("probe".into()).encode(), Encoded::Text("2probe".into()));
    /// ```
    pub fn encode(&self) -> Encoded {
        let (digit, data): (char, &str) = match self {
            Packet::Open(d) => ('0', d),
            Packet::Close => ('1', ""),
            Packet::Ping(d) => ('2', d),
            Packet::Pong(d) => ('3', d),
            Packet::Message(Frame::Text(d)) => ('4', d),
            Packet::Message(Frame::Binary(b)) => return Encoded::Binary(b.clone()),
            Packet::Upgrade => ('5', ""),
            Packet::Noop => ('6', ""),
        };
        let mut s = String::with_capacity(1 + data.len());
        s.push(digit);
        s.push_str(data);
        Encoded::Text(s.into())
    }
}

/// The handshake the server sends in its OPEN packet. Exactly these five
/// keys: clients and test tools reject others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The session id.
    pub sid: String,
    /// Transports the client may upgrade to (`["websocket"]` on polling).
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// The largest payload the server accepts, in bytes.
    pub max_payload: u64,
}

impl Handshake {
    /// The OPEN packet carrying this handshake.
    pub fn to_packet(&self) -> Packet {
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        Packet::Open(json.into())
    }
}

/// Encodes packets as one long-polling payload: records joined by `\x1e`,
/// binary messages as `b<base64>`.
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use tidewire::protocol::engine::{encode_payload, Encoded};
/// let body = encode_payload(&[Encoded::Text("4hi".into()), Encoded::Binary(Bytes::from_static(&[1, 2]))]);
/// assert_eq!(&body[..], b"4hi\x1ebAQI=");
/// ```
pub fn encode_payload(packets: &[Encoded]) -> Bytes {
    let size: usize = packets
        .iter()
        .map(|p| match p {
            Encoded::Text(s) => s.len() + 1,
            Encoded::Binary(b) => b.len().div_ceil(3) * 4 + 2,
        })
        .sum();
    let mut out = BytesMut::with_capacity(size);
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        match p {
            Encoded::Text(s) => out.put_slice(s.as_bytes()),
            Encoded::Binary(b) => {
                out.put_u8(b'b');
                out.put_slice(BASE64.encode(b).as_bytes());
            }
        }
    }
    out.freeze()
}

/// Decodes a long-polling payload into its packets. At most `max_packets`
/// records are accepted.
///
/// # Errors
/// [`DecodeError`] on invalid UTF-8, invalid base64, a bad record or too many
/// records. Nothing is returned unless the whole payload is valid.
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use tidewire::protocol::engine::{decode_payload, Frame, Packet};
/// let packets = decode_payload(Bytes::from_static(b"4hi\x1ebAQI="), 16).unwrap();
/// assert_eq!(packets[1], Packet::Message(Frame::Binary(Bytes::from_static(&[1, 2]))));
/// ```
pub fn decode_payload(body: Bytes, max_packets: usize) -> Result<Vec<Packet>, DecodeError> {
    let text = ByteString::try_from(body).map_err(|_| DecodeError::InvalidUtf8)?;
    let mut packets = Vec::new();
    for record in text.split('\u{1e}') {
        if packets.len() == max_packets {
            return Err(DecodeError::TooManyPackets);
        }
        packets.push(Packet::decode_text(text.slice_ref(record))?);
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_type() {
        let cases = [
            ("0{}", Packet::Open("{}".into())),
            ("1", Packet::Close),
            ("2", Packet::Ping("".into())),
            ("2probe", Packet::Ping("probe".into())),
            ("3probe", Packet::Pong("probe".into())),
            ("4", Packet::Message(Frame::Text("".into()))),
            ("4héllo", Packet::Message(Frame::Text("héllo".into()))),
            ("5", Packet::Upgrade),
            ("6", Packet::Noop),
        ];
        for (text, packet) in cases {
            assert_eq!(Packet::decode_text(text.into()).as_ref(), Ok(&packet), "{text}");
            assert_eq!(packet.encode(), Encoded::Text(text.into()));
        }
    }

    #[test]
    fn rejects_bad_packets() {
        assert_eq!(Packet::decode_text("".into()), Err(DecodeError::Empty));
        assert_eq!(Packet::decode_text("abc".into()), Err(DecodeError::InvalidType));
        assert_eq!(Packet::decode_text("7".into()), Err(DecodeError::InvalidType));
        assert_eq!(Packet::decode_text("1x".into()), Err(DecodeError::UnexpectedData));
        assert_eq!(Packet::decode_text("5probe".into()), Err(DecodeError::UnexpectedData));
    }

    #[test]
    fn handshake_has_exactly_five_keys() {
        let h = Handshake {
            sid: "abc".into(),
            upgrades: vec!["websocket".into()],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        };
        let Packet::Open(json) = h.to_packet() else { panic!("not an open packet") };
        assert_eq!(
            &*json,
            r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
    }

    #[test]
    fn payload_round_trip_and_errors() {
        let body = Bytes::from_static(b"2\x1e4hello\x1ebAAEC\x1e6");
        let packets = decode_payload(body, 16).unwrap();
        assert_eq!(packets.len(), 4);
        assert_eq!(packets[2], Packet::Message(Frame::Binary(Bytes::from_static(&[0, 1, 2]))));
        let encoded: Vec<_> = packets.iter().map(Packet::encode).collect();
        assert_eq!(&encode_payload(&encoded)[..], b"2\x1e4hello\x1ebAAEC\x1e6");
        assert_eq!(decode_payload(Bytes::from_static(b"b!!"), 16), Err(DecodeError::InvalidBase64));
        assert_eq!(decode_payload(Bytes::from_static(&[0xff]), 16), Err(DecodeError::InvalidUtf8));
        assert_eq!(decode_payload(Bytes::from_static(b"6\x1e6\x1e6"), 2), Err(DecodeError::TooManyPackets));
        assert_eq!(decode_payload(Bytes::new(), 2), Err(DecodeError::Empty));
    }
}
