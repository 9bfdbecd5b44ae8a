//! The wire formats of the cluster: what nodes publish to each other on the
//! [`Bus`](crate::bus::Bus), byte for byte what `@socket.io/redis-adapter`
//! 8.x publishes, so that Tidewire nodes and Node socket.io nodes form one
//! cluster. Pure encoding and decoding; the bus moves the bytes and
//! [`cluster`](crate::cluster) decides what to send.
//!
//! # Two protocols
//! A cluster speaks one of them, as the official adapter has two flavours:
//! * [`classic`] (`createAdapter`, plain Redis pub/sub, the default):
//!   broadcasts as notepack msgpack of `[uid, packet, opts]` on
//!   `<prefix>#<nsp>#` or a room's `<prefix>#<nsp>#<room>#`; requests on
//!   `<prefix>-request#<nsp>#` and answers on `<prefix>-response#<nsp>#`
//!   (or the requester's own `<prefix>-response#<nsp>#<uid>#`), as JSON
//!   unless they carry a packet. Also what `@socket.io/redis-emitter`
//!   publishes (see [`Emitter`](super::Emitter)).
//! * [`sharded`] (`createShardedAdapter`, Redis 7 sharded pub/sub):
//!   socket.io-adapter's `ClusterAdapter` messages `{type, data, uid, nsp}`,
//!   every one of a namespace on `<prefix>#<nsp>#` (broadcasts to one room
//!   on its channel in the dynamic modes, answers on the requester's), as
//!   JSON unless they carry binary.
//!
//! Receivers of both tell JSON from msgpack by the first byte (`{` is JSON).
//! Both carry event arguments and acks as [`notepack`] values: JSON's values
//! plus binary and dates, written and read as notepack.io does.

pub mod channels;
pub mod classic;
pub mod notepack;
pub mod sharded;

#[cfg(test)]
mod tests;
