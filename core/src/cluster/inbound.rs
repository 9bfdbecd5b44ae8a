//! What the other nodes send: broadcasts to deliver here, requests to
//! apply or answer, answers to this node's requests.

use std::sync::Arc;
use std::time::Duration;

use super::codec::Inbound;
use super::config::add;
use super::convert::{event_of, fetched, first_arg, target_of};
use super::{Beat, Cluster};
use crate::bus::BusMessage;
use crate::cluster::wire::classic::{BroadcastOpts, Request, Response, RoomOpts};
use crate::cluster::wire::notepack::Data;
use crate::hub::{BroadcastOperator, Hub, Namespace, ServerAck, lock};
use crate::protocol::socketio::Payload;

impl Cluster {
    pub(super) fn on_message(self: &Arc<Self>, hub: &Hub, message: &BusMessage) {
        add(&self.stats.received);
        if message.channel == self.nodes_channel {
            match serde_json::from_slice::<Beat>(&message.payload) {
                Ok(beat) if beat.uid == *self.uid => {}
                Ok(beat) if beat.bye => {
                    lock(&self.peers).remove(&beat.uid);
                    self.forget_presence_of(hub, &beat.uid);
                }
                Ok(beat) => {
                    let newcomer = !lock(&self.peers).contains_key(&beat.uid);
                    self.seen(&beat.uid);
                    if newcomer {
                        // So that a node that just joined knows this one at once.
                        self.beat(self.own_presence_digest(hub), false);
                    }
                    self.check_presence_digest(hub, &beat.uid, beat.presence);
                }
                Err(_) => add(&self.stats.malformed),
            }
            return;
        }
        if message.channel == self.presence_channel {
            return self.on_presence_message(hub, &message.payload);
        }
        #[cfg(feature = "server")]
        if message.channel == self.forward.channel {
            return self.on_forward_message(hub, &message.payload);
        }
        if self.recovery_channels.contains(&message.channel) {
            return self.on_recovery_message(hub, &message.payload);
        }
        match self.codec.decode(&self.uid, &message.channel, &message.payload) {
            Ok(Inbound::Broadcast { uid, nsp, data, opts }) => {
                if let Some(ns) = hub.namespace(&nsp) {
                    self.deliver(ns, &uid, &data, &opts);
                }
            }
            Ok(Inbound::Request { nsp, request }) => {
                if let Some(ns) = hub.namespace(&nsp) {
                    self.handle_request(hub, &ns, request);
                }
            }
            Ok(Inbound::Answer { uid, request_id, answer }) => {
                if let Some(uid) = &uid {
                    self.seen(uid);
                }
                let tx = lock(&self.pending).get(&request_id).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(answer);
                }
            }
            Ok(Inbound::Ignored) => {}
            Err(e) => self.malformed(e.0, &e.1),
        }
    }

    pub(crate) fn malformed(&self, what: &str, error: &dyn std::fmt::Display) {
        add(&self.stats.malformed);
        tracing::debug!(%error, "cluster: malformed {what} ignored");
    }

    /// Delivers another node's broadcast to this node's sockets.
    pub(super) fn deliver(&self, ns: Namespace, uid: &str, data: &[Data], opts: &BroadcastOpts) {
        let Some((event, args)) = event_of(data) else {
            return self.malformed("broadcast", &"no event name");
        };
        let mut op = BroadcastOperator::new(ns, target_of(&opts.rooms, &opts.except)).sent_elsewhere(uid);
        if opts.flags.volatile == Some(true) {
            op = op.volatile();
        }
        op.emit(&event, args);
    }

    /// Applies or answers another node's request.
    pub(super) fn handle_request(self: &Arc<Self>, hub: &Hub, ns: &Namespace, request: Request) {
        let nsp = ns.name();
        let local = |opts: &RoomOpts| BroadcastOperator::new(ns.clone(), target_of(&opts.rooms, &opts.except)).local();
        match request {
            Request::Sockets { uid, request_id, rooms } => {
                let sockets = local(&RoomOpts { rooms, except: Vec::new() }).local_sockets();
                let sockets = sockets.iter().map(|s| s.id().to_owned()).collect();
                self.answer(nsp, uid.as_deref(), &Response::Sockets { request_id, sockets });
            }
            Request::AllRooms { uid, request_id } => {
                let rooms = ns.rooms().iter().map(|r| r.to_string()).collect();
                self.answer(nsp, Some(&uid), &Response::AllRooms { request_id, rooms });
            }
            Request::RemoteJoin { opts, rooms, .. } => local(&opts).sockets_join(rooms),
            Request::RemoteLeave { opts, rooms, .. } => {
                let op = local(&opts);
                for room in rooms {
                    op.sockets_leave(&room);
                }
            }
            Request::RemoteDisconnect { opts, close, .. } => local(&opts).disconnect_sockets(close),
            Request::LegacyRemoteJoin { uid, request_id, sid, room } => {
                if let Some(s) = ns.socket(&sid) {
                    let _ = s.join(room);
                    self.answer(nsp, uid.as_deref(), &Response::Done { request_id });
                }
            }
            Request::LegacyRemoteLeave { uid, request_id, sid, room } => {
                if let Some(s) = ns.socket(&sid) {
                    s.leave(&room);
                    self.answer(nsp, uid.as_deref(), &Response::Done { request_id });
                }
            }
            Request::LegacyRemoteDisconnect { uid, request_id, sid, close } => {
                if let Some(s) = ns.socket(&sid) {
                    s.disconnect(close);
                    self.answer(nsp, uid.as_deref(), &Response::Done { request_id });
                }
            }
            Request::RemoteFetch { uid, request_id, opts } => {
                let sockets = local(&opts).local_sockets().iter().map(fetched).collect();
                self.answer(nsp, Some(&uid), &Response::Fetch { request_id, sockets });
            }
            Request::ServerSideEmit { uid, request_id, data } => self.on_server_event(ns, uid, request_id, &data),
            Request::Broadcast { uid, request_id, packet, opts } => {
                let Some((event, args)) = event_of(&packet.data) else {
                    return self.malformed("request", &"no event name");
                };
                let mut op = local(&RoomOpts { rooms: opts.rooms, except: opts.except });
                if opts.flags.volatile == Some(true) {
                    op = op.volatile();
                }
                let timeout = opts.flags.timeout.map_or_else(|| hub.config().ack_timeout, Duration::from_millis);
                tokio::spawn(answer_acks(self.clone(), op.timeout(timeout), uid, request_id, event, args));
            }
        }
    }

    pub(super) fn on_server_event(
        self: &Arc<Self>,
        ns: &Namespace,
        uid: String,
        request_id: Option<String>,
        data: &[Data],
    ) {
        let Some((event, args)) = event_of(data) else {
            return self.malformed("server-side event", &"no event name");
        };
        let Some(handler) = ns.handlers().server_events.get(&event).cloned() else {
            tracing::debug!(event, "cluster: no handler for a server-side event");
            return;
        };
        let ack = request_id.map(|request_id| {
            let (cluster, nsp) = (self.clone(), ns.name().to_owned());
            ServerAck::new(move |value| {
                let response = Response::ServerSideEmit { request_id, data: Some(Data::from_json(value)) };
                cluster.answer(&nsp, Some(&uid), &response);
            })
        });
        tokio::spawn(handler.call(args, ack));
    }
}

/// Answers a BROADCAST of another node: delivers it here, publishes how
/// many sockets got it, then each of their acks as it comes.
pub(super) async fn answer_acks(
    cluster: Arc<Cluster>,
    op: BroadcastOperator,
    requester: String,
    request_id: String,
    event: String,
    args: Payload,
) {
    let nsp = op.namespace().name().to_owned();
    let mut round = match op.start_ack_round(&event, args) {
        Ok(round) => round,
        Err(e) => {
            tracing::debug!(error = %e, "cluster: a broadcast with acks reached nobody here");
            let count = Response::BroadcastClientCount { request_id, client_count: 0 };
            return cluster.answer(&nsp, Some(&requester), &count);
        }
    };
    let count =
        Response::BroadcastClientCount { request_id: request_id.clone(), client_count: round.expected() as u64 };
    cluster.answer(&nsp, Some(&requester), &count);
    let deadline = tokio::time::sleep(op.flags().timeout.unwrap_or(cluster.config.request_timeout));
    tokio::pin!(deadline);
    while !round.is_complete() {
        tokio::select! {
            () = &mut deadline => break,
            answer = round.next() => match answer {
                Some(Some(payload)) => {
                    let packet = first_arg(&payload);
                    cluster.answer(&nsp, Some(&requester), &Response::BroadcastAck { request_id: request_id.clone(), packet });
                }
                Some(None) => {}
                None => break,
            },
        }
    }
    round.finish();
}
