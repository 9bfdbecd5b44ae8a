//! The cluster: hubs on several nodes acting as one. Today its wire
//! formats ([`wire`]) and the [`Emitter`], which publishes to a cluster's
//! sockets from a process that holds none.

mod emitter;
pub mod wire;

pub use emitter::{EMITTER_UID, EmitError, Emitter};
