//! The answers nodes publish on the response channels, and the sockets and handshakes they describe.

use rmp::encode;
use serde_json::Value;

use super::{DecodeError, Fields, RequestType, decode_json_or_msgpack, jstr, jstrs, object, room_string};
use crate::cluster::wire::channels::response_channel;
use crate::cluster::wire::notepack::{Data, msgpack, write_data};

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
    pub(in crate::cluster::wire) fn to_json(&self) -> Value {
        Value::Object(object([
            ("id", jstr(&self.id)),
            ("handshake", Some(self.handshake.to_json())),
            ("rooms", jstrs(&self.rooms)),
            ("data", self.data.as_ref().map(Data::to_json)),
        ]))
    }

    pub(crate) fn read(value: Data) -> Result<FetchedSocket, DecodeError> {
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
