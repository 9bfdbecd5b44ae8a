//! The requests nodes publish on a namespace's request channel.

use rmp::encode;
use serde_json::Value;

use super::{
    BroadcastOpts, DecodeError, Fields, Packet, RoomOpts, decode_json_or_msgpack, jstr, jstrs, object, read_packet,
    write_packet,
};
use crate::cluster::wire::notepack::{Data, msgpack};

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
    /// [`Response::Done`](super::Response::Done) by the node that has the socket.
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
    /// delivers the packet with its own ack id, answers
    /// [`Response::BroadcastClientCount`](super::Response::BroadcastClientCount), then one
    /// [`Response::BroadcastAck`](super::Response::BroadcastAck) per socket ack.
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
