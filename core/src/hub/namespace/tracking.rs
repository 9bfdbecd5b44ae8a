//! A namespace's presence tracking: the [`Tracker`] lives in the
//! namespace's state, and every room change is applied to it under the
//! same lock ([`track`]), so presence never disagrees with membership; the
//! resulting events go out once the lock is released ([`Namespace::publish_tracked`]).

use std::sync::Arc;

use super::{Namespace, State, read, write};
use crate::hub::presence::{self, Delta, PresenceCount, PresenceListener, PresenceOptions, Tracker};
use crate::presence::{Presence, PresenceDiff, PresentUser};
use crate::rooms::RoomEvent;

/// What a change did to presence: the diffs with the prefix they are
/// published with, and, in a cluster, the changes of this node's
/// connections for the other nodes.
#[derive(Default)]
pub(crate) struct Tracked {
    diffs: Option<(String, Vec<PresenceDiff>)>,
    deltas: Vec<Delta>,
}

/// Applies room events to presence (when enabled).
pub(super) fn track(st: &mut State, events: &[RoomEvent<u64>]) -> Tracked {
    let State { presence, sockets, .. } = st;
    let Some(tracker) = presence.as_mut() else { return Tracked::default() };
    let mut diffs = Vec::new();
    let mut deltas = Vec::new();
    for e in events {
        match e {
            RoomEvent::Joined { room, member } => {
                let Some(socket) = sockets.get(member) else { continue };
                let Some(user) = socket.user_arc() else { continue };
                if tracker.tracks(room, socket.id()) {
                    let node = tracker.node.clone();
                    let (conn, meta) = (socket.id_arc(), socket.presence_meta());
                    if tracker.clustered {
                        let delta = Delta::Join {
                            room: room.clone(),
                            conn: conn.clone(),
                            user: user.clone(),
                            meta: meta.clone(),
                        };
                        deltas.push(delta);
                    }
                    diffs.extend(tracker.state.join(room, user, &conn, &node, meta));
                }
            }
            RoomEvent::Left { room, member } => {
                let Some(socket) = sockets.get(member) else { continue };
                if tracker.clustered && socket.user_arc().is_some() && tracker.tracks(room, socket.id()) {
                    deltas.push(Delta::Leave { room: room.clone(), conn: socket.id_arc() });
                }
                diffs.extend(tracker.state.leave(room, socket.id()));
            }
            RoomEvent::Created(_) | RoomEvent::Deleted(_) => {}
        }
    }
    Tracked { diffs: (!diffs.is_empty()).then(|| (tracker.options.prefix.clone(), diffs)), deltas }
}

impl Namespace {
    // --- presence ------------------------------------------------------------

    /// Turns presence on for the rooms `options` selects (see
    /// [`PresenceOptions`] and the events it sends). Sockets already in
    /// those rooms are counted from now on.
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Admission, Handshake, Hub, PresenceOptions};
    /// let hub = Hub::default();
    /// let ns = hub.of("/");
    /// ns.enable_presence(PresenceOptions::rooms_with_prefix("room:"));
    /// ns.use_middleware(|h: std::sync::Arc<Handshake>| async move {
    ///     let name = h.auth["name"].as_str().unwrap_or("anonymous").to_owned();
    ///     Ok(Admission::user(name.clone()).with_presence(serde_json::json!({ "name": name })))
    /// });
    /// assert_eq!(ns.presence_count("room:lobby").users, 0);
    /// ```
    pub fn enable_presence(&self, options: PresenceOptions) -> &Self {
        let node = self.hub().map_or_else(|| Arc::from("local"), |h| h.node_id().clone());
        let list_event = options.list_event.clone();
        {
            let mut st = write(&self.inner.state);
            let clustered = self.adapter().clustered();
            let mut tracker = Box::new(Tracker { options, node, state: Presence::new(), clustered });
            // Count the sockets already in tracked rooms.
            let State { rooms, sockets, .. } = &*st;
            for (key, socket) in sockets {
                let Some(user) = socket.user_arc() else { continue };
                for room in rooms.rooms_of(*key) {
                    if tracker.tracks(room, socket.id()) {
                        let node = tracker.node.clone();
                        let _ = tracker.state.join(room, user, &socket.id_arc(), &node, socket.presence_meta());
                    }
                }
            }
            st.presence = Some(tracker);
        }
        if let Some(event) = list_event {
            self.on(event, presence::serve_list);
        }
        // Local entries that predate this call go out as a snapshot on
        // request; ask the other nodes for theirs.
        self.adapter().presence_enabled();
        self
    }

    /// Adds a listener of this namespace's presence changes.
    pub fn on_presence(&self, listener: impl PresenceListener) -> &Self {
        let listener: Arc<dyn PresenceListener> = Arc::new(listener);
        self.update(|h| h.presence_listeners.push(listener));
        self
    }

    /// The users present in `room` (its full name), in order of arrival,
    /// with their connections and metadata. Empty without presence.
    pub fn presence(&self, room: &str) -> Vec<PresentUser> {
        read(&self.inner.state).presence.as_ref().map(|t| t.state.list(room)).unwrap_or_default()
    }

    /// How many users and connections are present in `room`.
    pub fn presence_count(&self, room: &str) -> PresenceCount {
        let st = read(&self.inner.state);
        st.presence.as_ref().map_or_else(PresenceCount::default, |t| PresenceCount {
            users: t.state.user_count(room),
            connections: t.state.connection_count(room),
        })
    }

    /// Totals of this namespace's presence: tracked rooms with someone in
    /// them, users present somewhere, and their connections (all zero
    /// without presence).
    pub fn presence_totals(&self) -> (usize, usize, usize) {
        let st = read(&self.inner.state);
        st.presence.as_ref().map_or((0, 0, 0), |t| {
            (t.state.room_count(), t.state.online_user_count(), t.state.online_connection_count())
        })
    }

    /// Whether `user` is present in at least one tracked room.
    pub fn is_present(&self, user: &str) -> bool {
        read(&self.inner.state).presence.as_ref().is_some_and(|t| t.state.is_online(user))
    }

    /// The prefix of tracked rooms, when presence is on.
    pub(crate) fn presence_prefix(&self) -> Option<String> {
        read(&self.inner.state).presence.as_ref().map(|t| t.options.prefix.clone())
    }

    /// The `presence:list` answer for `room`.
    pub(crate) fn presence_answer(&self, room: &str) -> serde_json::Value {
        let st = read(&self.inner.state);
        st.presence.as_ref().map_or(serde_json::Value::Null, |t| presence::list_answer(t, room))
    }

    /// Applies a socket's new presence metadata.
    pub(crate) fn update_presence(&self, socket_id: &str, meta: serde_json::Value) {
        let tracked = {
            let mut st = write(&self.inner.state);
            let Some(tracker) = st.presence.as_mut() else { return };
            let mut deltas = Vec::new();
            if tracker.clustered && !tracker.state.rooms_of_connection(socket_id).is_empty() {
                deltas.push(Delta::Update { conn: socket_id.into(), meta: meta.clone() });
            }
            let diffs = tracker.state.update(socket_id, meta);
            Tracked { diffs: (!diffs.is_empty()).then(|| (tracker.options.prefix.clone(), diffs)), deltas }
        };
        self.publish_tracked(tracked);
    }

    /// Sends presence events to this node's members and, in a cluster, the
    /// changes of local connections to the other nodes.
    pub(crate) fn publish_tracked(&self, tracked: Tracked) {
        if let Some((prefix, diffs)) = tracked.diffs {
            presence::publish(self, &prefix, &diffs);
        }
        if !tracked.deltas.is_empty() {
            self.adapter().presence_changed(self.name(), tracked.deltas);
        }
    }

    /// Runs `f` on the presence state under the namespace's lock (nothing
    /// without presence); returns its diffs, to publish once released.
    pub(crate) fn with_tracker(&self, f: impl FnOnce(&mut Tracker) -> Vec<PresenceDiff>) -> Tracked {
        let mut st = write(&self.inner.state);
        let Some(tracker) = st.presence.as_mut() else { return Tracked::default() };
        let diffs = f(tracker);
        Tracked { diffs: (!diffs.is_empty()).then(|| (tracker.options.prefix.clone(), diffs)), deltas: Vec::new() }
    }

    /// Reads the presence state, when on.
    pub(crate) fn read_tracker<T>(&self, f: impl FnOnce(&Tracker) -> T) -> Option<T> {
        read(&self.inner.state).presence.as_deref().map(f)
    }

    /// Marks the presence of this namespace as replicated in a cluster.
    pub(crate) fn set_presence_clustered(&self) {
        if let Some(tracker) = write(&self.inner.state).presence.as_mut() {
            tracker.clustered = true;
        }
    }
}
