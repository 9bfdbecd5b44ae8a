//! The subscriber connection: kept subscribed to every wanted channel across reconnects, probed, and read into
//! the node's inbound queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{PushInfo, PushKind};
use tokio::sync::mpsc;

use super::Shared;
use crate::bus::BusMessage;

/// Keeps a subscriber connection with every wanted channel, forwards its
/// messages, and replaces it when it dies or stops answering probes.
pub(super) async fn subscriber(shared: Arc<Shared>, inbound: mpsc::Sender<BusMessage>) {
    let mut backoff = shared.config.min_backoff;
    while !shared.is_closed() {
        let (mut sink, mut stream) = match shared.connect_subscriber().await {
            Ok(p) => p,
            Err(e) => {
                shared.next_seed();
                tracing::warn!(error = %e, "redis bus: cannot connect the subscriber, retrying");
                shared.back_off(&mut backoff).await;
                continue;
            }
        };
        let mut wanted: Vec<String> =
            shared.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect();
        wanted.push(shared.probe_channel.clone());
        if let Err(e) = sink.subscribe(&wanted).await {
            tracing::warn!(error = %e, "redis bus: resubscribe failed, reconnecting");
            shared.back_off(&mut backoff).await;
            continue;
        }
        *shared.sink.lock().await = Some(sink);
        // Channels wanted while the connection was being made.
        let now: Vec<String> =
            shared.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect();
        let missed: Vec<&String> = now.iter().filter(|c| !wanted.contains(c)).collect();
        if !missed.is_empty()
            && let Some(sink) = shared.sink.lock().await.as_mut()
        {
            let _ = sink.subscribe(&missed).await;
        }
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
        shared.subscribed.send_replace(true);
        backoff = shared.config.min_backoff;
        let mut probe = tokio::time::interval(shared.config.probe_interval);
        probe.tick().await;
        let mut probe_deadline: Option<tokio::time::Instant> = None;
        // Deadlines passed in a row with nothing received.
        let mut missed_probes = 0u8;
        loop {
            let deadline = async {
                match probe_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // What the connection holds first, timers after: a process that
            // did not run for a while (stopped, starved) finds its probe's
            // deadline passed and the echo waiting behind what Redis buffered.
            // A close comes before all: a busy subscription must not keep a
            // closed node subscribed (and counted by the others).
            tokio::select! {
                biased;
                () = shared.closing.cancelled() => break,
                message = stream.next() => {
                    let Some(message) = message else {
                        tracing::warn!("redis bus: subscriber connection lost, reconnecting");
                        break;
                    };
                    let Some(message) = message else { continue };
                    // Anything received shows the subscription alive.
                    missed_probes = 0;
                    if probe_deadline.is_some() {
                        probe_deadline = Some(tokio::time::Instant::now() + shared.config.probe_timeout);
                    }
                    if message.channel == shared.probe_channel {
                        probe_deadline = None;
                        shared.probe_seen.notify_waiters();
                        continue;
                    }
                    if inbound.try_send(message).is_err() {
                        shared.dropped_inbound.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ = probe.tick() => {
                    if probe_deadline.is_none() {
                        probe_deadline = Some(tokio::time::Instant::now() + shared.config.probe_timeout);
                        let shared = shared.clone();
                        tokio::spawn(async move { shared.send_probe().await });
                    }
                }
                () = deadline => {
                    missed_probes += 1;
                    if missed_probes < 2 {
                        // Once more: the deadline may have passed while this
                        // process did not run, its connection fine.
                        probe_deadline = Some(tokio::time::Instant::now() + shared.config.probe_timeout);
                        let shared = shared.clone();
                        tokio::spawn(async move { shared.send_probe().await });
                        continue;
                    }
                    tracing::warn!("redis bus: the subscription stopped answering probes, replacing it");
                    break;
                }
            }
        }
        shared.subscribed.send_replace(false);
        *shared.sink.lock().await = None;
    }
}

impl Shared {
    /// Connects a subscriber: a RESP2 pub/sub connection, or, sharded, a
    /// RESP3 connection whose pushes carry the shard messages.
    async fn connect_subscriber(&self) -> Result<(Sink, Source), redis::RedisError> {
        if !self.config.sharded {
            let (sink, stream) = self.client().get_async_pubsub().await?.split();
            return Ok((Sink::Classic(sink), Source::Classic(Box::pin(stream))));
        }
        let info = self.client().get_connection_info().clone();
        let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
        let connection = client.get_multiplexed_async_connection_with_config(&config).await?;
        Ok((Sink::Sharded(connection), Source::Sharded(rx)))
    }
}

/// The subscribing half of the subscriber connection.
pub(super) enum Sink {
    Classic(PubSubSink),
    /// A RESP3 connection: one `SSUBSCRIBE` per channel, so that each
    /// command gets exactly one confirmation as its answer.
    Sharded(MultiplexedConnection),
}

impl Sink {
    pub(super) async fn subscribe<C: AsRef<str>>(&mut self, channels: &[C]) -> Result<(), redis::RedisError> {
        match self {
            Sink::Classic(sink) => {
                let channels: Vec<&str> = channels.iter().map(AsRef::as_ref).collect();
                sink.subscribe(channels).await
            }
            Sink::Sharded(c) => Sink::each(c, "SSUBSCRIBE", channels).await,
        }
    }

    pub(super) async fn unsubscribe<C: AsRef<str>>(&mut self, channels: &[C]) -> Result<(), redis::RedisError> {
        match self {
            Sink::Classic(sink) => {
                let channels: Vec<&str> = channels.iter().map(AsRef::as_ref).collect();
                sink.unsubscribe(channels).await
            }
            Sink::Sharded(c) => Sink::each(c, "SUNSUBSCRIBE", channels).await,
        }
    }

    async fn each<C: AsRef<str>>(
        c: &mut MultiplexedConnection,
        command: &str,
        channels: &[C],
    ) -> Result<(), redis::RedisError> {
        if channels.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for channel in channels {
            pipe.cmd(command).arg(channel.as_ref()).ignore();
        }
        pipe.query_async::<()>(c).await
    }
}

/// The messages of the subscriber connection.
enum Source {
    Classic(std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>),
    Sharded(mpsc::UnboundedReceiver<PushInfo>),
}

impl Source {
    /// The next message; `Some(None)` for something that is not one (a
    /// confirmation); `None` once the connection is gone.
    async fn next(&mut self) -> Option<Option<BusMessage>> {
        match self {
            Source::Classic(stream) => {
                let m = stream.next().await?;
                let channel = m.get_channel_name().to_owned();
                Some(Some(BusMessage { channel, payload: Bytes::copy_from_slice(m.get_payload_bytes()) }))
            }
            Source::Sharded(rx) => {
                let push = rx.recv().await?;
                match push.kind {
                    PushKind::Disconnection => None,
                    PushKind::SMessage => {
                        let mut data = push.data.into_iter();
                        let (Some(channel), Some(payload)) = (data.next(), data.next()) else { return Some(None) };
                        match (redis::from_redis_value::<String>(channel), redis::from_redis_value::<Vec<u8>>(payload))
                        {
                            (Ok(channel), Ok(payload)) => {
                                Some(Some(BusMessage { channel, payload: Bytes::from(payload) }))
                            }
                            _ => Some(None),
                        }
                    }
                    _ => Some(None),
                }
            }
        }
    }
}
