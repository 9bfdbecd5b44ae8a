//! The cluster's wire protocol, chosen once when a hub joins: the channels
//! of a namespace and of its rooms, and the encoding of what the cluster
//! says ([`Codec`]), for `@socket.io/redis-adapter`'s classic protocol
//! ([`Classic`]) or its sharded one ([`Sharded`]).
//!
//! The rest of the cluster speaks one vocabulary: a broadcast is a packet
//! and its [`BroadcastOpts`]; a request is a [`Request`] and an answer a
//! [`Response`] (the classic protocol's, the larger of the two: the sharded
//! protocol has a subset of its requests and answers, translated here at
//! the edge); what arrives is an [`Inbound`]. An answer stays an [`Answer`]
//! until the requester reads it, because classic answers can only be read
//! knowing the request they answer.

use std::fmt;

use super::config::Protocol;
use crate::cluster::wire::channels::{self, Channel};
use crate::cluster::wire::classic::{
    self, BroadcastOpts, ClassicBroadcast, DecodeError, Flags, Packet, RawResponse, Request, RequestType, Response,
    RoomOpts,
};
use crate::cluster::wire::notepack::Data;
use crate::cluster::wire::sharded::{self, Body, Message, SubscriptionMode};

/// What another node said, in the cluster's vocabulary.
pub(super) enum Inbound {
    /// A broadcast of node `uid` to deliver to this node's sockets.
    Broadcast { uid: String, nsp: String, data: Vec<Data>, opts: BroadcastOpts },
    /// A request to apply or answer.
    Request { nsp: String, request: Request },
    /// An answer to this node's request `request_id`, from node `uid`
    /// when it names itself.
    Answer { uid: Option<String>, request_id: String, answer: Answer },
    /// Nothing for this node: its own message, or the protocol's own
    /// bookkeeping.
    Ignored,
}

/// A message that could not be read: what it was meant to be, and why.
pub(super) struct Malformed(pub(super) &'static str, pub(super) DecodeError);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

/// A wire protocol of the cluster.
pub(super) trait Codec: Send + Sync + 'static {
    /// The channels a node listens to for namespace `nsp` (`uid`: this node).
    fn namespace_channels(&self, nsp: &str, uid: &str) -> Vec<String>;

    /// The channel of `room`'s broadcasts, when it has one of its own.
    fn room_channel(&self, nsp: &str, room: &str) -> Option<String>;

    /// The channel whose subscribers are the namespace's nodes (and where
    /// requests go).
    fn request_channel(&self, nsp: &str) -> String;

    /// The namespace whose request channel `channel` is.
    fn request_channel_of<'a>(&self, channel: &'a str) -> Option<&'a str>;

    /// A broadcast of node `uid`: its channel and bytes. `own_channel`:
    /// a broadcast to one room may go to that room's channel, where the
    /// protocol has one (else the namespace's).
    fn broadcast(&self, uid: &str, packet: Packet, opts: BroadcastOpts, own_channel: bool) -> (String, Vec<u8>);

    /// A request, for [`request_channel`](Self::request_channel); `None`
    /// when the protocol has no such request.
    fn request(&self, uid: &str, nsp: &str, request: &Request) -> Option<Vec<u8>>;

    /// An answer of node `uid` to `requester` (unknown for some classic
    /// requests): its channel and bytes; `None` when the protocol cannot
    /// carry it.
    fn response(&self, uid: &str, nsp: &str, requester: Option<&str>, response: &Response)
    -> Option<(String, Vec<u8>)>;

    /// What arrived on `channel` (`uid`: this node).
    fn decode(&self, uid: &str, channel: &str, payload: &[u8]) -> Result<Inbound, Malformed>;
}

/// The codec of `protocol`.
pub(super) fn codec(protocol: Protocol, prefix: &str, specific_response_channel: bool) -> Box<dyn Codec> {
    match protocol {
        Protocol::Classic => Box::new(Classic { prefix: prefix.to_owned(), specific_response_channel }),
        Protocol::Sharded(mode) => Box::new(Sharded { prefix: prefix.to_owned(), mode }),
    }
}

/// `createAdapter`'s protocol.
pub(super) struct Classic {
    prefix: String,
    specific_response_channel: bool,
}

impl Codec for Classic {
    fn namespace_channels(&self, nsp: &str, uid: &str) -> Vec<String> {
        let p = &self.prefix;
        vec![
            channels::broadcast_channel(p, nsp),
            channels::request_channel(p, nsp),
            channels::response_channel(p, nsp, None),
            channels::response_channel(p, nsp, Some(uid)),
        ]
    }

    fn room_channel(&self, nsp: &str, room: &str) -> Option<String> {
        Some(channels::room_channel(&self.prefix, nsp, room))
    }

    fn request_channel(&self, nsp: &str) -> String {
        channels::request_channel(&self.prefix, nsp)
    }

    fn request_channel_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        match channels::parse_channel(&self.prefix, channel) {
            Some(Channel::Request { nsp }) => Some(nsp),
            _ => None,
        }
    }

    fn broadcast(&self, uid: &str, packet: Packet, opts: BroadcastOpts, own_channel: bool) -> (String, Vec<u8>) {
        let message = ClassicBroadcast { uid: uid.to_owned(), packet, opts };
        let channel = match own_channel {
            true => message.channel(&self.prefix),
            false => channels::broadcast_channel(&self.prefix, &message.packet.nsp),
        };
        (channel, message.encode())
    }

    fn request(&self, _uid: &str, _nsp: &str, request: &Request) -> Option<Vec<u8>> {
        Some(request.encode())
    }

    fn response(
        &self,
        uid: &str,
        nsp: &str,
        requester: Option<&str>,
        response: &Response,
    ) -> Option<(String, Vec<u8>)> {
        let channel = match requester {
            Some(requester) => response.channel(&self.prefix, nsp, requester, self.specific_response_channel),
            None => channels::response_channel(&self.prefix, nsp, None),
        };
        Some((channel, response.encode_from(Some(uid))))
    }

    fn decode(&self, uid: &str, channel: &str, payload: &[u8]) -> Result<Inbound, Malformed> {
        match channels::parse_channel(&self.prefix, channel) {
            Some(Channel::Broadcast { .. }) => {
                // Own broadcasts are skipped before decoding them.
                if ClassicBroadcast::peek_uid(payload) == Some(uid) {
                    return Ok(Inbound::Ignored);
                }
                let message = ClassicBroadcast::decode(payload).map_err(|e| Malformed("broadcast", e))?;
                if message.uid == uid {
                    return Ok(Inbound::Ignored);
                }
                let Packet { nsp, data, .. } = message.packet;
                Ok(Inbound::Broadcast { uid: message.uid, nsp, data, opts: message.opts })
            }
            Some(Channel::Request { nsp }) => {
                let request = Request::decode(payload).map_err(|e| Malformed("request", e))?;
                // Own requests: this node applied them already and counts itself.
                if request.uid() == Some(uid) {
                    return Ok(Inbound::Ignored);
                }
                Ok(Inbound::Request { nsp: nsp.to_owned(), request })
            }
            Some(Channel::Response { .. }) => {
                let raw = RawResponse::decode(payload).map_err(|e| Malformed("response", e))?;
                let Some(request_id) = raw.request_id().map(str::to_owned) else { return Ok(Inbound::Ignored) };
                Ok(Inbound::Answer { uid: raw.uid().map(str::to_owned), request_id, answer: Answer::Classic(raw) })
            }
            None => Ok(Inbound::Ignored),
        }
    }
}

/// `createShardedAdapter`'s protocol, with its subscription mode.
pub(super) struct Sharded {
    prefix: String,
    mode: SubscriptionMode,
}

impl Codec for Sharded {
    fn namespace_channels(&self, nsp: &str, uid: &str) -> Vec<String> {
        vec![sharded::channel(&self.prefix, nsp), sharded::room_channel(&self.prefix, nsp, uid)]
    }

    fn room_channel(&self, nsp: &str, room: &str) -> Option<String> {
        match self.mode {
            SubscriptionMode::Static => None,
            SubscriptionMode::Dynamic => {
                (!sharded::looks_like_socket_id(room)).then(|| sharded::room_channel(&self.prefix, nsp, room))
            }
            SubscriptionMode::DynamicPrivate => Some(sharded::room_channel(&self.prefix, nsp, room)),
        }
    }

    fn request_channel(&self, nsp: &str) -> String {
        sharded::channel(&self.prefix, nsp)
    }

    fn request_channel_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        match channels::parse_channel(&self.prefix, channel) {
            Some(Channel::Broadcast { nsp, room: None }) => Some(nsp),
            _ => None,
        }
    }

    fn broadcast(&self, uid: &str, packet: Packet, opts: BroadcastOpts, own_channel: bool) -> (String, Vec<u8>) {
        let nsp = packet.nsp.clone();
        let message = Message { uid: uid.to_owned(), nsp, body: Body::Broadcast { packet, request_id: None, opts } };
        let channel = match own_channel {
            true => message.channel(&self.prefix, self.mode, None),
            false => sharded::channel(&self.prefix, &message.nsp),
        };
        (channel, message.encode())
    }

    fn request(&self, uid: &str, nsp: &str, request: &Request) -> Option<Vec<u8>> {
        let body = sharded_request(request)?;
        Some(Message { uid: uid.to_owned(), nsp: nsp.to_owned(), body }.encode())
    }

    fn response(
        &self,
        uid: &str,
        nsp: &str,
        requester: Option<&str>,
        response: &Response,
    ) -> Option<(String, Vec<u8>)> {
        let (requester, body) = (requester?, sharded_response(response)?);
        let message = Message { uid: uid.to_owned(), nsp: nsp.to_owned(), body };
        Some((sharded::room_channel(&self.prefix, nsp, requester), message.encode()))
    }

    fn decode(&self, uid: &str, _channel: &str, payload: &[u8]) -> Result<Inbound, Malformed> {
        let message = Message::decode(payload).map_err(|e| Malformed("message", e))?;
        if message.uid == uid {
            return Ok(Inbound::Ignored);
        }
        let Message { uid, nsp, body } = message;
        if body.is_response() {
            // Answers name their node in this protocol, official ones too.
            let Some(request_id) = response_id(&body).map(str::to_owned) else { return Ok(Inbound::Ignored) };
            return Ok(Inbound::Answer { uid: Some(uid.clone()), request_id, answer: Answer::Sharded { uid, body } });
        }
        Ok(match body {
            Body::Broadcast { packet, request_id: None, opts } => {
                Inbound::Broadcast { uid, nsp, data: packet.data, opts }
            }
            Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => Inbound::Ignored,
            other => match classic_request(uid, other) {
                Some(request) => Inbound::Request { nsp, request },
                None => Inbound::Ignored,
            },
        })
    }
}

/// An answer to one of this node's requests, in either protocol.
pub(crate) enum Answer {
    /// A classic response, read by the type of the request it answers.
    Classic(RawResponse),
    /// A sharded response, from node `uid`.
    Sharded { uid: String, body: Body },
}

impl Answer {
    /// The answering node, when known.
    pub(crate) fn uid(&self) -> Option<&str> {
        match self {
            Answer::Classic(raw) => raw.uid(),
            Answer::Sharded { uid, .. } => Some(uid),
        }
    }

    /// The answer as a classic [`Response`] to a request of type `asked`.
    pub(crate) fn interpret(self, asked: RequestType) -> Result<Response, classic::DecodeError> {
        let body = match self {
            Answer::Classic(raw) => return raw.interpret(asked),
            Answer::Sharded { body, .. } => body,
        };
        Ok(match body {
            Body::FetchSocketsResponse { request_id, sockets } => Response::Fetch { request_id, sockets },
            Body::ServerSideEmitResponse { request_id, packet } => {
                Response::ServerSideEmit { request_id, data: packet }
            }
            Body::BroadcastClientCount { request_id, client_count } => {
                Response::BroadcastClientCount { request_id, client_count }
            }
            Body::BroadcastAck { request_id, packet } => Response::BroadcastAck { request_id, packet },
            _ => return Err(classic::DecodeError::UnexpectedResponse { asked }),
        })
    }
}

/// The request id a sharded response answers.
fn response_id(body: &Body) -> Option<&str> {
    match body {
        Body::FetchSocketsResponse { request_id, .. }
        | Body::ServerSideEmitResponse { request_id, .. }
        | Body::BroadcastClientCount { request_id, .. }
        | Body::BroadcastAck { request_id, .. } => Some(request_id),
        _ => None,
    }
}

fn broadcast_opts(opts: &RoomOpts) -> BroadcastOpts {
    BroadcastOpts { rooms: opts.rooms.clone(), except: opts.except.clone(), flags: Flags::default() }
}

fn room_opts_of(opts: BroadcastOpts) -> RoomOpts {
    RoomOpts { rooms: opts.rooms, except: opts.except }
}

/// A classic request's sharded equivalent (none for ALL_ROOMS, SOCKETS and
/// the legacy single-socket forms).
fn sharded_request(request: &Request) -> Option<Body> {
    Some(match request {
        Request::RemoteJoin { opts, rooms, .. } => {
            Body::SocketsJoin { opts: broadcast_opts(opts), rooms: rooms.clone() }
        }
        Request::RemoteLeave { opts, rooms, .. } => {
            Body::SocketsLeave { opts: broadcast_opts(opts), rooms: rooms.clone() }
        }
        Request::RemoteDisconnect { opts, close, .. } => {
            Body::DisconnectSockets { opts: broadcast_opts(opts), close: *close }
        }
        Request::RemoteFetch { request_id, opts, .. } => {
            Body::FetchSockets { opts: broadcast_opts(opts), request_id: request_id.clone() }
        }
        Request::ServerSideEmit { request_id, data, .. } => {
            Body::ServerSideEmit { request_id: request_id.clone(), packet: data.clone() }
        }
        Request::Broadcast { request_id, packet, opts, .. } => {
            Body::Broadcast { packet: packet.clone(), request_id: Some(request_id.clone()), opts: opts.clone() }
        }
        _ => return None,
    })
}

/// A sharded request as the classic request the node answers the same way.
fn classic_request(uid: String, body: Body) -> Option<Request> {
    Some(match body {
        Body::Broadcast { packet, request_id: Some(request_id), opts } => {
            Request::Broadcast { uid, request_id, packet, opts }
        }
        Body::SocketsJoin { opts, rooms } => Request::RemoteJoin { uid, opts: room_opts_of(opts), rooms },
        Body::SocketsLeave { opts, rooms } => Request::RemoteLeave { uid, opts: room_opts_of(opts), rooms },
        Body::DisconnectSockets { opts, close } => Request::RemoteDisconnect { uid, opts: room_opts_of(opts), close },
        Body::FetchSockets { opts, request_id } => Request::RemoteFetch { uid, request_id, opts: room_opts_of(opts) },
        Body::ServerSideEmit { request_id, packet } => Request::ServerSideEmit { uid, request_id, data: packet },
        _ => return None,
    })
}

/// A classic response's sharded equivalent.
fn sharded_response(response: &Response) -> Option<Body> {
    Some(match response.clone() {
        Response::Fetch { request_id, sockets } => Body::FetchSocketsResponse { request_id, sockets },
        Response::ServerSideEmit { request_id, data } => Body::ServerSideEmitResponse { request_id, packet: data },
        Response::BroadcastClientCount { request_id, client_count } => {
            Body::BroadcastClientCount { request_id, client_count }
        }
        Response::BroadcastAck { request_id, packet } => Body::BroadcastAck { request_id, packet },
        _ => return None,
    })
}
