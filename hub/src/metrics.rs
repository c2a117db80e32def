//! The hub's metrics, under the names and labels edgeHub uses (docs/protocol.md#edgehubs-metrics),
//! so dashboards work against both. edgeHub's durations are summaries; ours are histograms with
//! `_sum` and `_count`, which is what portable panels use.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::Arc;

/// A label value that repeats on every message (who sent, which output, which input): built
/// once per connection and route, so making a label set for a lookup copies no text. The hub
/// resolves the handles once and keeps them (see `state.rs`).
pub type SharedLabel = Arc<str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceivedLabels {
    pub id: SharedLabel,
    pub route_output: SharedLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SentLabels {
    pub from: SharedLabel,
    pub to: SharedLabel,
    pub from_route_output: SharedLabel,
    pub to_route_input: SharedLabel,
    /// The route's priority, 0 ..= 9.
    pub priority: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SendDurationLabels {
    pub from: SharedLabel,
    pub to: SharedLabel,
    pub from_route_output: SharedLabel,
    pub to_route_input: SharedLabel,
}

/// Why a message was dropped: the `reason` label of `edgehub_messages_dropped_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// No route takes the message.
    NoRoute,
    /// A route sends it to `$upstream`, and there is no IoT Hub behind the local hub.
    Upstream,
    /// Its time-to-live ran out while it waited for delivery (also while the hub was stopped:
    /// counted when the store is loaded).
    TtlExpired,
    /// The target's delivery queue was full.
    QueueOverflow,
    /// It cannot be sent to the target (topic or size over the limits).
    Undeliverable,
    /// Sent `max_delivery_attempts` times without a PUBACK.
    NotAcknowledged,
    /// Dropped on purpose by an injected fault.
    Fault,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no_route",
            DropReason::Upstream => "upstream",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::QueueOverflow => "queue_overflow",
            DropReason::Undeliverable => "undeliverable",
            DropReason::NotAcknowledged => "not_acknowledged",
            DropReason::Fault => "fault",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabels {
    pub reason: DropReason,
    pub from: SharedLabel,
    pub from_route_output: SharedLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdLabels {
    pub id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectFailedLabels {
    pub id: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `/modules/{module}/inputs`.
    pub endpoint: SharedLabel,
    /// Always 0: one queue per module, whatever the routes' priorities.
    pub priority: u8,
}

fn duration_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ]
    .into_iter()
}

#[derive(Clone)]
pub struct HubMetrics {
    pub messages_received: Family<ReceivedLabels, Counter>,
    pub messages_sent: Family<SentLabels, Counter>,
    pub message_send_duration: Family<SendDurationLabels, Histogram>,
    pub messages_dropped: Family<DroppedLabels, Counter>,
    pub message_size: Family<IdLabels, Histogram>,
    pub direct_methods: Family<MethodLabels, Counter>,
    pub direct_method_duration: Family<MethodLabels, Histogram>,
    pub connected_clients: Gauge,
    pub connect_success: Family<IdLabels, Counter>,
    pub connect_failed: Family<ConnectFailedLabels, Counter>,
    pub disconnects: Family<IdLabels, Counter>,
    pub queue_length: Family<QueueLabels, Gauge>,
    pub gettwin: Family<IdLabels, Counter>,
    pub reported_properties: Family<IdLabels, Counter>,
    pub refusals: Family<crate::refusals::RefusalLabels, Counter>,
    pub faults_injected: Family<crate::faults::FaultLabels, Counter>,
}

impl HubMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            messages_received: Family::default(),
            messages_sent: Family::default(),
            message_send_duration: Family::new_with_constructor(|| {
                Histogram::new(duration_buckets())
            }),
            messages_dropped: Family::default(),
            message_size: Family::new_with_constructor(|| {
                Histogram::new([64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0])
            }),
            direct_methods: Family::default(),
            direct_method_duration: Family::new_with_constructor(|| {
                Histogram::new(duration_buckets())
            }),
            connected_clients: Gauge::default(),
            connect_success: Family::default(),
            connect_failed: Family::default(),
            disconnects: Family::default(),
            queue_length: Family::default(),
            gettwin: Family::default(),
            reported_properties: Family::default(),
            refusals: Family::default(),
            faults_injected: Family::default(),
        };
        let r = registry;
        r.register(
            "edgehub_messages_received",
            "Messages received from modules",
            m.messages_received.clone(),
        );
        r.register(
            "edgehub_messages_sent",
            "Messages sent to module inputs (or upstream)",
            m.messages_sent.clone(),
        );
        r.register(
            "edgehub_message_send_duration_seconds",
            "Time to send a message to a module, including the wait for its PUBACK",
            m.message_send_duration.clone(),
        );
        r.register(
            "edgehub_messages_dropped",
            "Messages dropped: no_route, upstream (no cloud here), ttl_expired, queue_overflow, undeliverable, not_acknowledged, fault",
            m.messages_dropped.clone(),
        );
        r.register(
            "edgehub_message_size_bytes",
            "Size of messages received from modules",
            m.message_size.clone(),
        );
        r.register(
            "edgehub_direct_methods",
            "Direct methods routed",
            m.direct_methods.clone(),
        );
        r.register(
            "edgehub_direct_method_duration_seconds",
            "Direct method round trip through the hub",
            m.direct_method_duration.clone(),
        );
        r.register(
            "edgehub_connected_clients",
            "Connected MQTT clients",
            m.connected_clients.clone(),
        );
        r.register(
            "edgehub_client_connect_success",
            "Successful client connections",
            m.connect_success.clone(),
        );
        r.register(
            "edgehub_client_connect_failed",
            "Refused client connections",
            m.connect_failed.clone(),
        );
        r.register(
            "edgehub_client_disconnect",
            "Client disconnections",
            m.disconnects.clone(),
        );
        r.register(
            "edgehub_queue_length",
            "Messages waiting per endpoint",
            m.queue_length.clone(),
        );
        r.register("edgehub_gettwin", "Twin GET requests", m.gettwin.clone());
        r.register(
            "edgehub_reported_properties",
            "Reported-property updates",
            m.reported_properties.clone(),
        );
        r.register(
            "edgehub_refusals",
            "Connections, requests and messages the hub refused, by protocol and reason",
            m.refusals.clone(),
        );
        r.register(
            "edgehub_faults_injected",
            "Faults injected on purpose (--fault / HUB_FAULTS), by fault",
            m.faults_injected.clone(),
        );
        m
    }
}
