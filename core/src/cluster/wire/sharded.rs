//! The message format of `@socket.io/redis-adapter` 8.x's sharded adapter
//! (`createShardedAdapter`, Redis 7 sharded pub/sub): socket.io-adapter's
//! `ClusterAdapter` messages `{type, data, uid, nsp}`.
//!
//! * Every message of a namespace goes to `<prefix>#<nsp>#`; in the
//!   `dynamic` subscription mode (the default) a broadcast without acks to
//!   exactly one room that does not look like a socket id goes to that
//!   room's channel `<prefix>#<nsp>#<room>#` instead (`dynamic-private`:
//!   socket ids too). Answers go to the requester's channel
//!   `<prefix>#<nsp>#<uid>#`.
//! * JSON (`JSON.stringify`), unless the message may carry binary and does:
//!   then notepack msgpack, maps with the same keys in the same order.
//!   Receivers tell them apart by the first byte (`{` is JSON).
//! * A requester expects `SHARDNUMSUB <prefix>#<nsp>#` − 1 answers.
//!
//! Pure codecs; golden vectors from the real adapter
//! (`core/tests/fixtures/sharded/generate-goldens.js`).

use super::channels;
use super::classic::{self, BroadcastOpts, DecodeError, FetchedSocket, Fields, Packet};
use super::notepack::Data;

/// The `type` of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// `INITIAL_HEARTBEAT` (1), of the heartbeat flavour of the cluster adapter.
    InitialHeartbeat = 1,
    /// `HEARTBEAT` (2).
    Heartbeat = 2,
    /// `BROADCAST` (3), with a request id when acks are collected.
    Broadcast = 3,
    /// `SOCKETS_JOIN` (4).
    SocketsJoin = 4,
    /// `SOCKETS_LEAVE` (5).
    SocketsLeave = 5,
    /// `DISCONNECT_SOCKETS` (6).
    DisconnectSockets = 6,
    /// `FETCH_SOCKETS` (7).
    FetchSockets = 7,
    /// `FETCH_SOCKETS_RESPONSE` (8).
    FetchSocketsResponse = 8,
    /// `SERVER_SIDE_EMIT` (9).
    ServerSideEmit = 9,
    /// `SERVER_SIDE_EMIT_RESPONSE` (10).
    ServerSideEmitResponse = 10,
    /// `BROADCAST_CLIENT_COUNT` (11).
    BroadcastClientCount = 11,
    /// `BROADCAST_ACK` (12).
    BroadcastAck = 12,
    /// `ADAPTER_CLOSE` (13).
    AdapterClose = 13,
}

impl MessageType {
    /// The type with numeric value `code`.
    pub fn from_code(code: u64) -> Option<MessageType> {
        use MessageType as T;
        Some(match code {
            1 => T::InitialHeartbeat,
            2 => T::Heartbeat,
            3 => T::Broadcast,
            4 => T::SocketsJoin,
            5 => T::SocketsLeave,
            6 => T::DisconnectSockets,
            7 => T::FetchSockets,
            8 => T::FetchSocketsResponse,
            9 => T::ServerSideEmit,
            10 => T::ServerSideEmitResponse,
            11 => T::BroadcastClientCount,
            12 => T::BroadcastAck,
            13 => T::AdapterClose,
            _ => return None,
        })
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A node starts (heartbeat flavour).
    InitialHeartbeat,
    /// A node is alive (heartbeat flavour).
    Heartbeat,
    /// A node's adapter closes.
    AdapterClose,
    /// `{packet, requestId?, opts}`: deliver `packet` (whose `nsp` is not
    /// sent) to `opts`; with a request id, answer the client count, then
    /// each ack.
    Broadcast {
        /// The packet.
        packet: Packet,
        /// Present when acks are collected.
        request_id: Option<String>,
        /// Who gets it.
        opts: BroadcastOpts,
    },
    /// `{opts, rooms}`.
    SocketsJoin {
        /// The sockets concerned.
        opts: BroadcastOpts,
        /// The rooms they join.
        rooms: Vec<String>,
    },
    /// `{opts, rooms}`.
    SocketsLeave {
        /// The sockets concerned.
        opts: BroadcastOpts,
        /// The rooms they leave.
        rooms: Vec<String>,
    },
    /// `{opts, close}`.
    DisconnectSockets {
        /// The sockets concerned.
        opts: BroadcastOpts,
        /// Whether their connections close too.
        close: bool,
    },
    /// `{opts, requestId}`.
    FetchSockets {
        /// The sockets wanted.
        opts: BroadcastOpts,
        /// The request id.
        request_id: String,
    },
    /// `{requestId, sockets}`.
    FetchSocketsResponse {
        /// The request id.
        request_id: String,
        /// The answering node's sockets.
        sockets: Vec<FetchedSocket>,
    },
    /// `{requestId?, packet}`: `packet` is `[event, ...args]`.
    ServerSideEmit {
        /// Present when answers are expected.
        request_id: Option<String>,
        /// The event and its arguments.
        packet: Vec<Data>,
    },
    /// `{requestId, packet}`: the handler's answer.
    ServerSideEmitResponse {
        /// The request id.
        request_id: String,
        /// The answer (absent when `undefined`).
        packet: Option<Data>,
    },
    /// `{requestId, clientCount}`.
    BroadcastClientCount {
        /// The request id.
        request_id: String,
        /// Sockets reached on the answering node.
        client_count: u64,
    },
    /// `{requestId, packet}`: one socket's ack.
    BroadcastAck {
        /// The request id.
        request_id: String,
        /// The ack's first argument (absent when `undefined`).
        packet: Option<Data>,
    },
}

/// A message between nodes: `{type, data, uid, nsp}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The sender's uid.
    pub uid: String,
    /// The namespace.
    pub nsp: String,
    /// What it says.
    pub body: Body,
}

/// Which broadcasts get a channel of their own room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// Two channels per namespace.
    Static,
    /// Plus one per room that does not look like a socket id (the default).
    #[default]
    Dynamic,
    /// Plus one per room, socket ids included.
    DynamicPrivate,
}

/// The channel of namespace `nsp` (named as the classic broadcast channel).
pub fn channel(prefix: &str, nsp: &str) -> String {
    channels::broadcast_channel(prefix, nsp)
}

/// The channel of `room` of `nsp` (dynamic modes), or the answers to node
/// `uid` (same form).
pub fn room_channel(prefix: &str, nsp: &str, room: &str) -> String {
    channels::room_channel(prefix, nsp, room)
}

/// The official adapter's test for a socket id: 20 characters.
pub fn looks_like_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

impl MessageType {
    /// Whether a message of this type may carry binary (and is then msgpack).
    fn may_contain_binary(self) -> bool {
        matches!(
            self,
            MessageType::Broadcast
                | MessageType::BroadcastAck
                | MessageType::FetchSocketsResponse
                | MessageType::ServerSideEmit
                | MessageType::ServerSideEmitResponse
        )
    }
}

impl Body {
    /// Its type.
    pub fn message_type(&self) -> MessageType {
        use MessageType as T;
        match self {
            Body::InitialHeartbeat => T::InitialHeartbeat,
            Body::Heartbeat => T::Heartbeat,
            Body::AdapterClose => T::AdapterClose,
            Body::Broadcast { .. } => T::Broadcast,
            Body::SocketsJoin { .. } => T::SocketsJoin,
            Body::SocketsLeave { .. } => T::SocketsLeave,
            Body::DisconnectSockets { .. } => T::DisconnectSockets,
            Body::FetchSockets { .. } => T::FetchSockets,
            Body::FetchSocketsResponse { .. } => T::FetchSocketsResponse,
            Body::ServerSideEmit { .. } => T::ServerSideEmit,
            Body::ServerSideEmitResponse { .. } => T::ServerSideEmitResponse,
            Body::BroadcastClientCount { .. } => T::BroadcastClientCount,
            Body::BroadcastAck { .. } => T::BroadcastAck,
        }
    }

    /// Whether it answers a request (goes to the requester's channel).
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Body::FetchSocketsResponse { .. }
                | Body::ServerSideEmitResponse { .. }
                | Body::BroadcastClientCount { .. }
                | Body::BroadcastAck { .. }
        )
    }
}

fn map(entries: Vec<(&str, Data)>) -> Data {
    Data::Map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn strings(items: &[String]) -> Data {
    Data::Array(items.iter().map(|s| Data::Str(s.clone())).collect())
}

fn opts_data(opts: &BroadcastOpts) -> Data {
    let f = &opts.flags;
    let mut flags = Vec::new();
    for (key, value) in f.bools() {
        if let Some(b) = value {
            flags.push((key, Data::Bool(b)));
        }
    }
    if let Some(t) = f.timeout {
        flags.push(("timeout", Data::UInt(t)));
    }
    if let Some(b) = f.expect_single_response {
        flags.push(("expectSingleResponse", Data::Bool(b)));
    }
    map(vec![("rooms", strings(&opts.rooms)), ("except", strings(&opts.except)), ("flags", map(flags))])
}

/// A packet as the cluster adapter publishes it: `{type, data}` (and `id`),
/// without `nsp`.
fn packet_data(packet: &Packet) -> Data {
    let mut entries = vec![("type", Data::UInt(u64::from(packet.kind))), ("data", Data::Array(packet.data.clone()))];
    if let Some(id) = packet.id {
        entries.push(("id", Data::UInt(id)));
    }
    map(entries)
}

fn has_binary(data: &Data) -> bool {
    match data {
        Data::Bin(_) => true,
        Data::Array(items) => items.iter().any(has_binary),
        Data::Map(entries) => entries.iter().any(|(_, v)| has_binary(v)),
        _ => false,
    }
}

impl Message {
    /// The channel the official adapter publishes it on, to node
    /// `requester` for an answer.
    pub fn channel(&self, prefix: &str, mode: SubscriptionMode, requester: Option<&str>) -> String {
        if let (true, Some(uid)) = (self.body.is_response(), requester) {
            return room_channel(prefix, &self.nsp, uid);
        }
        if let Body::Broadcast { request_id: None, opts, .. } = &self.body
            && let [room] = opts.rooms.as_slice()
        {
            let own = match mode {
                SubscriptionMode::Static => false,
                SubscriptionMode::Dynamic => !looks_like_socket_id(room),
                SubscriptionMode::DynamicPrivate => true,
            };
            if own {
                return room_channel(prefix, &self.nsp, room);
            }
        }
        channel(prefix, &self.nsp)
    }

    fn data(&self) -> Option<Data> {
        let rid = |id: &str| Data::Str(id.to_owned());
        Some(match &self.body {
            Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => return None,
            Body::Broadcast { packet, request_id, opts } => {
                let mut entries = vec![("packet", packet_data(packet))];
                if let Some(id) = request_id {
                    entries.push(("requestId", rid(id)));
                }
                entries.push(("opts", opts_data(opts)));
                map(entries)
            }
            Body::SocketsJoin { opts, rooms } | Body::SocketsLeave { opts, rooms } => {
                map(vec![("opts", opts_data(opts)), ("rooms", strings(rooms))])
            }
            Body::DisconnectSockets { opts, close } => {
                map(vec![("opts", opts_data(opts)), ("close", Data::Bool(*close))])
            }
            Body::FetchSockets { opts, request_id } => {
                map(vec![("opts", opts_data(opts)), ("requestId", rid(request_id))])
            }
            Body::FetchSocketsResponse { request_id, sockets } => map(vec![
                ("requestId", rid(request_id)),
                ("sockets", Data::Array(sockets.iter().map(|s| Data::from_json(&s.to_json())).collect())),
            ]),
            Body::ServerSideEmit { request_id, packet } => {
                let mut entries = Vec::new();
                if let Some(id) = request_id {
                    entries.push(("requestId", rid(id)));
                }
                entries.push(("packet", Data::Array(packet.clone())));
                map(entries)
            }
            Body::ServerSideEmitResponse { request_id, packet } | Body::BroadcastAck { request_id, packet } => {
                let mut entries = vec![("requestId", rid(request_id))];
                if let Some(p) = packet {
                    entries.push(("packet", p.clone()));
                }
                map(entries)
            }
            Body::BroadcastClientCount { request_id, client_count } => {
                map(vec![("requestId", rid(request_id)), ("clientCount", Data::UInt(*client_count))])
            }
        })
    }

    /// Encodes as the official adapter does: `JSON.stringify({type, data,
    /// uid, nsp})`, or notepack msgpack of the same object when it may and
    /// does carry binary.
    pub fn encode(&self) -> Vec<u8> {
        let ty = self.body.message_type();
        let data = self.data();
        let binary = ty.may_contain_binary() && data.as_ref().is_some_and(has_binary);
        let mut entries = vec![("type", Data::UInt(ty as u64))];
        if let Some(d) = data {
            entries.push(("data", d));
        }
        entries.push(("uid", Data::Str(self.uid.clone())));
        entries.push(("nsp", Data::Str(self.nsp.clone())));
        let object = map(entries);
        if binary { object.to_msgpack() } else { object.to_json_string().into_bytes() }
    }

    /// Decodes a message (JSON when it starts with `{`, msgpack otherwise).
    ///
    /// # Errors
    /// [`DecodeError`] for anything that is not such a message.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut f = Fields::new(classic::decode_json_or_msgpack(bytes)?, "message")?;
        let code = f.opt_u64("type")?.ok_or(DecodeError::MissingField("type"))?;
        let ty = MessageType::from_code(code).ok_or(DecodeError::UnknownRequestType(code))?;
        let uid = f.opt_str("uid")?.unwrap_or_default();
        let nsp = f.opt_str("nsp")?.unwrap_or_else(|| "/".to_owned());
        let data = f.take("data");
        let mut d = match (ty, data) {
            (MessageType::InitialHeartbeat | MessageType::Heartbeat | MessageType::AdapterClose, _) => {
                Fields::new(Data::Map(Vec::new()), "data")?
            }
            (_, Some(data)) => Fields::new(data, "data")?,
            (_, None) => return Err(DecodeError::MissingField("data")),
        };
        let opts = |d: &mut Fields| -> Result<BroadcastOpts, DecodeError> {
            match d.take("opts") {
                Some(o) => BroadcastOpts::read(o),
                None => Err(DecodeError::MissingField("opts")),
            }
        };
        let list = |d: &mut Fields, key: &'static str| match d.take(key) {
            Some(Data::Array(items)) => Ok(items),
            None => Err(DecodeError::MissingField(key)),
            Some(_) => Err(DecodeError::WrongType { field: key, expected: "an array" }),
        };
        use MessageType as T;
        let body = match ty {
            T::InitialHeartbeat => Body::InitialHeartbeat,
            T::Heartbeat => Body::Heartbeat,
            T::AdapterClose => Body::AdapterClose,
            T::Broadcast => {
                let mut packet = classic::read_packet(d.take("packet").ok_or(DecodeError::MissingField("packet"))?)?;
                packet.nsp.clone_from(&nsp);
                Body::Broadcast { packet, request_id: d.opt_str("requestId")?, opts: opts(&mut d)? }
            }
            T::SocketsJoin => Body::SocketsJoin { opts: opts(&mut d)?, rooms: d.rooms("rooms")? },
            T::SocketsLeave => Body::SocketsLeave { opts: opts(&mut d)?, rooms: d.rooms("rooms")? },
            T::DisconnectSockets => {
                Body::DisconnectSockets { opts: opts(&mut d)?, close: d.opt_bool("close")?.unwrap_or(false) }
            }
            T::FetchSockets => Body::FetchSockets { opts: opts(&mut d)?, request_id: d.req_str("requestId")? },
            T::FetchSocketsResponse => Body::FetchSocketsResponse {
                request_id: d.req_str("requestId")?,
                sockets: list(&mut d, "sockets")?.into_iter().map(FetchedSocket::read).collect::<Result<_, _>>()?,
            },
            T::ServerSideEmit => {
                Body::ServerSideEmit { request_id: d.opt_str("requestId")?, packet: list(&mut d, "packet")? }
            }
            T::ServerSideEmitResponse => {
                Body::ServerSideEmitResponse { request_id: d.req_str("requestId")?, packet: d.take("packet") }
            }
            T::BroadcastClientCount => Body::BroadcastClientCount {
                request_id: d.req_str("requestId")?,
                client_count: d.opt_u64("clientCount")?.ok_or(DecodeError::MissingField("clientCount"))?,
            },
            T::BroadcastAck => Body::BroadcastAck { request_id: d.req_str("requestId")?, packet: d.take("packet") },
        };
        Ok(Message { uid, nsp, body })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::cluster::wire::classic::Flags;
    use crate::cluster::wire::tests::hex;

    const UID: &str = "0101010101010101";

    fn opts(rooms: &[&str], except: &[&str], flags: Flags) -> BroadcastOpts {
        BroadcastOpts {
            rooms: rooms.iter().map(|s| (*s).to_owned()).collect(),
            except: except.iter().map(|s| (*s).to_owned()).collect(),
            flags,
        }
    }

    fn message(body: Body) -> Message {
        Message { uid: UID.to_owned(), nsp: "/".to_owned(), body }
    }

    /// Decodes the golden, checks it is `want`, and that encoding `want` gives the golden's bytes.
    fn golden(bytes_hex: &str, want: &Message, channel: &str, requester: Option<&str>) {
        let bytes = hex(bytes_hex);
        assert_eq!(&Message::decode(&bytes).unwrap(), want);
        assert_eq!(want.encode(), bytes, "encoding {want:?}");
        assert_eq!(want.channel("socket.io", SubscriptionMode::Dynamic, requester), channel);
    }

    #[test]
    fn broadcasts_match_the_official_adapter() {
        let data = vec![
            Data::from("hello"),
            Data::from("world"),
            Data::Map(vec![
                ("a".into(), Data::Float(1.5)),
                ("n".into(), Data::Int(-200)),
                ("z".into(), Data::Null),
                ("t".into(), Data::Bool(true)),
            ]),
        ];
        golden(
            "7b2274797065223a332c2264617461223a7b227061636b6574223a7b2274797065223a322c2264617461223a5b2268656c6c6f222c22776f726c64222c7b2261223a312e352c226e223a2d3230302c227a223a6e756c6c2c2274223a747275657d5d7d2c226f707473223a7b22726f6f6d73223a5b22726f6f6d31225d2c22657863657074223a5b5d2c22666c616773223a7b7d7d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::Broadcast {
                packet: Packet::event("/", data),
                request_id: None,
                opts: opts(&["room1"], &[], Flags::default()),
            }),
            "socket.io#/#room1#",
            None,
        );
        golden(
            "84a47479706503a46461746182a67061636b657482a47479706502a46461746192a466696c65c403010203a46f70747383a5726f6f6d7392a5726f6f6d31a5726f6f6d32a665786365707491a473696439a5666c61677380a3756964b030313031303130313031303130313031a36e7370a12f",
            &message(Body::Broadcast {
                packet: Packet::event("/", vec![Data::from("file"), Data::Bin(Bytes::from_static(&[1, 2, 3]))]),
                request_id: None,
                opts: opts(&["room1", "room2"], &["sid9"], Flags::default()),
            }),
            "socket.io#/#",
            None,
        );
        golden(
            "7b2274797065223a332c2264617461223a7b227061636b6574223a7b2274797065223a322c2264617461223a5b22616c6c225d7d2c226f707473223a7b22726f6f6d73223a5b5d2c22657863657074223a5b5d2c22666c616773223a7b22766f6c6174696c65223a747275657d7d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::Broadcast {
                packet: Packet::event("/", vec![Data::from("all")]),
                request_id: None,
                opts: opts(&[], &[], Flags { volatile: Some(true), ..Flags::default() }),
            }),
            "socket.io#/#",
            None,
        );
        golden(
            "7b2274797065223a332c2264617461223a7b227061636b6574223a7b2274797065223a322c2264617461223a5b22706f6c6c222c2271225d7d2c22726571756573744964223a2230343034303430343034303430343034222c226f707473223a7b22726f6f6d73223a5b22726f6f6d31225d2c22657863657074223a5b5d2c22666c616773223a7b2274696d656f7574223a313030307d7d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::Broadcast {
                packet: Packet::event("/", vec![Data::from("poll"), Data::from("q")]),
                request_id: Some("0404040404040404".into()),
                opts: opts(&["room1"], &[], Flags { timeout: Some(1000), ..Flags::default() }),
            }),
            "socket.io#/#",
            None,
        );
    }

    #[test]
    fn requests_match_the_official_adapter() {
        let room1 = || opts(&["room1"], &[], Flags::default());
        golden(
            "7b2274797065223a342c2264617461223a7b226f707473223a7b22726f6f6d73223a5b22726f6f6d31225d2c22657863657074223a5b5d2c22666c616773223a7b7d7d2c22726f6f6d73223a5b2261222c2262225d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::SocketsJoin { opts: room1(), rooms: vec!["a".into(), "b".into()] }),
            "socket.io#/#",
            None,
        );
        golden(
            "7b2274797065223a352c2264617461223a7b226f707473223a7b22726f6f6d73223a5b22726f6f6d31225d2c22657863657074223a5b5d2c22666c616773223a7b7d7d2c22726f6f6d73223a5b2261225d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::SocketsLeave { opts: room1(), rooms: vec!["a".into()] }),
            "socket.io#/#",
            None,
        );
        golden(
            "7b2274797065223a362c2264617461223a7b226f707473223a7b22726f6f6d73223a5b22726f6f6d32225d2c22657863657074223a5b5d2c22666c616773223a7b7d7d2c22636c6f7365223a747275657d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::DisconnectSockets { opts: opts(&["room2"], &[], Flags::default()), close: true }),
            "socket.io#/#",
            None,
        );
        golden(
            "7b2274797065223a372c2264617461223a7b226f707473223a7b22726f6f6d73223a5b22726f6f6d31225d2c22657863657074223a5b5d2c22666c616773223a7b7d7d2c22726571756573744964223a2230323032303230323032303230323032227d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::FetchSockets { opts: room1(), request_id: "0202020202020202".into() }),
            "socket.io#/#",
            None,
        );
        golden(
            "7b2274797065223a392c2264617461223a7b227061636b6574223a5b2270696e67222c312c2274776f225d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::ServerSideEmit {
                request_id: None,
                packet: vec![Data::from("ping"), Data::UInt(1), Data::from("two")],
            }),
            "socket.io#/#",
            None,
        );
        golden(
            "7b2274797065223a392c2264617461223a7b22726571756573744964223a2230333033303330333033303330333033222c227061636b6574223a5b2261736b222c335d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::ServerSideEmit {
                request_id: Some("0303030303030303".into()),
                packet: vec![Data::from("ask"), Data::UInt(3)],
            }),
            "socket.io#/#",
            None,
        );
    }

    #[test]
    fn responses_match_the_official_adapter() {
        let requester = Some("ffffffffffffffff");
        let to = "socket.io#/#ffffffffffffffff#";
        golden(
            "7b2274797065223a31302c2264617461223a7b22726571756573744964223a2261616161616161616161616161616161222c227061636b6574223a7b22706f6e67223a377d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::ServerSideEmitResponse {
                request_id: "aaaaaaaaaaaaaaaa".into(),
                packet: Some(Data::Map(vec![("pong".into(), Data::UInt(7))])),
            }),
            to,
            requester,
        );
        golden(
            "7b2274797065223a31312c2264617461223a7b22726571756573744964223a2263636363636363636363636363636363222c22636c69656e74436f756e74223a307d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::BroadcastClientCount { request_id: "cccccccccccccccc".into(), client_count: 0 }),
            to,
            requester,
        );
        golden(
            "7b2274797065223a382c2264617461223a7b22726571756573744964223a2262626262626262626262626262626262222c22736f636b657473223a5b5d7d2c22756964223a2230313031303130313031303130313031222c226e7370223a222f227d",
            &message(Body::FetchSocketsResponse { request_id: "bbbbbbbbbbbbbbbb".into(), sockets: vec![] }),
            to,
            requester,
        );
    }

    #[test]
    fn channels_follow_the_subscription_mode() {
        let to = |room: &str| {
            message(Body::Broadcast {
                packet: Packet::event("/", vec![Data::from("x")]),
                request_id: None,
                opts: opts(&[room], &[], Flags::default()),
            })
        };
        let sid = "abcdefghij0123456789";
        assert_eq!(to(sid).channel("p", SubscriptionMode::Dynamic, None), "p#/#");
        assert_eq!(to(sid).channel("p", SubscriptionMode::DynamicPrivate, None), format!("p#/#{sid}#"));
        assert_eq!(to("lobby").channel("p", SubscriptionMode::Static, None), "p#/#");
        assert_eq!(to("lobby").channel("p", SubscriptionMode::Dynamic, None), "p#/#lobby#");
    }

    #[test]
    fn bad_messages_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"[1]",
            b"{\"type\":99,\"data\":{}}",
            b"{\"type\":3}",
            b"{\"type\":7,\"data\":{\"opts\":{}}}",
        ] {
            assert!(Message::decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let beat = Message::decode(br#"{"type":2,"uid":"u","nsp":"/chat"}"#).unwrap();
        assert_eq!((beat.uid.as_str(), beat.nsp.as_str(), beat.body), ("u", "/chat", Body::Heartbeat));
    }
}
