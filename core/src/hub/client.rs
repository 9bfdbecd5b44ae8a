//! One Engine.IO session seen by the Socket.IO layer: decodes packets and
//! routes them to the session's sockets, one per namespace.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytestring::ByteString;
use serde_json::Value;
use tokio::sync::Notify;

use super::handler::{panic_logger, run_now_or_spawn};
use super::socket::SocketParts;

use super::adapter::{Adapter, RemoteSession, Taken};
use super::namespace::{self, Deferred};
use super::socket::{Closing, DISCONNECT_NOTICE, SocketRecovery};
use super::{
    Admission, ConnectError, DisconnectReason, Handshake, Hub, HubStats, Namespace, Parser, Resolution, Socket,
};
use crate::engine::{Admitted, CloseReason, Connection, EngineHandler, HandshakeRefusal, RequestInfo, Session};
use crate::limits::{ConnectionRefused, IpPermit, UserPermit};
use crate::protocol::engine::Encoded;
use crate::protocol::engine::Frame;
use crate::protocol::socketio::{Decoder, Packet, PacketKind, ParseError};
use crate::recovery::{self, Restore, RestoreFailure, SessionStore, StoredSession};
use crate::rooms::Room;

pub(super) struct Acceptor {
    pub(super) hub: Hub,
}

/// The client's address as the connection caps see it.
fn client_ip(hub: &Hub, request: &RequestInfo) -> std::net::IpAddr {
    let xff = request.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    hub.config().connection_limits.client_ip(request.remote_addr.ip(), xff)
}

impl EngineHandler for Acceptor {
    fn is_draining(&self) -> bool {
        self.hub.is_draining()
    }

    fn admit(&self, request: &RequestInfo) -> Result<Admitted, HandshakeRefusal> {
        if self.hub.is_draining() {
            return Err(HandshakeRefusal::shutting_down());
        }
        let ip = client_ip(&self.hub, request);
        match self.hub.inner().connections.acquire_ip(ip, crate::time::now()) {
            Ok(permit) => Ok(Admitted::new(permit)),
            Err(refused) => {
                HubStats::add(&self.hub.stats().connections_refused, 1);
                tracing::debug!(%ip, reason = %refused, "handshake refused");
                Err(HandshakeRefusal::from(refused))
            }
        }
    }

    fn on_open(&self, session: &Session, request: &RequestInfo) -> Box<dyn Connection> {
        self.on_open_admitted(session, request, Admitted::none())
    }

    fn on_open_admitted(&self, session: &Session, request: &RequestInfo, admitted: Admitted) -> Box<dyn Connection> {
        let joined = Arc::new(Notify::new());
        let shared = Arc::new(ClientShared {
            hub: self.hub.clone(),
            session: session.clone(),
            handshake: Arc::new(Handshake::new(request, client_ip(&self.hub, request), None)),
            sockets: Mutex::new(Slots::default()),
            joined: joined.clone(),
            holdings: Mutex::new(None),
            _ip_permit: admitted.take::<IpPermit>(),
        });
        // socket.io's connectTimeout: a client must join a namespace in time.
        let timeout = self.hub.config().connect_timeout;
        let weak = Arc::downgrade(&shared);
        let session = session.clone();
        // The task ends as soon as a namespace is joined.
        tokio::spawn(async move {
            tokio::select! {
                () = session.closed() => {}
                () = joined.notified() => {}
                () = tokio::time::sleep(timeout) => {
                    let joined = weak.upgrade().is_some_and(|c| c.lock().values().any(|s| matches!(s, Slot::Connected(_))));
                    if !joined {
                        session.close(CloseReason::ForcedClose);
                    }
                }
            }
        });
        Box::new(Client { decoder: Decoder::new(self.hub.config().limits), shared, pending_bytes: 0 })
    }
}

/// A connection's namespaces: a handful at most, so a small vector (a
/// hash map would cost an idle connection several times more).
#[derive(Default)]
struct Slots(Vec<(ByteString, Slot)>);

impl Slots {
    fn position(&self, nsp: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == nsp)
    }

    fn get(&self, nsp: &str) -> Option<&Slot> {
        self.position(nsp).map(|i| &self.0[i].1)
    }

    fn contains_key(&self, nsp: &str) -> bool {
        self.position(nsp).is_some()
    }

    fn insert(&mut self, nsp: ByteString, slot: Slot) {
        match self.position(&nsp) {
            Some(i) => self.0[i].1 = slot,
            None => {
                // Most connections use one namespace: no spare capacity.
                self.0.reserve_exact(1);
                self.0.push((nsp, slot));
            }
        }
    }

    fn remove(&mut self, nsp: &str) -> Option<Slot> {
        self.position(nsp).map(|i| self.0.remove(i).1)
    }

    fn values(&self) -> impl Iterator<Item = &Slot> {
        self.0.iter().map(|(_, s)| s)
    }

    fn drain(&mut self) -> impl Iterator<Item = (ByteString, Slot)> + '_ {
        self.0.drain(..)
    }
}

enum Slot {
    /// CONNECT received; middlewares running.
    Connecting,
    Connected(Socket),
    /// The server disconnected the socket: the client's packets already
    /// on their way (a burst of events, acks) are dropped instead of being
    /// taken for a protocol error that would close every namespace of the
    /// connection. The client may CONNECT again.
    Left,
}

pub(crate) struct ClientShared {
    hub: Hub,
    session: Session,
    /// The request's part of every socket's handshake (auth is per
    /// namespace), built once: a session keeps no copy of the request.
    handshake: Arc<Handshake>,
    sockets: Mutex<Slots>,
    /// Notified when a first namespace is joined (ends the connect timeout).
    joined: Arc<Notify>,
    /// Per-user connection slots taken by this connection's sockets (one
    /// per distinct user); released when the connection closes.
    /// The connection's slot of the per-IP caps, released with it.
    _ip_permit: Option<IpPermit>,
    /// Boxed: anonymous connections outside a capped cluster hold none (8
    /// bytes instead of 48).
    holdings: Mutex<Option<Box<Holdings>>>,
}

/// The per-user slots and the units of the cluster-wide caps a connection
/// holds; released when it closes.
#[derive(Default)]
struct Holdings {
    user_permits: Vec<UserPermit>,
    cluster: Vec<String>,
}

impl ClientShared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a per-user connection slot for `user` unless this connection
    /// already holds one.
    fn acquire_user(&self, user: &str) -> Result<(), ConnectionRefused> {
        let mut holdings = self.holdings.lock().unwrap_or_else(PoisonError::into_inner);
        if holdings.as_ref().is_some_and(|h| h.user_permits.iter().any(|p| p.user() == user)) {
            return Ok(());
        }
        if let Some(permit) = self.hub.inner().connections.acquire_user(&Arc::from(user))? {
            holdings.get_or_insert_default().user_permits.push(permit);
        }
        Ok(())
    }

    /// Takes the cluster-wide units this connection still needs (one per
    /// user and one for its address, once each however many namespaces).
    async fn acquire_cluster_caps(
        &self,
        adapter: &Arc<dyn Adapter>,
        user: Option<&str>,
        ip: std::net::IpAddr,
    ) -> Result<(), ConnectionRefused> {
        let held: Vec<String> = self
            .holdings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|h| h.cluster.clone())
            .unwrap_or_default();
        let mut taken = held.clone();
        let verdict = adapter.acquire_caps(user, ip, &mut taken).await;
        let new: Vec<String> = taken.into_iter().filter(|k| !held.contains(k)).collect();
        let mut extra = Vec::new();
        if self.session.is_closed() {
            // Closed meanwhile: `on_close` may have run before these were kept.
            extra = new;
        } else {
            let mut holdings = self.holdings.lock().unwrap_or_else(PoisonError::into_inner);
            let h = holdings.get_or_insert_default();
            for key in new {
                // Another namespace of this connection took it meanwhile.
                if h.cluster.contains(&key) { extra.push(key) } else { h.cluster.push(key) }
            }
        }
        adapter.release_caps(extra);
        verdict
    }

    pub(crate) fn remove_socket(&self, nsp: &str) {
        self.lock().remove(nsp);
    }

    /// The server disconnected the socket of `nsp` (see [`Slot::Left`]).
    pub(crate) fn server_left(&self, nsp: &str) {
        let mut slots = self.lock();
        if let Some(i) = slots.position(nsp) {
            slots.0[i].1 = Slot::Left;
        }
    }

    /// The sockets of this connection connected to their namespace.
    fn connected_sockets(&self) -> Vec<Socket> {
        self.lock()
            .values()
            .filter_map(|s| match s {
                Slot::Connected(s) => Some(s.clone()),
                Slot::Connecting | Slot::Left => None,
            })
            .collect()
    }

    /// Disconnects every socket of this connection from its namespace.
    pub(crate) fn disconnect_all(&self) {
        for socket in self.connected_sockets() {
            socket.disconnect(false);
        }
    }

    /// The session's queue overflowed (see [`Connection::on_overflow`]):
    /// its sockets answer what they took (for at most
    /// [`CUT_ACK_DEADLINE`](super::socket::CUT_ACK_DEADLINE)) and refuse
    /// what comes meanwhile, each then gets [`DISCONNECT_NOTICE`]
    /// `{code: "slow_consumer"}`, and the connection closes once that is
    /// written (`transport close`: the client reconnects, and resumes
    /// with recovery on).
    async fn cut_slow_consumer(self: Arc<Self>) {
        let sockets = self.connected_sockets();
        for s in &sockets {
            s.begin_closing(Closing::SlowConsumer);
        }
        // Events read in the same batch are refused with an answer first.
        tokio::task::yield_now().await;
        let deadline = tokio::time::Instant::now() + super::socket::CUT_ACK_DEADLINE;
        super::socket::wait_for_answers(&sockets, deadline, || self.session.is_closed()).await;
        let notice = serde_json::json!({ "code": "slow_consumer", "message": "the client does not read its messages" });
        for s in &sockets {
            let _ = s.emit_notice(DISCONNECT_NOTICE, notice.clone());
        }
        self.session.close_after_flush(CloseReason::SlowConsumer);
    }

    /// The socket of `nsp`; `Ok(None)` when the server disconnected it,
    /// `Err` when the client never joined `nsp` (a protocol error).
    fn socket(&self, nsp: &str) -> Result<Option<Socket>, CloseReason> {
        match self.lock().get(nsp) {
            Some(Slot::Connected(s)) => Ok(Some(s.clone())),
            Some(Slot::Left) => Ok(None),
            _ => Err(CloseReason::ParseError),
        }
    }

    fn send(&self, parser: Parser, packet: &Packet) {
        let _ = self.session.send(parser.encode(packet));
    }
}

struct Client {
    decoder: Decoder,
    shared: Arc<ClientShared>,
    /// Bytes of the packet being assembled (its header and attachments so far).
    pending_bytes: usize,
}

impl Client {
    fn decode(&mut self, frame: Frame) -> Result<Option<Packet>, ParseError> {
        match (self.shared.hub.config().parser, frame) {
            (Parser::Default, Frame::Text(text)) => self.decoder.decode_text(text),
            (Parser::Default, Frame::Binary(data)) => self.decoder.decode_binary(data),
            #[cfg(feature = "msgpack")]
            (Parser::Msgpack, Frame::Binary(data)) => {
                crate::protocol::msgpack::decode(data, self.shared.hub.config().limits).map(Some)
            }
            #[cfg(feature = "msgpack")]
            (Parser::Msgpack, Frame::Text(_)) => Err(ParseError::UnexpectedText),
        }
    }
}

impl Connection for Client {
    fn on_message(&mut self, frame: Frame) -> Result<(), CloseReason> {
        self.pending_bytes += match &frame {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        };
        let packet = match self.decode(frame) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::debug!(sid = self.shared.session.sid(), error = %e, "socket.io parse error");
                return Err(CloseReason::ParseError);
            }
        };
        let size = std::mem::take(&mut self.pending_bytes);
        let shared = &self.shared;
        let parser = shared.hub.config().parser;
        match packet.kind {
            PacketKind::Connect(auth) => {
                let joined = {
                    let mut slots = shared.lock();
                    match slots.get(&packet.nsp) {
                        Some(Slot::Left) => {
                            slots.remove(&packet.nsp);
                        }
                        // A second CONNECT to a joined namespace: invalid state.
                        Some(_) => return Err(CloseReason::ParseError),
                        None => {}
                    }
                    slots.values().filter(|s| !matches!(s, Slot::Left)).count()
                };
                if joined >= shared.hub.config().max_namespaces_per_connection {
                    HubStats::add(&shared.hub.stats().namespace_refused, 1);
                    let data = serde_json::json!({ "code": "too_many_namespaces" });
                    shared.send(parser, &Packet::connect_error(packet.nsp, "Too many namespaces", Some(data)));
                    return Ok(());
                }
                let empty = Value::Object(Default::default());
                let on_panic = panic_logger("connect middleware", &packet.nsp, None);
                match shared.hub.resolve_namespace(&packet.nsp, auth.as_ref().unwrap_or(&empty)) {
                    Resolution::Found(ns) => {
                        ns.begin_connect();
                        shared.lock().insert(packet.nsp.clone(), Slot::Connecting);
                        run_now_or_spawn(Box::pin(connect(shared.clone(), ns, packet.nsp, auth)), on_panic);
                    }
                    Resolution::Invalid => {
                        shared.send(parser, &Packet::connect_error(packet.nsp, "Invalid namespace", None));
                    }
                    Resolution::Later(resolving) => {
                        // The namespace is being connected to from now on
                        // (a second CONNECT is refused meanwhile).
                        shared.lock().insert(packet.nsp.clone(), Slot::Connecting);
                        let (shared, nsp) = (shared.clone(), packet.nsp);
                        // A matcher that never answers holds nothing past
                        // the client's deadline to join a namespace.
                        let deadline = shared.hub.config().connect_timeout;
                        let resolved = async move {
                            match tokio::time::timeout(deadline, resolving).await.ok().flatten() {
                                Some(ns) => {
                                    ns.begin_connect();
                                    connect(shared, ns, nsp, auth).await;
                                }
                                None => {
                                    let connecting = {
                                        let mut slots = shared.lock();
                                        matches!(slots.get(&nsp), Some(Slot::Connecting))
                                            && slots.remove(&nsp).is_some()
                                    };
                                    if connecting {
                                        shared.send(parser, &Packet::connect_error(nsp, "Invalid namespace", None));
                                    }
                                }
                            }
                        };
                        run_now_or_spawn(Box::pin(resolved), on_panic);
                    }
                }
                Ok(())
            }
            PacketKind::Event { payload, id } => {
                if let Some(socket) = shared.socket(&packet.nsp)? {
                    socket.dispatch(payload, id, size);
                }
                Ok(())
            }
            PacketKind::Ack { payload, id } => {
                if let Some(socket) = shared.socket(&packet.nsp)? {
                    socket.resolve_ack(id, payload);
                }
                Ok(())
            }
            PacketKind::Disconnect => {
                let socket = shared.socket(&packet.nsp)?;
                shared.remove_socket(&packet.nsp);
                if let Some(socket) = socket {
                    socket.closed(DisconnectReason::ClientNamespaceDisconnect);
                }
                Ok(())
            }
            PacketKind::ConnectError(_) => Err(CloseReason::ParseError),
        }
    }

    fn cuts_on_overflow(&self) -> bool {
        true
    }

    fn on_overflow(&mut self, _session: &Session) {
        tokio::spawn(self.shared.clone().cut_slow_consumer());
    }

    fn on_close(&mut self, reason: CloseReason) {
        let slots: Vec<Slot> = self.shared.lock().drain().map(|(_, s)| s).collect();
        for slot in slots {
            if let Slot::Connected(socket) = slot {
                socket.closed(DisconnectReason::from(&reason));
            }
        }
        let holdings = self.shared.holdings.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(holdings) = holdings {
            self.shared.hub.adapter().release_caps(holdings.cluster);
        }
    }
}

async fn connect(shared: Arc<ClientShared>, ns: Namespace, nsp: ByteString, auth: Option<Value>) {
    let parser = shared.hub.config().parser;
    // The socket's id, known to the middlewares as socket.io's are (a copy
    // of the connection's handshake only when someone reads it).
    let fresh_id: Arc<str> = crate::engine::new_id().into();
    let handshake = match auth {
        None if ns.handlers().middlewares.is_empty() => shared.handshake.clone(),
        None => Arc::new(Handshake { socket_id: Some(fresh_id.clone()), ..Handshake::clone(&shared.handshake) }),
        Some(auth) => {
            Arc::new(Handshake { auth, socket_id: Some(fresh_id.clone()), ..Handshake::clone(&shared.handshake) })
        }
    };
    let admitted = ns.admit(handshake.clone()).await.and_then(|a| match &a.user_id {
        Some(user) => shared.acquire_user(user).map(|()| a).map_err(|refused| {
            HubStats::add(&shared.hub.stats().connections_refused, 1);
            ConnectError::new(refused.to_string()).with_data(serde_json::json!({ "code": refused.code() }))
        }),
        None => Ok(a),
    });
    let adapter = shared.hub.adapter().clone();
    let admitted = match admitted {
        Ok(a) if adapter.has_caps() => {
            let taken = shared.acquire_cluster_caps(&adapter, a.user_id.as_deref(), handshake.address).await;
            taken.map(|()| a).map_err(|refused| {
                HubStats::add(&shared.hub.stats().connections_refused, 1);
                ConnectError::new(refused.to_string()).with_data(serde_json::json!({ "code": refused.code() }))
            })
        }
        other => other,
    };
    let admission = match admitted {
        Ok(a) => a,
        Err(refusal) => {
            shared.remove_socket(&nsp);
            ns.abort_connect();
            shared.send(parser, &Packet::connect_error(nsp, &refusal.message, refusal.data));
            return;
        }
    };
    // A session this node does not hold may be with another node of the
    // cluster (see `cluster_recovery`).
    let remote = match (ns.recovery(), handshake.auth.get("pid").and_then(Value::as_str)) {
        (Some(rec), Some(pid))
            if adapter.clustered() && !namespace::lock(&rec.store).contains(pid, crate::time::now()) =>
        {
            let offset = handshake.auth.get("offset").and_then(Value::as_str).filter(|o| !o.is_empty());
            Some(adapter.take_remote_session(ns.name(), pid, admission.user_id.as_deref(), offset).await)
        }
        _ => None,
    };
    if shared.session.is_closed() || !shared.lock().contains_key(&nsp) {
        // The connection closed while the middlewares ran.
        ns.abort_connect();
        return;
    }
    // In a cluster, what other nodes send to the socket's first rooms (its
    // id, its user's room, a restored session's rooms) must reach it from
    // the moment the client is told it is connected.
    let mut listened: Vec<Room> = Vec::new();
    if adapter.clustered() {
        listened.push(fresh_id.clone());
        listened.extend(admission.user_id.as_ref().map(|u| Room::from(format!("user:{u}"))));
        if let Some(RemoteSession::Found(taken)) = &remote {
            listened.push(taken.session.id.clone());
            listened.extend(taken.session.rooms.iter().cloned());
        }
        adapter.listen(ns.name(), &listened).await;
    }
    // Listening now: the holder sends what it logged for the session
    // meanwhile, and this node's log has the rest (`cluster::recovery`).
    let remote = match remote {
        Some(RemoteSession::Found(mut taken)) if taken.handoff.is_some() => {
            if adapter.finish_remote_session(&ns, &mut taken).await {
                Some(RemoteSession::Found(taken))
            } else {
                Some(RemoteSession::Gone)
            }
        }
        other => other,
    };
    let added = add_socket(&shared, &ns, &nsp, handshake, admission, remote, &fresh_id);
    // Listened to for nothing: the connection closed meanwhile, or a local
    // session came back under its own id.
    ns.forget_unused(listened);
    let Some((socket, deferred)) = added else { return };
    for d in deferred {
        d.run(&ns);
    }
    for h in ns.handlers().on_connect.iter() {
        run_now_or_spawn(h.call(socket.clone()), panic_logger("connection", &nsp, Some(socket.id_arc())));
    }
    socket.mark_ready();
}

/// A session to restore: its pid, what was kept, and the packets missed.
type Restored = (String, StoredSession, Vec<Arc<[Encoded]>>);

/// Creates the socket (restoring its session when the client asks and it
/// can be), registers it, and sends the CONNECT reply (then the missed
/// packets). Returns the notifications to run, or `None` when the
/// connection closed meanwhile. Synchronous: with recovery on it holds the
/// namespace's log lock from the restore to the last missed packet, so
/// every packet sent meanwhile is either replayed or delivered after.
fn add_socket(
    shared: &Arc<ClientShared>,
    ns: &Namespace,
    nsp: &ByteString,
    handshake: Arc<Handshake>,
    mut admission: Admission,
    remote: Option<RemoteSession>,
    fresh_id: &str,
) -> Option<(Socket, Vec<Deferred>)> {
    let hub = &shared.hub;
    let config = hub.config();
    let recovery = ns.recovery();
    let log = recovery.map(|r| namespace::lock(&r.log));
    let mut restored: Option<Restored> = None;
    if let (Some(rec), Some(log)) = (recovery, log.as_ref())
        && let Some(pid) = handshake.auth.get("pid").and_then(Value::as_str)
    {
        let same_user = |s: &StoredSession| s.user_id.as_deref() == admission.user_id.as_deref();
        match remote {
            Some(RemoteSession::Found(taken)) if same_user(&taken.session) => {
                let Taken { session, missed, marks, .. } = *taken;
                let mut missed: Vec<Arc<[Encoded]>> = missed.into_iter().map(Arc::from).collect();
                // What this node logged for the session after the holder's tail.
                let here = marks.map(|marks| {
                    let mut rooms = session.rooms.clone();
                    rooms.push(session.id.clone());
                    log.since_split(marks, &rooms).map(|more| more.into_iter().cloned())
                });
                match here {
                    Some(Err(_)) => tracing::debug!(pid, "recovery failed: packets of the hand-off evicted"),
                    Some(Ok(more)) => {
                        missed.extend(more);
                        restored = Some((pid.to_owned(), session, missed));
                    }
                    None => restored = Some((pid.to_owned(), session, missed)),
                }
            }
            Some(RemoteSession::Found(..)) => tracing::debug!(pid, "recovery refused: another user"),
            Some(RemoteSession::Gone) => tracing::debug!(pid, "recovery failed on the node that held the session"),
            Some(RemoteSession::Unknown) | None => {
                let offset = handshake.auth.get("offset").and_then(Value::as_str).filter(|o| !o.is_empty());
                let mut store = namespace::lock(&rec.store);
                let user = admission.user_id.as_deref();
                let outcome = recovery::restore(&mut store, log, pid, user, offset, crate::time::now());
                drop(store);
                let taken = !matches!(outcome, Restore::Failed(RestoreFailure::OtherUser));
                match outcome {
                    Restore::Recovered { session, missed } => {
                        restored = Some((pid.to_owned(), session, missed.into_iter().cloned().collect()));
                    }
                    Restore::Failed(why) => tracing::debug!(pid, ?why, "recovery failed"),
                }
                if taken {
                    // Taken here (or gone): its rooms need not be kept any more.
                    hub.adapter().release_session(hub, pid);
                }
            }
        }
        let counter = if restored.is_some() { &hub.stats().recovered } else { &hub.stats().recovery_failed };
        HubStats::add(counter, 1);
    }
    let socket_recovery = log.as_ref().map(|log| {
        Box::new(SocketRecovery {
            pid: restored.as_ref().map_or_else(SessionStore::new_pid, |(pid, _, _)| pid.clone()).into(),
            // What came before was delivered or is being replayed now.
            base: log.last(),
            recovered: restored.is_some(),
        })
    });
    let id = match &mut restored {
        Some((_, session, _)) => {
            // What the middlewares decided now wins over what was kept: a
            // right withdrawn since is not given back. Kept data only comes
            // back when they gave none.
            if admission.data.is_none() {
                admission.data = Some(std::mem::take(&mut session.data));
            }
            session.id.to_string()
        }
        None => fresh_id.to_string(),
    };
    let (socket, added) = ns.add_deferred(|key| {
        Socket::new(SocketParts {
            id,
            key,
            namespace: ns.clone(),
            session: shared.session.clone(),
            handshake,
            admission,
            client: Arc::downgrade(shared),
            ack_timeout: config.ack_timeout,
            max_pending_acks: config.max_pending_acks,
            retry_window: config.retry_window,
            rates: hub.inner().rates.socket_rates(),
            recovery: socket_recovery,
        })
    });
    let mut deferred = vec![added];
    if let Some((_, session, _)) = &restored {
        let guard = ns.handlers().room_guard.clone();
        let user_room = socket.user_id().map(|u| format!("user:{u}"));
        let data = socket.data();
        let rooms = session.rooms.iter().filter(|room| {
            let name: &str = room;
            let own = name == socket.id() || user_room.as_deref() == Some(name);
            let allowed = own || guard.as_ref().is_none_or(|g| g.may_rejoin(&data, socket.user_id(), name));
            if !allowed {
                tracing::debug!(socket = socket.id(), room = name, "restored room refused by the guard");
            }
            allowed
        });
        match socket.join_deferred(rooms.cloned()) {
            Ok(d) => deferred.push(d),
            Err(e) => tracing::debug!(error = %e, "restored rooms over the limit"),
        }
    }
    {
        let mut sockets = shared.lock();
        if !sockets.contains_key(nsp) {
            drop(sockets);
            drop(log);
            for d in deferred {
                d.run(ns);
            }
            let reason =
                shared.session.close_reason().map_or(DisconnectReason::TransportClose, |r| DisconnectReason::from(&r));
            socket.closed(reason);
            return None;
        }
        sockets.insert(nsp.clone(), Slot::Connected(socket.clone()));
    }
    // Stores a permit if the timeout task is not waiting yet.
    shared.joined.notify_one();
    let parser = config.parser;
    match socket.pid() {
        Some(pid) => shared.send(parser, &Packet::connect_ok_with_pid(nsp.clone(), socket.id(), pid)),
        None => shared.send(parser, &Packet::connect_ok(nsp.clone(), socket.id())),
    }
    if let Some((_, _, missed)) = restored {
        for frames in missed {
            let _ = shared.session.send(frames.iter().cloned());
        }
    }
    drop(log);
    Some((socket, deferred))
}
