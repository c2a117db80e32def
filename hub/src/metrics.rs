//! The hub's metrics, under the names, labels and label values edgeHub uses (docs/protocol.md,
//! "edgeHub's metrics"), so dashboards work against both. edgeHub's durations are summaries;
//! ours are histograms with `_sum` and `_count`, which is what portable panels use. The constant
//! labels `iothub`, `edge_device` and `instance_number` come from the registry (`lib.rs`).

mod labels;

pub use labels::*;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

fn duration_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ]
    .into_iter()
}

type Durations<L> = Family<L, Histogram, fn() -> Histogram>;

fn durations<L: Clone + std::hash::Hash + Eq>() -> Durations<L> {
    Family::new_with_constructor(|| Histogram::new(duration_buckets()))
}

fn sizes() -> Histogram {
    Histogram::new([64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0])
}

#[derive(Clone)]
pub struct HubMetrics {
    pub messages_received: Family<ReceivedLabels, Counter>,
    pub messages_sent: Family<SentLabels, Counter>,
    pub message_send_duration: Durations<SendDurationLabels>,
    pub message_process_duration: Durations<ProcessDurationLabels>,
    pub messages_dropped: Family<DroppedLabels, Counter>,
    pub messages_unack: Family<UnackLabels, Counter>,
    pub message_size: Family<IdLabels, Histogram, fn() -> Histogram>,
    pub direct_methods: Family<MethodLabels, Counter>,
    pub direct_method_duration: Durations<MethodDurationLabels>,
    pub connected_clients: Gauge,
    pub connect_success: Family<IdLabels, Counter>,
    pub connect_failed: Family<ConnectFailedLabels, Counter>,
    pub disconnects: Family<IdLabels, Counter>,
    pub queue_length: Family<QueueLabels, Gauge>,
    pub operation_retry: Family<RetryLabels, Counter>,
    pub gettwin: Family<GetTwinLabels, Counter>,
    pub gettwin_duration: Durations<GetTwinDurationLabels>,
    pub reported_properties: Family<ReportedLabels, Counter>,
    pub reported_properties_duration: Durations<ReportedDurationLabels>,
    pub refusals: Family<crate::refusals::RefusalLabels, Counter>,
    pub faults_injected: Family<crate::faults::FaultLabels, Counter>,
}

impl HubMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            messages_received: Family::default(),
            messages_sent: Family::default(),
            message_send_duration: durations(),
            message_process_duration: durations(),
            messages_dropped: Family::default(),
            messages_unack: Family::default(),
            message_size: Family::new_with_constructor(sizes),
            direct_methods: Family::default(),
            direct_method_duration: durations(),
            connected_clients: Gauge::default(),
            connect_success: Family::default(),
            connect_failed: Family::default(),
            disconnects: Family::default(),
            queue_length: Family::default(),
            operation_retry: Family::default(),
            gettwin: Family::default(),
            gettwin_duration: durations(),
            reported_properties: Family::default(),
            reported_properties_duration: durations(),
            refusals: Family::default(),
            faults_injected: Family::default(),
        };
        m.register_messages(registry);
        m.register_clients(registry);
        m
    }

    fn register_messages(&self, r: &mut Registry) {
        r.register(
            "edgehub_messages_received",
            "Number of messages received from client",
            self.messages_received.clone(),
        );
        r.register(
            "edgehub_messages_sent",
            "Messages sent from edge hub (to module inputs)",
            self.messages_sent.clone(),
        );
        r.register(
            "edgehub_message_send_duration_seconds",
            "Time taken to send a message, including the wait for its PUBACK",
            self.message_send_duration.clone(),
        );
        r.register(
            "edgehub_message_process_duration_seconds",
            "Time taken to process message in EdgeHub: received until taken from the queue to be sent",
            self.message_process_duration.clone(),
        );
        r.register(
            "edgehub_messages_dropped",
            "Messages dropped: no_route, ttl_expiry; the local hub adds upstream (no cloud here), queue_overflow, undeliverable, not_acknowledged, fault",
            self.messages_dropped.clone(),
        );
        r.register(
            "edgehub_messages_unack",
            "Messages not acknowledged: storage_failure (the local hub: not written to its store, queued in memory only)",
            self.messages_unack.clone(),
        );
        r.register(
            "edgehub_message_size_bytes",
            "Size of messages received by EdgeHub",
            self.message_size.clone(),
        );
        r.register(
            "edgehub_queue_length",
            "Number of messages pending to be processed for the endpoint",
            self.queue_length.clone(),
        );
        r.register(
            "edgehub_operation_retry",
            "Operation retries (a message sent again after no PUBACK within the ack timeout)",
            self.operation_retry.clone(),
        );
    }

    fn register_clients(&self, r: &mut Registry) {
        r.register(
            "edgehub_direct_methods",
            "Direct methods routed through EdgeHub",
            self.direct_methods.clone(),
        );
        r.register(
            "edgehub_direct_method_duration_seconds",
            "Time taken to call direct method",
            self.direct_method_duration.clone(),
        );
        r.register(
            "edgehub_connected_clients",
            "Current number of clients connected to edgeHub",
            self.connected_clients.clone(),
        );
        r.register(
            "edgehub_client_connect_success",
            "Total number of times each client successfully connected to edgeHub",
            self.connect_success.clone(),
        );
        r.register(
            "edgehub_client_connect_failed",
            "Clients that failed to authenticate (finer reasons: edgehub_refusals_total)",
            self.connect_failed.clone(),
        );
        r.register(
            "edgehub_client_disconnect",
            "Total number of times each client disconnected from edgeHub",
            self.disconnects.clone(),
        );
        r.register("edgehub_gettwin", "Get twin calls", self.gettwin.clone());
        r.register(
            "edgehub_gettwin_duration_seconds",
            "Time taken to get twin",
            self.gettwin_duration.clone(),
        );
        r.register(
            "edgehub_reported_properties",
            "Reported properties update calls",
            self.reported_properties.clone(),
        );
        r.register(
            "edgehub_reported_properties_update_duration_seconds",
            "Time taken to update reported properties",
            self.reported_properties_duration.clone(),
        );
        r.register(
            "edgehub_refusals",
            "Connections, requests and messages the hub refused, by protocol and reason",
            self.refusals.clone(),
        );
        r.register(
            "edgehub_faults_injected",
            "Faults injected on purpose (--fault / HUB_FAULTS), by fault",
            self.faults_injected.clone(),
        );
    }
}
