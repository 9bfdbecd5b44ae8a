//! The decisions of the WebSocket transport, whichever code reads and
//! writes the frames: tokio-tungstenite in [`super::ws`], the host's own
//! WebSocket in [`super::host`].
//!
//! A WebSocket either opens a new session (its first frame is the OPEN
//! packet) or upgrades a polling one: `2probe` -> `3probe`, then `5`, within
//! `upgrade_timeout`; a session that has a WebSocket already refuses a
//! second one, which is accepted and closed at once, as engine.io does.

use bytes::Bytes;
use bytestring::ByteString;

use super::routing::open_packet;
use crate::engine::{Admitted, CloseReason, Engine, RequestInfo, Session, TransportKind};
use crate::protocol::engine::{Encoded, Frame, Packet};

/// What a WebSocket request was accepted for.
pub(crate) enum Target {
    /// A new session, admitted: opened once the WebSocket is up.
    New(Box<(RequestInfo, Admitted)>),
    /// A new session opened already, with its OPEN packet (the connection
    /// a host handed over, see [`super::adopt`]).
    Opened(Box<(Session, Encoded)>),
    /// The upgrade of this polling session.
    Upgrade(Session),
    /// A second WebSocket for a session that has one (or is getting one):
    /// accepted and closed at once.
    Refused,
    /// The upgrade of a session of another node, relayed to it: (forward,
    /// owner, sid).
    Relay(Box<(std::sync::Arc<dyn crate::engine::forward::Forward>, String, String)>),
}

impl Target {
    /// The target of an upgrade of `session`: refused when the session is
    /// no longer (only) on polling.
    pub(crate) fn upgrade(session: Session) -> Target {
        if session.transport() != TransportKind::Polling || session.is_upgrading() {
            Target::Refused
        } else {
            Target::Upgrade(session)
        }
    }
}

/// Opens the new session of a WebSocket whose handshake completed, and
/// returns it with its OPEN packet, the first frame to send.
pub(crate) fn open(engine: &Engine, info: &RequestInfo, admitted: Admitted) -> (Session, Encoded) {
    let session = engine.open_admitted(info, TransportKind::WebSocket, admitted);
    let open = open_packet(engine, &session, TransportKind::WebSocket);
    (session, open)
}

/// One step of the probe dance.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Send this (`3probe`) and wait for the next message.
    Reply(Encoded),
    /// The upgrade is complete: the session now runs on this WebSocket.
    Upgraded,
    /// The dance failed: close the WebSocket (the session goes on polling).
    Failed,
}

/// Handles a text message of the probe dance of `session`; `probed` says
/// whether `2probe` was answered already.
pub(crate) fn probe(session: &Session, probed: &mut bool, text: &str) -> Probe {
    match (*probed, text) {
        (false, "2probe") => {
            if !session.begin_upgrade() {
                return Probe::Failed;
            }
            *probed = true;
            Probe::Reply(Packet::Pong("probe".into()).encode())
        }
        (true, "5") => {
            session.finish_upgrade();
            Probe::Upgraded
        }
        _ => Probe::Failed,
    }
}

/// Abandons a probe dance that did not complete (timeout, closed session,
/// unexpected message, the WebSocket gone).
pub(crate) fn abort_probe(session: &Session, probed: bool) {
    if probed {
        session.abort_upgrade();
    }
}

/// Hands a text message to the session; one that is not UTF-8 or not an
/// Engine.IO packet closes it with a parse error.
pub(crate) fn receive_text(session: &Session, text: Bytes) {
    let packet = ByteString::try_from(text).map_err(|_| ()).and_then(|s| Packet::decode_text(s).map_err(|_| ()));
    match packet {
        Ok(p) => session.receive(p),
        Err(()) => session.close(CloseReason::ParseError),
    }
}

/// Hands a binary message to the session.
pub(crate) fn receive_binary(session: &Session, data: Bytes) {
    session.receive(Packet::Message(Frame::Binary(data)));
}

/// Waits for the next packets to write; `None` once the session is closed
/// (including a server close whose queue has been delivered). Cancel-safe:
/// nothing is taken from the queue before the wait is over. A close wakes
/// the writer too, so one wait serves both (and an idle connection's task
/// holds a single waiter).
pub(crate) async fn next_batch(session: &Session) -> Option<Vec<Encoded>> {
    loop {
        if session.finish_if_drained() {
            return None;
        }
        session.wait_writable().await;
        if session.is_closed() {
            return None;
        }
        let batch = session.drain();
        if !batch.is_empty() {
            return Some(batch);
        }
    }
}

/// What is still queued once the session closed: delivered before the
/// WebSocket closes (e.g. a DISCONNECT), unless the WebSocket closes on a
/// protocol error.
pub(crate) fn last_frames(session: &Session, protocol_error: bool) -> Vec<Encoded> {
    let rest = session.drain();
    if protocol_error { Vec::new() } else { rest }
}
