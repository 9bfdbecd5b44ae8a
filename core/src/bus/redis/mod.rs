//! A [`Bus`] over Redis pub/sub (feature `redis`).
//!
//! Two connections per node, as every Redis pub/sub client needs: one in
//! subscriber mode, one for commands (`PUBLISH`, `PUBSUB NUMSUB`). Both are
//! driven by background tasks that reconnect by themselves:
//!
//! * **Publishing** goes through a bounded queue. During an outage what is
//!   published waits in it and goes out, in order, once the command
//!   connection is back; past [`RedisBusConfig::outbound_bound`] a publish
//!   is refused with [`BusError::Full`] and counted in
//!   [`RedisBus::dropped_outbound`] (and logged).
//! * **After an outage** a node publishes again only once the subscribers
//!   of each channel it publishes to are back: Redis keeps nothing, so a
//!   message published before another node has resubscribed would reach
//!   nobody there. The publisher remembers how many subscribers Redis
//!   counted on each channel (`PUBSUB NUMSUB`, asked with each batch of
//!   publishes); after it reconnects, what it held, and what is published
//!   meanwhile, waits, in order, until each channel counts as many again,
//!   at most [`RedisBusConfig::resubscribe_wait`]. Past it the messages go
//!   out anyway, and those that reached fewer subscribers than before are
//!   counted in [`RedisBus::unconfirmed_outbound`] (and logged). Not with a
//!   Redis Cluster, where each node counts only its own subscribers.
//!   One window stays, Redis's own: Redis answers a `PUBLISH` before it
//!   writes the message to the subscribers' sockets (same event-loop turn),
//!   so a Redis killed between the two loses a message its publisher saw
//!   answered. It lasts microseconds and no pub/sub client can close it;
//!   what Redis had not answered is always sent again.
//! * **Subscriptions** are remembered: after a reconnect every channel is
//!   subscribed again before messages flow. A subscription can also die
//!   silently (a proxy or a NAT forgets the connection); every
//!   [`RedisBusConfig::probe_interval`] the node publishes to a channel of
//!   its own and, if the message does not come back within
//!   [`RedisBusConfig::probe_timeout`], nor anything else, probes once
//!   more, then replaces the subscriber connection.
//! * **A node whose subscription is lost misses** what is published to it
//!   until it has subscribed again: Redis keeps nothing. Each such gap is
//!   a new subscriber connection ([`RedisBus::connections_made`]), and
//!   logged. A connection that breaks (cut, or closed by Redis) is
//!   replaced at once (then within the reconnection backoff); what was on
//!   its way in it is lost, counted by nobody (Redis counted it
//!   delivered), and for what is published until the node has subscribed
//!   again the publishers see their messages reach fewer subscribers and,
//!   once the node is counted again, count them in
//!   [`RedisBus::missed_outbound`]. A
//!   connection that goes silent (a stalled network path, a proxy that
//!   forgot it) still counts as a subscriber for Redis, so nobody can
//!   count what it misses: the gap lasts until the probe gives up (at most
//!   [`RedisBusConfig::probe_interval`] + [`RedisBusConfig::probe_timeout`])
//!   and a new connection gets through.
//! * Redis being down at start is not an error: the tasks retry with
//!   backoff (logging each failure), [`RedisBus::wait_connected`] lets a
//!   caller wait for it, and meanwhile calls that need an answer from
//!   Redis ([`Bus::subscriber_count`]) fail with [`BusError::Backend`].
//!
//! Messages arrive on the receiver returned by [`RedisBus::connect`], which
//! holds at most [`RedisBusConfig::inbound_capacity`] of them; a node that
//! does not read loses the excess, counted in [`RedisBus::dropped_inbound`].

mod cluster;
mod scripts;
mod subscriber;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use self::scripts::{ACQUIRE, RATE, RELEASE};
use self::subscriber::{Sink, subscriber};
use super::outage::{Check, Subscribers};
use super::{Bus, BusError, BusFuture, BusMessage};

/// Settings of a [`RedisBus`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisBusConfig {
    /// Messages waiting to be published, during an outage or a burst
    /// (default 100,000).
    pub outbound_bound: usize,
    /// Messages waiting to be read by this node (default 100,000).
    pub inbound_capacity: usize,
    /// How often the subscription is probed (default 5 s).
    pub probe_interval: Duration,
    /// How long a probe may take (default 3 s). The subscriber connection
    /// is replaced when two probes in a row get no answer and nothing else
    /// arrives meanwhile: one missed deadline may be this process not
    /// running (stopped, starved) while its connection was fine.
    pub probe_timeout: Duration,
    /// Backoff between reconnection attempts: starts at this (default
    /// 100 ms) and doubles up to [`max_backoff`](Self::max_backoff).
    pub min_backoff: Duration,
    /// The largest backoff (default 5 s).
    pub max_backoff: Duration,
    /// Sharded pub/sub (Redis 7: `SPUBLISH`, `SSUBSCRIBE`, `PUBSUB
    /// SHARDNUMSUB`), what `@socket.io/redis-adapter`'s sharded adapter
    /// uses (default false: classic pub/sub). On one Redis server; not yet
    /// with a Redis Cluster, whose shard channels live on the node of
    /// their slot.
    pub sharded: bool,
    /// After a reconnect, how long publishing may wait for the channels'
    /// subscribers to be back (default 6 s: more than the other nodes'
    /// largest reconnection backoff, 5 s by default, so that a node still
    /// in its backoff when Redis returns is waited for). Zero publishes at
    /// once.
    pub resubscribe_wait: Duration,
}

impl Default for RedisBusConfig {
    fn default() -> RedisBusConfig {
        RedisBusConfig {
            outbound_bound: 100_000,
            inbound_capacity: 100_000,
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            sharded: false,
            resubscribe_wait: Duration::from_secs(6),
        }
    }
}

impl RedisBusConfig {
    /// Sets [`outbound_bound`](Self::outbound_bound).
    pub fn outbound_bound(mut self, n: usize) -> Self {
        self.outbound_bound = n.max(1);
        self
    }
    /// Sets [`inbound_capacity`](Self::inbound_capacity).
    pub fn inbound_capacity(mut self, n: usize) -> Self {
        self.inbound_capacity = n.max(1);
        self
    }
    /// Sets [`probe_interval`](Self::probe_interval) and
    /// [`probe_timeout`](Self::probe_timeout).
    pub fn probe(mut self, interval: Duration, timeout: Duration) -> Self {
        self.probe_interval = interval;
        self.probe_timeout = timeout;
        self
    }
    /// Sets [`sharded`](Self::sharded).
    pub fn sharded(mut self, yes: bool) -> Self {
        self.sharded = yes;
        self
    }
    /// Sets [`resubscribe_wait`](Self::resubscribe_wait).
    pub fn resubscribe_wait(mut self, wait: Duration) -> Self {
        self.resubscribe_wait = wait;
        self
    }
    /// Sets the reconnection backoff range.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }
}

/// One node's connection to a Redis server. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct RedisBus {
    shared: Arc<Shared>,
    outbound: mpsc::Sender<(String, Bytes)>,
}

struct Shared {
    /// The servers to connect to: one, or a Redis Cluster's seed nodes
    /// (tried in turn when one cannot be reached).
    seeds: Vec<redis::Client>,
    /// The seed in use.
    seed: std::sync::atomic::AtomicUsize,
    /// A Redis Cluster: subscriber counts are summed over its nodes.
    cluster: bool,
    /// Connections to each cluster node, for `PUBSUB NUMSUB`, by address.
    node_connections: Mutex<std::collections::HashMap<String, MultiplexedConnection>>,
    config: RedisBusConfig,
    /// The channels this node wants, resubscribed after every reconnect.
    channels: std::sync::Mutex<BTreeSet<String>>,
    /// The live subscriber connection's sink, when connected.
    sink: Mutex<Option<Sink>>,
    /// The command connection (counts, probes, counters), when connected.
    /// The publisher keeps a connection of its own.
    commands: Mutex<Option<MultiplexedConnection>>,
    /// This node's probe channel.
    probe_channel: String,
    probe_seen: Notify,
    subscribed: watch::Sender<bool>,
    /// Messages accepted by `publish` and not yet written to Redis.
    unsent: AtomicU64,
    /// Notified when `unsent` drops to zero.
    flushed: Notify,
    dropped_outbound: AtomicU64,
    /// Messages sent after an outage to fewer subscribers than before.
    unconfirmed_outbound: AtomicU64,
    /// Messages that missed a node while it was resubscribing.
    missed_outbound: AtomicU64,
    dropped_inbound: AtomicU64,
    reconnects: AtomicU64,
    /// Cancelled by [`RedisBus::close`]: a token, not a `Notify`, so that
    /// a task that was busy when it was closed (reading a message) still
    /// sees it at its next wait. With `notify_waiters` such a task missed
    /// the close and its subscriber connection stayed subscribed: a closed
    /// node went on being counted by the others.
    closing: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus").field("probe_channel", &self.probe_channel).finish_non_exhaustive()
    }
}

fn backend(e: &redis::RedisError) -> BusError {
    BusError::Backend(e.to_string())
}

impl RedisBus {
    /// A node on the Redis server at `url` (`redis://host:port/db`). Returns
    /// at once: the connections are made (and remade) in the background.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`BusError::Backend`] when `url` is not a Redis URL.
    pub fn connect(url: &str, config: RedisBusConfig) -> Result<(RedisBus, mpsc::Receiver<BusMessage>), BusError> {
        RedisBus::start(&[url], false, config)
    }

    /// [`connect`](Self::connect) to `url`, or, with `cluster`,
    /// [`connect_cluster`](Self::connect_cluster) to the seed nodes `url`
    /// lists separated by commas (what a `REDIS_URL` setting holds).
    ///
    /// # Errors
    /// As those.
    pub fn open(
        url: &str,
        cluster: bool,
        config: RedisBusConfig,
    ) -> Result<(RedisBus, mpsc::Receiver<BusMessage>), BusError> {
        if cluster {
            let seeds: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            RedisBus::connect_cluster(&seeds, config)
        } else {
            RedisBus::connect(url, config)
        }
    }

    /// A node on a Redis Cluster reached through any of `seeds` (URLs of
    /// some of its nodes, tried in turn). Pub/sub in a Redis Cluster reaches
    /// every node's subscribers wherever the message is published, so the
    /// node keeps one subscriber and one command connection, like on a
    /// single server; [`Bus::subscriber_count`] sums `PUBSUB NUMSUB` over
    /// every node of the cluster, as the official adapter does, since each
    /// subscriber is counted only by the node it is connected to.
    ///
    /// # Errors
    /// [`BusError::Backend`] when a seed is not a Redis URL, or none is given.
    pub fn connect_cluster(
        seeds: &[&str],
        config: RedisBusConfig,
    ) -> Result<(RedisBus, mpsc::Receiver<BusMessage>), BusError> {
        RedisBus::start(seeds, true, config)
    }

    fn start(
        urls: &[&str],
        cluster: bool,
        config: RedisBusConfig,
    ) -> Result<(RedisBus, mpsc::Receiver<BusMessage>), BusError> {
        if cluster && config.sharded {
            return Err(BusError::Backend("sharded pub/sub with a Redis Cluster is not supported yet".to_owned()));
        }
        let seeds =
            urls.iter().map(|u| redis::Client::open(*u).map_err(|e| backend(&e))).collect::<Result<Vec<_>, _>>()?;
        if seeds.is_empty() {
            return Err(BusError::Backend("no Redis URL given".to_owned()));
        }
        let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity.max(1));
        let (outbound_tx, outbound_rx) = mpsc::channel(config.outbound_bound.max(1));
        let shared = Arc::new(Shared {
            seeds,
            seed: std::sync::atomic::AtomicUsize::new(0),
            cluster,
            node_connections: Mutex::default(),
            probe_channel: format!("tidewire-probe#{}#", crate::engine::new_id()),
            config,
            channels: std::sync::Mutex::new(BTreeSet::new()),
            sink: Mutex::new(None),
            commands: Mutex::new(None),
            probe_seen: Notify::new(),
            subscribed: watch::channel(false).0,
            unsent: AtomicU64::new(0),
            flushed: Notify::new(),
            dropped_outbound: AtomicU64::new(0),
            unconfirmed_outbound: AtomicU64::new(0),
            missed_outbound: AtomicU64::new(0),
            dropped_inbound: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            closing: CancellationToken::new(),
        });
        tokio::spawn(publisher(shared.clone(), outbound_rx));
        tokio::spawn(subscriber(shared.clone(), inbound_tx));
        Ok((RedisBus { shared, outbound: outbound_tx }, inbound_rx))
    }

    /// Waits until the subscriber connection is up and every channel is
    /// subscribed, at most `timeout`. Returns whether it is.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.subscribed.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|up| *up)).await.is_ok_and(|r| r.is_ok())
    }

    /// Publishes refused because the outbound queue was full.
    pub fn dropped_outbound(&self) -> u64 {
        self.shared.dropped_outbound.load(Ordering::Relaxed)
    }

    /// Messages published after an outage that reached fewer subscribers
    /// than their channel counted before it: the wait for the subscribers
    /// to come back ([`RedisBusConfig::resubscribe_wait`]) ran out. (The
    /// messages refused during an outage are [`dropped_outbound`](Self::dropped_outbound).)
    pub fn unconfirmed_outbound(&self) -> u64 {
        self.shared.unconfirmed_outbound.load(Ordering::Relaxed)
    }

    /// Messages that reached fewer subscribers than their channel counted
    /// just before, the missing ones subscribed again soon after (within
    /// [`RedisBusConfig::resubscribe_wait`], at least 1 s): another node
    /// lost its subscription for a moment (its connection to Redis cut, or
    /// closed by Redis) and missed them. Counted once its channel is
    /// counted again, which happens with the publishes that follow; a
    /// room that empties on a node and fills again within the wait counts
    /// too, so it is an upper bound. Not with a Redis Cluster.
    pub fn missed_outbound(&self) -> u64 {
        self.shared.missed_outbound.load(Ordering::Relaxed)
    }

    /// Messages lost because this node's receiver was full.
    pub fn dropped_inbound(&self) -> u64 {
        self.shared.dropped_inbound.load(Ordering::Relaxed)
    }

    /// How many times the subscriber connection was (re)made.
    pub fn connections_made(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// Waits until every message published so far is written to Redis, at
    /// most `timeout` (a clean shutdown's last words). Returns whether it
    /// was.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let done = async {
            loop {
                let notified = self.shared.flushed.notified();
                if self.shared.unsent.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, done).await.is_ok()
    }

    /// Stops the background tasks; later calls fail with [`BusError::Closed`].
    pub fn close(&self) {
        self.shared.closing.cancel();
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// The seed to connect to now.
    fn client(&self) -> &redis::Client {
        &self.seeds[self.seed.load(Ordering::Relaxed) % self.seeds.len()]
    }

    /// The seed could not be reached: the next connection tries another.
    fn next_seed(&self) {
        if self.seeds.len() > 1 {
            self.seed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The command connection, connecting if needed.
    async fn commands(&self) -> Result<MultiplexedConnection, BusError> {
        let mut slot = self.commands.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.connect_commands().await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// A new connection for commands.
    async fn connect_commands(&self) -> Result<MultiplexedConnection, BusError> {
        self.client().get_multiplexed_async_connection().await.map_err(|e| {
            self.next_seed();
            backend(&e)
        })
    }

    fn publish_command(&self) -> &'static str {
        if self.config.sharded { "SPUBLISH" } else { "PUBLISH" }
    }

    /// `PUBSUB NUMSUB channel` (`SHARDNUMSUB` when sharded) of one server.
    async fn numsub(&self, c: &mut MultiplexedConnection, channel: &str) -> Result<usize, redis::RedisError> {
        let sub = if self.config.sharded { "SHARDNUMSUB" } else { "NUMSUB" };
        let (_, n): (String, usize) = redis::cmd("PUBSUB").arg(sub).arg(channel).query_async(c).await?;
        Ok(n)
    }

    /// Publishes a probe. A command connection that broke (Redis
    /// restarted, and this node published nothing since) is replaced and
    /// the probe sent again: the probe tests the subscription, not the
    /// command connection, which would otherwise stay broken and fail
    /// every probe, replacing a healthy subscriber again and again.
    async fn send_probe(&self) {
        for _ in 0..2 {
            let Ok(mut c) = self.commands().await else { return };
            let sent = redis::cmd(self.publish_command())
                .arg(&self.probe_channel)
                .arg("ping")
                .query_async::<i64>(&mut c)
                .await;
            if sent.is_ok() {
                return;
            }
            self.forget_commands().await;
        }
    }

    async fn forget_commands(&self) {
        *self.commands.lock().await = None;
    }

    /// Sleeps for `backoff` (unless closing) and doubles it.
    async fn back_off(&self, backoff: &mut Duration) {
        tokio::select! {
            () = tokio::time::sleep(*backoff) => {}
            () = self.closing.cancelled() => {}
        }
        *backoff = (*backoff * 2).min(self.config.max_backoff);
    }
}

/// Publishes the queue in order, as pipelines of what is waiting (up to
/// [`PUBLISH_BATCH`] messages per round trip). A batch that fails is
/// retried whole after a reconnect, so an outage delays messages instead of
/// losing them; a connection that breaks in the middle of a batch may
/// therefore deliver its first messages twice. After a reconnect a batch
/// waits for its channels' subscribers (see [`Subscribers`]).
async fn publisher(shared: Arc<Shared>, mut queue: mpsc::Receiver<(String, Bytes)>) {
    let mut backoff = shared.config.min_backoff;
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    // A shortfall waits at least a second: a resubscribing node is back in a few round trips.
    let wait = shared.config.resubscribe_wait.max(Duration::from_secs(1));
    let mut subscribers = Subscribers::new(REMEMBERED_CHANNELS, wait);
    // The publisher's own connection, held by nobody else: when a batch
    // fails it is dropped, so closed, before the batch is sent again. A
    // connection shared with the probes or the counters stayed open while
    // one of them waited on it, and a batch held there by a paused Redis
    // (`CLIENT PAUSE WRITE`) went out twice once Redis resumed: from the
    // old connection and from the new one.
    let mut connection: Option<MultiplexedConnection> = None;
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let sent_count = batch.len() as u64;
        loop {
            if shared.is_closed() {
                return;
            }
            match shared.send_batch(&batch, &mut subscribers, &mut connection).await {
                Ok(()) => {
                    backoff = shared.config.min_backoff;
                    if shared.unsent.fetch_sub(sent_count, Ordering::AcqRel) == sent_count {
                        shared.flushed.notify_waiters();
                    }
                    break;
                }
                Err(BusError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "redis bus: publish failed, reconnecting");
                    connection = None;
                    shared.back_off(&mut backoff).await;
                }
            }
        }
        batch.clear();
    }
}

impl Shared {
    /// Publishes `batch` in one round trip on the publisher's `connection`,
    /// after waiting for its channels' subscribers when the connection is
    /// new (Redis may have lost every subscription).
    async fn send_batch(
        &self,
        batch: &[(String, Bytes)],
        subscribers: &mut Subscribers,
        connection: &mut Option<MultiplexedConnection>,
    ) -> Result<(), BusError> {
        // A Redis Cluster counts subscribers per node: nothing to compare.
        let remember = !self.cluster;
        let mut c = match connection {
            Some(c) => c.clone(),
            None => {
                let c = self.connect_commands().await?;
                *connection = Some(c.clone());
                if remember {
                    subscribers.reconnected(tokio::time::Instant::now(), self.config.resubscribe_wait);
                }
                c
            }
        };
        let channels = || batch.iter().map(|(c, _)| c.as_str());
        let mut waiting = subscribers.waiting_for(channels());
        let started = tokio::time::Instant::now();
        while !waiting.is_empty() {
            let counts = self.numsub_many(&mut c, &waiting).await.map_err(|e| backend(&e))?;
            match subscribers.check(tokio::time::Instant::now(), &counts, self.unsent.load(Ordering::Acquire)) {
                Check::Ready => {
                    tracing::info!(waited = ?started.elapsed(), "redis bus: subscribers back, publishing again");
                    break;
                }
                Check::GaveUp(short) => {
                    tracing::warn!(
                        channels = ?short,
                        waited = ?started.elapsed(),
                        "redis bus: subscribers of before the outage not back, publishing anyway"
                    );
                    break;
                }
                Check::Again(short) => waiting = short,
            }
            tokio::select! {
                () = tokio::time::sleep(RESUBSCRIBE_POLL) => {}
                () = self.closing.cancelled() => return Err(BusError::Closed),
            }
        }
        let refresh =
            if remember { subscribers.refresh_due(tokio::time::Instant::now(), channels()) } else { Vec::new() };
        let mut pipe = redis::pipe();
        for (channel, payload) in batch {
            pipe.cmd(self.publish_command()).arg(channel).arg(payload.as_ref());
        }
        if !refresh.is_empty() {
            pipe.cmd("PUBSUB").arg(self.numsub_command()).arg(&refresh);
        }
        let mut replies: Vec<redis::Value> = pipe.query_async(&mut c).await.map_err(|e| backend(&e))?;
        let counts = if refresh.is_empty() { Vec::new() } else { numsub_counts(replies.pop()) };
        let delivered = batch
            .iter()
            .zip(&replies)
            .map(|((channel, _), n)| (channel.as_str(), redis::from_redis_value_ref::<usize>(n).unwrap_or(0)));
        let settled = subscribers.settle(tokio::time::Instant::now(), delivered, &counts);
        if settled.missed > 0 {
            let total = self.missed_outbound.fetch_add(settled.missed, Ordering::Relaxed) + settled.missed;
            tracing::warn!(
                messages = settled.missed,
                total,
                "redis bus: messages missed a node that was resubscribing (its subscription was lost)"
            );
        }
        let short = settled.unconfirmed;
        if short > 0 {
            let total = self.unconfirmed_outbound.fetch_add(short, Ordering::Relaxed) + short;
            tracing::warn!(
                messages = short,
                total,
                "redis bus: messages published after an outage reached fewer subscribers than before"
            );
        }
        Ok(())
    }

    fn numsub_command(&self) -> &'static str {
        if self.config.sharded { "SHARDNUMSUB" } else { "NUMSUB" }
    }

    /// `PUBSUB NUMSUB channels...` (`SHARDNUMSUB` when sharded).
    async fn numsub_many(
        &self,
        c: &mut MultiplexedConnection,
        channels: &[String],
    ) -> Result<Vec<(String, usize)>, redis::RedisError> {
        let reply: redis::Value = redis::cmd("PUBSUB").arg(self.numsub_command()).arg(channels).query_async(c).await?;
        Ok(numsub_counts(Some(reply)))
    }
}

/// The `(channel, count)` pairs of a `PUBSUB NUMSUB` answer (a flat array).
fn numsub_counts(reply: Option<redis::Value>) -> Vec<(String, usize)> {
    let Some(redis::Value::Array(items)) = reply else { return Vec::new() };
    items
        .chunks_exact(2)
        .filter_map(|pair| {
            let channel = redis::from_redis_value_ref::<String>(&pair[0]).ok()?;
            let n = redis::from_redis_value_ref::<usize>(&pair[1]).ok()?;
            Some((channel, n))
        })
        .collect()
}

/// How often, after a reconnect, the subscribers of the channels about to
/// be published to are counted again until they are back.
const RESUBSCRIBE_POLL: Duration = Duration::from_millis(50);

/// Most channels whose subscriber count a publisher remembers.
const REMEMBERED_CHANNELS: usize = 16_384;

/// Most messages published in one round trip (the publisher keeps one
/// pipeline in flight: a batch this large keeps a node's publishing well
/// above a million messages per second at loopback round trips).
const PUBLISH_BATCH: usize = 1024;

impl Bus for RedisBus {
    fn acquire<'a>(&'a self, scope: &'a str, key: &'a str, holder: &'a str, cap: u64) -> BusFuture<'a, bool> {
        Box::pin(async move {
            let mut c = self.shared.commands().await?;
            // EVAL, not EVALSHA: a few hundred bytes, and no script cache to miss.
            let taken: Result<i64, _> = redis::cmd("EVAL")
                .arg(ACQUIRE)
                .arg(1)
                .arg(format!("{scope}#count#{key}"))
                .arg(holder)
                .arg(cap)
                .arg(format!("{scope}#lease#"))
                .query_async(&mut c)
                .await;
            taken.map(|n| n == 1).map_err(|e| backend(&e))
        })
    }

    fn release<'a>(&'a self, scope: &'a str, key: &'a str, holder: &'a str) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.shared.commands().await?;
            let left: Result<i64, _> = redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(format!("{scope}#count#{key}"))
                .arg(holder)
                .query_async(&mut c)
                .await;
            left.map(|_| ()).map_err(|e| backend(&e))
        })
    }

    fn rate<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        interval: Duration,
        burst: u32,
    ) -> BusFuture<'a, Option<Duration>> {
        Box::pin(async move {
            let mut c = self.shared.commands().await?;
            let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            let tolerance = interval * burst.saturating_sub(1);
            let wait: Result<i64, _> = redis::cmd("EVAL")
                .arg(RATE)
                .arg(1)
                .arg(format!("{scope}#rate#{key}"))
                .arg(micros(interval).max(1))
                .arg(micros(tolerance))
                .query_async(&mut c)
                .await;
            let wait = wait.map_err(|e| backend(&e))?;
            Ok((wait > 0).then(|| Duration::from_micros(wait.unsigned_abs())))
        })
    }

    fn renew<'a>(&'a self, scope: &'a str, holder: &'a str, ttl: Duration) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let mut c = self.shared.commands().await?;
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            redis::cmd("SET")
                .arg(format!("{scope}#lease#{holder}"))
                .arg(1)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| backend(&e))
        })
    }

    fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        if self.shared.is_closed() {
            Err(BusError::Closed)
        } else {
            // Counted before it is queued, so the publisher never subtracts first.
            self.shared.unsent.fetch_add(1, Ordering::AcqRel);
            match self.outbound.try_send((channel.to_owned(), payload)) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.shared.unsent.fetch_sub(1, Ordering::AcqRel);
                    let n = self.shared.dropped_outbound.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(dropped = n, "redis bus: outbound queue full, messages dropped");
                    }
                    Err(BusError::Full(self.shared.config.outbound_bound))
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.shared.unsent.fetch_sub(1, Ordering::AcqRel);
                    Err(BusError::Closed)
                }
            }
        }
    }

    fn subscribe<'a>(&'a self, channels: &'a [String]) -> BusFuture<'a, ()> {
        Box::pin(async move {
            if self.shared.is_closed() {
                return Err(BusError::Closed);
            }
            self.shared
                .channels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(channels.iter().cloned());
            // When not connected, the subscriber subscribes on connect.
            if let Some(sink) = self.shared.sink.lock().await.as_mut() {
                sink.subscribe(channels).await.map_err(|e| backend(&e))?;
            }
            Ok(())
        })
    }

    fn unsubscribe<'a>(&'a self, channels: &'a [String]) -> BusFuture<'a, ()> {
        Box::pin(async move {
            if self.shared.is_closed() {
                return Err(BusError::Closed);
            }
            {
                let mut wanted = self.shared.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for c in channels {
                    wanted.remove(c);
                }
            }
            if let Some(sink) = self.shared.sink.lock().await.as_mut() {
                sink.unsubscribe(channels).await.map_err(|e| backend(&e))?;
            }
            Ok(())
        })
    }

    fn subscriber_count<'a>(&'a self, channel: &'a str) -> BusFuture<'a, usize> {
        Box::pin(async move {
            if self.shared.is_closed() {
                return Err(BusError::Closed);
            }
            if self.shared.cluster {
                return self.shared.cluster_numsub(channel).await;
            }
            let mut c = self.shared.commands().await?;
            match self.shared.numsub(&mut c, channel).await {
                Ok(n) => Ok(n),
                Err(e) => {
                    self.shared.forget_commands().await;
                    Err(backend(&e))
                }
            }
        })
    }
}
