//! An in-process bus: every [`MemoryNode`] of one [`MemoryBus`] is a node of
//! the same cluster.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Bus, BusError, BusFuture, BusMessage};

/// A cluster in one process. Cheap to clone; every clone is the same bus.
///
/// # Examples
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tidewire::bus::{Bus, MemoryBus};
/// let bus = MemoryBus::new();
/// let (a, _a_rx) = bus.node(64);
/// let (b, mut b_rx) = bus.node(64);
/// b.subscribe(&["news".to_owned()]).await.unwrap();
/// assert_eq!(a.subscriber_count("news").await.unwrap(), 1);
/// a.publish("news", "hello".into()).unwrap();
/// assert_eq!(b_rx.recv().await.unwrap().payload, "hello");
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    nodes: HashMap<u64, Node>,
    /// Channel -> subscribed nodes.
    channels: HashMap<String, HashSet<u64>>,
    /// Counter -> units per holder.
    counters: HashMap<String, HashMap<String, u64>>,
    /// Holder -> end of its lease.
    leases: HashMap<String, std::time::Instant>,
    /// Rate key -> theoretical arrival time (GCRA).
    rates: HashMap<String, crate::limits::GcraCell>,
    /// The origin of the rate cells' clock (set at the first rate check).
    epoch: Option<crate::limits::Epoch>,
}

#[derive(Debug)]
struct Node {
    tx: mpsc::Sender<BusMessage>,
    dropped: Arc<AtomicU64>,
    channels: HashSet<String>,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a node; its messages arrive on the receiver, which holds at
    /// most `capacity` of them (the excess is dropped and counted, see
    /// [`MemoryNode::dropped`]).
    pub fn node(&self, capacity: usize) -> (MemoryNode, mpsc::Receiver<BusMessage>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        st.nodes.insert(id, Node { tx, dropped: dropped.clone(), channels: HashSet::new() });
        (MemoryNode { bus: self.clone(), id, dropped }, rx)
    }

    /// The number of nodes attached.
    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }
}

/// One node of a [`MemoryBus`]. Dropping it (or [`leave`](Self::leave))
/// takes it out of the cluster, as a crashed process would be.
#[derive(Debug)]
pub struct MemoryNode {
    bus: MemoryBus,
    id: u64,
    dropped: Arc<AtomicU64>,
}

impl MemoryNode {
    /// Messages lost because this node's receiver was full or gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Leaves the bus: every subscription ends and later calls fail with
    /// [`BusError::Closed`].
    pub fn leave(&self) {
        let mut st = self.bus.lock();
        if let Some(node) = st.nodes.remove(&self.id) {
            for channel in node.channels {
                unsubscribe_one(&mut st, self.id, &channel);
            }
        }
    }

    fn with_node<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, BusError> {
        let mut st = self.bus.lock();
        if !st.nodes.contains_key(&self.id) {
            return Err(BusError::Closed);
        }
        Ok(f(&mut st))
    }
}

impl Drop for MemoryNode {
    fn drop(&mut self) {
        self.leave();
    }
}

fn unsubscribe_one(st: &mut State, id: u64, channel: &str) {
    if let Some(nodes) = st.channels.get_mut(channel) {
        nodes.remove(&id);
        if nodes.is_empty() {
            st.channels.remove(channel);
        }
    }
}

impl Bus for MemoryNode {
    fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BusError> {
        self.with_node(|st| {
            let Some(subscribers) = st.channels.get(channel) else { return };
            for id in subscribers {
                let Some(node) = st.nodes.get(id) else { continue };
                let message = BusMessage { channel: channel.to_owned(), payload: payload.clone() };
                if node.tx.try_send(message).is_err() {
                    node.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    }

    fn subscribe<'a>(&'a self, channels: &'a [String]) -> BusFuture<'a, ()> {
        let result = self.with_node(|st| {
            for channel in channels {
                st.channels.entry(channel.clone()).or_default().insert(self.id);
                if let Some(node) = st.nodes.get_mut(&self.id) {
                    node.channels.insert(channel.clone());
                }
            }
        });
        Box::pin(async move { result })
    }

    fn unsubscribe<'a>(&'a self, channels: &'a [String]) -> BusFuture<'a, ()> {
        let result = self.with_node(|st| {
            for channel in channels {
                unsubscribe_one(st, self.id, channel);
                if let Some(node) = st.nodes.get_mut(&self.id) {
                    node.channels.remove(channel);
                }
            }
        });
        Box::pin(async move { result })
    }

    fn subscriber_count<'a>(&'a self, channel: &'a str) -> BusFuture<'a, usize> {
        let result = self.with_node(|st| st.channels.get(channel).map_or(0, HashSet::len));
        Box::pin(async move { result })
    }

    fn acquire<'a>(&'a self, scope: &'a str, key: &'a str, holder: &'a str, cap: u64) -> BusFuture<'a, bool> {
        let result = self.with_node(|st| {
            let now = crate::time::now();
            let State { counters, leases, .. } = st;
            let units = counters.entry(format!("{scope}#count#{key}")).or_default();
            units.retain(|h, _| {
                h == holder || leases.get(&format!("{scope}#lease#{h}")).is_some_and(|until| *until > now)
            });
            if units.values().sum::<u64>() >= cap {
                return false;
            }
            *units.entry(holder.to_owned()).or_default() += 1;
            true
        });
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, scope: &'a str, key: &'a str, holder: &'a str) -> BusFuture<'a, ()> {
        let key = format!("{scope}#count#{key}");
        let result = self.with_node(|st| {
            if let Some(units) = st.counters.get_mut(&key) {
                if let Some(n) = units.get_mut(holder) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        units.remove(holder);
                    }
                }
                if units.is_empty() {
                    st.counters.remove(&key);
                }
            }
        });
        Box::pin(async move { result })
    }

    fn rate<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        interval: std::time::Duration,
        burst: u32,
    ) -> BusFuture<'a, Option<std::time::Duration>> {
        // The same GCRA as every other limit (`limits::GcraCell`), on the
        // bus's clock.
        let rate = crate::limits::Rate { count: 1, period: interval, burst: burst.max(1) };
        let now = crate::time::now();
        let result = self.with_node(|st| {
            let now = st.epoch.get_or_insert_with(|| crate::limits::Epoch::new(now)).nanos(now);
            let cell = st.rates.entry(format!("{scope}#rate#{key}")).or_default();
            cell.check(&rate, now).err().map(|limited| limited.retry_after)
        });
        Box::pin(async move { result })
    }

    fn renew<'a>(&'a self, scope: &'a str, holder: &'a str, ttl: std::time::Duration) -> BusFuture<'a, ()> {
        let result = self.with_node(|st| {
            st.leases.insert(format!("{scope}#lease#{holder}"), crate::time::now() + ttl);
        });
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ch(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn delivers_to_subscribers_in_order_including_the_publisher() {
        let bus = MemoryBus::new();
        let (a, mut a_rx) = bus.node(16);
        let (b, mut b_rx) = bus.node(16);
        let (_c, mut c_rx) = bus.node(16);
        a.subscribe(&ch(&["x"])).await.unwrap();
        b.subscribe(&ch(&["x", "y"])).await.unwrap();
        for i in 0..5u8 {
            a.publish("x", Bytes::from(vec![i])).unwrap();
        }
        b.publish("y", Bytes::from_static(b"only b")).unwrap();
        for rx in [&mut a_rx, &mut b_rx] {
            for i in 0..5u8 {
                let m = rx.recv().await.unwrap();
                assert_eq!((m.channel.as_str(), &m.payload[..]), ("x", &[i][..]));
            }
        }
        assert_eq!(b_rx.recv().await.unwrap().payload, "only b");
        assert!(a_rx.try_recv().is_err() && c_rx.try_recv().is_err(), "no stray messages");
        assert_eq!(a.subscriber_count("x").await.unwrap(), 2);
        assert_eq!(a.subscriber_count("y").await.unwrap(), 1);
        assert_eq!(a.subscriber_count("z").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn unsubscribe_leave_and_drop_remove_the_node() {
        let bus = MemoryBus::new();
        let (a, _a_rx) = bus.node(16);
        let (b, _b_rx) = bus.node(16);
        a.subscribe(&ch(&["x"])).await.unwrap();
        b.subscribe(&ch(&["x"])).await.unwrap();
        a.unsubscribe(&ch(&["x"])).await.unwrap();
        assert_eq!(b.subscriber_count("x").await.unwrap(), 1);
        b.leave();
        assert_eq!(b.publish("x", Bytes::new()), Err(BusError::Closed));
        assert_eq!(a.subscriber_count("x").await.unwrap(), 0);
        drop(b);
        drop(a);
        assert_eq!(bus.node_count(), 0);
        assert!(bus.lock().channels.is_empty(), "no channel entry left behind");
    }

    #[tokio::test]
    async fn a_full_receiver_loses_and_counts_without_blocking_the_publisher() {
        let bus = MemoryBus::new();
        let (a, _a_rx) = bus.node(16);
        let (b, mut b_rx) = bus.node(2);
        b.subscribe(&ch(&["x"])).await.unwrap();
        for i in 0..5u8 {
            a.publish("x", Bytes::from(vec![i])).unwrap();
        }
        assert_eq!(b.dropped(), 3);
        assert_eq!(&b_rx.recv().await.unwrap().payload[..], &[0]);
        assert_eq!(&b_rx.recv().await.unwrap().payload[..], &[1]);
    }

    #[tokio::test(start_paused = true)]
    async fn rates_and_leases_run_on_tokio_time_shared_by_every_node() {
        let bus = MemoryBus::new();
        let (a, _a_rx) = bus.node(4);
        let (b, _b_rx) = bus.node(4);
        let second = Duration::from_secs(1);
        // 1/s, bursts of 2, one cell for the whole cluster.
        assert_eq!(a.rate("r", "ann", second, 2).await.unwrap(), None);
        assert_eq!(b.rate("r", "ann", second, 2).await.unwrap(), None);
        assert_eq!(a.rate("r", "ann", second, 2).await.unwrap(), Some(second));
        tokio::time::advance(second).await;
        assert_eq!(b.rate("r", "ann", second, 2).await.unwrap(), None);
        // A dead holder's units stop counting when its lease runs out.
        a.renew("caps", "node-a", Duration::from_secs(15)).await.unwrap();
        assert!(a.acquire("caps", "ip", "node-a", 1).await.unwrap());
        assert!(!b.acquire("caps", "ip", "node-b", 1).await.unwrap());
        tokio::time::advance(Duration::from_secs(16)).await;
        assert!(b.acquire("caps", "ip", "node-b", 1).await.unwrap());
    }
}
