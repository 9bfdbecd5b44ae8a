//! `GET /metrics`: the hub's and the engine's counters in the OpenMetrics
//! text format (prometheus-client), read at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderValue, Response, StatusCode, header};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tidewire::bus::RedisBus;
use tidewire::engine::{Engine, EngineStats};
use tidewire::hub::Hub;
use tidewire::transport::{Body, text_response};

/// Reads the hub's and the engines' counters on each scrape.
#[derive(Debug)]
struct Counters {
    hub: Hub,
    /// The hub's engine, then any served beside it (the conformance echo):
    /// the Engine.IO gauges and counters are their sums.
    engines: Vec<Engine>,
    bus: Option<Arc<RedisBus>>,
}

impl Counters {
    /// The sum over the engines of one of their counters.
    fn engine_sum(&self, counter: impl Fn(&EngineStats) -> &AtomicU64) -> AtomicU64 {
        AtomicU64::new(self.engines.iter().map(|e| counter(e.stats()).load(Ordering::Relaxed)).sum())
    }
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: &AtomicU64) -> std::fmt::Result {
    let metric = ConstCounter::new(value.load(Ordering::Relaxed));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: usize) -> std::fmt::Result {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Counters {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let hub = self.hub.stats();
        let sessions = self.engines.iter().map(Engine::session_count).sum();
        let namespaces: Vec<_> = self.hub.namespace_names().iter().filter_map(|n| self.hub.namespace(n)).collect();
        let sockets = namespaces.iter().map(|n| n.socket_count()).sum();
        let rooms = namespaces.iter().map(|n| n.room_count()).sum();
        let presence =
            namespaces.iter().map(|n| n.presence_totals()).fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
        gauge(&mut e, "tidewire_connections", "Open Engine.IO sessions", sessions)?;
        gauge(&mut e, "tidewire_sockets", "Connected sockets, all namespaces", sockets)?;
        gauge(&mut e, "tidewire_rooms", "Rooms with members (each socket's own room included)", rooms)?;
        gauge(&mut e, "tidewire_presence_rooms", "Tracked rooms with someone present", presence.0)?;
        gauge(&mut e, "tidewire_presence_users", "Users present in at least one room", presence.1)?;
        gauge(&mut e, "tidewire_presence_connections", "Connections present in at least one room", presence.2)?;
        counter(&mut e, "tidewire_handshakes", "Sessions opened", &self.engine_sum(|s| &s.opened))?;
        counter(
            &mut e,
            "tidewire_handshakes_refused",
            "Handshakes refused by a cap, a rate or a drain",
            &self.engine_sum(|s| &s.refused),
        )?;
        counter(&mut e, "tidewire_connections_refused", "Connections refused by a cap", &hub.connections_refused)?;
        counter(&mut e, "tidewire_events_in", "Events received", &hub.events_in)?;
        counter(&mut e, "tidewire_bytes_in", "Bytes of the events received", &hub.bytes_in)?;
        counter(&mut e, "tidewire_events_out", "Event deliveries queued", &hub.events_out)?;
        counter(&mut e, "tidewire_packets_out", "Engine.IO packets written", &self.engine_sum(|s| &s.packets_out))?;
        counter(&mut e, "tidewire_bytes_out", "Bytes of the packets written", &self.engine_sum(|s| &s.bytes_out))?;
        counter(&mut e, "tidewire_rate_limited", "Events refused by a rate limit", &hub.rate_limited)?;
        counter(
            &mut e,
            "tidewire_rate_limit_disconnects",
            "Sockets disconnected for rate violations",
            &hub.rate_limit_disconnects,
        )?;
        counter(&mut e, "tidewire_invalid_payloads", "Events refused by a validator", &hub.invalid_payload)?;
        counter(&mut e, "tidewire_payloads_too_large", "Events refused for their size", &hub.payload_too_large)?;
        counter(&mut e, "tidewire_queue_drops", "Volatile packets dropped", &self.engine_sum(|s| &s.volatile_dropped))?;
        counter(
            &mut e,
            "tidewire_slow_consumer_disconnects",
            "Sessions closed as slow consumers",
            &self.engine_sum(|s| &s.slow_consumers),
        )?;
        counter(&mut e, "tidewire_ack_timeouts", "Server-side acks that timed out", &hub.ack_timeouts)?;
        counter(&mut e, "tidewire_recoveries", "Sessions recovered", &hub.recovered)?;
        counter(&mut e, "tidewire_recoveries_failed", "Recovery attempts that failed", &hub.recovery_failed)?;
        if let Some(c) = self.hub.cluster_stats() {
            counter(&mut e, "tidewire_cluster_published", "Messages handed to the cluster bus", &c.published)?;
            counter(&mut e, "tidewire_cluster_publish_failed", "Messages the bus refused", &c.publish_failed)?;
            counter(&mut e, "tidewire_cluster_received", "Messages received from the bus", &c.received)?;
            counter(&mut e, "tidewire_cluster_malformed", "Received messages that could not be decoded", &c.malformed)?;
            counter(&mut e, "tidewire_cluster_answered", "Requests of other nodes answered", &c.answered)?;
            counter(&mut e, "tidewire_cluster_incomplete", "Requests that ended without every answer", &c.incomplete)?;
        }
        if let Some(bus) = &self.bus {
            let lost = AtomicU64::new(bus.dropped_inbound());
            counter(&mut e, "tidewire_bus_dropped_inbound", "Bus messages lost: this node read too slowly", &lost)?;
            let unconfirmed = AtomicU64::new(bus.unconfirmed_outbound());
            let help = "Bus messages published after a Redis outage before every earlier subscriber was back";
            counter(&mut e, "tidewire_bus_unconfirmed_outbound", help, &unconfirmed)?;
            let missed = AtomicU64::new(bus.missed_outbound());
            let help = "Bus messages another node missed while its subscription was lost for a moment (an upper bound)";
            counter(&mut e, "tidewire_bus_missed_outbound", help, &missed)?;
            let made = AtomicU64::new(bus.connections_made());
            counter(&mut e, "tidewire_bus_connections", "Subscriber connections made to Redis", &made)?;
        }
        Ok(())
    }
}

/// The `/metrics` route for `hub` served by `engine`, with `others` (engines
/// served beside it) counted in the Engine.IO figures.
pub(crate) fn route(
    hub: Hub,
    engine: Engine,
    others: Vec<Engine>,
    bus: Option<Arc<RedisBus>>,
) -> impl Fn(&http::Request<tidewire::transport::IncomingBody>) -> Response<Body> {
    let mut registry = Registry::default();
    let engines = std::iter::once(engine).chain(others).collect();
    registry.register_collector(Box::new(Counters { hub, engines, bus }));
    move |_req| {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            return text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        let mut res = text_response(StatusCode::OK, text);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        res
    }
}
