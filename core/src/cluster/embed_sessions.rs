//! Connection-state recovery across the nodes of hosts that keep their own
//! sessions (socket.io's session-aware adapter): a client that comes back
//! to a node that does not hold its session gets it from the node that
//! does, with the packets it missed there, as the hub's cluster does for
//! its own sessions (see `recovery.rs`).
//!
//! The node that lacks the session asks the other links on a channel of
//! their own (official nodes never see it); each host looks in its store
//! and answers, the holder with the session (taken out of its store: one
//! use only), the others with nothing, so an unknown session fails fast.
//! Messages are notepack msgpack maps, so binary packets stay binary.
//!
//! Nothing broadcast during the hand-off falls between the two nodes, nor
//! comes twice, as for the hub's sessions (`recovery.rs`): the holder
//! keeps listening to the session's rooms and logging after its answer
//! (a `handoff` answer names the holder). Once the taker listens to the
//! rooms, it notes where its own log stands and publishes a marker
//! ([`ClusterLink::release_session`]) on the ask channel; its host notes
//! its log again when the marker comes back ([`LinkEvent::SessionEcho`]).
//! The holder answers the marker ([`LinkEvent::SessionReleased`]) with
//! what it logged for the session since its answer, the tail
//! ([`ClusterLink::give_tail`], arriving as [`LinkEvent::SessionTail`]),
//! and stops listening. The client then gets the missed packets, the
//! tail, and from the taker's log: what the taker sent after its marker,
//! and what third nodes sent that came after the marker's echo. The
//! holder's own packets are all in its tail (its tail is published after
//! them, and the taker's log holds none that came after the tail). With
//! one Redis every node sees the bus's messages in one order, so each
//! packet is in exactly one of these parts; with sharded pub/sub the order
//! holds per shard only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Cluster;
use super::embed::{Carried, ClusterLink, LinkError, LinkEvent, parse};
use crate::cluster::wire::notepack::Data;
use crate::hub::lock;

/// A session as its holder's host gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenSession {
    /// JSON text with placeholders.
    pub json: String,
    /// The binary parts.
    pub attachments: Vec<Bytes>,
    /// The question's id.
    pub request_id: String,
    /// The holder, when it keeps logging for the session until this node
    /// releases it ([`ClusterLink::release_session`]); `None` from a
    /// holder that does not (its session is complete as given).
    pub holder: Option<String>,
}

/// What a holder answered: the session (with the holder when it hands
/// off), or nothing.
type Found = Option<(String, Vec<Bytes>, Option<String>)>;

/// The sessions side of a link: its channels and its pending questions.
#[derive(Debug)]
pub(super) struct Sessions {
    ask_channel: String,
    answer_channel: String,
    subscribed: AtomicBool,
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Found>>>,
}

impl Sessions {
    pub(super) fn new(prefix: &str, uid: &str) -> Sessions {
        Sessions {
            ask_channel: format!("{prefix}-tidewire#sessions#"),
            answer_channel: format!("{prefix}-tidewire#sessions#{uid}#"),
            subscribed: AtomicBool::new(false),
            pending: Mutex::default(),
        }
    }

    /// Whether `channel` is one of these.
    pub(super) fn owns(&self, channel: &str) -> bool {
        channel == self.ask_channel || channel == self.answer_channel
    }

    /// Listens on the channels, once.
    pub(super) async fn subscribe(&self, cluster: &Cluster) -> Result<(), LinkError> {
        if self.subscribed.load(Ordering::Acquire) {
            return Ok(());
        }
        let channels = [self.ask_channel.clone(), self.answer_channel.clone()];
        cluster.bus.subscribe(&channels).await.map_err(|e| LinkError::Bus(e.to_string()))?;
        self.subscribed.store(true, Ordering::Release);
        Ok(())
    }

    /// A question of another node (for the host), an answer to this
    /// one's, or a step of a hand-off (marker, tail).
    pub(super) fn on_message(&self, cluster: &Cluster, payload: &[u8], on_event: &dyn Fn(LinkEvent)) {
        let Ok(message) = Data::from_msgpack(payload) else {
            return cluster.malformed("session message", &"not msgpack");
        };
        let text = |k: &str| message.get(k).and_then(Data::as_str).map(str::to_owned);
        let (Some(kind), Some(request_id)) = (text("type"), text("requestId")) else {
            return cluster.malformed("session message", &"no type or request id");
        };
        match kind.as_str() {
            "ask" => {
                let (Some(from), Some(nsp), Some(pid)) = (text("from"), text("nsp"), text("pid")) else { return };
                if from == cluster.uid() {
                    return;
                }
                let offset = message.get("offset").cloned().unwrap_or(Data::Null);
                let question = Data::Map(vec![
                    ("requestId".to_owned(), Data::Str(request_id)),
                    ("from".to_owned(), Data::Str(from)),
                    ("pid".to_owned(), Data::Str(pid)),
                    ("offset".to_owned(), offset),
                ]);
                on_event(LinkEvent::SessionWanted(Carried::new(&nsp, &question)));
            }
            "answer" => {
                let found = match message.get("session") {
                    None | Some(Data::Null) => None,
                    Some(session) => {
                        let (json, attachments) = session.to_json_with_attachments();
                        let handoff = matches!(message.get("handoff"), Some(Data::Bool(true)));
                        Some((json.to_string(), attachments, text("uid").filter(|_| handoff)))
                    }
                };
                let tx = lock(&self.pending).get(&request_id).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(found);
                }
            }
            "release" => {
                let (Some(from), Some(holder), Some(nsp), Some(pid)) =
                    (text("from"), text("holder"), text("nsp"), text("pid"))
                else {
                    return cluster.malformed("session message", &"release without from, holder, nsp or pid");
                };
                let id = ("requestId".to_owned(), Data::Str(request_id));
                if from == cluster.uid() {
                    on_event(LinkEvent::SessionEcho(Carried::new(&nsp, &Data::Map(vec![id]))));
                } else if holder == cluster.uid() {
                    let released =
                        Data::Map(vec![id, ("from".to_owned(), Data::Str(from)), ("pid".to_owned(), Data::Str(pid))]);
                    on_event(LinkEvent::SessionReleased(Carried::new(&nsp, &released)));
                }
            }
            "tail" => {
                let Some(nsp) = text("nsp") else {
                    return cluster.malformed("session message", &"tail without nsp");
                };
                let tail = message.get("tail").cloned().unwrap_or(Data::Null);
                let value = Data::Map(vec![("requestId".to_owned(), Data::Str(request_id)), ("tail".to_owned(), tail)]);
                on_event(LinkEvent::SessionTail(Carried::new(&nsp, &value)));
            }
            _ => {}
        }
    }
}

impl ClusterLink {
    /// Asks the other links for session `pid` of `nsp` (the host does not
    /// hold it), with the client's `offset`: the session as its holder's
    /// host gave it, or `None` when no node holds it or none answered
    /// within the request timeout. When the answer names its holder, the
    /// host completes the hand-off once it listens to the session's rooms
    /// ([`release_session`](Self::release_session), the module's docs).
    ///
    /// # Errors
    /// [`LinkError::Bus`].
    pub async fn take_session(
        &self,
        nsp: &str,
        pid: &str,
        offset: Option<&str>,
    ) -> Result<Option<TakenSession>, LinkError> {
        let cluster = &self.cluster;
        let sessions = &self.sessions;
        sessions.subscribe(cluster).await?;
        let bus_error = |e: crate::bus::BusError| LinkError::Bus(e.to_string());
        let others = cluster.bus.subscriber_count(&sessions.ask_channel).await.map_err(bus_error)?.saturating_sub(1);
        if others == 0 {
            return Ok(None);
        }
        let request_id = crate::engine::new_id();
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&sessions.pending).insert(request_id.clone(), tx);
        let ask = Data::Map(vec![
            ("type".to_owned(), Data::Str("ask".to_owned())),
            ("requestId".to_owned(), Data::Str(request_id.clone())),
            ("from".to_owned(), Data::Str(cluster.uid().to_owned())),
            ("nsp".to_owned(), Data::Str(nsp.to_owned())),
            ("pid".to_owned(), Data::Str(pid.to_owned())),
            ("offset".to_owned(), offset.map_or(Data::Null, |o| Data::Str(o.to_owned()))),
        ]);
        let published = cluster.publish(&sessions.ask_channel, ask.to_msgpack());
        let found = match published {
            Ok(()) => {
                let wait = async {
                    for _ in 0..others {
                        match rx.recv().await {
                            Some(Some(found)) => return Some(found),
                            Some(None) => {}
                            None => break,
                        }
                    }
                    None
                };
                tokio::time::timeout(cluster.request_timeout(), wait).await.ok().flatten()
            }
            Err(_) => None,
        };
        lock(&sessions.pending).remove(&request_id);
        Ok(found.map(|(json, attachments, holder)| TakenSession { json, attachments, request_id, holder }))
    }

    /// The marker of a hand-off: this node listens to the rooms of session
    /// `pid`, which `holder` gave it for request `request_id`. The holder
    /// answers with its tail ([`LinkEvent::SessionTail`]); the marker comes
    /// back to this node too ([`LinkEvent::SessionEcho`]). The host notes
    /// where its log stands just before calling it: what it sends from
    /// then on is published after the marker.
    ///
    /// # Errors
    /// [`LinkError::Bus`].
    pub fn release_session(&self, nsp: &str, holder: &str, request_id: &str, pid: &str) -> Result<(), LinkError> {
        let release = Data::Map(vec![
            ("type".to_owned(), Data::Str("release".to_owned())),
            ("requestId".to_owned(), Data::Str(request_id.to_owned())),
            ("from".to_owned(), Data::Str(self.cluster.uid().to_owned())),
            ("holder".to_owned(), Data::Str(holder.to_owned())),
            ("nsp".to_owned(), Data::Str(nsp.to_owned())),
            ("pid".to_owned(), Data::Str(pid.to_owned())),
        ]);
        self.cluster
            .publish(&self.sessions.ask_channel, release.to_msgpack())
            .map_err(|e| LinkError::Bus(e.to_string()))
    }

    /// Answers a marker ([`LinkEvent::SessionReleased`]) of node
    /// `requester`: `json` is the list of what this host logged for the
    /// session since its answer (each packet's data), or `null` when it
    /// can no longer say (the hand-off expired, its log was pruned).
    ///
    /// # Errors
    /// [`LinkError::Invalid`], [`LinkError::Bus`].
    pub fn give_tail(
        &self,
        requester: &str,
        request_id: &str,
        nsp: &str,
        json: &str,
        attachments: &[Bytes],
    ) -> Result<(), LinkError> {
        let tail = parse(json, attachments)?;
        let answer = Data::Map(vec![
            ("type".to_owned(), Data::Str("tail".to_owned())),
            ("requestId".to_owned(), Data::Str(request_id.to_owned())),
            ("nsp".to_owned(), Data::Str(nsp.to_owned())),
            ("tail".to_owned(), tail),
        ]);
        self.publish_to(requester, &answer)
    }

    /// Publishes `message` on node `uid`'s answer channel.
    fn publish_to(&self, uid: &str, message: &Data) -> Result<(), LinkError> {
        let channel = format!("{}-tidewire#sessions#{uid}#", self.cluster.prefix());
        self.cluster.publish(&channel, message.to_msgpack()).map_err(|e| LinkError::Bus(e.to_string()))
    }

    /// Answers another node's [`take_session`](Self::take_session)
    /// (`requester`: its uid, `request_id`: the question's): `json` is the
    /// session the host took out of its store, or `null`. `handoff`: the
    /// host keeps logging for the session until the requester's marker
    /// ([`LinkEvent::SessionReleased`]), and then answers with its tail.
    ///
    /// # Errors
    /// [`LinkError::Invalid`], [`LinkError::Bus`].
    pub fn give_session(
        &self,
        requester: &str,
        request_id: &str,
        json: &str,
        attachments: &[Bytes],
        handoff: bool,
    ) -> Result<(), LinkError> {
        let session = parse(json, attachments)?;
        let answer = Data::Map(vec![
            ("type".to_owned(), Data::Str("answer".to_owned())),
            ("requestId".to_owned(), Data::Str(request_id.to_owned())),
            ("uid".to_owned(), Data::Str(self.cluster.uid().to_owned())),
            ("handoff".to_owned(), Data::Bool(handoff)),
            ("session".to_owned(), session),
        ]);
        self.publish_to(requester, &answer)
    }
}
