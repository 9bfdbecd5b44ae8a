//! Emits to a cluster's rooms and users from a process that holds no
//! connections (a worker, a cron job, another service), wire-compatible
//! with npm `@socket.io/redis-emitter`: official socket.io nodes and
//! Tidewire nodes deliver what it publishes alike.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use tidewire::bus::MemoryBus;
//! use tidewire::cluster::Emitter;
//! use tidewire::protocol::socketio::Payload;
//! let bus = MemoryBus::new();
//! let (node, _inbound) = bus.node(16);
//! let emitter = Emitter::new(Arc::new(node));
//! emitter.to("room:general").emit("news", &Payload::json(vec!["hello".into()])).unwrap();
//! emitter.of("/admin").to_user("42").sockets_join(["vip"]).unwrap();
//! # }
//! ```

use std::sync::Arc;

use bytes::Bytes;

use super::wire::channels;
use super::wire::classic::{self, BroadcastOpts, ClassicBroadcast, Flags, Request, RoomOpts};
use super::wire::notepack::{self, Data};
use crate::bus::{Bus, BusError};
use crate::protocol::socketio::Payload;

/// The uid the official emitter publishes with (nodes never answer it).
pub const EMITTER_UID: &str = "emitter";

/// Event names socket.io reserves: an emitter refuses them.
const RESERVED: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// Why an emitter refused to publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The event name is reserved by socket.io.
    #[error("\"{0}\" is a reserved event name")]
    Reserved(String),
    /// The arguments point at binary attachments they do not have.
    #[error("the arguments reference missing attachments")]
    BadArguments,
    /// The bus refused the message.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// A publisher to a cluster's sockets: choose the namespace with
/// [`of`](Self::of), the sockets with [`to`](Self::to),
/// [`to_user`](Self::to_user) and [`except`](Self::except), then
/// [`emit`](Self::emit) or act on them. Cheap to clone; each choice returns
/// a new emitter and leaves the one it was made from as it was.
#[derive(Clone)]
pub struct Emitter {
    bus: Arc<dyn Bus>,
    prefix: Arc<str>,
    nsp: Arc<str>,
    rooms: Vec<String>,
    except: Vec<String>,
    volatile: bool,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("prefix", &self.prefix)
            .field("nsp", &self.nsp)
            .field("rooms", &self.rooms)
            .field("except", &self.except)
            .field("volatile", &self.volatile)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// An emitter on the main namespace with the default prefix
    /// (`socket.io`).
    pub fn new(bus: Arc<dyn Bus>) -> Emitter {
        Emitter {
            bus,
            prefix: channels::DEFAULT_PREFIX.into(),
            nsp: "/".into(),
            rooms: Vec::new(),
            except: Vec::new(),
            volatile: false,
        }
    }

    /// The same emitter with channel prefix `prefix` (the adapter's `key`).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Emitter {
        self.prefix = prefix.into();
        self
    }

    /// An emitter on namespace `nsp` (a leading `/` is added if missing),
    /// with no rooms chosen.
    #[must_use]
    pub fn of(&self, nsp: &str) -> Emitter {
        let nsp: Arc<str> = if nsp.starts_with('/') { nsp.into() } else { format!("/{nsp}").into() };
        Emitter { nsp, rooms: Vec::new(), except: Vec::new(), volatile: false, ..self.clone() }
    }

    /// Also reaches the members of `room`.
    #[must_use]
    pub fn to(&self, room: impl Into<String>) -> Emitter {
        let mut next = self.clone();
        let room = room.into();
        if !next.rooms.contains(&room) {
            next.rooms.push(room);
        }
        next
    }

    /// Also reaches every connection of user `user` (the room
    /// `user:<user>` Tidewire nodes put them in).
    #[must_use]
    pub fn to_user(&self, user: &str) -> Emitter {
        self.to(format!("user:{user}"))
    }

    /// Skips the members of `room`.
    #[must_use]
    pub fn except(&self, room: impl Into<String>) -> Emitter {
        let mut next = self.clone();
        let room = room.into();
        if !next.except.contains(&room) {
            next.except.push(room);
        }
        next
    }

    /// May be dropped for recipients that cannot take it now.
    #[must_use]
    pub fn volatile(&self) -> Emitter {
        Emitter { volatile: true, ..self.clone() }
    }

    fn room_opts(&self) -> RoomOpts {
        RoomOpts { rooms: self.rooms.clone(), except: self.except.clone() }
    }

    fn publish_request(&self, request: &Request) -> Result<(), EmitError> {
        let channel = channels::request_channel(&self.prefix, &self.nsp);
        Ok(self.bus.publish(&channel, Bytes::from(request.encode()))?)
    }

    /// Sends `event` to the chosen sockets of every node (on the room's own
    /// channel when exactly one room is chosen, as the official emitter).
    ///
    /// # Errors
    /// [`EmitError::Reserved`], [`EmitError::BadArguments`], or the bus's.
    pub fn emit(&self, event: &str, args: &Payload) -> Result<(), EmitError> {
        if RESERVED.contains(&event) {
            return Err(EmitError::Reserved(event.to_owned()));
        }
        let data = event_data(event, args)?;
        let message = ClassicBroadcast {
            uid: EMITTER_UID.to_owned(),
            packet: classic::Packet::event(&*self.nsp, data),
            opts: BroadcastOpts {
                rooms: self.rooms.clone(),
                except: self.except.clone(),
                flags: Flags { volatile: self.volatile.then_some(true), ..Flags::default() },
            },
        };
        Ok(self.bus.publish(&message.channel(&self.prefix), Bytes::from(message.encode()))?)
    }

    /// Makes the chosen sockets of every node join `rooms`.
    ///
    /// # Errors
    /// The bus's.
    pub fn sockets_join<R: Into<String>>(&self, rooms: impl IntoIterator<Item = R>) -> Result<(), EmitError> {
        let rooms = rooms.into_iter().map(Into::into).collect();
        self.publish_request(&Request::RemoteJoin { uid: EMITTER_UID.to_owned(), opts: self.room_opts(), rooms })
    }

    /// Makes the chosen sockets of every node leave `rooms`.
    ///
    /// # Errors
    /// The bus's.
    pub fn sockets_leave<R: Into<String>>(&self, rooms: impl IntoIterator<Item = R>) -> Result<(), EmitError> {
        let rooms = rooms.into_iter().map(Into::into).collect();
        self.publish_request(&Request::RemoteLeave { uid: EMITTER_UID.to_owned(), opts: self.room_opts(), rooms })
    }

    /// Disconnects the chosen sockets of every node; with `close`, their
    /// whole connections.
    ///
    /// # Errors
    /// The bus's.
    pub fn disconnect_sockets(&self, close: bool) -> Result<(), EmitError> {
        self.publish_request(&Request::RemoteDisconnect { uid: EMITTER_UID.to_owned(), opts: self.room_opts(), close })
    }

    /// Sends `event` to the server-side handlers of every node (acks are
    /// not possible from an emitter, as with the official one).
    ///
    /// # Errors
    /// [`EmitError::Reserved`], [`EmitError::BadArguments`], or the bus's.
    pub fn server_side_emit(&self, event: &str, args: &Payload) -> Result<(), EmitError> {
        if RESERVED.contains(&event) {
            return Err(EmitError::Reserved(event.to_owned()));
        }
        let data = event_data(event, args)?;
        self.publish_request(&Request::ServerSideEmit { uid: EMITTER_UID.to_owned(), request_id: None, data })
    }
}

fn event_data(event: &str, args: &Payload) -> Result<Vec<Data>, EmitError> {
    notepack::event_data(event, &args.data, &args.attachments).map_err(|_| EmitError::BadArguments)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::sync::mpsc;

    use super::*;
    use crate::bus::{BusMessage, MemoryBus, MemoryNode};

    async fn listener(bus: &MemoryBus, channels: &[&str]) -> (MemoryNode, mpsc::Receiver<BusMessage>) {
        let (node, rx) = bus.node(64);
        let channels: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
        node.subscribe(&channels).await.unwrap();
        (node, rx)
    }

    #[tokio::test]
    async fn publishes_what_the_official_emitter_publishes() {
        let bus = MemoryBus::new();
        let (_listening, mut rx) =
            listener(&bus, &["socket.io#/#", "socket.io#/#r1#", "socket.io-request#/admin#"]).await;
        let (node, _in) = bus.node(4);
        let emitter = Emitter::new(Arc::new(node));

        let mut args = Payload::json(vec![json!("hi")]);
        args.push_binary(Bytes::from_static(b"\x01"));
        emitter.to("r1").emit("news", &args).unwrap();
        let m = rx.recv().await.unwrap();
        assert_eq!(m.channel, "socket.io#/#r1#", "one room: its own channel");
        let b = ClassicBroadcast::decode(&m.payload).unwrap();
        assert_eq!(b.uid, "emitter");
        assert_eq!(b.packet.data, vec![Data::from("news"), Data::from("hi"), Data::Bin(Bytes::from_static(b"\x01"))]);
        assert_eq!(b.opts.rooms, vec!["r1"]);

        emitter.to("r1").to_user("7").except("muted").volatile().emit("n", &Payload::default()).unwrap();
        let m = rx.recv().await.unwrap();
        assert_eq!(m.channel, "socket.io#/#", "several rooms: the namespace channel");
        let b = ClassicBroadcast::decode(&m.payload).unwrap();
        assert_eq!(
            (b.opts.rooms, b.opts.except),
            (vec!["r1".to_owned(), "user:7".to_owned()], vec!["muted".to_owned()])
        );
        assert_eq!(b.opts.flags.volatile, Some(true));

        let admin = emitter.of("admin").to("ops");
        admin.sockets_join(["vip"]).unwrap();
        admin.sockets_leave(["lobby"]).unwrap();
        admin.disconnect_sockets(true).unwrap();
        admin.server_side_emit("reload", &Payload::json(vec![json!(1)])).unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            let m = rx.recv().await.unwrap();
            assert_eq!(m.channel, "socket.io-request#/admin#");
            got.push(Request::decode(&m.payload).unwrap());
        }
        let ops = RoomOpts { rooms: vec!["ops".into()], except: vec![] };
        assert_eq!(
            got,
            vec![
                Request::RemoteJoin { uid: "emitter".into(), opts: ops.clone(), rooms: vec!["vip".into()] },
                Request::RemoteLeave { uid: "emitter".into(), opts: ops.clone(), rooms: vec!["lobby".into()] },
                Request::RemoteDisconnect { uid: "emitter".into(), opts: ops, close: true },
                Request::ServerSideEmit {
                    uid: "emitter".into(),
                    request_id: None,
                    data: vec![Data::from("reload"), Data::from(1i64)]
                },
            ]
        );
    }

    #[tokio::test]
    async fn refuses_reserved_names_and_dangling_placeholders() {
        let bus = MemoryBus::new();
        let (node, _in) = bus.node(4);
        let emitter = Emitter::new(Arc::new(node));
        assert_eq!(emitter.emit("disconnect", &Payload::default()), Err(EmitError::Reserved("disconnect".into())));
        assert_eq!(
            emitter.server_side_emit("connect", &Payload::default()),
            Err(EmitError::Reserved("connect".into()))
        );
        let dangling = Payload::json(vec![Payload::placeholder(3)]);
        assert_eq!(emitter.emit("x", &dangling), Err(EmitError::BadArguments));
    }
}
