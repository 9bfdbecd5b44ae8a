//! The native side of the broadcast fast path (js/fast-path.js): when a
//! socket.io `Server` uses Tidewire's adapter and is bound to Tidewire's
//! `Engine`, the adapter mirrors its rooms here (changes batched) and
//! hands each broadcast over once, encoded; the core queues it on every
//! reached socket's Engine.IO session (`tidewire::embed::fanout`).

use std::sync::Arc;

use bytes::Bytes;
use napi::Either;
use napi::bindgen_prelude::{Buffer, within_runtime_if_available};
use napi_derive::napi;
use tidewire::embed::fanout::{self, RoomChange};
use tidewire::protocol::engine::Frame;
use tidewire::rooms::Target;

use crate::host::EngineSocket;

/// The rooms of one namespace's sockets and the sessions carrying them.
#[napi]
pub struct Fanout {
    pub(crate) inner: Arc<fanout::Fanout>,
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout::new()
    }
}

#[napi]
impl Fanout {
    /// An empty fan-out.
    #[napi(constructor)]
    pub fn new() -> Fanout {
        Fanout { inner: Arc::default() }
    }

    /// Applies room changes, in order, as triples of strings: `j` (socket,
    /// room) joined, `l` (socket, room) left, `d` (socket, "") detached
    /// from its session, `r` (socket, "") removed.
    #[napi]
    pub fn update(&self, changes: Vec<String>) -> napi::Result<()> {
        if !changes.len().is_multiple_of(3) {
            return Err(napi::Error::new(napi::Status::InvalidArg, "room changes come in triples"));
        }
        let mut parsed = Vec::with_capacity(changes.len() / 3);
        let mut it = changes.into_iter();
        while let (Some(kind), Some(id), Some(room)) = (it.next(), it.next(), it.next()) {
            parsed.push(match kind.as_str() {
                "j" => RoomChange::Join(id.into(), room.into()),
                "l" => RoomChange::Leave(id.into(), room.into()),
                "d" => RoomChange::Detach(id.into()),
                "r" => RoomChange::Remove(id.into()),
                other => {
                    return Err(napi::Error::new(napi::Status::InvalidArg, format!("unknown room change {other:?}")));
                }
            });
        }
        self.inner.update(parsed);
        Ok(())
    }

    /// Attaches the socket `id` (connected) to the session carrying it.
    #[napi]
    pub fn attach(&self, id: String, socket: &EngineSocket) {
        self.inner.attach(id.into(), socket.session.clone());
    }

    /// Queues one encoded Socket.IO packet (its text, then its binary
    /// attachments) on every attached socket in `rooms` (everyone when
    /// empty) and in none of `except`; `volatile` drops it for a session
    /// that lags. Returns on how many sessions it was queued.
    #[napi]
    pub fn broadcast(
        &self,
        rooms: Vec<String>,
        except: Vec<String>,
        parts: Vec<Either<String, Buffer>>,
        volatile: bool,
    ) -> u32 {
        let packets = fanout::message_packets(parts.into_iter().map(|part| match part {
            Either::A(text) => Frame::Text(text.into()),
            Either::B(data) => Frame::Binary(Bytes::copy_from_slice(&data)),
        }));
        let target = Target {
            rooms: rooms.into_iter().map(Into::into).collect(),
            except: except.into_iter().map(Into::into).collect(),
        };
        let queued = within_runtime_if_available(|| self.inner.broadcast(&target, &packets, volatile));
        u32::try_from(queued).unwrap_or(u32::MAX)
    }
}
