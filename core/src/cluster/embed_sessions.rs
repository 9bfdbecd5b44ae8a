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

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Cluster;
use super::embed::{Carried, ClusterLink, LinkError, LinkEvent};
use crate::cluster::wire::notepack::Data;
use crate::hub::lock;

/// A session as the host gave it: JSON text with placeholders, attachments.
type Found = Option<(String, Vec<Bytes>)>;

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

    /// A question of another node (for the host) or an answer to this one's.
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
                        Some((json.to_string(), attachments))
                    }
                };
                let tx = lock(&self.pending).get(&request_id).cloned();
                if let Some(tx) = tx {
                    let _ = tx.send(found);
                }
            }
            _ => {}
        }
    }
}

impl ClusterLink {
    /// Asks the other links for session `pid` of `nsp` (the host does not
    /// hold it), with the client's `offset`: the session as its holder's
    /// host gave it (JSON with placeholders, attachments), or `None` when
    /// no node holds it or none answered within the request timeout.
    ///
    /// # Errors
    /// [`LinkError::Bus`].
    pub async fn take_session(
        &self,
        nsp: &str,
        pid: &str,
        offset: Option<&str>,
    ) -> Result<Option<(String, Vec<Bytes>)>, LinkError> {
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
        Ok(found)
    }

    /// Answers another node's [`take_session`](Self::take_session)
    /// (`requester`: its uid, `request_id`: the question's): `json` is the
    /// session the host took out of its store, or `null`.
    ///
    /// # Errors
    /// [`LinkError::Invalid`], [`LinkError::Bus`].
    pub fn give_session(
        &self,
        requester: &str,
        request_id: &str,
        json: &str,
        attachments: &[Bytes],
    ) -> Result<(), LinkError> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| LinkError::Invalid(e.to_string()))?;
        let session =
            Data::from_json_with_attachments(&value, attachments).map_err(|e| LinkError::Invalid(e.to_string()))?;
        let answer = Data::Map(vec![
            ("type".to_owned(), Data::Str("answer".to_owned())),
            ("requestId".to_owned(), Data::Str(request_id.to_owned())),
            ("session".to_owned(), session),
        ]);
        let channel = format!("{}-tidewire#sessions#{requester}#", self.cluster.prefix());
        self.cluster.publish(&channel, answer.to_msgpack()).map_err(|e| LinkError::Bus(e.to_string()))
    }
}
