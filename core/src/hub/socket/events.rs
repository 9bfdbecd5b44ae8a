//! The event path: how an event from the client reaches its handler.
//!
//! An event is held until the socket's connect handlers have started, then
//! admitted (rate limits, the event's rule: size, then validator, then the
//! user's cluster-wide rate), de-duplicated by its ack id, and dispatched
//! through the event middlewares to its handler. A socket the server cuts
//! for a policy ([`Closing`]) answers the events it already accepted first
//! and refuses new ones with an answer each. [`AckResponder`] is how a
//! handler answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use super::{DISCONNECT_NOTICE, EmitError, Socket, lock};
use crate::ack::Inbound;
use crate::engine::SendError;
use crate::hub::handler::{BoxFuture, EventRejection, panic_logger, run_now_or_spawn};
use crate::hub::namespace::Handlers;
use crate::hub::{DisconnectReason, Event, HubStats};
use crate::limits::Verdict;
use crate::protocol::args::IntoPayload;
use crate::protocol::engine::Encoded;
use crate::protocol::socketio::{Packet, Payload};

/// Largest ack answer kept to re-send when a client retries an event.
const MAX_CACHED_ANSWER: usize = 64 * 1024;

/// How long a socket the server cuts for a policy (rate limits) waits for
/// the answers of the events it already accepted before it disconnects.
pub const CUT_ACK_DEADLINE: Duration = Duration::from_secs(5);

/// Why a socket is closing: while it waits for the answers of the events it
/// accepted, new events are refused with this code (an answer each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Closing {
    /// Open.
    No = 0,
    /// Cut for repeated rate-limit violations.
    RateLimited = 1,
    /// Its connection is being drained (server shutting down).
    ShuttingDown = 2,
    /// Its connection overflowed its queue (a client that does not read).
    SlowConsumer = 3,
}

impl Closing {
    fn from_u8(v: u8) -> Closing {
        match v {
            1 => Closing::RateLimited,
            2 => Closing::ShuttingDown,
            3 => Closing::SlowConsumer,
            _ => Closing::No,
        }
    }

    /// The answer an event gets while the socket closes.
    fn refusal(self) -> EventRejection {
        match self {
            Closing::ShuttingDown => EventRejection::new("server_shutting_down", "server shutting down"),
            Closing::SlowConsumer => EventRejection::new("slow_consumer", "the client does not read its messages"),
            _ => EventRejection::new("rate_limited", "too many rate-limit violations"),
        }
    }
}

/// What the limits say of an event.
enum Admitted {
    /// Refused (and answered).
    Refused,
    /// Through.
    Go,
    /// Through this node's limits; the user's cluster-wide rate is next.
    CheckClusterRate(Arc<dyn crate::hub::adapter::Adapter>),
}

/// Answers one event's acknowledgement ([`Event::reply`] is the short
/// way). Dropping it unanswered leaves the client's callback pending (until
/// its own timeout, if any), except when its handler panicked: the client
/// then gets `{status: "error", code: "internal_error", message}`.
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use serde_json::json;
/// use tidewire::hub::{Event, Hub, Socket};
/// let hub = Hub::default();
/// hub.of("/").on("thumbnail", |_socket: Socket, event: Event| async move {
///     if let Some(ack) = event.ack {
///         // Two arguments, the second binary: sent as a BINARY_ACK.
///         let _ = ack.send((json!({"ok": true}), Bytes::from_static(b"\x89PNG...")));
///     }
/// });
/// ```
#[derive(Debug)]
pub struct AckResponder {
    socket: Socket,
    id: u64,
    sent: bool,
}

impl Drop for AckResponder {
    fn drop(&mut self) {
        if !self.sent {
            lock(&self.socket.inner.inbound).abandoned(self.id);
        }
        self.socket.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AckResponder {
    /// An answer the client awaits (counted until sent or dropped, so a
    /// drain can wait for it).
    fn new(socket: Socket, id: u64) -> AckResponder {
        socket.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        AckResponder { socket, id, sent: false }
    }

    /// The ack id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends the acknowledgement with `args` (see
    /// [`IntoPayload`](crate::protocol::args) for which value makes how many
    /// arguments; a BINARY_ACK when there is binary data).
    ///
    /// # Errors
    /// [`EmitError::Send`] when the connection is closed or its queue is
    /// full; [`EmitError::Encode`] when `args` cannot be serialized, in
    /// which case the client gets an `internal_error` answer instead.
    pub fn send(mut self, args: impl IntoPayload) -> Result<(), EmitError> {
        self.sent = true;
        match args.into_payload() {
            Ok(payload) => Ok(self.send_payload(payload)?),
            Err(e) => {
                tracing::error!(socket = self.socket.id(), error = %e, "ack answer not serializable");
                let _ = self.send_payload(internal_error().into_payload()?);
                Err(e.into())
            }
        }
    }

    fn send_payload(&self, args: Payload) -> Result<(), SendError> {
        let s = &self.socket;
        let frames: Arc<[Encoded]> =
            s.inner.namespace.parser().encode(&Packet::ack(s.namespace(), self.id, args)).into();
        let size: usize = frames.iter().map(Encoded::len).sum();
        lock(&s.inner.inbound).answered(self.id, (size <= MAX_CACHED_ANSWER).then(|| frames.clone()));
        s.send_answer(&frames)
    }
}

/// The answer to an event whose handler failed.
fn internal_error() -> EventRejection {
    EventRejection::new("internal_error", "internal server error")
}

impl Socket {
    // --- receiving -----------------------------------------------------------

    /// Dispatches an event from the client: retry check, listeners,
    /// middlewares, then the handler.
    /// Hands an event from the client to its handler. Until the connect
    /// handlers have been started ([`mark_ready`](Self::mark_ready)) events
    /// are held, so a `connection` handler always runs before the socket's
    /// first event even when the CONNECT reply went out from another thread.
    pub(crate) fn dispatch(&self, payload: Payload, id: Option<u64>, size: usize) {
        if !self.inner.ready.load(Ordering::Acquire) {
            let mut held = lock(&self.inner.held);
            if !self.inner.ready.load(Ordering::Acquire) {
                held.push((payload, id, size));
                return;
            }
        }
        self.dispatch_now(payload, id, size);
    }

    /// The connect handlers have started: delivers the held events, in
    /// order (events arriving meanwhile are held too, then delivered).
    pub(crate) fn mark_ready(&self) {
        loop {
            let batch = {
                let mut held = lock(&self.inner.held);
                if held.is_empty() {
                    self.inner.ready.store(true, Ordering::Release);
                    *held = Vec::new();
                    return;
                }
                std::mem::take(&mut *held)
            };
            for (payload, id, size) in batch {
                self.dispatch_now(payload, id, size);
            }
        }
    }

    /// Checks an event against the rate limits, then its rule (size, then
    /// validator). On a refusal the client's ack (if any) gets the
    /// rejection, and repeated rate violations disconnect the socket.
    fn admit_event(
        &self,
        handlers: &Handlers,
        name: &str,
        payload: &mut Payload,
        id: Option<u64>,
        size: usize,
    ) -> Admitted {
        let Some(hub) = self.inner.namespace.hub() else { return Admitted::Go };
        let stats = hub.stats();
        HubStats::add(&stats.events_in, 1);
        HubStats::add(&stats.bytes_in, size as u64);
        let rates = &hub.inner().rates;
        let refusal = if rates.is_active() {
            let ip = self.inner.handshake.address;
            match rates.check(&self.inner.rates, name, self.inner.user_id.as_ref(), ip, crate::time::now()) {
                Verdict::Allow => None,
                Verdict::Refuse(l) => {
                    Some((EventRejection::new("rate_limited", "rate limit exceeded").retry_after(l.retry_after), false))
                }
                Verdict::Disconnect(l) => {
                    Some((EventRejection::new("rate_limited", "rate limit exceeded").retry_after(l.retry_after), true))
                }
            }
        } else {
            None
        };
        let refusal = refusal.or_else(|| {
            let rule = handlers.event_rules.get(name)?;
            if let Some(max) = rule.max_bytes
                && size > max
            {
                HubStats::add(&stats.payload_too_large, 1);
                return Some((
                    EventRejection::new("payload_too_large", format!("event larger than {max} bytes")),
                    false,
                ));
            }
            let validator = rule.validator.as_ref()?;
            // Validated as one array without copying the arguments.
            let args = Value::Array(std::mem::take(&mut payload.data));
            let verdict = validator.validate(&args);
            let Value::Array(data) = args else { unreachable!("constructed as an array") };
            payload.data = data;
            let message = verdict.err()?;
            HubStats::add(&stats.invalid_payload, 1);
            Some((EventRejection::new("invalid_payload", message), false))
        });
        let Some((rejection, disconnect)) = refusal else {
            // The user's cluster-wide rate, when on, is still to be checked.
            let adapter = hub.adapter();
            return if adapter.has_user_rate() && self.inner.user_id.is_some() {
                Admitted::CheckClusterRate(adapter.clone())
            } else {
                Admitted::Go
            };
        };
        if rejection.code == "rate_limited" {
            HubStats::add(&stats.rate_limited, 1);
        }
        tracing::debug!(socket = self.id(), event = name, code = rejection.code, "event refused");
        if let Some(id) = id {
            let _ = AckResponder::new(self.clone(), id).send(rejection);
        }
        if disconnect {
            HubStats::add(&stats.rate_limit_disconnects, 1);
            let notice = serde_json::json!({ "code": "rate_limited", "message": "too many rate-limit violations" });
            self.cut(Closing::RateLimited, Some(notice), DisconnectReason::RateLimited);
        }
        Admitted::Refused
    }

    /// Marks the socket closing for `why`: from now on its events are
    /// refused with an answer each. False when it already was.
    pub(crate) fn begin_closing(&self, why: Closing) -> bool {
        self.inner.closing.compare_exchange(Closing::No as u8, why as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Cuts the socket for a policy, keeping every promise already made:
    /// the events it accepted get their answers first (for at most
    /// [`CUT_ACK_DEADLINE`]), events arriving meanwhile are refused with an
    /// answer, then the client gets `notice` as [`DISCONNECT_NOTICE`], then
    /// DISCONNECT (`io server disconnect`), in that order.
    fn cut(&self, why: Closing, notice: Option<Value>, reason: DisconnectReason) {
        if !self.begin_closing(why) {
            return;
        }
        let socket = self.clone();
        let finish = move || {
            if let Some(notice) = notice {
                let _ = socket.emit_notice(DISCONNECT_NOTICE, notice);
            }
            socket.disconnect_for(reason);
        };
        // From a task, even with nothing in flight: the client's packets
        // read in the same batch (a burst) are refused with an answer first.
        let socket = self.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let deadline = tokio::time::Instant::now() + CUT_ACK_DEADLINE;
            super::wait_for_answers(std::slice::from_ref(&socket), deadline, || false).await;
            finish();
        });
    }

    fn dispatch_now(&self, mut payload: Payload, id: Option<u64>, size: usize) {
        if !self.connected() {
            return;
        }
        if payload.data.is_empty() {
            return;
        }
        let closing = Closing::from_u8(self.inner.closing.load(Ordering::Acquire));
        if closing != Closing::No {
            // Being cut: an answer, but no handler.
            if let Some(id) = id {
                let _ = AckResponder::new(self.clone(), id).send(closing.refusal());
            }
            return;
        }
        let name = match payload.data.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let handlers = self.inner.namespace.handlers();
        match self.admit_event(&handlers, &name, &mut payload, id, size) {
            Admitted::Refused => {}
            Admitted::Go => self.dispatch_admitted(handlers, name, payload, id),
            // The cluster-wide rate of the user: one round trip.
            Admitted::CheckClusterRate(adapter) => {
                let socket = self.clone();
                let on_panic = panic_logger("cluster rate check", self.namespace(), Some(self.id_arc()));
                run_now_or_spawn(
                    Box::pin(async move {
                        let user = socket.inner.user_id.clone().unwrap_or_default();
                        match adapter.check_user_rate(&user).await {
                            Some(wait) => socket.refuse_cluster_rate(&name, id, wait),
                            None => socket.dispatch_admitted(handlers, name, payload, id),
                        }
                    }),
                    on_panic,
                );
            }
        }
    }

    /// Refuses an event over the user's cluster-wide rate.
    fn refuse_cluster_rate(&self, name: &str, id: Option<u64>, wait: std::time::Duration) {
        if let Some(hub) = self.inner.namespace.hub() {
            HubStats::add(&hub.stats().rate_limited, 1);
        }
        tracing::debug!(socket = self.id(), event = name, "event refused: the user's cluster-wide rate");
        if let Some(id) = id {
            let rejection = EventRejection::new("rate_limited", "rate limit exceeded").retry_after(wait);
            let _ = AckResponder::new(self.clone(), id).send(rejection);
        }
    }

    /// The rest of an event's dispatch, once every limit let it through.
    fn dispatch_admitted(&self, handlers: Arc<Handlers>, name: String, payload: Payload, id: Option<u64>) {
        if let Some(id) = id {
            let seen = lock(&self.inner.inbound).begin(id);
            match seen {
                Inbound::New => {}
                Inbound::InProgress | Inbound::Answered(None) => return,
                Inbound::Answered(Some(frames)) => {
                    let _ = self.send_answer(&frames);
                    return;
                }
            }
        }
        for l in &handlers.incoming {
            l.on_event(self, &name, &payload);
        }
        let ack = id.map(|id| AckResponder::new(self.clone(), id));
        if handlers.event_middlewares.is_empty() {
            let Some(handler) = handlers.handler_for(&name) else { return };
            let on_panic = self.on_handler_panic(&name, id);
            run_now_or_spawn(handler.call(self.clone(), Event { name, args: payload, ack }), on_panic);
            return;
        }
        let on_panic = self.on_handler_panic(&name, id);
        let socket = self.clone();
        let event = Event { name, args: payload, ack: None };
        let fut: BoxFuture<()> = Box::pin(async move {
            let mut event = event;
            for m in &handlers.event_middlewares {
                match m.call(socket.clone(), event).await {
                    Ok(e) => event = e,
                    Err(rejection) => {
                        if let Some(ack) = ack {
                            let _ = ack.send(rejection);
                        }
                        return;
                    }
                }
            }
            // The handler of the (possibly renamed) event.
            if let Some(handler) = handlers.handler_for(&event.name) {
                event.ack = ack;
                handler.call(socket, event).await;
            }
        });
        run_now_or_spawn(fut, on_panic);
    }

    /// What happens when the handler (or a middleware) of event `name`
    /// panics: an error log and, if its ack was left unanswered, the
    /// client gets `internal_error`. The connection carries on.
    fn on_handler_panic(&self, name: &str, id: Option<u64>) -> impl FnOnce(&str) + Send + Unpin + 'static {
        let (socket, event) = (self.clone(), name.to_owned());
        move |panic: &str| {
            tracing::error!(
                socket = socket.id(),
                namespace = socket.namespace(),
                event,
                panic,
                "event handler panicked"
            );
            // The handler's future is gone: an ack it still held was dropped.
            if let Some(id) = id
                && lock(&socket.inner.inbound).is_abandoned(id)
            {
                let _ = AckResponder::new(socket.clone(), id).send(internal_error());
            }
        }
    }
}
