//! The Socket.IO msgpack parser, wire-compatible with npm
//! `socket.io-msgpack-parser` 3.x (which encodes with `notepack.io` 2.2).
//!
//! # Wire format
//! Every Socket.IO packet is one binary Engine.IO message holding a msgpack
//! map `{type, data, nsp, id}`:
//!
//! * `type` is 0 (CONNECT), 1 (DISCONNECT), 2 (EVENT), 3 (ACK) or
//!   4 (CONNECT_ERROR). There are no BINARY_* types: binary values travel
//!   inline as msgpack `bin`, so there are no placeholders and no
//!   attachment frames.
//! * `data` is absent on DISCONNECT and on a CONNECT without auth, an object
//!   on CONNECT and CONNECT_ERROR, and an array on EVENT and ACK.
//! * `id` is there only when an ack is expected (EVENT) or answered (ACK).
//!
//! Peers write the keys in whatever order their objects have them
//! (socket.io's ACK replies start with `id`; socket.io-client adds an
//! `options` key): the decoder accepts any order and ignores unknown keys.
//! The encoder writes `type`, `data`, `nsp`, `id`, leaving out `data` and
//! `id` when there are none, and picks the smallest encoding of every
//! integer, string, binary and container length, as `notepack.io` does, so
//! its output is byte for byte what the npm parser writes.
//!
//! # Mapping to the canonical form
//! [`decode`] returns the same [`Packet`] the JSON parser would, so the rest
//! of the crate never knows which parser a client uses:
//!
//! * Maps keep the order of their keys, as JavaScript objects do: a payload
//!   is echoed back in the order the client wrote it. A repeated key
//!   overrides the earlier value in the earlier key's place, as in
//!   JavaScript.
//! * `bin` (and `notepack.io`'s ArrayBuffer extension, ext type 0 with
//!   `ext 8/16/32`) becomes a placeholder `{"_placeholder":true,"num":i}`
//!   plus attachment `i`, numbered in the order they appear in the decoded
//!   value (a binary value a repeated key overrode is dropped); attachments
//!   are zero-copy slices of the input. [`encode`] turns placeholders back
//!   into `bin`.
//! * `notepack.io`'s `undefined` (`fixext 1`, type 0) is dropped from maps
//!   (taking an earlier value of the same key with it) and becomes `null`
//!   in arrays, as `JSON.stringify` does.
//! * Dates, whether `notepack.io`'s (`fixext 8`, type 0, milliseconds since
//!   the epoch) or msgpack timestamps (ext type -1, all three sizes), become
//!   the ISO-8601 string `JSON.stringify` writes for a JavaScript `Date`
//!   (`"2024-01-02T03:04:05.678Z"`, sub-millisecond digits dropped), or
//!   `null` outside the range of a JavaScript `Date` (±8.64e15 ms). The
//!   conversion is one way: [`encode`] writes strings as strings.
//! * NaN and infinities become `null` (`JSON.stringify` again); other floats
//!   stay floats and are written back as `float 64`, integers stay integers.
//!
//! # Validation
//! The decoder applies the JSON parser's rules: known type (CONNECT_ERROR is
//! not accepted from a client), namespace starting with `/`, without `,` and
//! at most [`Limits::max_namespace_len`] bytes, ack id an integer in
//! `0..=2^53-1`, CONNECT data an object without binary, EVENT data an array
//! starting with a non-reserved event name or a number, at most
//! [`Limits::max_attachments`] binary values. A map with
//! `"_placeholder": true` inside event or ack arguments is refused with
//! [`ParseError::InvalidPlaceholder`]: there are no placeholders on this
//! wire, and accepting one would let a client point into attachments it
//! did not send. Malformed msgpack (truncated, trailing bytes, invalid UTF-8,
//! non-string map keys, other extension types, more than [`MAX_DEPTH`]
//! nested containers) gives [`ParseError::InvalidMsgpack`]. Every length is
//! checked against the bytes left before anything is allocated.
//!
//! The msgpack items themselves are read and written with the [`rmp`]
//! crate's low-level functions. Neither direction recurses: both walk
//! values with an explicit stack.

use std::convert::Infallible;

use bytes::Bytes;
use rmp::Marker;
use rmp::decode::{
    DecodeStringError, ExtMeta, read_array_len, read_bin_len, read_bool, read_ext_meta, read_f32, read_f64, read_int,
    read_map_len, read_nil, read_str_from_slice,
};
use rmp::encode::{
    ByteBuf, ValueWriteError, write_array_len, write_bin, write_bool, write_f64, write_map_len, write_nil, write_sint,
    write_str, write_uint,
};
use serde_json::{Map, Number, Value};

use super::engine::Encoded;
use super::socketio::{Limits, MAX_ACK_ID, Packet, PacketKind, ParseError, Payload, RESERVED_EVENTS, is_placeholder};

/// The most containers (maps and arrays, the packet's own map included) a
/// decoded packet may nest.
pub const MAX_DEPTH: usize = 128;

/// Milliseconds from the epoch to the ends of a JavaScript `Date`'s range.
const MAX_DATE_MS: i128 = 8_640_000_000_000_000;

/// Decodes one binary Engine.IO message into a Socket.IO packet.
///
/// # Errors
/// [`ParseError`] describing the first problem found; see the
/// [module documentation](self) for the rules.
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use tidewire::protocol::msgpack;
/// use tidewire::protocol::socketio::{Limits, PacketKind};
/// // {type: 2, data: ["hi", <bin 01 02>], nsp: "/"}
/// let wire = Bytes::from_static(b"\x83\xa4type\x02\xa4data\x92\xa2hi\xc4\x02\x01\x02\xa3nsp\xa1/");
/// let packet = msgpack::decode(wire, Limits::default()).unwrap();
/// let PacketKind::Event { payload, id: None } = &packet.kind else { panic!() };
/// assert_eq!(payload.data[1], serde_json::json!({"_placeholder": true, "num": 0}));
/// assert_eq!(&payload.attachments[0][..], &[1, 2]);
/// ```
#[allow(
    clippy::needless_pass_by_value,
    reason = "taking ownership lets callers hand over a received frame; the result shares its buffer"
)]
pub fn decode(data: Bytes, limits: Limits) -> Result<Packet, ParseError> {
    if data.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut r = Reader { data: &data, rest: &data };
    let Token::Map(fields) = r.next()? else {
        return Err(ParseError::InvalidPayload);
    };
    let mut ty = None;
    let mut nsp = None;
    let mut id = None;
    let mut body = None;
    for _ in 0..fields {
        // Like JavaScript, a repeated key overrides the earlier one.
        match r.str()? {
            "type" => ty = Some(r.next()?),
            "nsp" => nsp = Some(r.next()?),
            "id" => id = Some(r.next()?),
            "data" => body = read_value(&mut r, limits.max_attachments)?,
            _ => r.skip()?,
        }
    }
    if !r.rest.is_empty() {
        return Err(invalid("trailing bytes"));
    }

    let ty = match ty.as_ref().and_then(Token::as_integer) {
        Some(0) => 0,
        Some(1) => 1,
        Some(2) => 2,
        Some(3) => 3,
        Some(4) => return Err(ParseError::TypeNotAllowed),
        _ => return Err(ParseError::UnknownType),
    };
    let nsp = match nsp {
        Some(Token::Str(s)) if s.starts_with('/') && !s.contains(',') && s.len() <= limits.max_namespace_len => {
            data.slice_ref(s.as_bytes())
        }
        _ => return Err(ParseError::InvalidNamespace),
    };
    // Valid UTF-8: it was checked when the token was read.
    let nsp = bytestring::ByteString::try_from(nsp).map_err(|_| ParseError::InvalidNamespace)?;
    let id = match id {
        None | Some(Token::Undefined) => None,
        Some(t) => match t.as_integer() {
            Some(n) if (0..=i128::from(MAX_ACK_ID)).contains(&n) => Some(n as u64),
            _ => return Err(ParseError::InvalidAckId),
        },
    };

    let kind = match (ty, body) {
        (0, None) if id.is_none() => PacketKind::Connect(None),
        (0, Some(Body { value: v @ Value::Object(_), attachments, .. })) if id.is_none() && attachments.is_empty() => {
            PacketKind::Connect(Some(v))
        }
        (1, None) if id.is_none() => PacketKind::Disconnect,
        (2, Some(Body { value: Value::Array(data), attachments, placeholder_like })) => {
            match data.first() {
                Some(Value::String(name)) if !RESERVED_EVENTS.contains(&name.as_str()) => {}
                Some(Value::Number(_)) => {}
                _ => return Err(ParseError::InvalidPayload),
            }
            if placeholder_like {
                return Err(ParseError::InvalidPlaceholder);
            }
            PacketKind::Event { payload: Payload { data, attachments }, id }
        }
        (3, Some(Body { value: Value::Array(data), attachments, placeholder_like })) => {
            let id = id.ok_or(ParseError::InvalidAckId)?;
            if placeholder_like {
                return Err(ParseError::InvalidPlaceholder);
            }
            PacketKind::Ack { payload: Payload { data, attachments }, id }
        }
        _ => return Err(ParseError::InvalidPayload),
    };
    Ok(Packet { nsp, kind })
}

/// Encodes a packet as one binary Engine.IO message, writing its
/// placeholders as inline `bin`.
///
/// Placeholders that do not point at an attachment are written as the maps
/// they are, and attachments that no placeholder points at are left out:
/// this wire has nowhere else to put them.
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use tidewire::protocol::engine::Encoded;
/// use tidewire::protocol::msgpack;
/// use tidewire::protocol::socketio::{Packet, Payload};
/// let mut args = Payload::default();
/// args.push_binary(Bytes::from_static(&[1, 2]));
/// let encoded = msgpack::encode(&Packet::event("/", "hi", args, None));
/// assert_eq!(encoded, Encoded::Binary(Bytes::from_static(b"\x83\xa4type\x02\xa4data\x92\xa2hi\xc4\x02\x01\x02\xa3nsp\xa1/")));
/// ```
pub fn encode(packet: &Packet) -> Encoded {
    let (ty, data, attachments, id): (u8, Option<Data<'_>>, &[Bytes], Option<u64>) = match &packet.kind {
        PacketKind::Connect(v) => (0, v.as_ref().map(Data::Value), &[], None),
        PacketKind::Disconnect => (1, None, &[], None),
        PacketKind::Event { payload, id } => (2, Some(Data::Array(&payload.data)), &payload.attachments, *id),
        PacketKind::Ack { payload, id } => (3, Some(Data::Array(&payload.data)), &payload.attachments, Some(*id)),
        PacketKind::ConnectError(v) => (4, Some(Data::Value(v)), &[], None),
    };
    let capacity = 32 + packet.nsp.len() + attachments.iter().map(|a| a.len() + 5).sum::<usize>();
    let mut out = ByteBuf::with_capacity(capacity);
    // Writing to a `ByteBuf` cannot fail: its error type is uninhabited.
    let Ok(()) = write_packet(&mut out, ty, data, &packet.nsp, id, attachments);
    Encoded::Binary(out.into_vec().into())
}

fn invalid(why: &str) -> ParseError {
    ParseError::InvalidMsgpack(why.to_owned())
}

/// The error for anything `rmp` reports while reading an item whose marker
/// was checked first: running out of input.
fn truncated<E>(_: E) -> ParseError {
    invalid("truncated")
}

/// One msgpack item, containers announced by their length.
#[derive(Debug)]
enum Token<'a> {
    /// A complete scalar (numbers, booleans, nil, dates).
    Scalar(Value),
    Str(&'a str),
    /// A slice of the input.
    Bin(&'a [u8]),
    Array(usize),
    /// The number of key-value pairs.
    Map(usize),
    /// `notepack.io`'s `undefined`.
    Undefined,
}

impl Token<'_> {
    /// The integer value, if any, as JavaScript's `Number.isInteger` sees it.
    fn as_integer(&self) -> Option<i128> {
        match self {
            Token::Scalar(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    Some(i.into())
                } else if let Some(u) = n.as_u64() {
                    Some(u.into())
                } else {
                    let f = n.as_f64()?;
                    // Exact for every integral f64 of this magnitude.
                    (f.fract() == 0.0 && f.abs() < 1e18).then_some(f as i128)
                }
            }
            _ => None,
        }
    }
}

/// Reads msgpack items from a byte buffer with `rmp`. Every length is
/// checked against what is left before anything is allocated.
struct Reader<'a> {
    data: &'a Bytes,
    /// What is left of `data`.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: u32) -> Result<&'a [u8], ParseError> {
        let n = usize::try_from(n).map_err(truncated)?;
        let (taken, rest) = self.rest.split_at_checked(n).ok_or_else(|| invalid("truncated"))?;
        self.rest = rest;
        Ok(taken)
    }

    /// A container of `n` entries of `items_per_entry` items, each at least
    /// one byte long.
    fn container(&self, n: u32, items_per_entry: usize) -> Result<usize, ParseError> {
        let n = usize::try_from(n).map_err(truncated)?;
        if n.saturating_mul(items_per_entry) > self.rest.len() {
            return Err(invalid("truncated"));
        }
        Ok(n)
    }

    /// A string. Only map keys are read without checking the marker first,
    /// hence the error for anything else.
    fn str(&mut self) -> Result<&'a str, ParseError> {
        let (s, rest) = read_str_from_slice(self.rest).map_err(|e| match e {
            DecodeStringError::TypeMismatch(_) => invalid("map keys must be strings"),
            DecodeStringError::InvalidUtf8(..) => invalid("invalid UTF-8 in a string"),
            _ => invalid("truncated"),
        })?;
        self.rest = rest;
        Ok(s)
    }

    /// The next item: its marker picks the `rmp` function that reads it.
    fn next(&mut self) -> Result<Token<'a>, ParseError> {
        let marker = Marker::from_u8(*self.rest.first().ok_or_else(|| invalid("truncated"))?);
        let rd = &mut self.rest;
        let float = |f: f64| Token::Scalar(Number::from_f64(f).map_or(Value::Null, Value::Number));
        Ok(match marker {
            Marker::Null => {
                read_nil(rd).map_err(truncated)?;
                Token::Scalar(Value::Null)
            }
            Marker::True | Marker::False => Token::Scalar(read_bool(rd).map_err(truncated)?.into()),
            Marker::FixPos(_) | Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64 => {
                Token::Scalar(read_int::<u64, _>(rd).map_err(truncated)?.into())
            }
            Marker::FixNeg(_) | Marker::I8 | Marker::I16 | Marker::I32 | Marker::I64 => {
                Token::Scalar(read_int::<i64, _>(rd).map_err(truncated)?.into())
            }
            Marker::F32 => float(read_f32(rd).map_err(truncated)?.into()),
            Marker::F64 => float(read_f64(rd).map_err(truncated)?),
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => Token::Str(self.str()?),
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                let n = read_bin_len(rd).map_err(truncated)?;
                Token::Bin(self.take(n)?)
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = read_array_len(rd).map_err(truncated)?;
                Token::Array(self.container(n, 1)?)
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                let n = read_map_len(rd).map_err(truncated)?;
                Token::Map(self.container(n, 2)?)
            }
            Marker::FixExt1 | Marker::FixExt2 | Marker::FixExt4 | Marker::FixExt8 | Marker::FixExt16 => {
                let ExtMeta { typeid, size } = read_ext_meta(rd).map_err(truncated)?;
                ext(typeid, true, self.take(size)?)?
            }
            Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
                let ExtMeta { typeid, size } = read_ext_meta(rd).map_err(truncated)?;
                ext(typeid, false, self.take(size)?)?
            }
            Marker::Reserved => return Err(invalid("reserved marker 0xc1")),
        })
    }

    /// Skips one item (the value of a key this parser does not use).
    fn skip(&mut self) -> Result<(), ParseError> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            match self.next()? {
                Token::Array(n) => pending += n,
                Token::Map(n) => pending += 2 * n,
                _ => {}
            }
        }
        Ok(())
    }
}

/// An extension value `b` of type `ty`, from a `fixext` when `fixed`.
fn ext(ty: i8, fixed: bool, b: &[u8]) -> Result<Token<'_>, ParseError> {
    Ok(match (ty, fixed, b.len()) {
        (0, true, 1) => Token::Undefined,
        (0, true, 8) => Token::Scalar(js_date(i64::from_be_bytes(be(b)).into())),
        (0, false, _) => Token::Bin(b),
        (-1, _, 4 | 8 | 12) => {
            let (secs, nanos): (i128, u32) = match b.len() {
                4 => (u32::from_be_bytes(be(b)).into(), 0),
                8 => {
                    let v = u64::from_be_bytes(be(b));
                    ((v & ((1 << 34) - 1)).into(), (v >> 34) as u32)
                }
                _ => (i64::from_be_bytes(be(&b[4..])).into(), u32::from_be_bytes(be(b))),
            };
            if nanos >= 1_000_000_000 {
                return Err(invalid("timestamp nanoseconds out of range"));
            }
            Token::Scalar(js_date(secs * 1000 + i128::from(nanos / 1_000_000)))
        }
        _ => return Err(ParseError::InvalidMsgpack(format!("unsupported extension type {ty}"))),
    })
}

/// The first `N` bytes of `b`, which the caller has checked are there.
fn be<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[..N]);
    out
}

/// The `data` of a packet in canonical form.
#[derive(Debug)]
struct Body {
    value: Value,
    attachments: Vec<Bytes>,
    /// Whether a map with `"_placeholder": true` was seen.
    placeholder_like: bool,
}

/// A container being filled while reading.
enum Open<'a> {
    Array { items: Vec<Value>, left: usize },
    Map { map: Map<String, Value>, key: Option<&'a str>, left: usize },
}

/// Reads one value (the packet's `data`) with an explicit stack. Returns
/// `None` for `undefined`.
fn read_value(r: &mut Reader<'_>, max_attachments: usize) -> Result<Option<Body>, ParseError> {
    let mut attachments = Vec::new();
    let mut placeholder_like = false;
    // Whether a repeated key or an `undefined` replaced a value.
    let mut overridden = false;
    // Room reserved up front, in items, across all containers: at most one
    // per byte of input, however deep the containers that claim the same
    // bytes are nested.
    let mut budget = r.rest.len();
    let mut reserve = |n: usize| {
        let n = n.min(budget);
        budget -= n;
        n
    };
    let mut stack: Vec<Open<'_>> = Vec::new();
    loop {
        if let Some(Open::Map { key: key @ None, .. }) = stack.last_mut() {
            *key = Some(r.str()?);
            continue;
        }
        let token = r.next()?;
        // The packet's own map is one level, this container another.
        if matches!(token, Token::Array(_) | Token::Map(_)) && stack.len() + 2 > MAX_DEPTH {
            return Err(invalid("nested too deeply"));
        }
        let mut item = match token {
            Token::Scalar(v) => Some(v),
            Token::Str(s) => Some(Value::String(s.to_owned())),
            Token::Bin(b) => {
                if attachments.len() == max_attachments {
                    return Err(ParseError::IllegalAttachments);
                }
                attachments.push(r.data.slice_ref(b));
                Some(Payload::placeholder(attachments.len() - 1))
            }
            Token::Undefined => None,
            Token::Array(0) => Some(Value::Array(Vec::new())),
            Token::Map(0) => Some(Value::Object(Map::new())),
            Token::Array(n) => {
                stack.push(Open::Array { items: Vec::with_capacity(reserve(n)), left: n });
                continue;
            }
            Token::Map(n) => {
                stack.push(Open::Map { map: Map::with_capacity(reserve(n)), key: None, left: n });
                continue;
            }
        };
        // Hand the item to its container; close the containers it completes.
        loop {
            match stack.last_mut() {
                None => {
                    let Some(mut value) = item else { return Ok(None) };
                    if overridden && !placeholder_like && !attachments.is_empty() {
                        attachments = renumber(&mut value, &attachments);
                    }
                    return Ok(Some(Body { value, attachments, placeholder_like }));
                }
                Some(Open::Array { items, left }) => {
                    items.push(item.take().unwrap_or(Value::Null));
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                }
                Some(Open::Map { map, key, left }) => {
                    if let Some(k) = key.take() {
                        // Like assigning `undefined` in JavaScript, then
                        // `JSON.stringify`.
                        let old = match item.take() {
                            Some(v) => map.insert(k.to_owned(), v),
                            None => map.shift_remove(k),
                        };
                        overridden |= old.is_some();
                    }
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                }
            }
            item = match stack.pop() {
                Some(Open::Array { items, .. }) => Some(Value::Array(items)),
                Some(Open::Map { map, .. }) => {
                    placeholder_like |= is_placeholder(&map);
                    Some(Value::Object(map))
                }
                None => None,
            };
        }
    }
}

/// Numbers the placeholders of `value` in document order and returns the
/// attachments they point at, leaving out those no placeholder points at
/// any more (a repeated key overrode them). Only for values whose
/// placeholders all come from the decoder.
fn renumber(value: &mut Value, attachments: &[Bytes]) -> Vec<Bytes> {
    let mut kept = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) if is_placeholder(map) => {
                let num = map.get("num").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
                if let Some(bytes) = num.and_then(|n| attachments.get(n)) {
                    *v = Payload::placeholder(kept.len());
                    kept.push(bytes.clone());
                }
            }
            Value::Object(map) => stack.extend(map.values_mut().rev()),
            Value::Array(items) => stack.extend(items.iter_mut().rev()),
            _ => {}
        }
    }
    kept
}

/// What a JavaScript `Date` of `ms` milliseconds since the epoch turns into
/// under `JSON.stringify`: its ISO-8601 string, or `null` when invalid.
fn js_date(ms: i128) -> Value {
    if !(-MAX_DATE_MS..=MAX_DATE_MS).contains(&ms) {
        return Value::Null;
    }
    // In range, so these fit an i64 comfortably.
    let ms = ms as i64;
    let (days, ms) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let year = if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else {
        format!("{}{:06}", if y < 0 { '-' } else { '+' }, y.abs())
    };
    let (h, min, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    Value::String(format!("{year}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z"))
}

/// The proleptic Gregorian date of a day number (0 = 1970-01-01), after
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The `data` to write.
#[derive(Clone, Copy)]
enum Data<'a> {
    Value(&'a Value),
    Array(&'a [Value]),
}

/// What writing to a [`ByteBuf`] returns: never an error.
type Written = Result<(), ValueWriteError<Infallible>>;

fn write_packet(
    out: &mut ByteBuf,
    ty: u8,
    data: Option<Data<'_>>,
    nsp: &str,
    id: Option<u64>,
    attachments: &[Bytes],
) -> Written {
    write_map_len(out, 2 + u32::from(data.is_some()) + u32::from(id.is_some()))?;
    write_str(out, "type")?;
    write_uint(out, ty.into())?;
    if let Some(data) = data {
        write_str(out, "data")?;
        write_value(out, data, attachments)?;
    }
    write_str(out, "nsp")?;
    write_str(out, nsp)?;
    if let Some(id) = id {
        write_str(out, "id")?;
        write_uint(out, id)?;
    }
    Ok(())
}

/// A container length as msgpack holds it (nothing within the crate's
/// limits comes near 2^32 items).
fn len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The attachment a map stands for, if it is a valid placeholder.
fn placeholder_target<'b>(map: &Map<String, Value>, attachments: &'b [Bytes]) -> Option<&'b Bytes> {
    if !is_placeholder(map) {
        return None;
    }
    let num = usize::try_from(map.get("num")?.as_u64()?).ok()?;
    attachments.get(num)
}

/// An item still to write.
enum Pending<'a> {
    Value(&'a Value),
    Key(&'a str),
}

/// Writes `data` with an explicit stack, placeholders as `bin`. Integers
/// take `notepack.io`'s forms: the smallest that fits, unsigned ones for
/// non-negative numbers, which is what `rmp`'s `write_uint` and
/// `write_sint` pick.
fn write_value(out: &mut ByteBuf, data: Data<'_>, attachments: &[Bytes]) -> Written {
    let mut stack = Vec::new();
    match data {
        Data::Value(v) => stack.push(Pending::Value(v)),
        Data::Array(items) => {
            write_array_len(out, len(items.len()))?;
            stack.extend(items.iter().rev().map(Pending::Value));
        }
    }
    while let Some(item) = stack.pop() {
        let value = match item {
            Pending::Key(k) => {
                write_str(out, k)?;
                continue;
            }
            Pending::Value(v) => v,
        };
        match value {
            Value::Null => write_nil(out).map_err(ValueWriteError::InvalidMarkerWrite)?,
            Value::Bool(b) => write_bool(out, *b).map_err(ValueWriteError::InvalidMarkerWrite)?,
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    write_uint(out, u)?;
                } else if let Some(i) = n.as_i64() {
                    write_sint(out, i)?;
                } else {
                    write_f64(out, n.as_f64().unwrap_or(0.0))?;
                }
            }
            Value::String(s) => write_str(out, s)?,
            Value::Array(items) => {
                write_array_len(out, len(items.len()))?;
                stack.extend(items.iter().rev().map(Pending::Value));
            }
            Value::Object(map) => {
                if let Some(bin) = placeholder_target(map, attachments) {
                    write_bin(out, bin)?;
                    continue;
                }
                write_map_len(out, len(map.len()))?;
                for (k, v) in map.iter().rev() {
                    stack.push(Pending::Value(v));
                    stack.push(Pending::Key(k));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn dec(h: &str) -> Result<Packet, ParseError> {
        decode(Bytes::from(hex(h)), Limits::default())
    }

    fn enc(p: &Packet) -> Vec<u8> {
        match encode(p) {
            Encoded::Binary(b) => b.to_vec(),
            Encoded::Text(_) => panic!("msgpack packets are binary"),
        }
    }

    fn event(nsp: &str, data: Vec<Value>, attachments: Vec<Bytes>, id: Option<u64>) -> Packet {
        Packet { nsp: nsp.into(), kind: PacketKind::Event { payload: Payload { data, attachments }, id } }
    }

    // Fixtures captured from socket.io 4.8 and socket.io-client 4.8 talking
    // through socket.io-msgpack-parser 3.0.2 over a WebSocket.

    #[test]
    fn decodes_real_client_packets() {
        // io("/chat", {auth: {token: "abc"}})
        let p = dec("83a47479706500a46461746181a5746f6b656ea3616263a36e7370a52f63686174").unwrap();
        assert_eq!(p, Packet { nsp: "/chat".into(), kind: PacketKind::Connect(Some(json!({"token": "abc"}))) });

        // socket.emit("hello", "world", 42, ack): note the `options` key.
        let p = dec("85a47479706502a46461746193a568656c6c6fa5776f726c642aa76f7074696f6e7381a8636f6d7072657373c3a2696400a36e7370a52f63686174").unwrap();
        assert_eq!(p, event("/chat", vec![json!("hello"), json!("world"), json!(42)], vec![], Some(0)));

        // The ack reply: ack()
        let p = dec("84a47479706503a2696400a46461746190a36e7370a52f63686174").unwrap();
        assert_eq!(p, Packet::ack("/chat", 0, Payload::default()));

        // socket.emit("bin", Buffer.from([1, 2, 3]), new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)),
        //   new Uint8Array([4, 5]).buffer, {u: undefined, n: -200, f: 0.25, big: 4294967296})
        let p = dec("84a47479706502a46461746195a362696ec403010203d7000000018cc820db2ec70200040584a175d40000a16ed1ff38a166cb3fd0000000000000a3626967cf0000000100000000a76f7074696f6e7381a8636f6d7072657373c3a36e7370a52f63686174").unwrap();
        let expected = event(
            "/chat",
            vec![
                json!("bin"),
                Payload::placeholder(0),
                json!("2024-01-02T03:04:05.678Z"),
                Payload::placeholder(1),
                json!({"n": -200, "f": 0.25, "big": 4_294_967_296_u64}),
            ],
            vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4, 5])],
            None,
        );
        assert_eq!(p, expected);
        assert_eq!(p.packet_type(), crate::protocol::socketio::PacketType::BinaryEvent);
    }

    #[test]
    fn decodes_real_server_packets() {
        // The CONNECT reply: {type: 0, data: {sid, pid: undefined}, nsp}
        let p = dec("83a47479706500a46461746182a3736964b47a6859304552516d506c33664479706f41414141a3706964d40000a36e7370a52f63686174").unwrap();
        assert_eq!(p, Packet::connect_ok("/chat", "zhY0ERQmPl3fDypoAAAA"));
        // An ack reply, id first: ack("ok", Buffer.from([9, 8]))
        let p = dec("84a2696400a47479706503a46461746192a26f6bc4020908a36e7370a52f63686174").unwrap();
        let payload = Payload {
            data: vec![json!("ok"), Payload::placeholder(0)],
            attachments: vec![Bytes::from_static(&[9, 8])],
        };
        assert_eq!(p, Packet::ack("/chat", 0, payload));
        // socket.emit("srvack", -1.5, ack)
        let p = dec("84a47479706502a46461746192a673727661636bcbbff8000000000000a2696400a36e7370a52f63686174").unwrap();
        assert_eq!(p, event("/chat", vec![json!("srvack"), json!(-1.5)], vec![], Some(0)));
        // socket.disconnect()
        assert_eq!(dec("82a47479706501a36e7370a52f63686174").unwrap(), Packet::disconnect("/chat"));
    }

    // Fixtures from `new (require("socket.io-msgpack-parser").Encoder)().encode(packet)`
    // with the packet objects written `{type, data, nsp, id}`.

    fn assert_round_trip(packet: &Packet, wire: &[u8]) {
        assert_eq!(enc(packet), wire, "encoding {packet:?}");
        if !matches!(packet.kind, PacketKind::ConnectError(_)) {
            assert_eq!(&decode(Bytes::copy_from_slice(wire), Limits::default()).unwrap(), packet);
        }
    }

    #[test]
    fn byte_exact_with_notepack() {
        assert_round_trip(
            &Packet::connect_ok("/", "abc"),
            &hex("83a47479706500a46461746181a3736964a3616263a36e7370a12f"),
        );
        let connect = Packet { nsp: "/chat".into(), kind: PacketKind::Connect(None) };
        assert_round_trip(&connect, &hex("82a47479706500a36e7370a52f63686174"));
        assert_round_trip(&Packet::disconnect("/chat"), &hex("82a47479706501a36e7370a52f63686174"));
        assert_round_trip(
            &Packet::connect_error("/random", "Invalid namespace", None),
            &hex(
                "83a47479706504a46461746181a76d657373616765b1496e76616c6964206e616d657370616365a36e7370a72f72616e646f6d",
            ),
        );

        let scalars = vec![
            json!("hi"),
            json!(1),
            json!(-1),
            json!(127),
            json!(128),
            json!(300),
            json!(-33),
            json!(-200),
            json!(70000),
            json!(-40000),
            json!(4_294_967_296_u64),
            json!(-5_000_000_000_i64),
            json!(0.5),
            json!(2.5e-8),
            json!(true),
            json!(false),
            json!(null),
            json!("é€😀"),
            json!({"a": [1]}),
            json!([]),
        ];
        assert_round_trip(
            &event("/", scalars, vec![], Some(7)),
            &hex("84a47479706502a464617461dc0014a2686901ff7fcc80cd012cd0dfd1ff38ce00011170d2ffff63c0cf0000000100000000
                  d3fffffffed5fa0e00cb3fe0000000000000cb3e5ad7f29abcaf48c3c2c0a9c3a9e282acf09f988081a161910190a36e7370
                  a12fa2696407"),
        );

        let binary = event(
            "/chat",
            vec![json!("up"), Payload::placeholder(0), json!({"x": Payload::placeholder(1)})],
            vec![Bytes::from_static(&[1, 2, 3]), Bytes::new()],
            None,
        );
        assert_round_trip(&binary, &hex("83a47479706502a46461746193a27570c40301020381a178c400a36e7370a52f63686174"));

        let mut args = Payload::default();
        args.push_binary(Bytes::from(vec![7; 300]));
        let mut wire = hex("84a47479706503a46461746191c5012c");
        wire.extend([7; 300]);
        wire.extend(hex("a36e7370a12fa26964cf001fffffffffffff"));
        assert_round_trip(&Packet::ack("/", MAX_ACK_ID, args), &wire);

        let keys: Map<String, Value> = (0..16).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let sizes = vec![
            json!("s"),
            json!("x".repeat(40)),
            json!("y".repeat(300)),
            json!((0..20).collect::<Vec<_>>()),
            Value::Object(keys),
        ];
        let mut wire = hex("83a47479706502a46461746195a173d928");
        wire.extend([b'x'; 40]);
        wire.extend(hex("da012c"));
        wire.extend([b'y'; 300]);
        wire.extend(hex("dc0014000102030405060708090a0b0c0d0e0f10111213de0010"));
        for i in 0..16 {
            wire.extend(hex(&format!("a36b3{}3{}{i:02x}", i / 10, i % 10)));
        }
        wire.extend(hex("a36e7370a12f"));
        assert_round_trip(&event("/", sizes, vec![], None), &wire);
    }

    #[test]
    fn keys_keep_the_client_order() {
        // socket.emit("echo", {b: 1, a: {z: Buffer.from([1]), y: Buffer.from([2])}}), written back unchanged.
        let wire = hex("83a47479706502a46461746192a46563686f82a16201a16182a17ac40101a179c40102a36e7370a12f");
        let p = decode(Bytes::copy_from_slice(&wire), Limits::default()).unwrap();
        let PacketKind::Event { payload, .. } = &p.kind else { panic!("not an event") };
        let keys: Vec<&str> = payload.data[1].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["b", "a"]);
        // Placeholders are numbered in wire order.
        assert_eq!(payload.data[1]["a"], json!({"z": Payload::placeholder(0), "y": Payload::placeholder(1)}));
        assert_eq!(payload.attachments, [Bytes::from_static(&[1]), Bytes::from_static(&[2])]);
        assert_eq!(enc(&p), wire);
    }

    #[test]
    fn repeated_keys_override_in_place() {
        // {a: <bin 01>, b: <bin 02>, a: <bin 03>, c: 1, c: undefined}: JavaScript
        // sees {a: <bin 03>, b: <bin 02>}.
        let p =
            dec("83a47479706502a36e7370a12fa46461746192a178 85a161c40101a162c40102a161c40103a16301a163d40000").unwrap();
        let PacketKind::Event { payload, .. } = &p.kind else { panic!("not an event") };
        let keys: Vec<&str> = payload.data[1].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(payload.data[1], json!({"a": Payload::placeholder(0), "b": Payload::placeholder(1)}));
        assert_eq!(payload.attachments, [Bytes::from_static(&[3]), Bytes::from_static(&[2])]);
        assert_eq!(decode(enc(&p).into(), Limits::default()).unwrap(), p);
    }

    #[test]
    fn dates_become_iso_strings() {
        // From `JSON.stringify(new Date(ms))` in Node 20.
        let cases = [
            (0, json!("1970-01-01T00:00:00.000Z")),
            (-1, json!("1969-12-31T23:59:59.999Z")),
            (951_782_400_000, json!("2000-02-29T00:00:00.000Z")),
            (-2_208_988_800_000, json!("1900-01-01T00:00:00.000Z")),
            (-62_167_219_200_000, json!("0000-01-01T00:00:00.000Z")),
            (-62_167_219_200_001, json!("-000001-12-31T23:59:59.999Z")),
            (253_402_300_799_999, json!("9999-12-31T23:59:59.999Z")),
            (253_402_300_800_000, json!("+010000-01-01T00:00:00.000Z")),
            (-8_640_000_000_000_000, json!("-271821-04-20T00:00:00.000Z")),
            (8_640_000_000_000_000, json!("+275760-09-13T00:00:00.000Z")),
            (8_640_000_000_000_001, json!(null)),
            (i64::MIN, json!(null)),
        ];
        for (ms, iso) in cases {
            assert_eq!(js_date(ms.into()), iso, "{ms}");
            // As notepack.io's fixext 8 inside an event.
            let mut wire = hex("83a47479706502a36e7370a12fa46461746192a178d700");
            wire.extend(ms.to_be_bytes());
            let p = decode(wire.into(), Limits::default()).unwrap();
            assert_eq!(p, event("/", vec![json!("x"), iso], vec![], None));
        }
    }

    #[test]
    fn msgpack_timestamps() {
        let ts = |ext: &str| dec(&format!("83a47479706502a36e7370a12fa46461746192a178{ext}"));
        let date = |iso: &str| Ok(event("/", vec![json!("x"), json!(iso)], vec![], None));
        // timestamp 32: 2024-01-02T03:04:05Z
        assert_eq!(ts("d6ff65937d25"), date("2024-01-02T03:04:05.000Z"));
        // timestamp 64: the same second plus 678_900_000 ns
        let v: u64 = (678_900_000 << 34) | 0x6593_7d25;
        assert_eq!(ts(&format!("d7ff{v:016x}")), date("2024-01-02T03:04:05.678Z"));
        // timestamp 96: one nanosecond before the epoch
        assert_eq!(ts("c70cff3b9ac9ffffffffffffffffff"), date("1969-12-31T23:59:59.999Z"));
        assert_eq!(ts("c70cff000000007fffffffffffffff"), Ok(event("/", vec![json!("x"), json!(null)], vec![], None)));
        assert!(
            matches!(ts("c70cff3b9aca00ffffffffffffffff"), Err(ParseError::InvalidMsgpack(_))),
            "nanoseconds >= 1e9"
        );
        assert!(matches!(ts("d5ff0000"), Err(ParseError::InvalidMsgpack(_))), "no 2-byte timestamp");
    }

    #[test]
    fn undefined_and_special_floats() {
        // ["x", undefined, {a: undefined, b: NaN}, float32 1.5, +inf]
        let p = dec("83a47479706502a36e7370a12fa46461746195a178d4000082a161d40000a162cb7ff8000000000000ca3fc00000cb7ff0000000000000").unwrap();
        assert_eq!(
            p,
            event("/", vec![json!("x"), json!(null), json!({"b": null}), json!(1.5), json!(null)], vec![], None)
        );
        // Integral floats are integers, as for JavaScript's `Number.isInteger`.
        let p = dec("84a474797065cb4000000000000000 a464617461 91a178 a36e7370a12f a26964cb4014000000000000").unwrap();
        assert_eq!(p, event("/", vec![json!("x")], vec![], Some(5)));
        // An undefined id or data is no id or data.
        assert_eq!(dec("83a47479706501a36e7370a12fa464617461d40000").unwrap(), Packet::disconnect("/"));
        let p = dec("84a47479706502a464617461 91a178 a36e7370a12f a26964d40000").unwrap();
        assert_eq!(p, event("/", vec![json!("x")], vec![], None));
    }

    #[test]
    fn rejects_invalid_packets() {
        use ParseError::*;
        let cases: &[(&str, ParseError)] = &[
            ("", Empty),
            ("92a178a179", InvalidPayload),                                   // not a map
            ("82a36e7370a12fa464617461 91a178", UnknownType),                 // no type
            ("83a474797065 05 a36e7370a12fa464617461 91a178", UnknownType),   // BINARY_EVENT
            ("83a474797065 a132 a36e7370a12fa464617461 91a178", UnknownType), // "2"
            ("83a474797065 cb4004000000000000 a36e7370a12fa464617461 91a178", UnknownType), // 2.5
            ("83a474797065 04 a36e7370a12fa464617461 81a16101", TypeNotAllowed),
            ("82a474797065 02 a464617461 91a178", InvalidNamespace), // no nsp
            ("83a474797065 02 a36e7370a463686174 a464617461 91a178", InvalidNamespace), // "chat"
            ("83a474797065 02 a36e7370a32f612c a464617461 91a178", InvalidNamespace), // "/a,"
            ("83a474797065 02 a36e737001 a464617461 91a178", InvalidNamespace),
            ("84a474797065 02 a36e7370a12f a464617461 91a178 a26964 ff", InvalidAckId),
            ("84a474797065 02 a36e7370a12f a464617461 91a178 a26964 cf0020000000000000", InvalidAckId),
            ("84a474797065 02 a36e7370a12f a464617461 91a178 a26964 c0", InvalidAckId),
            ("84a474797065 02 a36e7370a12f a464617461 91a178 a26964 cb3ff8000000000000", InvalidAckId),
            ("83a474797065 03 a36e7370a12f a464617461 90", InvalidAckId), // ack without id
            ("83a474797065 02 a36e7370a12f a464617461 90", InvalidPayload), // no event name
            ("83a474797065 02 a36e7370a12f a464617461 91a7636f6e6e656374", InvalidPayload), // "connect"
            ("83a474797065 02 a36e7370a12f a464617461 91c0", InvalidPayload),
            ("83a474797065 02 a36e7370a12f a464617461 80", InvalidPayload),
            ("82a474797065 02 a36e7370a12f", InvalidPayload), // event without data
            ("83a474797065 00 a36e7370a12f a464617461 90", InvalidPayload), // connect with an array
            ("83a474797065 00 a36e7370a12f a464617461 c0", InvalidPayload), // connect with null
            ("83a474797065 00 a36e7370a12f a464617461 81a161c400", InvalidPayload), // binary auth
            ("83a474797065 00 a36e7370a12f a26964 01", InvalidPayload), // connect with an id
            ("83a474797065 01 a36e7370a12f a464617461 90", InvalidPayload), // disconnect with data
            // A placeholder-looking map, even a "valid" one.
            (
                "83a474797065 02 a36e7370a12f a464617461 93a178c40101 82ac5f706c616365686f6c646572c3a36e756d00",
                InvalidPlaceholder,
            ),
        ];
        for (h, err) in cases {
            assert_eq!(dec(h).as_ref(), Err(err), "{h}");
        }
        // 11 binary values with the default limit of 10.
        let mut wire = hex("83a474797065 02 a36e7370a12f a464617461 9ca178");
        for _ in 0..11 {
            wire.extend(hex("c400"));
        }
        assert_eq!(decode(wire.into(), Limits::default()), Err(IllegalAttachments));
        // The namespace length limit.
        let mut wire = hex("82a474797065 00 a36e7370 d9ff2f");
        wire.extend([b'a'; 254]);
        assert!(decode(wire.clone().into(), Limits::default()).is_ok(), "255 bytes");
        assert_eq!(decode(wire.into(), Limits { max_namespace_len: 254, ..Limits::default() }), Err(InvalidNamespace));
    }

    #[test]
    fn rejects_malformed_msgpack() {
        let cases = [
            "83a474797065",                                          // truncated
            "83a47479706502a36e7370a12fa46461746191a178 00",         // trailing byte
            "83a47479706502a36e7370a12fa46461746191a2c328",          // invalid UTF-8
            "83a47479706502a36e7370a12fa464617461 92a178 810101",    // integer key
            "8301 02a36e7370a12fa464617461 91a178",                  // integer key at the top
            "83a47479706502a36e7370a12fa464617461 92a178 d50100 00", // ext type 1
            "83a47479706502a36e7370a12fa464617461 92a178 c1",        // reserved marker
            "83a47479706502a36e7370a12fa464617461 dd ffffffff a178", // 4 billion items declared
            "83a47479706502a36e7370a12fa464617461 df ffffffff",
            "83a47479706502a36e7370a12fa464617461 92a178 c6ffffffff00", // huge bin declared
            "84a47479706502a36e7370a12fa46461746191a178 a178 d50100",   // bad ext in a skipped key
        ];
        for h in cases {
            assert!(matches!(dec(h), Err(ParseError::InvalidMsgpack(_))), "{h}: {:?}", dec(h));
        }
    }

    #[test]
    fn depth_is_limited_without_recursion() {
        let nested = |depth: usize| {
            // {type: 2, nsp: "/", data: ["x", [[[...]]]]}: `depth` containers in all.
            let mut wire = hex("83a47479706502a36e7370a12fa464617461 92a178");
            wire.extend(std::iter::repeat_n(0x91, depth - 3));
            wire.push(0x90);
            wire
        };
        assert!(decode(nested(MAX_DEPTH).into(), Limits::default()).is_ok());
        assert!(matches!(decode(nested(MAX_DEPTH + 1).into(), Limits::default()), Err(ParseError::InvalidMsgpack(_))));
        let deep = nested(1_000_000);
        assert!(matches!(decode(deep.into(), Limits::default()), Err(ParseError::InvalidMsgpack(_))));
        // Skipped keys are walked without a stack at all.
        let mut wire = hex("84a47479706502a36e7370a12fa46461746191a178 a178");
        wire.extend(std::iter::repeat_n(0x91, 1_000_000));
        wire.push(0x90);
        assert!(decode(wire.into(), Limits::default()).is_ok());
    }

    /// Drops a value without recursing (serde_json's own drop recurses).
    fn drop_deep(v: Value) {
        let mut stack = vec![v];
        while let Some(v) = stack.pop() {
            match v {
                Value::Array(items) => stack.extend(items),
                Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
                _ => {}
            }
        }
    }

    #[test]
    fn encodes_deep_values_iteratively() {
        let mut v = json!(1);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let mut p = event("/", vec![json!("x"), v], vec![], None);
        let out = enc(&p);
        if let PacketKind::Event { payload, .. } = &mut p.kind {
            payload.data.drain(..).for_each(drop_deep);
        }
        // The map, "type", 2, "data", the array, "x", the nesting, 1, "nsp", "/".
        assert_eq!(out.len(), 1 + 5 + 1 + 5 + 1 + 2 + 100_000 + 1 + 4 + 2);
    }

    #[test]
    fn encode_edge_cases() {
        // Placeholders that point nowhere stay maps; unreferenced attachments are left out.
        let p = event("/", vec![json!("x"), Payload::placeholder(1)], vec![Bytes::from_static(b"a")], None);
        let out = enc(&p);
        let back = decode(out.into(), Limits::default());
        assert_eq!(back, Err(ParseError::InvalidPlaceholder));
        // Integers beyond 2^53 and floats keep their type.
        let p = event("/", vec![json!("x"), json!(u64::MAX), json!(i64::MIN), json!(2.0), json!(-0.0)], vec![], None);
        let out = enc(&p);
        assert_eq!(decode(out.into(), Limits::default()).unwrap(), p);
    }
}
