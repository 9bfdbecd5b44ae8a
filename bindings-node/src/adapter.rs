//! The native side of `tidewire/socket.io`'s `createAdapter` /
//! `createShardedAdapter` (js/adapter.js): a [`ClusterLink`] over the
//! core's `RedisBus`, wire-compatible with `@socket.io/redis-adapter`
//! nodes. socket.io's JavaScript sockets stay in JavaScript: what other
//! nodes send is queued for JavaScript (`takeEvents`, after `wake`), which
//! answers with `respond`. Values cross as JSON text plus Buffers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, FnArgs};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi::{Error, Status};
use napi_derive::napi;
use tidewire::bus::{RedisBus, RedisBusConfig};
use tidewire::cluster::wire::sharded::SubscriptionMode;
use tidewire::cluster::{ClusterConfig, ClusterLink, LinkError, LinkEvent, LinkQueue, Protocol};

use crate::fanout::Fanout;

/// A JavaScript `Error` whose message leads with `code` (js/adapter.js
/// moves it to `code`).
fn link_error(e: LinkError) -> Error {
    let code = match e {
        LinkError::Invalid(_) => "ERR_INVALID_ARG",
        LinkError::Unsupported(_) => "ERR_UNSUPPORTED",
        _ => "ERR_CLUSTER",
    };
    Error::new(Status::GenericFailure, format!("{code}: {e}"))
}

fn bytes(attachments: &[Buffer]) -> Vec<Bytes> {
    attachments.iter().map(|b| Bytes::copy_from_slice(b)).collect()
}

fn buffers(attachments: Vec<Bytes>) -> Vec<Buffer> {
    attachments.into_iter().map(|b| Buffer::from(b.to_vec())).collect()
}

/// Settings of a cluster link, from `createAdapter`'s options (checked
/// in js/adapter.js).
#[napi(object)]
pub struct LinkOptions {
    /// The Redis URL (or seed URLs separated by commas with `redisCluster`).
    pub url: String,
    /// The channel prefix (`key` / `channelPrefix`).
    pub key: String,
    /// ms a request waits for the other nodes (`requestsTimeout`).
    pub requests_timeout: u32,
    /// `publishOnSpecificResponseChannel`.
    pub specific_response_channel: bool,
    /// The sharded protocol (`createShardedAdapter`) with its
    /// `subscriptionMode` (`static`, `dynamic`, `dynamic-private`).
    pub subscription_mode: Option<String>,
    /// The URL lists seed nodes of a Redis Cluster.
    pub redis_cluster: bool,
}

/// One thing another node sent.
#[napi(object)]
pub struct LinkMessage {
    /// `broadcast`, `request`, `session` (a session another node wants),
    /// or a step of a session's hand-off: `released` (to the holder),
    /// `echo` and `tail` (to the taker).
    pub kind: String,
    /// The namespace.
    pub nsp: String,
    /// The message as JSON with placeholders.
    pub json: String,
    /// The binary parts.
    pub attachments: Vec<Buffer>,
}

/// One answer gathered from the other nodes.
#[napi(object)]
pub struct LinkAnswers {
    /// The answers, one JSON array with placeholders.
    pub json: String,
    /// The binary parts.
    pub attachments: Vec<Buffer>,
    /// Other nodes asked.
    pub expected: u32,
    /// Nodes that answered in time.
    pub received: u32,
    /// Set when the bus could not be asked.
    pub error: Option<String>,
}

/// A session another node gave.
#[napi(object)]
pub struct LinkSession {
    /// `{sid, pid, rooms, data, missedPackets}` as JSON with placeholders.
    pub json: String,
    /// The binary parts.
    pub attachments: Vec<Buffer>,
    /// The question's id (for `releaseSession`).
    pub request_id: String,
    /// The holder, when it logs for the session until `releaseSession`.
    pub holder: Option<String>,
}

type Wake = ThreadsafeFunction<(), UnknownReturnValue, (), Status, false, true>;
type Report = ThreadsafeFunction<
    FnArgs<(String, Vec<Buffer>)>,
    UnknownReturnValue,
    FnArgs<(String, Vec<Buffer>)>,
    Status,
    false,
    true,
>;

/// A node of the cluster for a socket.io adapter.
#[napi]
pub struct AdapterLink {
    inner: ClusterLink,
    bus: Arc<RedisBus>,
    queue: Arc<LinkQueue>,
}

#[napi]
impl AdapterLink {
    /// Connects to Redis (in the background: an unreachable Redis is
    /// retried) and joins the cluster. `wake()` is called when messages
    /// start waiting for `takeEvents`.
    #[napi(constructor)]
    pub fn new(options: LinkOptions, wake: Wake) -> napi::Result<AdapterLink> {
        let protocol = match options.subscription_mode.as_deref() {
            None => Protocol::Classic,
            Some("static") => Protocol::Sharded(SubscriptionMode::Static),
            Some("dynamic") => Protocol::Sharded(SubscriptionMode::Dynamic),
            Some("dynamic-private") => Protocol::Sharded(SubscriptionMode::DynamicPrivate),
            Some(other) => {
                return Err(Error::new(Status::InvalidArg, format!("unknown subscriptionMode {other:?}")));
            }
        };
        let config = ClusterConfig::default()
            .prefix(options.key)
            .request_timeout(Duration::from_millis(u64::from(options.requests_timeout)))
            .specific_response_channel(options.specific_response_channel)
            .protocol(protocol);
        let bus_config = RedisBusConfig::default().sharded(options.subscription_mode.is_some());
        // The bus and the link start tasks: on napi's tokio runtime.
        napi::bindgen_prelude::within_runtime_if_available(move || {
            let (bus, inbound) = RedisBus::open(&options.url, options.redis_cluster, bus_config)
                .map_err(|e| Error::new(Status::InvalidArg, format!("ERR_INVALID_ARG: {e}")))?;
            let bus = Arc::new(bus);
            let (inner, queue) = ClusterLink::join_queued(bus.clone(), inbound, config, move || {
                // An error here means Node is shutting down: nobody listens.
                let _ = wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
            });
            Ok(AdapterLink { inner, bus, queue })
        })
    }

    /// This node's uid on the wire.
    #[napi(getter)]
    pub fn uid(&self) -> String {
        self.inner.uid().to_owned()
    }

    /// Takes what other nodes sent, oldest first; call `settled()` once
    /// all of it is applied.
    #[napi]
    pub fn take_events(&self) -> Vec<LinkMessage> {
        self.queue
            .take()
            .into_iter()
            .filter_map(|e| {
                let (kind, c) = match e {
                    LinkEvent::Broadcast(c) => ("broadcast", c),
                    LinkEvent::Request(c) => ("request", c),
                    LinkEvent::SessionWanted(c) => ("session", c),
                    LinkEvent::SessionReleased(c) => ("released", c),
                    LinkEvent::SessionEcho(c) => ("echo", c),
                    LinkEvent::SessionTail(c) => ("tail", c),
                    _ => return None,
                };
                Some(LinkMessage {
                    kind: kind.to_owned(),
                    nsp: c.nsp,
                    json: c.json,
                    attachments: buffers(c.attachments),
                })
            })
            .collect()
    }

    /// Everything taken is applied (room changes mirrored, writes handed
    /// to the core): broadcasts routed with `deliverDirectly` may go past
    /// JavaScript again.
    #[napi]
    pub fn settled(&self) {
        self.queue.settled();
    }

    /// Broadcasts of other nodes to `nsp` are written by the core to the
    /// sockets of `fanout` (js/fast-path.js's mirror) without crossing into
    /// JavaScript, while nothing else waits for it; `null` hands them back.
    #[napi]
    pub fn deliver_directly(&self, nsp: String, fanout: Option<&Fanout>) {
        self.inner.deliver_directly(&nsp, fanout.map(|f| f.inner.clone()));
    }

    /// Broadcasts of other nodes the core delivered without JavaScript.
    #[napi(getter)]
    pub fn direct_broadcasts(&self) -> f64 {
        self.inner.stats().delivered_directly.load(Ordering::Relaxed) as f64
    }

    /// Resolves once Redis answered (at most `timeoutMs`): whether it did.
    #[napi]
    pub async fn wait_connected(&self, timeout_ms: u32) -> bool {
        self.bus.wait_connected(Duration::from_millis(u64::from(timeout_ms))).await
    }

    /// Listens on namespace `nsp`'s channels.
    #[napi]
    pub async fn add_namespace(&self, nsp: String) -> napi::Result<()> {
        self.inner.add_namespace(&nsp).await.map_err(link_error)
    }

    /// Stops listening on namespace `nsp`'s channels.
    #[napi]
    pub fn remove_namespace(&self, nsp: String) {
        self.inner.remove_namespace(&nsp);
    }

    /// Rooms of `nsp` got their first member here, or lost their last.
    #[napi]
    pub fn rooms_changed(&self, nsp: String, created: Vec<String>, deleted: Vec<String>) {
        self.inner.rooms_changed(&nsp, &created, &deleted);
    }

    /// Resolves once the channels of `rooms` are subscribed.
    #[napi]
    pub async fn listen(&self, nsp: String, rooms: Vec<String>) {
        self.inner.listen(&nsp, &rooms).await;
    }

    /// Publishes a broadcast: `{packet: {data}, opts: {rooms, except, flags}}`.
    #[napi]
    pub fn broadcast(&self, nsp: String, json: String, attachments: Vec<Buffer>) -> napi::Result<()> {
        self.inner.broadcast(&nsp, &json, &bytes(&attachments)).map_err(link_error)
    }

    /// Publishes a request without answers (`{type: 2 | 3 | 4 | 6, ...}`).
    #[napi]
    pub fn notify(&self, nsp: String, json: String, attachments: Vec<Buffer>) -> napi::Result<()> {
        self.inner.notify(&nsp, &json, &bytes(&attachments)).map_err(link_error)
    }

    /// Asks the other nodes (`{type: 0 | 1 | 5 | 6, ...}`) and gathers
    /// their answers for at most `timeoutMs` (the request timeout when
    /// absent).
    #[napi]
    pub async fn request(
        &self,
        nsp: String,
        json: String,
        attachments: Vec<Buffer>,
        timeout_ms: Option<u32>,
    ) -> napi::Result<LinkAnswers> {
        let timeout = timeout_ms.map(|t| Duration::from_millis(u64::from(t)));
        let gathered = self.inner.request(&nsp, &json, &bytes(&attachments), timeout).await.map_err(link_error)?;
        let (json, attachments) = gathered.value;
        let replies = gathered.replies;
        Ok(LinkAnswers {
            json,
            attachments: buffers(attachments),
            expected: replies.expected as u32,
            received: replies.received as u32,
            error: replies.error,
        })
    }

    /// Publishes a broadcast whose recipients answer; `report(json,
    /// attachments)` gets each node's `{clientCount}` and each
    /// `{packet}` until `opts.flags.timeout`. Resolves to how many other
    /// nodes were asked.
    #[napi]
    pub async fn broadcast_with_ack(
        &self,
        nsp: String,
        json: String,
        attachments: Vec<Buffer>,
        report: Report,
    ) -> napi::Result<u32> {
        let report = Arc::new(report);
        let nodes = self
            .inner
            .broadcast_with_ack(&nsp, &json, &bytes(&attachments), move |(json, attachments)| {
                let _ =
                    report.call(FnArgs::from((json, buffers(attachments))), ThreadsafeFunctionCallMode::NonBlocking);
            })
            .await
            .map_err(link_error)?;
        Ok(nodes as u32)
    }

    /// Answers a request of node `requester`.
    #[napi]
    pub fn respond(
        &self,
        nsp: String,
        requester: Option<String>,
        json: String,
        attachments: Vec<Buffer>,
    ) -> napi::Result<()> {
        self.inner.respond(&nsp, requester.as_deref(), &json, &bytes(&attachments)).map_err(link_error)
    }

    /// Asks the other nodes for session `pid` (with the client's
    /// `offset`): the session its holder gave, or null.
    #[napi]
    pub async fn take_session(
        &self,
        nsp: String,
        pid: String,
        offset: Option<String>,
    ) -> napi::Result<Option<LinkSession>> {
        let found = self.inner.take_session(&nsp, &pid, offset.as_deref()).await.map_err(link_error)?;
        Ok(found.map(|t| LinkSession {
            json: t.json,
            attachments: buffers(t.attachments),
            request_id: t.request_id,
            holder: t.holder,
        }))
    }

    /// Answers another node's question for a session: `json` is the
    /// session taken out of this node's store, or `null`; `handoff`: this
    /// node logs for it until the requester's marker (a `released` event).
    #[napi]
    pub fn give_session(
        &self,
        requester: String,
        request_id: String,
        json: String,
        attachments: Vec<Buffer>,
        handoff: bool,
    ) -> napi::Result<()> {
        self.inner.give_session(&requester, &request_id, &json, &bytes(&attachments), handoff).map_err(link_error)
    }

    /// The hand-off's marker: this node listens to the rooms of session
    /// `pid`, taken from `holder` (request `requestId`). An `echo` event
    /// and the holder's `tail` event follow.
    #[napi]
    pub fn release_session(&self, nsp: String, holder: String, request_id: String, pid: String) -> napi::Result<()> {
        self.inner.release_session(&nsp, &holder, &request_id, &pid).map_err(link_error)
    }

    /// Answers a `released` event: `json` is the list of what this node
    /// logged for the session since its answer, or `null`.
    #[napi]
    pub fn give_tail(
        &self,
        requester: String,
        request_id: String,
        nsp: String,
        json: String,
        attachments: Vec<Buffer>,
    ) -> napi::Result<()> {
        self.inner.give_tail(&requester, &request_id, &nsp, &json, &bytes(&attachments)).map_err(link_error)
    }

    /// How many nodes serve `nsp`, this one included.
    #[napi]
    pub async fn server_count(&self, nsp: String) -> napi::Result<u32> {
        Ok(self.inner.server_count(&nsp).await.map_err(link_error)? as u32)
    }

    /// Sends what is queued (at most `timeoutMs`), then closes the
    /// connections to Redis.
    #[napi]
    pub async fn close(&self, timeout_ms: u32) {
        self.bus.flush(Duration::from_millis(u64::from(timeout_ms))).await;
        self.bus.close();
    }
}
