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

use std::io;

use rmp::encode;
use serde_json::{Map, Value};

use super::channels::{broadcast_channel, response_channel, room_channel};
use super::notepack::{self, Data, msgpack, number_string, write_data};

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
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cluster::wire::channels::DEFAULT_PREFIX;
    use crate::cluster::wire::tests::{GOLDEN_SPECIAL, hex, map, to_hex};

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
    fn channel_of_a_broadcast() {
        let mut b = golden_all();
        assert_eq!(b.channel("p"), "p#/#");
        b.opts.rooms = strings(&["r", "r"]);
        assert_eq!(b.channel("p"), "p#/#r#", "a set of one room");
        b.opts.rooms = strings(&["r", "s"]);
        assert_eq!(b.channel("p"), "p#/#");
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
        // Malformed msgpack fails with notepack's error.
        assert!(matches!(
            ClassicBroadcast::decode(&[0x93, 0xa1]),
            Err(DecodeError::Notepack(notepack::DecodeError::Truncated))
        ));
    }

    #[test]
    fn json_nesting_is_capped() {
        let deep_json = format!("{{\"type\":6,\"uid\":\"u\",\"data\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(Request::decode(deep_json.as_bytes()), Err(DecodeError::Json(_))));
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
}
