//! Presence in the hub: which rooms of a namespace are tracked, and how
//! the [`PresenceDiff`]s of [`crate::presence`] reach clients and listeners.
//!
//! Presence is opt-in per namespace with [`Namespace::enable_presence`]:
//! rooms whose name starts with a prefix (say `room:`) are tracked. Only
//! sockets that belong to a user (see [`Admission::user`]) count. Changes
//! are computed under the namespace's lock, in the same step as the room
//! change that caused them, so presence never disagrees with membership;
//! the events go out after the lock is released.
//!
//! # Events sent to the room's members (the joining socket included)
//! * `presence:join` `{roomId, userId, ...meta}` when a user's first
//!   connection joins the room;
//! * `presence:leave` `{roomId, userId}` when their last one leaves;
//! * `presence:update` `{roomId, userId, connectionId, ...meta}` when a
//!   connection's metadata changes ([`Socket::set_presence_meta`]).
//!
//! `roomId` is the room name without the prefix; `meta` is the
//! connection's metadata object ([`Admission::with_presence`]), flattened
//! into the payload (its `roomId` / `userId` / `connectionId` keys, if any,
//! do not override).
//!
//! # Asking for the list
//! A member of a tracked room may emit `presence:list` with the room id
//! and an ack: the answer is `{status: "ok", roomId, users: [{userId,
//! connections, ...meta}]}` (users in order of arrival, `meta` of their
//! first connection), or `{status: "error", code: "forbidden"}` for a room
//! the socket is not in.
//!
//! [`Admission::user`]: super::Admission::user
//! [`Admission::with_presence`]: super::Admission::with_presence
//! [`Socket::set_presence_meta`]: super::Socket::set_presence_meta

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::handler::EventRejection;
use super::{Event, Namespace, Socket};
use crate::presence::{ConnId, Presence, PresenceDiff, PresentUser, UserId};
use crate::protocol::socketio::Payload;
use crate::rooms::Room;

/// A change of one local connection's presence, as the other nodes of a
/// cluster hear of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum Delta {
    /// `conn` of `user` joined `room`.
    Join { room: Room, conn: ConnId, user: UserId, meta: Value },
    /// `conn` left `room`.
    Leave { room: Room, conn: ConnId },
    /// `conn`'s metadata changed (in every room it is in).
    Update { conn: ConnId, meta: Value },
}

/// Which rooms of a namespace have presence, and the event names used.
///
/// # Examples
/// ```
/// use tidewire::hub::{Hub, PresenceOptions};
/// let hub = Hub::default();
/// hub.of("/").enable_presence(PresenceOptions::rooms_with_prefix("room:"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PresenceOptions {
    /// Rooms whose name starts with this are tracked; `roomId` in events
    /// is the rest of the name. Empty: every room but the sockets' own
    /// rooms and the `user:<id>` rooms.
    pub prefix: String,
    /// The event clients emit to ask for a room's list (`None`: not served).
    pub list_event: Option<String>,
}

impl PresenceOptions {
    /// Tracks the rooms whose name starts with `prefix`.
    pub fn rooms_with_prefix(prefix: impl Into<String>) -> PresenceOptions {
        PresenceOptions { prefix: prefix.into(), list_event: Some("presence:list".to_owned()) }
    }

    /// Tracks every room but the sockets' own and the `user:<id>` rooms.
    pub fn all_rooms() -> PresenceOptions {
        PresenceOptions::rooms_with_prefix("")
    }

    /// Sets [`list_event`](Self::list_event).
    pub fn list_event(mut self, event: Option<String>) -> Self {
        self.list_event = event;
        self
    }
}

/// Counts of a room's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceCount {
    /// Present users.
    pub users: usize,
    /// Their connections.
    pub connections: usize,
}

/// Observes the presence changes of a namespace (after they are applied,
/// outside the namespace's locks).
pub trait PresenceListener: Send + Sync + 'static {
    /// `diff` happened in `namespace`.
    fn on_presence(&self, namespace: &str, diff: &PresenceDiff);
}

impl<F> PresenceListener for F
where
    F: Fn(&str, &PresenceDiff) + Send + Sync + 'static,
{
    fn on_presence(&self, namespace: &str, diff: &PresenceDiff) {
        self(namespace, diff);
    }
}

/// A namespace's presence: the options and the pure state.
#[derive(Debug)]
pub(crate) struct Tracker {
    pub(crate) options: PresenceOptions,
    pub(crate) node: Arc<str>,
    pub(crate) state: Presence,
    /// The hub is in a cluster: local changes are published as deltas.
    pub(crate) clustered: bool,
}

impl Tracker {
    /// Whether `room` is tracked, for a connection of another node (which
    /// checked the socket's own room itself).
    pub(crate) fn tracks_remote(&self, room: &str) -> bool {
        room.starts_with(&self.options.prefix) && !(self.options.prefix.is_empty() && room.starts_with("user:"))
    }

    /// Whether `room` is tracked for the socket `socket_id`.
    pub(crate) fn tracks(&self, room: &str, socket_id: &str) -> bool {
        if self.options.prefix.is_empty() {
            room != socket_id && !room.starts_with("user:")
        } else {
            room.starts_with(&self.options.prefix)
        }
    }

    fn room_id<'a>(&self, room: &'a str) -> &'a str {
        room.strip_prefix(self.options.prefix.as_str()).unwrap_or(room)
    }
}

/// `base` with the fields of `meta` (when an object) that it lacks.
fn flatten(mut base: Map<String, Value>, meta: &Value) -> Value {
    if let Value::Object(meta) = meta {
        for (k, v) in meta {
            base.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Value::Object(base)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The event and payload clients get for `diff`.
pub(crate) fn event_for(prefix: &str, diff: &PresenceDiff) -> (&'static str, Value) {
    let room_id = |room: &str| room.strip_prefix(prefix).unwrap_or(room).to_owned();
    match diff {
        PresenceDiff::Join { room, user, meta } => {
            ("presence:join", flatten(object(json!({ "roomId": room_id(room), "userId": &**user })), meta))
        }
        PresenceDiff::Leave { room, user } => ("presence:leave", json!({ "roomId": room_id(room), "userId": &**user })),
        PresenceDiff::Update { room, user, conn, meta } => (
            "presence:update",
            flatten(object(json!({ "roomId": room_id(room), "userId": &**user, "connectionId": &**conn })), meta),
        ),
    }
}

/// Sends `diffs` to their rooms and to the namespace's listeners.
pub(crate) fn publish(ns: &Namespace, prefix: &str, diffs: &[PresenceDiff]) {
    if diffs.is_empty() {
        return;
    }
    let handlers = ns.handlers();
    for diff in diffs {
        let room = match diff {
            PresenceDiff::Join { room, .. } | PresenceDiff::Leave { room, .. } | PresenceDiff::Update { room, .. } => {
                room.clone()
            }
        };
        let (event, payload) = event_for(prefix, diff);
        // Local only: in a cluster every node computes the same diffs from
        // the replicated presence and tells its own members.
        let _ = ns.to(room).local().emit(event, Payload::json(vec![payload]));
        for l in &handlers.presence_listeners {
            l.on_presence(ns.name(), diff);
        }
    }
}

/// The list answer for one room.
pub(crate) fn list_answer(tracker: &Tracker, room: &str) -> Value {
    let users: Vec<Value> = tracker
        .state
        .list(room)
        .into_iter()
        .map(|PresentUser { user_id, connections }| {
            let base = object(json!({ "userId": &*user_id, "connections": connections.len() }));
            flatten(base, connections.first().map_or(&Value::Null, |c| &c.meta))
        })
        .collect();
    json!({ "status": "ok", "roomId": tracker.room_id(room), "users": users })
}

/// Answers `presence:list` (installed by `enable_presence`).
pub(crate) async fn serve_list(socket: Socket, event: Event) {
    let Some(ack) = event.ack else { return };
    let answer = match event.args.data.first().and_then(Value::as_str) {
        None => EventRejection::new("invalid_payload", "expected the room id").to_ack(),
        Some(room_id) => {
            let ns = socket.nsp();
            match ns.presence_prefix() {
                Some(prefix) => {
                    let room = format!("{prefix}{room_id}");
                    if socket.in_room(&room) {
                        ns.presence_answer(&room)
                    } else {
                        EventRejection::new("forbidden", "join the room to see who is there").to_ack()
                    }
                }
                None => EventRejection::new("forbidden", "presence is not enabled").to_ack(),
            }
        }
    };
    let _ = ack.send(Payload::json(vec![answer]));
}
