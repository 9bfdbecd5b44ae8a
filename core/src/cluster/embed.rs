//! A cluster link for a host that keeps its own sockets: a node of the
//! cluster whose Socket.IO layer is not the core's [`Hub`](crate::hub::Hub)
//! but another language's (socket.io's JavaScript sockets behind a
//! socket.io adapter, python-socketio's behind a client manager).
//!
//! The link speaks the cluster's protocol (the same [`Codec`](super::codec)
//! as a hub's cluster, so classic or sharded `@socket.io/redis-adapter`
//! nodes and Tidewire nodes form one cluster) over any [`Bus`]; the host
//! answers for its sockets. Values cross as JSON text with socket.io-parser
//! placeholders plus the binary attachments they point at (see
//! [`embed::args`](crate::embed::args)), so a binding only converts strings
//! and buffers:
//!
//! * What other nodes send arrives as [`LinkEvent`]s, given to the host's
//!   callback in order: broadcasts to deliver (`{packet: {type, nsp, data},
//!   opts: {rooms, except, flags}}`) and requests (the classic request's
//!   JSON shape, `{type, uid, requestId?, opts?, rooms?, close?, data?,
//!   packet?, sid?, room?}`, whatever the protocol). The host answers with
//!   [`ClusterLink::respond`].
//! * What this node sends: [`broadcast`](ClusterLink::broadcast),
//!   [`notify`](ClusterLink::notify) (requests without answers),
//!   [`request`](ClusterLink::request) (answers gathered, with who
//!   answered), [`broadcast_with_ack`](ClusterLink::broadcast_with_ack)
//!   (counts and acks as they come), [`server_count`](ClusterLink::server_count).
//! * Connection-state recovery across nodes: a host that lacks a session
//!   asks the others with [`take_session`](ClusterLink::take_session); the
//!   holder's host gets a [`LinkEvent::SessionWanted`] and answers with
//!   [`give_session`](ClusterLink::give_session); nothing broadcast
//!   meanwhile falls between the two nodes (the marker and the tail of
//!   `embed_sessions.rs`).
//! * What this node listens to follows the host's rooms:
//!   [`rooms_changed`](ClusterLink::rooms_changed) and
//!   [`listen`](ClusterLink::listen), as for a hub (interest-based
//!   subscriptions).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::codec::Inbound;
use super::config::{ClusterConfig, ClusterStats, Protocol, add};
use super::embed_direct::{Direct, LinkQueue};
use super::embed_sessions::Sessions;
use super::interest;
use super::{Beat, Cluster};
use crate::bus::{Bus, BusMessage};
use crate::cluster::wire::classic::{
    self, BroadcastOpts, DecodeError, FetchedSocket, Flags, Request, RequestType, Response, RoomOpts,
};
use crate::cluster::wire::notepack::{Data, args_to_json};
use crate::cluster::wire::sharded::{Body, Message};
use crate::embed::fanout::Fanout;
use crate::hub::{Gathered, Replies, RoomChange, lock};
use crate::rooms::Room;

/// A message for the host, as JSON text with placeholders and the
/// attachments they point at.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    /// The namespace it concerns.
    pub nsp: String,
    /// The JSON text.
    pub json: String,
    /// The binary parts.
    pub attachments: Vec<Bytes>,
}

impl Carried {
    pub(super) fn new(nsp: &str, value: &Data) -> Carried {
        let (json, attachments) = value.to_json_with_attachments();
        Carried { nsp: nsp.to_owned(), json: json.to_string(), attachments }
    }
}

/// What another node sent that the host acts on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A broadcast of node `uid` to deliver to the host's sockets:
    /// `{packet: {type, nsp, data}, opts: {rooms, except, flags}, uid}`.
    Broadcast(Carried),
    /// A request to apply or answer (with [`ClusterLink::respond`]), in the
    /// classic protocol's JSON shape whatever the wire protocol.
    Request(Carried),
    /// Another node lacks a session its client brought back, which this
    /// host may hold: `{requestId, from, pid, offset}`; answer with
    /// [`ClusterLink::give_session`] (see `take_session`).
    SessionWanted(Carried),
    /// Node `from`, to which this host gave session `pid` (request
    /// `requestId`), now listens to its rooms: `{requestId, from, pid}`;
    /// answer with [`ClusterLink::give_tail`], then stop logging for it.
    SessionReleased(Carried),
    /// This node's own marker for request `requestId` came back from the
    /// bus (see [`ClusterLink::release_session`]): `{requestId}`.
    SessionEcho(Carried),
    /// The holder's tail for request `requestId`: `{requestId, tail}`,
    /// `tail` a list of packets' data, or `null` when it cannot say.
    SessionTail(Carried),
}

/// Why a value from the host could not be sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The JSON text is not JSON, or a placeholder points nowhere.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// A request or answer of a type this protocol does not have.
    #[error("unsupported {0}")]
    Unsupported(String),
    /// The bus refused or could not answer.
    #[error("the cluster bus: {0}")]
    Bus(String),
}

impl From<DecodeError> for LinkError {
    fn from(e: DecodeError) -> LinkError {
        LinkError::Invalid(e.to_string())
    }
}

/// One report of a broadcast with acks: a node's count of sockets
/// reached (`{"clientCount": n}`), or one socket's answer
/// (`{"packet": value}`), with attachments.
pub type AckReport = (String, Vec<Bytes>);

/// A node of the cluster whose sockets the host keeps: a socket.io adapter
/// or python-socketio manager of another runtime joins the cluster through
/// it. Cheap to clone; closing the bus ends it.
#[derive(Clone, Debug)]
pub struct ClusterLink {
    pub(super) cluster: Arc<Cluster>,
    /// Sessions asked of and given to other nodes.
    pub(super) sessions: Arc<Sessions>,
    /// The namespaces this node serves (the sharded protocol's heartbeats
    /// name them).
    namespaces: Arc<Mutex<HashSet<String>>>,
    /// Namespaces whose remote broadcasts the core writes itself.
    direct: Arc<Direct>,
}

impl ClusterLink {
    /// Joins the cluster `bus` connects to (`inbound`: the bus's receiver
    /// for this node). `on_event` gets what other nodes send, in order,
    /// on a tokio task. Needs a tokio runtime.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::Arc;
    /// use tidewire::bus::MemoryBus;
    /// use tidewire::cluster::{ClusterConfig, ClusterLink};
    /// let bus = MemoryBus::new();
    /// let mut links = Vec::new();
    /// for _ in 0..2 {
    ///     let (node, inbound) = bus.node(1024);
    ///     links.push(ClusterLink::join(Arc::new(node), inbound, ClusterConfig::default(), |_| {}));
    /// }
    /// links[0].add_namespace("/").await.unwrap();
    /// links[1].add_namespace("/").await.unwrap();
    /// assert_eq!(links[0].server_count("/").await.unwrap(), 2);
    /// # }
    /// ```
    pub fn join(
        bus: Arc<dyn Bus>,
        inbound: mpsc::Receiver<BusMessage>,
        config: ClusterConfig,
        on_event: impl Fn(LinkEvent) + Send + Sync + 'static,
    ) -> ClusterLink {
        Self::start(bus, inbound, config, Host { on_event: Box::new(on_event), queue: None })
    }

    /// Joins the cluster as [`join`](Self::join) does, for a host that
    /// applies what other nodes send on its own event loop: the events
    /// wait in the returned queue, and `wake` is called when the first of
    /// a batch arrives. With this queue the core can tell when the host
    /// has nothing left to apply, and deliver broadcasts itself meanwhile
    /// ([`deliver_directly`](Self::deliver_directly)).
    pub fn join_queued(
        bus: Arc<dyn Bus>,
        inbound: mpsc::Receiver<BusMessage>,
        config: ClusterConfig,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> (ClusterLink, Arc<LinkQueue>) {
        let queue = Arc::new(LinkQueue::new(wake));
        let pushed = queue.clone();
        let host = Host { on_event: Box::new(move |e| pushed.push(e)), queue: Some(queue.clone()) };
        (Self::start(bus, inbound, config, host), queue)
    }

    fn start(bus: Arc<dyn Bus>, inbound: mpsc::Receiver<BusMessage>, config: ClusterConfig, host: Host) -> ClusterLink {
        let uid = crate::engine::new_id();
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        // No recovery channels: the host's engine keeps its sessions; and
        // the forward channel is never subscribed (no poll is forwarded to
        // a link).
        let cluster =
            Arc::new(Cluster::new(bus, uid.as_str().into(), config, [String::new(), String::new()], interest_tx));
        let namespaces: Arc<Mutex<HashSet<String>>> = Arc::default();
        let sessions = Arc::new(Sessions::new(&cluster.config.prefix, &uid));
        let direct: Arc<Direct> = Arc::default();
        tokio::spawn(interest::interest_task(Arc::downgrade(&cluster), interest_rx));
        tokio::spawn(inbound_task(
            Arc::downgrade(&cluster),
            sessions.clone(),
            namespaces.clone(),
            inbound,
            host,
            direct.clone(),
        ));
        if matches!(cluster.config.protocol, Protocol::Sharded(_)) {
            tokio::spawn(heartbeat_task(Arc::downgrade(&cluster), namespaces.clone()));
        }
        ClusterLink { cluster, sessions, namespaces, direct }
    }

    /// Broadcasts of other nodes to namespace `nsp` are written by the core
    /// to the sessions `fanout` reaches, without the host, whenever the
    /// host has applied everything else other nodes sent (only a link of
    /// [`join_queued`](Self::join_queued) knows that). The host routes a
    /// namespace only while such a broadcast needs nothing of it: the
    /// fan-out mirrors its rooms and reaches every socket it has there,
    /// and nothing of the host must see the packet (no log for connection
    /// state recovery, no per-socket hooks). `None` gives them back to the
    /// host; once that returns, no broadcast is being written past it.
    pub fn deliver_directly(&self, nsp: &str, fanout: Option<Arc<Fanout>>) {
        self.direct.route(nsp, fanout);
    }

    /// This node's counters.
    pub fn stats(&self) -> &ClusterStats {
        &self.cluster.stats
    }

    /// This node's uid on the wire.
    pub fn uid(&self) -> &str {
        self.cluster.uid()
    }

    /// Listens on namespace `nsp`'s channels; resolves once the bus
    /// confirmed.
    ///
    /// # Errors
    /// [`LinkError::Bus`].
    pub async fn add_namespace(&self, nsp: &str) -> Result<(), LinkError> {
        self.cluster.ensure_subscribed(nsp).await.map_err(|e| LinkError::Bus(e.to_string()))?;
        self.sessions.subscribe(&self.cluster).await?;
        self.cluster.watch(nsp);
        if lock(&self.namespaces).insert(nsp.to_owned()) {
            // Official sharded nodes count the nodes that beat.
            beat(&self.cluster, nsp, Body::InitialHeartbeat);
        }
        Ok(())
    }

    /// Stops listening on namespace `nsp`'s channels.
    pub fn remove_namespace(&self, nsp: &str) {
        if lock(&self.namespaces).remove(nsp) {
            beat(&self.cluster, nsp, Body::AdapterClose);
        }
        self.cluster.unwatch(nsp);
    }

    /// Rooms of `nsp` got their first member here (`created`) or lost
    /// their last (`deleted`): their channels are (un)subscribed, in
    /// batches.
    pub fn rooms_changed(&self, nsp: &str, created: &[String], deleted: &[String]) {
        let changes: Vec<RoomChange> = created
            .iter()
            .map(|r| RoomChange::Created(Room::from(r.as_str())))
            .chain(deleted.iter().map(|r| RoomChange::Deleted(Room::from(r.as_str()))))
            .collect();
        self.cluster.rooms_changed(nsp, &changes);
    }

    /// Resolves once the channels of `rooms` are subscribed and confirmed
    /// (for at most the request timeout), so that a broadcast another node
    /// sends from then on reaches them.
    pub async fn listen(&self, nsp: &str, rooms: &[String]) {
        let rooms: Vec<Room> = rooms.iter().map(|r| Room::from(r.as_str())).collect();
        self.cluster.listen(nsp, &rooms).await;
    }

    /// Publishes a broadcast for the other nodes: `json` is
    /// `{packet: {data, id?}, opts: {rooms, except, flags}}`.
    ///
    /// # Errors
    /// [`LinkError::Invalid`], [`LinkError::Bus`].
    pub fn broadcast(&self, nsp: &str, json: &str, attachments: &[Bytes]) -> Result<(), LinkError> {
        let value = parse(json, attachments)?;
        let mut packet = classic::Packet::event(nsp, array(value.get("packet").and_then(|p| p.get("data")))?);
        packet.id = value.get("packet").and_then(|p| p.get("id")).and_then(Data::as_u64);
        let opts = broadcast_opts(value.get("opts"))?;
        self.cluster.publish_packet(packet, opts).map_err(|e| LinkError::Bus(e.to_string()))
    }

    /// Publishes a request that gets no answer: REMOTE_JOIN (2) and
    /// REMOTE_LEAVE (3) `{type, opts, rooms}`, REMOTE_DISCONNECT (4)
    /// `{type, opts, close}`, SERVER_SIDE_EMIT (6) `{type, data}`.
    ///
    /// # Errors
    /// [`LinkError::Invalid`], [`LinkError::Unsupported`], [`LinkError::Bus`].
    pub fn notify(&self, nsp: &str, json: &str, attachments: &[Bytes]) -> Result<(), LinkError> {
        let value = parse(json, attachments)?;
        let request = self.request_of(&value, None)?;
        if self.cluster.publish_request(nsp, &request) {
            Ok(())
        } else {
            Err(LinkError::Bus("the bus refused the message".to_owned()))
        }
    }

    /// Asks the other nodes and gathers their answers for at most
    /// `timeout` (the request timeout when `None`): SOCKETS (0) `{type,
    /// rooms}`, ALL_ROOMS (1) `{type}`, REMOTE_FETCH (5) `{type, opts}`,
    /// SERVER_SIDE_EMIT with answers (6) `{type, data}`. Returns the
    /// answers as one JSON array (`sockets` for 0 and 5 as
    /// `[{id, handshake, rooms, data}]`, `rooms` for 1, the acked value for
    /// 6), with attachments, and who answered.
    ///
    /// # Errors
    /// [`LinkError::Invalid`], [`LinkError::Unsupported`]. A bus that
    /// cannot be asked is not an error: [`Replies::error`] says so.
    pub async fn request(
        &self,
        nsp: &str,
        json: &str,
        attachments: &[Bytes],
        timeout: Option<Duration>,
    ) -> Result<Gathered<(String, Vec<Bytes>)>, LinkError> {
        let value = parse(json, attachments)?;
        let asked = request_type(&value)?;
        // Checked before asking: the request id is only known then.
        self.request_of(&value, Some(String::new()))?;
        let timeout = timeout.unwrap_or(self.cluster.request_timeout());
        let mut answers: Vec<Data> = Vec::new();
        let inflight = self
            .cluster
            .ask(nsp, |_, request_id| self.request_of(&value, Some(request_id)).expect("checked above"))
            .await;
        let replies = match inflight {
            Ok(inflight) => {
                self.cluster
                    .gather_for(inflight, asked, timeout, |response| answers.extend(answer_data(response)))
                    .await
            }
            Err(e) => Replies::failed(e),
        };
        let (values, attachments) = args_to_json(&answers);
        Ok(Gathered { value: (Value::Array(values).to_string(), attachments), replies })
    }

    /// Publishes a broadcast whose recipients answer (BROADCAST): `json`
    /// as for [`broadcast`](Self::broadcast), `opts.flags.timeout` in ms.
    /// Each node's count and each ack go to `on_report` as they come,
    /// until the timeout. Returns how many other nodes were asked.
    ///
    /// # Errors
    /// [`LinkError::Invalid`]. A bus that cannot be asked is not an
    /// error: nobody is waited for (0).
    pub async fn broadcast_with_ack(
        &self,
        nsp: &str,
        json: &str,
        attachments: &[Bytes],
        on_report: impl Fn(AckReport) + Send + 'static,
    ) -> Result<usize, LinkError> {
        let value = parse(json, attachments)?;
        let data = array(value.get("packet").and_then(|p| p.get("data")))?;
        let opts = broadcast_opts(value.get("opts"))?;
        let timeout = opts.flags.timeout.map_or(self.cluster.request_timeout(), Duration::from_millis);
        let packet = classic::Packet::event(nsp, data);
        let asked = self.cluster.ask(nsp, |uid, request_id| Request::Broadcast { uid, request_id, packet, opts }).await;
        let mut inflight = match asked {
            Ok(inflight) if inflight.expected > 0 => inflight,
            Ok(_) => return Ok(0),
            Err(e) => {
                tracing::warn!(error = %e, "broadcast with acks: other nodes not reachable");
                return Ok(0);
            }
        };
        let nodes = inflight.expected;
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                let answer = tokio::select! {
                    () = &mut deadline => return,
                    answer = inflight.rx.recv() => match answer {
                        Some(answer) => answer,
                        None => return,
                    },
                };
                let report = match answer.interpret(RequestType::Broadcast) {
                    Ok(Response::BroadcastClientCount { client_count, .. }) => {
                        (json!({ "clientCount": client_count }).to_string(), Vec::new())
                    }
                    Ok(Response::BroadcastAck { packet, .. }) => {
                        let value = Data::Map(vec![("packet".to_owned(), packet.unwrap_or(Data::Null))]);
                        let (json, attachments) = value.to_json_with_attachments();
                        (json.to_string(), attachments)
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "broadcast with acks: malformed answer");
                        continue;
                    }
                };
                on_report(report);
            }
        });
        Ok(nodes)
    }

    /// Answers a request of node `requester` (its `uid`): `json` is
    /// `{type, requestId, ...}` with `sockets` (ids for SOCKETS (0),
    /// `{id, handshake, rooms, data}` for REMOTE_FETCH (5)), `rooms`
    /// (ALL_ROOMS, 1), `data` (SERVER_SIDE_EMIT, 6), `clientCount`
    /// (BROADCAST_CLIENT_COUNT, 8), `packet` (BROADCAST_ACK, 9); types 2, 3
    /// and 4 answer the legacy single-socket requests.
    ///
    /// # Errors
    /// [`LinkError::Invalid`], [`LinkError::Unsupported`].
    pub fn respond(
        &self,
        nsp: &str,
        requester: Option<&str>,
        json: &str,
        attachments: &[Bytes],
    ) -> Result<(), LinkError> {
        let value = parse(json, attachments)?;
        let request_id = string(value.get("requestId"), "requestId")?;
        let response = match request_type(&value)? {
            RequestType::Sockets => Response::Sockets { request_id, sockets: strings(value.get("sockets"))? },
            RequestType::AllRooms => Response::AllRooms { request_id, rooms: strings(value.get("rooms"))? },
            RequestType::RemoteFetch => Response::Fetch {
                request_id,
                sockets: match value.get("sockets") {
                    Some(Data::Array(items)) => {
                        items.iter().cloned().map(FetchedSocket::read).collect::<Result<_, _>>()?
                    }
                    _ => return Err(LinkError::Invalid("sockets: expected an array".to_owned())),
                },
            },
            RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect => {
                Response::Done { request_id }
            }
            RequestType::ServerSideEmit => Response::ServerSideEmit { request_id, data: value.get("data").cloned() },
            RequestType::BroadcastClientCount => Response::BroadcastClientCount {
                request_id,
                client_count: value.get("clientCount").and_then(Data::as_u64).unwrap_or(0),
            },
            RequestType::BroadcastAck | RequestType::Broadcast => {
                Response::BroadcastAck { request_id, packet: value.get("packet").cloned() }
            }
        };
        self.cluster.answer(nsp, requester, &response);
        Ok(())
    }

    /// How many nodes serve `nsp`, this one included (the bus's count of
    /// the namespace's request channel subscribers).
    ///
    /// # Errors
    /// [`LinkError::Bus`].
    pub async fn server_count(&self, nsp: &str) -> Result<usize, LinkError> {
        self.cluster.node_count(nsp).await.map_err(|e| LinkError::Bus(e.to_string()))
    }

    /// A request of this node from the host's JSON.
    fn request_of(&self, value: &Data, request_id: Option<String>) -> Result<Request, LinkError> {
        let uid = self.uid().to_owned();
        let opts = || room_opts(value.get("opts"));
        Ok(match request_type(value)? {
            RequestType::Sockets => Request::Sockets {
                uid: Some(uid),
                request_id: required(request_id, "SOCKETS")?,
                rooms: strings(value.get("rooms"))?,
            },
            RequestType::AllRooms => Request::AllRooms { uid, request_id: required(request_id, "ALL_ROOMS")? },
            RequestType::RemoteJoin => Request::RemoteJoin { uid, opts: opts()?, rooms: strings(value.get("rooms"))? },
            RequestType::RemoteLeave => {
                Request::RemoteLeave { uid, opts: opts()?, rooms: strings(value.get("rooms"))? }
            }
            RequestType::RemoteDisconnect => Request::RemoteDisconnect {
                uid,
                opts: opts()?,
                close: matches!(value.get("close"), Some(Data::Bool(true))),
            },
            RequestType::RemoteFetch => {
                Request::RemoteFetch { uid, request_id: required(request_id, "REMOTE_FETCH")?, opts: opts()? }
            }
            RequestType::ServerSideEmit => Request::ServerSideEmit { uid, request_id, data: array(value.get("data"))? },
            other => return Err(LinkError::Unsupported(format!("request type {}", other.code()))),
        })
    }
}

fn required(request_id: Option<String>, what: &str) -> Result<String, LinkError> {
    request_id.ok_or_else(|| LinkError::Unsupported(format!("{what} without answers")))
}

/// The host's JSON text with its placeholders resolved.
pub(super) fn parse(json: &str, attachments: &[Bytes]) -> Result<Data, LinkError> {
    let value: Value = serde_json::from_str(json).map_err(|e| LinkError::Invalid(e.to_string()))?;
    Data::from_json_with_attachments(&value, attachments).map_err(|e| LinkError::Invalid(e.to_string()))
}

fn request_type(value: &Data) -> Result<RequestType, LinkError> {
    value
        .get("type")
        .and_then(Data::as_u64)
        .and_then(RequestType::from_code)
        .ok_or_else(|| LinkError::Invalid("type: expected a request type".to_owned()))
}

fn string(value: Option<&Data>, what: &str) -> Result<String, LinkError> {
    value
        .and_then(Data::as_str)
        .map(str::to_owned)
        .ok_or_else(|| LinkError::Invalid(format!("{what}: expected a string")))
}

fn array(value: Option<&Data>) -> Result<Vec<Data>, LinkError> {
    match value {
        Some(Data::Array(items)) => Ok(items.clone()),
        _ => Err(LinkError::Invalid("data: expected an array".to_owned())),
    }
}

/// Room names; numbers are rooms too (socket.io accepts `to(42)`).
fn strings(value: Option<&Data>) -> Result<Vec<String>, LinkError> {
    match value {
        None | Some(Data::Null) => Ok(Vec::new()),
        Some(Data::Array(items)) => items
            .iter()
            .map(|d| match d {
                Data::Str(s) => Ok(s.clone()),
                Data::Int(_) | Data::UInt(_) | Data::Float(_) => Ok(d.to_json().to_string()),
                _ => Err(LinkError::Invalid("rooms: expected strings".to_owned())),
            })
            .collect(),
        Some(_) => Err(LinkError::Invalid("rooms: expected an array".to_owned())),
    }
}

fn room_opts(value: Option<&Data>) -> Result<RoomOpts, LinkError> {
    Ok(RoomOpts {
        rooms: strings(value.and_then(|v| v.get("rooms")))?,
        except: strings(value.and_then(|v| v.get("except")))?,
    })
}

fn broadcast_opts(value: Option<&Data>) -> Result<BroadcastOpts, LinkError> {
    let RoomOpts { rooms, except } = room_opts(value)?;
    let flags = value.and_then(|v| v.get("flags"));
    let flag = |key: &str| match flags.and_then(|f| f.get(key)) {
        Some(Data::Bool(b)) => Some(*b),
        _ => None,
    };
    let flags = Flags {
        volatile: flag("volatile"),
        compress: flag("compress"),
        local: None,
        broadcast: flag("broadcast"),
        binary: flag("binary"),
        timeout: flags.and_then(|f| f.get("timeout")).and_then(Data::as_f64).map(|t| t.max(0.0) as u64),
        expect_single_response: flag("expectSingleResponse"),
    };
    Ok(BroadcastOpts { rooms, except, flags })
}

fn strs(items: &[String]) -> Data {
    Data::Array(items.iter().cloned().map(Data::Str).collect())
}

fn opts_data(rooms: &[String], except: &[String]) -> Data {
    Data::Map(vec![("rooms".to_owned(), strs(rooms)), ("except".to_owned(), strs(except))])
}

fn flags_data(flags: &Flags) -> Data {
    let bools = [
        ("volatile", flags.volatile),
        ("compress", flags.compress),
        ("local", flags.local),
        ("broadcast", flags.broadcast),
        ("binary", flags.binary),
    ];
    let mut entries: Vec<(String, Data)> =
        bools.iter().filter_map(|(k, v)| Some(((*k).to_owned(), Data::Bool((*v)?)))).collect();
    if let Some(t) = flags.timeout {
        entries.push(("timeout".to_owned(), Data::UInt(t)));
    }
    if let Some(b) = flags.expect_single_response {
        entries.push(("expectSingleResponse".to_owned(), Data::Bool(b)));
    }
    Data::Map(entries)
}

fn broadcast_opts_data(opts: &BroadcastOpts) -> Data {
    let Data::Map(mut entries) = opts_data(&opts.rooms, &opts.except) else { unreachable!() };
    entries.push(("flags".to_owned(), flags_data(&opts.flags)));
    Data::Map(entries)
}

fn packet_data(packet: &classic::Packet) -> Data {
    let mut entries = vec![
        ("type".to_owned(), Data::UInt(u64::from(packet.kind))),
        ("nsp".to_owned(), Data::Str(packet.nsp.clone())),
        ("data".to_owned(), Data::Array(packet.data.clone())),
    ];
    if let Some(id) = packet.id {
        entries.push(("id".to_owned(), Data::UInt(id)));
    }
    Data::Map(entries)
}

/// A request of another node in the classic request's JSON shape.
fn request_data(request: Request) -> Data {
    let mut m: Vec<(String, Data)> = Vec::new();
    let mut put = |k: &str, v: Data| m.push((k.to_owned(), v));
    let kind = match request {
        Request::Sockets { uid, request_id, rooms } => {
            if let Some(uid) = uid {
                put("uid", Data::Str(uid));
            }
            put("requestId", Data::Str(request_id));
            put("rooms", strs(&rooms));
            RequestType::Sockets
        }
        Request::AllRooms { uid, request_id } => {
            put("uid", Data::Str(uid));
            put("requestId", Data::Str(request_id));
            RequestType::AllRooms
        }
        Request::RemoteJoin { uid, opts, rooms } => {
            put("uid", Data::Str(uid));
            put("opts", opts_data(&opts.rooms, &opts.except));
            put("rooms", strs(&rooms));
            RequestType::RemoteJoin
        }
        Request::RemoteLeave { uid, opts, rooms } => {
            put("uid", Data::Str(uid));
            put("opts", opts_data(&opts.rooms, &opts.except));
            put("rooms", strs(&rooms));
            RequestType::RemoteLeave
        }
        Request::RemoteDisconnect { uid, opts, close } => {
            put("uid", Data::Str(uid));
            put("opts", opts_data(&opts.rooms, &opts.except));
            put("close", Data::Bool(close));
            RequestType::RemoteDisconnect
        }
        Request::LegacyRemoteJoin { uid, request_id, sid, room } => {
            legacy(&mut put, uid, request_id, sid);
            put("room", Data::Str(room));
            RequestType::RemoteJoin
        }
        Request::LegacyRemoteLeave { uid, request_id, sid, room } => {
            legacy(&mut put, uid, request_id, sid);
            put("room", Data::Str(room));
            RequestType::RemoteLeave
        }
        Request::LegacyRemoteDisconnect { uid, request_id, sid, close } => {
            legacy(&mut put, uid, request_id, sid);
            put("close", Data::Bool(close));
            RequestType::RemoteDisconnect
        }
        Request::RemoteFetch { uid, request_id, opts } => {
            put("uid", Data::Str(uid));
            put("requestId", Data::Str(request_id));
            put("opts", opts_data(&opts.rooms, &opts.except));
            RequestType::RemoteFetch
        }
        Request::ServerSideEmit { uid, request_id, data } => {
            put("uid", Data::Str(uid));
            if let Some(id) = request_id {
                put("requestId", Data::Str(id));
            }
            put("data", Data::Array(data));
            RequestType::ServerSideEmit
        }
        Request::Broadcast { uid, request_id, packet, opts } => {
            put("uid", Data::Str(uid));
            put("requestId", Data::Str(request_id));
            put("packet", packet_data(&packet));
            put("opts", broadcast_opts_data(&opts));
            RequestType::Broadcast
        }
    };
    m.push(("type".to_owned(), Data::UInt(u64::from(kind.code()))));
    Data::Map(m)
}

fn legacy(put: &mut impl FnMut(&str, Data), uid: Option<String>, request_id: String, sid: String) {
    if let Some(uid) = uid {
        put("uid", Data::Str(uid));
    }
    put("requestId", Data::Str(request_id));
    put("sid", Data::Str(sid));
}

/// The values an answer contributes to [`ClusterLink::request`]'s array.
fn answer_data(response: Response) -> Vec<Data> {
    match response {
        Response::Sockets { sockets, .. } => sockets.into_iter().map(Data::Str).collect(),
        Response::AllRooms { rooms, .. } => rooms.into_iter().map(Data::Str).collect(),
        Response::Fetch { sockets, .. } => sockets.into_iter().map(fetched_data).collect(),
        Response::ServerSideEmit { data, .. } => vec![data.unwrap_or(Data::Null)],
        _ => Vec::new(),
    }
}

fn fetched_data(socket: FetchedSocket) -> Data {
    let h = socket.handshake;
    let mut handshake = vec![
        ("headers".to_owned(), h.headers),
        ("time".to_owned(), Data::Str(h.time)),
        ("address".to_owned(), h.address.map_or(Data::Null, Data::Str)),
        ("xdomain".to_owned(), Data::Bool(h.xdomain)),
        ("secure".to_owned(), Data::Bool(h.secure)),
        ("issued".to_owned(), Data::Int(h.issued)),
        ("url".to_owned(), h.url.map_or(Data::Null, Data::Str)),
        ("query".to_owned(), h.query),
        ("auth".to_owned(), h.auth),
    ];
    handshake.extend(h.extra);
    let mut entries = vec![
        ("id".to_owned(), Data::Str(socket.id)),
        ("handshake".to_owned(), Data::Map(handshake)),
        ("rooms".to_owned(), strs(&socket.rooms)),
    ];
    if let Some(data) = socket.data {
        entries.push(("data".to_owned(), data));
    }
    Data::Map(entries)
}

/// A message of the sharded protocol's node bookkeeping (heartbeats, close)
/// for namespace `nsp`; nothing in the classic protocol.
fn beat(cluster: &Cluster, nsp: &str, body: Body) {
    if let Protocol::Sharded(mode) = cluster.config.protocol {
        let message = Message { uid: cluster.uid.to_string(), nsp: nsp.to_owned(), body };
        let channel = message.channel(&cluster.config.prefix, mode, None);
        let _ = cluster.publish(&channel, message.encode());
    }
}

/// The sharded protocol's heartbeat, per namespace, as official nodes send
/// it (they count the nodes that beat, and forget one silent for 10 s).
async fn heartbeat_task(cluster: Weak<Cluster>, namespaces: Arc<Mutex<HashSet<String>>>) {
    let Some(interval) = cluster.upgrade().map(|c| c.config.heartbeat_interval) else { return };
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(cluster) = cluster.upgrade() else { return };
        let list: Vec<String> = lock(&namespaces).iter().cloned().collect();
        for nsp in list {
            beat(&cluster, &nsp, Body::Heartbeat);
        }
    }
}

/// Another sharded node started: it learns of this one at once (as
/// official nodes answer an initial heartbeat), for the namespaces this
/// node still serves (one it left must not be counted again).
fn answer_initial_heartbeat(cluster: &Cluster, namespaces: &Mutex<HashSet<String>>, payload: &[u8]) {
    if !matches!(cluster.config.protocol, Protocol::Sharded(_)) {
        return;
    }
    if let Ok(Message { uid, nsp, body: Body::InitialHeartbeat }) = Message::decode(payload)
        && uid != *cluster.uid
        && lock(namespaces).contains(&nsp)
    {
        beat(cluster, &nsp, Body::Heartbeat);
    }
}

/// Where what other nodes send goes.
struct Host {
    on_event: Box<dyn Fn(LinkEvent) + Send + Sync>,
    /// The queue `on_event` pushes to, for a host of `join_queued`.
    queue: Option<Arc<LinkQueue>>,
}

/// Hands what the bus delivers to the host, and answers to their requests.
async fn inbound_task(
    cluster: Weak<Cluster>,
    sessions: Arc<Sessions>,
    namespaces: Arc<Mutex<HashSet<String>>>,
    mut inbound: mpsc::Receiver<BusMessage>,
    host: Host,
    direct: Arc<Direct>,
) {
    let on_event = &host.on_event;
    while let Some(message) = inbound.recv().await {
        let Some(cluster) = cluster.upgrade() else { return };
        add(&cluster.stats.received);
        if sessions.owns(&message.channel) {
            sessions.on_message(&cluster, &message.payload, on_event);
            continue;
        }
        if message.channel == cluster.nodes_channel {
            if let Ok(beat) = serde_json::from_slice::<Beat>(&message.payload) {
                cluster.seen(&beat.uid);
            }
            continue;
        }
        match cluster.codec.decode(&cluster.uid, &message.channel, &message.payload) {
            Ok(Inbound::Broadcast { uid, nsp, data, opts }) => {
                if direct.deliver(host.queue.as_deref(), &nsp, &data, &opts, &cluster.stats.delivered_directly) {
                    continue;
                }
                let packet = classic::Packet::event(nsp.as_str(), data);
                let value = Data::Map(vec![
                    ("packet".to_owned(), packet_data(&packet)),
                    ("opts".to_owned(), broadcast_opts_data(&opts)),
                    ("uid".to_owned(), Data::Str(uid)),
                ]);
                on_event(LinkEvent::Broadcast(Carried::new(&nsp, &value)));
            }
            Ok(Inbound::Request { nsp, request }) => {
                on_event(LinkEvent::Request(Carried::new(&nsp, &request_data(request))));
            }
            Ok(Inbound::Answer { request_id, answer, .. }) => {
                let tx = lock(&cluster.pending).get(&request_id).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(answer);
                }
            }
            Ok(Inbound::Ignored) => answer_initial_heartbeat(&cluster, &namespaces, &message.payload),
            Err(e) => cluster.malformed(e.0, &e.1),
        }
    }
}

#[cfg(test)]
#[path = "embed_tests.rs"]
mod tests;
