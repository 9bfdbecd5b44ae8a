//! Requests to the other nodes and their answers: publishing in the
//! cluster's protocol, counting whom to wait for, gathering the answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Cluster;
use super::codec::Answer;
use super::config::add;
use super::convert::event_data;
use crate::bus::BusError;
use crate::cluster::wire::classic::{self, BroadcastOpts, Flags, Request, RequestType, Response};
use crate::hub::{Namespace, Replies, lock};
use crate::protocol::socketio::Payload;
use crate::rooms::Target;

impl Cluster {
    /// Publishes a broadcast for the other nodes.
    pub(crate) fn publish_broadcast(
        &self,
        ns: &Namespace,
        target: &Target,
        volatile: bool,
        event: &str,
        args: &Payload,
    ) {
        let Some(data) = event_data(event, args) else { return };
        let packet = classic::Packet::event(ns.name(), data);
        let opts = BroadcastOpts {
            rooms: target.rooms.iter().map(|r| r.to_string()).collect(),
            except: target.except.iter().map(|r| r.to_string()).collect(),
            flags: Flags { volatile: volatile.then_some(true), ..Flags::default() },
        };
        let _ = self.publish_packet(packet, opts);
    }

    /// Publishes a broadcast packet: on its room's channel where the
    /// protocol has one, unless the room was just asked to be joined
    /// (`joining.rs`).
    pub(crate) fn publish_packet(&self, packet: classic::Packet, opts: BroadcastOpts) -> Result<(), BusError> {
        let own_channel = !self.joining.recent(&packet.nsp, &opts.rooms);
        let (channel, payload) = self.codec.broadcast(&self.uid, packet, opts, own_channel);
        self.publish(&channel, payload)
    }

    /// Publishes a request, when the protocol has it. Returns whether it
    /// went out.
    pub(crate) fn publish_request(&self, nsp: &str, request: &Request) -> bool {
        let Some(payload) = self.codec.request(&self.uid, nsp, request) else { return false };
        match request {
            Request::RemoteJoin { rooms, .. } => self.joining.asked(nsp, rooms, self.request_timeout()),
            Request::LegacyRemoteJoin { room, .. } => {
                self.joining.asked(nsp, std::slice::from_ref(room), self.request_timeout());
            }
            _ => {}
        }
        self.publish(&self.request_channel(nsp), payload).is_ok()
    }

    /// Publishes `response` to the requester `requester`.
    pub(super) fn answer(&self, nsp: &str, requester: Option<&str>, response: &Response) {
        let Some((channel, payload)) = self.codec.response(&self.uid, nsp, requester, response) else { return };
        add(&self.stats.answered);
        let _ = self.publish(&channel, payload);
    }

    pub(super) fn request_id(&self) -> String {
        crate::engine::new_id()
    }

    /// Counts the other nodes of namespace `nsp`, registers a request id
    /// and, when there is anyone to ask, publishes the request `make`
    /// builds with it.
    pub(crate) async fn ask(
        self: &Arc<Self>,
        nsp: &str,
        make: impl FnOnce(String, String) -> Request,
    ) -> Result<Inflight, BusError> {
        self.ensure_subscribed(nsp).await?;
        let count = self.bus.subscriber_count(&self.request_channel(nsp)).await?;
        let request_id = self.request_id();
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(request_id.clone(), tx);
        let mut inflight =
            Inflight { cluster: self.clone(), request_id: request_id.clone(), rx, expected: count.saturating_sub(1) };
        if inflight.expected > 0 {
            let request = make(self.uid.to_string(), request_id);
            let Some(payload) = self.codec.request(&self.uid, nsp, &request) else {
                // Not in this protocol: nobody to wait for.
                inflight.expected = 0;
                return Ok(inflight);
            };
            self.publish(&self.request_channel(nsp), payload)?;
        }
        Ok(inflight)
    }

    /// How many nodes serve `nsp`, this one included.
    pub(crate) async fn node_count(&self, nsp: &str) -> Result<usize, BusError> {
        self.ensure_subscribed(nsp).await?;
        self.bus.subscriber_count(&self.request_channel(nsp)).await
    }

    /// Makes sure this node listens on `nsp`'s channels (so that the count
    /// of subscribers includes it) before it asks anything there.
    pub(super) async fn ensure_subscribed(&self, nsp: &str) -> Result<(), BusError> {
        if lock(&self.ready).contains(nsp) {
            return Ok(());
        }
        self.bus.subscribe(&self.namespace_channels(nsp)).await?;
        lock(&self.ready).insert(nsp.to_owned());
        Ok(())
    }

    /// Gathers the answers to a request of type `asked`, one per node,
    /// for at most the request timeout.
    pub(crate) async fn gather(&self, inflight: Inflight, asked: RequestType, on: impl FnMut(Response)) -> Replies {
        self.gather_for(inflight, asked, self.config.request_timeout, on).await
    }

    /// [`gather`](Self::gather) for at most `timeout`.
    pub(crate) async fn gather_for(
        &self,
        mut inflight: Inflight,
        asked: RequestType,
        timeout: Duration,
        mut on: impl FnMut(Response),
    ) -> Replies {
        let mut replies = Replies { expected: inflight.expected, ..Replies::default() };
        let peers = self.recent_peers();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        while replies.received < replies.expected {
            tokio::select! {
                () = &mut deadline => break,
                raw = inflight.rx.recv() => {
                    let Some(raw) = raw else { break };
                    if let Some(uid) = raw.uid() {
                        // One answer per node: a message the bus delivered
                        // twice (a batch resent after a broken connection)
                        // must not stand for a node that never answered.
                        if replies.nodes.iter().any(|n| n == uid) {
                            continue;
                        }
                        replies.nodes.push(uid.to_owned());
                    }
                    replies.received += 1;
                    match raw.interpret(asked) {
                        Ok(response) => on(response),
                        // The official adapter counts a malformed answer as received too.
                        Err(e) => tracing::debug!(error = %e, "cluster: malformed answer"),
                    }
                }
            }
        }
        self.finish(&mut replies, &peers);
        replies
    }

    /// Fills in who stayed silent, when someone did: the Tidewire nodes
    /// known now or when the request started (`asked`) that did not answer.
    pub(crate) fn finish(&self, replies: &mut Replies, asked: &[String]) {
        if replies.received < replies.expected {
            add(&self.stats.incomplete);
            replies.silent = self.silent(&replies.nodes, asked);
        }
    }
}

/// A request of this node waiting for answers; forgets its id when dropped.
pub(crate) struct Inflight {
    cluster: Arc<Cluster>,
    request_id: String,
    pub(crate) rx: mpsc::UnboundedReceiver<Answer>,
    pub(crate) expected: usize,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        lock(&self.cluster.pending).remove(&self.request_id);
    }
}
