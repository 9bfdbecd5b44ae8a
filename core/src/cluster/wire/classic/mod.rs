//! Wire format of `@socket.io/redis-adapter` 8.x in classic mode (`createAdapter`), so that a Tidewire node can
//! join a Node socket.io cluster: the msgpack broadcast message, the inter-node requests and their responses, on
//! the channels named by [`channels`](super::channels). Pure encoding and decoding; no I/O.
//!
//! # What travels where (prefix `socket.io`, namespace `/chat`)
//! - **Broadcasts** go out with `PUBLISH socket.io#/chat#` (every socket of the namespace, or several rooms), or
//!   `PUBLISH socket.io#/chat#<room>#` when exactly one room is named. Nodes receive them with
//!   `PSUBSCRIBE socket.io#/chat#*` and drop their own (same `uid`). The body is notepack.io msgpack of
//!   `[uid, packet, opts]`: `packet = {type: 2, data: [event, ...args], nsp}` (plus `id` when a socket.io
//!   session-recovery emit carried an ack id), `opts = {rooms: [...], except: [...], flags: {...}}`. The packet is
//!   published before socket.io-parser runs, so binary arguments travel as msgpack `bin` inside `data` and the type
//!   stays EVENT (2). See [`ClassicBroadcast`].
//! - **Requests** go to `socket.io-request#/chat#` (a plain `SUBSCRIBE`), as JSON text, except BROADCAST (a
//!   broadcast that expects acks) which is msgpack because its packet may hold binary. Receivers tell the two apart by
//!   the first byte (`{` is JSON). See [`Request`].
//! - **Responses** go to `socket.io-response#/chat#`, or to `socket.io-response#/chat#<requester uid>#` when the
//!   answering node runs with `publishOnSpecificResponseChannel`; server-side-emit answers always take the
//!   namespace-wide channel. JSON, except BROADCAST_ACK (msgpack). A response names its request only by `requestId`,
//!   and most shapes carry no `type`: decode with [`RawResponse::decode`], look the id up, then
//!   [`RawResponse::interpret`] it as the request that was sent. See [`Response`].
//!
//! # Values
//! Arguments are [`Data`], [`notepack`]'s value tree (JSON's values plus binary and dates); msgpack is notepack.io's
//! and JSON `JSON.stringify`'s, with the divergences listed there. Decoding is tolerant like the Node side: key order
//! does not matter, unknown keys are ignored; a body that is not well-formed msgpack or JSON fails with
//! [`DecodeError`] (notepack's errors wrapped in [`DecodeError::Notepack`]).
//!
//! # Known divergences from the Node side
//! - Rooms that Node holds as numbers (`io.to(42)`) arrive as msgpack/JSON numbers; they decode to their string form
//!   (`"42"`), so Tidewire does not tell room `42` from room `"42"`. Non-integral numbers use serde_json's spelling,
//!   which differs from JavaScript's `String(x)` for some exponents (`1e21`, `1e-6` for `1e+21`, `0.000001`).
//! - The values' own: see [`notepack`].

mod request;
mod response;

use std::io;

use rmp::encode;
use serde_json::{Map, Value};

use super::channels::{broadcast_channel, room_channel};
use super::notepack::{self, Data, msgpack, number_string, write_data};

pub use request::{Request, RequestType};
pub use response::{FetchedSocket, Handshake, RawResponse, Response};

/// A JSON object of `(key, value)` pairs in order, without the `None` ones (undefined properties).
fn object<const N: usize>(entries: [(&str, Option<Value>); N]) -> Map<String, Value> {
    entries.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect()
}

/// Some JSON string.
fn jstr(s: &str) -> Option<Value> {
    Some(Value::from(s))
}

/// Some JSON array of strings.
fn jstrs(items: &[String]) -> Option<Value> {
    Some(Value::from(items))
}

// ---------------------------------------------------------------------------------------------------------------
// Packets, socket selections, broadcasts
// ---------------------------------------------------------------------------------------------------------------

/// A socket.io packet as the adapter publishes it (before socket.io-parser encodes it).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Packet {
    /// The `type` key: [`Packet::EVENT`] for every broadcast socket.io makes.
    pub kind: u8,
    /// The namespace (`nsp`); a message without one means `/`, as for the official adapter.
    pub nsp: String,
    /// The `data` array: the event name, then the arguments, binary ones as [`Data::Bin`].
    pub data: Vec<Data>,
    /// The ack id. socket.io sets one only on a single-socket emit with ack under connection-state recovery; a
    /// broadcast with acks (the BROADCAST request) goes without one and each node assigns its own.
    pub id: Option<u64>,
}

impl Packet {
    /// socket.io-parser's EVENT type.
    pub const EVENT: u8 = 2;

    /// An EVENT packet without ack id.
    pub fn event(nsp: impl Into<String>, data: Vec<Data>) -> Packet {
        Packet { kind: Packet::EVENT, nsp: nsp.into(), data, id: None }
    }
}

/// socket.io's `BroadcastFlags`, as found in `opts.flags`. Each is `None` when the key is absent, which socket.io
/// distinguishes from `false` (`compress` defaults to true).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// `volatile`: may be dropped for a recipient that cannot take it now.
    pub volatile: Option<bool>,
    /// `compress`: whether the transport may compress it.
    pub compress: Option<bool>,
    /// `local`: this node only (the official adapter never publishes a broadcast that has it).
    pub local: Option<bool>,
    /// `broadcast` (legacy).
    pub broadcast: Option<bool>,
    /// `binary` (legacy).
    pub binary: Option<bool>,
    /// `timeout` in milliseconds: how long the sender collects acks (set on every BROADCAST request). A fractional
    /// value decodes truncated, a negative one as 0.
    pub timeout: Option<u64>,
    /// `expectSingleResponse`, which socket.io sets on `RemoteSocket.emit` with ack.
    pub expect_single_response: Option<bool>,
}

impl Flags {
    /// The boolean flags by key, in the order socket.io writes them.
    pub(super) fn bools(&self) -> [(&'static str, Option<bool>); 5] {
        [
            ("volatile", self.volatile),
            ("compress", self.compress),
            ("local", self.local),
            ("broadcast", self.broadcast),
            ("binary", self.binary),
        ]
    }

    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let bools = self.bools();
        let count = bools.iter().filter(|(_, v)| v.is_some()).count()
            + usize::from(self.timeout.is_some())
            + usize::from(self.expect_single_response.is_some());
        encode::write_map_len(out, count as u32)?;
        for (key, value) in bools {
            if let Some(b) = value {
                encode::write_str(out, key)?;
                encode::write_bool(out, b)?;
            }
        }
        if let Some(t) = self.timeout {
            encode::write_str(out, "timeout")?;
            encode::write_uint(out, t)?;
        }
        if let Some(b) = self.expect_single_response {
            encode::write_str(out, "expectSingleResponse")?;
            encode::write_bool(out, b)?;
        }
        Ok(())
    }

    fn read(value: Option<Data>) -> Result<Flags, DecodeError> {
        let mut f = match value {
            None | Some(Data::Null) => return Ok(Flags::default()),
            Some(v) => Fields::new(v, "flags")?,
        };
        Ok(Flags {
            volatile: f.opt_bool("volatile")?,
            compress: f.opt_bool("compress")?,
            local: f.opt_bool("local")?,
            broadcast: f.opt_bool("broadcast")?,
            binary: f.opt_bool("binary")?,
            timeout: match f.take("timeout") {
                None | Some(Data::Null) => None,
                Some(v) => match v.as_f64() {
                    Some(t) if !t.is_nan() => Some(if t <= 0.0 { 0 } else { t.min(u64::MAX as f64) as u64 }),
                    _ => return Err(DecodeError::WrongType { field: "timeout", expected: "a number" }),
                },
            },
            expect_single_response: f.opt_bool("expectSingleResponse")?,
        })
    }
}

/// The socket selection of a request: `opts` without flags (`{rooms, except}`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomOpts {
    /// Sockets in any of these rooms; every socket of the namespace when empty.
    pub rooms: Vec<String>,
    /// Minus the sockets in any of these rooms (a socket id is a room of its own).
    pub except: Vec<String>,
}

impl RoomOpts {
    fn to_json(&self) -> Option<Value> {
        Some(Value::Object(object([("rooms", jstrs(&self.rooms)), ("except", jstrs(&self.except))])))
    }

    fn read(value: Data) -> Result<RoomOpts, DecodeError> {
        let mut f = Fields::new(value, "opts")?;
        Ok(RoomOpts { rooms: f.rooms("rooms")?, except: f.rooms("except")? })
    }
}

/// The `opts` of a broadcast: socket selection plus flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BroadcastOpts {
    /// Sockets in any of these rooms; every socket of the namespace when empty.
    pub rooms: Vec<String>,
    /// Minus the sockets in any of these rooms.
    pub except: Vec<String>,
    /// The flags.
    pub flags: Flags,
}

impl BroadcastOpts {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        encode::write_map_len(out, 3)?;
        encode::write_str(out, "rooms")?;
        write_str_array(out, &self.rooms)?;
        encode::write_str(out, "except")?;
        write_str_array(out, &self.except)?;
        encode::write_str(out, "flags")?;
        self.flags.write(out)
    }

    pub(super) fn read(value: Data) -> Result<BroadcastOpts, DecodeError> {
        let mut f = Fields::new(value, "opts")?;
        let rooms = f.rooms("rooms")?;
        let except = f.rooms("except")?;
        Ok(BroadcastOpts { rooms, except, flags: Flags::read(f.take("flags"))? })
    }
}

fn write_str_array(out: &mut Vec<u8>, items: &[String]) -> io::Result<()> {
    encode::write_array_len(out, items.len() as u32)?;
    for item in items {
        encode::write_str(out, item)?;
    }
    Ok(())
}

fn write_packet(out: &mut Vec<u8>, packet: &Packet) -> io::Result<()> {
    // Key order as socket.io builds the object: {type, data}, then `id` (recovery emits), then `nsp` from the adapter.
    encode::write_map_len(out, 3 + u32::from(packet.id.is_some()))?;
    encode::write_str(out, "type")?;
    encode::write_uint(out, u64::from(packet.kind))?;
    encode::write_str(out, "data")?;
    encode::write_array_len(out, packet.data.len() as u32)?;
    for item in &packet.data {
        write_data(out, item)?;
    }
    if let Some(id) = packet.id {
        encode::write_str(out, "id")?;
        encode::write_uint(out, id)?;
    }
    encode::write_str(out, "nsp")?;
    Ok(encode::write_str(out, &packet.nsp)?)
}

pub(super) fn read_packet(value: Data) -> Result<Packet, DecodeError> {
    let mut f = Fields::new(value, "packet")?;
    let kind = match f.take("type") {
        None => return Err(DecodeError::MissingField("type")),
        Some(v) => v
            .as_u64()
            .and_then(|t| u8::try_from(t).ok())
            .ok_or(DecodeError::WrongType { field: "type", expected: "a packet type" })?,
    };
    let data = match f.take("data") {
        Some(Data::Array(items)) => items,
        None => return Err(DecodeError::MissingField("data")),
        Some(_) => return Err(DecodeError::WrongType { field: "data", expected: "an array" }),
    };
    let nsp = f.opt_str("nsp")?.unwrap_or_else(|| "/".to_owned());
    let id = f.opt_u64("id")?;
    Ok(Packet { kind, nsp, data, id })
}

/// A broadcast published on a broadcast channel: notepack msgpack of `[uid, packet, opts]`.
///
/// A receiving node (the official adapter's `onmessage`) drops a message whose `uid` is its own or whose
/// `packet.nsp` is not the namespace it subscribed for, skips a room channel for a room it has no member in, then
/// delivers the packet locally to `opts.rooms` minus `opts.except` with `opts.flags`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassicBroadcast {
    /// The publishing node's uid (its namespace adapter's); receivers drop their own.
    pub uid: String,
    /// The packet to deliver.
    pub packet: Packet,
    /// Who gets it.
    pub opts: BroadcastOpts,
}

impl ClassicBroadcast {
    /// The channel the official adapter publishes it on: the room channel when exactly one (distinct) room is
    /// named, the namespace-wide channel otherwise. The namespace is the packet's.
    pub fn channel(&self, prefix: &str) -> String {
        match self.opts.rooms.split_first() {
            Some((room, rest)) if rest.iter().all(|r| r == room) => room_channel(prefix, &self.packet.nsp, room),
            _ => broadcast_channel(prefix, &self.packet.nsp),
        }
    }

    /// Encodes as the official adapter does (`notepack.encode([uid, packet, opts])`). `flags` is always written
    /// (socket.io always passes an object), keys of unset flags are left out.
    pub fn encode(&self) -> Vec<u8> {
        msgpack(|out| {
            encode::write_array_len(out, 3)?;
            encode::write_str(out, &self.uid)?;
            write_packet(out, &self.packet)?;
            self.opts.write(out)
        })
    }

    /// The publisher's uid, read without decoding the rest: a node drops its own broadcasts (which come back on
    /// the room channels it listens to) before paying for a full decode. `None` when the message does not start
    /// like `[uid, ...]`.
    pub fn peek_uid(bytes: &[u8]) -> Option<&str> {
        let mut rest = bytes;
        if rmp::decode::read_array_len(&mut rest).ok()? < 3 {
            return None;
        }
        rmp::decode::read_str_from_slice(rest).ok().map(|(uid, _)| uid)
    }

    /// Decodes a broadcast message. Tolerates what the Node side tolerates: more than three elements, missing
    /// `rooms` / `except` / `flags` (empty), a missing `nsp` (`/`), unknown keys.
    pub fn decode(bytes: &[u8]) -> Result<ClassicBroadcast, DecodeError> {
        let items = match Data::from_msgpack(bytes)? {
            Data::Array(items) if items.len() >= 3 => items,
            _ => return Err(DecodeError::WrongType { field: "message", expected: "an array [uid, packet, opts]" }),
        };
        let mut items = items.into_iter();
        let (Some(uid), Some(packet), Some(opts)) = (items.next(), items.next(), items.next()) else {
            return Err(DecodeError::WrongType { field: "message", expected: "an array [uid, packet, opts]" });
        };
        let uid = match uid {
            Data::Str(s) => s,
            _ => return Err(DecodeError::WrongType { field: "uid", expected: "a string" }),
        };
        Ok(ClassicBroadcast { uid, packet: read_packet(packet)?, opts: BroadcastOpts::read(opts)? })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------------------

/// Decodes a request or response body the way the official adapter does: JSON when the first byte is `{`.
pub(super) fn decode_json_or_msgpack(bytes: &[u8]) -> Result<Data, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError::Empty),
        Some(b'{') => {
            let value: Value = serde_json::from_slice(bytes)?;
            Ok(Data::from_json(&value))
        }
        Some(_) => Ok(Data::from_msgpack(bytes)?),
    }
}

/// A room name (or socket id) from a list: strings as they are, numbers in their JavaScript string form.
fn room_string(value: Data, field: &'static str) -> Result<String, DecodeError> {
    match value {
        Data::Str(s) => Ok(s),
        Data::UInt(u) => Ok(u.to_string()),
        Data::Int(i) => Ok(i.to_string()),
        Data::Float(f) => Ok(number_string(f)),
        _ => Err(DecodeError::WrongType { field, expected: "an array of strings" }),
    }
}

/// The keys of a decoded object, taken one by one.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fields(Vec<(String, Data)>);

impl Fields {
    pub(super) fn new(value: Data, what: &'static str) -> Result<Fields, DecodeError> {
        match value {
            Data::Map(entries) => Ok(Fields(entries)),
            _ => Err(DecodeError::WrongType { field: what, expected: "an object" }),
        }
    }

    fn get(&self, key: &str) -> Option<&Data> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(super) fn take(&mut self, key: &str) -> Option<Data> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// A string, or `None` when absent or null.
    pub(super) fn opt_str(&mut self, key: &'static str) -> Result<Option<String>, DecodeError> {
        match self.take(key) {
            None | Some(Data::Null) => Ok(None),
            Some(Data::Str(s)) => Ok(Some(s)),
            Some(_) => Err(DecodeError::WrongType { field: key, expected: "a string" }),
        }
    }

    pub(super) fn req_str(&mut self, key: &'static str) -> Result<String, DecodeError> {
        self.opt_str(key)?.ok_or(DecodeError::MissingField(key))
    }

    /// A room name: a string, or a number (rooms may be numbers in Node).
    fn req_room(&mut self, key: &'static str) -> Result<String, DecodeError> {
        room_string(self.take(key).ok_or(DecodeError::MissingField(key))?, key)
    }

    pub(super) fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>, DecodeError> {
        match self.take(key) {
            None | Some(Data::Null) => Ok(None),
            Some(Data::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(DecodeError::WrongType { field: key, expected: "a boolean" }),
        }
    }

    pub(super) fn opt_u64(&mut self, key: &'static str) -> Result<Option<u64>, DecodeError> {
        match self.take(key) {
            None | Some(Data::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(DecodeError::WrongType { field: key, expected: "an integer" }),
        }
    }

    /// A list of rooms; absent or null is empty (`new Set(undefined)`).
    pub(super) fn rooms(&mut self, key: &'static str) -> Result<Vec<String>, DecodeError> {
        match self.take(key) {
            None | Some(Data::Null) => Ok(Vec::new()),
            Some(Data::Array(items)) => items.into_iter().map(|d| room_string(d, key)).collect(),
            Some(_) => Err(DecodeError::WrongType { field: key, expected: "an array of strings" }),
        }
    }
}

/// Why a message could not be decoded. The official adapter drops such messages; so should the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message is empty.
    #[error("empty message")]
    Empty,
    /// Malformed msgpack, or JSON values that do not fit (see [`notepack::DecodeError`]).
    #[error(transparent)]
    Notepack(#[from] notepack::DecodeError),
    /// Invalid JSON (including nesting deeper than 128).
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A required key is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A key holds the wrong kind of value.
    #[error("`{field}` should be {expected}")]
    WrongType {
        /// The key (or the part of the message).
        field: &'static str,
        /// What it should hold.
        expected: &'static str,
    },
    /// A request `type` this codec does not answer (the official adapter ignores it).
    #[error("unknown request type {0}")]
    UnknownRequestType(u64),
    /// A response that cannot answer the request it was matched with.
    #[error("the response does not answer a {asked:?} request")]
    UnexpectedResponse {
        /// The type of the request it was matched with.
        asked: RequestType,
    },
}

#[cfg(test)]
mod tests;
