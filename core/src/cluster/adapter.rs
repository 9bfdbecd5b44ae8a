//! The hub's adapter, implemented by the cluster: each call of the hub in
//! its own terms, as requests in the cluster's protocol.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::Cluster;
use super::convert::{event_data, payload_of, remote_socket, room_opts};
use crate::cluster::wire::classic::{self, BroadcastOpts, Flags, Request, RequestType, Response};
use crate::cluster::wire::notepack::Data;
use crate::hub::adapter::{Adapter, AdapterFuture, RemoteAck, RemoteAcks, RemoteOp, RemoteSession, Taken};
use crate::hub::presence::Delta;
use crate::hub::{ClusterError, Gathered, Hub, Namespace, RemoteSocket, Replies, RoomChange};
use crate::limits::ConnectionRefused;
use crate::protocol::socketio::Payload;
use crate::rooms::{Room, Target};

/// The cluster as the hub's adapter.
pub(crate) struct Handle(pub(crate) Arc<Cluster>);

impl Adapter for Handle {
    fn clustered(&self) -> bool {
        true
    }

    fn broadcast(&self, ns: &Namespace, target: &Target, volatile: bool, event: &str, args: &Payload) {
        self.0.publish_broadcast(ns, target, volatile, event, args);
    }

    fn broadcast_with_acks<'a>(
        &'a self,
        ns: &'a Namespace,
        target: &'a Target,
        volatile: bool,
        timeout: Duration,
        event: &'a str,
        args: &'a Payload,
    ) -> AdapterFuture<'a, Option<RemoteAcks>> {
        Box::pin(async move {
            let data = event_data(event, args)?;
            let nsp = ns.name().to_owned();
            let opts = BroadcastOpts {
                rooms: target.rooms.iter().map(|r| r.to_string()).collect(),
                except: target.except.iter().map(|r| r.to_string()).collect(),
                flags: Flags {
                    volatile: volatile.then_some(true),
                    timeout: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
                    ..Flags::default()
                },
            };
            let asked = self
                .0
                .ask(&nsp, |uid, request_id| Request::Broadcast {
                    uid,
                    request_id,
                    packet: classic::Packet::event(nsp.clone(), data),
                    opts,
                })
                .await;
            let mut inflight = match asked {
                Ok(inflight) if inflight.expected > 0 => inflight,
                Ok(_) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "broadcast with acks: other nodes not reachable");
                    return None;
                }
            };
            let nodes = inflight.expected;
            let (tx, rx) = mpsc::unbounded_channel();
            // Forwards the answers in the hub's terms until the hub stops
            // waiting (then the request id is forgotten).
            tokio::spawn(async move {
                loop {
                    let answer = tokio::select! {
                        () = tx.closed() => return,
                        answer = inflight.rx.recv() => match answer {
                            Some(answer) => answer,
                            None => return,
                        },
                    };
                    let report = match answer.interpret(RequestType::Broadcast) {
                        Ok(Response::BroadcastClientCount { client_count, .. }) => {
                            RemoteAck::Count(usize::try_from(client_count).unwrap_or(usize::MAX))
                        }
                        Ok(Response::BroadcastAck { packet, .. }) => RemoteAck::Answer(payload_of(packet)),
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::debug!(error = %e, "broadcast with acks: malformed answer");
                            continue;
                        }
                    };
                    if tx.send(report).is_err() {
                        return;
                    }
                }
            });
            Some(RemoteAcks { nodes, rx })
        })
    }

    fn fetch_sockets<'a>(
        &'a self,
        ns: &'a Namespace,
        target: &'a Target,
    ) -> AdapterFuture<'a, Gathered<Vec<RemoteSocket>>> {
        Box::pin(async move {
            let cluster = &self.0;
            let opts = room_opts(target);
            let mut sockets = Vec::new();
            let replies =
                match cluster.ask(ns.name(), |uid, request_id| Request::RemoteFetch { uid, request_id, opts }).await {
                    Ok(inflight) => {
                        cluster
                            .gather(inflight, RequestType::RemoteFetch, |response| {
                                if let Response::Fetch { sockets: remote, .. } = response {
                                    sockets.extend(remote.into_iter().map(|s| remote_socket(ns, s)));
                                }
                            })
                            .await
                    }
                    Err(e) => Replies::failed(e),
                };
            Gathered { value: sockets, replies }
        })
    }

    fn apply(&self, ns: &Namespace, target: &Target, op: RemoteOp) {
        let uid = self.0.uid().to_owned();
        let opts = room_opts(target);
        let request = match op {
            RemoteOp::Join(rooms) => {
                Request::RemoteJoin { uid, opts, rooms: rooms.iter().map(|r| r.to_string()).collect() }
            }
            RemoteOp::Leave(room) => Request::RemoteLeave { uid, opts, rooms: vec![room.to_string()] },
            RemoteOp::Disconnect { close } => Request::RemoteDisconnect { uid, opts, close },
        };
        self.0.publish_request(ns.name(), &request);
    }

    fn server_side_emit(&self, ns: &Namespace, event: &str, args: &Payload) -> Result<(), ClusterError> {
        let data = event_data(event, args).unwrap_or_else(|| vec![Data::Str(event.to_owned())]);
        let request = Request::ServerSideEmit { uid: self.0.uid().to_owned(), request_id: None, data };
        if self.0.publish_request(ns.name(), &request) {
            Ok(())
        } else {
            Err(ClusterError::Bus("the bus refused the message".to_owned()))
        }
    }

    fn server_side_emit_with_ack<'a>(
        &'a self,
        ns: &'a Namespace,
        event: &'a str,
        args: &'a Payload,
        timeout: Option<Duration>,
    ) -> AdapterFuture<'a, Gathered<Vec<Value>>> {
        Box::pin(async move {
            let cluster = &self.0;
            let mut answers = Vec::new();
            let Some(data) = event_data(event, args) else { return Gathered::default() };
            let inflight = cluster
                .ask(ns.name(), |uid, request_id| Request::ServerSideEmit { uid, request_id: Some(request_id), data })
                .await;
            let replies = match inflight {
                Ok(inflight) => {
                    let timeout = timeout.unwrap_or(cluster.request_timeout());
                    cluster
                        .gather_for(inflight, RequestType::ServerSideEmit, timeout, |r| {
                            if let Response::ServerSideEmit { data, .. } = r {
                                answers.push(data.as_ref().map_or(Value::Null, Data::to_json));
                            }
                        })
                        .await
                }
                Err(e) => Replies::failed(e),
            };
            Gathered { value: answers, replies }
        })
    }

    fn server_count<'a>(&'a self, ns: &'a Namespace) -> AdapterFuture<'a, Result<usize, ClusterError>> {
        Box::pin(async move { Ok(self.0.node_count(ns.name()).await?) })
    }

    fn remote_rooms<'a>(&'a self, ns: &'a Namespace) -> AdapterFuture<'a, Gathered<Vec<String>>> {
        Box::pin(async move {
            let cluster = &self.0;
            let mut rooms: HashSet<String> = HashSet::new();
            let replies = match cluster.ask(ns.name(), |uid, request_id| Request::AllRooms { uid, request_id }).await {
                Ok(inflight) => {
                    cluster
                        .gather(inflight, RequestType::AllRooms, |r| {
                            if let Response::AllRooms { rooms: theirs, .. } = r {
                                rooms.extend(theirs);
                            }
                        })
                        .await
                }
                Err(e) => Replies::failed(e),
            };
            Gathered { value: rooms.into_iter().collect(), replies }
        })
    }

    fn namespace_added(&self, nsp: &str) {
        self.0.watch(nsp);
    }

    fn namespace_removed(&self, nsp: &str) {
        self.0.unwatch(nsp);
    }

    fn rooms_changed(&self, nsp: &str, changes: &[RoomChange]) {
        self.0.rooms_changed(nsp, changes);
    }

    fn listen<'a>(&'a self, nsp: &'a str, rooms: &'a [Room]) -> AdapterFuture<'a, ()> {
        Box::pin(self.0.listen(nsp, rooms))
    }

    fn presence_changed(&self, nsp: &str, deltas: Vec<Delta>) {
        self.0.publish_presence(nsp, deltas);
    }

    fn presence_enabled(&self) {
        self.0.request_presence_sync(None);
    }

    fn has_caps(&self) -> bool {
        self.0.has_caps()
    }

    fn acquire_caps<'a>(
        &'a self,
        user: Option<&'a str>,
        ip: IpAddr,
        held: &'a mut Vec<String>,
    ) -> AdapterFuture<'a, Result<(), ConnectionRefused>> {
        Box::pin(self.0.acquire_caps(user, ip, held))
    }

    fn release_caps(&self, held: Vec<String>) {
        self.0.release_caps(held);
    }

    fn has_user_rate(&self) -> bool {
        self.0.has_user_rate()
    }

    fn check_user_rate<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, Option<Duration>> {
        Box::pin(self.0.check_user_rate(user))
    }

    fn retain_session(&self, nsp: &str, pid: &str, rooms: Vec<Room>, window: Duration) {
        self.0.retain_session(nsp, pid, rooms, window);
    }

    fn release_session(&self, hub: &Hub, pid: &str) {
        self.0.release_session(hub, pid);
    }

    fn take_remote_session<'a>(
        &'a self,
        nsp: &'a str,
        pid: &'a str,
        user: Option<&'a str>,
        offset: Option<&'a str>,
    ) -> AdapterFuture<'a, RemoteSession> {
        Box::pin(self.0.take_remote_session(nsp, pid, user, offset))
    }

    fn finish_remote_session<'a>(&'a self, ns: &'a Namespace, taken: &'a mut Taken) -> AdapterFuture<'a, bool> {
        Box::pin(self.0.finish_remote_session(ns, taken))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
