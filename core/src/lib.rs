//! # Tidewire
//!
//! An embeddable realtime core: it speaks the Socket.IO v5 / Engine.IO v4
//! protocol so that unmodified socket.io clients connect to it, and manages
//! namespaces, sockets, events and acknowledgements.
//!
//! * [`protocol`] holds the pure codecs (no I/O): Engine.IO packets and
//!   polling payloads, Socket.IO packets with binary attachments, and the
//!   msgpack parser.
//! * [`transport`] (feature `server`) serves Engine.IO sessions over HTTP
//!   long-polling and WebSocket, and can be used on its own like npm
//!   `engine.io`; on its own listener, or through [`transport::host`] on
//!   somebody else's HTTP server.
//! * [`hub`] is the Socket.IO layer: namespaces, sockets, handlers, acks.
//! * [`bus`] carries bytes between nodes; [`cluster`] holds what they say
//!   to each other (the wire formats of `@socket.io/redis-adapter`) and the
//!   emitter.
//! * `client` (feature `client`) is a Socket.IO client over WebSocket.
//! * [`embed`] (feature `server`) is what the language bindings share: a
//!   hub with its listener, option checks, arguments as JSON text plus
//!   attachments, handler lists, middleware decisions and error codes.

pub mod protocol;

/// The version of this crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub mod ack;
pub mod bus;
#[cfg(feature = "client")]
pub mod client;
pub mod cluster;
#[cfg(feature = "server")]
pub mod embed;
pub mod engine;
pub mod hub;
pub mod limits;
pub mod presence;
pub mod recovery;
pub mod rooms;
mod time;
#[cfg(feature = "server")]
pub mod transport;
#[cfg(any(feature = "server", feature = "client"))]
mod ws_message;

/// The README's Rust examples compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
