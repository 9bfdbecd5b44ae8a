//! The values the cluster protocols carry, encoded and decoded as notepack.io 3.x (the msgpack codec of
//! `@socket.io/redis-adapter`) does, and their JSON forms. Both protocols ([`classic`](super::classic),
//! [`sharded`](super::sharded)) and the [`Emitter`](crate::cluster::Emitter) build on it. Pure encoding and
//! decoding; no I/O.
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
//! Decoding is tolerant like the Node side: integers of any msgpack width and float32 are accepted, duplicate map
//! keys keep the last value (at the first key's place, as a JS object does), notepack's legacy `undefined`
//! (`d4 00 00`) drops a map key and reads as `null` in an array, other extension types read as `[type, bin]` as
//! notepack returns them, invalid UTF-8 is replaced (Node's `buffer.toString`). It never panics, never allocates
//! more than the input can fill (`rmpv`'s borrowing decoder), rejects nesting deeper than [`MAX_DEPTH`] and trailing
//! bytes after the value (notepack throws on those too), with a [`DecodeError`].
//!
//! # Known divergences from the Node side
//! - notepack.io writes integral numbers of magnitude 2^64 and above as a wrapped (wrong) uint64; [`Data::Float`]
//!   keeps them float64, which Node decodes correctly.
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
use serde_json::Value;

/// The deepest nesting of arrays and maps accepted when decoding msgpack (JSON has serde_json's own limit, also
/// 128). The message envelope takes up to 4 levels of it (broadcast array, packet map, `data` array).
pub const MAX_DEPTH: usize = 128;

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
pub(super) fn number_string(f: f64) -> String {
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
pub(super) fn msgpack(encode: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let _infallible = encode(&mut out);
    out
}

// Lengths above u32::MAX cannot occur in a Redis message (512 MB cap), so the length casts below do not truncate.
pub(super) fn write_data(out: &mut Vec<u8>, value: &Data) -> io::Result<()> {
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

/// Why bytes could not be read as a value, or JSON as values with attachments. The message codecs wrap it in
/// their own error ([`classic::DecodeError::Notepack`](super::classic::DecodeError::Notepack)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end in the middle of a value.
    #[error("truncated msgpack")]
    Truncated,
    /// Bytes after the value.
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
    /// A binary placeholder whose `num` is not an index into the attachments.
    #[error("binary placeholder without a matching attachment")]
    BadPlaceholder,
}

#[cfg(test)]
#[path = "notepack_tests.rs"]
mod tests;
