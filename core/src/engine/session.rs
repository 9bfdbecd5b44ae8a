//! One Engine.IO session: outbound queue, heartbeat, upgrade state, close.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::time::DelayQueue;

use super::{CloseReason, Connection, EngineConfig, EngineInner, EngineStats, SlowConsumerPolicy};
use crate::protocol::engine::{Encoded, Frame, Packet};

/// How long [`Session::close_after_flush`] waits for the client to collect
/// its last packets.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a session whose queue overflowed waits, at most, for its
/// connection to queue the answers it still owes and close it (see
/// [`Connection::on_overflow`]) before it closes as a slow consumer anyway.
pub const OVERFLOW_GRACE: Duration = Duration::from_secs(6);

/// How long the GET of a long-polling session its client just closed may
/// still arrive to get its noop.
const CLIENT_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Most recently closed sessions remembered for their last GET.
const MAX_CLIENT_CLOSES: usize = 1024;

/// Long-polling sessions whose client sent a close packet while it had no
/// GET pending: the GET it sent just before (which may arrive after the
/// POST) gets `200 6` instead of `400 Session ID unknown`, as engine.io
/// answers it. Bounded in count and time.
#[derive(Debug, Default)]
pub(crate) struct ClientCloses(Mutex<VecDeque<(Arc<str>, Instant)>>);

impl ClientCloses {
    fn record(&self, sid: &Arc<str>) {
        let now = Instant::now();
        let mut q = lock(&self.0);
        while q.front().is_some_and(|(_, at)| now.duration_since(*at) > CLIENT_CLOSE_GRACE)
            || q.len() >= MAX_CLIENT_CLOSES
        {
            q.pop_front();
        }
        q.push_back((sid.clone(), now));
    }

    /// Whether `sid` was closed by its client just now; forgets it.
    pub(crate) fn take(&self, sid: &str) -> bool {
        let now = Instant::now();
        let mut q = lock(&self.0);
        match q.iter().position(|(s, at)| &**s == sid && now.duration_since(*at) <= CLIENT_CLOSE_GRACE) {
            Some(i) => {
                q.remove(i);
                true
            }
            None => false,
        }
    }
}

impl super::Engine {
    /// Whether the long-polling session `sid` was just closed by its client
    /// (its last GET gets a noop); forgets it.
    pub(crate) fn take_client_close(&self, sid: &str) -> bool {
        self.inner.client_closes.take(sid)
    }
}

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// The outbound queue is full (the session has been closed as a slow
    /// consumer, unless the send was volatile).
    #[error("outbound queue full")]
    Full,
}

/// A handle on one Engine.IO session. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("sid", &self.inner.sid).field("closed", &self.is_closed()).finish()
    }
}

struct Inner {
    sid: Arc<str>,
    engine: Weak<EngineInner>,
    /// The engine's counters, held directly: sends and drains update them
    /// per packet, where upgrading `engine` would cost two more atomics.
    stats: Arc<EngineStats>,
    bounds: Bounds,
    state: Mutex<State>,
    outbound: Mutex<Outbound>,
    /// Woken when packets are queued, the upgrade starts, or the session closes.
    writable: Notify,
    /// Set by a pong, cleared when a ping is sent: a pong that arrives
    /// unasked cannot answer the next ping in advance.
    ponged: AtomicBool,
    /// When the last pong arrived (the next ping is due an interval later).
    pong_at: Mutex<Option<Instant>>,
    /// Woken (all waiters) when the session closes; `closing` is the state.
    closed: Notify,
    closing: AtomicBool,
    /// Set by `close_after_flush`: no new packets; close once written.
    draining: AtomicBool,
    /// Set when the queue overflowed and the connection took the close in
    /// hand: only answers are queued (up to twice the bounds) until it
    /// closes the session.
    overflowed: AtomicBool,
    /// Whether the connection closes the session itself on an overflow
    /// ([`Connection::cuts_on_overflow`], asked when it is attached).
    cuts_on_overflow: AtomicBool,
    reason: Mutex<Option<CloseReason>>,
    conn: Mutex<ConnSlot>,
}

/// The outbound queue's limits (copied from the engine's configuration;
/// 32-bit, as a session holds a copy).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    packets: u32,
    bytes: u32,
    policy: SlowConsumerPolicy,
}

impl Bounds {
    /// Volatile packets are dropped, not queued, past half of either bound:
    /// a client that lags gets room for what matters.
    fn over_soft_mark(&self, q: &Outbound) -> bool {
        q.packets.len() * 2 > self.packets as usize || q.bytes * 2 > self.bytes as usize
    }

    fn over(&self, packets: usize, bytes: usize) -> bool {
        packets > self.packets as usize || bytes > self.bytes as usize
    }

    /// Twice the bounds, for the answers queued after an overflow; nothing
    /// is dropped to make room for them.
    fn doubled(self) -> Bounds {
        Bounds {
            packets: self.packets.saturating_mul(2),
            bytes: self.bytes.saturating_mul(2),
            policy: SlowConsumerPolicy::Disconnect,
        }
    }
}

/// What is being queued: ordinary packets, volatile ones (dropped first),
/// or answers the server owes (still queued after an overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Normal,
    Volatile,
    Answer,
}

/// Packets waiting for the transport, their size, and which of them are
/// volatile (positions in `packets`: the queue only grows at the back and
/// is drained whole, so positions stay valid).
#[derive(Default)]
struct Outbound {
    packets: VecDeque<Encoded>,
    bytes: usize,
    /// Boxed: rarely used, and every idle session holds one (8 bytes
    /// instead of a `Vec`'s 24).
    #[allow(clippy::box_collection)]
    volatile: Option<Box<Vec<std::ops::Range<usize>>>>,
}

impl Outbound {
    /// Removes every queued volatile packet (the drop-volatile policy's
    /// first resort). Returns how many were dropped.
    fn drop_volatile(&mut self) -> usize {
        let Some(units) = self.volatile.take() else { return 0 };
        let dropped = units.len();
        // Units are in queue order and do not overlap; a unit (a packet and
        // its binary attachments) goes whole.
        let mut next = units.iter().peekable();
        let mut index = 0;
        let mut bytes = self.bytes;
        self.packets.retain(|p| {
            while next.peek().is_some_and(|u| u.end <= index) {
                next.next();
            }
            let keep = !next.peek().is_some_and(|u| u.contains(&index));
            if !keep {
                bytes -= p.len();
            }
            index += 1;
            keep
        });
        self.bytes = bytes;
        dropped
    }
}

enum ConnSlot {
    Pending,
    Attached(Box<dyn Connection>),
    Done,
}

#[derive(Debug)]
struct State {
    transport: TransportKind,
    upgrading: bool,
    /// Upgrades begun so far: tells an upgrade from a later one.
    upgrades: u32,
    get_active: bool,
    post_active: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A new unguessable id: 15 random bytes as 20 base64url characters, like
/// socket.io's session and socket ids.
pub fn new_id() -> String {
    let mut bytes = [0u8; 15];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Session {
    pub(super) fn new(
        sid: Arc<str>,
        engine: Weak<EngineInner>,
        stats: Arc<EngineStats>,
        config: &EngineConfig,
        transport: TransportKind,
    ) -> Session {
        Session {
            inner: Arc::new(Inner {
                sid,
                engine,
                stats,
                bounds: Bounds {
                    packets: u32::try_from(config.max_buffered_packets).unwrap_or(u32::MAX),
                    bytes: u32::try_from(config.max_buffered_bytes).unwrap_or(u32::MAX),
                    policy: config.slow_consumer,
                },
                state: Mutex::new(State {
                    transport,
                    upgrading: false,
                    upgrades: 0,
                    get_active: false,
                    post_active: false,
                }),
                outbound: Mutex::new(Outbound::default()),
                writable: Notify::new(),
                ponged: AtomicBool::new(false),
                pong_at: Mutex::new(None),
                closed: Notify::new(),
                closing: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                overflowed: AtomicBool::new(false),
                cuts_on_overflow: AtomicBool::new(false),
                reason: Mutex::new(None),
                conn: Mutex::new(ConnSlot::Pending),
            }),
        }
    }

    /// The session id.
    pub fn sid(&self) -> &str {
        &self.inner.sid
    }

    pub(super) fn sid_arc(&self) -> Arc<str> {
        self.inner.sid.clone()
    }

    /// Whether the session has closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        *lock(&self.inner.reason)
    }

    /// Completes when the session closes.
    pub async fn closed(&self) {
        // A `Notified` made before the check sees a later `notify_waiters`.
        let notified = self.inner.closed.notified();
        if self.is_closed() {
            return;
        }
        notified.await;
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        lock(&self.inner.state).transport
    }

    /// Whether a message queued now would be written at once (engine.io's
    /// `transport.writable`, which socket.io checks before a volatile
    /// packet): over long-polling, a GET is waiting and nothing is queued;
    /// over WebSocket, nothing is queued.
    pub fn is_writable(&self) -> bool {
        if self.is_closed() || self.is_draining() || !lock(&self.inner.outbound).packets.is_empty() {
            return false;
        }
        let st = lock(&self.inner.state);
        st.transport == TransportKind::WebSocket || st.get_active
    }

    /// Queues an application message.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the session closed; [`SendError::Full`]
    /// when the queue is full, and the session is then closed as a slow
    /// consumer.
    pub fn send_frame(&self, frame: Frame) -> Result<(), SendError> {
        self.send(std::iter::once(Packet::Message(frame).encode()))
    }

    /// Queues encoded packets as one unit (a Socket.IO packet and its
    /// attachments stay together).
    ///
    /// # Errors
    /// [`SendError::Closed`] once the session closed; [`SendError::Full`]
    /// when the queue is over its bounds (in packets or bytes), and the
    /// session is then closed as a slow consumer (under
    /// [`SlowConsumerPolicy::DropVolatileFirst`], only if dropping the
    /// queued volatile packets does not make room): by its connection,
    /// once it has queued the answers it owes
    /// ([`Connection::on_overflow`]), or at once.
    pub fn send(&self, packets: impl IntoIterator<Item = Encoded>) -> Result<(), SendError> {
        let r = self.push(packets, Class::Normal);
        if r == Err(SendError::Full) {
            self.overflow();
        }
        r
    }

    /// Queues answers the server owes the client (acknowledgements, the
    /// notice of a cut, a DISCONNECT): as [`send`](Self::send), except that
    /// once the queue has overflowed and the connection is closing it
    /// ([`Connection::on_overflow`]), answers are still queued, up to twice
    /// the bounds, while everything else is dropped. So every event the
    /// server handled gets its answer even from a client that lagged.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_answer(&self, packets: impl IntoIterator<Item = Encoded>) -> Result<(), SendError> {
        let r = self.push(packets, Class::Answer);
        if r == Err(SendError::Full) {
            if self.inner.overflowed.load(Ordering::Acquire) {
                // Past twice the bounds: nothing more is owed to a client
                // that reads nothing.
                self.close_after_flush_with(CloseReason::SlowConsumer, false);
            } else {
                self.overflow();
            }
        }
        r
    }

    /// The queue overflowed: the connection closes the session after the
    /// answers it owes ([`Connection::on_overflow`]), or it closes now as a
    /// slow consumer. What was queued before the overflow (answers to the
    /// client's events among it) is still delivered if the client reads it
    /// in time.
    fn overflow(&self) {
        if !self.inner.cuts_on_overflow.load(Ordering::Acquire) {
            self.inner.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
            self.close_after_flush_with(CloseReason::SlowConsumer, false);
            return;
        }
        if self.inner.overflowed.swap(true, Ordering::AcqRel) || self.is_closed() || self.is_draining() {
            return;
        }
        self.inner.stats.slow_consumers.fetch_add(1, Ordering::Relaxed);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.close_after_flush_with(CloseReason::SlowConsumer, false);
            return;
        };
        // The connection hears of it from a task of its own: the sender may
        // hold locks (a broadcast recorded for recovery) that its handling
        // would take again.
        let session = self.clone();
        rt.spawn(async move {
            if let ConnSlot::Attached(conn) = &mut *lock(&session.inner.conn)
                && !session.is_closed()
            {
                conn.on_overflow(&session);
            }
            tokio::select! {
                () = session.closed() => {}
                () = tokio::time::sleep(OVERFLOW_GRACE) => session.close_after_flush(CloseReason::SlowConsumer),
            }
        });
    }

    /// Queues encoded packets unless the queue is past its soft mark (half
    /// of either bound), in which case they are dropped and the session
    /// stays open (volatile messages).
    ///
    /// # Errors
    /// [`SendError::Full`] when dropped, [`SendError::Closed`] once closed.
    pub fn send_volatile(&self, packets: impl IntoIterator<Item = Encoded>) -> Result<(), SendError> {
        let r = self.push(packets, Class::Volatile);
        if r == Err(SendError::Full) {
            self.inner.stats.volatile_dropped.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn push(&self, packets: impl IntoIterator<Item = Encoded>, class: Class) -> Result<(), SendError> {
        if self.is_closed() || self.is_draining() {
            return Err(SendError::Closed);
        }
        let volatile = class == Class::Volatile;
        let mut bounds = self.inner.bounds;
        if self.inner.overflowed.load(Ordering::Acquire) {
            if class != Class::Answer {
                return Err(SendError::Full);
            }
            bounds = bounds.doubled();
        }
        {
            let mut q = lock(&self.inner.outbound);
            if volatile && bounds.over_soft_mark(&q) {
                return Err(SendError::Full);
            }
            let start = q.packets.len();
            let start_bytes = q.bytes;
            for p in packets {
                q.bytes += p.len();
                q.packets.push_back(p);
            }
            // An empty queue always takes one unit, however large: a
            // message within max_payload must get through to an idle client.
            if start > 0 && bounds.over(q.packets.len(), q.bytes) {
                let dropped = match bounds.policy {
                    SlowConsumerPolicy::DropVolatileFirst if !volatile => {
                        let added: Vec<Encoded> = q.packets.drain(start..).collect();
                        q.bytes = start_bytes;
                        let dropped = q.drop_volatile();
                        let fits = !bounds.over(
                            q.packets.len() + added.len(),
                            q.bytes + added.iter().map(Encoded::len).sum::<usize>(),
                        );
                        if fits {
                            for p in added {
                                q.bytes += p.len();
                                q.packets.push_back(p);
                            }
                        }
                        self.inner.stats.volatile_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
                        if fits { None } else { Some(()) }
                    }
                    _ => {
                        q.packets.truncate(start);
                        q.bytes = start_bytes;
                        Some(())
                    }
                };
                if dropped.is_some() {
                    return Err(SendError::Full);
                }
            } else if volatile {
                let end = q.packets.len();
                q.volatile.get_or_insert_default().push(start..end);
            }
        }
        self.inner.writable.notify_one();
        Ok(())
    }

    /// The packets and bytes waiting to be written.
    pub fn queued(&self) -> (usize, usize) {
        let q = lock(&self.inner.outbound);
        (q.packets.len(), q.bytes)
    }

    /// Takes everything queued for the client, in order. Part of the
    /// transport driver API: the built-in transports call it from their
    /// writer; a custom transport (or a test, or a binding that owns the
    /// socket) calls it the same way.
    pub fn drain(&self) -> Vec<Encoded> {
        // Hands the queue's buffer over: no copy, and an idle session
        // holds no queue capacity.
        let mut q = lock(&self.inner.outbound);
        let bytes = std::mem::take(&mut q.bytes);
        q.volatile = None;
        let packets = Vec::from(std::mem::take(&mut q.packets));
        drop(q);
        if !packets.is_empty() {
            self.inner.stats.packets_out.fetch_add(packets.len() as u64, Ordering::Relaxed);
            self.inner.stats.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        packets
    }

    /// Waits until packets are queued, the upgrade starts or the session
    /// closes (transport driver API). Only one writer may wait at a time.
    pub async fn wait_writable(&self) {
        self.inner.writable.notified().await;
    }

    /// Closes the session once what is already queued has been written, as
    /// socket.io's engine does for a server-side close: new sends are
    /// refused and the connection's `on_close` runs at once; the transport
    /// delivers the queue (over long-polling, the close packet follows in a
    /// later response, so clients handle the queued packets first), then
    /// the session closes. A client that does not collect its packets is
    /// closed after [`FLUSH_TIMEOUT`] all the same.
    pub fn close_after_flush(&self, reason: CloseReason) {
        self.close_after_flush_with(reason, true);
    }

    /// [`close_after_flush`](Self::close_after_flush); the connection's
    /// `on_close` runs now, or with `!inline` from a spawned task.
    fn close_after_flush_with(&self, reason: CloseReason, inline: bool) {
        if self.is_closed() || self.inner.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let reason = *lock(&self.inner.reason).get_or_insert(reason);
        if !inline && let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            rt.spawn(async move { Self::notify_close(&mut lock(&inner.conn), reason) });
        } else if let Ok(mut slot) = self.inner.conn.try_lock() {
            Self::notify_close(&mut slot, reason);
        }
        self.inner.writable.notify_one();
        let session = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = session.closed() => {}
                () = tokio::time::sleep(FLUSH_TIMEOUT) => session.close(reason),
            }
        });
    }

    /// Whether [`close_after_flush`](Self::close_after_flush) was called and
    /// the queue is still being delivered.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire) && !self.is_closed()
    }

    /// For transports: closes a draining session whose queue is now empty.
    /// Returns true when the session is (now) closed.
    pub fn finish_if_drained(&self) -> bool {
        if self.is_closed() {
            return true;
        }
        if !self.inner.draining.load(Ordering::Acquire) || !lock(&self.inner.outbound).packets.is_empty() {
            return false;
        }
        let reason = self.close_reason().unwrap_or(CloseReason::ForcedClose);
        self.close(reason);
        true
    }

    /// Closes the session. The first reason wins; later calls do nothing.
    pub fn close(&self, reason: CloseReason) {
        self.close_with(reason, true);
    }

    /// Closes the session; the connection's `on_close` runs now, or with
    /// `!inline` from a spawned task (when inside a tokio runtime).
    fn close_with(&self, reason: CloseReason, inline: bool) {
        if self.inner.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(sid = %self.inner.sid, %reason, "engine session closed");
        let reason = *lock(&self.inner.reason).get_or_insert(reason);
        self.inner.closed.notify_waiters();
        self.inner.writable.notify_waiters();
        self.inner.writable.notify_one();
        if let Some(engine) = self.inner.engine.upgrade() {
            engine.remove(&self.inner.sid);
        }
        if !inline && let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            rt.spawn(async move { Self::notify_close(&mut lock(&inner.conn), reason) });
            return;
        }
        // If a message is being delivered right now, the deliverer notices
        // the close when it finishes and reports it (see `deliver`).
        if let Ok(mut slot) = self.inner.conn.try_lock() {
            Self::notify_close(&mut slot, reason);
        }
    }

    fn notify_close(slot: &mut ConnSlot, reason: CloseReason) {
        if let ConnSlot::Attached(mut conn) = std::mem::replace(slot, ConnSlot::Done) {
            conn.on_close(reason);
        }
    }

    pub(super) fn attach(&self, conn: Box<dyn Connection>) {
        self.inner.cuts_on_overflow.store(conn.cuts_on_overflow(), Ordering::Release);
        let mut slot = lock(&self.inner.conn);
        *slot = ConnSlot::Attached(conn);
        if let Some(reason) = self.close_reason() {
            Self::notify_close(&mut slot, reason);
        }
    }

    /// Handles one packet received from the client on the current
    /// transport (transport driver API): messages go to the connection,
    /// pongs to the heartbeat, a close packet closes the session.
    pub fn receive(&self, packet: Packet) {
        match packet {
            Packet::Message(frame) => self.deliver(frame),
            Packet::Pong(_) => {
                *lock(&self.inner.pong_at) = Some(Instant::now());
                self.inner.ponged.store(true, Ordering::Release);
            }
            Packet::Close => {
                // Over long-polling, engine.io answers the client's pending
                // GET with a noop; when the close arrives before that GET,
                // the GET still gets its noop (see `ClientCloses`).
                let polling = {
                    let state = lock(&self.inner.state);
                    state.transport == TransportKind::Polling && !state.get_active
                };
                if polling && let Some(engine) = self.inner.engine.upgrade() {
                    engine.client_closes.record(&self.inner.sid);
                }
                self.close(CloseReason::TransportClose);
            }
            // v4 heartbeats run server to client: a client ping is an error.
            Packet::Ping(_) | Packet::Open(_) => self.close(CloseReason::TransportError),
            Packet::Upgrade | Packet::Noop => {}
        }
    }

    fn deliver(&self, frame: Frame) {
        if self.is_closed() {
            return;
        }
        let mut slot = lock(&self.inner.conn);
        let result = match &mut *slot {
            ConnSlot::Attached(conn) => conn.on_message(frame),
            _ => Ok(()),
        };
        if let Err(reason) = result {
            drop(slot);
            // As engine.io does for a close from the application: what is
            // already queued (answers to the client's earlier events) is
            // written first.
            self.close_after_flush(reason);
            return;
        }
        if let Some(reason) = self.close_reason() {
            Self::notify_close(&mut slot, reason);
        }
    }

    pub(super) fn downgrade(&self) -> WeakSession {
        WeakSession(Arc::downgrade(&self.inner))
    }

    // --- transport bookkeeping -------------------------------------------

    /// Marks a polling GET active; false when one already is (overlap).
    pub(crate) fn begin_get(&self) -> bool {
        !std::mem::replace(&mut lock(&self.inner.state).get_active, true)
    }

    pub(crate) fn end_get(&self) {
        lock(&self.inner.state).get_active = false;
    }

    /// Marks a polling POST active; false when one already is (overlap).
    pub(crate) fn begin_post(&self) -> bool {
        !std::mem::replace(&mut lock(&self.inner.state).post_active, true)
    }

    pub(crate) fn end_post(&self) {
        lock(&self.inner.state).post_active = false;
    }

    /// Whether a WebSocket probe has started an upgrade that has not
    /// completed yet (engine.io's `upgrading`).
    pub fn is_upgrading(&self) -> bool {
        lock(&self.inner.state).upgrading
    }

    /// Starts an upgrade; false when one has started or completed already.
    pub(crate) fn begin_upgrade(&self) -> bool {
        let mut st = lock(&self.inner.state);
        if st.upgrading || st.transport != TransportKind::Polling {
            return false;
        }
        st.upgrading = true;
        st.upgrades = st.upgrades.wrapping_add(1);
        drop(st);
        // Release a pending GET so the client can pause polling.
        self.inner.writable.notify_one();
        true
    }

    /// The number of the upgrade begun last (see [`abort_upgrade_if`]).
    ///
    /// [`abort_upgrade_if`]: Self::abort_upgrade_if
    pub(crate) fn upgrade_serial(&self) -> u32 {
        lock(&self.inner.state).upgrades
    }

    /// Abandons an upgrade that did not complete.
    pub(crate) fn abort_upgrade(&self) {
        lock(&self.inner.state).upgrading = false;
    }

    /// Abandons upgrade number `serial` if it is still under way (a relay
    /// that went away in the middle of its probe). True when it was.
    pub(crate) fn abort_upgrade_if(&self, serial: u32) -> bool {
        let mut st = lock(&self.inner.state);
        let stale = st.upgrading && st.upgrades == serial;
        if stale {
            st.upgrading = false;
        }
        stale
    }

    /// Completes the upgrade: the WebSocket becomes the session's transport.
    pub(crate) fn finish_upgrade(&self) {
        let mut st = lock(&self.inner.state);
        st.upgrading = false;
        st.transport = TransportKind::WebSocket;
        drop(st);
        self.inner.writable.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::engine::{Engine, EngineHandler, RequestInfo};

    /// Counts on_close calls; closes the session from inside on_message
    /// when asked to (the re-entrant case).
    struct Probe {
        closes: Arc<AtomicUsize>,
        messages: Arc<AtomicUsize>,
    }
    struct ProbeConn {
        closes: Arc<AtomicUsize>,
        messages: Arc<AtomicUsize>,
        session: Session,
    }

    impl EngineHandler for Probe {
        fn on_open(&self, session: &Session, _: &RequestInfo) -> Box<dyn Connection> {
            Box::new(ProbeConn {
                closes: self.closes.clone(),
                messages: self.messages.clone(),
                session: session.clone(),
            })
        }
    }

    impl Connection for ProbeConn {
        fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason> {
            self.messages.fetch_add(1, Ordering::SeqCst);
            if frame == Frame::Text("close me".into()) {
                self.session.close(CloseReason::ForcedClose);
            }
            Ok(())
        }
        fn on_close(&mut self, _: CloseReason) {
            self.closes.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn request() -> RequestInfo {
        RequestInfo {
            headers: http::HeaderMap::new(),
            query: vec![],
            uri: http::Uri::from_static("/"),
            remote_addr: ([127, 0, 0, 1], 1).into(),
            time: std::time::SystemTime::now(),
            secure: false,
        }
    }

    fn open(config: EngineConfig) -> (Engine, Session, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let closes = Arc::new(AtomicUsize::new(0));
        let messages = Arc::new(AtomicUsize::new(0));
        let engine = Engine::new(config, Arc::new(Probe { closes: closes.clone(), messages: messages.clone() }));
        let session = engine.open_session(&request(), TransportKind::WebSocket);
        (engine, session, closes, messages)
    }

    fn heartbeat_config() -> EngineConfig {
        EngineConfig::default().ping_interval(Duration::from_secs(25)).ping_timeout(Duration::from_secs(20))
    }

    #[tokio::test(start_paused = true)]
    async fn missed_pong_closes_after_interval_plus_timeout() {
        let (engine, session, closes, _) = open(heartbeat_config());
        tokio::time::sleep(Duration::from_millis(24_900)).await;
        assert!(session.drain().is_empty(), "no ping before the interval");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(session.drain(), vec![Encoded::Text("2".into())]);
        tokio::time::sleep(Duration::from_millis(19_800)).await;
        assert!(!session.is_closed(), "closed before the timeout");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(session.close_reason(), Some(CloseReason::PingTimeout));
        assert_eq!(closes.load(Ordering::SeqCst), 1);
        assert_eq!(engine.session_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn answered_pings_keep_the_session_and_early_pongs_do_not_count() {
        let (_engine, session, _, _) = open(heartbeat_config());
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(25)).await;
            tokio::task::yield_now().await;
            assert_eq!(session.drain(), vec![Encoded::Text("2".into())]);
            session.receive(Packet::Pong("".into()));
        }
        assert!(!session.is_closed());
        // A pong sent before the ping does not answer it.
        session.receive(Packet::Pong("".into()));
        tokio::time::sleep(Duration::from_secs(25 + 21)).await;
        assert_eq!(session.close_reason(), Some(CloseReason::PingTimeout));
    }

    #[tokio::test(start_paused = true)]
    async fn short_intervals_ping_again_after_each_pong_without_waiting_for_the_timeout() {
        let config =
            EngineConfig::default().ping_interval(Duration::from_millis(100)).ping_timeout(Duration::from_secs(5));
        let (_engine, session, _, _) = open(config);
        for round in 0..5 {
            tokio::time::sleep(Duration::from_millis(101)).await;
            tokio::task::yield_now().await;
            assert_eq!(session.drain(), vec![Encoded::Text("2".into())], "ping {round}");
            session.receive(Packet::Pong("".into()));
        }
        tokio::time::sleep(Duration::from_millis(101)).await;
        assert_eq!(session.drain(), vec![Encoded::Text("2".into())], "last ping");
        tokio::time::sleep(Duration::from_millis(4_800)).await;
        assert!(!session.is_closed(), "closed before the timeout");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(session.close_reason(), Some(CloseReason::PingTimeout));
    }

    #[tokio::test]
    async fn client_ping_is_a_protocol_error() {
        let (_engine, session, closes, _) = open(EngineConfig::default());
        session.receive(Packet::Ping("".into()));
        assert_eq!(session.close_reason(), Some(CloseReason::TransportError));
        assert_eq!(closes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn overflow_closes_as_slow_consumer_but_volatile_only_drops() {
        let (_engine, session, _, _) = open(EngineConfig::default().max_buffered_packets(3));
        for _ in 0..3 {
            session.send_frame(Frame::Text("x".into())).unwrap();
        }
        assert_eq!(session.send_volatile([Encoded::message("v")]), Err(SendError::Full));
        assert!(!session.is_closed());
        assert_eq!(session.send_frame(Frame::Text("y".into())), Err(SendError::Full));
        assert_eq!(session.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(session.send_frame(Frame::Text("z".into())), Err(SendError::Closed));
        // What was accepted before the overflow is still there, in order.
        assert_eq!(session.drain(), vec![Encoded::message("x"); 3]);
    }

    #[tokio::test]
    async fn drop_volatile_first_removes_whole_volatile_units_then_keeps_the_session() {
        let (engine, session, _, _) = open(EngineConfig::default().max_buffered_packets(6));
        let bin = |b: &'static [u8]| Encoded::Binary(bytes::Bytes::from_static(b));
        session.send_frame(Frame::Text("a".into())).unwrap();
        // A volatile unit of three packets (a header and two attachments).
        session.send_volatile([Encoded::message("v"), bin(b"1"), bin(b"2")]).unwrap();
        session.send_frame(Frame::Text("b".into())).unwrap();
        // 5 queued; this unit of 2 overflows 6: the volatile unit makes room.
        session.send([Encoded::message("c"), bin(b"3")]).unwrap();
        assert!(!session.is_closed());
        assert_eq!(session.queued().0, 4);
        assert_eq!(
            session.drain(),
            vec![Encoded::message("a"), Encoded::message("b"), Encoded::message("c"), bin(b"3")]
        );
        assert_eq!(engine.stats().volatile_dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn close_from_inside_on_message_reports_once_after_the_message() {
        let (_engine, session, closes, messages) = open(EngineConfig::default());
        session.receive(Packet::Message(Frame::Text("hello".into())));
        session.receive(Packet::Message(Frame::Text("close me".into())));
        assert_eq!(session.close_reason(), Some(CloseReason::ForcedClose));
        assert_eq!(closes.load(Ordering::SeqCst), 1);
        session.receive(Packet::Message(Frame::Text("late".into())));
        session.close(CloseReason::TransportClose);
        assert_eq!(messages.load(Ordering::SeqCst), 2, "no message after close");
        assert_eq!(closes.load(Ordering::SeqCst), 1, "on_close exactly once");
        assert_eq!(session.close_reason(), Some(CloseReason::ForcedClose), "the first reason wins");
    }

    #[tokio::test(start_paused = true)]
    async fn close_after_flush_delivers_the_queue_then_closes() {
        let (engine, session, closes, _) = open(EngineConfig::default());
        session.send_frame(Frame::Text("last words".into())).unwrap();
        session.close_after_flush(CloseReason::ForcedClose);
        assert_eq!(closes.load(Ordering::SeqCst), 1, "the application hears of it at once");
        assert!(session.is_draining() && !session.is_closed());
        assert_eq!(session.send_frame(Frame::Text("more".into())), Err(SendError::Closed), "nothing new is accepted");
        assert!(!session.finish_if_drained(), "still something to deliver");
        assert_eq!(session.drain(), vec![Encoded::message("last words")]);
        assert!(session.finish_if_drained());
        assert_eq!(session.close_reason(), Some(CloseReason::ForcedClose));
        assert_eq!(engine.session_count(), 0);
        assert_eq!(closes.load(Ordering::SeqCst), 1, "on_close once");
    }

    #[tokio::test(start_paused = true)]
    async fn close_after_flush_gives_up_on_a_client_that_never_collects() {
        let (engine, session, _, _) = open(EngineConfig::default());
        session.send_frame(Frame::Text("never read".into())).unwrap();
        session.close_after_flush(CloseReason::ForcedClose);
        tokio::time::sleep(FLUSH_TIMEOUT - Duration::from_millis(10)).await;
        assert!(!session.is_closed());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(session.is_closed());
        assert_eq!(engine.session_count(), 0);
    }

    #[test]
    fn ids_are_20_url_safe_characters_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }
}

/// A session the heartbeat timers refer to without keeping it alive.
#[derive(Debug)]
pub(super) struct WeakSession(Weak<Inner>);

enum Beat {
    /// Send a ping.
    Ping(WeakSession),
    /// A ping went out at this instant: has it been answered?
    Check(WeakSession, Instant),
}

/// Every session's heartbeat on one timer wheel, in one task per engine:
/// an idle session costs a queue entry, not a task and a timer of its own.
/// A ping goes out `interval` after the session opened or after the last
/// pong; a session that does not answer within `timeout` is closed.
pub(super) async fn heartbeats(
    mut opened: mpsc::UnboundedReceiver<WeakSession>,
    interval: Duration,
    timeout: Duration,
) {
    let mut wheel: DelayQueue<Beat> = DelayQueue::new();
    loop {
        let beat = tokio::select! {
            session = opened.recv() => match session {
                Some(s) => {
                    wheel.insert(Beat::Ping(s), interval);
                    continue;
                }
                // The engine is gone.
                None => return,
            },
            Some(expired) = std::future::poll_fn(|cx| wheel.poll_expired(cx)) => expired.into_inner(),
        };
        let (weak, sent) = match beat {
            Beat::Ping(weak) => (weak, None),
            Beat::Check(weak, sent) => (weak, Some(sent)),
        };
        let Some(inner) = weak.0.upgrade() else { continue };
        let session = Session { inner };
        if session.is_closed() {
            continue;
        }
        let now = Instant::now();
        match sent {
            None => {
                session.inner.ponged.store(false, Ordering::Release);
                if session.send(std::iter::once(Packet::Ping("".into()).encode())).is_ok() {
                    // Checked after the shorter of the two: with an interval
                    // below the timeout, the next ping must not wait for it.
                    wheel.insert_at(Beat::Check(weak, now), now + interval.min(timeout));
                }
            }
            Some(_) if session.inner.ponged.load(Ordering::Acquire) => {
                let next = lock(&session.inner.pong_at).map_or(now, |at| at + interval);
                wheel.insert_at(Beat::Ping(weak), next.max(now));
            }
            Some(sent) if now >= sent + timeout => session.close(CloseReason::PingTimeout),
            Some(sent) => {
                wheel.insert_at(Beat::Check(weak, sent), sent + timeout);
            }
        }
    }
}
