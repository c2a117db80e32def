//! The producer's own metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// `iotedge_requests_handled_total{kind}` and `iotedge_request_handle_duration_seconds{kind}`.
#[derive(Clone)]
pub struct ProducerMetrics {
    pub(crate) method_handled: Counter,
    pub(crate) message_handled: Counter,
    pub(crate) method_duration: Histogram,
    pub(crate) message_duration: Histogram,
}

impl ProducerMetrics {
    /// Registers both metrics in `registry`; the two kinds' series, ready to count.
    pub fn register(registry: &mut Registry) -> Self {
        let handled = Family::<KindLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                0.1, 1.0,
            ])
        });
        registry.register(
            "iotedge_requests_handled",
            "Requests the producer answered, by kind",
            handled.clone(),
        );
        registry.register(
            "iotedge_request_handle_duration_seconds",
            "Time from receiving a request to queueing its answer",
            duration.clone(),
        );
        let get = |kind| {
            (
                handled.get_or_create(&KindLabels { kind }).clone(),
                duration.get_or_create(&KindLabels { kind }).clone(),
            )
        };
        let (method_handled, method_duration) = get("method");
        let (message_handled, message_duration) = get("message");
        Self {
            method_handled,
            message_handled,
            method_duration,
            message_duration,
        }
    }
}
