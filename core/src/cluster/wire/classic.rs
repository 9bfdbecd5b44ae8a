//! Wire format of `@socket.io/redis-adapter` 8.x in classic mode (`createAdapter`), so that a Tidewire node can
//! join a Node socket.io cluster: channel names, the msgpack broadcast message, the inter-node requests and their
//! responses. Pure encoding and decoding; no I/O.
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
//! Arguments are [`Data`], the value tree notepack.io produces: JSON's values plus binary ([`Data::Bin`], a Node
//! Buffer) and dates ([`Data::Date`], msgpack timestamp extension -1). msgpack is written with `rmp`, read with
//! `rmpv`; the notepack.io 3.x decisions are made here, so the bytes are notepack's: integral numbers as the smallest
//! msgpack integer (unsigned forms for non-negative values, `-0` as `0`), every other number as float64, maps with
//! string keys in order, keys of undefined values left out, dates as timestamp 32/64/96. JSON text is
//! `serde_json`'s: keys in the adapter's order, integers as `JSON.stringify` prints them, a Buffer as
//! `{"type":"Buffer","data":[...]}`, a non-finite number `null`. Other numbers may be spelled differently from
//! `JSON.stringify` (`1e21` for `1e+21`) but parse to the same value.
//!
//! Decoding is tolerant like the Node side: key order does not matter, unknown keys are ignored, integers of any
//! msgpack width and float32 are accepted, duplicate map keys keep the last value (at the first key's place, as a JS
//! object does), notepack's legacy `undefined` (`d4 00 00`) drops a map key and reads as `null` in an array, other
//! extension types read as `[type, bin]` as notepack returns them, invalid UTF-8 is replaced (Node's
//! `buffer.toString`). It never panics, never allocates more than the input can fill (`rmpv`'s borrowing decoder),
//! rejects nesting deeper than [`MAX_DEPTH`] and trailing bytes after the message (notepack throws on those too).
//!
//! # Known divergences from the Node side
//! - notepack.io writes integral numbers of magnitude 2^64 and above as a wrapped (wrong) uint64; [`Data::Float`]
//!   keeps them float64, which Node decodes correctly.
//! - Rooms that Node holds as numbers (`io.to(42)`) arrive as msgpack/JSON numbers; they decode to their string form
//!   (`"42"`), so Tidewire does not tell room `42` from room `"42"`. Non-integral numbers use serde_json's spelling,
//!   which differs from JavaScript's `String(x)` for some exponents (`1e21`, `1e-6` for `1e+21`, `0.000001`).
//! - msgpack uint64/int64 beyond 2^53 stay exact here, where Node rounds them to a double.
//! - A date inside a JSON message (only possible in user arguments: server-side-emit data, acks, `socket.data`,
//!   handshake extras) is written as its number of milliseconds, where `JSON.stringify` writes its ISO string
//!   (both are `null` for an invalid date).
//! - `rmpv` reports neither the marker form of an extension nor offsets, so extensions are told apart by type and
//!   length: type 0 of 1 byte is `undefined`, of 8 bytes a legacy date, otherwise an ArrayBuffer; type -1 of 4, 8
//!   or 12 bytes is a timestamp, of 1, 2 or 16 bytes `[-1, bin]`, of another length an error. notepack decides by
//!   marker, which differs only for forms it never writes (an ext 8/16/32 of those lengths). The reserved byte
//!   `0xc1`, which notepack rejects, reads as `null` (as in `rmpv`).

use std::collections::HashMap;
use std::io;

use bytes::Bytes;
use rmp::encode;
use rmpv::ValueRef;
use serde_json::{Map, Value};

/// The key prefix of the official adapter when its `key` option is not set.
pub const DEFAULT_PREFIX: &str = "socket.io";

/// The deepest nesting of arrays and maps accepted when decoding msgpack (JSON has serde_json's own limit, also
/// 128). The message envelope takes up to 4 levels of it (broadcast array, packet map, `data` array).
pub const MAX_DEPTH: usize = 128;

// ---------------------------------------------------------------------------------------------------------------
// Channels
// ---------------------------------------------------------------------------------------------------------------

/// The namespace-wide broadcast channel, `<prefix>#<nsp>#`.
pub fn broadcast_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// The broadcast channel of one room, `<prefix>#<nsp>#<room>#`, used when a broadcast names exactly one room.
pub fn room_channel(prefix: &str, nsp: &str, room: &str) -> String {
    format!("{prefix}#{nsp}#{room}#")
}

/// The `PSUBSCRIBE` pattern that receives every broadcast of a namespace, `<prefix>#<nsp>#*`. Like the official
/// adapter it does not escape glob characters (`*`, `?`, `[`) in the namespace name.
pub fn broadcast_pattern(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#*")
}

/// The request channel of a namespace, `<prefix>-request#<nsp>#`. Its subscriber count (`PUBSUB NUMSUB`) is the
/// number of servers the official adapter waits for, so every node must subscribe and answer.
pub fn request_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}-request#{nsp}#")
}

/// The response channel of a namespace, `<prefix>-response#<nsp>#`, or with `uid` the requesting node's own
/// `<prefix>-response#<nsp>#<uid>#` (used by nodes that run with `publishOnSpecificResponseChannel`). A node
/// subscribes to both.
pub fn response_channel(prefix: &str, nsp: &str, uid: Option<&str>) -> String {
    match uid {
        Some(uid) => format!("{prefix}-response#{nsp}#{uid}#"),
        None => format!("{prefix}-response#{nsp}#"),
    }
}

/// What a channel name designates (see [`parse_channel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel<'a> {
    /// A broadcast channel: namespace-wide, or of one room.
    Broadcast {
        /// The namespace.
        nsp: &'a str,
        /// The room, for a single-room channel.
        room: Option<&'a str>,
    },
    /// The request channel of a namespace.
    Request {
        /// The namespace.
        nsp: &'a str,
    },
    /// A response channel: namespace-wide, or addressed to one node.
    Response {
        /// The namespace.
        nsp: &'a str,
        /// The uid of the node it is addressed to.
        uid: Option<&'a str>,
    },
}

/// Tells what `channel` is, for key prefix `prefix`, or `None` when it is none of this adapter's channels.
///
/// Without knowing the namespaces, the namespace is taken to run up to the first `#` after the prefix (namespace
/// names do not normally contain `#`; use [`broadcast_room`] when the namespace is known, as the official adapter
/// does). The room is the rest of the channel minus its last character, exactly as the official adapter's
/// `onmessage` extracts it (`channel.slice(this.channel.length, -1)`), so a room name may contain `#`; an empty rest
/// or a rest of a single character means the namespace-wide channel.
pub fn parse_channel<'a>(prefix: &str, channel: &'a str) -> Option<Channel<'a>> {
    if let Some(rest) = channel.strip_prefix(prefix) {
        if let Some(rest) = rest.strip_prefix("-request#") {
            let nsp = rest.strip_suffix('#')?;
            return Some(Channel::Request { nsp });
        }
        if let Some(rest) = rest.strip_prefix("-response#") {
            let inner = rest.strip_suffix('#')?;
            return Some(match inner.split_once('#') {
                Some((nsp, uid)) => Channel::Response { nsp, uid: Some(uid) },
                None => Channel::Response { nsp: inner, uid: None },
            });
        }
        if let Some(rest) = rest.strip_prefix('#') {
            let (nsp, tail) = rest.split_once('#')?;
            return Some(Channel::Broadcast { nsp, room: room_of_tail(tail) });
        }
    }
    None
}

/// The room a broadcast channel of namespace `nsp` names, with the official adapter's rule: `None` when `channel`
/// is not one of this namespace's broadcast channels, `Some(None)` for the namespace-wide channel, `Some(Some(room))`
/// for a room channel (the room may contain `#`).
pub fn broadcast_room<'a>(prefix: &str, nsp: &str, channel: &'a str) -> Option<Option<&'a str>> {
    let tail = channel.strip_prefix(prefix)?.strip_prefix('#')?.strip_prefix(nsp)?.strip_prefix('#')?;
    Some(room_of_tail(tail))
}

/// `tail.slice(0, -1)`, with an empty result meaning "no room" (the official adapter's `room !== ""` test).
fn room_of_tail(tail: &str) -> Option<&str> {
    let mut chars = tail.chars();
    chars.next_back();
    let room = chars.as_str();
    (!room.is_empty()).then_some(room)
}

// ---------------------------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------------------------

/// A value as notepack.io decodes it: JSON's values plus binary and dates.
///
/// Decoding normalizes integers: non-negative ones are always [`Data::UInt`], so [`Data::Int`] holds only negative
/// values (build values with `Data::from(i64)` to get the same normal form). Both encode alike.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Data {
    /// `null` (and an `undefined` array element).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A negative integer (see the type's notes on normalization).
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// Any other number (msgpack float32 or float64). An integral value encodes as an integer, as in notepack.io.
    Float(f64),
    /// A string.
    Str(String),
    /// Binary: a Node Buffer (or typed array / ArrayBuffer), msgpack `bin`.
    Bin(Bytes),
    /// A JavaScript Date, in milliseconds since the Unix epoch (msgpack timestamp extension -1). Beyond
    /// ±8.64e15 ms JavaScript holds it invalid: JSON `null`, and decoding yields [`Data::Null`].
    Date(i64),
    /// An array.
    Array(Vec<Data>),
    /// An object: string keys in wire order (decoding keeps the last of duplicate keys; encoding writes the
    /// entries as they are).
    Map(Vec<(String, Data)>),
}

impl From<bool> for Data {
    fn from(value: bool) -> Self {
        Data::Bool(value)
    }
}

impl From<i64> for Data {
    fn from(value: i64) -> Self {
        match u64::try_from(value) {
            Ok(u) => Data::UInt(u),
            Err(_) => Data::Int(value),
        }
    }
}

impl From<u64> for Data {
    fn from(value: u64) -> Self {
        Data::UInt(value)
    }
}

impl From<f64> for Data {
    fn from(value: f64) -> Self {
        Data::Float(value)
    }
}

impl From<&str> for Data {
    fn from(value: &str) -> Self {
        Data::Str(value.to_owned())
    }
}

impl From<String> for Data {
    fn from(value: String) -> Self {
        Data::Str(value)
    }
}

impl From<Bytes> for Data {
    fn from(value: Bytes) -> Self {
        Data::Bin(value)
    }
}

impl From<Vec<Data>> for Data {
    fn from(value: Vec<Data>) -> Self {
        Data::Array(value)
    }
}

impl Data {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Data::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key`, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Data> {
        match self {
            Data::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as a non-negative integer, if it is one (an integral float counts, as in JavaScript).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Data::UInt(u) => Some(u),
            Data::Int(i) => u64::try_from(i).ok(),
            Data::Float(f) if f.is_finite() && f.fract() == 0.0 && (0.0..TWO_POW_64).contains(&f) => Some(f as u64),
            _ => None,
        }
    }

    /// The value as a JavaScript number, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Data::UInt(u) => Some(u as f64),
            Data::Int(i) => Some(i as f64),
            Data::Float(f) => Some(f),
            _ => None,
        }
    }

    /// Converts a JSON value (no binary in it).
    pub fn from_json(value: &Value) -> Data {
        match value {
            Value::Null => Data::Null,
            Value::Bool(b) => Data::Bool(*b),
            Value::Number(n) => number_from_json(n),
            Value::String(s) => Data::Str(s.clone()),
            Value::Array(items) => Data::Array(items.iter().map(Data::from_json).collect()),
            Value::Object(map) => Data::Map(map.iter().map(|(k, v)| (k.clone(), Data::from_json(v))).collect()),
        }
    }

    /// Converts a socket.io-parser payload: JSON whose placeholders `{"_placeholder":true,"num":i}` stand for
    /// `attachments[i]`. Fails on a placeholder whose `num` is not an integer index into `attachments` (where
    /// socket.io-parser throws "illegal attachments").
    pub fn from_json_with_attachments(value: &Value, attachments: &[Bytes]) -> Result<Data, DecodeError> {
        Ok(match value {
            Value::Array(items) => Data::Array(
                items.iter().map(|v| Data::from_json_with_attachments(v, attachments)).collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                // socket.io-parser tests only `_placeholder === true`; the other keys do not matter.
                if map.get("_placeholder") == Some(&Value::Bool(true)) {
                    let num = map.get("num").and_then(Value::as_u64).ok_or(DecodeError::BadPlaceholder)?;
                    let bin = usize::try_from(num).ok().and_then(|i| attachments.get(i));
                    return bin.map(|b| Data::Bin(b.clone())).ok_or(DecodeError::BadPlaceholder);
                }
                Data::Map(
                    map.iter()
                        .map(|(k, v)| Ok((k.clone(), Data::from_json_with_attachments(v, attachments)?)))
                        .collect::<Result<_, DecodeError>>()?,
                )
            }
            other => Data::from_json(other),
        })
    }

    /// Converts to JSON as `JSON.parse(JSON.stringify(value))` would in Node: a Buffer becomes
    /// `{"type":"Buffer","data":[...]}`, a non-finite number `null`, an integral float an integer; a date becomes its
    /// number of milliseconds (see the module notes).
    pub fn to_json(&self) -> Value {
        self.to_json_inner(None)
    }

    /// Converts to a socket.io-parser payload: JSON with each binary part replaced by a placeholder
    /// `{"_placeholder":true,"num":i}` and returned in `attachments` order (depth first, as socket.io-parser's
    /// `deconstructPacket` numbers them). Dates become numbers of milliseconds.
    pub fn to_json_with_attachments(&self) -> (Value, Vec<Bytes>) {
        let mut attachments = Vec::new();
        let value = self.to_json_inner(Some(&mut attachments));
        (value, attachments)
    }

    fn to_json_inner(&self, mut attachments: Option<&mut Vec<Bytes>>) -> Value {
        match self {
            Data::Null => Value::Null,
            Data::Bool(b) => Value::Bool(*b),
            Data::Int(i) => Value::from(*i),
            Data::UInt(u) => Value::from(*u),
            Data::Float(f) => float_to_json(*f),
            Data::Str(s) => Value::String(s.clone()),
            Data::Bin(b) => match attachments {
                Some(list) => {
                    let num = list.len();
                    list.push(b.clone());
                    serde_json::json!({ "_placeholder": true, "num": num })
                }
                None => serde_json::json!({ "type": "Buffer", "data": b.as_ref() }),
            },
            Data::Date(ms) if (-MAX_TIME_MS..=MAX_TIME_MS).contains(ms) => Value::from(*ms),
            Data::Date(_) => Value::Null,
            Data::Array(items) => {
                Value::Array(items.iter().map(|d| d.to_json_inner(attachments.as_deref_mut())).collect())
            }
            Data::Map(entries) => Value::Object(
                entries.iter().map(|(k, v)| (k.clone(), v.to_json_inner(attachments.as_deref_mut()))).collect(),
            ),
        }
    }

    /// Encodes as notepack.io 3.x would (see the module notes).
    pub fn to_msgpack(&self) -> Vec<u8> {
        msgpack(|out| write_data(out, self))
    }

    /// Decodes one msgpack value, as notepack.io 3.x would (see the module notes), rejecting trailing bytes.
    pub fn from_msgpack(bytes: &[u8]) -> Result<Data, DecodeError> {
        let mut rest = bytes;
        let value = rmpv::decode::read_value_ref_with_max_depth(&mut rest, RMPV_DEPTH).map_err(|e| match e {
            rmpv::decode::Error::DepthLimitExceeded => DecodeError::TooDeep { limit: MAX_DEPTH },
            // Reading from a slice fails only at its end.
            _ => DecodeError::Truncated,
        })?;
        let value = from_value(value, 0)?.unwrap_or(Data::Null);
        match rest.len() {
            0 => Ok(value),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Encodes as JSON text, as `JSON.stringify` would in Node up to number spelling and dates (see the module
    /// notes).
    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }
}

/// Converts event or ack arguments kept as socket.io-parser JSON plus attachments (the hub's form) into values.
pub fn args_from_json(data: &[Value], attachments: &[Bytes]) -> Result<Vec<Data>, DecodeError> {
    data.iter().map(|v| Data::from_json_with_attachments(v, attachments)).collect()
}

/// `[event, ...args]` as the cluster protocols carry an event: the arguments (JSON with placeholders into
/// `attachments`) with their binary parts in place.
///
/// # Errors
/// [`DecodeError::BadPlaceholder`] when the arguments point at attachments they do not have.
pub fn event_data(event: &str, args: &[Value], attachments: &[Bytes]) -> Result<Vec<Data>, DecodeError> {
    let mut data = Vec::with_capacity(args.len() + 1);
    data.push(Data::Str(event.to_owned()));
    for arg in args {
        data.push(Data::from_json_with_attachments(arg, attachments)?);
    }
    Ok(data)
}

/// Converts values into socket.io-parser JSON plus attachments (the hub's form), numbering the placeholders across
/// all arguments.
pub fn args_to_json(args: &[Data]) -> (Vec<Value>, Vec<Bytes>) {
    let mut attachments = Vec::new();
    let values = args.iter().map(|d| d.to_json_inner(Some(&mut attachments))).collect();
    (values, attachments)
}

const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
/// The largest magnitude of a valid JavaScript time value (ECMAScript TimeClip), in milliseconds.
const MAX_TIME_MS: i64 = 8_640_000_000_000_000;

fn number_from_json(n: &serde_json::Number) -> Data {
    if let Some(u) = n.as_u64() {
        Data::UInt(u)
    } else if let Some(i) = n.as_i64() {
        Data::Int(i)
    } else {
        Data::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// An integral, finite number within the 64-bit ranges as an integer (`-0` as `0`): how notepack.io and
/// `JSON.stringify` write it.
fn as_integer(f: f64) -> Option<Data> {
    if !f.is_finite() || f.fract() != 0.0 {
        None
    } else if (0.0..TWO_POW_64).contains(&f) {
        Some(Data::UInt(f as u64))
    } else if (-TWO_POW_63..0.0).contains(&f) {
        Some(Data::Int(f as i64))
    } else {
        None
    }
}

/// A JavaScript number as JSON: integral values as integers (JSON.stringify prints no `.0`), non-finite as null.
fn float_to_json(f: f64) -> Value {
    match as_integer(f) {
        Some(int) => int.to_json(),
        None => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
    }
}

/// The string JavaScript makes of a number (`String(x)`), up to exponent spelling (see the module notes).
fn number_string(f: f64) -> String {
    match float_to_json(f) {
        Value::Null if f.is_nan() => "NaN".to_owned(),
        Value::Null => (if f > 0.0 { "Infinity" } else { "-Infinity" }).to_owned(),
        json => json.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// msgpack, notepack.io flavour
// ---------------------------------------------------------------------------------------------------------------

/// Runs an encoder into a new buffer. rmp's writers return `io::Result` because they take any writer; writing into
/// a `Vec<u8>` cannot fail, so the result carries nothing.
fn msgpack(encode: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let _infallible = encode(&mut out);
    out
}

// Lengths above u32::MAX cannot occur in a Redis message (512 MB cap), so the length casts below do not truncate.
fn write_data(out: &mut Vec<u8>, value: &Data) -> io::Result<()> {
    match value {
        Data::Null => encode::write_nil(out)?,
        Data::Bool(b) => encode::write_bool(out, *b)?,
        // rmp picks the smallest form, unsigned ones for non-negative values, as notepack does.
        Data::Int(i) => {
            encode::write_sint(out, *i)?;
        }
        Data::UInt(u) => {
            encode::write_uint(out, *u)?;
        }
        // notepack: `Math.floor(v) !== v || !isFinite(v)` is float64, every other number an integer (-0 is 0).
        // Beyond the 64-bit ranges notepack's integer bytes are wrong, so those stay float64 here.
        Data::Float(f) => match as_integer(*f) {
            Some(int) => write_data(out, &int)?,
            None => encode::write_f64(out, *f)?,
        },
        Data::Str(s) => encode::write_str(out, s)?,
        Data::Bin(b) => encode::write_bin(out, b)?,
        Data::Date(ms) => write_date(out, *ms)?,
        Data::Array(items) => {
            encode::write_array_len(out, items.len() as u32)?;
            for item in items {
                write_data(out, item)?;
            }
        }
        Data::Map(entries) => {
            encode::write_map_len(out, entries.len() as u32)?;
            for (k, v) in entries {
                encode::write_str(out, k)?;
                write_data(out, v)?;
            }
        }
    }
    Ok(())
}

/// notepack's Date encoding: timestamp 32 when whole seconds fit 32 bits, timestamp 64 up to 34-bit seconds,
/// timestamp 96 otherwise (negative times included).
fn write_date(out: &mut Vec<u8>, ms: i64) -> io::Result<()> {
    let secs = ms.div_euclid(1000);
    let nanos = ms.rem_euclid(1000) * 1_000_000;
    if nanos == 0 && (0..=0xffff_ffff).contains(&secs) {
        encode::write_ext_meta(out, 4, -1)?;
        out.extend_from_slice(&(secs as u32).to_be_bytes());
    } else if (0..=0x3_ffff_ffff).contains(&secs) {
        encode::write_ext_meta(out, 8, -1)?;
        out.extend_from_slice(&(((nanos as u64) << 34) | secs as u64).to_be_bytes());
    } else {
        encode::write_ext_meta(out, 12, -1)?;
        out.extend_from_slice(&(nanos as u32).to_be_bytes());
        out.extend_from_slice(&secs.to_be_bytes());
    }
    Ok(())
}

/// `rmpv`'s depth budget: it spends 2 per array or map and up to 3 per string, binary or extension, so this admits
/// every value whose containers nest at most [`MAX_DEPTH`] deep (and bounds the recursion); [`from_value`] then
/// applies the exact limit.
const RMPV_DEPTH: usize = 2 * MAX_DEPTH + 3;

/// Converts a decoded value, `depth` being the number of containers around it; `None` is JavaScript's `undefined`.
fn from_value(value: ValueRef<'_>, depth: usize) -> Result<Option<Data>, DecodeError> {
    if matches!(value, ValueRef::Array(_) | ValueRef::Map(_)) && depth >= MAX_DEPTH {
        return Err(DecodeError::TooDeep { limit: MAX_DEPTH });
    }
    Ok(Some(match value {
        ValueRef::Nil => Data::Null,
        ValueRef::Boolean(b) => Data::Bool(b),
        ValueRef::Integer(n) => match n.as_u64() {
            Some(u) => Data::UInt(u),
            None => Data::from(n.as_i64().unwrap_or(i64::MIN)),
        },
        ValueRef::F32(f) => Data::Float(f64::from(f)),
        ValueRef::F64(f) => Data::Float(f),
        ValueRef::String(s) => Data::Str(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        ValueRef::Binary(b) => Data::Bin(Bytes::copy_from_slice(b)),
        ValueRef::Ext(ty, body) => return from_ext(ty, body),
        ValueRef::Array(items) => Data::Array(
            items
                .into_iter()
                .map(|v| Ok(from_value(v, depth + 1)?.unwrap_or(Data::Null)))
                .collect::<Result<_, DecodeError>>()?,
        ),
        ValueRef::Map(pairs) => {
            let n = pairs.len();
            let mut entries: Vec<(String, Option<Data>)> = Vec::new();
            // Duplicate keys keep the last value at the first key's place, like assignments to a JS object; large
            // maps get an index so that a hostile message of repeated keys stays linear.
            let mut index: Option<HashMap<String, usize>> = (n > 16).then(HashMap::new);
            for (key, value) in pairs {
                let key = key_string(from_value(key, depth + 1)?).ok_or(DecodeError::UnsupportedKey)?;
                let value = from_value(value, depth + 1)?;
                let existing = match &index {
                    Some(ix) => ix.get(&key).copied(),
                    None => entries.iter().position(|(k, _)| *k == key),
                };
                match existing.and_then(|i| entries.get_mut(i)) {
                    Some(entry) => entry.1 = value,
                    None => {
                        if let Some(ix) = &mut index {
                            ix.insert(key.clone(), entries.len());
                        }
                        entries.push((key, value));
                    }
                }
            }
            // A key whose value is undefined is absent, as for notepack's encoder and JSON.stringify.
            Data::Map(entries.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
        }
    }))
}

/// An extension value: notepack's meanings for types 0 and -1 (told apart by length, see the module notes),
/// `[type, bin]` for the others.
fn from_ext(ty: i8, body: &[u8]) -> Result<Option<Data>, DecodeError> {
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    Ok(Some(match (ty, body.len()) {
        // fixext 1 of type 0: notepack's legacy `undefined`.
        (0, 1) => return Ok(None),
        // fixext 8 of type 0: notepack's legacy Date, signed milliseconds.
        (0, 8) => clip_time(be(body) as i64 as f64),
        // ext 8/16/32 of type 0: notepack's legacy ArrayBuffer.
        (0, _) => Data::Bin(Bytes::copy_from_slice(body)),
        // timestamp 32
        (-1, 4) => clip_time(be(body) as f64 * 1e3),
        // timestamp 64: 30 bits of nanoseconds, 34 bits of seconds
        (-1, 8) => {
            let v = be(body);
            clip_time((v & 0x3_ffff_ffff) as f64 * 1e3 + (v >> 34) as f64 / 1e6)
        }
        // timestamp 96: 32-bit nanoseconds, signed 64-bit seconds
        (-1, 12) => {
            let (nanos, secs) = body.split_at(4);
            clip_time(be(secs) as i64 as f64 * 1e3 + be(nanos) as f64 / 1e6)
        }
        (-1, n) if ![1, 2, 16].contains(&n) => return Err(DecodeError::BadTimestamp),
        _ => Data::Array(vec![Data::from(i64::from(ty)), Data::Bin(Bytes::copy_from_slice(body))]),
    }))
}

/// `new Date(t)`: a valid time value truncated to whole milliseconds, or an invalid date, which JSON turns into
/// `null`.
fn clip_time(t: f64) -> Data {
    if t.is_finite() && t.abs() <= MAX_TIME_MS as f64 { Data::Date(t.trunc() as i64) } else { Data::Null }
}

/// The property name JavaScript makes of a decoded map key, for the key types it can be given.
fn key_string(key: Option<Data>) -> Option<String> {
    Some(match key? {
        Data::Str(s) => s,
        Data::UInt(u) => u.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number_string(f),
        Data::Bool(b) => b.to_string(),
        Data::Null => "null".to_owned(),
        _ => return None,
    })
}

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
// Messages
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

/// The `type` of a request or response between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RequestType {
    /// `SOCKETS` (0): socket ids in some rooms. Answered by 8.x, no longer sent by it (`sockets()` was removed).
    Sockets = 0,
    /// `ALL_ROOMS` (1): every room name of the namespace.
    AllRooms = 1,
    /// `REMOTE_JOIN` (2): make sockets join rooms.
    RemoteJoin = 2,
    /// `REMOTE_LEAVE` (3): make sockets leave rooms.
    RemoteLeave = 3,
    /// `REMOTE_DISCONNECT` (4): disconnect sockets.
    RemoteDisconnect = 4,
    /// `REMOTE_FETCH` (5): details of sockets (`fetchSockets`).
    RemoteFetch = 5,
    /// `SERVER_SIDE_EMIT` (6): an event for the other servers, and its answers.
    ServerSideEmit = 6,
    /// `BROADCAST` (7): a broadcast that collects acks.
    Broadcast = 7,
    /// `BROADCAST_CLIENT_COUNT` (8): a node's count of sockets reached by a BROADCAST (a response).
    BroadcastClientCount = 8,
    /// `BROADCAST_ACK` (9): one socket's ack to a BROADCAST (a response).
    BroadcastAck = 9,
}

impl RequestType {
    /// The type with numeric value `code`.
    pub fn from_code(code: u64) -> Option<RequestType> {
        Some(match code {
            0 => RequestType::Sockets,
            1 => RequestType::AllRooms,
            2 => RequestType::RemoteJoin,
            3 => RequestType::RemoteLeave,
            4 => RequestType::RemoteDisconnect,
            5 => RequestType::RemoteFetch,
            6 => RequestType::ServerSideEmit,
            7 => RequestType::Broadcast,
            8 => RequestType::BroadcastClientCount,
            9 => RequestType::BroadcastAck,
            _ => return None,
        })
    }

    /// The numeric value on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A request published on the request channel. JSON, except [`Request::Broadcast`] (msgpack). Key order on encode
/// is the official adapter's.
///
/// Who answers: every node answers SOCKETS, ALL_ROOMS and REMOTE_FETCH (unless it sent them; the requester counts
/// itself), SERVER_SIDE_EMIT with a request id (except the sender, by uid) and BROADCAST (except the sender, which
/// knows its request id). REMOTE_JOIN / LEAVE / DISCONNECT are applied by every node, the sender included when its
/// own message comes back, and get no answer. The legacy single-socket forms are answered by the node that has the
/// socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// SOCKETS: `{uid?, requestId, type: 0, rooms}`.
    Sockets {
        /// The requester's uid (absent from pre-7 senders).
        uid: Option<String>,
        /// The request id.
        request_id: String,
        /// Rooms to list the sockets of; all sockets when empty.
        rooms: Vec<String>,
    },
    /// ALL_ROOMS: `{uid, requestId, type: 1}`.
    AllRooms {
        /// The requester's uid.
        uid: String,
        /// The request id.
        request_id: String,
    },
    /// REMOTE_JOIN: `{uid, type: 2, opts: {rooms, except}, rooms}` (no request id, no answer).
    RemoteJoin {
        /// The requester's uid.
        uid: String,
        /// The sockets concerned.
        opts: RoomOpts,
        /// The rooms they join.
        rooms: Vec<String>,
    },
    /// REMOTE_LEAVE: `{uid, type: 3, opts: {rooms, except}, rooms}` (no request id, no answer).
    RemoteLeave {
        /// The requester's uid.
        uid: String,
        /// The sockets concerned.
        opts: RoomOpts,
        /// The rooms they leave.
        rooms: Vec<String>,
    },
    /// REMOTE_DISCONNECT: `{uid, type: 4, opts: {rooms, except}, close}` (no request id, no answer).
    RemoteDisconnect {
        /// The requester's uid.
        uid: String,
        /// The sockets concerned.
        opts: RoomOpts,
        /// Whether to close the underlying connection too.
        close: bool,
    },
    /// Legacy REMOTE_JOIN of one socket (pre-8 `remoteJoin`): `{requestId, type: 2, sid, room}`, answered with
    /// [`Response::Done`] by the node that has the socket.
    LegacyRemoteJoin {
        /// The requester's uid, if it sent one.
        uid: Option<String>,
        /// The request id.
        request_id: String,
        /// The socket id.
        sid: String,
        /// The room to join.
        room: String,
    },
    /// Legacy REMOTE_LEAVE of one socket: `{requestId, type: 3, sid, room}`.
    LegacyRemoteLeave {
        /// The requester's uid, if it sent one.
        uid: Option<String>,
        /// The request id.
        request_id: String,
        /// The socket id.
        sid: String,
        /// The room to leave.
        room: String,
    },
    /// Legacy REMOTE_DISCONNECT of one socket: `{requestId, type: 4, sid, close}`.
    LegacyRemoteDisconnect {
        /// The requester's uid, if it sent one.
        uid: Option<String>,
        /// The request id.
        request_id: String,
        /// The socket id.
        sid: String,
        /// Whether to close the underlying connection too.
        close: bool,
    },
    /// REMOTE_FETCH: `{uid, requestId, type: 5, opts: {rooms, except}}`.
    RemoteFetch {
        /// The requester's uid.
        uid: String,
        /// The request id.
        request_id: String,
        /// The sockets wanted.
        opts: RoomOpts,
    },
    /// SERVER_SIDE_EMIT: `{uid, requestId?, type: 6, data}`; with a request id, each other node answers once, when
    /// its handler calls the ack (the requester waits for `NUMSUB - 1` answers).
    /// Being JSON, binary arguments travel as `{"type":"Buffer","data":[...]}` objects, as Node sends them.
    ServerSideEmit {
        /// The sender's uid (receivers drop their own).
        uid: String,
        /// Present when the sender expects answers.
        request_id: Option<String>,
        /// The event name and arguments.
        data: Vec<Data>,
    },
    /// BROADCAST (msgpack): `{uid, requestId, type: 7, packet, opts: {rooms, except, flags}}`. Each other node
    /// delivers the packet with its own ack id, answers [`Response::BroadcastClientCount`], then one
    /// [`Response::BroadcastAck`] per socket ack.
    Broadcast {
        /// The sender's uid.
        uid: String,
        /// The request id.
        request_id: String,
        /// The packet (without `id`).
        packet: Packet,
        /// Who gets it; `flags.timeout` is how long the sender listens for acks.
        opts: BroadcastOpts,
    },
}

impl Request {
    /// This request's type.
    pub fn request_type(&self) -> RequestType {
        match self {
            Request::Sockets { .. } => RequestType::Sockets,
            Request::AllRooms { .. } => RequestType::AllRooms,
            Request::RemoteJoin { .. } | Request::LegacyRemoteJoin { .. } => RequestType::RemoteJoin,
            Request::RemoteLeave { .. } | Request::LegacyRemoteLeave { .. } => RequestType::RemoteLeave,
            Request::RemoteDisconnect { .. } | Request::LegacyRemoteDisconnect { .. } => RequestType::RemoteDisconnect,
            Request::RemoteFetch { .. } => RequestType::RemoteFetch,
            Request::ServerSideEmit { .. } => RequestType::ServerSideEmit,
            Request::Broadcast { .. } => RequestType::Broadcast,
        }
    }

    /// The sender's uid, when the request carries one.
    pub fn uid(&self) -> Option<&str> {
        match self {
            Request::Sockets { uid, .. }
            | Request::LegacyRemoteJoin { uid, .. }
            | Request::LegacyRemoteLeave { uid, .. }
            | Request::LegacyRemoteDisconnect { uid, .. } => uid.as_deref(),
            Request::AllRooms { uid, .. }
            | Request::RemoteJoin { uid, .. }
            | Request::RemoteLeave { uid, .. }
            | Request::RemoteDisconnect { uid, .. }
            | Request::RemoteFetch { uid, .. }
            | Request::ServerSideEmit { uid, .. }
            | Request::Broadcast { uid, .. } => Some(uid),
        }
    }

    /// The request id, when the request expects answers.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Request::Sockets { request_id, .. }
            | Request::AllRooms { request_id, .. }
            | Request::LegacyRemoteJoin { request_id, .. }
            | Request::LegacyRemoteLeave { request_id, .. }
            | Request::LegacyRemoteDisconnect { request_id, .. }
            | Request::RemoteFetch { request_id, .. }
            | Request::Broadcast { request_id, .. } => Some(request_id),
            Request::ServerSideEmit { request_id, .. } => request_id.as_deref(),
            Request::RemoteJoin { .. } | Request::RemoteLeave { .. } | Request::RemoteDisconnect { .. } => None,
        }
    }

    /// Encodes as the official adapter does: `JSON.stringify` of the request object, or notepack msgpack for
    /// BROADCAST.
    pub fn encode(&self) -> Vec<u8> {
        let ty = Some(Value::from(self.request_type().code()));
        let opt = |s: &Option<String>| s.as_deref().and_then(jstr);
        let object = match self {
            Request::Broadcast { uid, request_id, packet, opts } => {
                return msgpack(|out| {
                    encode::write_map_len(out, 5)?;
                    encode::write_str(out, "uid")?;
                    encode::write_str(out, uid)?;
                    encode::write_str(out, "requestId")?;
                    encode::write_str(out, request_id)?;
                    encode::write_str(out, "type")?;
                    encode::write_uint(out, u64::from(RequestType::Broadcast.code()))?;
                    encode::write_str(out, "packet")?;
                    write_packet(out, packet)?;
                    encode::write_str(out, "opts")?;
                    opts.write(out)
                });
            }
            Request::Sockets { uid, request_id, rooms } => {
                object([("uid", opt(uid)), ("requestId", jstr(request_id)), ("type", ty), ("rooms", jstrs(rooms))])
            }
            Request::AllRooms { uid, request_id } => {
                object([("uid", jstr(uid)), ("requestId", jstr(request_id)), ("type", ty)])
            }
            Request::RemoteJoin { uid, opts, rooms } | Request::RemoteLeave { uid, opts, rooms } => {
                object([("uid", jstr(uid)), ("type", ty), ("opts", opts.to_json()), ("rooms", jstrs(rooms))])
            }
            Request::RemoteDisconnect { uid, opts, close } => object([
                ("uid", jstr(uid)),
                ("type", ty),
                ("opts", opts.to_json()),
                ("close", Some(Value::Bool(*close))),
            ]),
            Request::LegacyRemoteJoin { uid, request_id, sid, room }
            | Request::LegacyRemoteLeave { uid, request_id, sid, room } => object([
                ("uid", opt(uid)),
                ("requestId", jstr(request_id)),
                ("type", ty),
                ("sid", jstr(sid)),
                ("room", jstr(room)),
            ]),
            Request::LegacyRemoteDisconnect { uid, request_id, sid, close } => object([
                ("uid", opt(uid)),
                ("requestId", jstr(request_id)),
                ("type", ty),
                ("sid", jstr(sid)),
                ("close", Some(Value::Bool(*close))),
            ]),
            Request::RemoteFetch { uid, request_id, opts } => {
                object([("uid", jstr(uid)), ("requestId", jstr(request_id)), ("type", ty), ("opts", opts.to_json())])
            }
            Request::ServerSideEmit { uid, request_id, data } => object([
                ("uid", jstr(uid)),
                ("requestId", opt(request_id)),
                ("type", ty),
                ("data", Some(data.iter().map(Data::to_json).collect())),
            ]),
        };
        Value::Object(object).to_string().into_bytes()
    }

    /// Decodes a message from the request channel: JSON when it starts with `{`, msgpack otherwise, as the
    /// official adapter decides. Fails with [`DecodeError::UnknownRequestType`] on a type it does not answer
    /// (which the official adapter ignores), including the response-only types 8 and 9.
    pub fn decode(bytes: &[u8]) -> Result<Request, DecodeError> {
        let mut f = Fields::new(decode_json_or_msgpack(bytes)?, "request")?;
        let code = match f.take("type") {
            None => return Err(DecodeError::MissingField("type")),
            Some(v) => v.as_u64().ok_or(DecodeError::WrongType { field: "type", expected: "a request type" })?,
        };
        let ty = RequestType::from_code(code).ok_or(DecodeError::UnknownRequestType(code))?;
        // The official adapter always sends a uid with the 8.x forms; a missing one reads as "" (never a real uid).
        let uid = |f: &mut Fields| -> Result<String, DecodeError> { Ok(f.opt_str("uid")?.unwrap_or_default()) };
        Ok(match ty {
            RequestType::Sockets => Request::Sockets {
                uid: f.opt_str("uid")?,
                request_id: f.req_str("requestId")?,
                rooms: f.rooms("rooms")?,
            },
            RequestType::AllRooms => Request::AllRooms { uid: uid(&mut f)?, request_id: f.req_str("requestId")? },
            RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect => {
                match f.take("opts") {
                    Some(opts) if opts != Data::Null => {
                        let opts = RoomOpts::read(opts)?;
                        let uid = uid(&mut f)?;
                        match ty {
                            RequestType::RemoteJoin => Request::RemoteJoin { uid, opts, rooms: f.rooms("rooms")? },
                            RequestType::RemoteLeave => Request::RemoteLeave { uid, opts, rooms: f.rooms("rooms")? },
                            _ => Request::RemoteDisconnect { uid, opts, close: f.opt_bool("close")?.unwrap_or(false) },
                        }
                    }
                    _ => {
                        let uid = f.opt_str("uid")?;
                        let request_id = f.req_str("requestId")?;
                        let sid = f.req_str("sid")?;
                        match ty {
                            RequestType::RemoteJoin => {
                                Request::LegacyRemoteJoin { uid, request_id, sid, room: f.req_room("room")? }
                            }
                            RequestType::RemoteLeave => {
                                Request::LegacyRemoteLeave { uid, request_id, sid, room: f.req_room("room")? }
                            }
                            _ => Request::LegacyRemoteDisconnect {
                                uid,
                                request_id,
                                sid,
                                close: f.opt_bool("close")?.unwrap_or(false),
                            },
                        }
                    }
                }
            }
            RequestType::RemoteFetch => Request::RemoteFetch {
                uid: uid(&mut f)?,
                request_id: f.req_str("requestId")?,
                opts: RoomOpts::read(f.take("opts").ok_or(DecodeError::MissingField("opts"))?)?,
            },
            RequestType::ServerSideEmit => Request::ServerSideEmit {
                uid: uid(&mut f)?,
                request_id: f.opt_str("requestId")?,
                data: match f.take("data") {
                    Some(Data::Array(items)) => items,
                    None => return Err(DecodeError::MissingField("data")),
                    Some(_) => return Err(DecodeError::WrongType { field: "data", expected: "an array" }),
                },
            },
            RequestType::Broadcast => Request::Broadcast {
                uid: uid(&mut f)?,
                request_id: f.req_str("requestId")?,
                packet: read_packet(f.take("packet").ok_or(DecodeError::MissingField("packet"))?)?,
                opts: BroadcastOpts::read(f.take("opts").ok_or(DecodeError::MissingField("opts"))?)?,
            },
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => {
                return Err(DecodeError::UnknownRequestType(code));
            }
        })
    }
}

/// A socket's handshake as `fetchSockets` reports it (socket.io's `socket.handshake` minus `sessionStore`). Decoding
/// fills absent keys with empty values; unknown keys (added by middleware) are kept in `extra`.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    /// `headers`: the HTTP request headers (an object of strings or arrays of strings).
    pub headers: Data,
    /// `time`: when the handshake happened, as `new Date() + ""` prints it.
    pub time: String,
    /// `address`: the remote address (absent when the transport does not know it).
    pub address: Option<String>,
    /// `xdomain`: whether the request had an `Origin` header.
    pub xdomain: bool,
    /// `secure`: whether the connection was TLS.
    pub secure: bool,
    /// `issued`: when the handshake happened, in milliseconds since the epoch.
    pub issued: i64,
    /// `url`: the request URL.
    pub url: Option<String>,
    /// `query`: the query parameters (an object).
    pub query: Data,
    /// `auth`: the client's auth payload.
    pub auth: Data,
    /// Other keys, in order.
    pub extra: Vec<(String, Data)>,
}

impl Default for Handshake {
    fn default() -> Self {
        Handshake {
            headers: Data::Map(Vec::new()),
            time: String::new(),
            address: None,
            xdomain: false,
            secure: false,
            issued: 0,
            url: None,
            query: Data::Map(Vec::new()),
            auth: Data::Map(Vec::new()),
            extra: Vec::new(),
        }
    }
}

impl Handshake {
    fn to_json(&self) -> Value {
        let mut object = object([
            ("headers", Some(self.headers.to_json())),
            ("time", jstr(&self.time)),
            ("address", self.address.as_deref().and_then(jstr)),
            ("xdomain", Some(Value::Bool(self.xdomain))),
            ("secure", Some(Value::Bool(self.secure))),
            ("issued", Some(Value::from(self.issued))),
            ("url", self.url.as_deref().and_then(jstr)),
            ("query", Some(self.query.to_json())),
            ("auth", Some(self.auth.to_json())),
        ]);
        object.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.to_json())));
        Value::Object(object)
    }

    fn read(value: Option<Data>) -> Result<Handshake, DecodeError> {
        let mut f = match value {
            None | Some(Data::Null) => return Ok(Handshake::default()),
            Some(v) => Fields::new(v, "handshake")?,
        };
        let empty = || Data::Map(Vec::new());
        Ok(Handshake {
            headers: f.take("headers").unwrap_or_else(empty),
            time: f.opt_str("time")?.unwrap_or_default(),
            address: f.opt_str("address")?,
            xdomain: f.opt_bool("xdomain")?.unwrap_or(false),
            secure: f.opt_bool("secure")?.unwrap_or(false),
            issued: match f.take("issued") {
                None | Some(Data::Null) => 0,
                Some(v) => match v.as_f64() {
                    Some(t) if t.is_finite() => t as i64,
                    _ => return Err(DecodeError::WrongType { field: "issued", expected: "a number" }),
                },
            },
            url: f.opt_str("url")?,
            query: f.take("query").unwrap_or_else(empty),
            auth: f.take("auth").unwrap_or_else(empty),
            extra: f.0,
        })
    }
}

/// One socket in a REMOTE_FETCH answer: `{id, handshake, rooms, data}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FetchedSocket {
    /// The socket id.
    pub id: String,
    /// Its handshake.
    pub handshake: Handshake,
    /// The rooms it is in (its own id included).
    pub rooms: Vec<String>,
    /// `socket.data`; absent when it is `undefined`.
    pub data: Option<Data>,
}

impl FetchedSocket {
    pub(super) fn to_json(&self) -> Value {
        Value::Object(object([
            ("id", jstr(&self.id)),
            ("handshake", Some(self.handshake.to_json())),
            ("rooms", jstrs(&self.rooms)),
            ("data", self.data.as_ref().map(Data::to_json)),
        ]))
    }

    pub(super) fn read(value: Data) -> Result<FetchedSocket, DecodeError> {
        let mut f = Fields::new(value, "socket")?;
        Ok(FetchedSocket {
            id: f.req_str("id")?,
            handshake: Handshake::read(f.take("handshake"))?,
            rooms: f.rooms("rooms")?,
            data: f.take("data"),
        })
    }
}

/// An answer published on a response channel (see [`RawResponse`] to decode one).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// To SOCKETS: `{requestId, sockets: [id, ...]}`.
    Sockets {
        /// The request id.
        request_id: String,
        /// Socket ids.
        sockets: Vec<String>,
    },
    /// To ALL_ROOMS: `{requestId, rooms: [...]}`.
    AllRooms {
        /// The request id.
        request_id: String,
        /// Room names (socket ids included, as in socket.io).
        rooms: Vec<String>,
    },
    /// To REMOTE_FETCH: `{requestId, sockets: [{id, handshake, rooms, data}, ...]}`.
    Fetch {
        /// The request id.
        request_id: String,
        /// The sockets.
        sockets: Vec<FetchedSocket>,
    },
    /// To a legacy single-socket REMOTE_JOIN / LEAVE / DISCONNECT: `{requestId}`.
    Done {
        /// The request id.
        request_id: String,
    },
    /// To SERVER_SIDE_EMIT: `{type: 6, requestId, data}`, the first argument the handler acked with (absent when
    /// it was `undefined`). Always published on the namespace-wide response channel.
    ServerSideEmit {
        /// The request id.
        request_id: String,
        /// The acked value.
        data: Option<Data>,
    },
    /// To BROADCAST: `{type: 8, requestId, clientCount}`, how many sockets this node reached.
    BroadcastClientCount {
        /// The request id.
        request_id: String,
        /// Sockets reached.
        client_count: u64,
    },
    /// To BROADCAST, once per socket ack (msgpack): `{type: 9, requestId, packet}`, the first argument of the
    /// socket's ack (absent when it was `undefined`).
    BroadcastAck {
        /// The request id.
        request_id: String,
        /// The acked value.
        packet: Option<Data>,
    },
}

impl Response {
    /// The request id it answers.
    pub fn request_id(&self) -> &str {
        match self {
            Response::Sockets { request_id, .. }
            | Response::AllRooms { request_id, .. }
            | Response::Fetch { request_id, .. }
            | Response::Done { request_id }
            | Response::ServerSideEmit { request_id, .. }
            | Response::BroadcastClientCount { request_id, .. }
            | Response::BroadcastAck { request_id, .. } => request_id,
        }
    }

    /// The channel the official adapter publishes it on, answering node `requester_uid`'s request: that node's
    /// own response channel when `publish_on_specific_channel` (the adapter option
    /// `publishOnSpecificResponseChannel`), except for SERVER_SIDE_EMIT answers, which always take the
    /// namespace-wide one.
    pub fn channel(&self, prefix: &str, nsp: &str, requester_uid: &str, publish_on_specific_channel: bool) -> String {
        let specific = publish_on_specific_channel && !matches!(self, Response::ServerSideEmit { .. });
        response_channel(prefix, nsp, specific.then_some(requester_uid))
    }

    /// Encodes as the official adapter does: `JSON.stringify` of the response object, or notepack msgpack for
    /// BROADCAST_ACK.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_from(None)
    }

    /// [`encode`](Self::encode), with the answering node's uid as one more key (`uid`, last) when given: Tidewire
    /// nodes name themselves so that a requester can tell who answered; the official adapter reads only the keys
    /// it knows and ignores it.
    pub fn encode_from(&self, uid: Option<&str>) -> Vec<u8> {
        let mut object = match self {
            Response::BroadcastAck { request_id, packet } => {
                return msgpack(|out| {
                    encode::write_map_len(out, 2 + u32::from(packet.is_some()) + u32::from(uid.is_some()))?;
                    encode::write_str(out, "type")?;
                    encode::write_uint(out, u64::from(RequestType::BroadcastAck.code()))?;
                    encode::write_str(out, "requestId")?;
                    encode::write_str(out, request_id)?;
                    if let Some(p) = packet {
                        encode::write_str(out, "packet")?;
                        write_data(out, p)?;
                    }
                    if let Some(uid) = uid {
                        encode::write_str(out, "uid")?;
                        encode::write_str(out, uid)?;
                    }
                    Ok(())
                });
            }
            Response::Sockets { request_id, sockets } => {
                object([("requestId", jstr(request_id)), ("sockets", jstrs(sockets))])
            }
            Response::AllRooms { request_id, rooms } => {
                object([("requestId", jstr(request_id)), ("rooms", jstrs(rooms))])
            }
            Response::Fetch { request_id, sockets } => object([
                ("requestId", jstr(request_id)),
                ("sockets", Some(sockets.iter().map(FetchedSocket::to_json).collect())),
            ]),
            Response::Done { request_id } => object([("requestId", jstr(request_id))]),
            Response::ServerSideEmit { request_id, data } => object([
                ("type", Some(Value::from(RequestType::ServerSideEmit.code()))),
                ("requestId", jstr(request_id)),
                ("data", data.as_ref().map(Data::to_json)),
            ]),
            Response::BroadcastClientCount { request_id, client_count } => object([
                ("type", Some(Value::from(RequestType::BroadcastClientCount.code()))),
                ("requestId", jstr(request_id)),
                ("clientCount", Some(Value::from(*client_count))),
            ]),
        };
        if let Some(uid) = uid {
            object.insert("uid".to_owned(), Value::from(uid));
        }
        Value::Object(object).to_string().into_bytes()
    }
}

/// A decoded response whose meaning depends on the request it answers: the official adapter finds the request by
/// `requestId` and reads the response by that request's type (only BROADCAST answers carry a `type` that matters).
#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse {
    request_id: Option<String>,
    response_type: Option<u64>,
    uid: Option<String>,
    fields: Fields,
}

impl RawResponse {
    /// Decodes a message from a response channel: JSON when it starts with `{`, msgpack otherwise.
    pub fn decode(bytes: &[u8]) -> Result<RawResponse, DecodeError> {
        let mut fields = Fields::new(decode_json_or_msgpack(bytes)?, "response")?;
        let request_id = fields.opt_str("requestId")?;
        let response_type = fields.get("type").and_then(Data::as_u64);
        let uid = match fields.take("uid") {
            Some(Data::Str(uid)) => Some(uid),
            _ => None,
        };
        Ok(RawResponse { request_id, response_type, uid, fields })
    }

    /// The id of the request it answers (the official adapter ignores a response without one).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The answering node's uid, when it named itself (see [`Response::encode_from`]).
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// The `type` key, present on SERVER_SIDE_EMIT, BROADCAST_CLIENT_COUNT and BROADCAST_ACK answers.
    pub fn response_type(&self) -> Option<u64> {
        self.response_type
    }

    /// Reads it as an answer to a request of type `asked`. For a BROADCAST, `type` tells the client count (8)
    /// from an ack (9). A SOCKETS, ALL_ROOMS or REMOTE_FETCH answer without its list fails with
    /// [`DecodeError::MissingField`]; the official adapter still counts such an answer as received.
    pub fn interpret(self, asked: RequestType) -> Result<Response, DecodeError> {
        let mut f = self.fields;
        let request_id = self.request_id.ok_or(DecodeError::MissingField("requestId"))?;
        let list = |f: &mut Fields, key: &'static str| match f.take(key) {
            Some(Data::Array(items)) => Ok(items),
            _ => Err(DecodeError::MissingField(key)),
        };
        Ok(match asked {
            RequestType::Sockets => Response::Sockets {
                request_id,
                sockets: list(&mut f, "sockets")?
                    .into_iter()
                    .map(|d| room_string(d, "sockets"))
                    .collect::<Result<_, _>>()?,
            },
            RequestType::AllRooms => Response::AllRooms {
                request_id,
                rooms: list(&mut f, "rooms")?.into_iter().map(|d| room_string(d, "rooms")).collect::<Result<_, _>>()?,
            },
            RequestType::RemoteFetch => Response::Fetch {
                request_id,
                sockets: list(&mut f, "sockets")?.into_iter().map(FetchedSocket::read).collect::<Result<_, _>>()?,
            },
            RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect => {
                Response::Done { request_id }
            }
            RequestType::ServerSideEmit => Response::ServerSideEmit { request_id, data: f.take("data") },
            RequestType::Broadcast => match self.response_type {
                Some(8) => Response::BroadcastClientCount {
                    request_id,
                    client_count: match f.take("clientCount") {
                        Some(v) => {
                            v.as_u64().ok_or(DecodeError::WrongType { field: "clientCount", expected: "a count" })?
                        }
                        None => return Err(DecodeError::MissingField("clientCount")),
                    },
                },
                Some(9) => Response::BroadcastAck { request_id, packet: f.take("packet") },
                _ => return Err(DecodeError::UnexpectedResponse { asked }),
            },
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => {
                return Err(DecodeError::UnexpectedResponse { asked });
            }
        })
    }
}

/// Decodes a request or response body the way the official adapter does: JSON when the first byte is `{`.
pub(super) fn decode_json_or_msgpack(bytes: &[u8]) -> Result<Data, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError::Empty),
        Some(b'{') => {
            let value: Value = serde_json::from_slice(bytes)?;
            Ok(Data::from_json(&value))
        }
        Some(_) => Data::from_msgpack(bytes),
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
    /// The message ends in the middle of a value.
    #[error("truncated msgpack")]
    Truncated,
    /// Bytes after the message's value.
    #[error("{0} trailing bytes after the msgpack value")]
    TrailingBytes(usize),
    /// Arrays and maps nested deeper than [`MAX_DEPTH`].
    #[error("msgpack nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A map key that JavaScript would not turn into a property name (binary, array, map, date, extension,
    /// `undefined`).
    #[error("unsupported msgpack map key")]
    UnsupportedKey,
    /// A timestamp extension of the wrong size.
    #[error("malformed msgpack timestamp")]
    BadTimestamp,
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
    /// A binary placeholder whose `num` is not an index into the attachments.
    #[error("binary placeholder without a matching attachment")]
    BadPlaceholder,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn map(entries: Vec<(&str, Data)>) -> Data {
        Data::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    // Goldens: published by the real @socket.io/redis-adapter 8.3.0 (socket.io 4.8.4, notepack.io 3.0.1) driven
    // with fake Redis clients and uid2 stubbed to "uidAAA" (first adapter), "req002", "req003", ... Each comment is
    // the call that produced it. tests/fixtures/classic/generate-goldens.js regenerates them.

    /// `io.to("room1").except("sid9").compress(false).emit("hello", "world", Buffer.from([1, 2, 3]),
    /// { a: 1.5, n: -200, big: 2 ** 40, f: 0.1, u: undefined, z: null, t: true })` on channel `socket.io#/#room1#`.
    const GOLDEN_BROADCAST_ROOM: &str = "93a675696441414183a47479706502a46461746194a568656c6c6fa5776f726c64c403010203\
        86a161cb3ff8000000000000a16ed1ff38a3626967cf0000010000000000a166cb3fb999999999999aa17ac0a174c3a36e7370a12f83a5\
        726f6f6d7391a5726f6f6d31a665786365707491a473696439a5666c61677381a8636f6d7072657373c2";

    /// `io.of("/chat").to(["a", "b"]).volatile.emit("multi")` (adapter uid "req002") on `socket.io#/chat#`.
    const GOLDEN_BROADCAST_MULTI: &str = "93a672657130303283a47479706502a46461746191a56d756c7469a36e7370a52f63686174\
        83a5726f6f6d7392a161a162a665786365707490a5666c61677381a8766f6c6174696c65c3";

    /// `io.emit("plain", 1)` on `socket.io#/#`.
    const GOLDEN_BROADCAST_ALL: &str = "93a675696441414183a47479706502a46461746192a5706c61696e01a36e7370a12f83a5726f\
        6f6d7390a665786365707490a5666c61677380";

    /// `io.timeout(5000).emit("ask", Buffer.from("hi"), () => {})` on `socket.io-request#/#` (BROADCAST request).
    const GOLDEN_BROADCAST_REQUEST: &str = "85a3756964a6756964414141a9726571756573744964a6726571303033a47479706507a6\
        7061636b657483a47479706502a46461746192a361736bc4026869a36e7370a12fa46f70747383a5726f6f6d7390a665786365707490\
        a5666c61677381a774696d656f7574cd1388";

    /// `notepack.encode({ type: 9, requestId: "rq0003", packet: { ok: Buffer.from([7]) } })` (the adapter's
    /// BROADCAST_ACK answer expression).
    const GOLDEN_BROADCAST_ACK: &str = "83a47479706509a9726571756573744964a6727130303033a67061636b657481a26f6bc40107";

    /// Same with `packet: undefined` (key omitted).
    const GOLDEN_BROADCAST_ACK_UNDEFINED: &str = "82a47479706509a9726571756573744964a6727130303033";

    /// `notepack.encode([new Date(1735787045678), new Date(0), new Date(-1), new Date(Date.UTC(2500, 0, 1)),
    /// 2 ** 53 + 2, -(2 ** 40), 1e21, 0.5, -0, NaN, undefined, new Uint8Array([4, 5])])`. Note 1e21: notepack writes
    /// a wrapped uint64.
    const GOLDEN_SPECIAL: &str = "9cd7ffa1a5d60067760225d6ff00000000c70cff3b8b87c0ffffffffffffffffd7ff00000003e4e6b080\
        cf0020000000000002d3ffffff0000000000cf35c9adc5dea00000cb3fe000000000000000cb7ff8000000000000c0c4020405";

    #[test]
    fn the_uid_is_read_without_decoding_the_rest() {
        let message = golden_room();
        assert_eq!(ClassicBroadcast::peek_uid(&message.encode()), Some(message.uid.as_str()));
        assert_eq!(ClassicBroadcast::peek_uid(b""), None);
        assert_eq!(ClassicBroadcast::peek_uid(&Data::from("not an array").to_msgpack()), None);
        assert_eq!(
            ClassicBroadcast::peek_uid(&Data::Array(vec![Data::from(1i64), Data::Null, Data::Null]).to_msgpack()),
            None
        );
    }

    fn golden_room() -> ClassicBroadcast {
        ClassicBroadcast {
            uid: "uidAAA".into(),
            packet: Packet::event(
                "/",
                vec![
                    "hello".into(),
                    "world".into(),
                    Data::Bin(Bytes::from_static(&[1, 2, 3])),
                    map(vec![
                        ("a", Data::Float(1.5)),
                        ("n", Data::from(-200i64)),
                        ("big", Data::from(1u64 << 40)),
                        ("f", Data::Float(0.1)),
                        ("z", Data::Null),
                        ("t", Data::Bool(true)),
                    ]),
                ],
            ),
            opts: BroadcastOpts {
                rooms: strings(&["room1"]),
                except: strings(&["sid9"]),
                flags: Flags { compress: Some(false), ..Flags::default() },
            },
        }
    }

    fn golden_multi() -> ClassicBroadcast {
        ClassicBroadcast {
            uid: "req002".into(),
            packet: Packet::event("/chat", vec!["multi".into()]),
            opts: BroadcastOpts {
                rooms: strings(&["a", "b"]),
                except: vec![],
                flags: Flags { volatile: Some(true), ..Flags::default() },
            },
        }
    }

    fn golden_all() -> ClassicBroadcast {
        ClassicBroadcast {
            uid: "uidAAA".into(),
            packet: Packet::event("/", vec!["plain".into(), Data::from(1u64)]),
            opts: BroadcastOpts::default(),
        }
    }

    #[test]
    fn broadcasts_match_notepack_goldens() {
        for (value, golden, channel) in [
            (golden_room(), GOLDEN_BROADCAST_ROOM, "socket.io#/#room1#"),
            (golden_multi(), GOLDEN_BROADCAST_MULTI, "socket.io#/chat#"),
            (golden_all(), GOLDEN_BROADCAST_ALL, "socket.io#/#"),
        ] {
            let golden = hex(golden);
            assert_eq!(to_hex(&value.encode()), to_hex(&golden));
            assert_eq!(ClassicBroadcast::decode(&golden).expect("decode"), value);
            assert_eq!(value.channel(DEFAULT_PREFIX), channel);
        }
    }

    #[test]
    fn broadcast_request_matches_golden() {
        let request = Request::Broadcast {
            uid: "uidAAA".into(),
            request_id: "req003".into(),
            packet: Packet::event("/", vec!["ask".into(), Data::Bin(Bytes::from_static(b"hi"))]),
            opts: BroadcastOpts {
                flags: Flags { timeout: Some(5000), ..Flags::default() },
                ..BroadcastOpts::default()
            },
        };
        let golden = hex(GOLDEN_BROADCAST_REQUEST);
        assert_eq!(to_hex(&request.encode()), to_hex(&golden));
        assert_eq!(Request::decode(&golden).expect("decode"), request);
        assert_eq!(request.request_id(), Some("req003"));
        assert_eq!(request.uid(), Some("uidAAA"));
    }

    #[test]
    fn broadcast_ack_responses_match_goldens() {
        let ack = Response::BroadcastAck {
            request_id: "rq0003".into(),
            packet: Some(map(vec![("ok", Data::Bin(Bytes::from_static(&[7])))])),
        };
        assert_eq!(to_hex(&ack.encode()), GOLDEN_BROADCAST_ACK);
        let raw = RawResponse::decode(&hex(GOLDEN_BROADCAST_ACK)).expect("decode");
        assert_eq!((raw.request_id(), raw.response_type()), (Some("rq0003"), Some(9)));
        assert_eq!(raw.interpret(RequestType::Broadcast).expect("interpret"), ack);

        let none = Response::BroadcastAck { request_id: "rq0003".into(), packet: None };
        assert_eq!(to_hex(&none.encode()), GOLDEN_BROADCAST_ACK_UNDEFINED);
        let raw = RawResponse::decode(&hex(GOLDEN_BROADCAST_ACK_UNDEFINED)).expect("decode");
        assert_eq!(raw.interpret(RequestType::Broadcast).expect("interpret"), none);
    }

    /// JSON requests exactly as the adapter's `JSON.stringify` printed them (adapter uid "uidAAA").
    #[test]
    fn json_requests_match_goldens() {
        let cases: Vec<(&str, Request)> = vec![
            // io.serverSideEmit("sse", 1, "x", { k: [true] })
            (
                r#"{"uid":"uidAAA","type":6,"data":["sse",1,"x",{"k":[true]}]}"#,
                Request::ServerSideEmit {
                    uid: "uidAAA".into(),
                    request_id: None,
                    data: vec!["sse".into(), Data::from(1u64), "x".into(), map(vec![("k", vec![true.into()].into())])],
                },
            ),
            // io.serverSideEmit("sse2", 2, () => {})
            (
                r#"{"uid":"uidAAA","requestId":"req004","type":6,"data":["sse2",2]}"#,
                Request::ServerSideEmit {
                    uid: "uidAAA".into(),
                    request_id: Some("req004".into()),
                    data: vec!["sse2".into(), Data::from(2u64)],
                },
            ),
            // io.fetchSockets()
            (
                r#"{"uid":"uidAAA","requestId":"req005","type":5,"opts":{"rooms":[],"except":[]}}"#,
                Request::RemoteFetch { uid: "uidAAA".into(), request_id: "req005".into(), opts: RoomOpts::default() },
            ),
            // io.in("r1").except("r2").socketsJoin(["j1", "j2"])
            (
                r#"{"uid":"uidAAA","type":2,"opts":{"rooms":["r1"],"except":["r2"]},"rooms":["j1","j2"]}"#,
                Request::RemoteJoin {
                    uid: "uidAAA".into(),
                    opts: RoomOpts { rooms: strings(&["r1"]), except: strings(&["r2"]) },
                    rooms: strings(&["j1", "j2"]),
                },
            ),
            // io.in("r1").socketsLeave("l1")
            (
                r#"{"uid":"uidAAA","type":3,"opts":{"rooms":["r1"],"except":[]},"rooms":["l1"]}"#,
                Request::RemoteLeave {
                    uid: "uidAAA".into(),
                    opts: RoomOpts { rooms: strings(&["r1"]), except: vec![] },
                    rooms: strings(&["l1"]),
                },
            ),
            // io.in("r3").disconnectSockets(true)
            (
                r#"{"uid":"uidAAA","type":4,"opts":{"rooms":["r3"],"except":[]},"close":true}"#,
                Request::RemoteDisconnect {
                    uid: "uidAAA".into(),
                    opts: RoomOpts { rooms: strings(&["r3"]), except: vec![] },
                    close: true,
                },
            ),
            // io.of("/").adapter.allRooms()
            (
                r#"{"uid":"uidAAA","requestId":"req006","type":1}"#,
                Request::AllRooms { uid: "uidAAA".into(), request_id: "req006".into() },
            ),
        ];
        for (json, request) in cases {
            assert_eq!(String::from_utf8(request.encode()).expect("utf8"), json);
            assert_eq!(Request::decode(json.as_bytes()).expect(json), request);
        }
    }

    /// JSON responses exactly as the adapter printed them when fed requests from a peer (`onrequest`), and the
    /// REMOTE_FETCH expression applied to a handshake as socket.io builds it.
    #[test]
    fn json_responses_match_goldens() {
        let handshake = Handshake {
            headers: map(vec![("host", "localhost:3000".into()), ("user-agent", "node".into())]),
            time: "Thu Jan 02 2025 03:04:05 GMT+0000 (Coordinated Universal Time)".into(),
            address: Some("::1".into()),
            xdomain: false,
            secure: false,
            issued: 1_735_787_045_678,
            url: Some("/socket.io/?EIO=4&transport=websocket".into()),
            query: map(vec![("EIO", "4".into()), ("transport", "websocket".into())]),
            auth: map(vec![("token", "t".into())]),
            extra: vec![],
        };
        let cases: Vec<(&str, RequestType, Response)> = vec![
            (
                r#"{"requestId":"rq0001","rooms":["s1","roomX"]}"#,
                RequestType::AllRooms,
                Response::AllRooms { request_id: "rq0001".into(), rooms: strings(&["s1", "roomX"]) },
            ),
            (
                r#"{"requestId":"rq0002","sockets":[]}"#,
                RequestType::Sockets,
                Response::Sockets { request_id: "rq0002".into(), sockets: vec![] },
            ),
            (
                r#"{"type":8,"requestId":"rq0003","clientCount":0}"#,
                RequestType::Broadcast,
                Response::BroadcastClientCount { request_id: "rq0003".into(), client_count: 0 },
            ),
            (
                concat!(
                    r#"{"requestId":"rq0005","sockets":[{"id":"s1","#,
                    r#""handshake":{"headers":{"host":"localhost:3000","user-agent":"node"},"#,
                    r#""time":"Thu Jan 02 2025 03:04:05 GMT+0000 (Coordinated Universal Time)","#,
                    r#""address":"::1","xdomain":false,"secure":false,"issued":1735787045678,"#,
                    r#""url":"/socket.io/?EIO=4&transport=websocket","#,
                    r#""query":{"EIO":"4","transport":"websocket"},"auth":{"token":"t"}},"#,
                    r#""rooms":["s1","roomX"],"data":{"user":"u1","n":2.5}}]}"#,
                ),
                RequestType::RemoteFetch,
                Response::Fetch {
                    request_id: "rq0005".into(),
                    sockets: vec![FetchedSocket {
                        id: "s1".into(),
                        handshake,
                        rooms: strings(&["s1", "roomX"]),
                        data: Some(map(vec![("user", "u1".into()), ("n", Data::Float(2.5))])),
                    }],
                },
            ),
            (r#"{"requestId":"rq0009"}"#, RequestType::RemoteJoin, Response::Done { request_id: "rq0009".into() }),
        ];
        for (json, asked, response) in cases {
            assert_eq!(String::from_utf8(response.encode()).expect("utf8"), json);
            let raw = RawResponse::decode(json.as_bytes()).expect(json);
            assert_eq!(raw.interpret(asked).expect(json), response);
        }

        // The server-side-emit answer to `cb({ ok: Buffer.from([9]) })`: JSON.stringify turns the Buffer into an
        // object, and so does Tidewire's encoder.
        let golden = r#"{"type":6,"requestId":"rq0004","data":{"ok":{"type":"Buffer","data":[9]}}}"#;
        let sent = Response::ServerSideEmit {
            request_id: "rq0004".into(),
            data: Some(map(vec![("ok", Data::Bin(Bytes::from_static(&[9])))])),
        };
        assert_eq!(String::from_utf8(sent.encode()).expect("utf8"), golden);
        let received = RawResponse::decode(golden.as_bytes()).expect("decode").interpret(RequestType::ServerSideEmit);
        let expected = map(vec![("ok", map(vec![("type", "Buffer".into()), ("data", vec![Data::from(9u64)].into())]))]);
        assert_eq!(
            received.expect("interpret"),
            Response::ServerSideEmit { request_id: "rq0004".into(), data: Some(expected) }
        );
        let undefined = Response::ServerSideEmit { request_id: "r".into(), data: None };
        assert_eq!(undefined.encode(), br#"{"type":6,"requestId":"r"}"#);
    }

    #[test]
    fn every_request_round_trips() {
        let opts = RoomOpts { rooms: strings(&["a#b", "c"]), except: strings(&["sid"]) };
        let requests = vec![
            Request::Sockets { uid: None, request_id: "r0".into(), rooms: strings(&["x"]) },
            Request::Sockets { uid: Some("u".into()), request_id: "r0".into(), rooms: vec![] },
            Request::AllRooms { uid: "u".into(), request_id: "r1".into() },
            Request::RemoteJoin { uid: "u".into(), opts: opts.clone(), rooms: strings(&["j"]) },
            Request::RemoteLeave { uid: "u".into(), opts: opts.clone(), rooms: strings(&["l"]) },
            Request::RemoteDisconnect { uid: "u".into(), opts: opts.clone(), close: false },
            Request::LegacyRemoteJoin { uid: None, request_id: "r2".into(), sid: "s".into(), room: "x".into() },
            Request::LegacyRemoteLeave {
                uid: Some("u".into()),
                request_id: "r3".into(),
                sid: "s".into(),
                room: "y".into(),
            },
            Request::LegacyRemoteDisconnect { uid: None, request_id: "r4".into(), sid: "s".into(), close: true },
            Request::RemoteFetch { uid: "u".into(), request_id: "r5".into(), opts: opts.clone() },
            Request::ServerSideEmit {
                uid: "u".into(),
                request_id: Some("r6".into()),
                data: vec!["e".into(), Data::Float(0.25), Data::from(-3i64), Data::Null, map(vec![])],
            },
            Request::Broadcast {
                uid: "u".into(),
                request_id: "r7".into(),
                packet: Packet { kind: 2, nsp: "/n".into(), data: vec!["e".into()], id: Some(7) },
                opts: BroadcastOpts {
                    rooms: opts.rooms.clone(),
                    except: opts.except.clone(),
                    flags: Flags {
                        volatile: Some(true),
                        compress: Some(true),
                        local: Some(false),
                        broadcast: Some(true),
                        binary: Some(false),
                        timeout: Some(1234),
                        expect_single_response: Some(true),
                    },
                },
            },
        ];
        for request in requests {
            let bytes = request.encode();
            assert_eq!(bytes[0] == b'{', !matches!(request, Request::Broadcast { .. }));
            assert_eq!(Request::decode(&bytes).expect("decode"), request);
        }
        // Legacy forms as pre-8 nodes printed them (no uid).
        let legacy = br#"{"requestId":"abc","type":2,"sid":"s1","room":"r"}"#;
        assert_eq!(
            Request::decode(legacy).expect("decode"),
            Request::LegacyRemoteJoin { uid: None, request_id: "abc".into(), sid: "s1".into(), room: "r".into() }
        );
        assert_eq!(
            Request::LegacyRemoteJoin { uid: None, request_id: "abc".into(), sid: "s1".into(), room: "r".into() }
                .encode(),
            legacy
        );
    }

    #[test]
    fn every_response_round_trips() {
        let responses = vec![
            (RequestType::Sockets, Response::Sockets { request_id: "a".into(), sockets: strings(&["s1", "s2"]) }),
            (RequestType::AllRooms, Response::AllRooms { request_id: "b".into(), rooms: strings(&["r"]) }),
            (
                RequestType::RemoteFetch,
                Response::Fetch {
                    request_id: "c".into(),
                    sockets: vec![FetchedSocket {
                        id: "s".into(),
                        handshake: Handshake {
                            extra: vec![("custom".into(), Data::from(5u64))],
                            ..Handshake::default()
                        },
                        rooms: strings(&["s"]),
                        data: None,
                    }],
                },
            ),
            (RequestType::RemoteLeave, Response::Done { request_id: "d".into() }),
            (RequestType::ServerSideEmit, Response::ServerSideEmit { request_id: "e".into(), data: Some(Data::Null) }),
            (RequestType::Broadcast, Response::BroadcastClientCount { request_id: "f".into(), client_count: 3 }),
            (
                RequestType::Broadcast,
                Response::BroadcastAck { request_id: "g".into(), packet: Some(Data::Date(1_735_787_045_678)) },
            ),
        ];
        for (asked, response) in responses {
            let raw = RawResponse::decode(&response.encode()).expect("decode");
            assert_eq!(raw.request_id(), Some(response.request_id()));
            assert_eq!(raw.interpret(asked).expect("interpret"), response);
        }
        let count = RawResponse::decode(br#"{"type":8,"requestId":"f","clientCount":3}"#).expect("decode");
        assert!(matches!(count.interpret(RequestType::AllRooms), Err(DecodeError::MissingField("rooms"))));
        let other = RawResponse::decode(br#"{"requestId":"f"}"#).expect("decode");
        assert!(matches!(other.interpret(RequestType::Broadcast), Err(DecodeError::UnexpectedResponse { .. })));
    }

    #[test]
    fn response_channels() {
        let done = Response::Done { request_id: "r".into() };
        assert_eq!(done.channel("socket.io", "/", "abc", false), "socket.io-response#/#");
        assert_eq!(done.channel("socket.io", "/", "abc", true), "socket.io-response#/#abc#");
        let sse = Response::ServerSideEmit { request_id: "r".into(), data: None };
        assert_eq!(sse.channel("socket.io", "/", "abc", true), "socket.io-response#/#");
    }

    #[test]
    fn channel_names() {
        assert_eq!(broadcast_channel(DEFAULT_PREFIX, "/chat"), "socket.io#/chat#");
        assert_eq!(room_channel(DEFAULT_PREFIX, "/", "a#b"), "socket.io#/#a#b#");
        assert_eq!(broadcast_pattern(DEFAULT_PREFIX, "/"), "socket.io#/#*");
        assert_eq!(request_channel(DEFAULT_PREFIX, "/chat"), "socket.io-request#/chat#");
        assert_eq!(response_channel(DEFAULT_PREFIX, "/", None), "socket.io-response#/#");
        assert_eq!(response_channel(DEFAULT_PREFIX, "/", Some("u1")), "socket.io-response#/#u1#");

        let p = DEFAULT_PREFIX;
        assert_eq!(parse_channel(p, "socket.io#/chat#"), Some(Channel::Broadcast { nsp: "/chat", room: None }));
        assert_eq!(parse_channel(p, "socket.io#/#a#b#"), Some(Channel::Broadcast { nsp: "/", room: Some("a#b") }));
        assert_eq!(parse_channel(p, "socket.io#/#é#"), Some(Channel::Broadcast { nsp: "/", room: Some("é") }));
        // One character after the namespace is no room, as in the adapter's `slice(len, -1)`.
        assert_eq!(parse_channel(p, "socket.io#/#x"), Some(Channel::Broadcast { nsp: "/", room: None }));
        assert_eq!(parse_channel(p, "socket.io-request#/chat#"), Some(Channel::Request { nsp: "/chat" }));
        assert_eq!(parse_channel(p, "socket.io-response#/#"), Some(Channel::Response { nsp: "/", uid: None }));
        assert_eq!(
            parse_channel(p, "socket.io-response#/chat#Ab-_9z#"),
            Some(Channel::Response { nsp: "/chat", uid: Some("Ab-_9z") })
        );
        for other in [
            "socket.io",
            "socket.io#/",
            "other#/#",
            "socket.io-request#/",
            "socket.iox#/#",
            "",
            "socket.io-participant#/#",
        ] {
            assert_eq!(parse_channel(p, other), None, "{other}");
        }
        assert_eq!(parse_channel("app", "app#/#r#"), Some(Channel::Broadcast { nsp: "/", room: Some("r") }));

        assert_eq!(broadcast_room(p, "/", "socket.io#/#"), Some(None));
        assert_eq!(broadcast_room(p, "/", "socket.io#/#room#1#"), Some(Some("room#1")));
        assert_eq!(broadcast_room(p, "/a#b", "socket.io#/a#b#r#"), Some(Some("r")));
        assert_eq!(broadcast_room(p, "/", "socket.io#/chat#"), None);
    }

    #[test]
    fn channel_of_a_broadcast() {
        let mut b = golden_all();
        assert_eq!(b.channel("p"), "p#/#");
        b.opts.rooms = strings(&["r", "r"]);
        assert_eq!(b.channel("p"), "p#/#r#", "a set of one room");
        b.opts.rooms = strings(&["r", "s"]);
        assert_eq!(b.channel("p"), "p#/#");
    }

    #[test]
    fn notepack_special_values() {
        let golden = hex(GOLDEN_SPECIAL);
        let decoded = Data::from_msgpack(&golden).expect("decode");
        let expected = Data::Array(vec![
            Data::Date(1_735_787_045_678),
            Data::Date(0),
            Data::Date(-1),
            Data::Date(16_725_225_600_000),
            Data::UInt((1 << 53) + 2),
            Data::Int(-(1 << 40)),
            Data::UInt(0x35c9_adc5_dea0_0000), // notepack's wrapped 1e21
            Data::Float(0.5),
            Data::UInt(0),
            Data::Float(f64::NAN),
            Data::Null,
            Data::Bin(Bytes::from_static(&[4, 5])),
        ]);
        // NaN != NaN: compare the encodings, which are exactly notepack's.
        assert_eq!(to_hex(&decoded.to_msgpack()), to_hex(&golden));
        assert_eq!(to_hex(&expected.to_msgpack()), to_hex(&golden));
        let (Data::Array(items), Data::Array(expected)) = (&decoded, &expected) else { panic!("arrays") };
        assert!(matches!(items[9], Data::Float(f) if f.is_nan()));
        assert_eq!(items[..9], expected[..9]);
        assert_eq!(items[10..], expected[10..]);
        // Where Tidewire differs on purpose: 1e21 stays a float64.
        assert_eq!(to_hex(&Data::Float(1e21).to_msgpack()), "cb444b1ae4d6e2ef50");
        assert_eq!(to_hex(&Data::Float(-0.0).to_msgpack()), "00");
        assert_eq!(to_hex(&Data::Float(-(2f64.powi(63))).to_msgpack()), "d38000000000000000");
        assert_eq!(to_hex(&Data::Float(300.0).to_msgpack()), "cd012c");
        assert_eq!(
            Data::Date(1_735_787_045_678).to_json_string(),
            "1735787045678",
            "a Date goes into JSON as its milliseconds (JSON.stringify writes its ISO string)"
        );
    }

    #[test]
    fn decodes_other_msgpack_forms() {
        let cases: Vec<(&str, Data)> = vec![
            ("ca3fc00000", Data::Float(1.5)),               // float32
            ("ca3dcccccd", Data::Float(f64::from(0.1f32))), // float32, not exactly 0.1
            ("cfffffffffffffffff", Data::UInt(u64::MAX)),   // uint64 max
            ("d38000000000000000", Data::Int(i64::MIN)),    // int64 min
            ("d005", Data::UInt(5)),                        // signed form, positive: normalized
            ("d1ff38", Data::Int(-200)),
            ("d2ffffffff", Data::Int(-1)),
            ("cd0100", Data::UInt(256)),
            ("ce00010000", Data::UInt(65536)),
            ("d6ff00000001", Data::Date(1000)),                // timestamp 32
            ("d7000000000000000002", Data::Date(2)),           // notepack 2.x Date
            ("d7fffffffffc00000000", Data::Date(1073)),        // timestamp 64, ns = 2^30 - 1
            ("c70cff000000000000000000000000", Data::Date(0)), // timestamp 96
            ("c70cff00000000ffffffffffffffff", Data::Date(-1000)),
            ("c70cff000000007fffffffffffffff", Data::Null), // out of Date range: invalid
            ("c70200abcd", Data::Bin(Bytes::from_static(&[0xab, 0xcd]))), // ext type 0: ArrayBuffer
            ("d40501", Data::Array(vec![Data::UInt(5), Data::Bin(Bytes::from_static(&[1]))])),
            ("d5ff0102", Data::Array(vec![Data::Int(-1), Data::Bin(Bytes::from_static(&[1, 2]))])),
            ("c8000103aa", Data::Array(vec![Data::UInt(3), Data::Bin(Bytes::from_static(&[0xaa]))])),
            ("92d40000c0", Data::Array(vec![Data::Null, Data::Null])), // undefined in an array
            ("82a161d40000a16201", map(vec![("b", Data::UInt(1))])),   // undefined value: key dropped
            ("83a16101a16202a16103", map(vec![("a", Data::UInt(3)), ("b", Data::UInt(2))])), // last wins
            ("82a16101a161d40000", map(vec![])),                       // undefined overrides
            // Wire order is kept (a JS object would list the integer-like keys "1", "123" first).
            ("8301a178c3a1797ba17a", map(vec![("1", "x".into()), ("true", "y".into()), ("123", "z".into())])),
            ("81cb3ff8000000000000c0", map(vec![("1.5", Data::Null)])),
            ("a2ff61", Data::Str("\u{fffd}a".into())), // invalid UTF-8 replaced
            ("a3c3a961", Data::Str("éa".into())),
            ("d90161", Data::Str("a".into())),
            ("da000161", Data::Str("a".into())),
            ("db0000000161", Data::Str("a".into())),
            ("c5000161", Data::Bin(Bytes::from_static(b"a"))),
            ("dc000101", Data::Array(vec![Data::UInt(1)])),
            ("de0001a16101", map(vec![("a", Data::UInt(1))])),
            ("d40000", Data::Null),
        ];
        for (h, expected) in cases {
            assert_eq!(Data::from_msgpack(&hex(h)).expect(h), expected, "{h}");
        }
        // A large map of repeated keys goes through the index.
        let mut big = vec![0xde, 0x01, 0x00];
        for i in 0..256u32 {
            big.extend_from_slice(&[0xa1, b'k', 0xcd]);
            big.extend_from_slice(&(i as u16).to_be_bytes());
        }
        assert_eq!(Data::from_msgpack(&big).expect("big"), map(vec![("k", Data::UInt(255))]));
    }

    #[test]
    fn decoding_is_tolerant_of_node_variations() {
        // Reordered keys, extra keys and elements, no nsp, no rooms / except / flags, ints of other widths.
        let msg = Data::Array(vec![
            "peer".into(),
            map(vec![
                ("extra", "x".into()),
                ("data", vec!["e".into()].into()),
                ("id", Data::Float(12.0)),
                ("type", Data::UInt(2)),
            ]),
            map(vec![("flags", map(vec![("timeout", Data::Float(99.7)), ("other", Data::Bool(true))]))]),
            "more".into(),
        ])
        .to_msgpack();
        let decoded = ClassicBroadcast::decode(&msg).expect("decode");
        assert_eq!(decoded.packet, Packet { kind: 2, nsp: "/".into(), data: vec!["e".into()], id: Some(12) });
        assert_eq!(decoded.opts.rooms, Vec::<String>::new());
        assert_eq!(decoded.opts.flags, Flags { timeout: Some(99), ..Flags::default() });
        // Numeric rooms, as Node holds them after `io.to(42)`.
        let msg = Data::Array(vec![
            "peer".into(),
            map(vec![("type", Data::UInt(2)), ("data", vec![].into()), ("nsp", "/".into())]),
            map(vec![("rooms", vec![Data::UInt(42), Data::Float(1.5), Data::Int(-1)].into()), ("except", Data::Null)]),
        ])
        .to_msgpack();
        assert_eq!(ClassicBroadcast::decode(&msg).expect("decode").opts.rooms, strings(&["42", "1.5", "-1"]));
        // Broken shapes are errors, not panics.
        for bad in [
            Data::Array(vec!["u".into(), map(vec![])]),
            Data::Array(vec![Data::UInt(1), map(vec![]), map(vec![])]),
            Data::Array(vec!["u".into(), map(vec![("type", Data::UInt(2))]), map(vec![])]),
            Data::Array(vec!["u".into(), map(vec![("type", Data::UInt(999)), ("data", vec![].into())]), map(vec![])]),
            Data::Array(vec!["u".into(), map(vec![("type", Data::UInt(2)), ("data", "x".into())]), map(vec![])]),
            map(vec![]),
        ] {
            assert!(ClassicBroadcast::decode(&bad.to_msgpack()).is_err(), "{bad:?}");
        }
        assert!(matches!(Request::decode(br#"{"type":8,"requestId":"x"}"#), Err(DecodeError::UnknownRequestType(8))));
        assert!(matches!(Request::decode(br#"{"type":42}"#), Err(DecodeError::UnknownRequestType(42))));
        assert!(matches!(Request::decode(br#"{"uid":"x"}"#), Err(DecodeError::MissingField("type"))));
        assert!(matches!(Request::decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(Request::decode(b"{"), Err(DecodeError::Json(_))));
        // The reserved byte reads as null, as rmpv reads it (notepack throws; see the module notes).
        assert_eq!(Data::from_msgpack(&[0xc1]).expect("c1"), Data::Null);
        assert!(matches!(Data::from_msgpack(&[0x01, 0x02]), Err(DecodeError::TrailingBytes(1))));
        assert!(matches!(Data::from_msgpack(&hex("c70aff00")), Err(DecodeError::Truncated)));
        assert!(matches!(Data::from_msgpack(&hex("c70aff00000000000000000000")), Err(DecodeError::BadTimestamp)));
        assert!(matches!(Data::from_msgpack(&hex("81c40161c0")), Err(DecodeError::UnsupportedKey)));
    }

    #[test]
    fn nesting_is_capped() {
        let nested = |levels: usize| {
            let mut v = vec![0x91; levels - 1];
            v.push(0x90);
            v
        };
        assert!(Data::from_msgpack(&nested(MAX_DEPTH)).is_ok());
        assert!(matches!(Data::from_msgpack(&nested(MAX_DEPTH + 1)), Err(DecodeError::TooDeep { .. })));
        assert!(matches!(Data::from_msgpack(&nested(200_000)), Err(DecodeError::TooDeep { .. })));
        // The innermost allowed container may hold leaves of any kind (rmpv's own budget counts those too).
        let mut leafy = vec![0x91; MAX_DEPTH - 1];
        leafy.extend_from_slice(&[0x81, 0xa1, b'k', 0xd6, 0xff, 0, 0, 0, 1]);
        assert!(Data::from_msgpack(&leafy).is_ok());
        let mut maps = Vec::new();
        for _ in 0..100_000 {
            maps.extend_from_slice(&[0x81, 0xa1, b'k']);
        }
        maps.push(0xc0);
        assert!(matches!(Data::from_msgpack(&maps), Err(DecodeError::TooDeep { .. })));
        let deep_json = format!("{{\"type\":6,\"uid\":\"u\",\"data\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(Request::decode(deep_json.as_bytes()), Err(DecodeError::Json(_))));
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        for h in ["ddffffffff", "dfffffffff", "dbffffffff61", "c6ffffffff", "c9ffffffff05", "dcffff", "deffff"] {
            assert!(matches!(Data::from_msgpack(&hex(h)), Err(DecodeError::Truncated)), "{h}");
        }
    }

    /// A small deterministic generator (xorshift), so the fuzz-style tests need no extra dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let goldens: Vec<Vec<u8>> = [
            GOLDEN_BROADCAST_ROOM,
            GOLDEN_BROADCAST_MULTI,
            GOLDEN_BROADCAST_ALL,
            GOLDEN_BROADCAST_REQUEST,
            GOLDEN_BROADCAST_ACK,
            GOLDEN_SPECIAL,
        ]
        .iter()
        .map(|h| hex(h))
        .collect();
        let exercise = |bytes: &[u8]| {
            let _ = ClassicBroadcast::decode(bytes);
            let _ = Request::decode(bytes);
            if let Ok(raw) = RawResponse::decode(bytes) {
                for asked in [RequestType::Sockets, RequestType::RemoteFetch, RequestType::Broadcast] {
                    let _ = raw.clone().interpret(asked);
                }
            }
            if let Ok(d) = Data::from_msgpack(bytes) {
                // Whatever decodes re-encodes and decodes to the same encoding.
                let again = d.to_msgpack();
                assert_eq!(Data::from_msgpack(&again).expect("re-decode").to_msgpack(), again);
                let _ = d.to_json_string();
                let _ = d.to_json_with_attachments();
            }
        };
        for golden in &goldens {
            for cut in 0..golden.len() {
                exercise(&golden[..cut]);
                assert!(ClassicBroadcast::decode(&golden[..cut]).is_err(), "a strict prefix is truncated");
            }
            // Single-byte corruptions.
            for _ in 0..2000 {
                let mut m = golden.clone();
                let i = (rng.next() as usize) % m.len();
                m[i] = rng.next() as u8;
                exercise(&m);
            }
        }
        for _ in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            exercise(&bytes);
        }
    }

    #[test]
    fn json_conversions_with_attachments() {
        let value = Data::Array(vec![
            "ev".into(),
            Data::Bin(Bytes::from_static(b"a")),
            map(vec![("nested", vec![Data::Bin(Bytes::from_static(b"b")), Data::Float(2.0)].into())]),
            Data::Date(0),
            Data::Float(f64::INFINITY),
        ]);
        let (json, attachments) = value.to_json_with_attachments();
        assert_eq!(
            json,
            serde_json::json!([
                "ev",
                {"_placeholder": true, "num": 0},
                {"nested": [{"_placeholder": true, "num": 1}, 2]},
                0,
                null
            ])
        );
        assert_eq!(attachments, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        let back = Data::from_json_with_attachments(&json, &attachments).expect("back");
        let Data::Array(items) = back else { panic!("array") };
        assert_eq!(items[1], Data::Bin(Bytes::from_static(b"a")));
        assert_eq!(items[2], map(vec![("nested", vec![Data::Bin(Bytes::from_static(b"b")), Data::UInt(2)].into())]));

        let (args, atts) = args_to_json(&[Data::Bin(Bytes::from_static(b"x")), Data::Bin(Bytes::from_static(b"y"))]);
        assert_eq!(args[1], serde_json::json!({"_placeholder": true, "num": 1}));
        assert_eq!(args_from_json(&args, &atts).expect("args")[1], Data::Bin(Bytes::from_static(b"y")));

        for bad in [
            serde_json::json!({"_placeholder": true, "num": 2}),
            serde_json::json!({"_placeholder": true, "num": 0.5}),
            serde_json::json!({"_placeholder": true, "num": -1}),
            serde_json::json!({"_placeholder": true}),
            serde_json::json!([{"_placeholder": true, "num": "0"}]),
        ] {
            assert!(matches!(Data::from_json_with_attachments(&bad, &attachments), Err(DecodeError::BadPlaceholder)));
        }
        // `_placeholder` other than true is an ordinary object.
        let plain = serde_json::json!({"_placeholder": 1, "num": 0});
        assert_eq!(Data::from_json_with_attachments(&plain, &[]).expect("plain").to_json(), plain);
        // Without attachments, binary becomes Node's Buffer JSON.
        assert_eq!(
            Data::Bin(Bytes::from_static(&[1, 2])).to_json(),
            serde_json::json!({"type": "Buffer", "data": [1, 2]})
        );
        assert_eq!(Data::Float(3.0).to_json(), serde_json::json!(3));
        assert_eq!(Data::Float(-0.0).to_json(), serde_json::json!(0));
        assert_eq!(Data::Float(-2.5).to_json(), serde_json::json!(-2.5));
        assert_eq!(Data::Float(1e19).to_json().to_string(), "10000000000000000000");
        assert_eq!(
            Data::from_json(&serde_json::json!([1, -1, 1.5, "s", null, {"a": true}])).to_json(),
            serde_json::json!([1, -1, 1.5, "s", null, {"a": true}])
        );
    }

    /// Expectations printed by Node 20 (`JSON.stringify`): serde_json may spell a number differently, but it must
    /// parse to the same value, and integers and strings are printed alike.
    #[test]
    fn javascript_number_and_date_formatting() {
        for (f, js) in [
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (123.456, "123.456"),
            (-0.0, "0"),
            (2f64.powi(60), "1152921504606847000"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-1.5e-10, "-1.5e-10"),
            (1e20, "100000000000000000000"),
            (123_456_789_012_345_680_000.0, "123456789012345680000"),
            (4.35, "4.35"),
            (1.0 / 3.0, "0.3333333333333333"),
        ] {
            let ours = Data::Float(f).to_json_string();
            let parse = |s: &str| serde_json::from_str::<Value>(s).expect(s).as_f64();
            assert_eq!(parse(&ours), parse(js), "{f:e}: {ours} vs {js}");
        }
        assert_eq!(Data::Float(2f64.powi(60)).to_json_string(), "1152921504606846976", "an integer, exactly");
        assert_eq!(Data::Float(f64::NAN).to_json_string(), "null");
        // Dates go into JSON as milliseconds (see the module notes); an invalid one is null, as in JSON.stringify.
        for ms in [0, -1, 8_640_000_000_000_000, -8_640_000_000_000_000, 1_735_787_045_678] {
            assert_eq!(Data::Date(ms).to_json_string(), ms.to_string());
        }
        assert_eq!(Data::Date(8_640_000_000_000_001).to_json_string(), "null");
        assert_eq!(Data::Date(i64::MIN).to_json_string(), "null");
        // String escapes as JSON.stringify prints them.
        let s = Data::Str("a\"b\\c\n\t\u{1}\u{1f}\u{7f}\u{2028}é😀/\u{8}\u{c}\r".into());
        assert_eq!(s.to_json_string(), "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\u{7f}\u{2028}é😀/\\b\\f\\r\"");
        // Numbers as room names: JavaScript's String(x) up to exponent spelling.
        assert_eq!(
            [1.5, 42.0, -0.0, f64::NAN, f64::NEG_INFINITY].map(number_string),
            ["1.5", "42", "0", "NaN", "-Infinity"]
        );
    }

    #[test]
    fn msgpack_length_forms_follow_notepack() {
        let s31 = "x".repeat(31);
        let s32 = "x".repeat(32);
        assert_eq!(Data::Str(s31.clone()).to_msgpack()[0], 0xbf);
        assert_eq!(Data::Str(s32).to_msgpack()[..2], [0xd9, 32]);
        assert_eq!(Data::Str("x".repeat(256)).to_msgpack()[..3], [0xda, 1, 0]);
        assert_eq!(Data::Str("x".repeat(65536)).to_msgpack()[..5], [0xdb, 0, 1, 0, 0]);
        assert_eq!(Data::Bin(Bytes::from(vec![0; 256])).to_msgpack()[..3], [0xc5, 1, 0]);
        assert_eq!(Data::Bin(Bytes::from(vec![0; 65536])).to_msgpack()[..5], [0xc6, 0, 1, 0, 0]);
        assert_eq!(Data::Array(vec![Data::Null; 16]).to_msgpack()[..3], [0xdc, 0, 16]);
        let m: Vec<(String, Data)> = (0..16).map(|i| (i.to_string(), Data::Null)).collect();
        assert_eq!(Data::Map(m).to_msgpack()[..3], [0xde, 0, 16]);
        for (v, h) in [
            (-32i64, "e0"),
            (-33, "d0df"),
            (-128, "d080"),
            (-129, "d1ff7f"),
            (-32768, "d18000"),
            (-32769, "d2ffff7fff"),
            (-2_147_483_648, "d280000000"),
            (-2_147_483_649, "d3ffffffff7fffffff"),
            (127, "7f"),
            (128, "cc80"),
            (65535, "cdffff"),
            (4_294_967_296, "cf0000000100000000"),
        ] {
            assert_eq!(to_hex(&Data::from(v).to_msgpack()), h, "{v}");
            assert_eq!(to_hex(&Data::Float(v as f64).to_msgpack()), h, "{v} as float");
            assert_eq!(Data::from_msgpack(&hex(h)).expect(h), Data::from(v));
        }
        assert_eq!(Data::from_msgpack(&Data::Str(s31.clone()).to_msgpack()).expect("s"), Data::Str(s31));
    }
}
