//! The settings of a hub's membership in a cluster, and its counters.

use std::time::Duration;

use crate::cluster::wire::channels;
use crate::cluster::wire::sharded;

/// Settings of a hub's membership in a cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The channel prefix (the official adapter's `key`, default
    /// `socket.io`). Every node of a cluster uses the same one.
    pub prefix: String,
    /// How long a request waits for the other nodes' answers (the official
    /// adapter's `requestsTimeout`, default 5 s).
    pub request_timeout: Duration,
    /// Answers go to the requester's own response channel (the official
    /// adapter's `publishOnSpecificResponseChannel`, default false). Every
    /// node of a cluster uses the same setting.
    pub specific_response_channel: bool,
    /// How often this node tells the other Tidewire nodes it is alive
    /// (default 5 s); a node silent for three intervals is forgotten.
    pub heartbeat_interval: Duration,
    /// The wire protocol (default: classic, `createAdapter`'s).
    pub protocol: Protocol,
    /// Most connections of one user across the cluster (opt in; each node
    /// still applies its own caps too). Needs a bus that keeps counters
    /// (Redis, or the in-process bus).
    pub max_conn_per_user: Option<u32>,
    /// Most connections from one IP address across the cluster (opt in),
    /// counted when a connection joins its first namespace.
    pub max_conn_per_ip: Option<u32>,
    /// Events of one user across the cluster (opt in): a GCRA kept by the
    /// bus (in Redis: one round trip per event of a user), checked after
    /// this node's own limits.
    pub user_rate: Option<crate::limits::Rate>,
}

/// The wire protocol of a cluster; every node of a cluster uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// `@socket.io/redis-adapter`'s `createAdapter` (classic pub/sub).
    #[default]
    Classic,
    /// Its `createShardedAdapter` (Redis 7 sharded pub/sub, the bus in
    /// sharded mode: [`RedisBusConfig::sharded`](crate::bus::RedisBusConfig::sharded)),
    /// with its subscription mode. Its protocol has no request for every
    /// room of the cluster: [`Namespace::all_rooms`](crate::hub::Namespace::all_rooms) answers for this node.
    Sharded(sharded::SubscriptionMode),
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            prefix: channels::DEFAULT_PREFIX.to_owned(),
            request_timeout: Duration::from_secs(5),
            specific_response_channel: false,
            heartbeat_interval: Duration::from_secs(5),
            protocol: Protocol::Classic,
            max_conn_per_user: None,
            max_conn_per_ip: None,
            user_rate: None,
        }
    }
}

impl ClusterConfig {
    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
    /// Sets [`specific_response_channel`](Self::specific_response_channel).
    pub fn specific_response_channel(mut self, yes: bool) -> Self {
        self.specific_response_channel = yes;
        self
    }
    /// Sets the cluster-wide connection caps, per user and per IP address
    /// (`None`: no cluster-wide cap).
    pub fn connection_caps(mut self, per_user: Option<u32>, per_ip: Option<u32>) -> Self {
        self.max_conn_per_user = per_user;
        self.max_conn_per_ip = per_ip;
        self
    }
    /// Sets [`user_rate`](Self::user_rate).
    pub fn user_rate(mut self, rate: Option<crate::limits::Rate>) -> Self {
        self.user_rate = rate;
        self
    }
    /// Sets [`protocol`](Self::protocol).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }
    /// Sets [`heartbeat_interval`](Self::heartbeat_interval).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval.max(Duration::from_millis(10));
        self
    }
}

/// Counters of a hub's cluster traffic.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Messages handed to the bus.
    pub published: std::sync::atomic::AtomicU64,
    /// Messages the bus refused (full or closed).
    pub publish_failed: std::sync::atomic::AtomicU64,
    /// Messages received from the bus.
    pub received: std::sync::atomic::AtomicU64,
    /// Received messages that could not be decoded.
    pub malformed: std::sync::atomic::AtomicU64,
    /// Requests of other nodes answered.
    pub answered: std::sync::atomic::AtomicU64,
    /// Requests of this node that ended without every answer.
    pub incomplete: std::sync::atomic::AtomicU64,
    /// Requests for sessions of other nodes passed on to their owners.
    pub forwarded: std::sync::atomic::AtomicU64,
    /// Of those, the ones that got no answer (owner gone or too slow).
    pub forward_failed: std::sync::atomic::AtomicU64,
    /// Requests not passed on because too many were waiting.
    pub forward_refused: std::sync::atomic::AtomicU64,
    /// Broadcasts of other nodes a host's link wrote to its sessions
    /// itself ([`ClusterLink::deliver_directly`](super::ClusterLink::deliver_directly)).
    pub delivered_directly: std::sync::atomic::AtomicU64,
}

pub(super) fn add(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
