//! Connection-state recovery across the nodes of a cluster: a client whose
//! connection dropped may reconnect to any node and get its session back
//! (id, rooms, data) with the packets it missed, in order; when they are
//! gone it gets `recovered = false`, never a partial replay.
//!
//! The session and the packets stay where they were, with the node the
//! client left (its [`SessionStore`](crate::recovery::SessionStore) and
//! packet log, bounded by count, bytes and age as on one node):
//!
//! * the node a client comes back to and that does not hold its session
//!   asks the other Tidewire nodes for it, on a channel of their own; the
//!   holder takes it out of its store (one use only), selects the missed
//!   packets as for a local restore and sends both; every other node says it
//!   has nothing, so an unknown session fails fast;
//! * for the holder's log to have every packet the session would have got,
//!   the holder keeps listening to the channels of the session's rooms (and
//!   of its own id) until the session is taken or expires, even when no
//!   local socket is left in them;
//! * the packets keep the holder's offsets: once restored, the socket gets
//!   the new node's, and a later reconnection with an old offset fails
//!   explicitly (offsets name their log);
//! * nothing sent meanwhile falls between the two nodes. The holder keeps
//!   logging for the session after its answer. Once the new node listens
//!   to the session's rooms it publishes a marker (`release`) on the
//!   request channel, noting where its own log stands; when the marker
//!   comes back to it, it notes that again. The holder answers the marker
//!   with what it logged for the session since its first answer (the
//!   `tail`, published under its log's lock, so after every packet of its
//!   own that the tail holds and before every later one) and stops
//!   listening for it. The client gets the missed packets, the tail, then
//!   from the new node's log what it sent after publishing the marker,
//!   what the holder sent that arrived after the tail, and what third
//!   nodes sent that arrived after the marker came back: with one Redis
//!   (or the in-process bus), every node sees the bus's messages in one
//!   order, so each packet is in exactly one of these parts. (The holder's
//!   own packets cannot be split at the marker: one it sent just before
//!   the marker reached it may reach Redis after the marker, and was in
//!   both the tail and the new node's part.) A holder that does not answer the marker in time fails the
//!   recovery (`recovered = false`) rather than leave a gap. With a Redis
//!   Cluster (sharded pub/sub) the order holds per shard only: a packet
//!   sent at the moment of the hand-off may come twice or not at all.
//!
//! A holder that dies takes the sessions with it: those clients get
//! `recovered = false`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Cluster;
use crate::hub::adapter::{Handoff, RemoteSession, Taken};
use crate::hub::{Hub, Namespace, RoomChange, lock};
use crate::protocol::engine::Encoded;
use crate::recovery::{self, NodeTag, Offset, Restore, RestoreFailure, Split, StoredSession};
use crate::rooms::Room;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Wire {
    /// Who holds `pid` (in `nsp`) for `user`? Answer on `from`'s channel.
    /// A holder gives a session to its own user only, and leaves it kept
    /// otherwise.
    Ask {
        from: String,
        request_id: String,
        nsp: String,
        pid: String,
        #[serde(default)]
        user: Option<String>,
        offset: Option<String>,
    },
    /// The answer of node `uid`.
    Answer { uid: String, request_id: String, state: State },
    /// Node `from` listens to the rooms of `pid`, which `holder` handed it:
    /// the marker. `holder` answers with a `tail`; `from` notes where its
    /// log stands when the marker comes back to it.
    Release { from: String, holder: String, request_id: String, nsp: String, pid: String },
    /// What the holder logged for the session after its answer; `None`
    /// when it no longer can say (the hand-off expired, packets evicted).
    Tail {
        request_id: String,
        #[serde(default)]
        nsp: String,
        tail: Option<Vec<Vec<Frame>>>,
    },
}

/// What reaches a node waiting for a session of another node.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Node `.1`'s answer.
    State(State, String),
    /// The marker came back: the last offset of this node's log then.
    Echo(Option<Offset>),
    /// The holder's tail, and the last offset of this node's log when it
    /// arrived.
    Tail(Option<Vec<Vec<Frame>>>, Option<Offset>),
}

/// A session this node handed to `to`, logged for until `to` sends its
/// marker (or `until` passes).
#[derive(Debug)]
pub(crate) struct Handed {
    to: String,
    nsp: String,
    /// The session's rooms, its own id included.
    rooms: Vec<Room>,
    /// The log's last offset when the session was taken.
    mark: Option<Offset>,
    until: Instant,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    Unknown,
    Gone,
    Found {
        id: String,
        rooms: Vec<String>,
        data: Value,
        user: Option<String>,
        missed: Vec<Vec<Frame>>,
        /// The holder keeps logging for the session until told (`release`);
        /// absent from nodes that predate the hand-off.
        #[serde(default)]
        handoff: bool,
    },
}

/// An Engine.IO frame: text, or binary in base64.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    #[serde(rename = "t")]
    Text(String),
    #[serde(rename = "b")]
    Binary(String),
}

impl Frame {
    pub(super) fn of(e: &Encoded) -> Frame {
        match e {
            Encoded::Text(t) => Frame::Text(t.to_string()),
            Encoded::Binary(b) => Frame::Binary(base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }

    pub(super) fn into_encoded(self) -> Option<Encoded> {
        Some(match self {
            Frame::Text(t) => Encoded::Text(t.into()),
            Frame::Binary(b) => Encoded::Binary(base64::engine::general_purpose::STANDARD.decode(b).ok()?.into()),
        })
    }
}

/// The sessions this node keeps listening for: pid → (namespace, rooms,
/// until when). Pure state: the caller passes `now`.
#[derive(Debug, Default)]
pub(crate) struct Retained {
    sessions: HashMap<String, (String, Vec<Room>, Instant)>,
    /// (namespace, room) → how many kept sessions hold it.
    rooms: HashMap<(String, Room), usize>,
}

impl Retained {
    /// Keeps `pid`'s `rooms` of `nsp` until `until` (replacing what `pid`
    /// kept before). Returns the rooms of the replaced session no kept
    /// session holds any more, with their namespace.
    pub(super) fn retain(
        &mut self,
        nsp: &str,
        pid: &str,
        rooms: Vec<Room>,
        until: Instant,
    ) -> Option<(String, Vec<Room>)> {
        let replaced = self.release(pid);
        for room in &rooms {
            *self.rooms.entry((nsp.to_owned(), room.clone())).or_default() += 1;
        }
        self.sessions.insert(pid.to_owned(), (nsp.to_owned(), rooms, until));
        replaced
    }

    /// Whether a kept session holds `room` of `nsp`.
    pub(super) fn holds(&self, nsp: &str, room: &str) -> bool {
        !self.rooms.is_empty() && self.rooms.contains_key(&(nsp.to_owned(), Room::from(room)))
    }

    /// Forgets `pid`; returns its namespace and the rooms no kept session
    /// holds any more.
    pub(super) fn release(&mut self, pid: &str) -> Option<(String, Vec<Room>)> {
        let (nsp, rooms, _) = self.sessions.remove(pid)?;
        let mut freed = Vec::new();
        for room in rooms {
            let key = (nsp.clone(), room);
            if let Some(n) = self.rooms.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.rooms.remove(&key);
                    freed.push(key.1);
                }
            }
        }
        Some((nsp, freed))
    }

    /// The pids whose window has passed at `now`.
    pub(super) fn expired(&self, now: Instant) -> Vec<String> {
        self.sessions.iter().filter(|(_, (_, _, until))| *until <= now).map(|(pid, _)| pid.clone()).collect()
    }
}

impl Cluster {
    /// A session of this node was kept: its rooms stay listened to until it
    /// is taken or `window` passes.
    pub(crate) fn retain_session(&self, nsp: &str, pid: &str, rooms: Vec<Room>, window: Duration) {
        // A pid is kept once per disconnect: nothing is replaced in practice.
        let _ = lock(&self.retained).retain(nsp, pid, rooms, crate::time::now() + window);
    }

    /// Whether a kept session holds `room`'s channel.
    pub(crate) fn retains(&self, nsp: &str, room: &str) -> bool {
        lock(&self.retained).holds(nsp, room)
    }

    /// The session `pid` was taken: its rooms go back to normal interest.
    pub(crate) fn release_session(&self, hub: &Hub, pid: &str) {
        let Some((nsp, freed)) = lock(&self.retained).release(pid) else { return };
        self.unsubscribe_freed(hub, &nsp, freed);
    }

    /// Releases the sessions whose window passed.
    pub(crate) fn expire_retained(&self, hub: &Hub) {
        let now = crate::time::now();
        let expired = lock(&self.retained).expired(now);
        for pid in expired {
            self.release_session(hub, &pid);
        }
        let mut handed = lock(&self.handed);
        let late: Vec<String> = handed.iter().filter(|(_, h)| h.until <= now).map(|(pid, _)| pid.clone()).collect();
        for pid in &late {
            handed.remove(pid);
        }
        drop(handed);
        for pid in late {
            tracing::debug!(pid, "recovery: the node a session was handed to never said it listens");
            self.release_session(hub, &pid);
        }
    }

    /// Rooms no kept session holds any more: unsubscribed unless a local
    /// socket is in them.
    pub(super) fn unsubscribe_freed(&self, hub: &Hub, nsp: &str, freed: Vec<Room>) {
        let Some(ns) = hub.namespace(nsp) else { return };
        let gone: Vec<RoomChange> = freed.into_iter().filter(|r| !ns.has_room(r)).map(RoomChange::Deleted).collect();
        self.rooms_changed(nsp, &gone);
    }

    /// Asks the other Tidewire nodes for session `pid` of namespace `nsp`.
    pub(crate) async fn take_remote_session(
        &self,
        nsp: &str,
        pid: &str,
        user: Option<&str>,
        offset: Option<&str>,
    ) -> RemoteSession {
        let nodes = match self.bus().subscriber_count(&self.recovery_channels[0]).await {
            Ok(n) => n.saturating_sub(1),
            Err(e) => {
                tracing::debug!(error = %e, "recovery: the other nodes cannot be asked");
                return RemoteSession::Unknown;
            }
        };
        if nodes == 0 {
            return RemoteSession::Unknown;
        }
        let request_id = crate::engine::new_id();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.recovery_pending).insert(request_id.clone(), tx);
        let ask = Wire::Ask {
            from: self.uid().to_owned(),
            request_id: request_id.clone(),
            nsp: nsp.to_owned(),
            pid: pid.to_owned(),
            user: user.map(str::to_owned),
            offset: offset.map(str::to_owned),
        };
        let _ = self.publish(&self.recovery_channels[0], serde_json::to_vec(&ask).unwrap_or_default());
        let mut answered = 0;
        let deadline = tokio::time::sleep(self.request_timeout());
        tokio::pin!(deadline);
        let result = loop {
            tokio::select! {
                () = &mut deadline => break RemoteSession::Unknown,
                reply = rx.recv() => match reply {
                    Some(Reply::Echo(_) | Reply::Tail(..)) => {}
                    Some(Reply::State(State::Unknown, _)) => {
                        answered += 1;
                        if answered >= nodes {
                            break RemoteSession::Unknown;
                        }
                    }
                    Some(Reply::State(State::Gone, _)) => break RemoteSession::Gone,
                    Some(Reply::State(State::Found { id, rooms, data, user, missed, handoff }, holder)) => {
                        let session = StoredSession {
                            id: id.into(),
                            rooms: rooms.into_iter().map(Room::from).collect(),
                            data,
                            user_id: user.map(Into::into),
                            base: None,
                        };
                        let handoff = handoff.then(|| Handoff { holder, pid: pid.to_owned() });
                        break decode(missed).map_or(RemoteSession::Gone, |missed| {
                            RemoteSession::Found(Box::new(Taken { session, missed, handoff, marks: None }))
                        });
                    }
                    None => break RemoteSession::Unknown,
                },
            }
        };
        lock(&self.recovery_pending).remove(&request_id);
        result
    }

    /// A recovery message of another node.
    pub(crate) fn on_recovery_message(&self, hub: &Hub, payload: &[u8]) {
        let wire: Wire = match serde_json::from_slice(payload) {
            Ok(w) => w,
            Err(e) => return self.malformed("recovery message", &e),
        };
        match wire {
            Wire::Ask { from, request_id, nsp, pid, user, offset } => {
                if from == self.uid() {
                    return;
                }
                let (state, handed) = hub
                    .namespace(&nsp)
                    .map_or((State::Unknown, None), |ns| ns.take_for_remote(&pid, user.as_deref(), offset.as_deref()));
                match handed {
                    // Logged for until `from` listens (or a request timeout twice over).
                    Some((rooms, mark)) => {
                        let until = crate::time::now() + 2 * self.request_timeout();
                        lock(&self.handed).insert(pid, Handed { to: from.clone(), nsp, rooms, mark, until });
                    }
                    None if matches!(state, State::Gone) => self.release_session(hub, &pid),
                    None => {}
                }
                let answer = Wire::Answer { uid: self.uid().to_owned(), request_id, state };
                let _ = self.publish(
                    &recovery_channel(self.prefix(), Some(&from)),
                    serde_json::to_vec(&answer).unwrap_or_default(),
                );
            }
            Wire::Answer { uid, request_id, state } => {
                if let Some(tx) = lock(&self.recovery_pending).get(&request_id) {
                    let _ = tx.send(Reply::State(state, uid));
                }
            }
            Wire::Release { from, holder, request_id, nsp, pid } => {
                let ns = hub.namespace(&nsp);
                if from == self.uid() {
                    // The marker came back: where this node's log stands now.
                    let last = ns.as_ref().and_then(|ns| ns.recovery()).and_then(|rec| lock(&rec.log).last());
                    if let Some(tx) = lock(&self.recovery_pending).get(&request_id) {
                        let _ = tx.send(Reply::Echo(last));
                    }
                    return;
                }
                if holder != self.uid() {
                    return;
                }
                let handed = lock(&self.handed).remove(&pid).filter(|h| h.to == from && h.nsp == nsp);
                let channel = recovery_channel(self.prefix(), Some(&from));
                let publish = |tail| {
                    let answer = Wire::Tail { request_id: request_id.clone(), nsp: nsp.clone(), tail };
                    let _ = self.publish(&channel, serde_json::to_vec(&answer).unwrap_or_default());
                };
                match (&handed, ns.as_ref().and_then(|ns| ns.recovery())) {
                    (Some(h), Some(rec)) => {
                        // Published under the log's lock: this node's packets
                        // logged before the tail are in it and published
                        // before it, the later ones after it (the taker tells
                        // them apart by the tail's arrival).
                        let log = lock(&rec.log);
                        let tail = log.since(h.mark, &h.rooms).ok().map(|tail| {
                            tail.into_iter().map(|frames| frames.iter().map(Frame::of).collect()).collect()
                        });
                        publish(tail);
                    }
                    _ => publish(None),
                }
                if handed.is_some() {
                    self.release_session(hub, &pid);
                }
            }
            Wire::Tail { request_id, nsp, tail } => {
                // Where this node's log stands as the tail arrives: the
                // holder's packets logged here after it are not in it.
                let last =
                    hub.namespace(&nsp).as_ref().and_then(|ns| ns.recovery()).and_then(|rec| lock(&rec.log).last());
                if let Some(tx) = lock(&self.recovery_pending).get(&request_id) {
                    let _ = tx.send(Reply::Tail(tail, last));
                }
            }
        }
    }

    /// Completes a session taken from another node, once this node listens
    /// to its rooms (see the module's docs).
    pub(crate) async fn finish_remote_session(&self, ns: &Namespace, taken: &mut Taken) -> bool {
        let Some(handoff) = taken.handoff.take() else { return true };
        let Some(rec) = ns.recovery() else { return false };
        let request_id = crate::engine::new_id();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        lock(&self.recovery_pending).insert(request_id.clone(), tx);
        let holder = NodeTag::of(&handoff.holder);
        let release = Wire::Release {
            from: self.uid().to_owned(),
            holder: handoff.holder,
            request_id: request_id.clone(),
            nsp: ns.name().to_owned(),
            pid: handoff.pid,
        };
        // Under the log's lock: this node's packets logged after `here` are
        // published after the marker.
        let here = {
            let log = lock(&rec.log);
            let _ = self.publish(&self.recovery_channels[0], serde_json::to_vec(&release).unwrap_or_default());
            log.last()
        };
        let (mut elsewhere, mut tail, mut at_tail) = (None, None, None);
        let deadline = tokio::time::sleep(self.request_timeout());
        tokio::pin!(deadline);
        // The marker comes back before the holder's answer to it; both are needed.
        while elsewhere.is_none() || tail.is_none() {
            tokio::select! {
                () = &mut deadline => break,
                reply = rx.recv() => match reply {
                    Some(Reply::Echo(last)) => elsewhere = Some(last),
                    Some(Reply::Tail(frames, last)) => (tail, at_tail) = (Some(frames), last),
                    Some(Reply::State(..)) => {}
                    None => break,
                },
            }
        }
        lock(&self.recovery_pending).remove(&request_id);
        match (elsewhere, tail.flatten().and_then(decode)) {
            (Some(elsewhere), Some(tail)) => {
                taken.missed.extend(tail);
                taken.marks = Some(Split { here, elsewhere, holder: Some((holder, at_tail)) });
                true
            }
            _ => {
                tracing::debug!("recovery: the session's holder did not complete the hand-off");
                false
            }
        }
    }
}

/// Frames from the wire, or `None` when one is not valid base64.
fn decode(packets: Vec<Vec<Frame>>) -> Option<Vec<Vec<Encoded>>> {
    packets.into_iter().map(|frames| frames.into_iter().map(Frame::into_encoded).collect()).collect()
}

/// Where recovery requests go (`uid` absent), or the answers to node `uid`.
pub(crate) fn recovery_channel(prefix: &str, uid: Option<&str>) -> String {
    match uid {
        Some(uid) => format!("{prefix}-tidewire#recovery#{uid}#"),
        None => format!("{prefix}-tidewire#recovery#"),
    }
}

impl Namespace {
    /// Takes session `pid` for another node: the session and its missed
    /// packets, as a local restore would give them; when found, also its
    /// rooms (its id included) and the log's last offset, for the tail.
    #[allow(clippy::type_complexity)]
    pub(super) fn take_for_remote(
        &self,
        pid: &str,
        user: Option<&str>,
        offset: Option<&str>,
    ) -> (State, Option<(Vec<Room>, Option<Offset>)>) {
        let Some(rec) = self.recovery() else { return (State::Unknown, None) };
        let log = lock(&rec.log);
        let mut store = lock(&rec.store);
        match recovery::restore(&mut store, &log, pid, user, offset, crate::time::now()) {
            Restore::Recovered { session, missed } => {
                let mut rooms = session.rooms.clone();
                if !rooms.contains(&session.id) {
                    rooms.push(session.id.clone());
                }
                let state = State::Found {
                    id: session.id.to_string(),
                    rooms: session.rooms.iter().map(|r| r.to_string()).collect(),
                    data: session.data,
                    user: session.user_id.map(|u| u.to_string()),
                    missed: missed.into_iter().map(|frames| frames.iter().map(Frame::of).collect()).collect(),
                    handoff: true,
                };
                (state, Some((rooms, log.last())))
            }
            // Another user's session stays kept for its owner.
            Restore::Failed(RestoreFailure::UnknownSession | RestoreFailure::OtherUser) => (State::Unknown, None),
            Restore::Failed(why) => {
                tracing::debug!(pid, ?why, "recovery for another node failed");
                (State::Gone, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_sessions_hold_their_rooms_until_taken_or_expired() {
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        let mut kept = Retained::default();
        let rooms = |names: &[&str]| names.iter().map(|n| Room::from(*n)).collect::<Vec<_>>();
        assert_eq!(kept.retain("/", "p1", rooms(&["a", "b"]), t0 + secs(10)), None);
        assert_eq!(kept.retain("/", "p2", rooms(&["b"]), t0 + secs(20)), None);
        assert!(kept.holds("/", "a") && kept.holds("/", "b") && !kept.holds("/chat", "a"));
        assert_eq!(kept.expired(t0 + secs(9)), Vec::<String>::new());
        assert_eq!(kept.expired(t0 + secs(10)), vec!["p1".to_owned()]);
        // Taken: only the rooms no other kept session holds are freed.
        assert_eq!(kept.release("p1"), Some(("/".to_owned(), rooms(&["a"]))));
        assert!(!kept.holds("/", "a") && kept.holds("/", "b"));
        assert_eq!(kept.release("p1"), None, "once");
        // Kept again with other rooms: the old ones go.
        assert_eq!(kept.retain("/", "p2", rooms(&["c"]), t0 + secs(30)), Some(("/".to_owned(), rooms(&["b"]))));
        assert!(!kept.holds("/", "b") && kept.holds("/", "c"));
        assert_eq!(kept.release("p2"), Some(("/".to_owned(), rooms(&["c"]))));
        assert!(kept.sessions.is_empty() && kept.rooms.is_empty());
    }

    #[test]
    fn frames_cross_as_text_or_base64() {
        let frames = [Encoded::Text("42[\"x\"]".into()), Encoded::Binary(bytes::Bytes::from_static(&[0, 255, 7]))];
        let wire: Vec<Frame> = frames.iter().map(Frame::of).collect();
        let text = serde_json::to_string(&wire).unwrap();
        assert_eq!(text, r#"[{"t":"42[\"x\"]"},{"b":"AP8H"}]"#);
        let back: Vec<Frame> = serde_json::from_str(&text).unwrap();
        let back: Vec<Encoded> = back.into_iter().map(|f| f.into_encoded().unwrap()).collect();
        assert_eq!(back, frames);
        assert!(Frame::Binary("not base64!".into()).into_encoded().is_none());
    }
}
