//! The cross-node bus: how hubs on several nodes (processes, machines)
//! reach each other.
//!
//! A [`Bus`] is plain publish/subscribe on named channels, the model of
//! Redis pub/sub: a node publishes bytes to a channel, and every node that
//! subscribed to that channel (the publisher included, if subscribed)
//! receives them, in publication order per publisher. A node learns how
//! many nodes listen on a channel with [`Bus::subscriber_count`] (Redis
//! `PUBSUB NUMSUB`), which is how a requester knows how many answers to
//! wait for.
//!
//! What travels on the channels is the cluster protocol
//! ([`cluster::wire`](crate::cluster::wire): wire-compatible with
//! `@socket.io/redis-adapter`); the bus only moves bytes.
//!
//! # Backpressure
//! [`Bus::publish`] never waits: it hands the message to the bus's ordered
//! outbound queue (for Redis: written by a background task, or kept during
//! an outage within a bound) and returns. Beyond its bound a bus refuses
//! with [`BusError::Full`] rather than buffering without limit. Being
//! synchronous, it can be called from a broadcast, which runs under no
//! runtime context, and keeps one node's messages in the order it
//! published them. Each subscription delivers into a bounded channel: a node
//! that does not read its messages loses the excess, counted, never the
//! publisher's memory.
//!
//! # Backends
//! * [`MemoryBus`]: many hubs in one process form a cluster (deterministic
//!   tests, and the default of a single node).
//! * `RedisBus` (feature `redis`): a Redis server or cluster.

mod memory;
#[cfg(feature = "redis")]
mod outage;
#[cfg(feature = "redis")]
mod redis;

use std::pin::Pin;

use bytes::Bytes;

pub use memory::{MemoryBus, MemoryNode};
#[cfg(feature = "redis")]
pub use redis::{RedisBus, RedisBusConfig};

/// A future returned by a [`Bus`].
pub type BusFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BusError>> + Send + 'a>>;

/// One message received on a subscribed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// The channel it was published on.
    pub channel: String,
    /// The bytes published.
    pub payload: Bytes,
}

/// Why a bus operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus is closed (shut down, or this node left it).
    #[error("the bus is closed")]
    Closed,
    /// The bus cannot take more right now (its outbound bound is reached).
    #[error("the bus is full: {0} messages waiting")]
    Full(usize),
    /// The backend failed (connection lost, protocol error, ...).
    #[error("bus backend error: {0}")]
    Backend(String),
}

/// Publish/subscribe between nodes. One value per node; cheap to share.
pub trait Bus: Send + Sync + 'static {
    /// Queues `payload` for `channel`, without waiting; one node's
    /// messages go out in the order they were queued.
    ///
    /// # Errors
    /// [`BusError::Closed`] or [`BusError::Full`].
    fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError>;

    /// Subscribes this node to `channels` (already subscribed ones are
    /// kept); their messages arrive on the node's receiver.
    ///
    /// # Errors
    /// [`BusError::Closed`] or [`BusError::Backend`].
    fn subscribe<'a>(&'a self, channels: &'a [String]) -> BusFuture<'a, ()>;

    /// Unsubscribes this node from `channels`.
    ///
    /// # Errors
    /// [`BusError::Closed`] or [`BusError::Backend`].
    fn unsubscribe<'a>(&'a self, channels: &'a [String]) -> BusFuture<'a, ()>;

    /// How many nodes are subscribed to `channel` (this one included).
    ///
    /// # Errors
    /// [`BusError::Closed`] or [`BusError::Backend`].
    fn subscriber_count<'a>(&'a self, channel: &'a str) -> BusFuture<'a, usize>;

    /// Counters shared by the cluster, held by nodes under leases (the
    /// cluster-wide connection caps): takes one unit of counter `key` of
    /// `scope` for `holder` unless the units of live holders (whose lease in
    /// `scope`, see [`renew`](Self::renew), runs) already reach `cap`.
    /// Atomic across the cluster. Returns whether it was taken. Units of a
    /// holder whose lease ran out stop counting.
    ///
    /// # Errors
    /// [`BusError::Backend`] when the bus keeps no counters (the default)
    /// or cannot be reached.
    fn acquire<'a>(&'a self, scope: &'a str, key: &'a str, holder: &'a str, cap: u64) -> BusFuture<'a, bool> {
        let _ = (scope, key, holder, cap);
        no_counters()
    }

    /// Gives back one unit of counter `key` of `scope` taken by `holder`.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    fn release<'a>(&'a self, scope: &'a str, key: &'a str, holder: &'a str) -> BusFuture<'a, ()> {
        let _ = (scope, key, holder);
        no_counters()
    }

    /// Extends `holder`'s lease in `scope` to `ttl` from now.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    fn renew<'a>(&'a self, scope: &'a str, holder: &'a str, ttl: std::time::Duration) -> BusFuture<'a, ()> {
        let _ = (scope, holder, ttl);
        no_counters()
    }

    /// A GCRA rate limit shared by the cluster (the cluster-wide per-user
    /// rate): one event of `key` in `scope`, allowed at one per `interval`
    /// with `burst` at once. Returns `None` when allowed, or how long until
    /// it would be. Atomic across the cluster, one round trip.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    fn rate<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        interval: std::time::Duration,
        burst: u32,
    ) -> BusFuture<'a, Option<std::time::Duration>> {
        let _ = (scope, key, interval, burst);
        no_counters()
    }
}

/// What the counter methods of a bus that keeps none answer.
fn no_counters<'a, T: Send + 'a>() -> BusFuture<'a, T> {
    Box::pin(async { Err(BusError::Backend("this bus keeps no counters".to_owned())) })
}
