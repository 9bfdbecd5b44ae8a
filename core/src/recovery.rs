//! Connection-state recovery, as socket.io 4.6+'s `connectionStateRecovery`:
//! a client that lost its connection briefly gets back its socket id, rooms
//! and data, plus the events it missed meanwhile.
//!
//! Pure data, no I/O, no locks and no clock: every time-dependent call takes
//! `now` from the caller, which keeps the module deterministic and testable.
//! The hub wraps it.
//!
//! # How it works
//!
//! * Every event packet the server sends to a socket (broadcast or direct
//!   emit, except volatile ones and ones expecting an ack) gets an **offset**
//!   string appended as its last argument, taken from
//!   [`PacketLog::next_offset`] before encoding, and is then recorded with
//!   [`PacketLog::append`] together with its audience (a [`Target`]). There is
//!   one log per namespace. Offsets render as `"<epoch>-<seq>"`: the epoch is a
//!   random tag chosen when the log is created, so an offset from a restarted
//!   server, or from another namespace, is never mistaken for one of this log.
//! * On an unclean disconnect the hub keeps the socket's [`StoredSession`] in
//!   the [`SessionStore`] under the socket's private id (`pid`, sent to the
//!   client in the CONNECT reply) for `max_disconnection_duration`.
//! * A client reconnecting with `{pid, offset}` in its CONNECT auth is handed
//!   to [`restore`], which takes the session back (one use only) and collects
//!   every logged packet after `offset` whose audience reaches the session's
//!   rooms or its own id room, in order.
//!
//! # Improvements over socket.io
//!
//! * A client that received no event before the disconnect sends `pid` but no
//!   offset, and socket.io then silently fails to recover. Here the session
//!   remembers where the log was when the socket connected
//!   ([`StoredSession::base`]) and replays from there.
//! * The log is bounded by packet count, bytes and age
//!   ([`RecoveryConfig`]). When a packet the client needs has been evicted,
//!   recovery fails explicitly ([`Gone`], [`RestoreFailure::PacketsGone`])
//!   instead of silently skipping it, so the hub reports `recovered: false`
//!   and the application resynchronises.
//!
//! # Expiry boundary
//!
//! Inclusive, as in socket.io: a session disconnected at `t` can still be
//! restored at exactly `t + max_disconnection_duration`, and is expired once
//! `now - t > max_disconnection_duration`. Logged packets age out under the
//! same rule, so age alone never evicts a packet logged after a disconnect
//! while that session can still be restored. Packets sent *before* the
//! disconnect that the client never received can age out first; recovery
//! then fails with [`RestoreFailure::PacketsGone`] rather than skip them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::rooms::{Room, Target};

/// Connection-state recovery settings, for one namespace.
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// How long a disconnected session is kept, and how long logged packets
    /// are kept. Default 2 minutes, as socket.io.
    pub max_disconnection_duration: Duration,
    /// The most packets a log keeps. Default 10,000.
    pub max_packets: usize,
    /// The most bytes of packets a log keeps. Default 16 MiB.
    pub max_bytes: usize,
    /// The most disconnected sessions a store keeps; beyond, the oldest is
    /// dropped. Default 100,000.
    pub max_sessions: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            max_packets: 10_000,
            max_bytes: 16 << 20,
            max_sessions: 100_000,
        }
    }
}

impl RecoveryConfig {
    /// Sets [`RecoveryConfig::max_disconnection_duration`].
    pub fn max_disconnection_duration(mut self, d: Duration) -> Self {
        self.max_disconnection_duration = d;
        self
    }

    /// Sets [`RecoveryConfig::max_packets`].
    pub fn max_packets(mut self, n: usize) -> Self {
        self.max_packets = n;
        self
    }

    /// Sets [`RecoveryConfig::max_bytes`].
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Sets [`RecoveryConfig::max_sessions`].
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }
}

/// A position in a namespace's log, rendered as the string clients echo back.
///
/// Offsets are only meaningful within the [`PacketLog`] that issued them;
/// they come from [`PacketLog::next_offset`], [`PacketLog::last`] and
/// [`PacketLog::parse_offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(u64);

/// Missed packets were evicted from the log, so recovery cannot be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missed packets are no longer available")
    }
}

impl std::error::Error for Gone {}

#[derive(Debug)]
struct Entry<P> {
    seq: u64,
    packet: P,
    audience: Target,
    size: usize,
    at: Instant,
    origin: Origin,
}

/// Where a logged packet comes from, for a node of a cluster: sent from
/// this node (and published to the others), or received from another node.
///
/// A session handed over between nodes needs it: this node's packets and
/// the other nodes' reach the bus in an order the log alone cannot tell
/// (see [`PacketLog::since_split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// Sent from this node.
    #[default]
    Here,
    /// Received from another node.
    Elsewhere(NodeTag),
}

/// A node of a cluster as a packet log tells them apart: a hash of its uid
/// (within one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NodeTag(u64);

impl NodeTag {
    /// The tag of the node whose uid is `uid`.
    pub fn of(uid: &str) -> NodeTag {
        use std::hash::BuildHasher;
        NodeTag(std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(uid))
    }
}

/// Where the packets of a session taken from another node start in this
/// node's log (see [`PacketLog::since_split`]); `None` bounds are "from the
/// start".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Split {
    /// This node's own packets after this one.
    pub here: Option<Offset>,
    /// Other nodes' packets after this one.
    pub elsewhere: Option<Offset>,
    /// The holder's packets after its own bound.
    pub holder: Option<(NodeTag, Option<Offset>)>,
}

/// The log of packets sent in one namespace, bounded by count, bytes and age.
///
/// `P` is whatever the hub stores per packet (its encoded frames); the log
/// only moves it around.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use tidewire::recovery::{PacketLog, RecoveryConfig};
/// use tidewire::rooms::Target;
///
/// let mut log = PacketLog::new(&RecoveryConfig::default());
/// let now = Instant::now();
///
/// // The offset string goes into the packet before it is encoded.
/// let (offset, text) = log.next_offset();
/// let first = log.parse_offset(&text);
/// assert_eq!(first, Some(offset));
/// log.append(offset, "to everyone", Target::default(), 11, now);
///
/// let (offset, _) = log.next_offset();
/// let news = Target { rooms: vec!["news".into()], except: vec![] };
/// log.append(offset, "to news", news, 7, now);
///
/// // A socket in "news" that received the first packet missed the second.
/// let missed = log.since(first, &["news".into()]).unwrap();
/// assert_eq!(missed, [&"to news"]);
/// // One that received nothing missed both; one elsewhere missed only the first.
/// assert_eq!(log.since(None, &["news".into()]).unwrap(), [&"to everyone", &"to news"]);
/// assert_eq!(log.since(None, &["sports".into()]).unwrap(), [&"to everyone"]);
/// ```
#[derive(Debug)]
pub struct PacketLog<P> {
    /// Random tag rendered in front of every offset.
    epoch: String,
    /// Sequence number of the next append; starts at 1 so that 0 means
    /// "before everything".
    next: u64,
    entries: VecDeque<Entry<P>>,
    bytes: usize,
    max_packets: usize,
    max_bytes: usize,
    max_age: Duration,
}

impl<P> PacketLog<P> {
    /// An empty log with a fresh random epoch.
    pub fn new(config: &RecoveryConfig) -> Self {
        PacketLog {
            epoch: format!("{:08x}", rand::rng().next_u32()),
            next: 1,
            entries: VecDeque::new(),
            bytes: 0,
            max_packets: config.max_packets,
            max_bytes: config.max_bytes,
            max_age: config.max_disconnection_duration,
        }
    }

    /// The offset the next append will get, and its string form.
    ///
    /// The hub appends the string to the packet's arguments *before* encoding,
    /// so the packet is encoded once for every recipient and for the log.
    /// Calling it does not reserve anything: two calls without an append in
    /// between return the same offset.
    pub fn next_offset(&self) -> (Offset, String) {
        (Offset(self.next), format!("{}-{}", self.epoch, self.next))
    }

    /// Parses an offset string sent by a client.
    ///
    /// Returns `None` for anything this log did not issue: another epoch
    /// (a restarted server, another namespace), a sequence number past
    /// [`PacketLog::next_offset`], a non-canonical number or garbage. Never
    /// panics.
    pub fn parse_offset(&self, s: &str) -> Option<Offset> {
        let (epoch, seq) = s.split_once('-')?;
        if epoch != self.epoch {
            return None;
        }
        // Canonical decimal only: `u64::from_str` would also take "+5", and
        // leading zeros would give one offset several spellings.
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || (seq.len() > 1 && seq.starts_with('0')) {
            return None;
        }
        let seq: u64 = seq.parse().ok()?;
        // `next` itself is allowed: the hub may send a packet before logging it.
        (seq <= self.next).then_some(Offset(seq))
    }

    /// Records a packet sent to `audience`; `size` (bytes) counts toward
    /// `max_bytes`.
    ///
    /// Evicts from the front whatever exceeds `max_packets` or `max_bytes`
    /// (possibly this packet itself, when it alone is bigger than `max_bytes`)
    /// and whatever is older than `max_disconnection_duration` at `now`.
    ///
    /// `offset` must be the one returned by [`PacketLog::next_offset`]
    /// (checked in debug builds); the log numbers packets itself, so a wrong
    /// offset cannot break its ordering.
    pub fn append(&mut self, offset: Offset, packet: P, audience: Target, size: usize, now: Instant) {
        self.append_from(Origin::Here, offset, packet, audience, size, now);
    }

    /// [`append`](Self::append), for a packet of the given [`Origin`].
    pub fn append_from(
        &mut self,
        origin: Origin,
        offset: Offset,
        packet: P,
        audience: Target,
        size: usize,
        now: Instant,
    ) {
        debug_assert_eq!(offset, Offset(self.next), "append must use the offset from next_offset");
        // Keep `at` non-decreasing so age eviction can stop at the first young entry.
        let at = self.entries.back().map_or(now, |e| e.at.max(now));
        self.entries.push_back(Entry { seq: self.next, packet, audience, size, at, origin });
        self.next += 1;
        self.bytes += size;
        while self.entries.len() > self.max_packets || self.bytes > self.max_bytes {
            self.pop_front();
        }
        self.evict(now);
    }

    /// The last offset appended; `None` when nothing was ever appended to
    /// this log (evictions do not change it).
    pub fn last(&self) -> Option<Offset> {
        (self.next > 1).then(|| Offset(self.next - 1))
    }

    /// The packets after `after` (exclusive) whose audience reaches a socket
    /// in `rooms`, in order.
    ///
    /// A socket is always in its own id room; the caller includes it in
    /// `rooms`. `after == None` means from the start of the log's history:
    /// everything ever appended.
    ///
    /// # Errors
    ///
    /// [`Gone`] when packets appended after `after` have been evicted, so the
    /// result would be incomplete. Evictions of packets up to `after` do not
    /// matter.
    pub fn since(&self, after: Option<Offset>, rooms: &[Room]) -> Result<Vec<&P>, Gone> {
        let after = after.map_or(0, |o| o.0);
        // Equal to `next` when everything was evicted.
        let first = self.entries.front().map_or(self.next, |e| e.seq);
        if first > after.saturating_add(1) {
            return Err(Gone);
        }
        let start = self.entries.partition_point(|e| e.seq <= after);
        Ok(self.entries.range(start..).filter(|e| reaches(&e.audience, rooms)).map(|e| &e.packet).collect())
    }

    /// [`since`](Self::since) with a bound per origin: the packets sent
    /// from this node after `split.here`, those of the holder after
    /// `split.holder`'s offset and those of the other nodes after
    /// `split.elsewhere` (all exclusive), in log order.
    ///
    /// A node taking over a session from another node publishes a marker
    /// on the bus: its own packets logged after it published the marker
    /// (`here`) and the others' logged after the marker came back to it
    /// (`elsewhere`) are those the holder did not see before the marker.
    /// The holder's own packets are told apart: the holder answers the
    /// marker with what it logged until then, its own packets included,
    /// and publishes that answer after them; so of the holder's packets,
    /// those logged here after its answer arrived are the ones to replay.
    ///
    /// # Errors
    ///
    /// [`Gone`] when packets after the lower bound have been evicted.
    pub fn since_split(&self, split: Split, rooms: &[Room]) -> Result<Vec<&P>, Gone> {
        let bound = |o: Option<Offset>| o.map_or(0, |o| o.0);
        let (here, elsewhere) = (bound(split.here), bound(split.elsewhere));
        let holder = split.holder.map(|(tag, o)| (tag, bound(o)));
        let after = here.min(elsewhere).min(holder.map_or(u64::MAX, |(_, o)| o));
        let first = self.entries.front().map_or(self.next, |e| e.seq);
        if first > after.saturating_add(1) {
            return Err(Gone);
        }
        let start = self.entries.partition_point(|e| e.seq <= after);
        Ok(self
            .entries
            .range(start..)
            .filter(|e| {
                e.seq
                    > match (e.origin, holder) {
                        (Origin::Here, _) => here,
                        (Origin::Elsewhere(tag), Some((h, bound))) if tag == h => bound,
                        (Origin::Elsewhere(_), _) => elsewhere,
                    }
            })
            .filter(|e| reaches(&e.audience, rooms))
            .map(|e| &e.packet)
            .collect())
    }

    /// Evicts what is older than `max_disconnection_duration` at `now` (the
    /// hub calls it from a timer, so an idle log does not hold memory).
    pub fn evict(&mut self, now: Instant) {
        while self.entries.front().is_some_and(|e| now.saturating_duration_since(e.at) > self.max_age) {
            self.pop_front();
        }
    }

    /// How many packets are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no packet is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sum of the sizes of the packets kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.size;
        }
    }
}

/// Whether a packet sent to `audience` reaches a socket in `rooms`.
fn reaches(audience: &Target, rooms: &[Room]) -> bool {
    (audience.rooms.is_empty() || audience.rooms.iter().any(|r| rooms.contains(r)))
        && !audience.except.iter().any(|r| rooms.contains(r))
}

/// What is kept of a disconnected socket.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// The socket id, given back to the recovered socket.
    pub id: Arc<str>,
    /// The rooms the socket was in (its own id room may be included or not).
    pub rooms: Vec<Room>,
    /// The application data attached to the socket.
    pub data: serde_json::Value,
    /// The authenticated user, if any.
    pub user_id: Option<Arc<str>>,
    /// Where the namespace's log was when the socket connected
    /// ([`PacketLog::last`] then): where replay starts when the client sends
    /// no offset.
    pub base: Option<Offset>,
}

#[derive(Debug)]
struct Slot {
    session: StoredSession,
    at: Instant,
    /// Matches the slot with its entry in `SessionStore::order`, since a
    /// recovered socket keeps its pid and may be persisted again.
    serial: u64,
}

/// Disconnected sessions by private id, kept for `max_disconnection_duration`
/// and at most `max_sessions` of them.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use tidewire::recovery::{RecoveryConfig, SessionStore, StoredSession};
///
/// let config = RecoveryConfig::default().max_disconnection_duration(Duration::from_secs(60));
/// let mut store = SessionStore::new(&config);
/// let pid = SessionStore::new_pid();
/// let session = StoredSession {
///     id: "socket-1".into(),
///     rooms: vec!["news".into()],
///     data: serde_json::json!({"name": "ada"}),
///     user_id: None,
///     base: None,
/// };
/// let t0 = Instant::now();
/// store.persist(&pid, session.clone(), t0);
///
/// // One use only.
/// assert_eq!(store.take(&pid, t0 + Duration::from_secs(10)), Some(session));
/// assert_eq!(store.take(&pid, t0 + Duration::from_secs(10)), None);
/// ```
#[derive(Debug)]
pub struct SessionStore {
    sessions: HashMap<Arc<str>, Slot>,
    /// Persist order, for expiry and the `max_sessions` bound. Entries whose
    /// serial no longer matches a slot are dead and skipped (lazy deletion);
    /// `compact` keeps them from piling up.
    order: VecDeque<(u64, Arc<str>)>,
    serial: u64,
    max_age: Duration,
    max_sessions: usize,
}

impl SessionStore {
    /// An empty store.
    pub fn new(config: &RecoveryConfig) -> Self {
        SessionStore {
            sessions: HashMap::new(),
            order: VecDeque::new(),
            serial: 0,
            max_age: config.max_disconnection_duration,
            max_sessions: config.max_sessions,
        }
    }

    /// A new private id for a connecting socket: 16 random bytes as 32
    /// lowercase hex characters.
    pub fn new_pid() -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        let mut pid = String::with_capacity(32);
        for b in bytes {
            pid.push(char::from(HEX[usize::from(b >> 4)]));
            pid.push(char::from(HEX[usize::from(b & 15)]));
        }
        pid
    }

    /// Keeps `session` under `pid` from `now`, replacing any session already
    /// there. The sessions expired at `now` are dropped first (they are the
    /// oldest, at the front), so a store whose clients never come back holds
    /// one window of disconnections, not `max_sessions` of them; when more
    /// than `max_sessions` are kept, the oldest is dropped.
    pub fn persist(&mut self, pid: &str, session: StoredSession, now: Instant) {
        self.evict(now);
        self.serial += 1;
        let serial = self.serial;
        let pid: Arc<str> = pid.into();
        self.sessions.insert(pid.clone(), Slot { session, at: now, serial });
        self.order.push_back((serial, pid));
        while self.sessions.len() > self.max_sessions {
            match self.order.pop_front() {
                Some((serial, pid)) => self.remove_if_live(serial, &pid),
                None => break,
            }
        }
        // Taken and replaced sessions leave dead entries behind; drop them
        // once they outnumber the live ones, so memory stays bounded and the
        // cost is amortised over the pushes that created them.
        if self.order.len() > 2 * self.sessions.len() + 64 {
            let sessions = &self.sessions;
            self.order.retain(|(serial, pid)| sessions.get(pid).is_some_and(|s| s.serial == *serial));
        }
    }

    /// Whether a session is kept under `pid` and has not expired at `now`.
    pub fn contains(&self, pid: &str, now: Instant) -> bool {
        self.sessions.get(pid).is_some_and(|slot| !self.expired(slot.at, now))
    }

    /// The user of the session kept under `pid` (`Some(None)`: a session
    /// without a user), unless there is none or it expired at `now`.
    pub fn user_of(&self, pid: &str, now: Instant) -> Option<Option<&str>> {
        let slot = self.sessions.get(pid).filter(|slot| !self.expired(slot.at, now))?;
        Some(slot.session.user_id.as_deref())
    }

    /// Takes the session kept under `pid` back, if there is one and it has
    /// not expired at `now` (an expired one is removed). One use only.
    pub fn take(&mut self, pid: &str, now: Instant) -> Option<StoredSession> {
        let slot = self.sessions.remove(pid)?;
        (!self.expired(slot.at, now)).then_some(slot.session)
    }

    /// Removes the sessions expired at `now` ([`persist`](Self::persist)
    /// does it before keeping another).
    pub fn evict(&mut self, now: Instant) {
        while let Some((serial, pid)) = self.order.front() {
            match self.sessions.get(pid) {
                Some(slot) if slot.serial == *serial => {
                    if !self.expired(slot.at, now) {
                        break;
                    }
                    self.sessions.remove(pid);
                }
                // Dead entry: taken or replaced.
                _ => {}
            }
            self.order.pop_front();
        }
    }

    /// How many sessions are kept (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is kept.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn expired(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) > self.max_age
    }

    fn remove_if_live(&mut self, serial: u64, pid: &str) {
        if self.sessions.get(pid).is_some_and(|s| s.serial == serial) {
            self.sessions.remove(pid);
        }
    }
}

/// The outcome of a [`restore`] attempt.
#[derive(Debug)]
pub enum Restore<'a, P> {
    /// The session is back; `missed` are the packets to send it, in order,
    /// before anything else.
    Recovered {
        /// The session, removed from the store.
        session: StoredSession,
        /// The packets it missed.
        missed: Vec<&'a P>,
    },
    /// Nothing can be restored: the socket connects as a new one.
    Failed(RestoreFailure),
}

/// Why a [`restore`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFailure {
    /// No session under that pid, or it expired.
    UnknownSession,
    /// The offset is unparsable or from another epoch (the session is
    /// consumed).
    BadOffset,
    /// Some missed packets were evicted from the log (the session is
    /// consumed: it cannot be resumed partially).
    PacketsGone,
    /// The session belongs to another user (it stays kept for its owner).
    OtherUser,
}

/// Restores the session kept under `pid` and collects the packets it missed.
///
/// `offset` is the last offset the client received; `None` when it sent
/// none (it received no event), in which case replay starts from
/// [`StoredSession::base`]. Missed packets are those whose audience reaches
/// the session's rooms or its own id room.
///
/// `user` is who the connect middlewares say the client is now: a session
/// of another user is left in the store untouched
/// ([`RestoreFailure::OtherUser`]), so presenting someone else's pid cannot
/// destroy their session. Otherwise the session is taken out of the store
/// as soon as it is found, so it is consumed on
/// [`RestoreFailure::BadOffset`] and [`RestoreFailure::PacketsGone`] as
/// well: a session is restored completely or not at all, and only once.
pub fn restore<'a, P>(
    store: &mut SessionStore,
    log: &'a PacketLog<P>,
    pid: &str,
    user: Option<&str>,
    offset: Option<&str>,
    now: Instant,
) -> Restore<'a, P> {
    match store.user_of(pid, now) {
        None => {
            // An expired one goes now.
            store.take(pid, now);
            return Restore::Failed(RestoreFailure::UnknownSession);
        }
        Some(owner) if owner != user => return Restore::Failed(RestoreFailure::OtherUser),
        Some(_) => {}
    }
    let Some(session) = store.take(pid, now) else {
        return Restore::Failed(RestoreFailure::UnknownSession);
    };
    let after = match offset {
        Some(s) => match log.parse_offset(s) {
            Some(o) => Some(o),
            None => return Restore::Failed(RestoreFailure::BadOffset),
        },
        None => session.base,
    };
    let mut rooms = Vec::with_capacity(session.rooms.len() + 1);
    rooms.extend(session.rooms.iter().cloned());
    if !rooms.contains(&session.id) {
        rooms.push(session.id.clone());
    }
    match log.since(after, &rooms) {
        Ok(missed) => Restore::Recovered { session, missed },
        Err(Gone) => Restore::Failed(RestoreFailure::PacketsGone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> Room {
        s.into()
    }

    fn to(rooms: &[&str], except: &[&str]) -> Target {
        Target { rooms: rooms.iter().map(|r| room(r)).collect(), except: except.iter().map(|r| room(r)).collect() }
    }

    fn push<P>(log: &mut PacketLog<P>, packet: P, audience: Target, size: usize, now: Instant) -> Offset {
        let (offset, _) = log.next_offset();
        log.append(offset, packet, audience, size, now);
        offset
    }

    /// Appends `packet` from `origin`, for everyone, of size 1.
    fn push_from<P>(log: &mut PacketLog<P>, origin: Origin, packet: P, now: Instant) -> Offset {
        let (offset, _) = log.next_offset();
        log.append_from(origin, offset, packet, Target::default(), 1, now);
        offset
    }

    fn session(id: &str, rooms: &[&str], base: Option<Offset>) -> StoredSession {
        StoredSession {
            id: id.into(),
            rooms: rooms.iter().map(|r| room(r)).collect(),
            data: serde_json::json!({"k": id}),
            user_id: None,
            base,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn offsets_round_trip() {
        let log: PacketLog<()> = PacketLog::new(&RecoveryConfig::default());
        let (o, s) = log.next_offset();
        assert_eq!(o, Offset(1));
        assert_eq!(s.len(), 8 + 2);
        assert!(s[..8].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(log.parse_offset(&s), Some(o));
        assert_eq!(log.parse_offset(&format!("{}-0", log.epoch)), Some(Offset(0)));
        assert_eq!(log.last(), None);
    }

    #[test]
    fn offsets_reject_foreign_and_garbage() {
        let mut log: PacketLog<()> = PacketLog::new(&RecoveryConfig::default());
        let now = Instant::now();
        for _ in 0..5 {
            push(&mut log, (), Target::default(), 1, now);
        }
        let mut other: PacketLog<()> = PacketLog::new(&RecoveryConfig::default());
        while other.epoch == log.epoch {
            other = PacketLog::new(&RecoveryConfig::default());
        }
        push(&mut other, (), Target::default(), 1, now);
        let e = &log.epoch;
        assert_eq!(log.parse_offset(&other.next_offset().1), None);
        assert_eq!(log.parse_offset(&format!("{}-1", other.epoch)), None);
        let garbage = [
            String::new(),
            "-1".into(),
            "x-1".into(),
            "1".into(),
            e.clone(),
            format!("{e}-"),
            format!("{e}--1"),
            format!("{e}-+1"),
            format!("{e}- 1"),
            format!("{e}-1 "),
            format!("{e}-01"),
            format!("{e}-1.0"),
            format!("{e}-1-1"),
            format!("{e}-abc"),
            format!("{e}-99999999999999999999999"),
            format!("{e}-18446744073709551615"),
            format!("{e}-7"), // never issued: next is 6
            format!("{e}-١"), // Arabic-Indic digit one
            "é-ü".into(),
            "🦀-🦀".into(),
            format!("{e}-{}", "9".repeat(10_000)),
        ];
        for g in &garbage {
            assert_eq!(log.parse_offset(g), None, "{g:?}");
        }
        assert_eq!(log.parse_offset(&format!("{e}-5")), Some(Offset(5)));
        assert_eq!(log.parse_offset(&format!("{e}-6")), Some(Offset(6)));
    }

    #[test]
    fn since_filters_by_audience_in_order() {
        let mut log = PacketLog::new(&RecoveryConfig::default());
        let now = Instant::now();
        push(&mut log, "all", to(&[], &[]), 1, now);
        push(&mut log, "a", to(&["a"], &[]), 1, now);
        push(&mut log, "b", to(&["b"], &[]), 1, now);
        push(&mut log, "a|b", to(&["a", "b"], &[]), 1, now);
        push(&mut log, "all-x", to(&[], &["x"]), 1, now);
        push(&mut log, "a-x", to(&["a"], &["x"]), 1, now);
        push(&mut log, "me", to(&["sock1"], &[]), 1, now);
        push(&mut log, "all-me", to(&[], &["sock1"]), 1, now);

        let me_a = [room("sock1"), room("a")];
        assert_eq!(log.since(None, &me_a).unwrap(), [&"all", &"a", &"a|b", &"all-x", &"a-x", &"me"]);
        let other_ax = [room("sock2"), room("a"), room("x")];
        assert_eq!(log.since(None, &other_ax).unwrap(), [&"all", &"a", &"a|b", &"all-me"]);
        let other_b = [room("sock2"), room("b")];
        assert_eq!(log.since(None, &other_b).unwrap(), [&"all", &"b", &"a|b", &"all-x", &"all-me"]);
        assert_eq!(log.since(None, &[]).unwrap(), [&"all", &"all-x", &"all-me"]);
    }

    #[test]
    fn since_bound_is_exclusive() {
        let mut log = PacketLog::new(&RecoveryConfig::default());
        let now = Instant::now();
        let offsets: Vec<Offset> = (0..5).map(|i| push(&mut log, i, Target::default(), 1, now)).collect();
        assert_eq!(log.last(), Some(offsets[4]));
        assert_eq!(log.since(None, &[]).unwrap(), [&0, &1, &2, &3, &4]);
        assert_eq!(log.since(Some(offsets[0]), &[]).unwrap(), [&1, &2, &3, &4]);
        assert_eq!(log.since(Some(offsets[3]), &[]).unwrap(), [&4]);
        assert!(log.since(Some(offsets[4]), &[]).unwrap().is_empty());
        // The offset not yet appended (parse accepts it) and beyond.
        assert!(log.since(Some(log.next_offset().0), &[]).unwrap().is_empty());
        assert!(log.since(Some(Offset(u64::MAX)), &[]).unwrap().is_empty());
    }

    #[test]
    fn since_split_bounds_each_origin_on_its_own() {
        let mut log = PacketLog::new(&RecoveryConfig::default());
        let now = Instant::now();
        let mut add = |origin, p| push_from(&mut log, origin, p, now);
        let (h, e) = (Origin::Here, Origin::Elsewhere(NodeTag::of("third")));
        let split = |here, elsewhere| Split { here, elsewhere, holder: None };
        add(e, 1);
        let here = add(h, 2);
        add(e, 3);
        add(h, 4);
        let elsewhere = add(e, 5);
        add(e, 6);
        add(h, 7);
        // Here after 2: 4 and 7; elsewhere after 5: 6. In log order.
        assert_eq!(log.since_split(split(Some(here), Some(elsewhere)), &[]).unwrap(), [&4, &6, &7]);
        assert_eq!(log.since_split(split(Some(elsewhere), Some(here)), &[]).unwrap(), [&3, &5, &6, &7]);
        assert_eq!(log.since_split(split(None, None), &[]).unwrap(), [&1, &2, &3, &4, &5, &6, &7]);
        let rooms_log = {
            let mut log = PacketLog::new(&RecoveryConfig::default());
            let (o, _) = log.next_offset();
            log.append_from(h, o, "news", Target { rooms: vec!["news".into()], except: vec![] }, 1, now);
            let (o2, _) = log.next_offset();
            log.append_from(e, o2, "other", Target { rooms: vec!["other".into()], except: vec![] }, 1, now);
            log
        };
        assert_eq!(rooms_log.since_split(split(None, None), &["news".into()]).unwrap(), [&"news"]);
    }

    #[test]
    fn since_split_bounds_the_holders_packets_on_their_own() {
        let mut log = PacketLog::new(&RecoveryConfig::default());
        let now = Instant::now();
        let holder = NodeTag::of("holder");
        let mut add = |origin, p| push_from(&mut log, origin, p, now);
        let (h, e, x) = (Origin::Here, Origin::Elsewhere(NodeTag::of("third")), Origin::Elsewhere(holder));
        let here = add(e, 1);
        add(x, 2);
        let echo = add(e, 3);
        add(x, 4);
        add(e, 5);
        let tail = add(x, 6);
        add(x, 7);
        add(h, 8);
        add(e, 9);
        // The holder's after its tail (7), the third node's after the echo
        // (5, 9), this node's after its marker (8): in log order.
        let split = Split { here: Some(here), elsewhere: Some(echo), holder: Some((holder, Some(tail))) };
        assert_eq!(log.since_split(split, &[]).unwrap(), [&5, &7, &8, &9]);
        // Without a holder bound, the holder is one of the others.
        let split = Split { holder: None, ..split };
        assert_eq!(log.since_split(split, &[]).unwrap(), [&4, &5, &6, &7, &8, &9]);
    }

    #[test]
    fn since_split_is_gone_when_the_lower_bound_was_evicted() {
        let mut log = PacketLog::new(&RecoveryConfig::default().max_packets(2));
        let now = Instant::now();
        let offsets: Vec<Offset> = (0..4)
            .map(|i| {
                let (o, _) = log.next_offset();
                log.append_from(
                    if i % 2 == 0 { Origin::Here } else { Origin::Elsewhere(NodeTag::of("n")) },
                    o,
                    i,
                    Target::default(),
                    1,
                    now,
                );
                o
            })
            .collect();
        // Kept: 2 and 3. From 1 on is complete; from 0 on is not.
        let split = |here, elsewhere| Split { here: Some(here), elsewhere: Some(elsewhere), holder: None };
        assert_eq!(log.since_split(split(offsets[1], offsets[2]), &[]).unwrap(), [&2, &3]);
        assert_eq!(log.since_split(split(offsets[0], offsets[3]), &[]), Err(Gone));
    }

    #[test]
    fn since_gone_after_eviction_by_count() {
        let mut log = PacketLog::new(&RecoveryConfig::default().max_packets(3));
        let now = Instant::now();
        let o: Vec<Offset> = (0..5).map(|i| push(&mut log, i, Target::default(), 1, now)).collect();
        assert_eq!(log.len(), 3);
        assert_eq!(log.since(None, &[]), Err(Gone));
        assert_eq!(log.since(Some(o[0]), &[]), Err(Gone));
        // Packet 2 is the first kept: whoever received packet 1 misses nothing.
        assert_eq!(log.since(Some(o[1]), &[]).unwrap(), [&2, &3, &4]);
        assert_eq!(log.since(Some(o[2]), &[]).unwrap(), [&3, &4]);
    }

    #[test]
    fn since_gone_after_eviction_by_bytes() {
        let mut log = PacketLog::new(&RecoveryConfig::default().max_bytes(100));
        let now = Instant::now();
        let a = push(&mut log, "a", Target::default(), 40, now);
        let b = push(&mut log, "b", Target::default(), 40, now);
        assert_eq!((log.len(), log.bytes()), (2, 80));
        let c = push(&mut log, "c", Target::default(), 40, now);
        assert_eq!((log.len(), log.bytes()), (2, 80));
        assert_eq!(log.since(None, &[]), Err(Gone));
        assert_eq!(log.since(Some(a), &[]).unwrap(), [&"b", &"c"]);
        // A packet bigger than the whole budget evicts everything, itself included.
        push(&mut log, "huge", Target::default(), 101, now);
        assert_eq!((log.len(), log.bytes()), (0, 0));
        assert_eq!(log.since(Some(b), &[]), Err(Gone));
        assert_eq!(log.since(Some(c), &[]), Err(Gone));
        assert!(log.since(log.last(), &[]).unwrap().is_empty());
    }

    #[test]
    fn since_gone_after_eviction_by_age() {
        let mut log = PacketLog::new(&RecoveryConfig::default().max_disconnection_duration(secs(60)));
        let t0 = Instant::now();
        let a = push(&mut log, "a", Target::default(), 1, t0);
        let b = push(&mut log, "b", Target::default(), 1, t0 + secs(30));
        // Exactly 60 s old is still kept, as sessions are.
        log.evict(t0 + secs(60));
        assert_eq!(log.len(), 2);
        log.evict(t0 + secs(61));
        assert_eq!(log.len(), 1);
        assert_eq!(log.since(None, &[]), Err(Gone));
        assert_eq!(log.since(Some(a), &[]).unwrap(), [&"b"]);
        // Eviction on append as well.
        push(&mut log, "c", Target::default(), 1, t0 + secs(91));
        assert_eq!(log.since(Some(a), &[]), Err(Gone));
        assert_eq!(log.since(Some(b), &[]).unwrap(), [&"c"]);
        log.evict(t0 + secs(200));
        assert!(log.is_empty());
        assert_eq!(log.bytes(), 0);
        assert_eq!(log.since(Some(b), &[]), Err(Gone));
        // A clock that goes backwards neither panics nor evicts.
        push(&mut log, "d", Target::default(), 1, t0);
        log.evict(t0);
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn since_not_gone_when_nothing_appended_after() {
        let mut log = PacketLog::new(&RecoveryConfig::default().max_packets(2));
        let now = Instant::now();
        for i in 0..5 {
            push(&mut log, i, Target::default(), 1, now);
        }
        // Packets 0..=2 were evicted, but a client that got the last has missed nothing.
        assert!(log.since(log.last(), &[]).unwrap().is_empty());
        log.evict(now + secs(1_000));
        assert!(log.is_empty());
        assert!(log.since(log.last(), &[]).unwrap().is_empty());
        // And an empty log that never had anything: nothing missed from the start.
        let empty: PacketLog<()> = PacketLog::new(&RecoveryConfig::default());
        assert!(empty.since(None, &[]).unwrap().is_empty());
    }

    #[test]
    fn many_appends_stay_bounded() {
        let mut log = PacketLog::new(&RecoveryConfig::default().max_packets(1_000));
        let now = Instant::now();
        for i in 0..50_000usize {
            push(&mut log, i, Target::default(), i % 7 + 1, now);
        }
        assert_eq!(log.len(), 1_000);
        assert_eq!(log.bytes(), (49_000..50_000).map(|i| i % 7 + 1).sum::<usize>());
        assert_eq!(log.last(), Some(Offset(50_000)));
        let kept = log.since(Some(Offset(49_000)), &[]).unwrap();
        assert_eq!(kept.len(), 1_000);
        assert_eq!(*kept[0], 49_000);
        assert_eq!(log.since(Some(Offset(48_999)), &[]), Err(Gone));
    }

    #[test]
    fn store_persist_take_once() {
        let mut store = SessionStore::new(&RecoveryConfig::default());
        let t0 = Instant::now();
        let pid = SessionStore::new_pid();
        assert_eq!(pid.len(), 32);
        assert!(pid.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(pid, SessionStore::new_pid());
        store.persist(&pid, session("s1", &["a"], None), t0);
        assert_eq!((store.len(), store.is_empty()), (1, false));
        assert_eq!(store.take("nope", t0), None);
        assert_eq!(store.take(&pid, t0), Some(session("s1", &["a"], None)));
        assert_eq!(store.take(&pid, t0), None);
        assert!(store.is_empty());
        // A recovered socket keeps its pid and can be persisted again.
        store.persist(&pid, session("s1", &["b"], None), t0);
        store.persist(&pid, session("s1", &["c"], None), t0 + secs(1));
        assert_eq!(store.len(), 1);
        assert_eq!(store.take(&pid, t0 + secs(1)), Some(session("s1", &["c"], None)));
    }

    #[test]
    fn store_expiry_boundary_is_inclusive() {
        let mut store = SessionStore::new(&RecoveryConfig::default().max_disconnection_duration(secs(60)));
        let t0 = Instant::now();
        store.persist("p", session("s1", &[], None), t0);
        assert!(store.take("p", t0 + secs(60)).is_some());
        store.persist("p", session("s1", &[], None), t0);
        assert_eq!(store.take("p", t0 + secs(60) + Duration::from_nanos(1)), None);
        assert!(store.is_empty(), "an expired session is removed by take");
        // evict follows the same boundary.
        store.persist("p", session("s1", &[], None), t0);
        store.persist("q", session("s2", &[], None), t0 + secs(10));
        store.evict(t0 + secs(60));
        assert_eq!(store.len(), 2);
        store.evict(t0 + secs(61));
        assert_eq!(store.len(), 1);
        assert!(store.take("q", t0 + secs(61)).is_some());
        // A clock that goes backwards does not panic.
        store.persist("r", session("s3", &[], None), t0 + secs(100));
        assert!(store.take("r", t0).is_some());
    }

    #[test]
    fn store_bound_drops_oldest() {
        let mut store = SessionStore::new(&RecoveryConfig::default().max_sessions(3));
        let t0 = Instant::now();
        for (i, pid) in ["a", "b", "c", "d"].into_iter().enumerate() {
            store.persist(pid, session(pid, &[], None), t0 + secs(i as u64));
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.take("a", t0 + secs(4)), None);
        // "b" was replaced, so "c" is now the oldest.
        store.persist("b", session("b2", &[], None), t0 + secs(5));
        store.persist("e", session("e", &[], None), t0 + secs(6));
        assert_eq!(store.len(), 3);
        assert_eq!(store.take("c", t0 + secs(6)), None);
        assert_eq!(store.take("b", t0 + secs(6)).map(|s| s.id), Some("b2".into()));
        assert!(store.take("d", t0 + secs(6)).is_some());
        assert!(store.take("e", t0 + secs(6)).is_some());
        assert!(store.is_empty());
    }

    #[test]
    fn store_forgets_expired_sessions_that_never_come_back() {
        // Clients that drop and never return (the soak's short-lived
        // clients): only one window of them is kept. Before, nothing
        // called `evict` and the store grew to `max_sessions`.
        let window = secs(10);
        let mut store = SessionStore::new(&RecoveryConfig::default().max_disconnection_duration(window));
        let t0 = Instant::now();
        for i in 0..1_000u64 {
            // 10 disconnections a second for 100 s.
            store.persist(&format!("p{i}"), session("s", &["room"], None), t0 + Duration::from_millis(100 * i));
        }
        assert!(store.len() <= 101, "{} sessions kept for a 10 s window of 10 a second", store.len());
        assert!(store.order.len() <= 2 * store.len() + 65, "{} order entries", store.order.len());
        assert!(store.take("p999", t0 + secs(100)).is_some(), "the latest is still there");
        assert_eq!(store.take("p0", t0 + secs(100)), None);
    }

    #[test]
    fn store_memory_stays_bounded_under_churn() {
        let mut store = SessionStore::new(&RecoveryConfig::default());
        let t0 = Instant::now();
        for i in 0..10_000 {
            let pid = format!("p{}", i % 10);
            store.persist(&pid, session("s", &[], None), t0);
            if i % 2 == 0 {
                store.take(&pid, t0);
            }
        }
        assert!(store.order.len() <= 2 * store.len() + 65, "{} entries for {}", store.order.len(), store.len());
        store.evict(t0 + secs(1_000));
        assert!(store.is_empty());
        assert!(store.order.is_empty());
    }

    #[test]
    fn restore_happy_path() {
        let config = RecoveryConfig::default();
        let mut log = PacketLog::new(&config);
        let mut store = SessionStore::new(&config);
        let t0 = Instant::now();
        let base = log.last();
        push(&mut log, "seen", to(&["a"], &[]), 1, t0);
        let (_, seen) = log.next_offset();
        push(&mut log, "seen too", Target::default(), 1, t0);
        store.persist("pid", session("sock1", &["a"], base), t0);
        push(&mut log, "to a", to(&["a"], &[]), 1, t0 + secs(1));
        push(&mut log, "to b", to(&["b"], &[]), 1, t0 + secs(1));
        push(&mut log, "to me", to(&["sock1"], &[]), 1, t0 + secs(1));
        push(&mut log, "to all but a", to(&[], &["a"]), 1, t0 + secs(1));
        match restore(&mut store, &log, "pid", None, Some(&seen), t0 + secs(2)) {
            Restore::Recovered { session: s, missed } => {
                assert_eq!(s, session("sock1", &["a"], base));
                assert_eq!(missed, [&"to a", &"to me"]);
            }
            Restore::Failed(f) => panic!("{f:?}"),
        }
        assert!(store.is_empty());
    }

    #[test]
    fn restore_without_offset_uses_base() {
        let config = RecoveryConfig::default();
        let mut log = PacketLog::new(&config);
        let mut store = SessionStore::new(&config);
        let t0 = Instant::now();
        for _ in 0..4 {
            push(&mut log, "before", Target::default(), 1, t0);
        }
        // Connects, receives nothing, disconnects.
        let base = log.last();
        store.persist("pid", session("sock1", &["sock1", "a"], base), t0);
        push(&mut log, "1", Target::default(), 1, t0);
        push(&mut log, "not mine", to(&["b"], &[]), 1, t0);
        push(&mut log, "2", to(&["a"], &[]), 1, t0);
        push(&mut log, "3", to(&["sock1"], &[]), 1, t0);
        match restore(&mut store, &log, "pid", None, None, t0) {
            Restore::Recovered { missed, .. } => assert_eq!(missed, [&"1", &"2", &"3"]),
            Restore::Failed(f) => panic!("{f:?}"),
        }
        // A session from before anything was logged replays everything.
        store.persist("pid2", session("sock2", &[], None), t0);
        match restore(&mut store, &log, "pid2", None, None, t0) {
            Restore::Recovered { missed, .. } => assert_eq!(missed, [&"before", &"before", &"before", &"before", &"1"]),
            Restore::Failed(f) => panic!("{f:?}"),
        }
    }

    fn failure<P>(r: &Restore<'_, P>) -> Option<RestoreFailure> {
        match r {
            Restore::Failed(f) => Some(*f),
            Restore::Recovered { .. } => None,
        }
    }

    #[test]
    fn restore_failures() {
        let config = RecoveryConfig::default().max_packets(2).max_disconnection_duration(secs(60));
        let mut log = PacketLog::new(&config);
        let mut store = SessionStore::new(&config);
        let t0 = Instant::now();
        let (_, first) = log.next_offset();
        push(&mut log, 1, Target::default(), 1, t0);

        assert_eq!(failure(&restore(&mut store, &log, "nope", None, None, t0)), Some(RestoreFailure::UnknownSession));
        store.persist("old", session("s0", &[], None), t0);
        let late = t0 + secs(61);
        assert_eq!(failure(&restore(&mut store, &log, "old", None, None, late)), Some(RestoreFailure::UnknownSession));

        store.persist("pid", session("s1", &[], log.last()), t0);
        assert_eq!(failure(&restore(&mut store, &log, "pid", None, Some("zz-1"), t0)), Some(RestoreFailure::BadOffset));
        assert_eq!(failure(&restore(&mut store, &log, "pid", None, None, t0)), Some(RestoreFailure::UnknownSession));

        store.persist("pid", session("s1", &[], log.last()), t0);
        for i in 2..5 {
            push(&mut log, i, Target::default(), 1, t0);
        }
        assert_eq!(
            failure(&restore(&mut store, &log, "pid", None, Some(&first), t0)),
            Some(RestoreFailure::PacketsGone)
        );
        assert_eq!(
            failure(&restore(&mut store, &log, "pid", None, Some(&first), t0)),
            Some(RestoreFailure::UnknownSession)
        );
        // Without an offset, the base is too old as well.
        store.persist("pid", session("s1", &[], Some(Offset(1))), t0);
        assert_eq!(failure(&restore(&mut store, &log, "pid", None, None, t0)), Some(RestoreFailure::PacketsGone));
        assert!(store.is_empty());
    }

    #[test]
    fn another_users_pid_leaves_the_session_to_its_owner() {
        let config = RecoveryConfig::default();
        let log: PacketLog<&str> = PacketLog::new(&config);
        let mut store = SessionStore::new(&config);
        let t0 = Instant::now();
        let mine = StoredSession { user_id: Some("alice".into()), ..session("s1", &["a"], None) };
        store.persist("pid", mine.clone(), t0);
        for thief in [Some("mallory"), None] {
            assert_eq!(failure(&restore(&mut store, &log, "pid", thief, None, t0)), Some(RestoreFailure::OtherUser));
        }
        assert!(store.contains("pid", t0), "still kept");
        match restore(&mut store, &log, "pid", Some("alice"), None, t0) {
            Restore::Recovered { session: s, .. } => assert_eq!(s, mine),
            Restore::Failed(f) => panic!("{f:?}"),
        }
    }

    #[test]
    fn gone_displays() {
        assert_eq!(Gone.to_string(), "missed packets are no longer available");
        let _: &dyn std::error::Error = &Gone;
    }
}
