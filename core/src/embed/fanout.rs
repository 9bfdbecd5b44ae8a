//! Broadcasts the core writes for a host's own Socket.IO layer (socket.io
//! in Node with Tidewire's engine and adapter): the host keeps its sockets
//! and rooms, mirrors the rooms here, and hands each broadcast over once
//! (its encoded packet and target); the core queues it on every reached
//! session, so the host does constant work per broadcast however many
//! sockets it reaches.
//!
//! Sockets are named by the host's ids; each is attached to the Engine.IO
//! session carrying it once the host counts it as connected. Rooms may be
//! joined before that (a recovered socket rejoins its rooms first): such a
//! socket is in its rooms but reached only once attached, as socket.io
//! reaches only connected sockets.
//!
//! # Examples
//! ```
//! use std::sync::Arc;
//! use tidewire::embed::fanout::{Fanout, RoomChange};
//! use tidewire::rooms::Target;
//!
//! let fanout = Fanout::default();
//! fanout.update([RoomChange::Join("a".into(), "lobby".into()), RoomChange::Join("b".into(), "lobby".into())]);
//! // Neither is attached to a session yet: nobody is reached.
//! let frames = [tidewire::protocol::engine::Encoded::Text("42[\"hi\"]".into())];
//! assert_eq!(fanout.broadcast(&Target { rooms: vec!["lobby".into()], except: vec![] }, &frames, false), 0);
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use rustc_hash::FxHashMap;

use crate::engine::Session;
use crate::protocol::engine::{Encoded, Frame, Packet};
use crate::rooms::{Room, RoomIndex, Target};

/// A change of one socket's rooms, as the host made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    /// The socket joined the room.
    Join(Room, Room),
    /// The socket left the room.
    Leave(Room, Room),
    /// The socket is no longer reached through its session (the host
    /// writes to it itself from now on); it stays in its rooms.
    Detach(Room),
    /// The socket left every room and is forgotten (with its session).
    Remove(Room),
}

/// The rooms of one namespace's sockets and the sessions carrying them.
#[derive(Debug, Default)]
pub struct Fanout {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    rooms: RoomIndex<u64>,
    keys: HashMap<Room, u64>,
    sessions: FxHashMap<u64, Session>,
    next: u64,
}

impl State {
    fn key(&mut self, id: Room) -> u64 {
        let next = &mut self.next;
        *self.keys.entry(id).or_insert_with(|| {
            *next += 1;
            *next
        })
    }
}

/// The Engine.IO message packets of a Socket.IO packet's encoded parts
/// (the packet as text, then its binary attachments).
pub fn message_packets(parts: impl IntoIterator<Item = Frame>) -> Vec<Encoded> {
    parts.into_iter().map(|frame| Packet::Message(frame).encode()).collect()
}

impl Fanout {
    /// Applies the host's room changes, in order.
    pub fn update(&self, changes: impl IntoIterator<Item = RoomChange>) {
        let mut s = self.lock();
        for change in changes {
            match change {
                RoomChange::Join(id, room) => {
                    let key = s.key(id);
                    s.rooms.join(key, [room]);
                }
                RoomChange::Leave(id, room) => {
                    if let Some(&key) = s.keys.get(&id) {
                        s.rooms.leave(key, &room);
                    }
                }
                RoomChange::Detach(id) => {
                    if let Some(key) = s.keys.get(&id).copied() {
                        s.sessions.remove(&key);
                    }
                }
                RoomChange::Remove(id) => {
                    if let Some(key) = s.keys.remove(&id) {
                        s.rooms.remove_member(key);
                        s.sessions.remove(&key);
                    }
                }
            }
        }
    }

    /// Attaches the socket `id` (connected now) to the session carrying it.
    pub fn attach(&self, id: Room, session: Session) {
        let mut s = self.lock();
        let key = s.key(id);
        s.rooms.add_member(key);
        s.sessions.insert(key, session);
    }

    /// Queues `packets` as one unit on the session of every attached socket
    /// `target` reaches. `volatile`: dropped, as socket.io drops it, for a
    /// session whose transport is not writable now (a write in flight, or
    /// no long-polling GET waiting: [`Session::is_writable`]), and for one
    /// that lags ([`Session::send_volatile`]). Returns on how many sessions
    /// it was queued.
    pub fn broadcast(&self, target: &Target, packets: &[Encoded], volatile: bool) -> usize {
        let s = self.lock();
        let mut queued = 0;
        s.rooms.resolve(target, |key| {
            let Some(session) = s.sessions.get(key) else { return };
            let unit = packets.iter().cloned();
            let sent = match volatile {
                true if !session.is_writable() => false,
                true => session.send_volatile(unit).is_ok(),
                false => session.send(unit).is_ok(),
            };
            queued += usize::from(sent);
        });
        queued
    }

    /// The number of sockets attached to a session.
    pub fn attached(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{CloseReason, Engine, EngineConfig, Silent};
    use crate::transport::host::{self, RequestBody};

    /// A session of `engine` opened by a polling handshake.
    pub(crate) async fn session(engine: &Engine) -> Session {
        let req = http::Request::get("/socket.io/?EIO=4&transport=polling").body(RequestBody::empty()).unwrap();
        let res = host::handle(engine, req, "127.0.0.1:1".parse().unwrap()).await;
        let json: serde_json::Value = serde_json::from_slice(&res.body()[1..]).unwrap();
        engine.session(json["sid"].as_str().unwrap()).unwrap()
    }

    /// What `session` was queued, binary parts as `<N bytes>`.
    pub(crate) fn texts(session: &Session) -> Vec<String> {
        session
            .drain()
            .into_iter()
            .map(|e| match e {
                Encoded::Text(t) => t.to_string(),
                Encoded::Binary(b) => format!("<{} bytes>", b.len()),
            })
            .collect()
    }

    fn target(rooms: &[&str], except: &[&str]) -> Target {
        Target {
            rooms: rooms.iter().map(|r| (*r).into()).collect(),
            except: except.iter().map(|r| (*r).into()).collect(),
        }
    }

    #[tokio::test]
    async fn rooms_except_attachments_and_removal() {
        let engine = Engine::new(EngineConfig::default(), Arc::new(Silent));
        let (a, b, c) = (session(&engine).await, session(&engine).await, session(&engine).await);
        let fanout = Fanout::default();
        fanout.update([
            RoomChange::Join("a".into(), "a".into()),
            RoomChange::Join("a".into(), "news".into()),
            RoomChange::Join("b".into(), "b".into()),
            RoomChange::Join("b".into(), "news".into()),
            RoomChange::Join("c".into(), "c".into()),
        ]);
        for (id, s) in [("a", &a), ("b", &b), ("c", &c)] {
            s.drain();
            fanout.attach(id.into(), s.clone());
        }
        let packets = message_packets([
            Frame::Text("451-[\"x\",{\"_placeholder\":true,\"num\":0}]".into()),
            Frame::Binary(vec![1, 2, 3].into()),
        ]);
        assert_eq!(fanout.broadcast(&target(&["news"], &["b"]), &packets, false), 1);
        assert_eq!(texts(&a), ["4451-[\"x\",{\"_placeholder\":true,\"num\":0}]", "<3 bytes>"]);
        assert!(texts(&b).is_empty());
        // Everyone, except a room.
        let hi = message_packets([Frame::Text("2[\"hi\"]".into())]);
        assert_eq!(fanout.broadcast(&target(&[], &["news"]), &hi, false), 1);
        assert_eq!(texts(&c), ["42[\"hi\"]"]);
        // Gone: no longer reached, its rooms forgotten.
        fanout.update([RoomChange::Leave("a".into(), "news".into()), RoomChange::Remove("b".into())]);
        assert_eq!(fanout.broadcast(&target(&["news"], &[]), &hi, false), 0);
        assert_eq!(fanout.broadcast(&target(&[], &[]), &hi, false), 2);
        assert_eq!(fanout.attached(), 2);
        // Detached: still in its rooms (it excludes others), no longer written to.
        fanout.update([RoomChange::Detach("c".into())]);
        assert_eq!(fanout.broadcast(&target(&[], &["c"]), &hi, false), 1);
        assert_eq!(fanout.broadcast(&target(&["c"], &[]), &hi, false), 0);
        assert_eq!(fanout.attached(), 1);
    }

    #[tokio::test]
    async fn a_socket_in_rooms_before_it_is_attached_is_reached_once_attached() {
        let engine = Engine::new(EngineConfig::default(), Arc::new(Silent));
        let a = session(&engine).await;
        a.drain();
        let fanout = Fanout::default();
        fanout.update([RoomChange::Join("a".into(), "r".into())]);
        let hi = message_packets([Frame::Text("2[\"hi\"]".into())]);
        assert_eq!(fanout.broadcast(&target(&["r"], &[]), &hi, false), 0);
        fanout.attach("a".into(), a.clone());
        assert_eq!(fanout.broadcast(&target(&["r"], &[]), &hi, false), 1);
        assert_eq!(texts(&a), ["42[\"hi\"]"]);
        // A closed session is not counted.
        a.close(CloseReason::ForcedClose);
        assert_eq!(fanout.broadcast(&target(&["r"], &[]), &hi, false), 0);
    }
}
