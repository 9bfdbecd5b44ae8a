//! The cluster: hubs on several nodes act as one server over a [`Bus`],
//! speaking the `@socket.io/redis-adapter` 8.x protocols
//! ([`classic`](wire::classic) or [`sharded`](wire::sharded)), so Tidewire
//! nodes and official socket.io nodes form one cluster and a team can
//! migrate one node at a time. The protocol is chosen once, when a hub
//! joins (`codec.rs`).
//!
//! The hub knows the cluster only through its adapter seam
//! ([`crate::hub`]'s crate-private `Adapter`): this module implements it
//! (`adapter.rs`) over its parts: requests and their answers
//! (`requests.rs`), what other nodes send (`inbound.rs`), interest-based
//! subscriptions (`interest.rs`), membership and heartbeats
//! (`membership.rs`), cluster-wide limits (`limits.rs`), presence
//! (`presence.rs`) and recovery (`recovery.rs`), and the conversions
//! between hub values and the wire's (`convert.rs`). The wire formats
//! themselves are in [`wire`]; the [`Emitter`] publishes to a cluster's
//! sockets from a process that holds none.
//!
//! Join with [`Hub::join_cluster`]; from then on the usual calls reach the
//! whole cluster:
//!
//! | call | on the bus |
//! |---|---|
//! | [`BroadcastOperator::emit`](crate::hub::BroadcastOperator::emit) | `[uid, packet, opts]` on the namespace channel, or on the room's channel when the broadcast names exactly one room |
//! | [`BroadcastOperator::fetch_sockets`] | REMOTE_FETCH, answers merged |
//! | [`sockets_join`](crate::hub::BroadcastOperator::sockets_join), [`sockets_leave`](crate::hub::BroadcastOperator::sockets_leave), [`disconnect_sockets`](crate::hub::BroadcastOperator::disconnect_sockets) | REMOTE_JOIN / LEAVE / DISCONNECT |
//! | [`BroadcastOperator::emit_with_ack`] | BROADCAST; every node answers its client count, then each ack |
//! | [`Namespace::server_side_emit`], [`Namespace::server_side_emit_with_ack`] | SERVER_SIDE_EMIT; handlers registered with [`Namespace::on_server_event`] |
//! | [`Namespace::server_count`] | `PUBSUB NUMSUB` of the request channel |
//! | [`Namespace::all_rooms`] | ALL_ROOMS |
//!
//! The [`local`](crate::hub::BroadcastOperator::local) flag keeps any of them on this
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
//!
//! [`BroadcastOperator::fetch_sockets`]: crate::hub::BroadcastOperator::fetch_sockets
//! [`BroadcastOperator::emit_with_ack`]: crate::hub::BroadcastOperator::emit_with_ack
//! [`Namespace::server_side_emit`]: crate::hub::Namespace::server_side_emit
//! [`Namespace::server_side_emit_with_ack`]: crate::hub::Namespace::server_side_emit_with_ack
//! [`Namespace::on_server_event`]: crate::hub::Namespace::on_server_event
//! [`Namespace::server_count`]: crate::hub::Namespace::server_count
//! [`Namespace::all_rooms`]: crate::hub::Namespace::all_rooms

mod adapter;
mod codec;
mod config;
mod convert;
mod embed;
mod embed_direct;
mod embed_sessions;
mod emitter;
#[cfg(feature = "server")]
pub(crate) mod forward;
mod inbound;
mod interest;
mod joining;
mod limits;
mod membership;
pub(crate) mod presence;
pub(crate) mod recovery;
mod requests;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

pub use crate::hub::{ClusterError, Gathered, Replies, ServerAck, ServerEventHandler};
pub use config::{ClusterConfig, ClusterStats, Protocol};
pub use embed::{AckReport, Carried, ClusterLink, LinkError, LinkEvent};
pub use embed_direct::LinkQueue;
pub use embed_sessions::TakenSession;
pub use emitter::{EMITTER_UID, EmitError, Emitter};

use self::adapter::Handle;
use self::codec::Answer;
use self::config::add;
use self::interest::Interest;
use crate::bus::{Bus, BusError, BusMessage};
use crate::hub::{Hub, Namespace, RoomChange, lock};

impl From<BusError> for ClusterError {
    fn from(e: BusError) -> ClusterError {
        ClusterError::Bus(e.to_string())
    }
}

/// A hub's membership in a cluster.
pub(crate) struct Cluster {
    bus: Arc<dyn Bus>,
    /// The wire protocol, chosen once.
    codec: Box<dyn codec::Codec>,
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
    pub(crate) retained: Mutex<recovery::Retained>,
    /// This node's recovery requests waiting for answers.
    pub(crate) recovery_pending: Mutex<HashMap<String, mpsc::UnboundedSender<recovery::Reply>>>,
    /// Sessions this node answered for and keeps logging for until the
    /// taker says it listens (see `recovery`): pid → what to send then.
    pub(crate) handed: Mutex<HashMap<String, recovery::Handed>>,
    pub(crate) stats: ClusterStats,
    /// Rooms this node just asked the others to join (`joining.rs`).
    joining: joining::Joining,
    /// Requests for sessions of other nodes, and of theirs for this one's.
    #[cfg(feature = "server")]
    pub(crate) forward: forward::Forwards,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("uid", &self.uid).field("config", &self.config).finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster node `uid` on `bus`, its interest changes sent to
    /// `interest` (the hub's node and a host's [`ClusterLink`] alike).
    fn new(
        bus: Arc<dyn Bus>,
        uid: Arc<str>,
        config: ClusterConfig,
        recovery_channels: [String; 2],
        interest: mpsc::UnboundedSender<Interest>,
    ) -> Cluster {
        Cluster {
            bus,
            codec: codec::codec(config.protocol, &config.prefix, config.specific_response_channel),
            pending: Mutex::default(),
            interest,
            ready: Mutex::default(),
            peers: Mutex::default(),
            nodes_channel: format!("{}-tidewire#nodes#", config.prefix),
            presence_channel: format!("{}-tidewire#presence#", config.prefix),
            recovery_channels,
            retained: Mutex::default(),
            recovery_pending: Mutex::default(),
            handed: Mutex::default(),
            stats: ClusterStats::default(),
            joining: joining::Joining::default(),
            #[cfg(feature = "server")]
            forward: forward::Forwards::new(&config.prefix, &uid),
            uid,
            config,
        }
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
    /// use tidewire::cluster::ClusterConfig;
    /// use tidewire::hub::Hub;
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
        let recovery_channels = [
            recovery::recovery_channel(&config.prefix, None),
            recovery::recovery_channel(&config.prefix, Some(self.node_id())),
        ];
        let cluster = Arc::new(Cluster::new(bus, self.node_id().clone(), config, recovery_channels, interest_tx));
        if self.in_cluster() {
            return Err(ClusterError::AlreadyJoined);
        }
        // What exists now is subscribed before the hub counts as joined (a
        // refusal leaves it alone, as before).
        let mut channels = vec![cluster.nodes_channel.clone(), cluster.presence_channel.clone()];
        channels.extend(cluster.recovery_channels.iter().cloned());
        #[cfg(feature = "server")]
        channels.push(cluster.forward.channel.clone());
        let namespaces: Vec<Namespace> = self.namespaces();
        for ns in &namespaces {
            channels.extend(cluster.namespace_channels(ns.name()));
            channels.extend(ns.rooms().iter().filter_map(|r| cluster.room_channel(ns.name(), r)));
        }
        cluster.bus.subscribe(&channels).await?;
        lock(&cluster.ready).extend(namespaces.iter().map(|ns| ns.name().to_owned()));
        cluster.renew_lease().await;
        self.install_adapter(Arc::new(Handle(cluster.clone())))?;
        // From here room and namespace changes reach the interest task;
        // what changed during the subscription is caught up (subscribing
        // twice is harmless).
        for ns in self.namespaces() {
            ns.set_presence_clustered();
            cluster.watch(ns.name());
            cluster.rooms_changed(ns.name(), &ns.rooms().into_iter().map(RoomChange::Created).collect::<Vec<_>>());
        }
        let weak = self.downgrade();
        tokio::spawn(interest::interest_task(Arc::downgrade(&cluster), interest_rx));
        tokio::spawn(inbound_task(weak.clone(), inbound));
        tokio::spawn(membership::heartbeat_task(weak));
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

    /// The counters of this hub's cluster traffic, once it joined one.
    pub fn cluster_stats(&self) -> Option<&ClusterStats> {
        self.installed_adapter()?.as_any().downcast_ref::<Handle>().map(|h| &h.0.stats)
    }

    /// Leaves the cluster's view of live Tidewire nodes at once (a clean
    /// shutdown), instead of after three missed heartbeats.
    pub fn announce_leaving(&self) {
        if let Some(c) = self.cluster() {
            c.beat(0, true);
        }
    }

    /// The cluster this hub joined, if any.
    pub(crate) fn cluster(&self) -> Option<Arc<Cluster>> {
        self.installed_adapter()?.as_any().downcast_ref::<Handle>().map(|h| h.0.clone())
    }
}

impl Cluster {
    fn namespace_channels(&self, nsp: &str) -> Vec<String> {
        self.codec.namespace_channels(nsp, &self.uid)
    }

    /// The channel of `room`'s broadcasts, when it has one of its own.
    fn room_channel(&self, nsp: &str, room: &str) -> Option<String> {
        self.codec.room_channel(nsp, room)
    }

    /// The channel whose subscribers are the namespace's nodes (and where
    /// requests go).
    fn request_channel(&self, nsp: &str) -> String {
        self.codec.request_channel(nsp)
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
    pub(crate) fn rooms_changed(&self, nsp: &str, changes: &[RoomChange]) {
        for change in changes {
            let interest = match change {
                RoomChange::Created(room) => self.room_channel(nsp, room).map(Interest::Sub),
                // A session kept for recovery still listens there.
                RoomChange::Deleted(room) if self.retains(nsp, room) => None,
                RoomChange::Deleted(room) => self.room_channel(nsp, room).map(Interest::Unsub),
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

    pub(crate) fn uid(&self) -> &str {
        &self.uid
    }
}

/// Hands each message from the bus to the hub, in order.
async fn inbound_task(hub: std::sync::Weak<crate::hub::HubInner>, mut inbound: mpsc::Receiver<BusMessage>) {
    while let Some(message) = inbound.recv().await {
        let Some(inner) = hub.upgrade() else { return };
        let hub = Hub::from_inner(inner);
        if let Some(cluster) = hub.cluster() {
            cluster.on_message(&hub, &message);
        }
    }
}
