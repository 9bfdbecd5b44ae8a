//! Engine.IO v4 and Socket.IO v5 codecs. Pure: no I/O, no clocks.
//!
//! * [`engine`]: Engine.IO packets, WebSocket frames and long-polling payloads.
//! * [`socketio`]: Socket.IO packets and the default JSON parser with binary
//!   attachments.
//! * `msgpack` (feature `msgpack`): the parser of npm `socket.io-msgpack-parser`.
//! * [`args`]: event arguments as Rust values, to send ([`args::IntoPayload`])
//!   and to read ([`socketio::Payload::arg`]).

pub mod args;
pub mod engine;
#[cfg(feature = "msgpack")]
pub mod msgpack;
pub mod socketio;
