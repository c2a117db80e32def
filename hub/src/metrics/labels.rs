//! The label sets of the hub's metrics, with edgeHub's label names and values (docs/protocol.md,
//! "edgeHub's metrics"). Values that repeat on every message are [`SharedLabel`]s or fixed
//! types, so making a label set for a lookup copies no text.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use std::fmt::Write as _;
use std::sync::Arc;

/// A label value that repeats on every message (who sent, which output, which input): built
/// once per connection and route, so making a label set for a lookup copies no text. The hub
/// resolves the handles once and keeps them (see `state.rs`).
pub type SharedLabel = Arc<str>;

/// A label whose value is always the same text: one type per value, no storage.
macro_rules! fixed_label {
    ($(#[$doc:meta])* $name:ident = $value:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, Hash, PartialEq, Eq)]
        pub struct $name;

        impl $name {
            pub const VALUE: &'static str = $value;
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str($value)
            }
        }
    };
}

fixed_label!(
    /// `ms_telemetry`: edgeHub sets it to .NET's `bool.TrueString` on the series it marks for
    /// Microsoft's telemetry upload.
    MsTelemetry = "True"
);
fixed_label!(
    /// `source` of `edgehub_gettwin*` and `target` of `edgehub_reported_properties*` when the
    /// twin is served by the hub itself (edgeHub's `DeviceMessageHandler`).
    EdgeHubSide = "edge_hub"
);
fixed_label!(
    /// `reason` of `edgehub_client_connect_failed_total`: edgeHub's only value (`Authenticator.cs`).
    NotAuthenticated = "not_authenticated"
);
fixed_label!(
    /// `operation` of `edgehub_operation_retry_total` for a module endpoint, with the leading
    /// space edgeHub writes (`EdgeHubRoutingUserMetricLogger.LogRetryOperation`).
    SendMessageToModule = " SendMessageToModule"
);
fixed_label!(
    /// `reason` of `edgehub_messages_unack_total`: edgeHub's only value
    /// (`StoringAsyncEndpointExecutor`).
    StorageFailure = "storage_failure"
);

/// Why a message was dropped: the `reason` label of `edgehub_messages_dropped_total`.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// No route takes the message (edgeHub's `no_route`).
    NoRoute,
    /// Its time-to-live ran out while it waited for delivery (edgeHub's `ttl_expiry`; also while
    /// the hub was stopped: counted when the store is loaded).
    TtlExpiry,
    /// A route sends it to `$upstream`, and there is no IoT Hub behind the local hub.
    Upstream,
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
            DropReason::TtlExpiry => "ttl_expiry",
            DropReason::Upstream => "upstream",
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
pub struct ReceivedLabels {
    pub id: SharedLabel,
    pub route_output: SharedLabel,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SentLabels {
    pub from: SharedLabel,
    pub to: SharedLabel,
    pub from_route_output: SharedLabel,
    pub to_route_input: SharedLabel,
    /// The route's priority: 0 ..= 9, or `DEFAULT_PRIORITY` (2000000000) without one.
    pub priority: u32,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SendDurationLabels {
    pub from: SharedLabel,
    pub to: SharedLabel,
    pub from_route_output: SharedLabel,
    pub to_route_input: SharedLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProcessDurationLabels {
    pub from: SharedLabel,
    pub to: SharedLabel,
    pub priority: u32,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabels {
    pub reason: DropReason,
    pub from: SharedLabel,
    pub from_route_output: SharedLabel,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnackLabels {
    pub reason: StorageFailure,
    pub from: SharedLabel,
    pub from_route_output: SharedLabel,
    pub ms_telemetry: MsTelemetry,
}

/// `edgehub_direct_methods_total`: `from` is the caller's `{device}/{module}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub from: String,
    pub to: String,
    pub ms_telemetry: MsTelemetry,
}

/// `edgehub_direct_method_duration_seconds`: `from` is the caller's device id only
/// (edgeHub's `TwinsController`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodDurationLabels {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdLabels {
    pub id: SharedLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectFailedLabels {
    pub id: SharedLabel,
    pub reason: NotAuthenticated,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The endpoint's id: `{device}/{module}/{input}` (edgeHub's `EndpointFactory`).
    pub endpoint: SharedLabel,
    pub priority: u32,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// The endpoint's id, as in `edgehub_queue_length`.
    pub id: SharedLabel,
    pub operation: SendMessageToModule,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GetTwinLabels {
    pub source: EdgeHubSide,
    pub id: SharedLabel,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GetTwinDurationLabels {
    pub source: EdgeHubSide,
    pub id: SharedLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportedLabels {
    pub target: EdgeHubSide,
    pub id: SharedLabel,
    pub ms_telemetry: MsTelemetry,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportedDurationLabels {
    pub target: EdgeHubSide,
    pub id: SharedLabel,
}
