//! The cluster adapter: hubs on several nodes act as one server over a
//! [`Bus`], speaking the `@socket.io/redis-adapter` 8.x classic protocol
//! ([`classic`]), so Tidewire nodes and official socket.io nodes
//! (`createAdapter`) form one cluster and a team can migrate one node at a
//! time.
//!
//! Join with [`Hub::join_cluster`]; from then on the usual calls reach the
//! whole cluster:
//!
//! | call | on the bus |
//! |---|---|
//! | [`BroadcastOperator::emit`] | `[uid, packet, opts]` on the namespace channel, or on the room's channel when the broadcast names exactly one room |
//! | [`BroadcastOperator::fetch_sockets`] | REMOTE_FETCH, answers merged |
//! | [`sockets_join`](BroadcastOperator::sockets_join), [`sockets_leave`](BroadcastOperator::sockets_leave), [`disconnect_sockets`](BroadcastOperator::disconnect_sockets) | REMOTE_JOIN / LEAVE / DISCONNECT |
//! | [`BroadcastOperator::emit_with_ack`] | BROADCAST; every node answers its client count, then each ack |
//! | [`Namespace::server_side_emit`], [`Namespace::server_side_emit_with_ack`] | SERVER_SIDE_EMIT; handlers registered with [`Namespace::on_server_event`] |
//! | [`Namespace::server_count`] | `PUBSUB NUMSUB` of the request channel |
//! | [`Namespace::all_rooms`] | ALL_ROOMS |
//!
//! The [`local`](BroadcastOperator::local) flag keeps any of them on this
//! node. Every request of another node is answered (SOCKETS, ALL_ROOMS,
//! REMOTE_FETCH, BROADCAST, the legacy single-socket forms; SERVER_SIDE_EMIT
//! when a handler acks), or JavaScript nodes would wait for their timeout.
//!
//! # Interest-based subscriptions
//! The official adapter pattern-subscribes to every broadcast channel of a
//! namespace and drops what it does not need. A Tidewire node subscribes to
//! the namespace channel (broadcasts to everyone or to several rooms) and to
//! the channel of each room that has a member on this node (each socket's
//! own room included, so `to(socket_id)` from any node reaches it), and
//! follows room creation and deletion. A broadcast to one room therefore
//! costs only the nodes that hold the room. Subscription changes are sent in
//! batches by a background task.
//!
//! # Partial results
//! A requester waits for as many answers as the bus counts other
//! subscribers, up to [`ClusterConfig::request_timeout`]. A node that does
//! not answer in time does not fail the call: the result carries
//! [`Replies`], which says how many nodes were asked and answered, which
//! ones answered (Tidewire nodes name themselves in their answers; official
//! nodes do not), and which known Tidewire nodes stayed silent. Tidewire
//! nodes know each other from a heartbeat on a channel of their own
//! (official nodes never see it).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::broadcast::{BroadcastOperator, RemoteSocket};
use super::namespace::lock;
use super::{Fields, Handshake, Hub, HubInner, Namespace, Socket};
use crate::bus::{Bus, BusError, BusMessage};
use crate::cluster::wire::channels::{self, Channel};
use crate::cluster::wire::classic::{
    self, BroadcastOpts, ClassicBroadcast, FetchedSocket, Flags, RawResponse, Request, RequestType, Response, RoomOpts,
};
use crate::cluster::wire::notepack::{self, Data};
use crate::cluster::wire::sharded::{self, Body, Message};
use crate::protocol::socketio::Payload;
use crate::rooms::{Room, Target};

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
    /// room of the cluster: [`Namespace::all_rooms`] answers for this node.
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

/// Why a hub could not join a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The hub already belongs to a cluster.
    #[error("the hub already belongs to a cluster")]
    AlreadyJoined,
    /// The bus refused the subscriptions.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Who answered a request to the other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Replies {
    /// Other nodes asked (the bus's count of subscribers, minus this node).
    pub expected: usize,
    /// Nodes that answered in time.
    pub received: usize,
    /// The answering nodes that named themselves (Tidewire nodes do;
    /// official ones are only counted in [`received`](Self::received)).
    pub nodes: Vec<String>,
    /// Tidewire nodes known to be in the cluster that did not answer.
    pub silent: Vec<String>,
    /// Set when the bus could not be asked (the result is this node's only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Replies {
    /// Whether every node asked answered.
    pub fn complete(&self) -> bool {
        self.received >= self.expected && self.error.is_none()
    }
}

/// A result gathered from every node, with who answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gathered<T> {
    /// The merged result.
    pub value: T,
    /// Who answered.
    pub replies: Replies,
}

impl<T> Gathered<T> {
    /// The merged result.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> std::ops::Deref for Gathered<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
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
}

fn add(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Answers a [`Namespace::server_side_emit_with_ack`] of another node.
/// Dropping it without [`send`](Self::send) leaves that node waiting, as
/// with socket.io.
#[derive(Debug)]
pub struct ServerAck {
    cluster: Arc<Cluster>,
    nsp: String,
    request_id: String,
    requester: String,
}

impl ServerAck {
    /// Sends `value` as this node's answer.
    pub fn send(self, value: &Value) {
        let response = Response::ServerSideEmit { request_id: self.request_id, data: Some(Data::from_json(value)) };
        self.cluster.answer(&self.nsp, Some(&self.requester), &response);
    }
}

/// Handles an event sent by another node ([`Namespace::server_side_emit`]).
pub trait ServerEventHandler: Send + Sync + 'static {
    /// The event's arguments arrived; `ack` is present when the sender
    /// waits for an answer.
    fn call(&self, args: Payload, ack: Option<ServerAck>) -> super::BoxFuture<()>;
}

impl<F, Fut> ServerEventHandler for F
where
    F: Fn(Payload, Option<ServerAck>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn call(&self, args: Payload, ack: Option<ServerAck>) -> super::BoxFuture<()> {
        Box::pin(self(args, ack))
    }
}

/// A change of what this node listens to.
enum Interest {
    Sub(String),
    Unsub(String),
}

/// A hub's membership in a cluster.
pub(crate) struct Cluster {
    bus: Arc<dyn Bus>,
    config: ClusterConfig,
    uid: Arc<str>,
    /// Requests of this node waiting for answers, by request id.
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Answer>>>,
    interest: mpsc::UnboundedSender<Interest>,
    /// Namespaces whose channels the bus confirmed.
    ready: Mutex<HashSet<String>>,
    /// Other Tidewire nodes, by uid, when last heard of.
    peers: Mutex<HashMap<String, Instant>>,
    nodes_channel: String,
    /// Where presence is replicated between Tidewire nodes.
    presence_channel: String,
    /// Where recovery requests go, and this node's answers come.
    pub(crate) recovery_channels: [String; 2],
    /// Sessions kept for recovery whose rooms stay listened to.
    pub(crate) retained: Mutex<super::cluster_recovery::Retained>,
    /// This node's recovery requests waiting for answers.
    pub(crate) recovery_pending: Mutex<HashMap<String, mpsc::UnboundedSender<super::cluster_recovery::State>>>,
    pub(crate) stats: ClusterStats,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("uid", &self.uid).field("config", &self.config).finish_non_exhaustive()
    }
}

/// The heartbeat Tidewire nodes exchange on their own channel.
#[derive(Serialize, serde::Deserialize)]
struct Beat {
    uid: String,
    #[serde(default)]
    bye: bool,
    /// The digest of the sender's presence entries.
    #[serde(default)]
    presence: u64,
}

impl Hub {
    /// Joins the cluster `bus` connects to: this hub's broadcasts, fetches,
    /// room operations and server-side events reach every node, official
    /// socket.io nodes included (see [`cluster`](self)). `inbound` is the
    /// bus's receiver for this node. Resolves once the namespaces that
    /// exist are subscribed; namespaces made later are subscribed as they
    /// appear. Needs a tokio runtime.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::Arc;
    /// use tidewire::bus::MemoryBus;
    /// use tidewire::hub::{ClusterConfig, Hub};
    /// let bus = MemoryBus::new();
    /// let (a, b) = (Hub::default(), Hub::default());
    /// for hub in [&a, &b] {
    ///     let (node, inbound) = bus.node(1024);
    ///     hub.join_cluster(Arc::new(node), inbound, ClusterConfig::default()).await.unwrap();
    /// }
    /// assert_eq!(a.of("/").server_count().await.unwrap(), 2);
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ClusterError::AlreadyJoined`], or the bus's error.
    pub async fn join_cluster(
        &self,
        bus: Arc<dyn Bus>,
        inbound: mpsc::Receiver<BusMessage>,
        config: ClusterConfig,
    ) -> Result<(), ClusterError> {
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let nodes_channel = format!("{}-tidewire#nodes#", config.prefix);
        let presence_channel = format!("{}-tidewire#presence#", config.prefix);
        let recovery_channels = [
            super::cluster_recovery::recovery_channel(&config.prefix, None),
            super::cluster_recovery::recovery_channel(&config.prefix, Some(self.node_id())),
        ];
        let cluster = Arc::new(Cluster {
            bus,
            uid: self.node_id().clone(),
            pending: Mutex::default(),
            interest: interest_tx,
            ready: Mutex::default(),
            peers: Mutex::default(),
            nodes_channel,
            presence_channel,
            recovery_channels,
            retained: Mutex::default(),
            recovery_pending: Mutex::default(),
            stats: ClusterStats::default(),
            config,
        });
        if self.in_cluster() {
            return Err(ClusterError::AlreadyJoined);
        }
        // What exists now is subscribed before the hub counts as joined (a
        // refusal leaves it alone, as before).
        let mut channels = vec![cluster.nodes_channel.clone(), cluster.presence_channel.clone()];
        channels.extend(cluster.recovery_channels.iter().cloned());
        let namespaces: Vec<Namespace> = self.read().values().cloned().collect();
        for ns in &namespaces {
            channels.extend(cluster.namespace_channels(ns.name()));
            channels.extend(ns.rooms().iter().filter_map(|r| cluster.room_channel(ns.name(), r)));
        }
        cluster.bus.subscribe(&channels).await?;
        lock(&cluster.ready).extend(namespaces.iter().map(|ns| ns.name().to_owned()));
        cluster.renew_lease().await;
        self.inner().cluster.set(cluster.clone()).map_err(|_| ClusterError::AlreadyJoined)?;
        // From here room and namespace changes reach the interest task;
        // what changed during the subscription is caught up (subscribing
        // twice is harmless).
        for ns in self.read().values() {
            ns.set_presence_clustered();
            cluster.watch(ns.name());
            cluster
                .rooms_changed(ns.name(), &ns.rooms().into_iter().map(super::RoomChange::Created).collect::<Vec<_>>());
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(interest_task(Arc::downgrade(&cluster), interest_rx));
        tokio::spawn(inbound_task(weak.clone(), inbound));
        tokio::spawn(heartbeat_task(weak));
        cluster.beat(cluster.own_presence_digest(self), false);
        // The presence of the nodes already there (see `cluster_presence`).
        cluster.request_presence_sync(None);
        Ok(())
    }

    /// Joins a cluster over Redis at `url` (seed nodes separated by commas
    /// with `redis_cluster`): [`join_cluster`](Self::join_cluster) with a
    /// [`RedisBus`](crate::bus::RedisBus), which it returns (to flush and
    /// close at shutdown). Redis being down is not an error: it waits up to
    /// 5 s, then says so in the log and serves this node's clients alone
    /// while the bus keeps retrying.
    ///
    /// # Errors
    /// A bad URL ([`BusError::Backend`]), or as `join_cluster`.
    #[cfg(feature = "redis")]
    pub async fn join_redis(
        &self,
        url: &str,
        redis_cluster: bool,
        bus_config: crate::bus::RedisBusConfig,
        config: ClusterConfig,
    ) -> Result<Arc<crate::bus::RedisBus>, ClusterError> {
        let (bus, inbound) = crate::bus::RedisBus::open(url, redis_cluster, bus_config)?;
        let bus = Arc::new(bus);
        self.join_cluster(bus.clone(), inbound, config).await?;
        if bus.wait_connected(Duration::from_secs(5)).await {
            tracing::info!(uid = %self.node_id(), "joined the cluster");
        } else {
            tracing::warn!("Redis is not reachable yet: serving this node's clients alone, retrying in the background");
        }
        Ok(bus)
    }

    /// Whether this hub belongs to a cluster.
    pub fn in_cluster(&self) -> bool {
        self.inner().cluster.get().is_some()
    }

    /// The counters of this hub's cluster traffic, once it joined one.
    pub fn cluster_stats(&self) -> Option<&ClusterStats> {
        self.inner().cluster.get().map(|c| &c.stats)
    }

    /// Leaves the cluster's view of live Tidewire nodes at once (a clean
    /// shutdown), instead of after three missed heartbeats.
    pub fn announce_leaving(&self) {
        if let Some(c) = self.inner().cluster.get() {
            c.beat(0, true);
        }
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner().cluster.get()
    }
}

impl Cluster {
    fn namespace_channels(&self, nsp: &str) -> Vec<String> {
        let p = &self.config.prefix;
        match self.config.protocol {
            Protocol::Classic => vec![
                channels::broadcast_channel(p, nsp),
                channels::request_channel(p, nsp),
                channels::response_channel(p, nsp, None),
                channels::response_channel(p, nsp, Some(&self.uid)),
            ],
            Protocol::Sharded(_) => vec![sharded::channel(p, nsp), sharded::room_channel(p, nsp, &self.uid)],
        }
    }

    /// The channel of `room`'s broadcasts, when it has one of its own.
    fn room_channel(&self, nsp: &str, room: &str) -> Option<String> {
        let p = &self.config.prefix;
        match self.config.protocol {
            Protocol::Classic => Some(channels::room_channel(p, nsp, room)),
            Protocol::Sharded(sharded::SubscriptionMode::Static) => None,
            Protocol::Sharded(sharded::SubscriptionMode::Dynamic) => {
                (!sharded::looks_like_socket_id(room)).then(|| sharded::room_channel(p, nsp, room))
            }
            Protocol::Sharded(sharded::SubscriptionMode::DynamicPrivate) => Some(sharded::room_channel(p, nsp, room)),
        }
    }

    /// The channel whose subscribers are the namespace's nodes (and where
    /// requests go).
    fn request_channel(&self, nsp: &str) -> String {
        match self.config.protocol {
            Protocol::Classic => channels::request_channel(&self.config.prefix, nsp),
            Protocol::Sharded(_) => sharded::channel(&self.config.prefix, nsp),
        }
    }

    fn is_sharded(&self) -> bool {
        matches!(self.config.protocol, Protocol::Sharded(_))
    }

    /// A namespace appeared on this node.
    pub(crate) fn watch(&self, nsp: &str) {
        for c in self.namespace_channels(nsp) {
            let _ = self.interest.send(Interest::Sub(c));
        }
    }

    /// A namespace went away from this node.
    pub(crate) fn unwatch(&self, nsp: &str) {
        lock(&self.ready).remove(nsp);
        for c in self.namespace_channels(nsp) {
            let _ = self.interest.send(Interest::Unsub(c));
        }
    }

    /// Follows the rooms of a namespace.
    pub(crate) fn rooms_changed(&self, nsp: &str, changes: &[super::RoomChange]) {
        for change in changes {
            let interest = match change {
                super::RoomChange::Created(room) => self.room_channel(nsp, room).map(Interest::Sub),
                // A session kept for recovery still listens there.
                super::RoomChange::Deleted(room) if self.retains(nsp, room) => None,
                super::RoomChange::Deleted(room) => self.room_channel(nsp, room).map(Interest::Unsub),
                _ => None,
            };
            if let Some(interest) = interest {
                let _ = self.interest.send(interest);
            }
        }
    }

    pub(crate) fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<(), BusError> {
        match self.bus.publish(channel, Bytes::from(payload)) {
            Ok(()) => {
                add(&self.stats.published);
                Ok(())
            }
            Err(e) => {
                add(&self.stats.publish_failed);
                tracing::debug!(channel, error = %e, "cluster: publish refused");
                Err(e)
            }
        }
    }

    fn beat(&self, presence: u64, bye: bool) {
        let beat = Beat { uid: self.uid.to_string(), bye, presence };
        let _ = self.publish(&self.nodes_channel, serde_json::to_vec(&beat).unwrap_or_default());
    }

    /// Whether cluster-wide connection caps are on.
    pub(crate) fn has_caps(&self) -> bool {
        self.config.max_conn_per_user.is_some() || self.config.max_conn_per_ip.is_some()
    }

    fn caps_scope(&self) -> String {
        format!("{}-tidewire#caps", self.config.prefix)
    }

    /// Whether the cluster-wide per-user rate is on.
    pub(crate) fn has_user_rate(&self) -> bool {
        self.config.user_rate.is_some()
    }

    /// Counts one event of `user` against the cluster-wide rate: `None`
    /// when allowed, or how long until it would be. A bus that cannot
    /// answer allows (this node's own limits still apply).
    pub(crate) async fn check_user_rate(&self, user: &str) -> Option<Duration> {
        let rate = self.config.user_rate?;
        match self.bus.rate(&self.caps_scope(), &format!("user#{user}"), rate.interval(), rate.burst).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, "cluster rate: not checked, allowing");
                None
            }
        }
    }

    /// Keeps this node's units of the cluster-wide caps counting.
    async fn renew_lease(&self) {
        if !self.has_caps() {
            return;
        }
        if let Err(e) = self.bus.renew(&self.caps_scope(), &self.uid, self.config.heartbeat_interval * 3).await {
            tracing::warn!(error = %e, "cluster caps: lease not renewed");
        }
    }

    /// Takes the cluster-wide units a connection needs: one for `user` and
    /// one for `ip`, except those in `held`, which gets the new ones.
    /// `Err` names the cap that refused. A bus that cannot answer admits
    /// (each node's own caps still apply) and says so in the log.
    pub(crate) async fn acquire_caps(
        &self,
        user: Option<&str>,
        ip: std::net::IpAddr,
        held: &mut Vec<String>,
    ) -> Result<(), crate::limits::ConnectionRefused> {
        let scope = self.caps_scope();
        let wanted = [
            (self.config.max_conn_per_user.zip(user).map(|(cap, u)| (cap, format!("user#{u}"))), true),
            (self.config.max_conn_per_ip.map(|cap| (cap, format!("ip#{ip}"))), false),
        ];
        for (entry, per_user) in wanted {
            let Some((cap, key)) = entry else { continue };
            if held.contains(&key) {
                continue;
            }
            match self.bus.acquire(&scope, &key, &self.uid, u64::from(cap)).await {
                Ok(true) => held.push(key),
                Ok(false) => {
                    return Err(if per_user {
                        crate::limits::ConnectionRefused::PerUser
                    } else {
                        crate::limits::ConnectionRefused::PerIp
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cluster caps: not checked, admitting"),
            }
        }
        Ok(())
    }

    /// Gives back a closed connection's units.
    pub(crate) fn release_caps(self: &Arc<Self>, held: Vec<String>) {
        if held.is_empty() {
            return;
        }
        let cluster = self.clone();
        tokio::spawn(async move {
            let scope = cluster.caps_scope();
            for key in held {
                if let Err(e) = cluster.bus.release(&scope, &key, &cluster.uid).await {
                    tracing::warn!(error = %e, key, "cluster caps: unit not given back (it expires with this node's lease)");
                }
            }
        });
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.config.prefix
    }

    pub(crate) fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.config.request_timeout
    }

    pub(crate) fn presence_channel(&self) -> &str {
        &self.presence_channel
    }

    /// Forgets the Tidewire nodes silent for three heartbeats; returns them.
    fn expire_peers(&self) -> Vec<String> {
        let horizon = self.config.heartbeat_interval * 3;
        let mut gone = Vec::new();
        lock(&self.peers).retain(|uid, t| {
            let alive = t.elapsed() <= horizon;
            if !alive {
                gone.push(uid.clone());
            }
            alive
        });
        gone
    }

    /// Another Tidewire node is alive (it beat, or answered naming itself).
    /// Official nodes' uids, seen on their requests, are not recorded: they
    /// answer without naming themselves, so they would look silent.
    pub(crate) fn seen(&self, uid: &str) {
        if uid != &*self.uid {
            let mut peers = lock(&self.peers);
            match peers.get_mut(uid) {
                Some(t) => *t = crate::time::now(),
                None => {
                    peers.insert(uid.to_owned(), crate::time::now());
                }
            }
        }
    }

    /// Tidewire nodes heard of recently that are not in `answered`.
    fn silent(&self, answered: &[String]) -> Vec<String> {
        let horizon = self.config.heartbeat_interval * 3;
        let peers = lock(&self.peers);
        let mut silent: Vec<String> = peers
            .iter()
            .filter(|(uid, t)| t.elapsed() <= horizon && !answered.contains(uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        silent.sort_unstable();
        silent
    }

    // --- outgoing ------------------------------------------------------------

    /// Publishes a broadcast for the other nodes.
    pub(crate) fn publish_broadcast(
        &self,
        ns: &Namespace,
        target: &Target,
        volatile: bool,
        event: &str,
        args: &Payload,
    ) {
        let Some(data) = event_data(event, args) else { return };
        let packet = classic::Packet::event(ns.name(), data);
        let opts = BroadcastOpts {
            rooms: target.rooms.iter().map(|r| r.to_string()).collect(),
            except: target.except.iter().map(|r| r.to_string()).collect(),
            flags: Flags { volatile: volatile.then_some(true), ..Flags::default() },
        };
        match self.config.protocol {
            Protocol::Classic => {
                let message = ClassicBroadcast { uid: self.uid.to_string(), packet, opts };
                let _ = self.publish(&message.channel(&self.config.prefix), message.encode());
            }
            Protocol::Sharded(mode) => {
                let body = Body::Broadcast { packet, request_id: None, opts };
                let message = Message { uid: self.uid.to_string(), nsp: ns.name().to_owned(), body };
                let _ = self.publish(&message.channel(&self.config.prefix, mode, None), message.encode());
            }
        }
    }

    /// Publishes a request: as it is, or as its sharded equivalent (none
    /// for ALL_ROOMS and the legacy forms). Returns whether it went out.
    pub(crate) fn publish_request(&self, nsp: &str, request: &Request) -> bool {
        let payload = match self.config.protocol {
            Protocol::Classic => request.encode(),
            Protocol::Sharded(_) => match sharded_request(request) {
                Some(body) => Message { uid: self.uid.to_string(), nsp: nsp.to_owned(), body }.encode(),
                None => return false,
            },
        };
        self.publish(&self.request_channel(nsp), payload).is_ok()
    }

    /// Publishes `response` to the requester `requester`.
    fn answer(&self, nsp: &str, requester: Option<&str>, response: &Response) {
        let (channel, payload) = match self.config.protocol {
            Protocol::Classic => {
                let channel = match requester {
                    Some(uid) => response.channel(&self.config.prefix, nsp, uid, self.config.specific_response_channel),
                    None => channels::response_channel(&self.config.prefix, nsp, None),
                };
                (channel, response.encode_from(Some(&self.uid)))
            }
            Protocol::Sharded(_) => {
                let (Some(requester), Some(body)) = (requester, sharded_response(response)) else { return };
                let message = Message { uid: self.uid.to_string(), nsp: nsp.to_owned(), body };
                (sharded::room_channel(&self.config.prefix, nsp, requester), message.encode())
            }
        };
        add(&self.stats.answered);
        let _ = self.publish(&channel, payload);
    }

    fn request_id(&self) -> String {
        crate::engine::new_id()
    }

    /// Counts the other nodes of namespace `nsp`, registers a request id
    /// and, when there is anyone to ask, publishes the request `make`
    /// builds with it.
    pub(crate) async fn ask(
        self: &Arc<Self>,
        nsp: &str,
        make: impl FnOnce(String, String) -> Request,
    ) -> Result<Inflight, BusError> {
        self.ensure_subscribed(nsp).await?;
        let count = self.bus.subscriber_count(&self.request_channel(nsp)).await?;
        let request_id = self.request_id();
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(request_id.clone(), tx);
        let mut inflight =
            Inflight { cluster: self.clone(), request_id: request_id.clone(), rx, expected: count.saturating_sub(1) };
        if inflight.expected > 0 {
            let request = make(self.uid.to_string(), request_id);
            let payload = match self.config.protocol {
                Protocol::Classic => request.encode(),
                Protocol::Sharded(_) => match sharded_request(&request) {
                    Some(body) => Message { uid: self.uid.to_string(), nsp: nsp.to_owned(), body }.encode(),
                    // Not in this protocol: nobody to wait for.
                    None => {
                        inflight.expected = 0;
                        return Ok(inflight);
                    }
                },
            };
            self.publish(&self.request_channel(nsp), payload)?;
        }
        Ok(inflight)
    }

    /// Makes sure this node listens on `nsp`'s channels (so that the count
    /// of subscribers includes it) before it asks anything there.
    async fn ensure_subscribed(&self, nsp: &str) -> Result<(), BusError> {
        if lock(&self.ready).contains(nsp) {
            return Ok(());
        }
        self.bus.subscribe(&self.namespace_channels(nsp)).await?;
        lock(&self.ready).insert(nsp.to_owned());
        Ok(())
    }

    /// Gathers the answers to a request of type `asked`, one per node,
    /// for at most the request timeout.
    pub(crate) async fn gather(&self, inflight: Inflight, asked: RequestType, on: impl FnMut(Response)) -> Replies {
        self.gather_for(inflight, asked, self.config.request_timeout, on).await
    }

    /// [`gather`](Self::gather) for at most `timeout`.
    pub(crate) async fn gather_for(
        &self,
        mut inflight: Inflight,
        asked: RequestType,
        timeout: Duration,
        mut on: impl FnMut(Response),
    ) -> Replies {
        let mut replies = Replies { expected: inflight.expected, ..Replies::default() };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        while replies.received < replies.expected {
            tokio::select! {
                () = &mut deadline => break,
                raw = inflight.rx.recv() => {
                    let Some(raw) = raw else { break };
                    if let Some(uid) = raw.uid() {
                        // One answer per node: a message the bus delivered
                        // twice (a batch resent after a broken connection)
                        // must not stand for a node that never answered.
                        if replies.nodes.iter().any(|n| n == uid) {
                            continue;
                        }
                        replies.nodes.push(uid.to_owned());
                    }
                    replies.received += 1;
                    match raw.interpret(asked) {
                        Ok(response) => on(response),
                        // The official adapter counts a malformed answer as received too.
                        Err(e) => tracing::debug!(error = %e, "cluster: malformed answer"),
                    }
                }
            }
        }
        self.finish(&mut replies);
        replies
    }

    /// Fills in who stayed silent, when someone did.
    pub(crate) fn finish(&self, replies: &mut Replies) {
        if replies.received < replies.expected {
            add(&self.stats.incomplete);
            replies.silent = self.silent(&replies.nodes);
        }
    }

    pub(crate) fn uid(&self) -> &str {
        &self.uid
    }

    // --- incoming ------------------------------------------------------------

    fn on_message(self: &Arc<Self>, hub: &Hub, message: &BusMessage) {
        add(&self.stats.received);
        if message.channel == self.nodes_channel {
            match serde_json::from_slice::<Beat>(&message.payload) {
                Ok(beat) if beat.uid == *self.uid => {}
                Ok(beat) if beat.bye => {
                    lock(&self.peers).remove(&beat.uid);
                    self.forget_presence_of(hub, &beat.uid);
                }
                Ok(beat) => {
                    let newcomer = !lock(&self.peers).contains_key(&beat.uid);
                    self.seen(&beat.uid);
                    if newcomer {
                        // So that a node that just joined knows this one at once.
                        self.beat(self.own_presence_digest(hub), false);
                    }
                    self.check_presence_digest(hub, &beat.uid, beat.presence);
                }
                Err(_) => add(&self.stats.malformed),
            }
            return;
        }
        if message.channel == self.presence_channel {
            return self.on_presence_message(hub, &message.payload);
        }
        if self.recovery_channels.contains(&message.channel) {
            return self.on_recovery_message(hub, &message.payload);
        }
        if self.is_sharded() {
            return self.on_sharded(hub, &message.payload);
        }
        match channels::parse_channel(&self.config.prefix, &message.channel) {
            Some(Channel::Broadcast { .. }) => self.on_broadcast(hub, &message.payload),
            Some(Channel::Request { nsp }) => self.on_request(hub, nsp, &message.payload),
            Some(Channel::Response { .. }) => self.on_response(&message.payload),
            None => {}
        }
    }

    /// A message of the sharded protocol, on any of its channels.
    fn on_sharded(self: &Arc<Self>, hub: &Hub, payload: &[u8]) {
        let message = match Message::decode(payload) {
            Ok(m) => m,
            Err(e) => return self.malformed("message", &e),
        };
        if message.uid == *self.uid {
            return;
        }
        let Message { uid, nsp, body } = message;
        if body.is_response() {
            // Answers name their node in this protocol, official ones too.
            self.seen(&uid);
            let Some(request_id) = response_id(&body) else { return };
            let tx = lock(&self.pending).get(request_id).cloned();
            if let Some(tx) = tx {
                let _ = tx.send(Answer::Sharded { uid, body });
            }
            return;
        }
        let Some(ns) = hub.namespace(&nsp) else { return };
        match body {
            Body::Broadcast { packet, request_id: None, opts } => self.deliver(ns, &packet.data, &opts),
            Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => {}
            other => {
                if let Some(request) = classic_request(uid, other) {
                    self.handle_request(hub, &ns, request);
                }
            }
        }
    }

    pub(crate) fn malformed(&self, what: &str, error: &dyn std::fmt::Display) {
        add(&self.stats.malformed);
        tracing::debug!(%error, "cluster: malformed {what} ignored");
    }

    fn on_broadcast(&self, hub: &Hub, payload: &[u8]) {
        if ClassicBroadcast::peek_uid(payload) == Some(&*self.uid) {
            return;
        }
        let message = match ClassicBroadcast::decode(payload) {
            Ok(m) => m,
            Err(e) => return self.malformed("broadcast", &e),
        };
        if message.uid == *self.uid {
            return;
        }
        let Some(ns) = hub.namespace(&message.packet.nsp) else { return };
        self.deliver(ns, &message.packet.data, &message.opts);
    }

    /// Delivers another node's broadcast to this node's sockets.
    fn deliver(&self, ns: Namespace, data: &[Data], opts: &BroadcastOpts) {
        let Some((event, args)) = event_of(data) else {
            return self.malformed("broadcast", &"no event name");
        };
        let mut op = BroadcastOperator::new(ns, target_of(&opts.rooms, &opts.except)).local();
        if opts.flags.volatile == Some(true) {
            op = op.volatile();
        }
        op.emit(&event, args);
    }

    fn on_response(&self, payload: &[u8]) {
        let raw = match RawResponse::decode(payload) {
            Ok(r) => r,
            Err(e) => return self.malformed("response", &e),
        };
        if let Some(uid) = raw.uid() {
            self.seen(uid);
        }
        let Some(id) = raw.request_id() else { return };
        let tx = lock(&self.pending).get(id).cloned();
        if let Some(tx) = tx {
            let _ = tx.send(Answer::Classic(raw));
        }
    }

    fn on_request(self: &Arc<Self>, hub: &Hub, nsp: &str, payload: &[u8]) {
        let request = match Request::decode(payload) {
            Ok(r) => r,
            Err(e) => return self.malformed("request", &e),
        };
        // Own requests: this node applied them already and counts itself.
        if request.uid() == Some(&*self.uid) {
            return;
        }
        let Some(ns) = hub.namespace(nsp) else { return };
        self.handle_request(hub, &ns, request);
    }

    /// Applies or answers another node's request.
    fn handle_request(self: &Arc<Self>, hub: &Hub, ns: &Namespace, request: Request) {
        let nsp = ns.name();
        let local = |opts: &RoomOpts| BroadcastOperator::new(ns.clone(), target_of(&opts.rooms, &opts.except)).local();
        match request {
            Request::Sockets { uid, request_id, rooms } => {
                let sockets = local(&RoomOpts { rooms, except: Vec::new() }).local_sockets();
                let sockets = sockets.iter().map(|s| s.id().to_owned()).collect();
                self.answer(nsp, uid.as_deref(), &Response::Sockets { request_id, sockets });
            }
            Request::AllRooms { uid, request_id } => {
                let rooms = ns.rooms().iter().map(|r| r.to_string()).collect();
                self.answer(nsp, Some(&uid), &Response::AllRooms { request_id, rooms });
            }
            Request::RemoteJoin { opts, rooms, .. } => local(&opts).sockets_join(rooms),
            Request::RemoteLeave { opts, rooms, .. } => {
                let op = local(&opts);
                for room in rooms {
                    op.sockets_leave(&room);
                }
            }
            Request::RemoteDisconnect { opts, close, .. } => local(&opts).disconnect_sockets(close),
            Request::LegacyRemoteJoin { uid, request_id, sid, room } => {
                if let Some(s) = ns.socket(&sid) {
                    let _ = s.join(room);
                    self.answer(nsp, uid.as_deref(), &Response::Done { request_id });
                }
            }
            Request::LegacyRemoteLeave { uid, request_id, sid, room } => {
                if let Some(s) = ns.socket(&sid) {
                    s.leave(&room);
                    self.answer(nsp, uid.as_deref(), &Response::Done { request_id });
                }
            }
            Request::LegacyRemoteDisconnect { uid, request_id, sid, close } => {
                if let Some(s) = ns.socket(&sid) {
                    s.disconnect(close);
                    self.answer(nsp, uid.as_deref(), &Response::Done { request_id });
                }
            }
            Request::RemoteFetch { uid, request_id, opts } => {
                let sockets = local(&opts).local_sockets().iter().map(fetched).collect();
                self.answer(nsp, Some(&uid), &Response::Fetch { request_id, sockets });
            }
            Request::ServerSideEmit { uid, request_id, data } => self.on_server_event(ns, uid, request_id, &data),
            Request::Broadcast { uid, request_id, packet, opts } => {
                let Some((event, args)) = event_of(&packet.data) else {
                    return self.malformed("request", &"no event name");
                };
                let mut op = local(&RoomOpts { rooms: opts.rooms, except: opts.except });
                if opts.flags.volatile == Some(true) {
                    op = op.volatile();
                }
                let timeout = opts.flags.timeout.map_or_else(|| hub.config().ack_timeout, Duration::from_millis);
                tokio::spawn(answer_acks(self.clone(), op.timeout(timeout), uid, request_id, event, args));
            }
        }
    }

    fn on_server_event(self: &Arc<Self>, ns: &Namespace, uid: String, request_id: Option<String>, data: &[Data]) {
        let Some((event, args)) = event_of(data) else {
            return self.malformed("server-side event", &"no event name");
        };
        let Some(handler) = ns.handlers().server_events.get(&event).cloned() else {
            tracing::debug!(event, "cluster: no handler for a server-side event");
            return;
        };
        let ack = request_id.map(|request_id| ServerAck {
            cluster: self.clone(),
            nsp: ns.name().to_owned(),
            request_id,
            requester: uid,
        });
        tokio::spawn(handler.call(args, ack));
    }
}

/// Answers a BROADCAST of another node: delivers it here, publishes how
/// many sockets got it, then each of their acks as it comes.
async fn answer_acks(
    cluster: Arc<Cluster>,
    op: BroadcastOperator,
    requester: String,
    request_id: String,
    event: String,
    args: Payload,
) {
    let nsp = op.namespace().name().to_owned();
    let mut round = match op.start_ack_round(&event, args) {
        Ok(round) => round,
        Err(e) => {
            tracing::debug!(error = %e, "cluster: a broadcast with acks reached nobody here");
            let count = Response::BroadcastClientCount { request_id, client_count: 0 };
            return cluster.answer(&nsp, Some(&requester), &count);
        }
    };
    let count =
        Response::BroadcastClientCount { request_id: request_id.clone(), client_count: round.expected() as u64 };
    cluster.answer(&nsp, Some(&requester), &count);
    let deadline = tokio::time::sleep(op.flags().timeout.unwrap_or(cluster.config.request_timeout));
    tokio::pin!(deadline);
    while !round.is_complete() {
        tokio::select! {
            () = &mut deadline => break,
            answer = round.next() => match answer {
                Some(Some(payload)) => {
                    let packet = first_arg(&payload);
                    cluster.answer(&nsp, Some(&requester), &Response::BroadcastAck { request_id: request_id.clone(), packet });
                }
                Some(None) => {}
                None => break,
            },
        }
    }
    round.finish();
}

/// A request of this node waiting for answers; forgets its id when dropped.
pub(crate) struct Inflight {
    cluster: Arc<Cluster>,
    request_id: String,
    pub(crate) rx: mpsc::UnboundedReceiver<Answer>,
    pub(crate) expected: usize,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        lock(&self.cluster.pending).remove(&self.request_id);
    }
}

/// An answer to one of this node's requests, in either protocol.
pub(crate) enum Answer {
    /// A classic response, read by the type of the request it answers.
    Classic(RawResponse),
    /// A sharded response, from node `uid`.
    Sharded { uid: String, body: Body },
}

impl Answer {
    /// The answering node, when known.
    pub(crate) fn uid(&self) -> Option<&str> {
        match self {
            Answer::Classic(raw) => raw.uid(),
            Answer::Sharded { uid, .. } => Some(uid),
        }
    }

    /// The answer as a classic [`Response`] to a request of type `asked`.
    pub(crate) fn interpret(self, asked: RequestType) -> Result<Response, classic::DecodeError> {
        let body = match self {
            Answer::Classic(raw) => return raw.interpret(asked),
            Answer::Sharded { body, .. } => body,
        };
        Ok(match body {
            Body::FetchSocketsResponse { request_id, sockets } => Response::Fetch { request_id, sockets },
            Body::ServerSideEmitResponse { request_id, packet } => {
                Response::ServerSideEmit { request_id, data: packet }
            }
            Body::BroadcastClientCount { request_id, client_count } => {
                Response::BroadcastClientCount { request_id, client_count }
            }
            Body::BroadcastAck { request_id, packet } => Response::BroadcastAck { request_id, packet },
            _ => return Err(classic::DecodeError::UnexpectedResponse { asked }),
        })
    }
}

/// The request id a sharded response answers.
fn response_id(body: &Body) -> Option<&str> {
    match body {
        Body::FetchSocketsResponse { request_id, .. }
        | Body::ServerSideEmitResponse { request_id, .. }
        | Body::BroadcastClientCount { request_id, .. }
        | Body::BroadcastAck { request_id, .. } => Some(request_id),
        _ => None,
    }
}

fn broadcast_opts(opts: &RoomOpts) -> BroadcastOpts {
    BroadcastOpts { rooms: opts.rooms.clone(), except: opts.except.clone(), flags: Flags::default() }
}

fn room_opts_of(opts: BroadcastOpts) -> RoomOpts {
    RoomOpts { rooms: opts.rooms, except: opts.except }
}

/// A classic request's sharded equivalent (none for ALL_ROOMS, SOCKETS and
/// the legacy single-socket forms).
fn sharded_request(request: &Request) -> Option<Body> {
    Some(match request {
        Request::RemoteJoin { opts, rooms, .. } => {
            Body::SocketsJoin { opts: broadcast_opts(opts), rooms: rooms.clone() }
        }
        Request::RemoteLeave { opts, rooms, .. } => {
            Body::SocketsLeave { opts: broadcast_opts(opts), rooms: rooms.clone() }
        }
        Request::RemoteDisconnect { opts, close, .. } => {
            Body::DisconnectSockets { opts: broadcast_opts(opts), close: *close }
        }
        Request::RemoteFetch { request_id, opts, .. } => {
            Body::FetchSockets { opts: broadcast_opts(opts), request_id: request_id.clone() }
        }
        Request::ServerSideEmit { request_id, data, .. } => {
            Body::ServerSideEmit { request_id: request_id.clone(), packet: data.clone() }
        }
        Request::Broadcast { request_id, packet, opts, .. } => {
            Body::Broadcast { packet: packet.clone(), request_id: Some(request_id.clone()), opts: opts.clone() }
        }
        _ => return None,
    })
}

/// A sharded request as the classic request the node answers the same way.
fn classic_request(uid: String, body: Body) -> Option<Request> {
    Some(match body {
        Body::Broadcast { packet, request_id: Some(request_id), opts } => {
            Request::Broadcast { uid, request_id, packet, opts }
        }
        Body::SocketsJoin { opts, rooms } => Request::RemoteJoin { uid, opts: room_opts_of(opts), rooms },
        Body::SocketsLeave { opts, rooms } => Request::RemoteLeave { uid, opts: room_opts_of(opts), rooms },
        Body::DisconnectSockets { opts, close } => Request::RemoteDisconnect { uid, opts: room_opts_of(opts), close },
        Body::FetchSockets { opts, request_id } => Request::RemoteFetch { uid, request_id, opts: room_opts_of(opts) },
        Body::ServerSideEmit { request_id, packet } => Request::ServerSideEmit { uid, request_id, data: packet },
        _ => return None,
    })
}

/// A classic response's sharded equivalent.
fn sharded_response(response: &Response) -> Option<Body> {
    Some(match response.clone() {
        Response::Fetch { request_id, sockets } => Body::FetchSocketsResponse { request_id, sockets },
        Response::ServerSideEmit { request_id, data } => Body::ServerSideEmitResponse { request_id, packet: data },
        Response::BroadcastClientCount { request_id, client_count } => {
            Body::BroadcastClientCount { request_id, client_count }
        }
        Response::BroadcastAck { request_id, packet } => Body::BroadcastAck { request_id, packet },
        _ => return None,
    })
}

// --- conversions ---------------------------------------------------------------

/// `[event, ...args]` as the cluster protocols carry it; `None` (logged)
/// when the arguments point at attachments they do not have.
pub(crate) fn event_data(event: &str, args: &Payload) -> Option<Vec<Data>> {
    notepack::event_data(event, &args.data, &args.attachments)
        .map_err(|e| tracing::debug!(error = %e, "cluster: arguments not publishable"))
        .ok()
}

/// The event name and arguments of `[event, ...args]`.
fn event_of(data: &[Data]) -> Option<(String, Payload)> {
    let (Data::Str(event), rest) = data.split_first()? else { return None };
    let (values, attachments) = notepack::args_to_json(rest);
    Some((event.clone(), Payload { data: values, attachments }))
}

/// The first argument of an ack, as the cluster protocol carries it.
pub(crate) fn first_arg(payload: &Payload) -> Option<Data> {
    let first = payload.data.first()?;
    Data::from_json_with_attachments(first, &payload.attachments).ok()
}

/// An ack's argument from another node, as a payload.
pub(crate) fn payload_of(data: Option<Data>) -> Payload {
    match data {
        Some(d) => {
            let (values, attachments) = notepack::args_to_json(std::slice::from_ref(&d));
            Payload { data: values, attachments }
        }
        None => Payload::default(),
    }
}

pub(crate) fn target_of(rooms: &[String], except: &[String]) -> Target {
    Target {
        rooms: rooms.iter().map(|r| Room::from(r.as_str())).collect(),
        except: except.iter().map(|r| Room::from(r.as_str())).collect(),
    }
}

pub(crate) fn room_opts(target: &Target) -> RoomOpts {
    RoomOpts {
        rooms: target.rooms.iter().map(|r| r.to_string()).collect(),
        except: target.except.iter().map(|r| r.to_string()).collect(),
    }
}

fn fields_data(fields: &Fields) -> Data {
    Data::Map(fields.iter().map(|(k, v)| (k.to_owned(), Data::Str(v.to_owned()))).collect())
}

fn data_fields(data: &Data) -> Fields {
    let Data::Map(entries) = data else { return Fields::default() };
    Fields::from_pairs(entries.iter().map(|(k, v)| {
        let value = match v {
            Data::Str(s) => s.clone(),
            other => other.to_json().to_string(),
        };
        (k.clone(), value)
    }))
}

/// A local socket as REMOTE_FETCH answers describe it.
fn fetched(socket: &Socket) -> FetchedSocket {
    let h = socket.handshake();
    FetchedSocket {
        id: socket.id().to_owned(),
        handshake: classic::Handshake {
            headers: fields_data(&h.headers),
            time: httpdate::fmt_http_date(h.time),
            address: Some(h.address.to_string()),
            xdomain: h.xdomain,
            secure: h.secure,
            issued: i64::try_from(h.issued).unwrap_or(i64::MAX),
            url: Some(h.url.clone()),
            query: fields_data(&h.query),
            auth: Data::from_json(&h.auth),
            extra: Vec::new(),
        },
        rooms: socket.rooms().iter().map(|r| r.to_string()).collect(),
        data: Some(Data::from_json(&socket.data())),
    }
}

/// A socket of another node, from a REMOTE_FETCH answer.
pub(crate) fn remote_socket(ns: &Namespace, s: FetchedSocket) -> RemoteSocket {
    let h = &s.handshake;
    let address: IpAddr =
        h.address.as_deref().and_then(|a| a.parse().ok()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let issued = u64::try_from(h.issued).unwrap_or(0);
    let handshake = Handshake {
        headers: data_fields(&h.headers),
        time: UNIX_EPOCH + Duration::from_millis(issued),
        address,
        xdomain: h.xdomain,
        secure: h.secure,
        issued,
        url: h.url.clone().unwrap_or_default(),
        query: data_fields(&h.query),
        auth: h.auth.to_json(),
        remote_addr: SocketAddr::new(address, 0),
    };
    let data = s.data.as_ref().map_or(Value::Null, Data::to_json);
    RemoteSocket::remote(ns.clone(), s.id, Arc::new(handshake), s.rooms, data)
}

// --- tasks ---------------------------------------------------------------------

/// Applies subscription changes in batches: of what is waiting, the last
/// change of each channel wins.
async fn interest_task(cluster: Weak<Cluster>, mut rx: mpsc::UnboundedReceiver<Interest>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let Some(cluster) = cluster.upgrade() else { return };
        let mut last: HashMap<String, bool> = HashMap::with_capacity(batch.len());
        let mut order = Vec::with_capacity(batch.len());
        for change in batch.drain(..) {
            let (channel, on) = match change {
                Interest::Sub(c) => (c, true),
                Interest::Unsub(c) => (c, false),
            };
            if last.insert(channel.clone(), on).is_none() {
                order.push(channel);
            }
        }
        let (subscribe, unsubscribe): (Vec<String>, Vec<String>) = order.into_iter().partition(|c| last[c]);
        if !subscribe.is_empty()
            && let Err(e) = cluster.bus.subscribe(&subscribe).await
        {
            tracing::warn!(error = %e, channels = subscribe.len(), "cluster: subscribe failed");
        }
        if !unsubscribe.is_empty()
            && let Err(e) = cluster.bus.unsubscribe(&unsubscribe).await
        {
            tracing::warn!(error = %e, channels = unsubscribe.len(), "cluster: unsubscribe failed");
        }
        // Namespaces whose request channel was just subscribed are ready.
        let mut ready = lock(&cluster.ready);
        for c in &subscribe {
            match (cluster.config.protocol, channels::parse_channel(&cluster.config.prefix, c)) {
                (Protocol::Classic, Some(Channel::Request { nsp }))
                | (Protocol::Sharded(_), Some(Channel::Broadcast { nsp, room: None })) => {
                    ready.insert(nsp.to_owned());
                }
                _ => {}
            }
        }
    }
}

/// Hands each message from the bus to the hub, in order.
async fn inbound_task(hub: Weak<HubInner>, mut inbound: mpsc::Receiver<BusMessage>) {
    while let Some(message) = inbound.recv().await {
        let Some(inner) = hub.upgrade() else { return };
        let hub = Hub::from_inner(inner);
        if let Some(cluster) = hub.cluster().cloned() {
            cluster.on_message(&hub, &message);
        }
    }
}

/// Tells the other Tidewire nodes this one is alive.
async fn heartbeat_task(hub: Weak<HubInner>) {
    let interval = match hub.upgrade().and_then(|h| h.cluster.get().map(|c| c.config.heartbeat_interval)) {
        Some(i) => i,
        None => return,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        let hub = Hub::from_inner(inner);
        if let Some(c) = hub.cluster().cloned() {
            c.beat(c.own_presence_digest(&hub), false);
            c.renew_lease().await;
            c.expire_retained(&hub);
            for uid in c.expire_peers() {
                tracing::info!(node = uid, "cluster: a Tidewire node stopped beating; its presence goes");
                c.forget_presence_of(&hub, &uid);
            }
        }
    }
}

impl Namespace {
    /// Handles `event` when another node sends it with
    /// [`server_side_emit`](Self::server_side_emit) (socket.io's
    /// `io.on(event, ...)` for server-side events).
    ///
    /// # Examples
    /// ```
    /// use tidewire::hub::{Hub, ServerAck};
    /// use tidewire::protocol::socketio::Payload;
    /// let hub = Hub::default();
    /// hub.of("/").on_server_event("load?", |_args: Payload, ack: Option<ServerAck>| async move {
    ///     if let Some(ack) = ack {
    ///         ack.send(&serde_json::json!({ "sockets": 42 }));
    ///     }
    /// });
    /// ```
    pub fn on_server_event(&self, event: impl Into<String>, handler: impl ServerEventHandler) -> &Self {
        let handler: Arc<dyn ServerEventHandler> = Arc::new(handler);
        let event = event.into();
        self.update(|h| {
            h.server_events.insert(event, handler);
        });
        self
    }

    /// Sends `event` to the other nodes of the cluster (not to this one),
    /// socket.io's `serverSideEmit`. Without a cluster there is nobody to
    /// tell.
    ///
    /// # Errors
    /// The bus's, when it refuses the message.
    pub fn server_side_emit(&self, event: &str, args: &Payload) -> Result<(), BusError> {
        let Some(cluster) = self.cluster() else { return Ok(()) };
        let data = event_data(event, args).unwrap_or_else(|| vec![Data::Str(event.to_owned())]);
        let request = Request::ServerSideEmit { uid: cluster.uid().to_owned(), request_id: None, data };
        if cluster.publish_request(self.name(), &request) { Ok(()) } else { Err(BusError::Full(0)) }
    }

    /// Sends `event` to the other nodes and gathers each one's answer (the
    /// value its handler acked with), for at most `timeout` (the cluster's
    /// request timeout when `None`).
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: &Payload,
        timeout: Option<Duration>,
    ) -> Gathered<Vec<Value>> {
        let mut answers = Vec::new();
        let Some(cluster) = self.cluster() else { return Gathered::default() };
        let Some(data) = event_data(event, args) else { return Gathered::default() };
        let inflight = cluster
            .ask(self.name(), |uid, request_id| Request::ServerSideEmit { uid, request_id: Some(request_id), data })
            .await;
        let replies = match inflight {
            Ok(inflight) => {
                let timeout = timeout.unwrap_or(cluster.config.request_timeout);
                cluster
                    .gather_for(inflight, RequestType::ServerSideEmit, timeout, |r| {
                        if let Response::ServerSideEmit { data, .. } = r {
                            answers.push(data.as_ref().map_or(Value::Null, Data::to_json));
                        }
                    })
                    .await
            }
            Err(e) => Replies { error: Some(e.to_string()), ..Replies::default() },
        };
        Gathered { value: answers, replies }
    }

    /// How many nodes serve this namespace, this one included (socket.io's
    /// `serverCount`): 1 outside a cluster.
    ///
    /// # Errors
    /// The bus's, when it cannot count.
    pub async fn server_count(&self) -> Result<usize, BusError> {
        let Some(cluster) = self.cluster() else { return Ok(1) };
        cluster.ensure_subscribed(self.name()).await?;
        cluster.bus.subscriber_count(&cluster.request_channel(self.name())).await
    }

    /// Every room with a member on any node (each socket's own room
    /// included), sorted.
    pub async fn all_rooms(&self) -> Gathered<Vec<String>> {
        let mut rooms: HashSet<String> = self.rooms().iter().map(|r| r.to_string()).collect();
        let mut replies = Replies::default();
        if let Some(cluster) = self.cluster() {
            match cluster.ask(self.name(), |uid, request_id| Request::AllRooms { uid, request_id }).await {
                Ok(inflight) => {
                    replies = cluster
                        .gather(inflight, RequestType::AllRooms, |r| {
                            if let Response::AllRooms { rooms: theirs, .. } = r {
                                rooms.extend(theirs);
                            }
                        })
                        .await;
                }
                Err(e) => replies.error = Some(e.to_string()),
            }
        }
        let mut value: Vec<String> = rooms.into_iter().collect();
        value.sort_unstable();
        Gathered { value, replies }
    }
}
